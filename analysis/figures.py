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

from .decay import anchor_reference  # noqa: F401  (kept importable here; its home is analysis.decay)
from .decimate import DEFAULT_BUCKETS, extreme_indices, reduce_columns

if TYPE_CHECKING:
    from analysis.attribution import Attribution

__all__ = [
    "kernel_figure", "heatmap_figure", "decay_figure", "frequency_figure", "phase_figure", "energy_figure",
    "pole_figure", "scaling_figure",
    "attribution_figure", "fit_curve_figure", "similarity_figure", "intervention_figure", "decimate", "pool_columns",
    "PALETTE", "model_colors", "shades", "channel_label", "place_legend", "anchor_reference", "MAGNITUDE_TICKS",
]

#: Most points per line trace: `analysis.decimate` keeps each bucket's min and max (about 2 buckets per pixel of a
#: full-width plot), so peaks survive.
MAX_POINTS = 2 * DEFAULT_BUCKETS + 2
#: The one palette: a page colours model i of its chosen models with PALETTE[i] in every chart (`model_colors`).
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf"]
_PALETTE = PALETTE
#: Tick labels of magnitudes: 1e-06, never SI prefixes (1µ, 1n, 1p, 1f read as units or typos).
MAGNITUDE_TICKS = {"exponentformat": "e", "showexponent": "all"}
#: Pixels one vertical legend row takes (font 11) and the space under the plot for tick labels + axis title.
LEGEND_ROW_PX, AXIS_BAND_PX = 18, 58


def _color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def model_colors(names) -> dict[str, str]:
    """{model name: colour}: the one colour of each of a page's models, in the order the page lists them."""
    return {str(n): _color(i) for i, n in enumerate(names)}


def _mix(color: str, t: float) -> str:
    """'#rrggbb' mixed towards white (t > 0) or black (t < 0) by |t|."""
    rgb = np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)], dtype=np.float64)
    rgb = rgb + (255.0 - rgb) * t if t > 0 else rgb * (1.0 + t)
    return "#" + "".join(f"{int(round(v)):02x}" for v in np.clip(rgb, 0, 255))


def shades(color: str | None, n: int) -> list[str]:
    """n distinct colours for the channels of one model: its colour first, then lighter and darker shades of
    it; without a model colour (one model on the page), the palette."""
    if color is None:
        return [_color(i) for i in range(n)]
    steps = [0.0, 0.45, -0.4, 0.7, -0.6, 0.25, -0.2, 0.82]
    return [_mix(color, steps[i % len(steps)]) for i in range(n)]


def channel_label(c: int, h: int, C_k: int, bidirectional: bool = False) -> str:
    """A kernel channel's name: 'h=3' (one channel), 'forward h=3' / 'backward h=3' (bidirectional: the first
    half of the C_k channels run forward, the second half backward), 'c=1, h=3' otherwise."""
    if bidirectional and C_k >= 2:
        C = C_k // 2
        way = "forward" if c < C else "backward"
        return f"{way} h={h}" if C == 1 else f"{way} c={c % C}, h={h}"
    return f"h={h}" if C_k == 1 else f"c={c}, h={h}"


def _legend_items(fig: go.Figure) -> int:
    return sum(1 for t in fig.data if t.showlegend is not False and t.name)


