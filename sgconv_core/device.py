"""Which torch device to run on, and its name for people (model cards, progress lines, benchmark tables).

    resolve_device("auto")    # cuda when torch sees one, else cpu
    resolve_device("cuda:1")  # ValueError when there is no second GPU
    device_name(resolve_device("cpu"))  # 'AMD EPYC 7B13 (2 cores)'
    with reuse_freed_memory():  # a training loop on the CPU: freed tensors' memory is reused, not unmapped
        ...
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import platform
import threading

import torch


def resolve_device(name: str | torch.device | None = "auto", *, allow_index: bool = True) -> torch.device:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' -> a torch.device; ValueError for anything this machine cannot run.

    None or '' means 'auto'; case and surrounding spaces are ignored. allow_index=False refuses 'cuda:N' (for callers
    that run on the current CUDA device only).
    """
    text = str(name or "auto").strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    kind, _, index = text.partition(":")
    if kind != "cuda" or (index and not index.isdigit()) or (index and not allow_index):
        allowed = "'auto', 'cpu', 'cuda' or 'cuda:N'" if allow_index else "'auto', 'cpu' or 'cuda'"
        raise ValueError(f"unknown device {name!r}; use {allowed}")
    if not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but torch sees no CUDA device")
    if index and int(index) >= torch.cuda.device_count():
        raise ValueError(f"device {name!r} asked for, but torch sees {torch.cuda.device_count()} CUDA device(s)")
    return torch.device(text)


def device_name(device: torch.device) -> str:
    """'NVIDIA H100 80GB HBM3' or the CPU model, e.g. 'AMD EPYC 7B13 (2 cores)'."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model() or 'cpu'} ({os.cpu_count()} cores)"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or what `platform` knows; '' when nothing does)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ---------------------------------------------------------------------------------------------------- host memory
#: glibc mallopt parameters (malloc.h) and the values `reuse_freed_memory` sets while it is active.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: Allocations below this come from the heap (reused) rather than from a fresh mmap (page-faulted on first touch).
REUSE_MMAP_THRESHOLD = 1 << 30
#: Free memory at the top of the heap kept for reuse instead of being returned to the system.
REUSE_TRIM_THRESHOLD = 1 << 30
#: glibc's defaults (malloc(3)), set back on exit; a final malloc_trim(0) returns what was kept.
_DEFAULT_THRESHOLD = 128 * 1024
_reuse_lock = threading.Lock()
_reuse_depth = 0


def _glibc():
    """The C library when it is glibc (has mallopt and malloc_trim), else None (macOS, musl, Windows)."""
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return lib if hasattr(lib, "mallopt") and hasattr(lib, "malloc_trim") else None
    except OSError:
        return None


@contextlib.contextmanager
def reuse_freed_memory():
    """Inside the block, glibc keeps the memory of freed large tensors for the next ones (a training loop on the CPU).

    By default glibc serves a large allocation (above a threshold of 128 kB that it raises up to 32 MB as it goes) with
    a fresh mmap and unmaps it on free, and it returns free memory at the top of its heap to the system beyond a
    similar threshold. A training step frees and re-allocates the same few dozen activation-sized tensors (8-17 MB
    each for a digits model, B = 32, H = 64, L = 1024) every step, so each one is page-faulted and zeroed by the
    kernel again: ~25,000 minor faults per step there. With both thresholds at 1 GB (`REUSE_MMAP_THRESHOLD`,
    `REUSE_TRIM_THRESHOLD`) the heap keeps that memory and the faults drop ~4x. On exit the defaults are set back
    and malloc_trim(0) returns what was kept. Nested and concurrent blocks (training threads) share one setting,
    undone when the last one exits. A no-op where the C library is not glibc. (The same effect as running under
    jemalloc or tcmalloc, without preloading a library.)
    """
    global _reuse_depth
    lib = _glibc()
    if lib is None:
        yield
        return
    with _reuse_lock:
        _reuse_depth += 1
        if _reuse_depth == 1:
            lib.mallopt(_M_MMAP_THRESHOLD, REUSE_MMAP_THRESHOLD)
            lib.mallopt(_M_TRIM_THRESHOLD, REUSE_TRIM_THRESHOLD)
    try:
        yield
    finally:
        with _reuse_lock:
            _reuse_depth -= 1
            if _reuse_depth == 0:
                lib.mallopt(_M_MMAP_THRESHOLD, _DEFAULT_THRESHOLD)
                lib.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_THRESHOLD)
                lib.malloc_trim(0)
