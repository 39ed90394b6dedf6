"""Plotly figures of a sweep: metric vs decay and vs size (with the paper's curves beside ours, labelled as the
paper's), and live loss / validation curves."""
from __future__ import annotations

import math
from collections import defaultdict

import plotly.graph_objects as go

from ..figures import MAGNITUDE_TICKS, place_legend
from .spec import DECAY_NAME, PAPER_DECAY, PAPER_FAMILY, PAPER_KERNEL_DIM, SIZE_NAME, SweepSpec

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
    return (100.0, "test accuracy (%)") if metric == "accuracy" else (1.0, "test NMSE (lower is better)")


def _mean_by(rows: list[dict], x: str, scale: float) -> tuple[list, list, list]:
    groups = defaultdict(list)
    for r in rows:
        if r.get("test_metric") is not None:
            groups[r[x]].append(r["test_metric"] * scale)
    xs = sorted(groups)
    means = [sum(groups[v]) / len(groups[v]) for v in xs]
    sds = [(sum((g - m) ** 2 for g in groups[v]) / max(1, len(groups[v]) - 1)) ** 0.5 if len(groups[v]) > 1 else 0.0
           for v, m in zip(xs, means)]
    return xs, means, sds


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
        xs, ys, sds = _mean_by(rs, "decay", scale)
        fig.add_trace(go.Scatter(x=xs, y=ys, name=f"ours: {s.family} {mode} ({len(s.seeds)} seed(s))",
                                 mode="lines+markers", line=dict(color=_COLORS[i % len(_COLORS)]),
                                 error_y=dict(type="data", array=sds, visible=len(s.seeds) > 1)))
    if show_paper and s.family == PAPER_FAMILY:
        _add_paper(fig, PAPER_DECAY, metric)
    xname = ("decay speed t (envelope ~ pos^-t; fixed: m = 2^t)" if DECAY_NAME[s.family] == "t"
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
    xs, ys, sds = _mean_by(rs, "size", scale)
    params = {r["size"]: r.get("kernel_params") for r in rs}
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=xs, y=ys, name=f"ours: {s.family} ({len(s.seeds)} seed(s))", mode="lines+markers",
                             customdata=[params.get(x) for x in xs], line=dict(color=_COLORS[0]),
                             error_y=dict(type="data", array=sds, visible=len(s.seeds) > 1),
                             hovertemplate=f"{SIZE_NAME[s.family]} %{{x}}: %{{y:.4g}}<br>"
                                           "%{customdata} kernel parameters<extra></extra>"))
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
