"""Attribution: which input positions one output depends on (integrated gradients), beside the kernel envelope."""
from __future__ import annotations

import copy

import pandas as pd
import streamlit as st

from analysis import figures as afig
from analysis.attribution import attribute
from app import figures as fig_
from app import state, ui
from sgconv_core.tasks import TASKS

st.title("Attribution")
st.caption("Integrated gradients (captum) of one output with respect to every input position of one test example. "
           "Completeness: Σ attributions = f(x) − f(baseline) + δ; a small convergence δ means enough steps.")
loaded = ui.require_models("attributions")
runnable = {n: e for n, e in loaded.items() if state.checkpoint(e).model is not None}
if not runnable:
    st.info("None of the loaded models is runnable (only their kernels could be recovered), so there is nothing "
            "to attribute. Load a kernelscope checkpoint or a complete official one on the Models page.")
    st.stop()

c1, c2, c3 = st.columns([2, 2, 2])
name = c1.selectbox("Model", list(runnable), key="a-model")
entry = runnable[name]
ck = state.checkpoint(entry)
model = ck.model
card = ck.card or {}
task_name = card.get("task")
task_params = dict(card.get("task_params") or {})
if task_name not in TASKS:
    task_name = c2.selectbox("Task (the model's card names none)", list(TASKS), key="a-task")
    task_params = {"L": ck.default_length} if task_name != "listops" else {}
else:
    c2.markdown(f"**Task:** {task_name}  \n" + ", ".join(f"{k}={v}" for k, v in task_params.items()))
try:
    task = state.task_for(task_name, int(card.get("task_seed", 0)), task_params)
    x_test, y_test = task.split("test")
except (ValueError, TypeError, ImportError) as e:
    st.error(f"Cannot build the {task_name} task for {name}: {e}")
    st.stop()
spec = task.spec
cfg = getattr(model, "cfg", None)
if cfg is not None and (cfg.input_kind != spec.input_kind or cfg.d_input != spec.d_input):
    st.error(f"{name} takes {cfg.input_kind} input with d_input={cfg.d_input}, but the {task_name} task gives "
             f"{spec.input_kind} input with d_input={spec.d_input}: choose a task that matches the model.")
    st.stop()

idx = int(c3.number_input(f"Test example (0..{len(x_test) - 1})", 0, len(x_test) - 1, 0, key="a-idx"))
d1, d2, d3 = st.columns(3)
if spec.output_kind == "class":
    target_opt = d1.selectbox("Class to explain", ["predicted", *range(spec.d_output)], key="a-target")
    target = None if target_opt == "predicted" else int(target_opt)
    position = None
else:
    target = int(d1.number_input("Output channel", 0, spec.d_output - 1, 0, key="a-target-ch"))
    position = int(d2.number_input(f"Output position (0..{spec.L - 1})", 0, spec.L - 1, spec.L - 1, key="a-pos"))
n_steps = int(d3.select_slider("Integration steps", [8, 16, 32, 50, 100], value=32, key="a-steps"))

run_key = (entry.key, task_name, idx, target, position, n_steps)
results = st.session_state.setdefault("ks_attr", {})
if st.button("Run integrated gradients", type="primary", key="a-run", icon=":material/play_arrow:"):
    bar = st.progress(0.0, text="Integrating gradients...")

    def progress(done, total):
        bar.progress(min(1.0, done / max(1, total)), text=f"Integrating gradients... {done}/{total} forward passes")

    dev = state.compute_device()
    run_model = model if dev.type == "cpu" else copy.deepcopy(model).to(dev)
    try:
        res = attribute(run_model, x_test[idx].to(dev), target=target, position=position, n_steps=n_steps,
                        internal_batch_size=min(10, n_steps), progress=progress)
    except (ValueError, RuntimeError) as e:
        bar.empty()
        st.error(f"Attribution failed for {name}: {e}")
        st.stop()
    bar.progress(1.0, text="Done.")
    results[run_key] = res

res = results.get(run_key)
if res is None:
    st.info("Choose an example and press **Run integrated gradients**.")
    st.stop()

m1, m2, m3, m4 = st.columns(4)
m1.metric("Convergence δ", f"{res.delta:.3g}")
m2.metric("f(x)", f"{res.f_x:.4g}")
m3.metric("f(baseline)", f"{res.f_baseline:.4g}")
m4.metric("Σ attributions", f"{res.total:.4g}")
note = f"{res.method}: {res.note}."
if spec.output_kind == "class":
    note += f" True class of this example: {int(y_test[idx])}."
st.caption(note)

x_plot = x_test[idx].numpy() if spec.input_kind == "continuous" else None
afig_ = afig.attribution_figure(res, x=x_plot, title=f"{name}: test example {idx}")
afig_.update_layout(height=760, margin={"l": 60, "r": 20, "t": 80, "b": 40},
                    legend={"orientation": "h", "yanchor": "bottom", "y": 1.04, "xanchor": "right", "x": 1})
data = pd.DataFrame(res.table(x_plot))
left, right = st.columns([3, 2])
with left:
    ui.show_figure(afig_, data, f"attribution-{name}-{idx}", key="a-fig")
with right:
    # Beside it: how |attribution| falls with distance against how each layer's kernels fall with lag (the RMS
    # profile over channels, analysis.measure), each scaled to peak 1.
    layers = state.analysis(entry, ck.l_max or spec.L).figures
    series = res.envelope_series({n: a.profile for n, a in layers.items()})
    efig = afig.decay_figure(series, title="attribution vs kernel envelopes (each scaled to peak 1)")
    efig.update_layout(xaxis_title="distance or lag + 1 (taps)", yaxis_title="relative magnitude")
    fig_.compact(efig, height=760, legend_below=True)
    ui.show_figure(efig, fig_.figure_data(efig), f"attribution-vs-envelope-{name}", key="a-env")
