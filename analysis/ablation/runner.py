"""Run a sweep: skip finished runs, group the rest, hand the groups to an executor, store each finished run.

    result = run_sweep(SweepSpec(...), db="ablations.sqlite", progress=print, should_stop=lambda: False)

Executors:

* ``InProcessExecutor`` (default): groups one after another in this process.
* ``RayExecutor``: each group is a Ray task (``ray.remote(num_gpus=...)``) on whatever cluster
  ``ray.init()`` reaches; see its docstring. Ray is imported only when this executor is used.

`SweepJob` runs `run_sweep` in a background thread with a cancel flag and a thread-safe progress snapshot
(used by the Streamlit page, so that the page can be refreshed, or watched from a second session, while the
sweep goes on).
"""
from __future__ import annotations

import os
import re
import socket
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from sgconv_core.device import device_name, resolve_device

from .batched import Cancelled, RunOutcome, train_group
from .spec import RunSpec, SweepSpec
from .store import Store


# ---------------------------------------------------------------------------------------------------- progress
class Progress:
    """Per-run and overall progress of a sweep, safe to read from another thread (`snapshot`)."""

    def __init__(self, runs: list[RunSpec], done: set[str], device: str = ""):
        self._lock = threading.Lock()
        self.t0 = time.time()
        self.ended_at: float | None = None  # set when the sweep reaches a final status: the clock stops there
        self.device = device
        self.status = "running"
        self.message = ""
        self.runs = {}
        for r in runs:
            k = r.key()
            self.runs[k] = {"key": k, "label": r.label(), "decay": r.decay, "decay_mode": r.decay_mode,
                            "size": r.size, "seed": r.seed, "steps": r.steps,
                            "status": "skipped" if k in done else "pending", "step": 0, "loss": None,
                            "val_metric": None, "test_metric": None, "loss_curve": [], "val_curve": []}
        self.work_total = sum(v["steps"] for v in self.runs.values() if v["status"] == "pending")
        self.started_work_at = None

    def update(self, event: dict) -> None:
        with self._lock:
            if self.started_work_at is None:
                self.started_work_at = time.time()
            ev = event.get("event")
            if ev == "step":
                for k, loss in event.get("losses", {}).items():
                    row = self.runs[k]
                    row["status"], row["step"], row["loss"] = "running", event["step"], loss
                    curve = row["loss_curve"]
                    curve.append((event["step"], loss))
                    if len(curve) > 600:  # keep every other point of the older half
                        row["loss_curve"] = curve[:300:2] + curve[300:]
            elif ev == "eval":
                for k, v in zip(event["keys"], event["val_metrics"], strict=True):
                    self.runs[k]["val_metric"] = v
                    self.runs[k]["val_curve"].append((event["step"], v))
            elif ev == "group_start":
                for k in event["keys"]:
                    self.runs[k]["status"] = "running"

    def finish_run(self, outcome: RunOutcome) -> None:
        with self._lock:
            row = self.runs[outcome.key]
            row["status"] = outcome.status
            row["step"] = outcome.steps_done if outcome.status == "done" else row["step"]
            row["test_metric"] = outcome.test_metric
            row["checkpoint"] = outcome.checkpoint

    def mark(self, keys, status: str) -> None:
        with self._lock:
            for k in keys:
                if self.runs[k]["status"] in ("pending", "running"):
                    self.runs[k]["status"] = status

    def set_status(self, status: str, message: str = "") -> None:
        with self._lock:
            self.status, self.message = status, message
            if status not in ("running", "cancelling") and self.ended_at is None:
                self.ended_at = time.time()

    def snapshot(self) -> dict:
        """{status, message, device, elapsed_s, fraction, eta_s, n_done, n_total, runs: [row dicts]}."""
        with self._lock:
            rows = [dict(r, loss_curve=list(r["loss_curve"]), val_curve=list(r["val_curve"]))
                    for r in self.runs.values()]
            status, message = self.status, self.message
        done_work = sum(r["steps"] if r["status"] in ("done", "failed") else r["step"]
                        for r in rows if r["status"] != "skipped")
        total = max(1, self.work_total)
        elapsed = (self.ended_at or time.time()) - self.t0
        work_elapsed = time.time() - (self.started_work_at or time.time())
        frac = min(1.0, done_work / total) if self.work_total else 1.0
        eta = work_elapsed / done_work * (total - done_work) if done_work else None
        return {"status": status, "message": message, "device": self.device, "elapsed_s": elapsed,
                "fraction": frac, "eta_s": eta if status == "running" else 0.0,
                "n_done": sum(r["status"] in ("done", "skipped") for r in rows), "n_total": len(rows),
                "n_skipped": sum(r["status"] == "skipped" for r in rows), "runs": rows}


