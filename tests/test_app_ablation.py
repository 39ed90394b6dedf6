"""The Ablation page's shared sweep (issue 12.5): only the browser session that started the server's sweep can
cancel it (others watch read-only and are told so), the elapsed clock stops when the sweep ends, the live parts
refresh while it runs, and accuracy is shown in % in the tables (as in the plots)."""
from __future__ import annotations

import threading
import time

import pytest
from apptest import MAIN, ok

TINY = (("abl-L", 64), ("abl-steps", 3), ("abl-dmodel", 8), ("abl-layers", 1), ("abl-batch", 8), ("abl-eval", 3),
        ("abl-base-size", 8))


def as_session(monkeypatch, sid: str) -> None:
    """Make the next runs look like browser session ``sid`` (AppTest gives every instance the same id)."""
    import app.store.sweep

    monkeypatch.setattr(app.store.sweep, "session_id", lambda: sid)


def ablation_page(decays="0, 1", sizes="4", seeds="0"):
    """A fresh session on the Ablation page with a tiny 3-run SGConv grid on digits (the quick preset, one seed)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(MAIN, default_timeout=60)
    ok(at.switch_page("views/ablation.py").run())
    ok(at.selectbox(key="abl-preset").set_value("quick").run())
    ok(at.selectbox(key="abl-task").set_value("digits").run())
    at.text_input(key="abl-decays").input(decays)
    at.text_input(key="abl-sizes").input(sizes)
    at.text_input(key="abl-seeds").input(seeds)
    for k, v in TINY:
        at.number_input(key=k).set_value(v)
    return ok(at.run())


def progress_text(at) -> str:
    texts = [p.proto.text for p in at.get("progress")]
    assert texts, "no progress bar on the page"
    return texts[0]


class FakeJob:
    """Stands in for SweepJob: runs until cancelled (or `finish()`), its clock counting in real time."""

    instances: list = []

    def __init__(self, spec, **kw):
        self.spec, self.kw, self.error = spec, kw, None
        self.t0 = time.time()
        self._end = threading.Event()
        self.cancelled = False
        FakeJob.instances.append(self)

    @property
    def done(self):
        return self._end.is_set()

    def wait(self, timeout=None):
        return self._end.wait(timeout)

    def cancel(self):
        self.cancelled = True
        self._end.set()

    def finish(self):
        self._end.set()

    def snapshot(self):
        status = ("cancelled" if self.cancelled else "done") if self.done else "running"
        return {"status": status, "message": "", "device": "CPU", "elapsed_s": time.time() - self.t0,
                "fraction": 0.5, "eta_s": 10.0 if status == "running" else 0.0, "n_done": 0, "n_total": 1,
                "n_skipped": 0, "runs": [{"key": "k", "label": "sgconv t=0 (fixed) kernel_dim=8 seed=0",
                                          "status": "running", "step": 1, "steps": 3, "loss": 2.0,
                                          "val_metric": 0.25, "test_metric": None, "loss_curve": [[1, 2.0]],
                                          "val_curve": []}]}


@pytest.fixture
def fake_jobs(monkeypatch, tmp_path):
    import analysis.ablation

    monkeypatch.setenv("KERNELSCOPE_DB", str(tmp_path / "abl.sqlite"))
    monkeypatch.setattr(analysis.ablation, "SweepJob", FakeJob)
    FakeJob.instances = []
    yield FakeJob.instances
    for j in FakeJob.instances:
        j.finish()


# ---------------------------------------------------------------------------------------------------- unit
def test_server_sweep_owner_and_clock():
    from app.store.sweep import LIVE_EVERY_S, ServerSweep

    s = ServerSweep()
    assert s.snapshot() is None and s.live_every() is None
    job = s.start(lambda: FakeJob(None), owner="A")
    assert s.running and s.live_every() == LIVE_EVERY_S
    with pytest.raises(RuntimeError, match="running already"):
        s.start(lambda: FakeJob(None), owner="B")
    assert not s.cancel("B") and not s.cancel("") and not job.cancelled  # not the owner
    assert s.is_owner("A") and not s.is_owner("B") and not s.is_owner("")
    time.sleep(0.3)
    job.finish()
    time.sleep(0.2)  # the watcher thread records the end
    first = s.snapshot()["elapsed_s"]
    assert 0.25 <= first < 1.0
    time.sleep(0.6)
    assert s.snapshot()["elapsed_s"] == first  # stopped: not 0.6 s more
    assert job.snapshot()["elapsed_s"] >= first + 0.5  # (the job's own clock runs on)
    assert s.live_every() is None
    job2 = s.start(lambda: FakeJob(None), owner="B")  # a new sweep after the end: new owner, new clock
    assert s.cancel("B") and job2.cancelled


def test_elapsed_text():
    from app.store.sweep import elapsed_text

    assert [elapsed_text(x) for x in (0, 42.4, 102, 567, None, float("nan"))] == [
        "0 s", "42 s", "1 min 42 s", "9 min 27 s", "?", "?"]


def test_task_metric_table_matches_the_tasks():
    from analysis.ablation.spec import TASK_METRIC, metric_column
    from sgconv_core.tasks import TASKS, get_task

    small = {"digits": {"L": 64, "n_train": 16, "n_val": 10, "n_test": 10},
             "delay": {"L": 64, "lag": 8, "n_train": 16, "n_val": 10, "n_test": 10},
             "listops": {"L": 64, "max_depth": 2, "min_depth": 2, "max_args": 3, "min_length": 4, "n_train": 16, "n_val": 10,
                         "n_test": 10}}
    assert set(TASK_METRIC) == set(TASKS)
    for t in TASKS:
        assert get_task(t, **small[t]).spec.metric == TASK_METRIC[t]
    assert metric_column("accuracy") == (100.0, "%") and metric_column("nmse") == (1.0, "")


# ---------------------------------------------------------------------------------------------------- app
def test_only_the_starting_session_can_cancel(fake_jobs, monkeypatch):
    as_session(monkeypatch, "owner")
    owner = ablation_page()
    ok(owner.button(key="abl-start").click().run())
    assert len(fake_jobs) == 1
    job = fake_jobs[0]
    assert owner.button(key="abl-cancel") is not None
    assert owner.button(key="abl-start").disabled  # one sweep at a time per server
    assert progress_text(owner).startswith("Running")
    # a second browser session: watches read-only, told why
    as_session(monkeypatch, "other")
    other = ablation_page()
    assert not [b for b in other.button if b.key == "abl-cancel"]
    assert any("another browser session" in c.value for c in other.caption)
    assert other.button(key="abl-start").disabled
    assert "val accuracy (%)" in other.dataframe[0].value.columns
    assert other.dataframe[0].value["val accuracy (%)"].tolist() == [25.0]  # 0.25 shown as %
    assert not job.cancelled
    as_session(monkeypatch, "owner")
    ok(owner.button(key="abl-cancel").click().run())
    assert job.cancelled
    ok(owner.run())
    assert progress_text(owner).startswith("Cancelled")
    assert not [b for b in owner.button if b.key == "abl-cancel"]
    assert not owner.button(key="abl-start").disabled


@pytest.mark.slow
def test_real_sweep_clock_stops_and_results_in_percent(tmp_path, monkeypatch):
    """A real 3-run sweep: the elapsed time stays put after the end; the results table shows accuracy in %."""
    from analysis.ablation import Store

    monkeypatch.setenv("KERNELSCOPE_DB", str(tmp_path / "abl.sqlite"))
    at = ablation_page()
    ok(at.button(key="abl-start").click().run())
    deadline = time.time() + 60
    while time.time() < deadline and not progress_text(ok(at.run())).startswith("Finished"):
        time.sleep(0.3)
    ok(at.run())
    first = progress_text(at)
    assert first.startswith("Finished: 3/3 runs trained")
    time.sleep(1.6)
    assert progress_text(ok(at.run())) == first  # the clock stopped (it used to keep counting)
    rows = Store(tmp_path / "abl.sqlite").runs()
    table = next(d.value for d in at.dataframe if {"key", "test accuracy (%)"} <= set(d.value.columns))
    by_key = dict(zip(table["key"], table["test accuracy (%)"], strict=True))
    assert len(rows) == 3
    for r in rows:
        assert by_key[r["key"]] == pytest.approx(100.0 * r["test_metric"])
    assert any("3 already done" in m.value for m in at.markdown)


def test_presets_say_what_their_task_rewards():
    """The preset box: delay-local by default on CPU, its sentence under the box; a task change picks a preset
    made for that task; 'frozen' is offered for SGConv only."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(MAIN, default_timeout=60)
    ok(at.switch_page("views/ablation.py").run())
    assert at.selectbox(key="abl-preset").value == "delay-local"
    assert at.selectbox(key="abl-task").value == "delay"
    assert at.text_input(key="abl-seeds").value == "0, 1, 2"
    assert any("2 taps back" in c.value for c in at.caption)
    ok(at.selectbox(key="abl-preset").set_value("delay-far").run())
    assert any("64 taps back" in c.value for c in at.caption)
    assert "frozen" in at.multiselect(key="abl-modes").options
    ok(at.selectbox(key="abl-task").set_value("digits").run())
    assert at.selectbox(key="abl-preset").value == "digits"
    assert any("whole-image context" in c.value for c in at.caption)
    ok(at.selectbox(key="abl-family").set_value("s4d").run())
    assert "frozen" not in at.multiselect(key="abl-modes").options


