"""The Ray executor against a real local Ray instance (``ray.init(num_cpus=2)``): a 4-run sweep through
``run_sweep(..., executor="ray")`` lands in SQLite with exactly the in-process metrics and checkpoints; a worker
killed mid-run is retried (same numbers) or, without retries, stored as 'failed' while every finished run is kept
and the sweep ends; a task that raises is stored as failed; cancelling stops the queued tasks; resume trains only
what is not done. Skipped with a reason when ray is not installed (``pip install 'ray>=2.9'``).

Exactness: both sides train with ``threads=1`` (a Ray task gets ``OMP_NUM_THREADS=num_cpus=1``; the in-process
reference is pinned to one thread too), the same seeds and the same code, so every metric, curve and weight is
compared with ``==``, not a tolerance.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

ray = pytest.importorskip("ray", reason="ray is not installed (optional: pip install 'ray>=2.9')")

from safetensors.torch import load_file  # noqa: E402

from analysis.ablation import RayExecutor, Store, SweepJob, SweepSpec, run_sweep  # noqa: E402
from analysis.ablation.runner import make_executor  # noqa: E402

pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parents[1]
TASK = {"L": 64, "n_train": 48, "n_val": 20, "n_test": 20}
COMPARED = ("status", "task", "family", "decay", "decay_mode", "size", "seed", "steps", "metric", "test_metric",
            "val_metric", "best_step", "steps_done", "kernel_params", "total_params", "batched_with")


def _curve(row: dict) -> dict:
    """The stored curve without its wall-clock stamps (evals carry elapsed_s)."""
    c = row["curve"]
    return {"loss": c["loss"], "evals": [{k: v for k, v in e.items() if k != "elapsed_s"} for e in c["evals"]]}


def four_runs(**kw) -> SweepSpec:
    """4 runs (4 decay values at one size), digits at L=64, one tiny layer: ~1 s per run on one core."""
    base = dict(task="digits", task_params=dict(TASK), family="sgconv", decays=(0.0, 0.5, 1.0, 2.0), sizes=(),
                base_size=8, seeds=(0,), steps=200, eval_every=100, batch_size=8, d_model=8, n_layers=1,
                name="ray-4")
    base.update(kw)
    return SweepSpec(**base)


@pytest.fixture(scope="module")
def local_ray():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The 4-run sweep in-process, one thread: {key: row}, and the checkpoint tensors per key."""
    n = torch.get_num_threads()
    try:
        res = run_sweep(four_runs(), db=tmp_path_factory.mktemp("ref") / "ref.sqlite", threads=1)
    finally:
        torch.set_num_threads(n)
    assert res.status == "done" and len(res.trained) == 4 and not res.failed
    return {r["key"]: r for r in res.rows}, {r["key"]: load_file(r["checkpoint"]) for r in res.rows}


def assert_same_run(row: dict, ref_row: dict, ref_weights: dict) -> None:
    for c in COMPARED:
        assert row[c] == ref_row[c], (c, row[c], ref_row[c])
    assert _curve(row) == _curve(ref_row) and len(row["curve"]["evals"]) == 2 and len(row["curve"]["loss"]) > 100
    assert row["checkpoint"] and os.path.isfile(row["checkpoint"])
    weights = load_file(row["checkpoint"])
    assert weights.keys() == ref_weights.keys()
    for name, t in weights.items():
        assert torch.equal(t, ref_weights[name]), name


def _descends_from_us(pid: int) -> bool:
    """Whether `pid` is a descendant of this process (the local Ray instance's workers are: raylet's children)."""
    me = os.getpid()
    for _ in range(20):
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return False
        if pid == me:
            return True
        if pid <= 1:
            return False
    return False


def ray_workers_running_a_group() -> list[int]:
    """Pids of our Ray workers executing a sweep group (Ray titles a busy worker 'ray::<function name>')."""
    pids = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    title = f.read().split(b"\0")[0]
            except OSError:
                continue
            if title.startswith(b"ray::_ray_train_group") and _descends_from_us(int(p)):
                pids.append(int(p))
    return pids


def sweep_killing_one_worker(spec: SweepSpec, executor, db, busy_for: float = 0.1, timeout: float = 180.0):
    """Run the sweep in a thread; SIGKILL the first worker seen training a group for `busy_for` seconds."""
    out: dict = {}

    def go():
        try:
            out["res"] = run_sweep(spec, db=db, executor=executor, threads=1)
        except BaseException as e:  # noqa: BLE001 - re-raised in the test thread
            out["err"] = e

    th = threading.Thread(target=go, daemon=True)
    th.start()
    t0, seen, killed = time.time(), {}, None
    while th.is_alive() and time.time() - t0 < timeout:
        now = time.time()
        for pid in ray_workers_running_a_group():
            seen.setdefault(pid, now)
            if killed is None and now - seen[pid] >= busy_for:
                os.kill(pid, signal.SIGKILL)
                killed = pid
        time.sleep(0.05)
    th.join(timeout=max(1.0, timeout - (time.time() - t0)))
    assert not th.is_alive(), "the sweep did not end after a worker was killed"
    if "err" in out:
        raise out["err"]
    assert killed is not None, "no Ray worker was seen training a group"
    return out["res"]


