"""One measured cell: one warm-up call, then the median of k timed calls, and the peak memory over all of them.

k is adaptive: each cell takes about ``cell_target_s`` of timed work, at least ``min_reps`` calls (3, or 1 with
--quick) and at most ``max_reps``; ``torch.cuda.synchronize`` runs around every call on a GPU. A cell that fails
(out of memory, or any other error) is recorded as such and the benchmark goes on. A cell is a dict:
``status`` ('ok' | 'skipped' | 'oom' | 'error'), ``ms`` (median per call), ``peak_mb``, ``note`` and more.
"""
from __future__ import annotations

import gc
import statistics
import time

import torch

from .spec import GB, MB, Settings, fmt_L


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _is_oom(e: BaseException) -> bool:
    oom_types = (MemoryError, getattr(torch, "OutOfMemoryError", MemoryError))
    return isinstance(e, oom_types) or "out of memory" in str(e).lower()


def _timed(fn, device: str) -> float:
    """Seconds of one call of fn (synchronised on a GPU); its result is dropped."""
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def measure(fn, device: str, mem, s: Settings, min_reps: int | None = None, max_reps: int | None = None) -> dict:
    """Warm-up call(s), then k timed calls (median); peak memory over all of them."""
    min_reps = s.min_reps if min_reps is None else min_reps
    max_reps = s.max_reps if max_reps is None else max_reps
    mem.start()  # peak over warm-up + timed calls (identical calls; the timed ones then run on a warm allocator)
    warm = [_timed(fn, device) for _ in range(max(0, s.warmup))]
    t_ref = warm[-1] if warm else None
    reps = min_reps if not t_ref else int(min(max_reps, max(min_reps, s.cell_target_s // max(t_ref, 1e-9))))
    times = [_timed(fn, device) for _ in range(reps)]
    res = {"status": "ok", "ms": statistics.median(times) * 1e3, "ms_min": min(times) * 1e3,
           "warmup_ms": warm[0] * 1e3 if warm else None, "reps": reps}
    res.update(mem.stop())
    return res


def skipped(note: str, est_bytes: float | None = None) -> dict:
    """A cell that was not run, with the reason and (where known) its estimated peak memory."""
    return {"status": "skipped", "ms": None, "peak_mb": None, "note": note,
            "est_mb": None if est_bytes is None else est_bytes / MB}


def skip_reason(mode: str, L: int, est: float, limit: float, pred: float | None, *, fb_max_L: int, cap_s: float,
                needed_s: float | None, left_s: float) -> str | None:
    """Why a cell is not run (None: run it): a forward+backward beyond ``fb_max_L``, an estimated ``est`` bytes over
    the memory ``limit``, a predicted ``pred`` seconds per call over ``cap_s``, or ``needed_s`` seconds of timing
    over the ``left_s`` left in the time budget."""
    if mode == "fwd+bwd" and L > fb_max_L:
        return f"skipped: fwd+bwd only up to {fmt_L(fb_max_L)} in this mode"
    if est > limit:
        return f"skipped: est. {est / GB:.1f} GB > {limit / GB:.1f} GB budget"
    if pred is not None and pred > cap_s:
        return f"skipped: est. {pred:.0f} s/call > {cap_s:g} s cap"
    if needed_s is not None and needed_s > left_s:
        return f"skipped: time budget (est. {needed_s:.0f} s, {max(0.0, left_s):.0f} s left)"
    return None


def run_cell(fn, device: str, mem, s: Settings, **kw) -> dict:
    """`measure`, or a cell saying why it failed ('oom' | 'error')."""
    try:
        return measure(fn, device, mem, s, **kw)
    except Exception as e:  # a benchmark records a failing cell and goes on
        if device == "cuda":
            torch.cuda.empty_cache()
        gc.collect()
        if _is_oom(e):
            return {"status": "oom", "ms": None, "peak_mb": None, "note": f"out of memory: {str(e)[:120]}"}
        return {"status": "error", "ms": None, "peak_mb": None, "note": f"{type(e).__name__}: {str(e)[:200]}"}


def zero_grads(module) -> None:
    """Drop a module's gradients (after a timed backward), so the next call starts like the first."""
    for p in module.parameters():
        p.grad = None
