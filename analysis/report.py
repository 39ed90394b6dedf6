"""The report: every number about a checkpoint's kernels, computed once (`analyze`) and written (`write_report`).

    res = analyze(ck, L=16384)          # pure computation, no file IO (the CLI and the app both call it)
    write_report(res, "out/")           # report.json, *.csv, report.html (+ PNGs when static export works)
    cmp = compare_results([res1, res2]) # side by side; write_compare(cmp, "out/")

What is computed, per layer and per kernel channel (c, h) of the (C_k, H, L) kernel at length L:
- decay (`analysis.decay.batch_decay`, all channels at once): power-law exponent t with
  its log-log r², exponential rate r (1/tap) with its r², effective ranges holding 50/90/99 % of the energy;
- frequency (`analysis.frequency.frequency_summary`): peak gain (linear, dB, frequency), -3 dB
  bandwidth around the peak, spectral centroid, from the rfft at n_fft = L;
- SSMs (S4/S4D): poles -> per-mode decay rates, slowest rate and half-life per feature and per layer, and
  the largest difference between the exact transfer function and the FFT of the extracted kernel on the
  rfft grid (subsampled to at most ``ANALYTIC_GRID`` frequencies), and on that grid the peak gain of the
  L -> infinity transfer function (``peak_gain_db_inf``; when every |pole| < 1);
- per layer: medians / IQRs of the above, the power-law / exponential fits of the layer's RMS profile
  sqrt(mean_channels k²), parameter counts (counted vs formula); scaling rows for the parameter plot.
``res["arrays"]`` holds the numpy data for the figures (not written to JSON): kernels, envelopes, energy curves,
magnitude and phase of the shown channels, the exact finite-L and L -> infinity responses, poles.

The batch functions are the same code as the 1-D `analysis.decay.power_law_fit`, `exp_fit`, `effective_range`
and `analysis.frequency.bandwidth`, run over all rows at once.
"""
from __future__ import annotations

import csv
import html
import json
import math
import os
import time

import numpy as np
from scipy import fft as sfft

from . import params as P
from .decay import (MIN_FIT_LENGTH, batch_decay, energy_curve, envelope, exp_fit, median_iqr, pole_decay, power_law_fit,
                    summarize_layer)
from .extract import extract_kernels, kernel_table, ssm_modes
from .frequency import frequency_summary, ssm_transfer

__all__ = ["analyze", "write_report", "compare_results", "write_compare", "report_figures", "compare_figures", "select_channels", "STATIC_EXPORT_NOTE", "ANALYTIC_GRID"]

#: Most frequencies at which the exact SSM transfer function is compared with the FFT, per layer.
ANALYTIC_GRID = 1025
#: What static (PNG) export needs; written into every report.
STATIC_EXPORT_NOTE = ("PNG export of the figures needs kaleido and a Chromium browser: `pip install kaleido` "
                      "and Debian's chromium (`apt-get install chromium`). The HTML page works offline without them.")
FFT_WORKERS = 2
#: Largest block of kernel values the vectorised fits work on at once (bounds their temporaries).
CHUNK_ELEMENTS = 1 << 24
#: analyze() refuses kernels larger than this (all layers, float64).
MAX_BYTES = 4 << 30
DEFAULT_CHANNELS = 4


# ----------------------------------------------------------------------------------------------- helpers
def select_channels(channels, C: int, H: int) -> list[tuple[int, int]]:
    """Channels to show: None -> DEFAULT_CHANNELS evenly spaced features of the forward channel c=0; an int K ->
    K evenly spaced features; a list of ints h (c = 0) or (c, h) pairs (out-of-range ones dropped)."""
    if channels is None:
        channels = DEFAULT_CHANNELS
    if isinstance(channels, (int, np.integer)):
        k = max(1, min(int(channels), H))
        return [(0, int(h)) for h in np.unique(np.linspace(0, H - 1, k).round().astype(int))]
    out = []
    for ch in channels:
        c, h = (0, int(ch)) if np.ndim(ch) == 0 else (int(ch[0]), int(ch[1]))
        if 0 <= c < C and 0 <= h < H:
            out.append((c, h))
    return out or [(0, 0)]