# ---------------------------------------------------------------------------------------------------- tests
def test_ray_sweep_matches_in_process(local_ray, reference, tmp_path):
    ref_rows, ref_w = reference
    db = tmp_path / "ray.sqlite"
    events = []
    res = run_sweep(four_runs(), db=db, executor="ray", threads=1, progress=events.append)
    assert res.status == "done" and sorted(res.trained) == sorted(ref_rows) and not res.failed
    order = [(e["event"], e["keys"][0] if e["event"] == "group_start" else e["key"]) for e in events]
    assert [ev for ev, _ in order[:3]] == ["group_start", "group_start", "run_done"]   # 2 slots: 2 shown running
    assert sorted(k for ev, k in order if ev == "group_start") == sorted(ref_rows)
    for k in ref_rows:                                                    # each run starts before it is done
        assert order.index(("group_start", k)) < order.index(("run_done", k))
    rows = Store(db).runs(status=None)
    assert len(rows) == 4 and all(r["status"] == "done" for r in rows)
    for row in rows:
        assert_same_run(row, ref_rows[row["key"]], ref_w[row["key"]])
        assert row["checkpoint"].startswith(str(tmp_path))   # written by the workers into the sweep's folder
    sweep = Store(db).sweeps()[0]
    assert sweep["status"] == "done" and sweep["device"] == res.device == "Ray cluster (2 CPUs, 0 GPUs; tasks on cpu)"
    again = run_sweep(four_runs(), db=db, executor="ray", threads=1)           # resume: nothing left to train
    assert again.trained == [] and sorted(again.skipped) == sorted(ref_rows) and len(again.rows) == 4


def test_killed_worker_is_retried_with_the_same_numbers(local_ray, reference, tmp_path):
    ref_rows, ref_w = reference
    db = tmp_path / "retry.sqlite"
    res = sweep_killing_one_worker(four_runs(), RayExecutor(max_retries=2), db)
    assert res.status == "done" and len(res.trained) == 4 and not res.failed
    rows = Store(db).runs(status=None)
    assert len(rows) == 4
    for row in rows:
        assert_same_run(row, ref_rows[row["key"]], ref_w[row["key"]])


def test_killed_worker_without_retries_is_stored_as_failed_and_resumed(local_ray, reference, tmp_path):
    ref_rows, ref_w = reference
    db = tmp_path / "noretry.sqlite"
    res = sweep_killing_one_worker(four_runs(), RayExecutor(max_retries=0), db)
    assert res.status == "done" and len(res.failed) == 1 and len(res.trained) == 3
    rows = {r["key"]: r for r in Store(db).runs(status=None)}
    assert len(rows) == 4
    dead = rows[res.failed[0]]
    assert dead["status"] == "failed" and "WorkerCrashedError" in dead["error"] and dead["checkpoint"] is None
    for k in res.trained:                                                       # nothing that finished is lost
        assert_same_run(rows[k], ref_rows[k], ref_w[k])
    again = run_sweep(four_runs(), db=db, executor=RayExecutor(max_retries=0), threads=1)
    assert again.trained == res.failed and sorted(again.skipped) == sorted(res.trained)
    rows = {r["key"]: r for r in Store(db).runs(status=None)}
    assert all(r["status"] == "done" for r in rows.values())
    for k, row in rows.items():
        assert_same_run(row, ref_rows[k], ref_w[k])


