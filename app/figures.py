"""The few figure pieces the app needs beyond `analysis.figures`: overlays of several models on shared axes, the
SGConv reference envelope curve, hover text, short panel titles, the page's model colours, the table formatting
of missing values and accuracies, and every figure's data as a table (for CSV).

Nothing here is analysis: the curves come from `analysis` and the builders of `analysis.figures`; this module
only merges, labels and tabulates them.
"""
from __future__ import annotations

import base64

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analysis import figures as afig


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


#: How many characters of title fit a panel, by the number of panels side by side (14 px title font on a
#: ~1,100 px wide main area; measured on the Kernels page's screenshots).
TITLE_CHARS = {1: 90, 2: 52, 3: 36, 4: 27}
#: Shown for a missing value in every table (never "None" / "nan").
MISSING = "–"


def model_colors(names) -> dict[str, str]:
    """{model: colour} of a page's chosen models: the one colour each model has in every chart of the page
    (`analysis.figures.model_colors`)."""
    return afig.model_colors(names)


def _shorten(text: str, n: int) -> str:
    """text cut in the middle to at most n characters ('digits-s…-v2')."""
    if len(text) <= n:
        return text
    if n <= 1:
        return text[:n]
    head = (n - 1) - (n - 1) // 3
    return text[:head] + "…" + text[len(text) - (n - 1 - head):] if n - 1 - head else text[:head] + "…"


def panel_title(model: str, what: str, detail: str = "", n_panels: int = 1) -> dict:
    """A plotly title for one panel of ``n_panels`` side by side: '<model> · <what> (<detail>)' when it fits,
    else with the model name cut in the middle ('…') and, if still too long, the detail dropped; the full text
    is then the subtitle (so nothing is clipped and nothing is lost). Returns a layout title dict."""
    full = f"{model} · {what}" + (f" ({detail})" if detail else "")
    budget = TITLE_CHARS.get(n_panels, TITLE_CHARS[4])
    if len(full) <= budget:
        return {"text": full}
    tail = f" · {what}" + (f" ({detail})" if detail else "")
    if len(tail) + 8 > budget:
        tail = f" · {what}"
    text = _shorten(model, max(8, budget - len(tail))) + tail
    if len(text) > budget:
        text = _shorten(text, budget)
    return {"text": text, "subtitle": {"text": full, "font": {"size": 11}}}


def fmt_missing(v, fmt: str = "{:.4g}") -> str:
    """A table cell: MISSING for None / NaN, else the value formatted (strings as they are)."""
    if v is None or (isinstance(v, float) and v != v):
        return MISSING
    if isinstance(v, str):
        return v
    return fmt.format(v)


def fmt_percent(fraction, digits: int = 2) -> str:
    """An accuracy stored as a fraction (0..1), shown in % like the plots: 0.9712 -> '97.12 %'; None -> MISSING."""
    if fraction is None or (isinstance(fraction, float) and fraction != fraction):
        return MISSING
    return f"{100.0 * float(fraction):.{digits}f} %"


def format_table(df: pd.DataFrame, formats: dict | None = None, percent=(), default: str = "{:.4g}",
                 keep=()) -> pd.DataFrame:
    """A table for display: every cell as text, missing values (None / NaN) as MISSING, numbers with
    ``formats[column]`` (a format string like '{:.3f}' or '{:,}', else ``default``), the ``percent`` columns (fractions
    0..1, e.g. accuracy) in % like the plots (`fmt_percent`). Columns in ``keep`` stay as they are (e.g. integer
    counts a table should sort numerically). Streamlit shows None as 'None' whatever the Styler says, so tables
    go through this before st.dataframe."""
    formats = formats or {}
    out = df.copy()
    for col in out.columns:
        if col in keep:
            continue
        if col in percent:
            out[col] = [fmt_percent(v) for v in out[col]]
        else:
            fmt = formats.get(col, default)
            out[col] = [fmt_missing(None if v is None or (isinstance(v, float) and v != v) else v, fmt)
                        if not isinstance(v, (bool, np.bool_)) else str(v) for v in out[col]]
    return out


def overlay(figs: dict[str, go.Figure], title: str, xaxis_title: str, yaxis_title: str, log_x: bool = False,
            log_y: bool = False, colors: dict[str, str] | None = None) -> go.Figure:
    """Several single-model figures on one set of axes: traces renamed '<model>: <trace>', one colour per model
    (``colors``, default `model_colors` of the figures' order), the model's channels in solid, dashed, dotted...
    lines, envelope / reference lines keeping their dotted / dashed style in the model's colour."""
    colors = colors or model_colors(list(figs))
    out = go.Figure()
    dashes = ["solid", "dash", "dot", "dashdot", "longdash"]
    for model, fig in figs.items():
        color = colors[model]
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
    afig._style(out, title=title, xaxis_title=xaxis_title, yaxis_title=yaxis_title, legend={"itemsizing": "constant"})
    if log_x:
        out.update_xaxes(type="log")
    if log_y:
        out.update_yaxes(type="log")
    return afig.place_legend(out, "right")


def style_references(fig: go.Figure, n_channels: int) -> go.Figure:
    """Draw the SGConv reference envelopes (traces named 'reference ...') as plain dashed lines that stand out
    from the kernel: dark grey when one channel is plotted, else in their channel's colour (the colour of the
    kernel trace whose name the reference's ends with)."""
    kernel_color = {tr.name: tr.line.color for tr in fig.data if isinstance(tr, go.Scatter) and tr.line is not None}
    for tr in fig.data:
        if isinstance(tr, go.Scatter) and (tr.name or "").startswith("reference"):
            tr.mode = "lines"
            tr.line.dash = "dash"
            tr.line.width = 2
            own = kernel_color.get((tr.name or "")[len("reference "):])
            tr.line.color = "#333333" if n_channels == 1 or own is None else own
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
    """Tighter margins (and optionally a fixed height / the legend under the plot, clear of the axis title:
    `analysis.figures.place_legend`) for column layouts. A title with a subtitle keeps room for both."""
    two_lines = bool(fig.layout.title.subtitle.text) if fig.layout.title and fig.layout.title.subtitle else False
    fig.update_layout(margin={"l": 60, "r": 20, "t": 78 if two_lines else 60, "b": 50}, title_font_size=14)
    if height:
        fig.update_layout(height=height)
    if legend_below:
        afig.place_legend(fig, "auto")
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
            xs, ys = np.asarray(xs)[:z.shape[1]], np.asarray(ys)[:z.shape[0]]  # bin edges: each cell's left one
            yy, xx = np.meshgrid(np.asarray(ys), np.asarray(xs), indexing="ij")
            frames.append(pd.DataFrame({"trace": name, "x": xx.ravel(), "y": yy.ravel(), "z": z.ravel()}))
        elif tr.x is not None and tr.y is not None and getattr(tr, "hoverinfo", None) != "skip":
            x, y = _array(tr.x), _array(tr.y)
            frames.append(pd.DataFrame({"trace": name, "x": np.asarray(x), "y": np.asarray(y)}))
    if not frames:
        return pd.DataFrame(columns=["trace", "x", "y"])
    return pd.concat(frames, ignore_index=True)
