"""The ablation database: every finished run in an embedded SQLite file (stdlib sqlite3).

Location: the ``db`` argument, else ``$KERNELSCOPE_DB``, else ``~/.kernelscope/ablations.sqlite``. Checkpoints
go next to it (``<db folder>/ablation-checkpoints/<key>.safetensors``) unless a folder is given.

Concurrency: WAL journal (readers never block the writer, a crash never leaves a half-written row) and a busy
timeout (a second writer waits instead of failing); every write is one short ``BEGIN IMMEDIATE`` transaction
on its own connection, so two sweeps (threads or processes) can write to the same file at once. A run is
written only when it has finished (with its checkpoint already on disk), keyed by :meth:`RunSpec.key`, so an
interrupted sweep loses at most the run in progress and resumes by skipping the keys already ``done``.
"""
from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

DB_ENV = "KERNELSCOPE_DB"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,
    status TEXT NOT NULL,               -- 'done' | 'failed'
    sweep TEXT,                         -- key of the sweep that trained it first
    task TEXT, family TEXT, decay REAL, decay_mode TEXT, size INTEGER, seed INTEGER,
    steps INTEGER, metric TEXT, test_metric REAL, val_metric REAL, best_step INTEGER, steps_done INTEGER,
    kernel_params INTEGER, total_params INTEGER,
    spec TEXT,                          -- RunSpec as JSON
    train_config TEXT,                  -- sgconv_core TrainConfig as JSON
    curve TEXT,                         -- {"evals": [{step, loss, val_metric}], "loss": [[step, loss], ...]}
    checkpoint TEXT,
    device TEXT, batched_with INTEGER, wall_time_s REAL, error TEXT,
    created_at TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_family ON runs(task, family);
CREATE TABLE IF NOT EXISTS sweeps (
    key TEXT PRIMARY KEY,
    name TEXT, spec TEXT, n_runs INTEGER, status TEXT, device TEXT,
    created_at TEXT, updated_at TEXT,
    pid INTEGER, host TEXT              -- the process running it (for 'running' sweeps)
);
"""

RUN_COLUMNS = ("key", "status", "sweep", "task", "family", "decay", "decay_mode", "size", "seed", "steps", "metric",
               "test_metric", "val_metric", "best_step", "steps_done", "kernel_params", "total_params", "spec",
               "train_config", "curve", "checkpoint", "device", "batched_with", "wall_time_s", "error", "created_at")


class StoreError(ValueError):
    """The database file cannot be used (damaged, not a database, read-only, cannot be created): one line."""


def _describe(path: Path, e: BaseException) -> str:
    """A one-line message for an error opening or writing the database at ``path``."""
    text = str(e).strip() or type(e).__name__
    low = text.lower()
    if isinstance(e, sqlite3.DatabaseError) and ("not a database" in low or "malformed" in low
                                                  or "file is encrypted" in low):
        return f"db: {path} is not an ablation database (damaged, or another kind of file); give another --db path"
    if "readonly" in low or "read-only" in low:
        return f"db: {path} is read-only; give a database file you can write"
    if isinstance(e, OSError):
        return f"db: cannot create {path} ({e.strerror or text})"
    if "unable to open" in low:
        return f"db: cannot open or create {path} ({text})"
    return f"db: {path}: {text}"


def _pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host (a process of another user counts as alive)."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError, OSError):
        return True
    return True


def default_db_path() -> Path:
    """$KERNELSCOPE_DB, else ~/.kernelscope/ablations.sqlite."""
    env = os.environ.get(DB_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".kernelscope" / "ablations.sqlite"


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _clean(v):
    """JSON-safe: NaN / inf become None."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


