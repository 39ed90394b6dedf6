"""Plotly figures of a sweep: metric vs decay and vs size (with the paper's curves beside ours, labelled as the
paper's), and live loss / validation curves."""
from __future__ import annotations

import math
from collections import defaultdict

import plotly.graph_objects as go

from ..figures import MAGNITUDE_TICKS, place_legend
from .spec import DECAY_NAME, PAPER_DECAY, PAPER_FAMILY, PAPER_KERNEL_DIM, SIZE_NAME, SweepSpec, metric_column

PAPER_LABEL = "paper (SGConv ablation, LRA-Text-level task)"
#: The paper's letters for the size knobs in run names (SGConv's kernel_dim is d, a state size N).
SHORT_SIZE = {"kernel_dim": "d", "d_state": "N"}
_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def axis_rows(spec: SweepSpec, rows: list[dict]) -> dict:
    """Split a sweep's database rows into its two axes: {'decay': {mode: [rows]}, 'size': [rows]}."""
    s = spec.resolved()
    by_key = {r["key"]: r for r in rows}
    out = {"decay": defaultdict(list), "size": []}
    size_mode = "fixed" if "fixed" in s.decay_modes else s.decay_modes[0]
    for run in s.expand(check=False):
        row = by_key.get(run.key())
        if row is None:
            continue
        if run.size == s.base_size and s.decays:  # the base point belongs to both axes
            out["decay"][run.decay_mode].append(row)
        if run.decay == float(s.base_decay) and run.decay_mode == size_mode and s.sizes:
            out["size"].append(row)
    return out


def _scale(metric: str) -> tuple[float, str]:
    """(factor, axis title) of a metric: the factor of `metric_column` (one unit in tables and plots)."""
    factor, _ = metric_column(metric)
    return factor, "test accuracy (%)" if metric == "accuracy" else "test NMSE (lower is better)"


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1; 0.0 for a single value) of a point's per-seed metrics.
    NaN values (a diverged run) are kept: the mean is then NaN, not silently the mean of the others."""
    n = len(values)
    if n == 0:
        return float("nan"), float("nan")
    m = sum(values) / n
    sd = (sum((v - m) ** 2 for v in values) / (n - 1)) ** 0.5 if n > 1 else 0.0
    return m, sd


def point_stats(spec: SweepSpec, rows: list[dict]) -> list[dict]:
    """One dict per grid point (decay, mode, size) with its seeds pooled: axis ('decay' | 'size' | 'both'),
    decay, decay_mode, size, n (seeds with a result), mean, sd (sample, ddof = 1), values (per seed, in seed
    order), metric, unit. Values are in the display unit of the metric (`metric_column`: accuracy in %, NMSE as
    is), the same numbers the plots draw. rows: the sweep's stored rows (as `Store.runs` gives them)."""
    s = spec.resolved()
    ax = axis_rows(s, rows)
    on_decay = {r["key"] for rs in ax["decay"].values() for r in rs}
    on_size = {r["key"] for r in ax["size"]}
    groups: dict = {}
    for r in list(rows):
        if r["key"] not in on_decay | on_size or r.get("test_metric") is None:
            continue
        pt = (r["decay_mode"], float(r["decay"]), int(r["size"]))
        axis = "both" if r["key"] in on_decay and r["key"] in on_size else "decay" if r["key"] in on_decay else "size"
        groups.setdefault(pt, {"axis": axis, "rows": []})["rows"].append(r)
    out = []
    for (mode, decay, size), g in sorted(groups.items()):
        rs = sorted(g["rows"], key=lambda r: r["seed"])
        metric = rs[0]["metric"]
        scale, unit = metric_column(metric)
        vals = [r["test_metric"] * scale for r in rs]
        m, sd = mean_sd(vals)
        out.append({"axis": g["axis"], "decay": decay, "decay_mode": mode, "size": size, "n": len(vals), "mean": m,
                    "sd": sd, "values": vals, "seeds": [r["seed"] for r in rs], "metric": metric, "unit": unit})
    return out