def place_legend(fig: go.Figure, where: str = "auto") -> go.Figure:
    """Put the legend where it cannot cover the plot, an axis title or the chart title.

    'right': plotly's vertical legend right of the plot (the right margin grows to fit it). 'below': a horizontal
    legend at the bottom of the figure (yref 'container'; its entries wrap, one per row on a narrow panel), with the bottom margin grown by its rows so that the
    x tick labels and axis title (AXIS_BAND_PX) sit between the plot and the legend. 'auto': below for up to 12
    entries (side-by-side panels keep their width), else right."""
    n = _legend_items(fig)
    if where == "auto":
        where = "below" if n <= 12 else "right"
    if where == "below":
        # horizontal: plotly pushes the LEFT margin by a vertical legend's width wherever it sits (a blank band
        # beside the y axis); a horizontal one only takes rows at the bottom (entries wrap to the figure's width)
        fig.update_layout(legend={"orientation": "h", "yref": "container", "y": 0.0, "yanchor": "bottom",
                                  "xref": "container", "x": 0.0, "xanchor": "left", "font": {"size": 11},
                                  "tracegroupgap": 0, "bgcolor": "rgba(255,255,255,0)"},
                          margin={"b": AXIS_BAND_PX + LEGEND_ROW_PX * n + 8})
        height = fig.layout.height
        if height is not None:  # keep the plot area: the legend adds to the figure's height
            fig.update_layout(height=int(height) + LEGEND_ROW_PX * n)
    elif where == "right":
        fig.update_layout(legend={"orientation": "v", "yref": "paper", "y": 1.0, "yanchor": "top",
                                  "xref": "paper", "x": 1.02, "xanchor": "left", "font": {"size": 11}})
    else:
        raise ValueError(f"where must be 'auto', 'below' or 'right', got {where!r}")
    return fig


