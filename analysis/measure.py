"""The report's numbers: `analyze(ck, L)` -> `analysis.records.Report` (pure computation, no file IO).

What is computed, per layer and per kernel channel (c, h) of the (C_k, H, L) kernel at length L:
- decay (`analysis.decay.batch_decay`, all channels at once): power-law exponent t with its log-log r²,
  exponential rate r (1/tap) with its r², effective ranges holding 50/90/99 % of the energy;
- frequency (`analysis.frequency.frequency_summary`): peak gain (linear, dB, frequency), -3 dB bandwidth
  around the peak, spectral centroid, from the rfft at n_fft = L;
- SSMs (S4/S4D): poles -> per-mode decay rates, slowest rate and half-life per feature and per layer, and the
  largest difference between the exact transfer function and the FFT of the extracted kernel on the rfft grid
  (subsampled to at most ``ANALYTIC_GRID`` frequencies), and on that grid the peak gain of the L -> infinity
  transfer function (``peak_gain_db_inf``; when every |pole| < 1);
- per layer: medians / IQRs of the above, the power-law / exponential fits of the layer's RMS profile
  sqrt(mean_channels k²), parameter counts (counted vs formula); scaling rows for the parameter plot.
``Report.figures`` holds the numpy data for the figures (not written to JSON).

The batch functions run the 1-D definitions (`analysis.decay.power_law_fit`, `exp_fit`, `effective_range`,
`analysis.frequency.bandwidth`) over all rows at once; tests/test_report.py checks them against independent
known answers.
"""
from __future__ import annotations

import math
import time

import numpy as np
from scipy import fft as sfft

from sgconv_core.families import family
from sgconv_core.lengths import default_length

from . import params as P
from .decay import (
    MIN_FIT_LENGTH,
    batch_decay,
    energy_curve,
    envelope,
    exp_fit,
    median_iqr,
    pole_decay,
    power_law_fit,
    summarize_layer,
)
from .extract import extract_kernels, kernel_table, ssm_modes
from .frequency import _db, frequency_summary, ssm_response_db, ssm_transfer, ssm_transfer_on_grid
from .records import (
    ChannelStats,
    CheckpointInfo,
    LayerFigures,
    LayerParams,
    LayerStats,
    ParamsInfo,
    Report,
    RMSProfile,
    SSMStats,
)

__all__ = ["analyze", "select_channels", "formula_params", "ANALYTIC_GRID", "CHUNK_ELEMENTS", "MAX_BYTES"]

#: Most frequencies at which the exact SSM transfer function is compared with the FFT, per layer.
ANALYTIC_GRID = 1025
FFT_WORKERS = 2
#: Largest block of kernel values the vectorised fits work on at once (bounds their temporaries).
CHUNK_ELEMENTS = 1 << 24
#: analyze() refuses kernels larger than this (all layers, float64).
MAX_BYTES = 4 << 30
DEFAULT_CHANNELS = 4
_DECAY_KEYS = ("t", "t_r2", "r", "r_r2", "range50", "range90", "range99")
_FREQ_KEYS = ("peak_gain", "peak_gain_db", "peak_freq", "bandwidth", "centroid")


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


def formula_params(kernel) -> int | None:
    """Kernel parameters of a layer by its family's formula (`sgconv_core.families`), None where undefined.

    The length is the kernel's own raw length where it has one (SGConv: L_raw gives exactly the layer's number
    of scales), else its l_max by the length policy."""
    L = getattr(kernel, "raw_length", None) or default_length(kernel.l_max)
    try:
        return family(kernel.kind).count_params(L, kernel.H, kernel.C_k, **kernel.count_settings())
    except ValueError:
        return None


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


