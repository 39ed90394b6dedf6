"""Ablation: re-run the paper's ablations live (accuracy vs decay speed, vs kernel parameters per scale), watch the
runs train, and compare with the paper's curves. Every finished run lands in the ablation database and its
checkpoint can be loaded into the other pages."""
from __future__ import annotations

import json
import os

import pandas as pd
import streamlit as st

from analysis.ablation import PAPER_SOURCE, Store, SweepJob, SweepSpec, default_db_path, preset
from analysis.ablation import figures as afig
from analysis.ablation.spec import (
    DECAY_MODES,
    DECAY_NAME,
    FAMILIES,
    PAPER_FAMILY,
    PRESETS,
    SIZE_NAME,
    T_ONLY_MODES,
    TASK_METRIC,
    metric_column,
    preset_sentence,
)
from app import state, ui
from app.store.sweep import elapsed_text, server_sweep, session_id
from sgconv_core.tasks import TASKS


def _metric_cols(metric: str) -> tuple[float, str]:
    """(factor, column suffix) for a metric in the tables: 'accuracy (%)' x100, 'nmse' as is."""
    scale, unit = metric_column(metric)
    return scale, f"{metric} ({unit})" if unit else metric


def _scaled(v, scale: float):
    return None if v is None else v * scale


def _parse_list(text: str, name: str, cast):
    out = []
    for part in str(text).replace(";", ",").replace(" ", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            v = float(part)
        except ValueError:
            raise ValueError(f"{name}: {part!r} is not a number") from None
        if cast is int:
            if not v.is_integer():
                raise ValueError(f"{name}: {part!r} is not a whole number")
            v = int(v)
        out.append(v)
    return tuple(out)


def _task_changed() -> None:
    """A new task: keep the preset if it fits the task, else the first preset made for it (else 'quick')."""
    ss = st.session_state
    want = PRESETS[ss["abl-preset"]].task
    if want is not None and want != ss["abl-task"]:
        ss["abl-preset"] = next((p.name for p in PRESETS.values() if p.task == ss["abl-task"]), "quick")
    _apply_preset()


def _apply_preset() -> None:
    """Fill the form from the chosen preset (called when the preset, task or family changes)."""
    ss = st.session_state
    s = preset(ss["abl-preset"], ss["abl-family"], ss["abl-task"]).resolved()
    ss["abl-task"] = s.task  # a preset made for one task brings its task
    ss["abl-decays"] = ", ".join(f"{t:g}" for t in s.decays)
    ss["abl-modes"] = list(s.decay_modes)
    ss["abl-sizes"] = ", ".join(str(n) for n in s.sizes)
    ss["abl-seeds"] = ", ".join(str(n) for n in s.seeds)
    ss["abl-steps"] = int(s.steps)
    ss["abl-L"] = int(s.length())
    ss["abl-dmodel"] = int(s.d_model)
    ss["abl-layers"] = int(s.n_layers)
    ss["abl-batch"] = int(s.batch_size)
    ss["abl-eval"] = int(s.eval_every)
    ss["abl-base-decay"] = float(s.base_decay)
    ss["abl-base-size"] = int(s.base_size)
    ss["abl-task-params"] = json.dumps(s.task_params)


st.title("Ablation")
st.caption("Re-run the paper's two ablations on our offline tasks: accuracy against how fast the kernel decays, and "
           "against the kernel's parameters per scale (SGConv kernel_dim; S4/S4D state size N). Runs train here, "
           "one factor at a time around a base point; finished runs are stored (and skipped when a sweep is run "
           "again), and each run's checkpoint can be opened in the Kernels page.")

device = state.device_label()
on_cpu = device == "CPU"
ss = st.session_state
if "abl-preset" not in ss:
    ss["abl-preset"] = "delay-local" if on_cpu else "default"
    ss["abl-task"], ss["abl-family"] = "digits", "sgconv"
    _apply_preset()

sweep = server_sweep()
me = session_id()
running = sweep.running

# ---------------------------------------------------------------------------------------------------- the grid
with st.container(border=True):
    c1, c2, c3, c4 = st.columns(4)
    c1.selectbox("Preset", list(PRESETS), key="abl-preset", on_change=_apply_preset,
                 format_func=lambda p: PRESETS[p].label,
                 help="delay-local / delay-far: the delay task (L = 256) with lag 2 / 64, decay axis; digits: 16x16 "
                      "digits, decay axis; quick: both axes on any task; all 2x32, 300 steps, 3 seeds, SGConv "
                      "kernel_dim 8. paper-like: digits 32x32, 2x64, the paper's t and kernel_dim grids (a GPU).")
    c2.selectbox("Task", TASKS, key="abl-task", on_change=_task_changed)
    c3.selectbox("Family", FAMILIES, key="abl-family", on_change=_apply_preset)
    c4.markdown(f"**Device:** {device}  \n**Torch threads:** {state.torch_threads()}")
    st.caption(f"**What this task rewards:** {preset_sentence(ss['abl-preset'], ss['abl-task'])}")
    family = ss["abl-family"]
    modes = [m for m in DECAY_MODES if DECAY_NAME[family] == "t" or m not in T_ONLY_MODES]
    if any(m not in modes for m in ss.get("abl-modes", ())):
        ss["abl-modes"] = [m for m in ss["abl-modes"] if m in modes] or ["fixed"]
    dn, sn = DECAY_NAME[family], SIZE_NAME[family]
    d1, d2, d3, d4 = st.columns([3, 2, 3, 2])
    d1.text_input(f"Decay values {dn}", key="abl-decays",
                  help=("SGConv decay speed t: envelope ~ pos^-t; fixed mode uses the multiplier m = 2^t, frozen "
                        "multiplies by (lag+1)^-t with t not trained (the official cat_randn_learnable_fixed), "
                        "learnable by (lag+1)^-t with t trained. Empty: skip this axis." if dn == "t"
                        else "S4/S4D: factor r on the real part of A (kernel argument real_scale: the envelope "
                             "decays r times faster); fixed mode also freezes A_real and dt (freeze_decay)."))
    d2.multiselect("Decay modes", modes, key="abl-modes")
    d3.text_input(f"Sizes ({sn})", key="abl-sizes", help="Empty: skip this axis.")
    d4.text_input("Seeds", key="abl-seeds")
    e1, e2, e3, e4, e5, e6 = st.columns(6)
    e1.number_input("Steps per run", 1, 100_000, key="abl-steps")
    e2.number_input("Length L", 16, 65536, key="abl-L", help="digits: a perfect square (image side^2)")
    e3.number_input("d_model", 1, 1024, key="abl-dmodel")
    e4.number_input("Layers", 1, 16, key="abl-layers")
    e5.number_input("Batch size", 1, 4096, key="abl-batch")
    e6.number_input("Evaluate every", 1, 100_000, key="abl-eval")
    with st.expander("More settings"):
        f1, f2, f3, f4 = st.columns(4)
        f1.number_input(f"Base {dn} (size axis)", 0.0, 1000.0, key="abl-base-decay", step=0.25)
        f2.number_input(f"Base {sn} (decay axis)", 1, 4096, key="abl-base-size")
        f3.selectbox("Batched training", ["auto", "yes", "no"], key="abl-batched",
                     help="Train the runs as one batched model (vmap over a batch-of-models axis). auto: on a GPU "
                          "only; on CPU it is not faster and runs are stored one by one.")
        f4.text_input("Database (SQLite)", value=str(default_db_path()), key="abl-db",
                      help="Also $KERNELSCOPE_DB. Checkpoints go to ablation-checkpoints/ next to it.")

spec, spec_error = None, None
try:
    task_params = json.loads(ss.get("abl-task-params") or "{}")
    task_params["L"] = int(ss["abl-L"])
    spec = SweepSpec(
        task=ss["abl-task"], task_params=task_params, family=family,
        decays=_parse_list(ss["abl-decays"], "decays", float), decay_modes=tuple(ss["abl-modes"]),
        sizes=_parse_list(ss["abl-sizes"], "sizes", int), seeds=_parse_list(ss["abl-seeds"], "seeds", int),
        steps=int(ss["abl-steps"]), d_model=int(ss["abl-dmodel"]), n_layers=int(ss["abl-layers"]),
        batch_size=int(ss["abl-batch"]), eval_every=int(ss["abl-eval"]), base_decay=float(ss["abl-base-decay"]),
        base_size=int(ss["abl-base-size"]), name=f"{ss['abl-preset']} {ss['abl-task']} {family}",
    ).check()
except ValueError as e:
    spec_error = str(e)

try:
    store = Store(ss.get("abl-db") or None)
except (ValueError, OSError) as e:
    store = None
    st.error(ui.plain(f"Database: {e}"), icon=":material/error:")

runs = spec.expand(check=False) if spec else []
b1, b2, b3 = st.columns([1, 1, 4])
start = b1.button("Start sweep", type="primary", key="abl-start", disabled=running or spec is None or store is None,
                  icon=":material/play_arrow:",
                  help="One sweep at a time per server: while one runs (from any browser session), wait for it.")
if spec_error:
    st.error(f"Cannot run this grid: {spec_error}", icon=":material/error:")


def grid_count() -> None:
    """How many runs of the grid are stored / still to train (live while a sweep runs)."""
    if not (spec and store):
        return
    done_n = len(store.done_keys(r.key() for r in runs))
    st.markdown(f"{len(runs)} runs in this grid: **{done_n} already done** (stored), **{len(runs) - done_n} to "
                "train**" + (" — the paper-like grid is meant for a GPU; pick a CPU preset." if on_cpu
                             and ss["abl-preset"] == "default" else ""))


with b3:
    st.fragment(grid_count, run_every=sweep.live_every())()
if start and spec and store and not running:
    batched = {"auto": "auto", "yes": True, "no": False}[ss.get("abl-batched", "auto")]
    try:
        sweep.start(lambda: SweepJob(spec, db=store, batched=batched), owner=me)
    except (ValueError, RuntimeError) as e:
        st.error(ui.plain(f"Cannot run this grid: {e}"), icon=":material/error:")
    else:
        st.rerun()  # drawn again with the sweep running: Start disabled, progress and live refresh on


# ---------------------------------------------------------------------------------------------------- live view
def live_view() -> None:
    j: SweepJob | None = sweep.job
    snap = sweep.snapshot()
    if j is None or snap is None:
        return
    status = snap["status"]
    rows = snap["runs"]
    n_run = sum(r["status"] in ("done", "failed") for r in rows)
    n_todo = sum(r["status"] != "skipped" for r in rows)
    head = {"running": "Running", "cancelling": "Cancelling", "done": "Finished", "cancelled": "Cancelled",
            "failed": "Failed"}.get(status, status)
    eta = f", ETA {elapsed_text(snap['eta_s'])}" if status == "running" and snap["eta_s"] is not None else ""
    st.progress(snap["fraction"], text=f"{head}: {n_run}/{n_todo} runs trained ({snap['n_skipped']} skipped, already "
                                       f"stored) · {elapsed_text(snap['elapsed_s'])} elapsed{eta} · {snap['device']}")
    if status in ("running", "cancelling"):
        if sweep.is_owner(me):
            st.button("Cancel", key="abl-cancel", icon=":material/stop:", disabled=status == "cancelling",
                      on_click=sweep.cancel, args=(me,),  # before the rerun that the click starts
                      help="Stops after the current step; finished runs stay stored, the run in progress is dropped.")
        else:
            st.caption("This sweep was started from another browser session: you can watch it here, but only "
                       "that session can cancel it.")
    if j.error:
        st.error(ui.plain(f"The sweep stopped with an error: {j.error}"), icon=":material/error:")
    scale, col = _metric_cols(TASK_METRIC.get(j.spec.task, "metric"))
    labels = afig.run_labels(rows)  # named by the factor that differs, as in the live plots
    table = pd.DataFrame([{
        "run": labels[i], "status": r["status"], "step": f"{r['step']}/{r['steps']}",
        "loss": r["loss"], f"val {col}": _scaled(r["val_metric"], scale),
        f"test {col}": _scaled(r["test_metric"], scale)} for i, r in enumerate(rows)])
    active = [r for r in rows if r["loss_curve"]]
    left, right = st.columns(2)
    with left:
        st.plotly_chart(afig.curves_figure(active, "loss", "training loss (live)"), key="abl-live-loss", theme=None)
    with right:
        st.plotly_chart(afig.curves_figure(active, "val", "validation metric (live)"), key="abl-live-val", theme=None)
    ui.table(table, max_rows=14)
    if status not in ("running", "cancelling") and ss.get("abl-shown-final") != id(j):
        ss["abl-shown-final"] = id(j)
        st.rerun()  # the whole page once: the Start button, counts and results without live refresh


if sweep.job is not None:
    st.subheader("Progress", anchor=False)
    st.fragment(live_view, run_every=sweep.live_every())()

# ---------------------------------------------------------------------------------------------------- results
st.subheader("Results", anchor=False)
if spec is None or store is None:
    st.info("Fix the grid above to see its stored results.", icon=":material/info:")
    st.stop()


def results() -> None:
    """The grid's stored runs: the two ablation plots and the table (live while a sweep runs)."""
    rows = store.runs([r.key() for r in runs])
    if not rows:
        st.info("No run of this grid is stored yet. Start the sweep; finished runs appear here (also after a page "
                "refresh, and in other sessions).", icon=":material/info:")
        return
    metric = rows[0]["metric"]
    show_paper = False  # the paper's curves are accuracy (%): drawn only beside accuracy, never over an NMSE axis
    if metric == "accuracy":
        show_paper = st.toggle("Show the paper's curves", value=True, key="abl-paper",
                               help=f"{PAPER_SOURCE}. Drawn for SGConv only; a different task and scale from ours.")
    left, right = st.columns(2) if spec.decays and spec.sizes else (st.container(), st.container())
    with left:  # one axis: its plot takes the whole width
        if spec.decays:
            ui.show_figure(afig.decay_figure(spec, rows, metric, show_paper), None, "ablation-decay", key="abl-decay")
    with right:
        if spec.sizes:
            ui.show_figure(afig.size_figure(spec, rows, metric, show_paper), None, "ablation-size", key="abl-size")
    if family == PAPER_FAMILY and show_paper:
        st.caption(f"Dashed grey: the paper's numbers ({PAPER_SOURCE}), accuracy % — their task and model, not "
                   "ours; compare the shape (no decay costs accuracy, t >= 0.75 is near the best; d barely matters).")
    scale, col = _metric_cols(metric)
    pts = afig.point_stats(spec, rows)
    summary = pd.DataFrame([{
        "axis": p["axis"], dn: p["decay"], "mode": p["decay_mode"], sn: p["size"], "seeds (n)": p["n"],
        f"test {col} mean": p["mean"], "sd": p["sd"],
        "per seed": ", ".join(f"{v:.4g}" for v in p["values"])} for p in pts])
    st.caption(f"Per point: mean ± sd over seeds (sample sd, ddof = 1; n seeds with a result), test {col} — "
               "the numbers the plots draw.")
    ui.table(summary, max_rows=14)
    ui.csv_download("Download the per-point table (CSV)", summary, "ablation-points.csv", key="abl-csv-points")
    table = pd.DataFrame([{
        "decay": r["decay"], "mode": r["decay_mode"], sn: r["size"], "seed": r["seed"],
        f"test {col}": _scaled(r["test_metric"], scale), f"val {col}": _scaled(r["val_metric"], scale),
        "kernel params": r["kernel_params"], "steps": r["steps_done"], "device": r["device"],
        "time (s)": round(r["wall_time_s"] or 0, 1), "checkpoint": r["checkpoint"], "key": r["key"]} for r in rows])
    table = table.sort_values(["mode", "decay", sn, "seed"])
    with st.expander(f"Every stored run of this grid ({len(rows)}/{len(runs)})"):
        st.caption(f"In `{store.path}`")
        ui.table(table, max_rows=14)
        ui.csv_download("Download results (CSV)", table, "ablation.csv", key="abl-csv")


st.fragment(results, run_every=sweep.live_every())()

# load checkpoints into the app (the whole page reruns: the sidebar then lists them)
have = [r for r in store.runs([r.key() for r in runs]) if r.get("checkpoint") and os.path.isfile(r["checkpoint"])]
if have:
    labels = {r["key"]: f"{family} {dn}={r['decay']:g} ({r['decay_mode']}) {sn}={r['size']} seed={r['seed']}"
              for r in have}
    g1, g2 = st.columns([4, 1])
    pick = g1.multiselect("Open run checkpoints in the other pages (Kernels, Decay, ...)", list(labels),
                          format_func=labels.get, key="abl-load-pick")
    if g2.button("Load", key="abl-load", disabled=not pick, icon=":material/upload:"):
        by_key = {r["key"]: r for r in have}
        for k in pick:
            res = state.load_path(by_key[k]["checkpoint"], source="ablation", display_name=labels[k].replace(" ", "_"))
            if not res.ok:
                st.error(ui.plain(res.error), icon=":material/error:")
                continue
            name, added = state.add_model(res.entry)
            st.success(f"Loaded **{ui.plain(name)}**" + ("" if added else " (already loaded)") + ".",
                       icon=":material/check_circle:")
        st.page_link("views/kernels.py", label="Go to the Kernels page", icon=":material/show_chart:")

with st.expander("All sweeps in the database"):
    sweeps = store.sweeps()
    if sweeps:
        ui.table(pd.DataFrame([{"name": s["name"], "runs": s["n_runs"], "status": s["status"], "device": s["device"],
                                "updated": s["updated_at"], "key": s["key"]} for s in sweeps]), max_rows=10)
    st.caption(f"{store.count()} runs stored in `{store.path}`.")