def _mean_by(rows: list[dict], x: str, scale: float) -> tuple[list, list, list, list]:
    """(x values, means, sample sds, n) of rows grouped by the field x (metric times scale)."""
    groups = defaultdict(list)
    for r in rows:
        if r.get("test_metric") is not None:
            groups[r[x]].append(r["test_metric"] * scale)
    xs = sorted(groups)
    stats = [mean_sd(groups[v]) for v in xs]
    return xs, [m for m, _ in stats], [sd for _, sd in stats], [len(groups[v]) for v in xs]


def _seeds_text(ns: list[int]) -> str:
    """'n = 3 seeds' (or 'n = 2-3 seeds' while a sweep is still running)."""
    if not ns:
        return "no seeds yet"
    lo, hi = min(ns), max(ns)
    return f"n = {hi} seed{'s' if hi > 1 else ''}" if lo == hi else f"n = {lo}-{hi} seeds"


def _add_paper(fig: go.Figure, ref: dict, metric: str) -> None:
    fig.add_trace(go.Scatter(x=list(ref), y=list(ref.values()), name=PAPER_LABEL, mode="lines+markers",
                             line=dict(color="gray", dash="dash"), marker=dict(symbol="diamond"),
                             yaxis="y" if metric == "accuracy" else "y2",
                             hovertemplate="%{x}: %{y:.2f} % (paper)<extra></extra>"))
    if metric != "accuracy":
        fig.update_layout(yaxis2=dict(title="paper accuracy (%)", overlaying="y", side="right", showgrid=False))


def decay_figure(spec: SweepSpec, rows: list[dict], metric: str, show_paper: bool = True) -> go.Figure:
    """Test metric vs decay (one line per decay mode; mean over seeds, error bars = sd); the paper's curve for SGConv."""
    s = spec.resolved()
    scale, ylab = _scale(metric)
    fig = go.Figure()
    for i, (mode, rs) in enumerate(sorted(axis_rows(s, rows)["decay"].items())):
        xs, ys, sds, ns = _mean_by(rs, "decay", scale)
        fig.add_trace(go.Scatter(x=xs, y=ys, name=f"ours: {s.family} {mode} ({_seeds_text(ns)}, mean ± sd)",
                                 mode="lines+markers", line=dict(color=_COLORS[i % len(_COLORS)]), customdata=ns,
                                 error_y=dict(type="data", array=sds, visible=max(ns, default=1) > 1),
                                 hovertemplate="%{x}: %{y:.4g} ± %{error_y.array:.2g} (n = %{customdata})"
                                               "<extra></extra>"))
    if show_paper and s.family == PAPER_FAMILY:
        _add_paper(fig, PAPER_DECAY, metric)
    xname = ("decay speed t (envelope ~ pos^-t; fixed: m = 2^t; frozen/learnable: (lag+1)^-t)" if DECAY_NAME[s.family] == "t"
             else "real-part factor r (Re A x r)" if s.ssm_knob == "real" else "dt factor r")
    size = f"{SIZE_NAME[s.family]} = {s.base_size}"
    fig.update_layout(title={"text": f"{s.task}: {ylab.split(' (')[0]} vs decay",
                             "subtitle": {"text": f"{s.family}, {size}, {s.steps} steps", "font": {"size": 11}}},
                      margin={"t": 80},
                      xaxis_title=xname, yaxis_title=ylab, template="plotly_white", height=420)
    return place_legend(fig, "below")