# ----------------------------------------------------------------------------------------------- SSM layers
class _SSM:
    """The SSM part of one layer: per-layer stats, per-feature slowest rates / half-lives, per-channel L -> inf
    peak gains, and the exact responses of the shown channels."""

    def __init__(self, modes, K: np.ndarray, freq: np.ndarray, L: int, shown):
        res, lam = modes
        pdec = pole_decay(lam)
        self.poles = lam
        self.slow_h = np.asarray(pdec["rates"]).min(1)  # (H,)
        with np.errstate(divide="ignore"):
            self.half_h = np.where(self.slow_h > 0, math.log(2) / np.where(self.slow_h > 0, self.slow_h, 1.0), np.inf)
        F = freq.size
        idx = np.unique(np.linspace(0, F - 1, min(F, ANALYTIC_GRID)).round().astype(np.int64))
        omega = 2 * np.pi * freq[idx]
        Hfft = sfft.rfft(K, axis=-1, workers=FFT_WORKERS)[..., idx]
        diff = np.abs(ssm_transfer_on_grid(res, lam, omega, L) - Hfft)
        scale = float(np.abs(Hfft).max()) or 1.0
        stable = bool(np.all(np.abs(lam) < 1))
        self.gain_inf_db = None
        if stable:  # L -> infinity: per-channel peak gain on the same subsampled grid
            self.gain_inf_db = _db(np.abs(ssm_transfer(res, lam, omega, None)).max(-1)).reshape(-1)
        self.stats = SSMStats(
            n_modes=int(lam.shape[-1]), slowest_rate=pdec["slowest_rate"], half_life=pdec["half_life"],
            median_half_life=float(np.median(self.half_h)), max_abs_pole=float(np.abs(lam).max()),
            unstable_modes=int((np.abs(lam) >= 1).sum()), analytic_vs_fft_max_abs=float(np.nanmax(diff)),
            analytic_vs_fft_rel=float(np.nanmax(diff)) / scale, analytic_grid_points=int(idx.size),
            peak_gain_db_inf_median=float(np.median(self.gain_inf_db)) if stable else None)
        r_sh = np.stack([res[c, h] for c, h in shown])
        l_sh = np.stack([lam[h] for _, h in shown])
        self.shown_db, self.shown_inf_db = ssm_response_db(r_sh, l_sh, freq, L)
        if not stable:  # the layer's L -> infinity response exists only when every pole is inside the circle
            self.shown_inf_db = None

    def channel_extras(self, row: int, h: int) -> dict:
        inf = float(self.gain_inf_db[row]) if self.gain_inf_db is not None else math.nan
        return {"slowest_rate": float(self.slow_h[h]), "half_life": float(self.half_h[h]), "peak_gain_db_inf": inf}


# ----------------------------------------------------------------------------------------------- one layer
def _channel_stats(name: str, li: int, dec: dict, fr: dict, shape, C_fwd: int, ssm: _SSM | None) -> list:
    C_k, H = shape
    out = []
    for row in range(C_k * H):
        c, h = divmod(row, H)
        extras = ssm.channel_extras(row, h) if ssm is not None else {}
        out.append(ChannelStats(
            layer=name, layer_index=li, c=c, h=h, direction="forward" if c < C_fwd else "backward",
            **{key: float(dec[key][row]) for key in _DECAY_KEYS}, **{key: float(fr[key][row]) for key in _FREQ_KEYS},
            **extras))
    return out


def _rms_profile(K: np.ndarray, C_fwd: int, n_bins: int) -> tuple:
    """(RMSProfile with its fits, the RMS profile (L,), the mean kernel (L,), (power-law r², exp r²)) of a
    layer's forward channels."""
    fwd = K[:C_fwd].reshape(-1, K.shape[-1])
    clean = np.where(np.isfinite(fwd), fwd, 0.0)
    rms = np.sqrt(np.mean(clean ** 2, axis=0))
    mean_k = clean.mean(0)
    if np.any(rms > 0):
        pl, ex = power_law_fit(rms, n_bins), exp_fit(rms, n_bins)
        centers, values = envelope(rms, n_bins, "rms")
    else:
        pl = ex = {"t": math.nan, "r": math.nan, "r2": math.nan, "log_amplitude": math.nan}
        centers, values = np.zeros(1), np.zeros(1)
    prof = RMSProfile(centers, values, pl["t"], pl["log_amplitude"], ex["r"], ex["log_amplitude"])
    return prof, rms, mean_k, (pl["r2"], ex["r2"])


def _layer_stats(kmod, name: str, shape, channels: list, dec: dict, fr: dict, prof: RMSProfile, r2s,
                 n_formula, ssm: _SSM | None) -> LayerStats:
    summ = summarize_layer([ch.row() for ch in channels])
    spread = {}
    for key in ("t", "r", "range50", "range90", "range99"):
        spread[f"{key}_median"] = summ[key]["median"]
        spread[f"{key}_iqr"] = summ[key]["iqr"]
    for key in ("t_r2", "r_r2", "peak_gain_db", "peak_freq", "bandwidth", "centroid"):
        spread[f"{key}_median"] = median_iqr(dec[key] if key in dec else fr[key])["median"]
    return LayerStats(layer=name, kind=kmod.kind, H=shape[1], C_k=shape[0], n_params=int(kmod.n_params),
                      n_params_formula=n_formula, profile_t=prof.t, profile_t_r2=r2s[0], profile_r=prof.r,
                      profile_r_r2=r2s[1], n_channels=summ["n_channels"], n_zero=summ["n_zero"], **spread,
                      ssm=ssm.stats if ssm is not None else None)