def _f(x):
    """JSON/CSV-friendly scalar."""
    if isinstance(x, (np.floating, float)):
        return float(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def _formula_params(kernel) -> int | None:
    args = P._family_args(kernel)
    kind = args.pop("kind")
    H, C_k = args.pop("H"), args.pop("C_k")
    if kind == "sgconv":
        L = kernel.raw_length  # the layer's actual S is what counts; L_raw gives exactly that S
        args["init_scale"] = kernel.init_scale
    else:
        L = kernel.l_max or 1024
    try:
        return P.param_count(kind, L, H, C_k, **args)
    except ValueError:
        return None


def _grid_transfer(res, lam, omega, L: int):
    """Exact transfer function of the length-L SSM kernel at omega = 2 pi k / L (the rfft grid).

    There e^{-i omega L} = 1, so (lambda e^{-i omega})^L = lambda^L and the finite-length response equals
    the infinite-length one of the residues r (1 - lambda^L): `ssm_transfer(r (1 - lambda^L), lambda,
    omega, None)`, which needs no complex power per frequency (~50x faster). Falls back to the finite-L
    form when some |lambda| >= 1.
    """
    lam = np.asarray(lam, dtype=np.complex128)
    if np.all(np.abs(lam) < 1):
        return ssm_transfer(np.asarray(res) * (1.0 - lam ** int(L)), lam, omega, None)
    return ssm_transfer(res, lam, omega, L=int(L))


def _chunked(fn, K2: np.ndarray, keep_rows=None) -> dict:
    """Apply a batch_* function to blocks of at most CHUNK_ELEMENTS values and join the per-row outputs."""
    n, L = K2.shape
    step = max(1, CHUNK_ELEMENTS // max(L, 1))
    if step >= n:
        return fn(K2, keep_rows)
    parts = []
    for a in range(0, n, step):
        b = min(n, a + step)
        rows = None if keep_rows is None else [r - a for r in sorted(keep_rows) if a <= r < b]
        parts.append((rows, fn(K2[a:b], rows)))
    out = {}
    for key, v in parts[0][1].items():
        if key == "freq":
            out[key] = v
        elif key == "H_rows":
            got = [p[key] for rows, p in parts if rows]
            out[key] = np.concatenate(got) if got else None
        else:
            out[key] = np.concatenate([p[key] for _, p in parts])
    if keep_rows is not None and out.get("H_rows") is not None:  # back to the caller's order
        order = np.argsort(np.argsort(keep_rows))
        out["H_rows"] = out["H_rows"][order]
    return out


class _Progress:
    def __init__(self, cb, total: float):
        self.cb, self.total, self.done = cb, total, 0.0

    def __call__(self, step: float, message: str):
        self.done = min(self.total, self.done + step)
        if self.cb:
            self.cb(self.done / self.total, message)


# ----------------------------------------------------------------------------------------------- analyze
def analyze(ck, L: int | None = None, channels=None, progress=None, n_bins: int = 64,
            scaling_lengths=P.DEFAULT_LENGTHS, max_bytes: int = MAX_BYTES) -> dict:
    """Every number of the report for one checkpoint (no file IO).

    Args: ck: a Checkpoint (sgconv_core.load); L: kernel length in taps (default the model's l_max, else
        1024; at least 8); channels: what the figures show per layer (see `select_channels`);
        progress: optional callable(fraction in [0, 1], message); max_bytes: refuse (ValueError) when all
        layers' float64 kernels would take more than this.
    Returns a dict: meta, checkpoint (summary, warnings, card, layout, config), kernels (`kernel_table`),
        layers (one row per layer), channels (one row per layer x kernel channel), params (per_layer,
        scaling), analysis_warnings, arrays (numpy data for the figures; not JSON).
    """
    t0 = time.perf_counter()
    kernels_mod = list(ck.kernels)
    if L is None:
        L = kernels_mod[0].l_max or 1024
    L = int(L)
    if L < MIN_FIT_LENGTH:
        raise ValueError(f"L must be at least {MIN_FIT_LENGTH} taps for the decay fits, got {L}")
    n_layers = len(kernels_mod)
    need = sum(k.C_k * k.H for k in kernels_mod) * L * 8
    if need > max_bytes:
        raise ValueError(f"the kernels at L={L:,} take {need / 2**30:.1f} GiB as float64 (limit "
                         f"{max_bytes / 2**30:.1f} GiB); ask for a shorter length")
    prog = _Progress(progress, 1.0 + 3.0 * n_layers + 0.5)
    prog(0.0, "extracting kernels")
    Ks = extract_kernels(ck, L, progress=lambda i, n: prog(1.0 / max(n, 1), f"extracted layer {i}/{n}"))
    t_extract = time.perf_counter() - t0

    layer_rows, channel_rows, per_layer_params, warnings = [], [], [], []
    arrays: dict = {"L": L, "layers": {}, "kernels": Ks}
    for li, (kmod, (name, K)) in enumerate(zip(kernels_mod, Ks.items())):
        C_k, H, _ = K.shape
        K2 = K.reshape(C_k * H, L)
        C_fwd = kmod.channels if kmod.bidirectional else C_k
        shown = select_channels(channels, C_k, H)
        shown_rows = [c * H + h for c, h in shown]

        dec = _chunked(lambda X, rows: batch_decay(X, n_bins), K2)
        prog(1.0, f"{name}: decay fits")
        fr = _chunked(lambda X, rows: frequency_summary(X, keep_rows=rows, workers=FFT_WORKERS), K2, shown_rows)
        prog(1.0, f"{name}: frequency responses")
        n_bad = int((~np.isfinite(K2).all(1)).sum())
        if n_bad:
            warnings.append(f"{name}: {n_bad} kernel channel(s) hold NaN/Inf at L={L}; their numbers are NaN")

        # SSM: poles, half-lives, analytic transfer function vs FFT
        ssm = None
        modes = ssm_modes(kmod)
        half_h = None
        if modes is not None:
            res, lam = modes
            pdec = pole_decay(lam)
            rates = np.asarray(pdec["rates"])  # (H, M)
            slow_h = rates.min(1)
            with np.errstate(divide="ignore"):
                half_h = np.where(slow_h > 0, math.log(2) / np.where(slow_h > 0, slow_h, 1.0), np.inf)
            F = fr["freq"].size
            idx = np.unique(np.linspace(0, F - 1, min(F, ANALYTIC_GRID)).round().astype(np.int64))
            omega = 2 * np.pi * fr["freq"][idx]
            Ha = _grid_transfer(res, lam, omega, L)  # (C_k, H, n)
            Hfft = sfft.rfft(K, axis=-1, workers=FFT_WORKERS)[..., idx]
            diff = np.abs(Ha - Hfft)
            scale = float(np.abs(Hfft).max()) or 1.0
            ssm = {"n_modes": int(lam.shape[-1]), "slowest_rate": pdec["slowest_rate"],
                   "half_life": pdec["half_life"], "median_half_life": float(np.median(half_h)),
                   "max_abs_pole": float(np.abs(lam).max()), "unstable_modes": int((np.abs(lam) >= 1).sum()),
                   "analytic_vs_fft_max_abs": float(np.nanmax(diff)),
                   "analytic_vs_fft_rel": float(np.nanmax(diff)) / scale, "analytic_grid_points": int(idx.size)}
            # analytic responses of the shown channels on the full rfft grid
            r_sh = np.stack([res[c, h] for c, h in shown])
            l_sh = np.stack([lam[h] for _, h in shown])
            Ha_sh = _grid_transfer(r_sh, l_sh, 2 * np.pi * fr["freq"], L)
            # L -> infinity (needs every |pole| < 1): per-channel peak gain on the same subsampled grid
            Hinf_sh = gain_inf_db = None
            if np.all(np.abs(lam) < 1):
                with np.errstate(divide="ignore"):
                    gain_inf_db = 20 * np.log10(np.abs(ssm_transfer(res, lam, omega, None)).max(-1)).reshape(-1)
                Hinf_sh = ssm_transfer(r_sh, l_sh, 2 * np.pi * fr["freq"], None)
                ssm["peak_gain_db_inf_median"] = float(np.median(gain_inf_db))
        prog(1.0, f"{name}: poles and transfer functions" if modes is not None else f"{name}: tables")

        # per-channel rows
        for row in range(C_k * H):
            c, h = divmod(row, H)
            d = {"layer": name, "layer_index": li, "c": c, "h": h,
                 "direction": "forward" if c < C_fwd else "backward"}
            for key in ("t", "t_r2", "r", "r_r2", "range50", "range90", "range99"):
                d[key] = float(dec[key][row])
            for key in ("peak_gain", "peak_gain_db", "peak_freq", "bandwidth", "centroid"):
                d[key] = float(fr[key][row])
            if half_h is not None:
                d["slowest_rate"] = float(slow_h[h])
                d["half_life"] = float(half_h[h])
                d["peak_gain_db_inf"] = float(gain_inf_db[row]) if gain_inf_db is not None else math.nan
            channel_rows.append(d)

        # layer profile fits and summary
        fwd = K[:C_fwd].reshape(-1, L)
        rms = np.sqrt(np.mean(np.where(np.isfinite(fwd), fwd, 0.0) ** 2, axis=0))
        mean_k = np.where(np.isfinite(fwd), fwd, 0.0).mean(0)
        if np.any(rms > 0):
            pl, ex = power_law_fit(rms, n_bins), exp_fit(rms, n_bins)
            prof_env = envelope(rms, n_bins, "rms")
        else:
            pl = ex = {"t": math.nan, "r": math.nan, "r2": math.nan, "log_amplitude": math.nan}
            prof_env = (np.zeros(1), np.zeros(1))
        rows_here = channel_rows[-C_k * H:]
        summ = summarize_layer(rows_here)
        n_formula = _formula_params(kmod)
        lrow = {"layer": name, "kind": kmod.kind, "H": H, "C_k": C_k, "n_params": int(kmod.n_params),
                "n_params_formula": n_formula, "profile_t": pl["t"], "profile_t_r2": pl["r2"],
                "profile_r": ex["r"], "profile_r_r2": ex["r2"], "n_channels": summ["n_channels"],
                "n_zero": summ["n_zero"]}
        for key in ("t", "r", "range50", "range90", "range99"):
            lrow[f"{key}_median"] = summ[key]["median"]
            lrow[f"{key}_iqr"] = summ[key]["iqr"]
        for key in ("t_r2", "r_r2", "peak_gain_db", "peak_freq", "bandwidth", "centroid"):
            mi = median_iqr(dec[key] if key in dec else fr[key])
            lrow[f"{key}_median"] = mi["median"]
        if ssm is not None:
            lrow.update(ssm)
        layer_rows.append(lrow)
        per_layer_params.append({"layer": name, "kind": kmod.kind, "n_params": int(kmod.n_params),
                                 "n_params_formula": n_formula, "match": n_formula == int(kmod.n_params)})

        # figure data
        env_sh, fits_sh = [], []
        for (c, h), row in zip(shown, shown_rows):
            k = K2[row]
            env_sh.append(envelope(k, n_bins, "rms") if np.any(k) and np.isfinite(k).all() else None)
            fits_sh.append({"power": {"t": dec["t"][row], "log_amplitude": dec["t_log_amplitude"][row]},
                            "exp": {"r": dec["r"][row], "log_amplitude": dec["r_log_amplitude"][row]}})
        energy_sh = [energy_curve(K2[row]) if dec["valid"][row] else None for row in shown_rows]
        with np.errstate(divide="ignore"):
            mag_sh = 20 * np.log10(np.abs(fr["H_rows"]))
            amag_sh = 20 * np.log10(np.abs(Ha_sh)) if modes is not None else None
            amag_inf_sh = 20 * np.log10(np.abs(Hinf_sh)) if modes is not None and Hinf_sh is not None else None
        arrays["layers"][name] = {
            "shown": shown, "envelopes": env_sh, "fits": fits_sh, "freq": fr["freq"], "mag_db": mag_sh,
            "phase": np.unwrap(np.angle(fr["H_rows"]), axis=-1), "analytic_mag_db": amag_sh,
            "analytic_inf_mag_db": amag_inf_sh, "poles": modes[1] if modes is not None else None,
            "energy": [None if e is None else {"curve": e, "ranges": {p: dec[f"range{p}"][row] for p in (50, 90, 99)}}
                       for e, row in zip(energy_sh, shown_rows)],
            "profile": {"centers": prof_env[0], "values": prof_env[1],
                        "power": {"t": pl["t"], "log_amplitude": pl["log_amplitude"]},
                        "exp": {"r": ex["r"], "log_amplitude": ex["log_amplitude"]}},
            "rms_profile": rms, "mean_kernel": mean_k, "forward_channels": C_fwd,
        }

    fams = P.families_from_checkpoint(ck)
    scaling = P.scaling_table(scaling_lengths, fams)
    prog(0.5, "parameter scaling")
    summary = ck.summary()
    return {
        "meta": {"L": L, "n_fft": L, "n_bins": n_bins, "channels_shown": {n: [list(x) for x in a["shown"]]
                                                                          for n, a in arrays["layers"].items()},
                 "analytic_grid_max": ANALYTIC_GRID, "static_export": STATIC_EXPORT_NOTE,
                 "timings_s": {"extract": t_extract, "analyze": time.perf_counter() - t0},
                 "units": {"lag": "taps", "t": "power-law exponent (|k| ~ (lag+1)^-t)", "r": "1/tap",
                           "range": "taps", "freq": "cycles/sample", "gain_db": "dB",
                           "half_life": "taps"}},
        "checkpoint": {"summary": summary, "warnings": list(ck.warnings), "card": dict(ck.card),
                       "layout": ck.layout, "config": dict(ck.config) if ck.config else {}},
        "kernels": kernel_table(ck),
        "layers": layer_rows,
        "channels": channel_rows,
        "params": {"per_layer": per_layer_params, "families": fams, "scaling": scaling,
                   "mark_L": kernels_mod[0].l_max},
        "analysis_warnings": warnings,
        "arrays": arrays,
    }


# ----------------------------------------------------------------------------------------------- figures
def report_figures(result: dict, max_heatmap_rows: int = 256) -> list[tuple[str, object]]:
    """(section title, plotly Figure) for a result of `analyze`, in page order."""
    from . import figures as FG

    arrays = result["arrays"]
    L = arrays["L"]
    figs = []
    for name, a in arrays["layers"].items():
        K = arrays["kernels"][name]
        shown = a["shown"]
        figs.append((f"{name}: kernels", FG.kernel_figure(arrays["kernels"], name, shown,
                                                          title=f"{name}: kernel taps, L={L:,}")))
        C_k, H, _ = K.shape
        rows = K[0] if H <= max_heatmap_rows else K[0, np.linspace(0, H - 1, max_heatmap_rows).astype(int)]
        figs.append((f"{name}: channel x lag", FG.heatmap_figure(rows, f"{name}: forward channel 0, feature x lag")))
        series = []
        for (c, h), env, fit in zip(shown, a["envelopes"], a["fits"]):
            if env is not None:
                series.append({"label": f"h={h}" if C_k == 1 else f"c={c}, h={h}", "centers": env[0],
                               "values": env[1], **fit})
        prof = a["profile"]
        series.append({"label": "layer RMS profile", **prof})
        figs.append((f"{name}: decay", FG.decay_figure(series, f"{name}: RMS envelope with power-law and "
                                                               f"exponential fits", L=L)))
        labels = [f"h={h}" if C_k == 1 else f"c={c}, h={h}" for c, h in shown]
        eser = [{"label": lab, **e} for lab, e in zip(labels, a["energy"]) if e is not None]
        if eser:
            figs.append((f"{name}: energy", FG.energy_figure(eser, f"{name}: cumulative energy vs lag "
                                                                   f"(markers: 50/90/99 % ranges)")))
        fser = []
        for i, lab in enumerate(labels):
            s = {"label": lab, "freq": a["freq"], "mag_db": a["mag_db"][i]}
            for key in ("analytic_mag_db", "analytic_inf_mag_db"):
                if a[key] is not None:
                    s[key] = a[key][i]
            fser.append(s)
        figs.append((f"{name}: frequency response", FG.frequency_figure(fser, f"{name}: |H| (rfft, n_fft = L)"
                                                                        + (" vs exact transfer function"
                                                                           if a["analytic_mag_db"] is not None else ""))))
        figs.append((f"{name}: phase", FG.phase_figure(
            [{"label": lab, "freq": a["freq"], "phase": a["phase"][i]} for i, lab in enumerate(labels)],
            f"{name}: phase of the DFT (unwrapped)")))
        if a["poles"] is not None:
            figs.append((f"{name}: poles", FG.pole_figure({name: a["poles"]}, f"{name}: poles (all features)")))
    figs.append(("parameter scaling", FG.scaling_figure(result["params"]["scaling"], mark_L=result["params"]["mark_L"])))
    return figs


# ----------------------------------------------------------------------------------------------- writing
def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        v = float(x)
        return v if math.isfinite(v) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, complex):
        return [x.real, x.imag]
    if x is None or isinstance(x, (str, int, bool)):
        return x
    return str(x)


def _json_result(result: dict) -> dict:
    return _jsonable({k: v for k, v in result.items() if k != "arrays"})


def _write_csv(path: str, rows: list[dict]) -> None:
    keys: list[str] = []
    for r in rows:
        for k in r:
            if k not in keys:
                keys.append(k)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: _csv_value(r.get(k)) for k in keys})


