"""Interventions: change a trained model's kernels (truncate, extra decay, compress, drop one SGConv scale), run its
normal forward and re-score it on held-out data (`analysis.intervene`): how much of its length does it use, how
much more decay does it tolerate, how few kernel parameters does it need?"""
from __future__ import annotations

import json
import math

import pandas as pd
import streamlit as st

from analysis import figures as afig
from analysis.intervene import DEFAULT_DECAYS, KINDS, log_grid
from app import figures as fig_
from app import state, ui
from sgconv_core.layers import conv_layers

EVERY = "every layer"
CARD_TASK, DATA_FILE = "the card's task", "a data file (path)"
#: What each kind does and what its values are, as the page says it (analysis.intervene's module doc).
WHAT = {"truncate": "zero every lag ≥ K (K = 1 keeps lag 0 only, K = L changes nothing)",
        "decay": "multiply lag l by (l + 1)^-t (t = 0 changes nothing)",
        "compress": "SGConv / free kernels: their best SGConv fit with d weights per scale; S4 / S4D: the N' "
                    "modes with the largest contribution",
        "scales": "remove one SGConv scale at a time (its lag segment)"}
VALUE_NAME = {"truncate": "K", "decay": "t", "compress": "d or N'", "scales": "scale"}


def _default_text(kind: str, L: int | None) -> str:
    if kind == "truncate":
        return ", ".join(str(k) for k in log_grid(L)) if L else "8 points on a log grid from 1 to L"
    if kind == "decay":
        return ", ".join(f"{t:g}" for t in DEFAULT_DECAYS)
    if kind == "compress":
        return "d = 1, 2, 4, ... 64 (≤ L); N' = 1, 2, 4, ... all modes"
    return "every scale"


def _json_safe(v):
    """The record for JSON: NaN / inf (a metric that could not be computed) as null, numpy numbers as Python's."""
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, float) or hasattr(v, "item"):
        v = v.item() if hasattr(v, "item") else v
        return v if not isinstance(v, float) or math.isfinite(v) else None
    return v


def _parse_values(text: str):
    """'1, 8 64' -> [1.0, 8.0, 64.0]; empty -> None (the library's defaults)."""
    parts = [p for p in str(text).replace(";", ",").replace(" ", ",").split(",") if p.strip()]
    if not parts:
        return None
    out = []
    for p in parts:
        try:
            out.append(float(p))
        except ValueError:
            raise ValueError(f"values: {p.strip()!r} is not a number") from None
    return out


st.title("Interventions")
st.caption("Change a trained model's kernels, run its own forward with them and re-score it on held-out data: "
           "each point with its 95 % interval (Wilson for accuracy, a bootstrap over examples for NMSE), the "
           "unchanged model as a dashed line with its interval as a band.")
loaded = ui.require_models("kernel interventions")
runnable = {n: e for n, e in loaded.items() if state.checkpoint(e).model is not None}
kernels_only = [n for n in loaded if n not in runnable]
if kernels_only:
    st.caption(ui.plain(f"Not offered: {', '.join(kernels_only)}: only the kernels could be recovered from "
                        "the file (no runnable forward), so there is no model to re-score."))
if not runnable:
    st.info("None of the loaded models is runnable, so there is nothing to intervene on. Load a kernelscope "
            "checkpoint or a complete official one on the Models page.", icon=":material/info:")
    st.stop()

c1, c2, c3 = st.columns([2, 1.2, 1.2])
name = c1.selectbox("Model", list(runnable), key="iv-model")
entry = runnable[name]
ck = state.checkpoint(entry)
layers = conv_layers(ck.model)
sgconv = {n for n, lay in layers.items() if lay.kernel.kind == "sgconv"}
kinds = [k for k in KINDS if k != "scales" or sgconv]
kind = c2.selectbox("Intervention", kinds, key="iv-kind", help="scales is offered for SGConv models only.")
layer_opts = [EVERY] + [n for n in layers if kind != "scales" or n in sgconv]
layer = c3.selectbox("Layer", layer_opts, key="iv-layer")
st.caption(ui.plain(f"{kind}: {WHAT[kind]}."))

card = ck.card or {}
try:  # the task's length, for the default truncation grid shown as the placeholder (the task is cached)
    L_task = (state.card_task(card).spec.L
              if card.get("task") else None)
except (ValueError, TypeError, KeyError):
    L_task = None
d1, d2, d3, d4 = st.columns([2, 1.4, 1, 1])
values_text = d1.text_input(f"Values ({VALUE_NAME[kind]}, comma separated)", key=f"iv-values-{kind}",
                            placeholder=f"empty: {_default_text(kind, L_task)}",
                            help="Empty: the library's default grid for this kind.")