def _style(fig: go.Figure, **layout) -> go.Figure:
    """White background, light grid, 1e-06 style tick labels (cheaper than a named template per figure)."""
    fig.update_layout(plot_bgcolor="white", paper_bgcolor="white", **layout)
    # automargin: the margins grow to fit tick labels and axis titles, so a title never sits on the tick labels
    fig.update_xaxes(gridcolor="#e8e8e8", zerolinecolor="#c8c8c8", linecolor="#888", showline=True, automargin=True)
    fig.update_yaxes(gridcolor="#e8e8e8", zerolinecolor="#c8c8c8", linecolor="#888", showline=True, automargin=True,
                     **MAGNITUDE_TICKS)
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
    """(index (n,), values (n,)) of a 1-D series y over x = 0..len-1 (x = 1..len with ``log``), reduced to at most
    ``max_points`` points by `analysis.decimate.extreme_indices` (per-bucket min and max in index order)."""
    y = np.asarray(y, dtype=np.float64)
    n_buckets = max(1, (max_points - 2) // 2)
    idx = extreme_indices(y, n_buckets, np.arange(1, y.size + 1, dtype=np.float64) if log else None, log)
    return idx, y[idx]


def pool_columns(K2d, max_cols: int = 1024, log: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
    """A (rows, L) array reduced to at most ``max_cols`` lag columns (`analysis.decimate.reduce_columns`: the
    signed value of largest |.| per column). Returns (pooled (rows, n), lag edges (n + 1,), widest column in taps)."""
    pooled, edges = reduce_columns(K2d, max_cols, log)
    return pooled, edges, int(np.diff(edges).max())


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
                  max_points: int = MAX_POINTS, color: str | None = None, bidirectional: bool = False) -> go.Figure:
    """Kernel taps of one layer for a few channels (long kernels min/max-decimated to ``max_points``).

    kernels: {layer name: (C, H, L) array} (as `analysis.extract.extract_kernels` returns); layer: a name or
    an index into the dict; channels: feature indices h (forward channel c = 0) or (c, h) pairs (default
    the first 4 features); log_x: x = lag + 1 on a log axis; log_y: plot |k| on a log axis;
    overlay_envelope: True (draw `analysis.decay.envelope` peak-hold of each plotted channel),
    (centers, values), or {label: (centers, values)} (drawn in the colour of the channel whose label it ends
    with); ideal: (L,) known ideal kernel (dashed); color: the model's colour (channels in its shades, see
    `shades`; None: palette colours); bidirectional: name channels forward / backward (`channel_label`).
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
    cols = shades(color, len(chans))
    labels = [channel_label(c, h, C, bidirectional) for c, h in chans]
    fig = go.Figure()
    xs = np.arange(1, L + 1) if log_x else np.arange(L)
    for i, (c, h) in enumerate(chans):
        y = np.abs(K[c, h]) if log_y else K[c, h]
        idx = extreme_indices(y, max(1, (max_points - 2) // 2), xs if log_x else None, log_x)
        fig.add_trace(go.Scatter(x=xs[idx].astype(np.int32), y=_f32(y[idx]), mode="lines", name=labels[i],
                                 line={"width": 1, "color": cols[i]}))
    env = overlay_envelope
    if env is True:
        from .decay import MIN_FIT_LENGTH, envelope

        env = ({f"envelope {lab}": envelope(K[c, h], 64, "max") for lab, (c, h) in zip(labels, chans)}
               if L >= MIN_FIT_LENGTH else None)
    if env is not None and not isinstance(env, dict):
        env = {"envelope": env}
    for i, (label, (centers, values)) in enumerate((env or {}).items()):
        centers = np.asarray(centers, dtype=np.float64)
        owner = [j for j, lab in enumerate(labels) if label.endswith(" " + lab)]
        fig.add_trace(go.Scatter(x=centers + 1 if log_x else centers, y=_finite(values), mode="lines+markers",
                                 name=label, line={"dash": "dot", "width": 1.5,
                                                   "color": cols[owner[0]] if owner else _color(i)},
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


def heatmap_figure(K2d, title: str = "", max_cols: int = DEFAULT_BUCKETS // 2, y_labels=None,
                   colorscale: str = "RdBu_r", symmetric: bool = True, log_x: bool = False) -> go.Figure:
    """Channel x lag heatmap of a (rows, L) kernel array. Long kernels are reduced to ``max_cols`` lag columns
    (each cell shows the signed tap of largest magnitude in its column, `analysis.decimate.reduce_columns`);
    log_x: columns equal in log(lag + 1) on a log axis of lag + 1, so the first taps get their own columns.
    Colours symmetric about 0. The x values are the columns' lag edges (n + 1,)."""
    pooled, edges, b = pool_columns(K2d, max_cols, log_x)
    rows = pooled.shape[0]
    y = list(y_labels) if y_labels is not None else list(range(rows))
    zmax = float(np.nanmax(np.abs(pooled))) if pooled.size else 1.0
    kw = {"zmid": 0.0, "zmin": -zmax, "zmax": zmax} if symmetric and zmax > 0 else {}
    x = (edges + 1) if log_x else edges
    xname = "lag + 1" if log_x else "lag"
    fig = go.Figure(go.Heatmap(z=_f32(pooled), x=x.astype(np.int32), y=y, colorscale=colorscale,
                               colorbar={"title": {"text": "k"}, **MAGNITUDE_TICKS}, **kw,
                               hovertemplate=f"{xname} %{{x}}<br>channel %{{y}}<br>k %{{z:.3g}}<extra></extra>"))
    note = f"; max |k| per column of up to {b:,} taps" if b > 1 else ""
    _style(fig, title=title or "kernel heatmap",
           xaxis_title=("lag + 1 (taps, log" if log_x else "lag (taps") + note + ")", yaxis_title="channel")
    if log_x:
        fig.update_xaxes(type="log")
    return fig


# ----------------------------------------------------------------------------------------------- decay
def decay_figure(series, title: str = "decay envelope", L: int | None = None) -> go.Figure:
    """Decay envelopes on log-log axes with their fitted power-law and exponential lines.

    series: a list (or one) of dicts: label, centers (lags), values (envelope, e.g. RMS per log bin from
    `analysis.decay.envelope(k, stat="rms")`), optional color (its model's, `model_colors`), optional power = dict(t, log_amplitude) (|k| = A pos^-t,
    `power_law_fit`), optional exp = dict(r, log_amplitude) (|k| = A exp(-r pos), `exp_fit`).
    x = pos = lag + 1. L: extent of the fitted lines (default the largest center + 1).
    """
    if isinstance(series, dict):
        series = [series]
    fig = go.Figure()
    xmax = L if L is not None else max((float(np.max(s["centers"])) + 1 for s in series), default=10.0)
    pos = np.geomspace(1.0, max(2.0, xmax), 200)
    for i, s in enumerate(series):
        col = s.get("color") or _color(i)
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
                     max_points: int = MAX_POINTS) -> go.Figure:
    """Magnitude responses in dB (long responses min/max-decimated per bucket of frequency, or of log frequency).

    series: a list (or one) of dicts: label, freq (cycles/sample), mag_db (from
    `analysis.frequency.frequency_response`), optional color (its model's, `model_colors`), optional
    analytic_freq / analytic_mag_db (the exact SSM transfer function of the length-L kernel, drawn dashed over
    the FFT curve) and analytic_inf_mag_db (that of the infinitely long kernel, dotted).
    """
    if isinstance(series, dict):
        series = [series]
    fig = go.Figure()
    n_buckets = max(1, (max_points - 2) // 2)

    def line(f, m):
        f = np.asarray(f, dtype=np.float64)
        m = _finite(m)
        if log_x:
            keep = f > 0
            f, m = f[keep], m[keep]
        idx = extreme_indices(m, n_buckets, f, log_x) if f.size else np.arange(0)
        return _f32(f[idx]), _f32(m[idx])

    for i, s in enumerate(series):
        col = s.get("color") or _color(i)
        label = s.get("label", f"series {i}")
        x, y = line(s["freq"], s["mag_db"])
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=f"{label} (FFT)" if "analytic_mag_db" in s
                                 else label, line={"color": col, "width": 1.2}))
        fa = s.get("analytic_freq", s["freq"])
        if s.get("analytic_mag_db") is not None:
            x, y = line(fa, s["analytic_mag_db"])
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=f"{label} (analytic, length L)",
                                     line={"color": col, "dash": "dash", "width": 2}, opacity=0.7))
        if s.get("analytic_inf_mag_db") is not None:
            x, y = line(fa, s["analytic_inf_mag_db"])
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=f"{label} (analytic, L → ∞)",
                                     line={"color": col, "dash": "dot", "width": 1.5}, opacity=0.7))
    _style(fig, title=title, xaxis_title="frequency (cycles/sample)", yaxis_title="gain (dB)")
    fig.update_xaxes(**MAGNITUDE_TICKS)
    if log_x:
        fig.update_xaxes(type="log")
    return fig