def test_a_task_that_raises_is_stored_as_failed(local_ray, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the checkpoint folder should be")
    db = tmp_path / "err.sqlite"
    res = run_sweep(four_runs(steps=4, eval_every=2), db=db, checkpoint_dir=blocker / "ck", executor="ray",
                    threads=1)
    assert res.status == "done" and len(res.failed) == 4 and res.trained == [] and res.rows == []
    rows = Store(db).runs(status=None)
    assert len(rows) == 4 and all(r["status"] == "failed" for r in rows)
    assert all(r["error"].startswith("NotADirectoryError in a Ray worker:") and "not-a-folder" in r["error"]
               for r in rows)


def test_cancel_stops_the_queued_tasks_and_keeps_finished_runs(local_ray, tmp_path):
    db = tmp_path / "cancel.sqlite"
    spec = four_runs(decays=(0.0, 0.25, 0.5, 1.0, 1.5, 2.0))
    finished = []

    def progress(ev):
        if ev.get("event") == "run_done":
            finished.append(ev["key"])

    t0 = time.time()
    res = run_sweep(spec, db=db, executor="ray", threads=1, progress=progress, should_stop=lambda: bool(finished))
    assert res.status == "cancelled" and 1 <= len(res.trained) < 6
    rows = Store(db).runs(status=None)
    assert sorted(r["key"] for r in rows) == sorted(res.trained) and all(r["status"] == "done" for r in rows)
    assert time.time() - t0 < 60
    # the cancelled tasks free their CPUs: a new task is scheduled at once
    assert ray.get(ray.remote(num_cpus=2)(lambda: 7).remote(), timeout=60) == 7


def test_cli_sweep_on_a_running_cluster_through_ray_address(local_ray, reference, tmp_path):
    """`RAY_ADDRESS=<head> python -m analysis.ablation --executor ray`: a second process (the driver) sends the
    sweep to the cluster the fixture started, as it would to `ray start --head` on another machine."""
    ref_rows, ref_w = reference
    db, ck = tmp_path / "cli.sqlite", tmp_path / "shared-checkpoints"
    s = four_runs()
    argv = [sys.executable, "-m", "analysis.ablation", "--executor", "ray", "--db", str(db), "--checkpoint-dir",
            str(ck), "--task", s.task, "--family", s.family, "--decays", *map(str, s.decays), "--sizes",
            "--base-size", str(s.base_size), "--seeds", "0", "--steps", str(s.steps), "--eval-every",
            str(s.eval_every), "--batch-size", str(s.batch_size), "--d-model", str(s.d_model), "--n-layers",
            str(s.n_layers), "--threads", "1", "--name", s.name, "--json", "--quiet",
            *[a for k, v in TASK.items() for a in ("--task-param", f"{k}={v}")]]
    env = dict(os.environ, RAY_ADDRESS=ray.get_runtime_context().gcs_address, OMP_WAIT_POLICY="PASSIVE")
    p = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = Store(db).runs(status=None)
    assert len(rows) == 4 and all(r["status"] == "done" for r in rows)
    for row in rows:
        assert row["checkpoint"].startswith(str(ck))
        assert_same_run(row, ref_rows[row["key"]], ref_w[row["key"]])
    assert "Started a local Ray instance" not in p.stderr        # it joined the running cluster
    assert "done: trained 4, skipped 0 (already done), failed 0" in p.stdout
    printed = json.loads(p.stdout.strip().splitlines()[-1])
    assert {r["key"]: r["test_metric"] for r in printed} == {k: r["test_metric"] for k, r in ref_rows.items()}


def test_unreachable_cluster_is_one_clear_error_at_once(monkeypatch, tmp_path):
    monkeypatch.setattr(ray, "is_initialized", lambda: False)   # as in a fresh driver process
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]                              # closed once the block ends: nothing listens
    t0 = time.time()
    with pytest.raises(ValueError, match=f"no Ray cluster answers at '127.0.0.1:{port}'"):
        run_sweep(four_runs(steps=4), db=tmp_path / "x.sqlite", executor=RayExecutor(address=f"127.0.0.1:{port}"))
    assert time.time() - t0 < 10
    with pytest.raises(ValueError, match="address must be host:port"):
        run_sweep(four_runs(steps=4), db=tmp_path / "x.sqlite", executor=RayExecutor(address="head-node"))


def test_sweep_job_on_ray_reports_the_cluster(local_ray, tmp_path):
    """The background job (what the app's Ablation page runs) through Ray: finishes, snapshot names the cluster."""
    job = SweepJob(four_runs(steps=4, eval_every=2), db=tmp_path / "job.sqlite", executor="ray", threads=1)
    assert job.wait(120) and job.error is None
    snap = job.snapshot()
    assert snap["status"] == "done" and snap["n_done"] == 4 and snap["fraction"] == 1.0
    assert snap["device"].startswith("Ray cluster (2 CPUs")
    assert len(Store(tmp_path / "job.sqlite").runs()) == 4


def test_a_finished_sweep_does_not_connect(monkeypatch, tmp_path):
    db = tmp_path / "done.sqlite"
    spec = four_runs(steps=4, eval_every=2)
    n = torch.get_num_threads()
    assert len(run_sweep(spec, db=db, threads=1).trained) == 4
    torch.set_num_threads(n)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)

    def no_init(*a, **k):
        raise AssertionError("ray.init called for a sweep with nothing to train")

    monkeypatch.setattr(ray, "init", no_init)
    again = run_sweep(spec, db=db, executor="ray")
    assert again.status == "done" and again.trained == [] and len(again.skipped) == 4


def test_batched_auto_follows_the_workers_device():
    from analysis.ablation.runner import resolve_batched

    assert resolve_batched("auto", "cpu", where="cuda") is True      # a CPU driver sending to GPU workers
    assert resolve_batched("auto", "cpu", where="cpu") is False
    assert resolve_batched("auto", "cpu") is False and resolve_batched(True, "cpu", where="cpu") is True


@pytest.mark.parametrize("kw, word", [({"max_retries": -1}, "max_retries"), ({"num_cpus": 0}, "num_cpus")])
def test_bad_executor_arguments(kw, word):
    with pytest.raises(ValueError, match=word):
        RayExecutor(**kw)


def test_missing_ray_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ValueError, match="needs the ray package"):
        make_executor("ray")