def test_results_show_mean_and_sd_over_seeds(tmp_path, monkeypatch):
    """Three stored seeds of one point at 10 / 20 / 30 % accuracy: the page's per-point table says mean 20, sd 10
    (sample sd), n = 3, and the decay plot draws the same mean with an error bar of 10."""
    import json

    from analysis.ablation import Store, SweepSpec

    monkeypatch.setenv("KERNELSCOPE_DB", str(tmp_path / "abl.sqlite"))
    spec = SweepSpec(task="digits", task_params={"L": 64}, family="sgconv", decays=(0.0,), sizes=(), base_size=8,
                     base_decay=1.0, seeds=(0, 1, 2), steps=3, d_model=8, n_layers=1, batch_size=8, eval_every=3)
    store = Store(tmp_path / "abl.sqlite")
    for r, acc in zip(spec.expand(), (0.1, 0.2, 0.3), strict=True):
        store.put_run({"key": r.key(), "status": "done", "task": "digits", "family": "sgconv", "decay": r.decay,
                       "decay_mode": r.decay_mode, "size": r.size, "seed": r.seed, "steps": 3, "metric": "accuracy",
                       "test_metric": acc, "val_metric": acc, "steps_done": 3, "kernel_params": 1, "spec": {},
                       "curve": {}, "checkpoint": None, "device": "cpu", "wall_time_s": 0.1})
    at = ablation_page(decays="0", sizes="", seeds="0, 1, 2")
    assert any("3 already done" in m.value for m in at.markdown)
    pts = next(d.value for d in at.dataframe if "seeds (n)" in d.value.columns)
    assert len(pts) == 1
    row = pts.iloc[0]
    assert row["seeds (n)"] == 3
    assert row["test accuracy (%) mean"] == pytest.approx(20.0) and row["sd"] == pytest.approx(10.0)
    fig = next(json.loads(c.proto.spec) for c in at.get("plotly_chart")
               if "vs decay" in json.loads(c.proto.spec)["layout"]["title"]["text"])
    ours = fig["data"][0]
    assert ours["y"] == pytest.approx([20.0]) and ours["error_y"]["array"] == pytest.approx([10.0])
    assert "n = 3 seeds" in ours["name"]


