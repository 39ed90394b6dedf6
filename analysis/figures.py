"""Plotly figures of kernels, decay, frequency responses, poles, parameter scaling, attribution and fits.

Every function takes numbers computed by the analysis modules (plain numpy arrays / dicts / row lists)
and returns a ``plotly.graph_objects.Figure``; nothing here computes an analysis result except display
helpers (decimation, pooling, the envelope of a plotted channel). The report's HTML page and the
Streamlit app use these same functions.

Units: lag in taps; "lag + 1" on log axes (SGConv's pos convention, so lag 0 can be shown); frequency in
cycles/sample (0..0.5); gains in dB.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

if TYPE_CHECKING:
    from analysis.attribution import Attribution

__all__ = [
    "kernel_figure", "heatmap_figure", "decay_figure", "frequency_figure", "phase_figure", "energy_figure",
    "pole_figure", "scaling_figure",
    "attribution_figure", "fit_curve_figure", "similarity_figure", "decimate", "pool_columns",
]

#: Most points per line trace (longer series are min/max decimated so peaks survive).
MAX_POINTS = 8000
_PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22", "#17becf"]


def _color(i: int) -> str:
    return _PALETTE[i % len(_PALETTE)]


def _style(fig: go.Figure, **layout) -> go.Figure:
    """White background and light grid (cheaper than applying a named template to every figure)."""
    fig.update_layout(plot_bgcolor="white", paper_bgcolor="white", **layout)
    fig.update_xaxes(gridcolor="#e8e8e8", zerolinecolor="#c8c8c8", linecolor="#888", showline=True)
    fig.update_yaxes(gridcolor="#e8e8e8", zerolinecolor="#c8c8c8", linecolor="#888", showline=True)
    return fig


def _f32(a) -> np.ndarray:
    """Compact float32 copy for plotting (plotly embeds numpy arrays as base64 of their dtype)."""
    return np.asarray(a, dtype=np.float32)


def _finite(y) -> np.ndarray:
    """float array with +-inf replaced by NaN (plotly cannot draw infinities)."""
    y = np.asarray(y, dtype=np.float64).copy()
    y[~np.isfinite(y)] = np.nan
    return y


# ----------------------------------------------------------------------------------------------- display helpers
def decimate(y, max_points: int = MAX_POINTS, log: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of a long 1-D series reduced to about ``max_points`` points, keeping each block's
    minimum and maximum (in index order) so spikes stay visible. ``log``: geometric blocks (for log-x plots).
    Returns (index (n,) int, values (n,))."""
    y = np.asarray(y, dtype=np.float64)
    n = y.size
    if n <= max_points:
        return np.arange(n), y
    n_blocks = max(1, max_points // 2)
    if log:
        starts = np.unique(np.concatenate([[0], np.geomspace(1, n, n_blocks).astype(np.int64) - 1]))
        starts = starts[starts < n]
    else:
        starts = np.unique(np.linspace(0, n, n_blocks, endpoint=False).astype(np.int64))
    block = np.repeat(np.arange(starts.size), np.diff(np.append(starts, n)))
    nan = ~np.isfinite(y)
    lo = np.where(nan, np.inf, y)
    hi = np.where(nan, -np.inf, y)
    first = np.r_[True, block[1:] != block[:-1]]  # first element of each block after a stable sort by block
    i_min = np.lexsort((lo, block))[first]  # per block: smallest value first (ties: sort is stable by index)
    i_max = np.lexsort((-hi, block))[first]
    idx = np.unique(np.concatenate([i_min, i_max]))
    return idx, y[idx]


def pool_columns(K2d, max_cols: int = 1024) -> tuple[np.ndarray, np.ndarray, int]:
    """Pool a (rows, L) array to at most ``max_cols`` columns, keeping the signed value of largest |.| in each
    block of taps. Returns (pooled (rows, n), first lag of each column (n,), block size in taps)."""
    K = np.asarray(K2d, dtype=np.float64)
    if K.ndim != 2:
        raise ValueError(f"expected a 2-D (rows, lags) array, got shape {K.shape}")
    L = K.shape[1]
    b = max(1, math.ceil(L / max_cols))
    if b == 1:
        return K, np.arange(L), 1
    n = math.ceil(L / b)
    pad = n * b - L
    Kp = np.pad(K, ((0, 0), (0, pad))).reshape(K.shape[0], n, b)
    j = np.abs(Kp).argmax(-1)
    pooled = np.take_along_axis(Kp, j[..., None], -1)[..., 0]
    return pooled, np.arange(n) * b, b


def _channel_list(channels, C: int, H: int) -> list[tuple[int, int]]:
    if channels is None:
        return [(0, h) for h in range(min(H, 4))]
    if isinstance(channels, (int, np.integer)):
        channels = [int(channels)]
    out = []
    for ch in channels:
        c, h = (0, int(ch)) if np.ndim(ch) == 0 else (int(ch[0]), int(ch[1]))
        if not (0 <= c < C and 0 <= h < H):
            raise ValueError(f"channel (c={c}, h={h}) is outside the kernel's (C={C}, H={H})")
        out.append((c, h))
    return out


# ----------------------------------------------------------------------------------------------- kernels
def kernel_figure(kernels: dict, layer, channels=None, log_x: bool = False, log_y: bool = False,
                  overlay_envelope=None, ideal=None, title: str | None = None,
                  max_points: int = MAX_POINTS) -> go.Figure:
    """Kernel taps of one layer for a few channels.

    kernels: {layer name: (C, H, L) array} (as `analysis.extract.extract_kernels` returns); layer: a name or
    an index into the dict; channels: feature indices h (forward channel c = 0) or (c, h) pairs (default
    the first 4 features); log_x: x = lag + 1 on a log axis; log_y: plot |k| on a log axis;
    overlay_envelope: True (draw `analysis.decay.envelope` peak-hold of each plotted channel),
    (centers, values), or {label: (centers, values)}; ideal: (L,) known ideal kernel (dashed).
    """
    names = list(kernels)
    name = names[layer] if isinstance(layer, (int, np.integer)) else layer
    if name not in kernels:
        raise KeyError(f"no layer {layer!r}; layers are {names}")
    K = np.asarray(kernels[name])
    if K.ndim == 2:
        K = K[None]
    C, H, L = K.shape
    chans = _channel_list(channels, C, H)
    fig = go.Figure()
    lag = np.arange(L)
    xs = lag + 1 if log_x else lag
    for i, (c, h) in enumerate(chans):
        y = np.abs(K[c, h]) if log_y else K[c, h]
        idx, v = decimate(y, max_points, log=log_x)
        label = f"h={h}" if C == 1 else f"c={c}, h={h}"
        fig.add_trace(go.Scatter(x=xs[idx].astype(np.int32), y=_f32(v), mode="lines", name=label,
                                 line={"width": 1, "color": _color(i)}))
    env = overlay_envelope
    if env is True:
        from .decay import MIN_FIT_LENGTH, envelope

        if L >= MIN_FIT_LENGTH:
            env = {f"envelope h={h}" if C == 1 else f"envelope c={c}, h={h}": envelope(K[c, h], 64, "max")
                   for c, h in chans}
        else:
            env = None
    if env is not None and not isinstance(env, dict):
        env = {"envelope": env}
    for i, (label, (centers, values)) in enumerate((env or {}).items()):
        centers = np.asarray(centers, dtype=np.float64)
        fig.add_trace(go.Scatter(x=centers + 1 if log_x else centers, y=_finite(values), mode="lines+markers",
                                 name=label, line={"dash": "dot", "width": 1.5, "color": _color(i)},
                                 marker={"size": 3}))
    if ideal is not None:
        k_ideal = np.asarray(ideal, dtype=np.float64)
        y = np.abs(k_ideal) if log_y else k_ideal
        idx, v = decimate(y, max_points, log=log_x)
        xi = np.arange(k_ideal.size)
        if log_y:
            keep = v > 0
            idx, v = idx[keep], v[keep]
        fig.add_trace(go.Scatter(x=(xi + 1 if log_x else xi)[idx], y=v, mode="lines", name="ideal",
                                 line={"dash": "dash", "color": "black", "width": 1.5}))
    _style(fig, title=title or f"{name}: kernel ({len(chans)} channel(s), L={L:,})",
                      xaxis_title="lag + 1 (taps)" if log_x else "lag (taps)",
                      yaxis_title="|k|" if log_y else "k", legend={"itemsizing": "constant"})
    if log_x:
        fig.update_xaxes(type="log")
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def heatmap_figure(K2d, title: str = "", max_cols: int = 1024, y_labels=None, colorscale: str = "RdBu_r",
                   symmetric: bool = True) -> go.Figure:
    """Channel x lag heatmap of a (rows, L) kernel array; long kernels are pooled to ``max_cols`` columns
    (each cell shows the signed tap of largest magnitude in its block). Colours symmetric about 0."""
    pooled, lags, b = pool_columns(K2d, max_cols)
    rows = pooled.shape[0]
    y = list(y_labels) if y_labels is not None else list(range(rows))
    zmax = float(np.nanmax(np.abs(pooled))) if pooled.size else 1.0
    kw = {"zmid": 0.0, "zmin": -zmax, "zmax": zmax} if symmetric and zmax > 0 else {}
    fig = go.Figure(go.Heatmap(z=_f32(pooled), x=lags.astype(np.int32), y=y, colorscale=colorscale, colorbar={"title": "k"}, **kw,
                               hovertemplate="lag %{x}<br>channel %{y}<br>k %{z:.3g}<extra></extra>"))
    note = f" (max-|k| over blocks of {b} taps)" if b > 1 else ""
    _style(fig, title=(title or "kernel heatmap") + note, xaxis_title="lag (taps)",
                      yaxis_title="channel")
    return fig


# ----------------------------------------------------------------------------------------------- decay
def decay_figure(series, title: str = "decay envelope", L: int | None = None) -> go.Figure:
    """Decay envelopes on log-log axes with their fitted power-law and exponential lines.

    series: a list (or one) of dicts: label, centers (lags), values (envelope, e.g. RMS per log bin from
    `analysis.decay.envelope(k, stat="rms")`), optional power = dict(t, log_amplitude) (|k| = A pos^-t,
    `power_law_fit`), optional exp = dict(r, log_amplitude) (|k| = A exp(-r pos), `exp_fit`).
    x = pos = lag + 1. L: extent of the fitted lines (default the largest center + 1).
    """
    if isinstance(series, dict):
        series = [series]
    fig = go.Figure()
    xmax = L if L is not None else max((float(np.max(s["centers"])) + 1 for s in series), default=10.0)
    pos = np.geomspace(1.0, max(2.0, xmax), 200)
    for i, s in enumerate(series):
        col = _color(i)
        label = s.get("label", f"series {i}")
        y = _finite(s["values"])
        y[y <= 0] = np.nan
        fig.add_trace(go.Scatter(x=np.asarray(s["centers"], dtype=np.float64) + 1, y=y, mode="lines+markers",
                                 name=label, line={"color": col, "width": 1.5}, marker={"size": 4}))
        pw = s.get("power")
        if pw and np.isfinite(pw.get("t", np.nan)) and np.isfinite(pw.get("log_amplitude", np.nan)):
            fig.add_trace(go.Scatter(x=pos, y=np.exp(pw["log_amplitude"]) * pos ** (-pw["t"]), mode="lines",
                                     name=f"{label}: power law t={pw['t']:.2f}",
                                     line={"color": col, "dash": "dash", "width": 1}))
        ex = s.get("exp")
        if ex and np.isfinite(ex.get("r", np.nan)) and np.isfinite(ex.get("log_amplitude", np.nan)):
            with np.errstate(over="ignore", under="ignore"):
                ye = np.exp(ex["log_amplitude"] - ex["r"] * pos)
            ye[(ye <= 0) | ~np.isfinite(ye)] = np.nan
            fig.add_trace(go.Scatter(x=pos, y=ye, mode="lines", name=f"{label}: exp r={ex['r']:.2g}/tap",
                                     line={"color": col, "dash": "dot", "width": 1}))
    _style(fig, title=title, xaxis_title="lag + 1 (taps)", yaxis_title="|k| envelope")
    fig.update_xaxes(type="log")
    fig.update_yaxes(type="log")
    return fig


# ----------------------------------------------------------------------------------------------- frequency
def frequency_figure(series, title: str = "frequency response", log_x: bool = False,
                     max_points: int = 4000) -> go.Figure:
    """Magnitude responses in dB.

    series: a list (or one) of dicts: label, freq (cycles/sample), mag_db (from
    `analysis.frequency.frequency_response`), optional analytic_freq / analytic_mag_db (the exact SSM
    transfer function of the length-L kernel, drawn dashed over the FFT curve) and analytic_inf_mag_db (that of
    the infinitely long kernel, dotted).
    """
    if isinstance(series, dict):
        series = [series]
    fig = go.Figure()
    for i, s in enumerate(series):
        col = _color(i)
        label = s.get("label", f"series {i}")
        f = np.asarray(s["freq"], dtype=np.float64)
        m = _finite(s["mag_db"])
        if log_x:
            keep = f > 0
            f, m = f[keep], m[keep]
        idx, v = decimate(m, max_points, log=log_x)
        fig.add_trace(go.Scatter(x=_f32(f[idx]), y=_f32(v), mode="lines", name=f"{label} (FFT)" if "analytic_mag_db" in s
                                 else label, line={"color": col, "width": 1.2}))
        if s.get("analytic_mag_db") is not None:
            fa = np.asarray(s.get("analytic_freq", s["freq"]), dtype=np.float64)
            ma = _finite(s["analytic_mag_db"])
            if log_x:
                keep = fa > 0
                fa, ma = fa[keep], ma[keep]
            idx, v = decimate(ma, max_points, log=log_x)
            fig.add_trace(go.Scatter(x=_f32(fa[idx]), y=_f32(v), mode="lines", name=f"{label} (analytic, length L)",
                                     line={"color": col, "dash": "dash", "width": 2}, opacity=0.7))
        if s.get("analytic_inf_mag_db") is not None:
            fa = np.asarray(s.get("analytic_freq", s["freq"]), dtype=np.float64)
            idx, v = decimate(_finite(s["analytic_inf_mag_db"]), max_points)
            fig.add_trace(go.Scatter(x=_f32(fa[idx]), y=_f32(v), mode="lines", name=f"{label} (analytic, L → ∞)",
                                     line={"color": col, "dash": "dot", "width": 1.5}, opacity=0.7))
    _style(fig, title=title, xaxis_title="frequency (cycles/sample)",
                      yaxis_title="gain (dB)")
    if log_x:
        fig.update_xaxes(type="log")
    return fig


def phase_figure(series, title: str = "phase response", max_points: int = 4000) -> go.Figure:
    """Unwrapped phase (rad) against frequency (cycles/sample).

    series: a list (or one) of dicts: label, freq, phase (as `analysis.frequency.frequency_response` returns)."""
    if isinstance(series, dict):
        series = [series]
    fig = go.Figure()
    for i, s in enumerate(series):
        idx, v = decimate(_finite(s["phase"]), max_points)
        f = np.asarray(s["freq"], dtype=np.float64)
        fig.add_trace(go.Scatter(x=_f32(f[idx]), y=_f32(v), mode="lines", name=s.get("label", f"series {i}"),
                                 line={"color": _color(i), "width": 1.2}))
    return _style(fig, title=title, xaxis_title="frequency (cycles/sample)", yaxis_title="phase (rad, unwrapped)")


def energy_figure(series, title: str = "cumulative energy", max_points: int = MAX_POINTS) -> go.Figure:
    """Cumulative energy fraction against lag (log x = lag + 1), with the 50/90/99 % levels.

    series: a list (or one) of dicts: label, curve (L,) from `analysis.decay.energy_curve`, optional
    ranges {50: n, 90: n, 99: n} (taps, `analysis.decay.effective_range`) marked on the curve."""
    if isinstance(series, dict):
        series = [series]
    fig = go.Figure()
    for i, s in enumerate(series):
        idx, v = decimate(s["curve"], max_points, log=True)
        fig.add_trace(go.Scatter(x=_f32(idx + 1), y=_f32(v), mode="lines", name=s.get("label", f"series {i}"),
                                 line={"color": _color(i), "width": 1.2}))
        rng = {int(p): n for p, n in (s.get("ranges") or {}).items() if n is not None and np.isfinite(n)}
        if rng:  # lags 0..n-1 hold the fraction: the curve reaches it at lag n-1, i.e. x = n
            fig.add_trace(go.Scatter(x=[float(n) for n in rng.values()], y=[p / 100 for p in rng], mode="markers",
                                     marker={"color": _color(i), "size": 7, "symbol": "diamond"}, showlegend=False,
                                     text=[f"{p} %: {int(n):,} taps" for p, n in rng.items()], hoverinfo="text"))
    for p in (0.5, 0.9, 0.99):
        fig.add_hline(y=p, line={"color": "#aaa", "dash": "dot", "width": 1})
    _style(fig, title=title, xaxis_title="lag + 1 (taps)", yaxis_title="energy fraction in lags 0..lag")
    fig.update_xaxes(type="log")
    return fig


def pole_figure(poles, title: str = "poles", max_points: int = 20000) -> go.Figure:
    """Discrete-time SSM poles in the complex plane with the unit circle (|lambda| < 1: stable, decaying).

    poles: a complex array (any shape; e.g. (H, M) from `analysis.extract.ssm_modes`) or {label: array}.
    Hover shows |lambda| and the mode's half-life ln2 / -ln|lambda| in taps.
    """
    groups = poles if isinstance(poles, dict) else {"poles": poles}
    fig = go.Figure()
    th = np.linspace(0, 2 * np.pi, 361)
    fig.add_trace(go.Scatter(x=np.cos(th), y=np.sin(th), mode="lines", name="unit circle",
                             line={"color": "gray", "width": 1, "dash": "dot"}, hoverinfo="skip"))
    for i, (label, lam) in enumerate(groups.items()):
        lam = np.asarray(lam, dtype=np.complex128).reshape(-1)
        if lam.size > max_points:
            lam = lam[np.linspace(0, lam.size - 1, max_points).astype(np.int64)]
        mag = np.abs(lam)
        with np.errstate(divide="ignore"):
            rate = -np.log(mag)
        half = np.where(rate > 0, math.log(2) / np.where(rate > 0, rate, 1.0), np.inf)
        fig.add_trace(go.Scatter(x=lam.real, y=lam.imag, mode="markers", name=label,
                                 marker={"size": 5, "color": _color(i), "opacity": 0.7},
                                 customdata=_f32(np.stack([mag, _finite(half)], -1)),
                                 hovertemplate="λ = %{x:.5f} %{y:+.5f}i<br>|λ| = %{customdata[0]:.6f}"
                                               "<br>half-life %{customdata[1]:.4g} taps<extra></extra>"))
    _style(fig, title=title, xaxis_title="Re λ", yaxis_title="Im λ")
    fig.update_yaxes(scaleanchor="x", scaleratio=1)
    return fig


# ----------------------------------------------------------------------------------------------- parameters
def scaling_figure(rows, title: str = "kernel parameters per layer vs length", mark_L: int | None = None) -> go.Figure:
    """Log-log parameter count against length, one line per family (rows of `analysis.params.scaling_table`).
    mark_L: draw a vertical line at this length (e.g. the model's training length)."""
    fig = go.Figure()
    fams: dict[str, list] = {}
    for r in rows:
        fams.setdefault(r["family"], []).append(r)
    for i, (fam, rs) in enumerate(fams.items()):
        rs = [r for r in rs if r.get("params") is not None]
        if not rs:
            continue
        fig.add_trace(go.Scatter(x=[r["L"] for r in rs], y=[r["params"] for r in rs], mode="lines+markers",
                                 name=fam, line={"color": _color(i), "width": 3 if fam.startswith("this") else 1.5}))
    if mark_L:
        fig.add_vline(x=mark_L, line={"color": "gray", "dash": "dot"})
    _style(fig, title=title, xaxis_title="length L (taps)",
                      yaxis_title="kernel parameters per layer")
    fig.update_xaxes(type="log")
    fig.update_yaxes(type="log")
    return fig


def fit_curve_figure(rows, title: str = "best SGConv fit: error vs parameters") -> go.Figure:
    """Relative L2 error of the best SGConv fit against its parameter count (log-log), labelled by d.
    rows: `analysis.fit.fit_curve` rows, or {label: rows} to overlay several targets."""
    groups = rows if isinstance(rows, dict) else {"fit": rows}
    fig = go.Figure()
    for i, (label, rs) in enumerate(groups.items()):
        fig.add_trace(go.Scatter(x=[r["n_params"] for r in rs], y=[max(r["rel_error"], 1e-16) for r in rs],
                                 mode="lines+markers+text", name=label, text=[f"d={r['d']}" for r in rs],
                                 textposition="top center", line={"color": _color(i)}))
    _style(fig, title=title, xaxis_title="SGConv parameters per kernel (S·d)",
                      yaxis_title="relative L2 error")
    fig.update_xaxes(type="log")
    fig.update_yaxes(type="log")
    return fig


# ----------------------------------------------------------------------------------------------- attribution
def attribution_figure(result: Attribution, x=None, title: str | None = None,
                       max_points: int = MAX_POINTS) -> go.Figure:
    """Integrated-Gradients attribution per input position (top) and mean |attr| against distance from the
    output position (bottom, log-log). result: the `analysis.attribution.Attribution` of ``attribute``;
    x: optional input (L,) (or (L, d), summed) drawn faintly on a second axis for reference."""
    a = np.asarray(result.attr, dtype=np.float64)
    pos = int(result.position)
    fig = make_subplots(rows=2, cols=1, vertical_spacing=0.14,
                        subplot_titles=("attribution per input position", "mean |attribution| vs distance"),
                        specs=[[{"secondary_y": True}], [{}]])
    idx, v = decimate(a, max_points)
    fig.add_trace(go.Scatter(x=idx, y=v, mode="lines", name="attribution", line={"color": _color(0), "width": 1}),
                  row=1, col=1)
    if x is not None:
        xv = np.asarray(x, dtype=np.float64)
        if xv.ndim > 1:
            xv = xv.reshape(xv.shape[0], -1).sum(-1)
        j, w = decimate(xv, max_points)
        fig.add_trace(go.Scatter(x=j, y=w, mode="lines", name="input", opacity=0.35,
                                 line={"color": "gray", "width": 1}), row=1, col=1, secondary_y=True)
    fig.add_vline(x=pos, line={"color": "black", "dash": "dot"}, row=1, col=1)
    centers, values = result.distance_profile
    values = _finite(values)
    values[values <= 0] = np.nan
    fig.add_trace(go.Scatter(x=np.asarray(centers) + 1, y=values, mode="lines+markers", name="|attr| by distance",
                             line={"color": _color(1)}), row=2, col=1)
    fig.update_xaxes(title_text="input position", row=1, col=1)
    fig.update_xaxes(title_text="distance from output position + 1 (taps)", type="log", row=2, col=1)
    fig.update_yaxes(title_text="attribution", row=1, col=1, secondary_y=False)
    fig.update_yaxes(title_text="mean |attribution|", type="log", row=2, col=1)
    _style(fig, title=title or f"{result.method}: {result.note}  (delta {result.delta:.2g})", height=650)
    return fig


# ----------------------------------------------------------------------------------------------- comparison
def similarity_figure(matrix, labels, title: str = "similarity (max normalised cross-correlation)") -> go.Figure:
    """Heatmap of a square similarity matrix (e.g. `analysis.compare.similarity_matrix`), values in [-1, 1]."""
    S = np.asarray(matrix, dtype=np.float64)
    labels = [str(x) for x in labels]
    fig = go.Figure(go.Heatmap(z=S, x=labels, y=labels, zmin=-1, zmax=1, zmid=0, colorscale="RdBu_r",
                               text=np.vectorize(lambda v: "" if np.isnan(v) else f"{v:.3f}")(S),
                               texttemplate="%{text}", colorbar={"title": "ncc"}))
    _style(fig, title=title)
    fig.update_yaxes(autorange="reversed")
    return fig
