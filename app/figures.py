"""The few figure pieces the app needs beyond `analysis.figures`: overlays of several models on shared axes, the
SGConv reference envelope curve, hover text, and every figure's data as a table (for CSV).

Nothing here is analysis: the curves come from `analysis` and the builders of `analysis.figures`; this module
only merges, labels and tabulates them.
"""
from __future__ import annotations

import base64

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analysis import figures as afig

_TEMPLATE = "plotly_white"


def _array(v):
    """A plotly trace array as numpy (figures built here hold numpy arrays; JSON round trips hold bdata)."""
    if v is None:
        return None
    if isinstance(v, dict) and "bdata" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
        shape = v.get("shape")
        if shape:
            a = a.reshape([int(s) for s in str(shape).split(",")])
        return a
    return np.asarray(v)


def lag_hover(fig: go.Figure, log_x: bool = False) -> go.Figure:
    """Hover text 'lag, value' on every line trace (on a log x axis the axis shows lag + 1; hover shows lag)."""
    for tr in fig.data:
        if isinstance(tr, go.Scatter):
            if log_x:
                tr.customdata = np.asarray(tr.x, dtype=np.float64) - 1
                tr.hovertemplate = "lag %{customdata:.0f}<br>value %{y:.4g}<extra>%{fullData.name}</extra>"
            else:
                tr.hovertemplate = "lag %{x}<br>value %{y:.4g}<extra>%{fullData.name}</extra>"
    return fig


def overlay(figs: dict[str, go.Figure], title: str, xaxis_title: str, yaxis_title: str, log_x: bool = False,
            log_y: bool = False) -> go.Figure:
    """Several single-model figures on one set of axes: traces renamed '<model>: <trace>', one colour per model,
    line styles kept (so a model's envelope / reference lines stay dotted / dashed)."""
    out = go.Figure()
    dashes = ["solid", "dash", "dot", "dashdot", "longdash"]
    for i, (model, fig) in enumerate(figs.items()):
        color = afig._color(i)
        n_main = 0
        for tr in fig.data:
            tr = go.Scatter(tr) if isinstance(tr, go.Scatter) else tr
            tr.name = f"{model}: {tr.name}"
            if isinstance(tr, go.Scatter) and tr.line is not None:
                is_main = tr.line.dash in (None, "solid") and tr.name and "ideal" not in tr.name
                if is_main:
                    tr.line.dash = dashes[n_main % len(dashes)]
                    n_main += 1
                if "ideal" not in (tr.name or ""):
                    tr.line.color = color
            tr.legendgroup = model
            out.add_trace(tr)
    out.update_layout(template=_TEMPLATE, title=title, xaxis_title=xaxis_title, yaxis_title=yaxis_title,
                      legend={"itemsizing": "constant"})
    if log_x:
        out.update_xaxes(type="log")
    if log_y:
        out.update_yaxes(type="log")
    return out


def style_references(fig: go.Figure, n_channels: int) -> go.Figure:
    """Draw the SGConv reference envelopes (traces named 'reference ...') as plain dashed lines that stand out
    from the kernel: dark grey when one channel is plotted, else in their channel's colour."""
    j = 0
    for tr in fig.data:
        if isinstance(tr, go.Scatter) and (tr.name or "").startswith("reference"):
            tr.mode = "lines"
            tr.line.dash = "dash"
            tr.line.width = 2
            tr.line.color = "#333333" if n_channels == 1 else afig._color(j)  # the j-th plotted channel's
            j += 1
    return fig


def mark_sparse(fig: go.Figure, max_points: int = 3) -> go.Figure:
    """Draw line traces that kept only a few points (e.g. the ideal spike on a log axis) as markers."""
    for tr in fig.data:
        if isinstance(tr, go.Scatter) and tr.y is not None and len(tr.y) <= max_points and tr.mode == "lines":
            tr.mode = "lines+markers"
            tr.marker = {"size": 9, "symbol": "x", "color": tr.line.color}
    return fig


def clip_log_y(fig: go.Figure, data, pad_decades: float = 0.5) -> go.Figure:
    """Fix a log y axis to the range of `data` (arrays of the plotted values; zeros and NaN ignored) plus a
    margin, so that lines extrapolated far beyond the data do not squash it. Leaves autorange if no data."""
    vals = [np.asarray(v, dtype=np.float64).ravel() for v in data]
    vals = np.concatenate(vals) if vals else np.empty(0)
    vals = vals[np.isfinite(vals) & (vals > 0)]
    if vals.size:
        lo, hi = np.log10(vals.min()) - pad_decades, np.log10(vals.max()) + pad_decades
        fig.update_yaxes(range=[float(lo), float(hi)])
    return fig


def compact(fig: go.Figure, height: int | None = None, legend_below: bool = False) -> go.Figure:
    """Tighter margins (and optionally a fixed height / a legend under the plot) for column layouts."""
    fig.update_layout(margin={"l": 60, "r": 20, "t": 60, "b": 50}, title_font_size=14)
    if height:
        fig.update_layout(height=height)
    if legend_below:
        fig.update_layout(legend={"orientation": "h", "yanchor": "top", "y": -0.18, "xanchor": "left", "x": 0})
    return fig


def figure_data(fig: go.Figure) -> pd.DataFrame:
    """What a figure draws, as a long table: one row per point (trace, x, y) or heatmap cell (trace, x, y, z)."""
    frames = []
    for tr in fig.data:
        name = tr.name or tr.type
        if tr.type == "heatmap":
            z = _array(tr.z)
            if z is None:
                continue
            z = np.asarray(z, dtype=np.float64)
            xs = _array(tr.x) if tr.x is not None else np.arange(z.shape[1])
            ys = _array(tr.y) if tr.y is not None else np.arange(z.shape[0])
            yy, xx = np.meshgrid(np.asarray(ys), np.asarray(xs), indexing="ij")
            frames.append(pd.DataFrame({"trace": name, "x": xx.ravel(), "y": yy.ravel(), "z": z.ravel()}))
        elif tr.x is not None and tr.y is not None and getattr(tr, "hoverinfo", None) != "skip":
            x, y = _array(tr.x), _array(tr.y)
            frames.append(pd.DataFrame({"trace": name, "x": np.asarray(x), "y": np.asarray(y)}))
    if not frames:
        return pd.DataFrame(columns=["trace", "x", "y"])
    return pd.concat(frames, ignore_index=True)