class Store:
    """Access to one ablation database file. Cheap to create; every call opens its own short connection."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path).expanduser() if path is not None else default_db_path()
        if self.path.exists() and self.path.is_dir():
            raise ValueError(f"db: {self.path} is a folder; give a file path such as {self.path / 'ablations.sqlite'}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as con:
                con.execute("PRAGMA journal_mode=WAL")
            self._write(lambda con: con.executescript(_SCHEMA) and None, script=True)
            self._write(self._migrate)  # also a real write: a read-only file fails here, not mid-sweep
        except (sqlite3.Error, OSError) as e:
            raise StoreError(_describe(self.path, e)) from None

    @staticmethod
    def _migrate(con) -> None:
        """Bring an older file's tables up to date (columns added since) and stamp the schema version."""
        have = {r[1] for r in con.execute("PRAGMA table_info(sweeps)")}
        for col, kind in (("pid", "INTEGER"), ("host", "TEXT")):
            if col not in have:
                con.execute(f"ALTER TABLE sweeps ADD COLUMN {col} {kind}")
        con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def default_checkpoint_dir(self) -> Path:
        return self.path.parent / "ablation-checkpoints"

    # -- connections ---------------------------------------------------------------------------------------
    @contextmanager
    def _connect(self):
        con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        try:
            con.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            con.execute("PRAGMA synchronous=NORMAL")
            con.row_factory = sqlite3.Row
            yield con
        finally:
            con.close()

    def _write(self, fn, script: bool = False):
        """Run fn(con) in one immediate transaction, retrying a locked database for up to the busy timeout."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                with self._connect() as con:
                    if script:  # executescript commits on its own
                        return fn(con)
                    con.execute("BEGIN IMMEDIATE")
                    try:
                        out = fn(con)
                        con.execute("COMMIT")
                        return out
                    except BaseException:
                        con.execute("ROLLBACK")
                        raise
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    # -- runs ----------------------------------------------------------------------------------------------
    def put_run(self, row: dict) -> None:
        """Insert or replace one finished run (a dict with RUN_COLUMNS; JSON fields may be Python objects)."""
        row = dict(row)
        for k in ("spec", "train_config", "curve"):
            if k in row and not isinstance(row[k], (str, type(None))):
                row[k] = json.dumps(_clean(row[k]), default=str)
        for k in ("test_metric", "val_metric", "wall_time_s"):
            if isinstance(row.get(k), float) and not math.isfinite(row[k]):
                row[k] = None
        row.setdefault("created_at", _now())
        cols = [c for c in RUN_COLUMNS if c in row]
        sql = f"INSERT OR REPLACE INTO runs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        self._write(lambda con: con.execute(sql, [row[c] for c in cols]))

    def done_keys(self, keys=None) -> set[str]:
        """Keys of finished runs (among `keys` if given)."""
        with self._connect() as con:
            if keys is None:
                return {r[0] for r in con.execute("SELECT key FROM runs WHERE status='done'")}
            keys = list(keys)
            out = set()
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                q = f"SELECT key FROM runs WHERE status='done' AND key IN ({', '.join('?' * len(chunk))})"
                out |= {r[0] for r in con.execute(q, chunk)}
            return out

    def runs(self, keys=None, task: str | None = None, family: str | None = None, status: str | None = "done",
             parse: bool = True) -> list[dict]:
        """Rows of the runs table (JSON fields parsed), filtered by keys / task / family / status."""
        where, args = [], []
        if status:
            where.append("status = ?")
            args.append(status)
        if task:
            where.append("task = ?")
            args.append(task)
        if family:
            where.append("family = ?")
            args.append(family)
        q = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY created_at, key"
        with self._connect() as con:
            rows = [dict(r) for r in con.execute(q, args)]
        if keys is not None:
            keys = set(keys)
            rows = [r for r in rows if r["key"] in keys]
        if parse:
            for r in rows:
                for k in ("spec", "train_config", "curve"):
                    if r.get(k):
                        try:
                            r[k] = json.loads(r[k])
                        except ValueError:
                            pass
        return rows

    def count(self) -> int:
        with self._connect() as con:
            return con.execute("SELECT COUNT(*) FROM runs").fetchone()[0]

    # -- sweeps --------------------------------------------------------------------------------------------
    def put_sweep(self, key: str, name: str, spec: dict, n_runs: int, status: str, device: str = "",
                  pid: int | None = None, host: str | None = None) -> None:
        """Insert or update a sweep. The process writing it (``pid``/``host``, default this one) is recorded
        with it, so that a 'running' sweep whose process has died reads as 'interrupted' (see `sweeps`)."""
        now = _now()
        pid = os.getpid() if pid is None else int(pid)
        host = socket.gethostname() if host is None else host

        def fn(con):
            con.execute(
                "INSERT INTO sweeps (key, name, spec, n_runs, status, device, created_at, updated_at, pid, host) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET status=excluded.status, "
                "device=excluded.device, updated_at=excluded.updated_at, name=excluded.name, pid=excluded.pid, "
                "host=excluded.host",
                (key, name, json.dumps(spec, default=str), n_runs, status, device, now, now, pid, host))

        self._write(fn)

    def sweeps(self) -> list[dict]:
        """Every sweep, newest first. A 'running' sweep whose process (recorded pid, on this host) no longer
        exists was killed: it is reported as 'interrupted' (its finished runs are kept; rerun to resume)."""
        with self._connect() as con:
            rows = [dict(r) for r in con.execute("SELECT * FROM sweeps ORDER BY updated_at DESC")]
        here = socket.gethostname()
        for r in rows:
            if (r.get("status") == "running" and r.get("pid") is not None and r.get("host") == here
                    and not _pid_alive(r["pid"])):
                r["status"] = "interrupted"
            try:
                r["spec"] = json.loads(r["spec"])
            except (TypeError, ValueError):
                pass
        return rows

    def integrity_ok(self) -> bool:
        with self._connect() as con:
            return con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