def phase_figure(series, title: str = "phase response", max_points: int = MAX_POINTS,
                 log_x: bool = False) -> go.Figure:
    """Unwrapped phase (rad) against frequency (cycles/sample), min/max-decimated like `frequency_figure`.

    series: a list (or one) of dicts: label, freq, phase (as `analysis.frequency.frequency_response` returns),
    optional color."""
    if isinstance(series, dict):
        series = [series]
    fig = go.Figure()
    for i, s in enumerate(series):
        f = np.asarray(s["freq"], dtype=np.float64)
        ph = _finite(s["phase"])
        if log_x:
            keep = f > 0
            f, ph = f[keep], ph[keep]
        idx = extreme_indices(ph, max(1, (max_points - 2) // 2), f, log_x) if f.size else np.arange(0)
        fig.add_trace(go.Scatter(x=_f32(f[idx]), y=_f32(ph[idx]), mode="lines", name=s.get("label", f"series {i}"),
                                 line={"color": s.get("color") or _color(i), "width": 1.2}))
    _style(fig, title=title, xaxis_title="frequency (cycles/sample)", yaxis_title="phase (rad, unwrapped)")
    fig.update_xaxes(**MAGNITUDE_TICKS)
    if log_x:
        fig.update_xaxes(type="log")
    return fig


def energy_figure(series, title: str = "cumulative energy", max_points: int = MAX_POINTS) -> go.Figure:
    """Cumulative energy fraction against lag (log x = lag + 1), with the 50/90/99 % levels.

    series: a list (or one) of dicts: label, curve (L,) from `analysis.decay.energy_curve`, optional
    ranges {50: n, 90: n, 99: n} (taps, `analysis.decay.effective_range`) marked on the curve."""
    if isinstance(series, dict):
        series = [series]
    fig = go.Figure()
    for i, s in enumerate(series):
        idx, v = decimate(s["curve"], max_points, log=True)
        col = s.get("color") or _color(i)
        fig.add_trace(go.Scatter(x=_f32(idx + 1), y=_f32(v), mode="lines", name=s.get("label", f"series {i}"),
                                 line={"color": col, "width": 1.2}))
        rng = {int(p): n for p, n in (s.get("ranges") or {}).items() if n is not None and np.isfinite(n)}
        if rng:  # lags 0..n-1 hold the fraction: the curve reaches it at lag n-1, i.e. x = n
            fig.add_trace(go.Scatter(x=[float(n) for n in rng.values()], y=[p / 100 for p in rng], mode="markers",
                                     marker={"color": col, "size": 7, "symbol": "diamond"}, showlegend=False,
                                     text=[f"{p} %: {int(n):,} taps" for p, n in rng.items()], hoverinfo="text"))
    for p in (0.5, 0.9, 0.99):
        fig.add_hline(y=p, line={"color": "#aaa", "dash": "dot", "width": 1})
    _style(fig, title=title, xaxis_title="lag + 1 (taps)", yaxis_title="energy fraction in lags 0..lag")
    fig.update_xaxes(type="log")
    return fig


def pole_figure(poles, title: str = "poles", max_points: int = 20000, colors: dict | None = None) -> go.Figure:
    """Discrete-time SSM poles in the complex plane with the unit circle (|lambda| < 1: stable, decaying).

    poles: a complex array (any shape; e.g. (H, M) from `analysis.extract.ssm_modes`) or {label: array};
    colors: {label: colour} (a page's `model_colors`; default the palette in order).
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
                                 marker={"size": 5, "color": (colors or {}).get(label) or _color(i),
                                         "opacity": 0.7},
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
def _clip(text: str, n: int) -> str:
    """text cut to n characters with '…' (a subtitle must fit its panel; the page shows the full note)."""
    return text if len(text) <= n else text[: n - 1] + "…"


def attribution_figure(result: Attribution, x=None, title: str | None = None,
                       max_points: int = MAX_POINTS) -> go.Figure:
    """Integrated-Gradients attribution per input position (top) and mean |attr| against distance from the
    output position (bottom, log-log). result: the `analysis.attribution.Attribution` of ``attribute``;
    x: optional input (L,) (or (L, d), summed) drawn faintly on a second axis for reference."""
    a = np.asarray(result.attr, dtype=np.float64)
    pos = int(result.position)
    fig = make_subplots(rows=2, cols=1, vertical_spacing=0.16,
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
    if x is not None:
        fig.update_yaxes(title_text="input", row=1, col=1, secondary_y=True, showgrid=False)
    fig.update_yaxes(title_text="mean |attribution|", type="log", row=2, col=1)
    _style(fig, title={"text": title or f"{result.method} attribution",
                       "subtitle": {"text": f"{_clip(result.note.split(' (')[0], 60)} · δ = {result.delta:.2g}"}},
           height=650, margin={"t": 90})
    return place_legend(fig, "below")


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


# ----------------------------------------------------------------------------------------------- interventions
#: x axis of each intervention kind: (title, log axis). compress is drawn against the kernel parameters each point
#: keeps per (channel, feature) (the record's params_per_channel), so SGConv d and S4 / S4D N' share one axis.
INTERVENTION_X = {"truncate": ("K: first lag zeroed (taps; K = L changes nothing)", True),
                  "decay": ("extra decay t: kernel × (lag + 1)^-t", False),
                  "compress": ("kernel parameters kept per channel (S·d, or 4·N' modes)", True),
                  "scales": ("SGConv scale removed (index)", False)}


def intervention_figure(records, title: str | None = None, colors: dict | None = None) -> go.Figure:
    """Metric against the intervened value, one colour per model: each point with its 95 % interval as error bars,
    the unchanged model's metric as a dashed horizontal line with its 95 % interval as a light band.

    records: one `analysis.intervene.intervene` record, or {model name: record} (same kind and metric). Accuracy
    is drawn in % (x100), NMSE as is. x: K (log axis) for truncate, t for decay, kernel parameters per channel
    (log axis) for compress, the scale index for scales. Raises ValueError for records of different kinds or
    metrics.
    """
    recs = records if isinstance(records, dict) and "kind" not in records else {"model": records}
    if not recs:
        raise ValueError("no intervention records to draw")
    kinds = {r["kind"] for r in recs.values()}
    metrics = {r["metric_name"] for r in recs.values()}
    if len(kinds) != 1 or len(metrics) != 1:
        raise ValueError(f"records of one kind and one metric can share a figure, got kinds {sorted(kinds)} and "
                         f"metrics {sorted(metrics)}")
    kind, metric = kinds.pop(), metrics.pop()
    scale = 100.0 if metric == "accuracy" else 1.0
    colors = colors or model_colors(list(recs))
    fig = go.Figure()
    xs_all = [np.asarray(r["params_per_channel"] if kind == "compress" else r["values"], dtype=np.float64)
              for r in recs.values()]
    lo_x = min(float(x.min()) for x in xs_all)
    hi_x = max(float(x.max()) for x in xs_all)
    if lo_x == hi_x:  # one point: a short baseline segment around it
        lo_x, hi_x = (lo_x / 2, hi_x * 2) if INTERVENTION_X[kind][1] else (lo_x - 0.5, hi_x + 0.5)
    head = {"truncate": "K", "decay": "t", "scales": "scale"}
    for (name, r), x in zip(recs.items(), xs_all):
        c = colors[str(name)]
        y = _finite(np.asarray(r["metric"], dtype=np.float64) * scale)
        lo = _finite(np.asarray(r["ci_low"], dtype=np.float64) * scale)
        hi = _finite(np.asarray(r["ci_high"], dtype=np.float64) * scale)
        b = float(r["baseline"]) * scale
        b_lo, b_hi = (float(v) * scale for v in r["baseline_ci"])
        fig.add_trace(go.Scatter(x=[lo_x, hi_x, hi_x, lo_x, lo_x], y=[b_lo, b_lo, b_hi, b_hi, b_lo], fill="toself",
                                 mode="none", fillcolor=_mix(c, 0.8), opacity=0.6, hoverinfo="skip",
                                 showlegend=False, legendgroup=str(name), name=f"{name}: unchanged 95 % interval"))
        fig.add_trace(go.Scatter(x=[lo_x, hi_x], y=[b, b], mode="lines", line={"color": c, "dash": "dash", "width": 1.5},
                                 legendgroup=str(name), name=f"{name}: unchanged",
                                 hovertemplate=f"unchanged: %{{y:.4g}} [{b_lo:.4g}, {b_hi:.4g}]<extra></extra>"))
        if kind == "compress":
            label = "N'" if r.get("compress_method") == "ssm_modes" else "d"
            text = [f"{label}={v:g}" for v in r["values"]]
        elif kind == "scales" and r.get("scale_lags"):
            text = [f"scale {v:g}: lags {a}-{b_}" for v, (a, b_) in zip(r["values"], r["scale_lags"])]
        else:
            text = [f"{head[kind]}={v:g}" for v in r["values"]]
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=f"{name}: {kind}", legendgroup=str(name),
                                 line={"color": c, "width": 2}, marker={"size": 7, "color": c}, text=text,
                                 error_y={"type": "data", "symmetric": False, "array": hi - y, "arrayminus": y - lo,
                                          "color": c, "thickness": 1.2, "width": 4},
                                 customdata=np.stack([lo, hi], axis=-1),
                                 hovertemplate="%{text}<br>%{y:.4g} [%{customdata[0]:.4g}, %{customdata[1]:.4g}]"
                                               "<extra>%{fullData.name}</extra>"))
    xtitle, log_x = INTERVENTION_X[kind]
    ytitle = "accuracy (%), 95 % interval" if metric == "accuracy" else "NMSE, 95 % interval"
    first = next(iter(recs.values()))
    title = title or (f"{kind} on {first.get('layer') or 'every layer'}: {metric} on {first.get('n')} examples")
    _style(fig, title=title, xaxis_title=xtitle, yaxis_title=ytitle)
    if log_x:
        fig.update_xaxes(type="log")
    elif kind == "scales":
        fig.update_xaxes(dtick=1)
    return place_legend(fig, "auto")
