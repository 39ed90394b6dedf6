"""Attribution: which input positions one output depends on (integrated gradients), beside the kernel envelope.

The examples come from one of our tasks (only those whose input fits the model: `sgconv_core.data.task_misfit`)
or from the user's own data file (`sgconv_core.data.load_data`, uploaded or by path), checked against the model's
input before anything runs.
"""
from __future__ import annotations

import copy
import hashlib

import numpy as np
import pandas as pd
import streamlit as st

from analysis import figures as afig
from analysis.attribution import attribute
from app import figures as fig_
from app import state, ui
from app.store.files import safe_filename, sha256_file, uploads_dir, write_atomic
from sgconv_core.data import DATA_SUFFIXES, INPUT_KEYS, TARGET_KEYS, DataError, input_spec, load_data, task_misfit
from sgconv_core.tasks import TASKS, task_params_from_card

DATA_FILE = "Data file (yours)"

st.title("Attribution")
st.caption("Integrated gradients (captum) of one output with respect to every input position of one example. "
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
try:
    spec = input_spec(model)
except DataError as e:
    st.error(ui.plain(f"{name}: {e}"))
    st.stop()
st.caption(ui.plain(f"{name} takes {spec.input_text()} and gives {spec.output_text()}."))
card = ck.card or {}


def _task_params(task_name: str) -> dict:
    """The card's task parameters for the model's own task, else the task at the model's length."""
    if task_name == card.get("task"):
        return task_params_from_card(card)
    return {"L": ck.default_length} if task_name != "listops" else {}


def _fitting_tasks() -> tuple[dict, list[str]]:
    """({task name: its parameters} for the tasks whose input fits the model, [why each other one does not])."""
    fits, why = {}, []
    for t in TASKS:
        params = _task_params(t)
        try:
            task = state.task_for(t, int(card.get("task_seed", 0)) if t == card.get("task") else 0, params)
        except (ValueError, TypeError) as e:
            why.append(f"{t}: {e}")
            continue
        reason = task_misfit(spec, task.spec)
        if reason is None:
            fits[t] = params
        else:
            why.append(reason if spec.kind == "layer" else f"{t}: {reason}")
    return fits, why


fits, why_not = _fitting_tasks()
sources = list(fits) + [DATA_FILE]
own = card.get("task")
source = c2.selectbox("Examples from", sources, index=sources.index(own) if own in fits else 0, key="a-source",
                      help="Our tasks are offered only when their input fits the model; or give your own data file.")
if not fits:
    text = (f"No task of ours fits {name}: {why_not[0]}." if spec.kind == "layer" else
            f"No task of ours fits {name} ({'; '.join(why_not)}). Give a data file of inputs {spec.input_text()}.")
    st.info(ui.plain(text), icon=":material/info:")


def _store_upload(data: bytes, filename: str) -> str:
    """An uploaded data file as an ordinary file (same place and naming as uploaded checkpoints)."""
    digest = hashlib.sha256(data).hexdigest()
    folder = uploads_dir() / digest[:32]
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / safe_filename(filename)
    if not (target.is_file() and sha256_file(target) == digest):  # what is read must be what was uploaded
        write_atomic(target, data)
    return str(target)


def _user_data():
    """The user's data file (upload or path), checked against the model; None until one is given."""
    st.caption(ui.plain(f"A {', '.join(DATA_SUFFIXES)} file: inputs {spec.input_text()} under one of the keys "
                        f"{', '.join(INPUT_KEYS)}; targets (optional) under {', '.join(TARGET_KEYS)}. "
                        "Torch files are read without running any code in them."))
    up_col, path_col = st.columns(2)
    up = up_col.file_uploader("Upload a data file", type=[s.lstrip(".") for s in DATA_SUFFIXES], key="a-data-up")
    path = path_col.text_input("…or its path on this machine", key="a-data-path", placeholder="/path/to/data.npz")
    try:
        if up is not None:
            path = _store_upload(up.getvalue(), up.name)
        if not path:
            st.info("Upload a data file or give its path.", icon=":material/info:")
            return None
        key = (path, state.file_digest(path), spec)
    except OSError as e:
        st.error(ui.plain(f"{path}: cannot be read ({e.strerror or e})."))
        return None
    cache = st.session_state.setdefault("ks_attr_data", {})
    if key not in cache:
        try:
            cache.clear()  # one data file held per session
            cache[key] = load_data(path, spec)
        except (ValueError, OSError) as e:  # DataError / CheckpointError are ValueErrors
            st.error(ui.plain(str(e)), icon=":material/error:")
            return None
    data = cache[key]
    st.success(ui.plain(data.describe()), icon=":material/check_circle:")
    return data


if source == DATA_FILE:
    data = _user_data()
    if data is None:
        st.stop()
    xs, ys, L, data_id = data.x, data.y, data.L, ("file", data.source, state.file_digest(data.source))
    is_class = data.metric == "accuracy"
else:
    task = state.task_for(source, int(card.get("task_seed", 0)) if source == own else 0, fits[source])
    c2.caption(ui.plain(", ".join(f"{k}={v}" for k, v in fits[source].items())))
    xs, ys = task.split("test")
    L, data_id, is_class = task.spec.L, ("task", source), task.spec.output_kind == "class"

idx = int(c3.number_input(f"Example (0..{len(xs) - 1})", 0, len(xs) - 1, 0, key="a-idx"))
d1, d2, d3 = st.columns(3)
if spec.output == "pooled":
    if spec.d_output > 1:
        target_opt = d1.selectbox("Class to explain", ["predicted", *range(spec.d_output)], key="a-target")
        target = None if target_opt == "predicted" else int(target_opt)
    else:
        target = 0
        d1.markdown("**Output:** the model's one output per sequence")
    position = None
else:
    label = "Output channel (of the layer's H)" if spec.output == "layer" else "Output channel"
    target = int(d1.number_input(label, 0, spec.d_output - 1, 0, key="a-target-ch"))
    position = int(d2.number_input(f"Output position (0..{L - 1})", 0, L - 1, L - 1, key="a-pos"))
n_steps = int(d3.select_slider("Integration steps", [8, 16, 32, 50, 100], value=32, key="a-steps"))

run_key = (entry.key, data_id, idx, target, position, n_steps)
results = st.session_state.setdefault("ks_attr", {})
if st.button("Run integrated gradients", type="primary", key="a-run", icon=":material/play_arrow:"):
    bar = st.progress(0.0, text="Integrating gradients...")

    def progress(done, total):
        bar.progress(min(1.0, done / max(1, total)), text=f"Integrating gradients... {done}/{total} forward passes")

    dev = state.compute_device()
    run_model = model if dev.type == "cpu" else copy.deepcopy(model).to(dev)
    try:
        res = attribute(run_model, xs[idx].to(dev), target=target, position=position, n_steps=n_steps,
                        internal_batch_size=min(10, n_steps), progress=progress)
    except (ValueError, RuntimeError) as e:
        bar.empty()
        st.error(ui.plain(f"Attribution failed for {name}: {e}"))
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
if ys is not None and spec.output == "pooled":
    yv = ys[idx]
    note += (f" True class of this example: {int(yv)}." if is_class
             else f" Target of this example: {', '.join(f'{float(v):.4g}' for v in yv.reshape(-1))}.")
st.caption(ui.plain(note))

# the input drawn beside the attribution, one row per position: (L, d) floats; a layer's (H, L) transposed
x_plot = None
if spec.kind == "continuous":
    x_plot = xs[idx].double().numpy()
elif spec.kind == "layer":
    x_plot = np.ascontiguousarray(xs[idx].double().numpy().T)
where = f"test example {idx}" if source != DATA_FILE else f"example {idx} of {data.source.rsplit('/', 1)[-1]}"
afig_ = afig.attribution_figure(res, x=x_plot, title=f"{name}: {where}")
afig_.update_layout(height=760)  # the figure places its own legend clear of the titles
table = pd.DataFrame(res.table(x_plot))
left, right = st.columns([3, 2])
with left:
    ui.show_figure(afig_, table, f"attribution-{name}-{idx}", key="a-fig")
with right:
    # Beside it: how |attribution| falls with distance against how each layer's kernels fall with lag (the RMS
    # profile over channels, analysis.measure), each scaled to peak 1.
    layers = state.analysis(entry, ck.l_max or L).figures
    series = res.envelope_series({n: a.profile for n, a in layers.items()})
    efig = afig.decay_figure(series, title="attribution vs kernel envelopes (each scaled to peak 1)")
    efig.update_layout(xaxis_title="distance or lag + 1 (taps)", yaxis_title="relative magnitude")
    fig_.compact(efig, height=760, legend_below=True)
    ui.show_figure(efig, fig_.figure_data(efig), f"attribution-vs-envelope-{name}", key="a-env")