def _layer_figures(K2: np.ndarray, shown, shown_rows, dec: dict, fr: dict, ssm: _SSM | None, prof: RMSProfile,
                   rms, mean_k, C_fwd: int, n_bins: int) -> LayerFigures:
    envs, fits, energy = [], [], []
    for row in shown_rows:
        k = K2[row]
        envs.append(envelope(k, n_bins, "rms") if np.any(k) and np.isfinite(k).all() else None)
        fits.append({"power": {"t": dec["t"][row], "log_amplitude": dec["t_log_amplitude"][row]},
                     "exp": {"r": dec["r"][row], "log_amplitude": dec["r_log_amplitude"][row]}})
        energy.append({"curve": energy_curve(k), "ranges": {p: dec[f"range{p}"][row] for p in (50, 90, 99)}}
                      if dec["valid"][row] else None)
    return LayerFigures(
        shown=shown, envelopes=envs, fits=fits, freq=fr["freq"], mag_db=_db(np.abs(fr["H_rows"])),
        phase=np.unwrap(np.angle(fr["H_rows"]), axis=-1),
        analytic_mag_db=ssm.shown_db if ssm is not None else None,
        analytic_inf_mag_db=ssm.shown_inf_db if ssm is not None else None,
        poles=ssm.poles if ssm is not None else None, energy=energy, profile=prof, rms_profile=rms,
        mean_kernel=mean_k, forward_channels=C_fwd)


def _analyze_layer(li: int, kmod, name: str, K: np.ndarray, channels, n_bins: int, prog, warnings: list):
    """(LayerStats, [ChannelStats], LayerParams, LayerFigures) of one layer's kernel K (C_k, H, L)."""
    C_k, H, L = K.shape
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
    modes = ssm_modes(kmod)
    ssm = _SSM(modes, K, fr["freq"], L, shown) if modes is not None else None
    prog(1.0, f"{name}: poles and transfer functions" if modes is not None else f"{name}: tables")
    chans = _channel_stats(name, li, dec, fr, (C_k, H), C_fwd, ssm)
    prof, rms, mean_k, r2s = _rms_profile(K, C_fwd, n_bins)
    n_formula = formula_params(kmod)
    stats = _layer_stats(kmod, name, (C_k, H), chans, dec, fr, prof, r2s, n_formula, ssm)
    figs = _layer_figures(K2, shown, shown_rows, dec, fr, ssm, prof, rms, mean_k, C_fwd, n_bins)
    return stats, chans, LayerParams(name, kmod.kind, int(kmod.n_params), n_formula), figs


# ----------------------------------------------------------------------------------------------- analyze
def _checked_length(ck, L, max_bytes: int) -> int:
    L = ck.default_length if L is None else int(L)
    if L < MIN_FIT_LENGTH:
        raise ValueError(f"L must be at least {MIN_FIT_LENGTH} taps for the decay fits, got {L}")
    need = sum(k.C_k * k.H for k in ck.kernels) * L * 8
    if need > max_bytes:
        raise ValueError(f"the kernels at L={L:,} take {need / 2**30:.1f} GiB as float64 (limit "
                         f"{max_bytes / 2**30:.1f} GiB); ask for a shorter length")
    return L


def analyze(ck, L: int | None = None, channels=None, progress=None, n_bins: int = 64,
            scaling_lengths=P.DEFAULT_LENGTHS, max_bytes: int = MAX_BYTES) -> Report:
    """Every number of the report for one checkpoint (no file IO).

    Args: ck: a Checkpoint (sgconv_core.load); L: kernel length in taps (default ``ck.default_length``: the
        model's l_max, else the length policy's default; at least 8); channels: what the figures show per
        layer (see `select_channels`); progress: optional callable(fraction in [0, 1], message); max_bytes:
        refuse (ValueError) when all layers' float64 kernels would take more than this.
    Returns a `Report` (typed records; ``Report.to_dict()`` is the JSON the CLI writes).
    """
    t0 = time.perf_counter()
    L = _checked_length(ck, L, max_bytes)
    n_layers = len(ck.kernels)
    prog = _Progress(progress, 1.0 + 3.0 * n_layers + 0.5)
    prog(0.0, "extracting kernels")
    Ks = extract_kernels(ck, L, progress=lambda i, n: prog(1.0 / max(n, 1), f"extracted layer {i}/{n}"))
    t_extract = time.perf_counter() - t0
    layers, channel_stats, per_layer, figures, warnings = [], [], [], {}, []
    for li, (kmod, (name, K)) in enumerate(zip(ck.kernels, Ks.items(), strict=True)):
        stats, chans, lp, figs = _analyze_layer(li, kmod, name, K, channels, n_bins, prog, warnings)
        layers.append(stats)
        channel_stats.extend(chans)
        per_layer.append(lp)
        figures[name] = figs
    fams = P.families_from_checkpoint(ck)
    scaling = P.scaling_table(scaling_lengths, fams)
    prog(0.5, "parameter scaling")
    info = CheckpointInfo(summary=ck.summary(), warnings=list(ck.warnings), card=dict(ck.card), layout=ck.layout,
                          config=dict(ck.config) if ck.config else {})
    return Report(L=L, n_bins=n_bins, analytic_grid_max=ANALYTIC_GRID, checkpoint=info, kernels=kernel_table(ck),
                  layers=layers, channels=channel_stats,
                  params=ParamsInfo(per_layer, fams, scaling, ck.l_max), warnings=warnings,
                  figures=figures, timings={"extract": t_extract, "analyze": time.perf_counter() - t0},
                  kernel_arrays=Ks)
