"""Live ablations (analysis.ablation and the Ablation page): tiny sweeps end to end through the Python API, the CLI
and AppTest; SQLite persistence, resume after cancel, concurrent writers; batched == separate training; bad grids.
Everything is tiny (digits at L=64, d_model 8, one layer, a few steps) so the file runs in well under a minute."""
from __future__ import annotations

import importlib.util
import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import sgconv_core
from analysis.ablation import Store, SweepJob, SweepSpec, run_sweep, train_group
from analysis.ablation import figures as afig
from analysis.ablation.__main__ import main as cli_main
from analysis.ablation.spec import PAPER_DECAY

REPO = Path(__file__).resolve().parents[1]
TINY_TASK = {"L": 64, "n_train": 48, "n_val": 20, "n_test": 20}


def tiny(**kw) -> SweepSpec:
    base = dict(task="digits", task_params=dict(TINY_TASK), family="sgconv", decays=(0.0, 1.0), sizes=(4,),
                base_size=8, seeds=(0,), steps=4, eval_every=2, batch_size=8, d_model=8, n_layers=1,
                eval_batch_size=64, name="tiny")
    base.update(kw)
    return SweepSpec(**base)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kw, field", [
    ({"decays": (0.0, -1.0)}, "decays[1]"),
    ({"sizes": (0,)}, "sizes[0]"),
    ({"sizes": (128,)}, "sizes[0]"),                       # kernel_dim beyond L
    ({"task_params": {"L": 10_000_000}}, "task_params.L"),
    ({"task_params": {"L": 63}}, "task_params"),            # digits needs a perfect square
    ({"steps": 0}, "steps"),
    ({"steps": 10**9}, "steps"),
    ({"batch_size": -3}, "batch_size"),
    ({"seeds": ()}, "seeds"),
    ({"decay_modes": ("sometimes",)}, "decay_modes"),
    ({"task": "imagenet"}, "task"),
    ({"family": "s4d", "sizes": (3,), "base_size": 4}, "sizes[0]"),   # odd state size
    ({"decays": (float("nan"),)}, "decays[0]"),
    ({"decays": (), "sizes": ()}, "decays and sizes"),
])
def test_bad_grid_rejected_before_anything_runs(tmp_path, kw, field):
    db = tmp_path / "a.sqlite"
    with pytest.raises(ValueError) as e:
        run_sweep(tiny(**kw), db=db)
    assert field in str(e.value)
    assert not db.exists()  # nothing was created, let alone trained


def test_bad_grid_cli_exit_code(tmp_path, capsys):
    rc = cli_main(["--task", "digits", "--decays", "-0.5", "--sizes", "4", "--db", str(tmp_path / "x.sqlite")])
    assert rc == 2
    assert "decays[0]" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------- sweeps
def test_sweep_end_to_end_api(tmp_path):
    db = tmp_path / "abl.sqlite"
    events = []
    res = run_sweep(tiny(), db=db, progress=events.append)
    assert res.status == "done" and len(res.runs) == 3 and len(res.trained) == 3  # base point counted once
    kinds = {e["event"] for e in events}
    assert {"step", "eval", "run_done"} <= kinds
    # a fresh connection (another session) sees every run with its config, metrics, curve, checkpoint, device
    rows = Store(db).runs()
    assert len(rows) == 3
    for r in rows:
        assert r["status"] == "done" and 0.0 <= r["test_metric"] <= 1.0 and r["metric"] == "accuracy"
        assert r["curve"]["evals"] and r["curve"]["loss"] and r["device"] and r["wall_time_s"] > 0
        assert r["train_config"]["kernel_args"]["kernel_dim"] == r["size"]
        ck = sgconv_core.load(r["checkpoint"])  # opens like any checkpoint (Kernels page)
        assert ck.kernels[0](64).shape == (1, 8, 64)
        assert ck.card["ablation"]["key"] == r["key"]
        assert ck.kernels[0].decay_min == pytest.approx(2.0 ** r["decay"])
    raw = sqlite3.connect(db).execute("SELECT COUNT(*), MIN(test_metric) FROM runs").fetchone()
    assert raw[0] == 3 and raw[1] is not None
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # the figures: ours and the paper's, labelled
    figs = [afig.decay_figure(res.spec, res.rows, "accuracy"), afig.size_figure(res.spec, res.rows, "accuracy")]
    names = [[t.name for t in f.data] for f in figs]
    assert any("paper" in n for n in names[0]) and any(n.startswith("ours") for n in names[0])
    paper = [t for t in figs[0].data if "paper" in t.name][0]
    assert list(paper.y) == list(PAPER_DECAY.values())
    ours = [t for t in figs[0].data if t.name.startswith("ours")][0]
    assert list(ours.x) == [0.0, 1.0]
    assert list(figs[1].data[0].x) == [4, 8]
    # running the same sweep again trains nothing
    again = run_sweep(tiny(), db=db)
    assert again.trained == [] and len(again.skipped) == 3 and len(again.rows) == 3