def test_paper_curves_only_beside_accuracy(tmp_path, monkeypatch):
    """The paper's curves are accuracy (%) on a classification task: over an NMSE axis (delay) neither the toggle
    nor a paper trace is drawn; on digits (accuracy) both are."""
    import json

    from streamlit.testing.v1 import AppTest

    from analysis.ablation import Store, SweepSpec

    monkeypatch.setenv("KERNELSCOPE_DB", str(tmp_path / "abl.sqlite"))
    store = Store(tmp_path / "abl.sqlite")

    def stored_page(task, metric, value, L):
        at = AppTest.from_file(MAIN, default_timeout=60)
        ok(at.switch_page("views/ablation.py").run())
        ok(at.selectbox(key="abl-preset").set_value("quick").run())
        ok(at.selectbox(key="abl-task").set_value(task).run())
        at.text_input(key="abl-decays").input("0")
        at.text_input(key="abl-sizes").input("")
        at.text_input(key="abl-seeds").input("0")
        for k, v in TINY:
            at.number_input(key=k).set_value(v)
        at.number_input(key="abl-L").set_value(L)
        ok(at.run())
        params = {**json.loads(at.session_state["abl-task-params"] or "{}"), "L": L}
        spec = SweepSpec(task=task, task_params=params, family="sgconv", decays=(0.0,), sizes=(), base_size=8,
                         base_decay=float(at.session_state["abl-base-decay"]), seeds=(0,), steps=3, d_model=8,
                         n_layers=1, batch_size=8, eval_every=3)
        r = spec.expand()[0]
        store.put_run({"key": r.key(), "status": "done", "task": task, "family": "sgconv", "decay": r.decay,
                       "decay_mode": r.decay_mode, "size": r.size, "seed": r.seed, "steps": 3, "metric": metric,
                       "test_metric": value, "val_metric": value, "steps_done": 3, "kernel_params": 1, "spec": {},
                       "curve": {}, "checkpoint": None, "device": "cpu", "wall_time_s": 0.1})
        ok(at.run())
        assert any("1 already done" in m.value for m in at.markdown)
        fig = next(json.loads(c.proto.spec) for c in at.get("plotly_chart")
                   if "vs decay" in json.loads(c.proto.spec)["layout"]["title"]["text"])
        return at, [t.get("name", "") for t in fig["data"]]

    at, names = stored_page("delay", "nmse", 0.05, 128)
    assert not [t for t in at.toggle if t.key == "abl-paper"]
    assert not any("paper" in n for n in names)
    at, names = stored_page("digits", "accuracy", 0.5, 64)
    assert [t for t in at.toggle if t.key == "abl-paper"]
    assert any("paper" in n for n in names)