sources = ([CARD_TASK] if card.get("task") else []) + [DATA_FILE]
source = d2.selectbox("Held-out data", sources, key="iv-source",
                      help="The task in the model card (its test split, or n examples of it), or a .npz / .npy / "
                           ".pt file of inputs and targets on this machine (sgconv_core.data).")
data = n = None
if source == CARD_TASK:
    n_in = int(d3.number_input("n (0: test split)", 0, 100_000, 0, key="iv-n",
                               help="0: the task's test split; else n examples of the task (refused when they "
                                    "would not be n unique examples)."))
    n = n_in or None
    params = ", ".join(f"{k}={v}" for k, v in (card.get("task_params") or {}).items())
    d2.caption(ui.plain(f"{card['task']}" + (f": {params}" if params else "") + (f", L = {L_task:,}" if L_task else "")))
else:
    data = st.text_input("Data file path", key="iv-data", placeholder="/path/to/data.npz").strip() or None
seed = int(d4.number_input("Seed", 0, 2**31 - 1, 1, key="iv-seed",
                           help="Seed of the n examples and of the bootstrap intervals."))

if source == DATA_FILE and data is None:
    st.info("Give the path of a data file of inputs and targets.", icon=":material/info:")
    st.stop()

run_key = (entry.key, kind, values_text, layer, source, data, n, seed)
results = st.session_state.setdefault("ks_iv", {})
if st.button("Run", type="primary", key="iv-run", icon=":material/play_arrow:"):
    bar = st.progress(0.0, text="Re-scoring the model...")

    def progress(done, total):
        bar.progress(min(1.0, done / max(1, total)), text=f"Re-scoring the model... {done}/{total} forward passes")

    try:
        values = _parse_values(values_text)
        record = state.intervention(entry, kind, values, None if layer == EVERY else layer, data, n, seed,
                                    progress=progress)
    except (ValueError, OSError) as e:  # CheckpointError and DataError are ValueErrors
        bar.empty()
        results.pop(run_key, None)
        st.error(ui.plain(f"{name}: {e}"), icon=":material/error:")
        st.stop()
    bar.empty()
    results.clear()  # one result held per session: the page shows the current settings' run
    results[run_key] = record

record = results.get(run_key)
if record is None:
    st.info("Choose the intervention and press **Run**.")
    st.stop()

accuracy = record["metric_name"] == "accuracy"
metric_col = "accuracy (%)" if accuracy else "NMSE"
fig = afig.intervention_figure({name: record}, colors=fig_.model_colors([name]),
                               title=f"{name} · {kind} on {record['layer'] or EVERY}")
fig_.compact(fig, height=460, legend_below=True)
st.caption(ui.plain(f"{record['metric_name']} on {record['n']} examples ({record['data']}), 95 % intervals; "
                    f"{record['seconds']:.1f} s."))

value_head = {"truncate": "K", "decay": "t", "scales": "scale",
              "compress": "N'" if record.get("compress_method") == "ssm_modes" else "d"}[kind]
extra = ("params / channel" if "params_per_channel" in record else "lags" if "scale_lags" in record else None)
rows = [{value_head: "unchanged", **({extra: None} if extra else {}), metric_col: record["baseline"],
         "95 % CI low": record["baseline_ci"][0], "95 % CI high": record["baseline_ci"][1]}]
for i, v in enumerate(record["values"]):
    row = {value_head: f"{v:g}"}
    if extra == "params / channel":
        row[extra] = record["params_per_channel"][i]
    elif extra == "lags":
        row[extra] = "{}-{}".format(*record["scale_lags"][i])
    rows.append({**row, metric_col: record["metric"][i], "95 % CI low": record["ci_low"][i],
                 "95 % CI high": record["ci_high"][i]})
raw = pd.DataFrame(rows)  # the CSV: accuracy in %, as plotted; NMSE as is
nums = [metric_col, "95 % CI low", "95 % CI high"]
if accuracy:
    raw[nums] = raw[nums] * 100.0
fmt = "{:.2f}" if accuracy else "{:.4g}"
shown = fig_.format_table(raw.drop(columns=nums[1:]), formats={metric_col: fmt, "params / channel": "{:,.0f}"})
shown["95 % CI"] = [f"[{fig_.fmt_missing(a, fmt)}, {fig_.fmt_missing(b, fmt)}]" for a, b in zip(raw[nums[1]], raw[nums[2]])]

left, right = st.columns([3, 2])
with left:
    ui.show_figure(fig, None, f"interventions-{name}-{kind}", key="iv-fig")
with right:
    ui.table(shown)
    base = f"interventions-{ui.slug(name)}-{kind}"
    ui.csv_download("Download table (CSV)", raw, f"{base}.csv", key="iv-csv")
    st.download_button("Download record (JSON)", json.dumps(_json_safe(record), indent=1).encode(),
                       file_name=f"{base}.json", mime="application/json", key="iv-json",
                       icon=":material/download:")