def test_cancel_keeps_finished_runs_and_resume_skips_them(tmp_path):
    db = tmp_path / "abl.sqlite"
    finished = []

    def progress(ev):
        if ev["event"] == "run_done":
            finished.append(ev["key"])

    res = run_sweep(tiny(), db=db, progress=progress, should_stop=lambda: len(finished) >= 1, batched=False)
    assert res.status == "cancelled" and len(res.trained) == 1
    assert Store(db).done_keys() == set(finished)  # the finished run is stored, the interrupted one is not
    again = []
    res2 = run_sweep(tiny(), db=db, progress=lambda ev: again.append(ev["key"]) if ev["event"] == "run_done" else None)
    assert res2.status == "done" and res2.skipped == finished
    assert len(again) == 2 and finished[0] not in again  # nothing finished was trained twice
    assert len(Store(db).runs()) == 3


def test_background_job_cancel(tmp_path):
    job = SweepJob(tiny(steps=200, eval_every=100, decays=(0.0, 0.5, 1.0)), db=tmp_path / "j.sqlite", batched=False)
    deadline = time.time() + 20
    while job.snapshot()["fraction"] == 0 and time.time() < deadline:
        time.sleep(0.02)
    job.cancel()
    assert job.wait(20)
    snap = job.snapshot()
    assert snap["status"] == "cancelled" and job.error is None
    assert len(Store(tmp_path / "j.sqlite").runs()) < 4


def test_batched_equals_separate_and_train(tmp_path):
    from sgconv_core.train import train

    runs = tiny(decays=(0.0, 2.0), sizes=(2,), decay_modes=("fixed", "learnable")).expand()
    assert len(runs) == 5
    sep = [train_group([r], device="cpu")[0] for r in runs]
    bat = train_group(runs, device="cpu", batched=True)
    assert all(o.batched_with == 5 for o in bat)
    for a, b in zip(sep, bat, strict=True):
        assert a.key == b.key and a.test_metric == b.test_metric
        assert [e["val_metric"] for e in a.evals] == [e["val_metric"] for e in b.evals]
        for (sa, la), (sb, lb) in zip(a.losses, b.losses, strict=True):
            assert sa == sb and la == pytest.approx(lb, rel=1e-4, abs=1e-5)
    # one run through the ablation trainer is sgconv_core.train.train, bit for bit
    ref = train(runs[0].train_config())
    assert [h["loss"] for h in ref.history] == [e["loss"] for e in sep[0].evals]
    assert ref.test_metric == sep[0].test_metric


def test_s4d_decay_knob(tmp_path):
    spec = tiny(family="s4d", decays=(0.0, 4.0), sizes=(), base_size=4, decay_modes=("fixed",))
    res = run_sweep(spec, db=tmp_path / "s.sqlite")
    assert res.status == "done" and len(res.rows) == 2
    re = {}
    for r in res.rows:
        k = sgconv_core.load(r["checkpoint"]).kernels[0]
        re[r["decay"]] = (-torch.exp(k.A_real)).mean().item()   # Re A
    assert re[4.0] == pytest.approx(-2.0, rel=1e-5)               # S4D-Lin: -0.5 x 4, frozen in 'fixed' mode
    assert abs(re[0.0]) < 1e-3                                    # r = 0: (almost) no decay


