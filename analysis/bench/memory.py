"""Peak memory of one cell, measured (`CpuMem`, `CudaMem`) and estimated beforehand (`estimate_bytes`,
`estimate_layer_bytes`), so that cells over the budget are skipped instead of crashing.

- CUDA: ``torch.cuda.max_memory_allocated`` (peak minus what was allocated at the cell start) and
  ``max_memory_reserved`` (absolute; the caching allocator is emptied and its peak stats reset before each cell).
- CPU: the process's resident-set high-water mark (VmHWM), reset before each cell by writing "5" to
  /proc/self/clear_refs (Linux >= 4.0), minus the RSS at the cell start. This sees torch's allocations (which
  tracemalloc does not) and costs nothing; one fresh subprocess per cell (ru_maxrss) would cost ~1.5 s of
  ``import torch`` per cell, too slow for --quick. Freed small blocks that glibc keeps resident and reuses are
  not counted, so ``malloc_trim(0)`` runs before each cell; a few MB of noise remain. Where clear_refs is
  unavailable only the estimate is given.
- A fresh process per measurement (`run_in_child` + `peak_of_call`): what the long-layer table uses
  (``python -m analysis.bench.long_layer``), where one call is seconds and the import costs nothing by comparison.
"""
from __future__ import annotations

import gc

import torch

from .spec import GB, MB