def _csv_value(v):
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return repr(v) if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(_jsonable(v))
    return _f(v)


def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if not math.isfinite(v):
            return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
        return f"{v:.4g}"
    if isinstance(v, (dict, list)):
        return html.escape(json.dumps(_jsonable(v))[:200])
    return html.escape(str(v))


def _html_table(rows: list[dict], keys: list[str] | None = None) -> str:
    if not rows:
        return "<p><em>none</em></p>"
    if keys is None:
        keys = []
        for r in rows:
            for k in r:
                if k not in keys:
                    keys.append(k)
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in keys)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(k, ''))}</td>" for k in keys) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """body{font-family:system-ui,sans-serif;margin:1.5em;max-width:1400px}
table{border-collapse:collapse;font-size:12px;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}
th{background:#f3f3f3}h2{margin-top:1.6em;border-bottom:1px solid #ddd}.warn{color:#a33}.scroll{overflow-x:auto}
.note{color:#555;font-size:13px}"""


def _figures_html(figs) -> str:
    parts = []
    for i, (title, fig) in enumerate(figs):
        parts.append(f"<h3>{html.escape(title)}</h3>")
        parts.append(fig.to_html(full_html=False, include_plotlyjs=(i == 0)))
    return "\n".join(parts)


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>{body}</body></html>")


_LAYER_KEYS = ["layer", "kind", "H", "C_k", "n_params", "n_params_formula", "profile_t", "profile_t_r2",
               "profile_r", "t_median", "t_iqr", "r_median", "range50_median", "range90_median",
               "range99_median", "peak_gain_db_median", "peak_gain_db_inf_median", "bandwidth_median",
               "centroid_median", "half_life", "median_half_life", "analytic_vs_fft_rel"]


def _export_png(figs, out_dir: str) -> dict:
    """Try static export with kaleido; returns {status, files, error}."""
    try:
        import kaleido  # noqa: F401
    except Exception:
        return {"status": "skipped: kaleido is not installed", "files": [], "how": STATIC_EXPORT_NOTE}
    files = []
    png_dir = os.path.join(out_dir, "png")
    try:
        os.makedirs(png_dir, exist_ok=True)
        for i, (title, fig) in enumerate(figs):
            path = os.path.join(png_dir, f"{i:02d}_" + "".join(ch if ch.isalnum() else "_" for ch in title) + ".png")
            fig.write_image(path)
            files.append(path)
        return {"status": "ok", "files": files}
    except Exception as e:  # kaleido without a browser, or any export failure
        return {"status": f"failed: {type(e).__name__}: {str(e)[:300]}", "files": files, "how": STATIC_EXPORT_NOTE}


def write_report(result: dict, out_dir, html_page: bool = True, png: bool | None = None, progress=None) -> dict:
    """Write an `analyze` result: report.json (every number; NaN/inf as null), channels.csv, layers.csv,
    kernels.csv, params_layers.csv, params_scaling.csv, report.html (offline, plotly.js inlined once) and,
    when kaleido + a browser work, png/*.png (png=None: try when kaleido is importable; False: never).
    Returns {name: path} of the files written."""
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    paths = {}
    for name, rows in (("channels", result["channels"]), ("layers", result["layers"]), ("kernels", result["kernels"]),
                       ("params_layers", result["params"]["per_layer"]), ("params_scaling", result["params"]["scaling"])):
        p = os.path.join(out_dir, f"{name}.csv")
        _write_csv(p, rows)
        paths[name + ".csv"] = p
    figs = None
    export = {"status": "not attempted", "how": STATIC_EXPORT_NOTE}
    if html_page or png:
        figs = report_figures(result)
        if progress:
            progress("figures built")
    if png is not False and figs is not None:
        export = _export_png(figs, out_dir) if (png or _kaleido_available()) else {
            "status": "skipped: kaleido is not installed", "how": STATIC_EXPORT_NOTE}
    data = _json_result(result)
    data["meta"]["static_export_result"] = _jsonable(export)
    p = os.path.join(out_dir, "report.json")
    with open(p, "w") as f:
        json.dump(data, f, indent=1, allow_nan=False)
    paths["report.json"] = p
    if html_page:
        s = result["checkpoint"]["summary"]
        body = [f"<h1>kernelscope report: {html.escape(str(s.get('file', '')))}</h1>",
                f"<p class='note'>kernel length L = {result['meta']['L']:,} taps; "
                f"analysis {result['meta']['timings_s']['analyze']:.2f} s. Numbers: report.json and the CSV files "
                f"next to this page. {html.escape(STATIC_EXPORT_NOTE)}</p>",
                "<h2>Checkpoint</h2>", _html_table([s])]
        warns = result["checkpoint"]["warnings"] + result["analysis_warnings"]
        if warns:
            body.append("<h2>Warnings</h2><ul>" + "".join(f"<li class='warn'>{html.escape(w)}</li>" for w in warns)
                        + "</ul>")
        if result["checkpoint"]["card"]:
            body.append("<h2>Model card</h2><pre>" + html.escape(json.dumps(_jsonable(result["checkpoint"]["card"]),
                                                                            indent=1)) + "</pre>")
        body += ["<h2>Layers</h2><div class='scroll'>", _html_table(result["layers"], [
            k for k in _LAYER_KEYS if any(k in r for r in result["layers"])]), "</div>",
                 "<h2>Kernels</h2>", _html_table(result["kernels"]),
                 "<h2>Parameters</h2>", _html_table(result["params"]["per_layer"]),
                 "<h2>Figures</h2>", _figures_html(figs)]
        p = os.path.join(out_dir, "report.html")
        with open(p, "w") as f:
            f.write(_page(f"kernelscope: {s.get('file', '')}", "\n".join(body)))
        paths["report.html"] = p
    for f in export.get("files", []) if isinstance(export, dict) else []:
        paths[os.path.relpath(f, out_dir)] = f
    return paths


def _kaleido_available() -> bool:
    try:
        import kaleido  # noqa: F401
        return True
    except Exception:
        return False


# ----------------------------------------------------------------------------------------------- compare
def compare_results(results: list[dict], labels: list[str] | None = None) -> dict:
    """Side-by-side comparison of several `analyze` results (all at the same L).

    Returns dict: labels, L, tables ({label: layer rows}), summaries, similarity (rows: layer index, a, b,
    ncc, best_lag, rel_l2, cosine of the layers' mean kernels and of their RMS profiles), matrices
    ({layer index: {"mean_kernel": (n, n) ncc, "rms_profile": (n, n) ncc}}), arrays (figure data).
    """
    from .compare import similarity, similarity_matrix

    if len(results) < 2:
        raise ValueError("compare needs at least two results")
    Ls = {r["meta"]["L"] for r in results}
    if len(Ls) != 1:
        raise ValueError(f"results were analysed at different lengths {sorted(Ls)}; use one L")
    L = Ls.pop()
    labels = list(labels) if labels else [str(r["checkpoint"]["summary"].get("file", i)) for i, r in enumerate(results)]
    seen: dict[str, int] = {}
    for i, lab in enumerate(labels):  # unique labels
        if lab in seen:
            labels[i] = f"{lab} ({i})"
        seen[lab] = i
    n_common = min(len(r["layers"]) for r in results)
    sim_rows, matrices = [], {}
    for li in range(n_common):
        layer_arrays = [list(r["arrays"]["layers"].values())[li] for r in results]
        for what in ("mean_kernel", "rms_profile"):
            X = np.stack([a[what] for a in layer_arrays])
            matrices.setdefault(li, {})[what] = similarity_matrix(X)
            for i in range(len(results)):
                for j in range(i + 1, len(results)):
                    try:
                        s = similarity(X[i], X[j])
                    except ValueError:
                        s = {"ncc": math.nan, "best_lag": None, "rel_l2": math.nan, "cosine": math.nan}
                    sim_rows.append({"layer_index": li, "what": what, "a": labels[i], "b": labels[j], **s})
    return {
        "labels": labels, "L": L,
        "summaries": [{"label": lab, **r["checkpoint"]["summary"]} for lab, r in zip(labels, results)],
        "tables": {lab: r["layers"] for lab, r in zip(labels, results)},
        "warnings": {lab: r["checkpoint"]["warnings"] + r["analysis_warnings"] for lab, r in zip(labels, results)},
        "similarity": sim_rows,
        "matrices": matrices,
        "scaling": [dict(row, family=f"{lab}: {row['family']}") for lab, r in zip(labels, results)
                    for row in r["params"]["scaling"] if row["family"].startswith("this model")],
        "arrays": {"results": results},
    }


def compare_figures(cmp: dict) -> list[tuple[str, object]]:
    """(title, Figure) for a `compare_results` result: overlaid layer envelopes, mean-kernel spectra,
    similarity heatmaps per layer, and the parameter scaling of each checkpoint."""
    from . import figures as FG

    results, labels = cmp["arrays"]["results"], cmp["labels"]
    figs = []
    n_common = min(len(r["layers"]) for r in results)
    for li in range(n_common):
        series, fser = [], []
        for lab, r in zip(labels, results):
            name, a = list(r["arrays"]["layers"].items())[li]
            series.append({"label": f"{lab} [{name}]", **a["profile"]})
            mk = a["mean_kernel"]
            Hm = sfft.rfft(mk, workers=FFT_WORKERS)
            with np.errstate(divide="ignore"):
                fser.append({"label": f"{lab} [{name}]", "freq": sfft.rfftfreq(mk.size), "mag_db": 20 * np.log10(np.abs(Hm))})
        figs.append((f"layer {li}: decay (RMS profile)", FG.decay_figure(series, f"layer {li}: RMS profile envelopes and fits",
                                                                         L=cmp["L"])))
        figs.append((f"layer {li}: mean kernel spectrum", FG.frequency_figure(fser, f"layer {li}: |H| of the mean kernel")))
        for what in ("mean_kernel", "rms_profile"):
            figs.append((f"layer {li}: similarity of {what.replace('_', ' ')}s",
                         FG.similarity_figure(cmp["matrices"][li][what], labels,
                                              f"layer {li}: ncc of the {what.replace('_', ' ')}s")))
    figs.append(("parameter scaling", FG.scaling_figure(cmp["scaling"])))
    return figs


def write_compare(cmp: dict, out_dir, html_page: bool = True) -> dict:
    """Write a `compare_results` result: compare.json, compare_layers.csv, compare_similarity.csv,
    compare_summary.csv and compare.html. Returns {name: path}."""
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    paths = {}
    layer_rows = [{"checkpoint": lab, **row} for lab, rows in cmp["tables"].items() for row in rows]
    for name, rows in (("compare_layers", layer_rows), ("compare_similarity", cmp["similarity"]),
                       ("compare_summary", cmp["summaries"])):
        p = os.path.join(out_dir, f"{name}.csv")
        _write_csv(p, rows)
        paths[name + ".csv"] = p
    data = _jsonable({k: v for k, v in cmp.items() if k != "arrays"})
    data["static_export"] = STATIC_EXPORT_NOTE
    p = os.path.join(out_dir, "compare.json")
    with open(p, "w") as f:
        json.dump(data, f, indent=1, allow_nan=False)
    paths["compare.json"] = p
    if html_page:
        body = [f"<h1>kernelscope comparison ({len(cmp['labels'])} checkpoints, L = {cmp['L']:,})</h1>",
                "<h2>Checkpoints</h2><div class='scroll'>", _html_table(cmp["summaries"]), "</div>"]
        for lab, rows in cmp["tables"].items():
            body += [f"<h2>{html.escape(lab)}</h2><div class='scroll'>",
                     _html_table(rows, [k for k in _LAYER_KEYS if any(k in r for r in rows)]), "</div>"]
            if cmp["warnings"].get(lab):
                body.append("<ul>" + "".join(f"<li class='warn'>{html.escape(w)}</li>" for w in cmp["warnings"][lab])
                            + "</ul>")
        body += ["<h2>Similarity per layer</h2>", _html_table(cmp["similarity"]),
                 "<h2>Figures</h2>", _figures_html(compare_figures(cmp))]
        p = os.path.join(out_dir, "compare.html")
        with open(p, "w") as f:
            f.write(_page("kernelscope comparison", "\n".join(body)))
        paths["compare.html"] = p
    return paths