# ---------------------------------------------------------------------------------------------------- storage
def _load_store_module():
    spec = importlib.util.spec_from_file_location("ks_store", REPO / "analysis" / "ablation" / "store.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _row(key: str, i: int) -> dict:
    return {"key": key, "status": "done", "task": "digits", "family": "sgconv", "decay": float(i), "decay_mode":
            "fixed", "size": i, "seed": 0, "metric": "accuracy", "test_metric": 0.5, "curve": {"loss": [[1, 2.0]] * 50},
            "spec": {"i": i}, "checkpoint": f"/x/{key}", "device": "cpu", "wall_time_s": 0.1}


def test_concurrent_writers_threads_and_process(tmp_path):
    db = tmp_path / "c.sqlite"
    Store(db)
    code = (
        "import importlib.util, sys\n"
        f"s = importlib.util.spec_from_file_location('st', {str(REPO / 'analysis/ablation/store.py')!r})\n"
        "m = importlib.util.module_from_spec(s); s.loader.exec_module(m)\n"
        f"st = m.Store({str(db)!r})\n"
        "for i in range(60):\n"
        "    st.put_run({'key': f'p{i}', 'status': 'done', 'task': 'digits', 'family': 'sgconv', 'decay': 1.0,"
        " 'decay_mode': 'fixed', 'size': i, 'seed': 0, 'curve': {'loss': [[1, 2.0]] * 50}})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    errors = []

    def writer(prefix):
        try:
            st = _load_store_module().Store(db)
            for i in range(60):
                st.put_run(_row(f"{prefix}{i}", i))
                st.runs(status="done")  # readers interleave with writers
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(p,)) for p in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert proc.wait(60) == 0
    assert not errors
    st = Store(db)
    assert st.integrity_ok()
    rows = st.runs()
    assert len(rows) == 180 and all(isinstance(r["curve"], dict) for r in rows)


# ---------------------------------------------------------------------------------------------------- CLI
def test_cli_end_to_end_and_resume(tmp_path, capsys):
    db = str(tmp_path / "cli.sqlite")
    args = ["--task", "digits", "--task-param", "L=64", "--task-param", "n_train=48", "--task-param", "n_val=20",
            "--task-param", "n_test=20", "--decays", "0", "1", "--sizes", "4", "--base-size", "8", "--steps", "3",
            "--eval-every", "3", "--batch-size", "8", "--d-model", "8", "--n-layers", "1", "--db", db, "--quiet",
            "--json"]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "3 runs, 0 already done" in out and "trained 3" in out
    results = json.loads(out.strip().splitlines()[-1])
    assert len(results) == 3 and all(Path(r["checkpoint"]).is_file() for r in results)
    assert cli_main(args) == 0
    assert "3 runs, 3 already done" in capsys.readouterr().out


def test_cli_module_entry_point(tmp_path):
    out = subprocess.run([sys.executable, "-m", "analysis.ablation", "--preset", "quick", "--dry-run", "--db",
                          str(tmp_path / "d.sqlite")], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "36 runs, 0 already done" in out.stdout and out.stdout.count("todo") == 36  # 12 points x 3 seeds


# ---------------------------------------------------------------------------------------------------- app
def test_app_page_tiny_sweep(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("KERNELSCOPE_DB", str(tmp_path / "app.sqlite"))
    import streamlit as st

    st.cache_resource.clear()
    at = AppTest.from_file(str(REPO / "app" / "main.py"), default_timeout=60)
    at.switch_page("views/ablation.py").run()
    assert not at.exception, [e.value for e in at.exception]
    at.selectbox(key="abl-preset").set_value("quick").run()
    at.selectbox(key="abl-task").set_value("digits").run()
    at.text_input(key="abl-decays").input("0, 1")
    at.text_input(key="abl-sizes").input("4")
    at.text_input(key="abl-seeds").input("0")
    for k, v in (("abl-L", 64), ("abl-steps", 3), ("abl-dmodel", 8), ("abl-layers", 1), ("abl-batch", 8),
                 ("abl-eval", 3), ("abl-base-size", 8)):
        at.number_input(key=k).set_value(v)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("3 runs in this grid" in m.value for m in at.markdown)
    # a bad grid: a clear error, no start
    at.text_input(key="abl-decays").input("0, -1").run()
    assert any("decays[1]" in e.value for e in at.error)
    at.text_input(key="abl-decays").input("0, 1").run()
    at.button(key="abl-start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    deadline = time.time() + 45
    while time.time() < deadline:
        at.run()
        if any("Finished" in (p.proto.text or "") for p in at.get("progress")):
            break
        time.sleep(0.3)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert any("vs decay" in t for t in titles) and any("vs kernel_dim" in t for t in titles)
    assert len(Store(tmp_path / "app.sqlite").runs()) == 3
    # a fresh session sees the stored runs without training
    at2 = AppTest.from_file(str(REPO / "app" / "main.py"), default_timeout=60)
    at2.switch_page("views/ablation.py").run()
    at2.selectbox(key="abl-preset").set_value("quick").run()
    at2.selectbox(key="abl-task").set_value("digits").run()
    at2.text_input(key="abl-decays").input("0, 1")
    at2.text_input(key="abl-sizes").input("4")
    at2.text_input(key="abl-seeds").input("0")
    for k, v in (("abl-L", 64), ("abl-steps", 3), ("abl-dmodel", 8), ("abl-layers", 1), ("abl-batch", 8),
                 ("abl-eval", 3), ("abl-base-size", 8)):
        at2.number_input(key=k).set_value(v)
    at2.run()
    assert not at2.exception, [e.value for e in at2.exception]
    assert any("3 already done" in m.value for m in at2.markdown)
    # load a run's checkpoint into the app
    first = Store(tmp_path / "app.sqlite").runs()[0]["key"]
    at2.multiselect(key="abl-load-pick").set_value([first]).run()
    at2.button(key="abl-load").click().run()
    assert not at2.exception, [e.value for e in at2.exception]
    assert any("Loaded" in s.value for s in at2.success)
    st.cache_resource.clear()


def test_ray_executor_optional(tmp_path):
    try:
        import ray  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="ray"):
            run_sweep(tiny(), db=tmp_path / "r.sqlite", executor="ray")
        return
    pytest.skip("ray is installed; tests/test_ray.py exercises the Ray executor")


def test_progress_clock_stops_when_the_sweep_ends():
    import time

    from analysis.ablation.runner import Progress

    pr = Progress([], set())
    pr.set_status("done")
    first = pr.snapshot()["elapsed_s"]
    time.sleep(0.3)
    assert pr.snapshot()["elapsed_s"] == first