def meminfo_gb(key: str) -> float | None:
    """A /proc/meminfo entry ('MemTotal', 'MemAvailable') in GB; None where there is no /proc."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024 / GB
    except OSError:
        pass
    return None


def memory_probe(device: str) -> CpuMem | CudaMem:
    """The peak-memory probe for a device ('cpu' | 'cuda')."""
    return CudaMem() if device == "cuda" else CpuMem()


_LIBC = None


def _malloc_trim() -> None:
    """glibc malloc_trim(0): return free heap memory to the OS (no-op elsewhere)."""
    global _LIBC
    if _LIBC is None:
        try:
            import ctypes
            _LIBC = ctypes.CDLL("libc.so.6")
            _LIBC.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)


def _proc_status(key: str) -> int | None:
    """A /proc/self/status entry ('VmRSS', 'VmHWM') in bytes; None where there is none."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_hwm() -> bool:
    """Reset this process's VmHWM to its current RSS; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _proc_status("VmHWM") is not None
    except OSError:
        return False


class CpuMem:
    """Peak RSS of this process during a cell: VmHWM after resetting it via /proc/self/clear_refs."""

    method = "cpu-rss-hwm"

    def __init__(self):
        self.ok = _reset_hwm()
        self.base = 0

    def limit_bytes(self, budget_gb: float) -> float:
        """The budget, or 80% of the available RAM when that is less."""
        avail = meminfo_gb("MemAvailable")
        lim = budget_gb * GB
        return min(lim, 0.8 * avail * GB) if avail else lim

    def start(self) -> None:
        gc.collect()
        _malloc_trim()  # hand freed heap pages back, so the cell's allocations show up as new RSS
        if self.ok:
            self.base = _proc_status("VmRSS") or 0
            _reset_hwm()

    def stop(self) -> dict:
        if not self.ok:
            return {"peak_mb": None}
        return {"peak_mb": max(0, (_proc_status("VmHWM") or 0) - self.base) / MB}


class CudaMem:
    """Peak CUDA memory during a cell: allocated above the cell start, and reserved (absolute)."""

    method = "cuda-max-memory-allocated"
    ok = True

    def __init__(self):
        self.base = 0

    def limit_bytes(self, budget_gb: float) -> float:
        """90% of what the GPU could still give (free plus reserved-but-unused); the CPU budget does not apply."""
        free, _ = torch.cuda.mem_get_info()
        return 0.9 * (free + torch.cuda.memory_reserved() - torch.cuda.memory_allocated())

    def start(self) -> None:
        gc.collect()
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        self.base = torch.cuda.memory_allocated()

    def stop(self) -> dict:
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
        return {"peak_mb": (peak - self.base) / MB, "allocated_abs_mb": peak / MB,
                "reserved_mb": torch.cuda.max_memory_reserved() / MB}


def estimate_bytes(model: str, mode: str, L: int, H: int = 256, d_state: int = 64, C_k: int = 1,
                   rank: int = 1) -> float:
    """Rough peak extra memory (bytes) of one kernel call, from the tensors each implementation materialises.

    Calibrated on CPU against the measured RSS peaks (within ~10% at H=256, N=64, L=1k-16k).
    SGConv: pieces + cat + normalised copy of the (C_k, H, L) float32 output.
    S4 (Cauchy, no pykeops): the (1+R, C_k+R, H, N, L/2+1) complex64 Cauchy terms + (H, N, L/2+1) denominators,
    summed in chunks of 2^24 elements without autograd (then the (1+R, C_k+R, H, L/2+1) sums dominate);
    backward keeps ~4x the whole quotient. S4D: chunked Vandermonde (<= 2 x 2^24 complex64) + complex output
    copies; backward keeps every chunk's exp (H, N/2, L) complex64.
    """
    out = C_k * H * L * 4.0
    if model == "sgconv":
        return (3.0 if mode == "fwd" else 4.0) * out
    if model == "s4":
        F = L // 2 + 1
        big = ((1 + rank) * (C_k + rank) + 1) * H * d_state * F * 8.0
        if mode == "fwd":  # no autograd: the Cauchy quotient is summed in chunks of <= 2^24 elements
            return min(big, 2.0 * (1 << 24) * 8.0) + ((1 + rank) * (C_k + rank) * H * F * 8.0) * 3 + 4 * out
        return 4.2 * big + 4 * out
    if model == "s4d":
        Mh = d_state // 2
        step = max(1, (1 << 24) // max(1, H * Mh))
        chunk = min(L, step) * H * Mh * 8.0
        if mode == "fwd":
            return 2 * chunk + 6 * out
        return H * Mh * L * 8.0 + 2 * chunk + 8 * out
    raise ValueError(f"unknown model {model!r}")


def estimate_layer_bytes(mode: str, L: int, H: int = 256) -> float:
    """Peak extra memory of the bidirectional SGConv layer (B=1): ~48 B (fwd) / ~56 B (fwd+bwd) per H*L, measured."""
    return (48.0 if mode == "fwd" else 56.0) * H * L


def peak_of_call(fn) -> tuple[float, float | None, float]:
    """(seconds, peak bytes, CPU seconds) of one call of fn in this process: the RSS high-water mark above the RSS
    at the start (`CpuMem`; None where /proc/self/clear_refs is unavailable), and the process's user + system CPU
    time (on a shared machine less sensitive than the wall time to other processes). The result is dropped."""
    import resource
    import time

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    mem = CpuMem()
    mem.start()
    c0, t0 = cpu(), time.perf_counter()
    fn()
    dt, dc = time.perf_counter() - t0, cpu() - c0
    peak = mem.stop()["peak_mb"]
    return dt, None if peak is None else peak * MB, dc


def run_in_child(target: str, args: list[str], timeout: float | None = None) -> dict:
    """Call ``target`` ('package.module:function', which takes the argument list) in a fresh interpreter with
    ``args``, and return the JSON object on the last line it prints that starts with '{'.

    A fresh process per measurement: its peak RSS sees nothing the parent (or an earlier cell) left in the heap.
    Raises RuntimeError with the child's stderr tail when it fails or prints no JSON.
    """
    import json
    import subprocess
    import sys
    module, func = target.split(":")
    code = f"import sys; from {module} import {func}; {func}(sys.argv[1:])"
    res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    if res.returncode != 0 or not lines:
        raise RuntimeError(f"child {target} {' '.join(args)} failed (exit {res.returncode}): {res.stderr[-2000:]}")
    return json.loads(lines[-1])