def size_figure(spec: SweepSpec, rows: list[dict], metric: str, show_paper: bool = True) -> go.Figure:
    """Test metric vs kernel_dim / d_state (log2 axis; hover shows the kernel parameter count)."""
    s = spec.resolved()
    scale, ylab = _scale(metric)
    rs = axis_rows(s, rows)["size"]
    xs, ys, sds, ns = _mean_by(rs, "size", scale)
    params = {r["size"]: r.get("kernel_params") for r in rs}
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=xs, y=ys, name=f"ours: {s.family} ({_seeds_text(ns)}, mean ± sd)",
                             mode="lines+markers",
                             customdata=[[params.get(x), n] for x, n in zip(xs, ns, strict=True)],
                             line=dict(color=_COLORS[0]),
                             error_y=dict(type="data", array=sds, visible=max(ns, default=1) > 1),
                             hovertemplate=f"{SIZE_NAME[s.family]} %{{x}}: %{{y:.4g}} ± %{{error_y.array:.2g}} "
                                           "(n = %{customdata[1]})<br>%{customdata[0]} kernel parameters"
                                           "<extra></extra>"))
    if show_paper and s.family == PAPER_FAMILY:
        _add_paper(fig, PAPER_KERNEL_DIM, metric)
    dn = DECAY_NAME[s.family]
    fig.update_layout(title={"text": f"{s.task}: {ylab.split(' (')[0]} vs {SIZE_NAME[s.family]}",
                             "subtitle": {"text": f"{s.family}, {dn} = {s.base_decay:g}, {s.steps} steps",
                                          "font": {"size": 11}}},
                      margin={"t": 80}, xaxis=dict(title=f"{SIZE_NAME[s.family]} (kernel parameters grow with it; log2 axis)",
                                 type="log", dtick=math.log10(2)),
                      yaxis_title=ylab, template="plotly_white", height=420)
    return place_legend(fig, "below")


def run_labels(runs: list[dict], family: str | None = None) -> list[str]:
    """A short name per run from the factors that differ between the runs: 't = 0.5', 't = 1, d = 32',
    'seed = 1' (the decay knob t / r as `DECAY_NAME` calls it, the size knob as d (kernel_dim) or N (d_state),
    `SHORT_SIZE`; the decay mode as it is, e.g. 'fixed'). runs: rows with decay, decay_mode, size,
    seed (as the sweep job and the store hold them); family: default the first word of the first run's label.
    A run whose factors all match another's keeps its full label."""
    if not runs:
        return []
    fam = family or str(runs[0].get("label", "")).split(" ")[0]
    dn, sn = DECAY_NAME.get(fam, "decay"), SIZE_NAME.get(fam, "size")
    names = {"decay": dn, "size": SHORT_SIZE.get(sn, sn), "seed": "seed"}
    varying = [k for k in ("decay", "decay_mode", "size", "seed") if len({str(r.get(k)) for r in runs}) > 1]

    def one(r: dict) -> str:
        parts = []
        for k in varying:
            v = r.get(k)
            if k == "decay_mode":
                parts.append(str(v))
            else:
                parts.append(f"{names[k]} = {v:g}" if isinstance(v, float) else f"{names[k]} = {v}")
        return ", ".join(parts)

    out = [one(r) if varying else "" for r in runs]
    dup = {x for x in out if out.count(x) > 1}
    return [r.get("label", "run") if (x == "" or x in dup) else x for x, r in zip(out, runs, strict=True)]


def curves_figure(runs: list[dict], which: str = "loss", title: str | None = None,
                  family: str | None = None) -> go.Figure:
    """Training loss (per step) or validation metric (per evaluation) of every run: rows with 'label',
    'loss_curve' / 'val_curve' lists of (step, value), and their factors (decay, decay_mode, size, seed), named
    in the legend by the factors that differ (`run_labels`, the full label on hover)."""
    fig = go.Figure()
    key = "loss_curve" if which == "loss" else "val_curve"
    labels = run_labels(runs, family)
    for i, (r, name) in enumerate(zip(runs, labels, strict=True)):
        pts = r.get(key) or []
        if not pts:
            continue
        fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], name=name, mode="lines",
                                 line=dict(color=_COLORS[i % len(_COLORS)], width=1.5),
                                 hovertemplate=f"{r.get('label', name)}<br>step %{{x}}: %{{y:.4g}}<extra></extra>"))
    fig.update_layout(title=title or ("training loss" if which == "loss" else "validation metric"),
                      xaxis_title="step", yaxis_title="loss" if which == "loss" else "validation metric",
                      template="plotly_white", height=360)
    fig.update_yaxes(**MAGNITUDE_TICKS)
    return place_legend(fig, "right")
