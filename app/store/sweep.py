"""The one ablation sweep this server process runs, shared by every browser session (``st.cache_resource``).

It remembers which browser session started the sweep (only that session may cancel it; the others watch it
read-only) and the sweep's elapsed time when it ended (the clock stops there, however long the page stays open).
A browser refresh (F5) opens a new session: the sweep then reads as started elsewhere and runs on to its end.
"""
from __future__ import annotations

import threading

import streamlit as st

#: Seconds between live refreshes of the Ablation page's progress, counts and results while a sweep runs.
LIVE_EVERY_S = 1.0


def session_id() -> str:
    """This browser session's id ('' outside a Streamlit script run)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return getattr(ctx, "session_id", "") or ""


class ServerSweep:
    """The server's sweep: ``job`` (an `analysis.ablation.SweepJob`, or any object with ``done``, ``wait()``,
    ``cancel()`` and ``snapshot()`` giving ``elapsed_s``), the session that started it, its final elapsed time."""

    def __init__(self):
        self.job = None
        self.owner: str | None = None
        self._final_elapsed: float | None = None
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self.job is not None and not self.job.done

    def start(self, make_job, owner: str):
        """Start ``make_job()`` as the server's sweep, owned by session ``owner``; returns the job.

        Raises RuntimeError if a sweep is running already (one at a time per server); errors of make_job (a bad
        grid: ValueError) pass through and leave the previous sweep on show."""
        with self._lock:
            if self.running:
                raise RuntimeError("a sweep is running already; wait for it to end")
            job = make_job()
            self.job, self.owner, self._final_elapsed = job, owner, None
        threading.Thread(target=self._watch, args=(job,), name="kernelscope-ablation-clock", daemon=True).start()
        return job

    def _watch(self, job) -> None:
        """Stop the clock the moment the sweep's thread ends (not when a page next looks at it)."""
        job.wait()
        self._record_end(job)

    def _record_end(self, job) -> None:
        with self._lock:
            if job is self.job and self._final_elapsed is None:
                self._final_elapsed = float(job.snapshot()["elapsed_s"])

    def is_owner(self, session: str) -> bool:
        return bool(session) and session == self.owner

    def cancel(self, session: str) -> bool:
        """Cancel the running sweep if ``session`` started it; returns whether it was cancelled."""
        if self.job is None or not self.is_owner(session):
            return False
        self.job.cancel()
        return True

    def snapshot(self) -> dict | None:
        """The job's snapshot with ``elapsed_s`` frozen at its end once the sweep has ended; None without a job."""
        job = self.job
        if job is None:
            return None
        done = job.done
        snap = dict(job.snapshot())
        if done:
            self._record_end(job)
            if self._final_elapsed is not None and job is self.job:
                snap["elapsed_s"] = self._final_elapsed
        return snap

    def live_every(self) -> float | None:
        """How often the page's live parts rerun: every `LIVE_EVERY_S` while the sweep runs, else never."""
        return LIVE_EVERY_S if self.running else None


@st.cache_resource(show_spinner=False)
def server_sweep() -> ServerSweep:
    """The server process's one `ServerSweep` (the same object in every session)."""
    return ServerSweep()


def elapsed_text(s) -> str:
    """'42 s', '1 min 42 s'; '?' for None or a non-finite value."""
    import math

    if s is None or (isinstance(s, float) and not math.isfinite(s)):
        return "?"
    s = int(round(s))
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"