# ---------------------------------------------------------------------------------------------------- executors
class InProcessExecutor:
    """Train the groups one after another in this process."""

    name = "inprocess"

    def run(self, groups: list[list[RunSpec]], train_kw: dict, on_result, progress, should_stop) -> None:
        for group in groups:
            if should_stop():
                raise Cancelled("cancelled before a group started")
            if progress:
                progress({"event": "group_start", "keys": [r.key() for r in group]})
            train_group(group, progress=progress, should_stop=should_stop, on_result=on_result, **train_kw)


def _ray_train_group(runs, train_kw):  # runs inside a Ray worker
    outs = train_group(runs, **train_kw)
    for o in outs:
        o.__dict__.pop("model", None)
    return outs


def _failed_outcomes(group: list[RunSpec], error: str) -> list[RunOutcome]:
    """One 'failed' outcome per run of a group whose task raised or whose worker died (the row keeps the error)."""
    return [RunOutcome(run=r, key=r.key(), status="failed", error=error) for r in group]


class RayExecutor:
    """Each group becomes one Ray task; the driver writes results to SQLite as tasks finish.

    How a grid runs on Ray: ``ray.init(address=...)`` connects to a cluster (``address=None``: the one named by
    ``RAY_ADDRESS``, else a new local instance; nothing is started if Ray is already initialised; a host:port
    that does not answer is a ValueError at once, not Ray's minutes-long wait); every group
    of runs (one batched model, or a single run with ``batched=False``) is submitted as
    ``ray.remote(num_gpus=g, num_cpus=c, max_retries=n)(train_group)``; Ray places the tasks on free CPUs/GPUs;
    ``ray.wait`` hands back finished groups, whose outcomes the driver stores at once (the database stays on
    the driver: SQLite is not for network file systems). Checkpoints are written by the workers into
    ``checkpoint_dir`` (made absolute on the driver), which must be shared storage (NFS, a mounted bucket) for a
    multi-node cluster; the workers must be able to import ``analysis`` and ``sgconv_core`` (the same checkout on
    every node, ``ray job submit --working-dir .``, or ``runtime_env={"working_dir": ...}`` here).

    Failures. A worker that dies (killed, out of memory, node lost) is retried by Ray up to ``max_retries``
    times (training is deterministic given the seeds, so a retried run gives the same numbers); a group whose
    retries are used up, or whose task raised, is stored as 'failed' with the error, and the sweep goes on:
    finished runs are stored as they arrive and never lost, and the next sweep over the same grid trains only
    the runs that are not 'done'. Cancelling calls ``ray.cancel(force=True)`` on the groups still queued or
    running. Progress is per group (no per-step curves from remote workers); the worker's torch uses
    ``num_cpus`` threads (Ray sets ``OMP_NUM_THREADS``) unless ``threads`` is given to the sweep.
    """

    name = "ray"

    def __init__(self, address: str | None = None, num_gpus: float | None = None, num_cpus: float = 1,
                 max_retries: int = 2, runtime_env: dict | None = None):
        try:
            import ray  # noqa: F401
        except ImportError as e:
            raise ValueError("executor 'ray' needs the ray package (pip install 'ray>=2.9')") from e
        if num_cpus is not None and num_cpus <= 0:
            raise ValueError(f"num_cpus must be > 0, got {num_cpus}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.address, self.num_gpus, self.num_cpus = address, num_gpus, num_cpus
        self.max_retries, self.runtime_env = max_retries, runtime_env
        self._gpus: float | None = None  # GPUs per task, set by prepare()

    def prepare(self, device: str) -> tuple[str, str]:
        """Connect (see above) and say where the groups will train: ('cuda' | 'cpu', a description of the
        cluster). run_sweep uses the first to resolve ``batched='auto'`` (batched when the workers have GPUs,
        whatever the driver has)."""
        import ray

        if not ray.is_initialized():
            address = self.address or os.environ.get("RAY_ADDRESS") or None
            _check_reachable(address)
            try:
                ray.init(address=address, runtime_env=self.runtime_env, ignore_reinit_error=True)
            except (ConnectionError, RuntimeError) as e:
                raise ValueError(f"executor 'ray': cannot connect to the Ray cluster at {address!r}: {e}") from None
        res = ray.cluster_resources()
        gpus = self.num_gpus if self.num_gpus is not None else (1 if res.get("GPU", 0) >= 1 else 0)
        self._gpus = 0 if device == "cpu" else gpus
        where = "cuda" if self._gpus else "cpu"
        return where, f"Ray cluster ({res.get('CPU', 0):g} CPUs, {res.get('GPU', 0):g} GPUs; tasks on {where})"

    def run(self, groups, train_kw, on_result, progress, should_stop) -> None:
        if not groups:
            return
        import ray
        from ray.exceptions import RayError

        if self._gpus is None or not ray.is_initialized():
            self.prepare(train_kw.get("device", "auto"))
        gpus = self._gpus
        remote = ray.remote(num_gpus=gpus, num_cpus=self.num_cpus, max_retries=self.max_retries,
                            retry_exceptions=False)(_ray_train_group)
        kw = dict(train_kw, device="cpu" if train_kw.get("device") == "cpu" else "auto")  # the workers' device
        if kw.get("checkpoint_dir"):
            kw["checkpoint_dir"] = os.path.abspath(kw["checkpoint_dir"])
        pending = {remote.remote(g, kw): g for g in groups}
        # Progress: Ray runs as many tasks at once as the cluster has slots for them, in about submission order;
        # the first `slots` groups are shown running, and one more each time a group finishes (an estimate:
        # remote workers send no per-step events).
        res = ray.cluster_resources()
        slots = int(res.get("GPU", 0) // gpus) if gpus else int(res.get("CPU", 1) // (self.num_cpus or 1))
        queue = list(groups)

        def start_next(n: int) -> None:
            for g in queue[:max(0, n)]:
                if progress:
                    progress({"event": "group_start", "keys": [r.key() for r in g]})
            del queue[:max(0, n)]

        start_next(max(1, slots))
        while pending:
            if should_stop():
                for ref in pending:
                    ray.cancel(ref, force=True)
                raise Cancelled("cancelled; running Ray tasks were cancelled")
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in ready:
                group = pending.pop(ref)
                try:
                    outs = ray.get(ref)
                except RayError as e:  # worker died after its retries, or the task raised: the group failed
                    outs = _failed_outcomes(group, _ray_error_text(e))
                for o in outs:
                    on_result(o)
                start_next(1)


def _check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """ValueError at once when a host:port Ray address does not accept connections (``ray.init`` would wait
    for it for many minutes). ``None`` / 'auto' / 'local' are left to Ray."""
    if not address or address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"executor 'ray': address must be host:port, ray://host:port, 'auto' or 'local', "
                         f"got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise ValueError(f"executor 'ray': no Ray cluster answers at {address!r} ({e}); start one with "
                         f"`ray start --head` or fix RAY_ADDRESS") from None


def _ray_error_text(e: BaseException) -> str:
    """The error for the database row: the task's own exception when it raised (``RayTaskError.cause``),
    else Ray's (``WorkerCrashedError: ...``), on one line, without Ray's colour codes and traceback."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__} in a Ray worker: {cause}"[:1000]
    text = " ".join(ln.strip() for ln in re.sub(r"\x1b\[[0-9;]*m", "", str(e)).splitlines() if ln.strip())
    return f"{type(e).__name__}: {text}"[:1000]


EXECUTORS = {"inprocess": InProcessExecutor, "ray": RayExecutor}


def make_executor(executor) -> object:
    if executor is None:
        return InProcessExecutor()
    if isinstance(executor, str):
        if executor not in EXECUTORS:
            raise ValueError(f"executor: unknown executor {executor!r}; choose from {list(EXECUTORS)}")
        return EXECUTORS[executor]()
    return executor


# ---------------------------------------------------------------------------------------------------- the sweep
@dataclass
class SweepResult:
    spec: SweepSpec
    sweep_key: str
    runs: list[RunSpec]
    rows: list[dict]                 # database rows (done runs of this grid)
    trained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    status: str = "done"             # 'done' | 'cancelled'
    wall_time_s: float = 0.0
    device: str = ""
    db: str = ""


def plan_groups(runs: list[RunSpec], batched: bool, max_batch: int | None) -> list[list[RunSpec]]:
    """Runs grouped by data/shape signature (order kept), split into chunks of at most max_batch."""
    if not batched:
        return [[r] for r in runs]
    by_sig: dict = {}
    for r in runs:
        by_sig.setdefault(r.group_signature(), []).append(r)
    out = []
    for g in by_sig.values():
        n = max_batch or len(g)
        out += [g[i:i + n] for i in range(0, len(g), n)]
    return out


def resolve_batched(batched, device: str, where: str | None = None) -> bool:
    """'auto': batched on CUDA (where it pays), one run at a time on CPU (each finished run is stored at once).
    `where` ('cuda' | 'cpu'): the device type the groups train on when it is not this process's (Ray workers)."""
    if batched == "auto" or batched is None:
        return (where or resolve_device(device).type) == "cuda"
    return bool(batched)


def _run_done_event(o: RunOutcome) -> dict:
    return {"event": "run_done", "key": o.key, "status": o.status, "test_metric": o.test_metric, "metric": o.metric,
            "label": o.run.label(), "checkpoint": o.checkpoint, "wall_time_s": o.wall_time_s, "error": o.error}


def run_sweep(spec: SweepSpec, db=None, checkpoint_dir=None, executor="inprocess", batched="auto",
              max_batch: int | None = None, device: str = "auto", threads: int | None = None,
              progress: Callable[[dict], None] | None = None, should_stop: Callable[[], bool] | None = None,
              tracker: Progress | None = None) -> SweepResult:
    """Validate, skip finished runs, train the rest, store every finished run. Never raises on cancel.

    Raises ValueError (naming the field) for a bad grid before anything runs.
    """
    t0 = time.time()
    spec = spec.check()
    try:
        dev = resolve_device(device)
    except ValueError as e:
        raise ValueError(f"device: {e}") from None
    if max_batch is not None and max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    ex = make_executor(executor)
    store = db if isinstance(db, Store) else Store(db)
    ckdir = os.fspath(checkpoint_dir) if checkpoint_dir else os.fspath(store.default_checkpoint_dir())
    runs = spec.expand(check=False)
    keys = [r.key() for r in runs]
    done = store.done_keys(keys)
    todo = [r for r, k in zip(runs, keys, strict=True) if k not in done]
    where, dname = None, device_name(dev)
    if todo and hasattr(ex, "prepare"):  # an executor training elsewhere (Ray): connect before anything is stored
        where, dname = ex.prepare(device)
    sweep_key = spec.key()

    def put_sweep(status: str) -> None:
        store.put_sweep(sweep_key, spec.name or f"{spec.task} {spec.family}", spec.to_dict(), len(runs), status, dname)

    put_sweep("running")
    tr = tracker or Progress(runs, done, dname)
    tr.device = dname  # a tracker made by SweepJob names this process's device; the executor may train elsewhere
    stop = should_stop or (lambda: False)
    trained, failed = [], []

    def on_result(o: RunOutcome) -> None:
        store.put_run(o.row(sweep_key))
        tr.finish_run(o)
        (trained if o.status == "done" else failed).append(o.key)
        if progress:
            progress(_run_done_event(o))

    def prog(ev: dict) -> None:
        tr.update(ev)
        if progress:
            progress(ev)

    use_batched = resolve_batched(batched, device, where)
    groups = plan_groups(todo, use_batched, max_batch)
    train_kw = {"device": device, "batched": use_batched, "checkpoint_dir": ckdir, "threads": threads}
    status = "done"
    try:
        ex.run(groups, train_kw, on_result, prog, stop)
    except Cancelled:
        status = "cancelled"
        tr.mark(keys, "cancelled")
    except BaseException:
        tr.set_status("failed", traceback.format_exc(limit=3))
        put_sweep("failed")
        raise
    tr.set_status(status)
    put_sweep(status)
    rows = store.runs(keys)
    return SweepResult(spec=spec, sweep_key=sweep_key, runs=runs, rows=rows, trained=trained,
                       skipped=sorted(done), failed=failed, status=status, wall_time_s=time.time() - t0,
                       device=dname, db=os.fspath(store.path))


# ---------------------------------------------------------------------------------------------------- jobs
class SweepJob:
    """`run_sweep` in a background thread: `cancel()`, `snapshot()`, `done`, `result`, `error`."""

    def __init__(self, spec: SweepSpec, **kw):
        self.spec = spec.check()  # bad input fails here, in the caller's thread
        self.kw = kw
        self.store = kw.get("db") if isinstance(kw.get("db"), Store) else Store(kw.get("db"))
        kw["db"] = self.store
        runs = self.spec.expand(check=False)
        done = self.store.done_keys(r.key() for r in runs)
        self.tracker = Progress(runs, done, device_name(resolve_device(kw.get("device", "auto"))))
        self._stop = threading.Event()
        self.result: SweepResult | None = None
        self.error: str | None = None
        self.thread = threading.Thread(target=self._run, name="kernelscope-ablation", daemon=True)
        self.started_at = time.time()
        self.thread.start()

    def _run(self) -> None:
        try:
            self.result = run_sweep(self.spec, tracker=self.tracker, should_stop=self._stop.is_set, **self.kw)
        except BaseException as e:  # noqa: BLE001 - reported through .error
            self.error = f"{type(e).__name__}: {e}"
            self.tracker.set_status("failed", self.error)

    def cancel(self) -> None:
        self._stop.set()

    @property
    def done(self) -> bool:
        return not self.thread.is_alive()

    def snapshot(self) -> dict:
        snap = self.tracker.snapshot()
        if self._stop.is_set() and snap["status"] == "running":
            snap["status"] = "cancelling"
        return snap

    def wait(self, timeout: float | None = None) -> bool:
        self.thread.join(timeout)
        return self.done
