r"""Speed and memory of SGConv, S4 and S4D kernels, and of one SGConv layer at long lengths.

    python -m analysis.bench [--quick] [--device auto|cpu|cuda] [--lengths 1k,4k,...] [--threads N] [--json OUT]

What is measured (speed is measured here, never asserted; every ratio compares numbers taken in the same run):

1. Kernel materialisation ``kernel(L) -> (C_k, H, L)`` for SGConv, S4 (DPLR, Cauchy route) and S4D at H=256,
   N=64 (d_state), kernel_dim=32, channels=1, float32, each built with l_max = L (SGConv then has
   S = 1 + ceil(log2(L/32)) scales and S4's C~ is attuned to L). Two passes: forward only under
   ``torch.no_grad`` and forward+backward (``kernel(L).sum().backward()``). S4's construction cost
   (``attune``: C~ = C (I - dA^L), dense float64) is timed once per L and reported apart from the per-call times.
2. One SGConv layer (``ConvLayer`` around ``SGConvKernel``: d_model 256, kernel_dim 32, bidirectional,
   l_max = 1M, GLU output), batch 1, forward and forward+backward. On a GPU at L = 1M, next to the official
   code's reference (~8 GB allocated / ~22 GB reserved for the forward alone); also at 64k and 256k without
   --quick. GPU only: on a CPU the table says it was skipped.

Timing: one warm-up call, then the median of k timed calls, k adaptive (each cell takes about
``cell_target_s``; at least ``min_reps``: 3, or 1 with --quick); ``torch.cuda.synchronize`` around every call
on a GPU. Cells whose estimated peak memory exceeds the budget, whose predicted time per call exceeds the cap
(predicted from the same cell at the previous length), or that would overrun the run's time budget are skipped
with a note ("skipped: est. X GB ...") instead of crashing.

Peak memory:
- CUDA: ``torch.cuda.max_memory_allocated`` (peak minus what was allocated at the cell start) and
  ``max_memory_reserved`` (absolute; the caching allocator is emptied and its peak stats reset before each cell).
- CPU: the process's resident-set high-water mark (VmHWM), reset before each cell by writing "5" to
  /proc/self/clear_refs (Linux >= 4.0), minus the RSS at the cell start. This sees torch's allocations (which
  tracemalloc does not) and costs nothing; one fresh subprocess per cell (ru_maxrss) would cost ~1.5 s of
  ``import torch`` per cell, too slow for --quick. Freed small blocks that glibc keeps resident and reuses are
  not counted, so ``malloc_trim(0)`` runs before each cell; a few MB of noise remain. Where clear_refs is
  unavailable only the estimate is given.

Set ``OMP_WAIT_POLICY=PASSIVE`` before torch is imported (this module does it when it is the first to import
torch): with other processes busy, spinning OpenMP threads make small FFT convs 10-100x slower.
"""
from __future__ import annotations

import os
import sys

#: OpenMP reads OMP_WAIT_POLICY when torch loads: it only takes effect if set before the first torch import.
_OMP_EFFECTIVE = "OMP_WAIT_POLICY" in os.environ or "torch" not in sys.modules
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402

_T_IMPORT = time.perf_counter()
import torch  # noqa: E402

_IMPORT_TORCH_S = time.perf_counter() - _T_IMPORT

from sgconv_core.device import resolve_device  # noqa: E402
from sgconv_core.kernels import S4DKernel, S4Kernel, SGConvKernel  # noqa: E402
from sgconv_core.layers import ConvLayer  # noqa: E402

__all__ = ["Settings", "run_benchmark", "format_table", "parse_lengths", "estimate_bytes", "main"]

MODELS = ("sgconv", "s4", "s4d")
LABEL = {"sgconv": "SGConv", "s4": "S4", "s4d": "S4D"}
PASSES = ("fwd", "fwd+bwd")
K, M = 1 << 10, 1 << 20
QUICK_LENGTHS = [1 * K, 4 * K, 16 * K, 64 * K]
FULL_LENGTHS = [1 * K, 4 * K, 16 * K, 64 * K, 256 * K, 1 * M]
#: The official SGConv layer at L = 1M on a GPU (forward alone), for comparison with our layer row.
OFFICIAL_LAYER_REF = {"L": 1 * M, "allocated_gb": 8.0, "reserved_gb": 22.0,
                      "what": "official SGConv layer, forward alone, GPU, L=1M"}
GB = float(1 << 30)
MB = float(1 << 20)


# ------------------------------------------------------------------------------------------ settings
@dataclass
class Settings:
    """Everything that shapes a run. ``Settings.make(quick, device)`` gives the defaults."""

    H: int = 256
    d_state: int = 64
    kernel_dim: int = 32
    channels: int = 1
    warmup: int = 1
    min_reps: int = 3
    max_reps: int = 50
    cell_target_s: float = 1.0        # aim for about this much timed work per cell
    per_call_cap_s: float = 30.0      # skip a cell predicted slower than this per call
    budget_s: float = 480.0           # time for all kernel cells together
    fb_max_L: int = 1 * M             # no forward+backward above this length
    mem_budget_gb: float = 8.0        # skip cells estimated to peak above this (CPU; GPU: 90% of free memory)
    layer: bool = True
    layer_lengths: list = field(default_factory=lambda: [1 * M])
    layer_l_max: int = 1 * M
    layer_on_cpu: bool = False        # the layer runs on a GPU only; True lets the tests run it tiny on a CPU
    growth: float = 1.25              # predicted time per call ~ L^growth (from the previous length)

    @classmethod
    def make(cls, quick: bool, device: str, **overrides) -> "Settings":
        if quick:
            s = cls(min_reps=1, max_reps=10, cell_target_s=0.3, per_call_cap_s=4.0, budget_s=25.0, fb_max_L=16 * K)
        else:
            s = cls()
        if device == "cuda" and not quick:
            s.layer_lengths = [64 * K, 256 * K, 1 * M]
        for k, v in overrides.items():
            if v is not None:
                if not hasattr(s, k):
                    raise TypeError(f"unknown setting {k!r}")
                setattr(s, k, v)
        return s


# ------------------------------------------------------------------------------------------ helpers
def parse_lengths(text: str) -> list[int]:
    """'1k,4k,1M,300' -> [1024, 4096, 1048576, 300] (k = 1024, M = 2^20)."""
    out = []
    for tok in str(text).split(","):
        tok = tok.strip()
        if not tok:
            continue
        mult = 1
        if tok[-1] in "kK":
            mult, tok = K, tok[:-1]
        elif tok[-1] in "mM":
            mult, tok = M, tok[:-1]
        try:
            val = int(float(tok) * mult)
        except ValueError:
            raise ValueError(f"cannot read length {tok!r}; use e.g. 1k,4k,16k,1M") from None
        if val < 1:
            raise ValueError(f"lengths must be positive, got {val}")
        out.append(val)
    if not out:
        raise ValueError("no lengths given")
    return out


def fmt_L(L: int) -> str:
    """A length in taps as text: 1024 -> '1k', 2**20 -> '1M', 300 -> '300'."""
    if L >= M and L % M == 0:
        return f"{L // M}M"
    if L >= K and L % K == 0:
        return f"{L // K}k"
    return str(L)


def _fmt_num(x, digits: int = 3) -> str:
    if x is None:
        return "-"
    if x == 0:
        return "0"
    if abs(x) >= 10 ** digits:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _meminfo_gb(key: str) -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024 / GB
    except OSError:
        pass
    return None


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def environment(device: str) -> dict:
    """Device name, torch version, threads, load average: what the numbers depend on."""
    env = {
        "section": "env",
        "device": device,
        "device_name": torch.cuda.get_device_name() if device == "cuda" else _cpu_model(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY") if _OMP_EFFECTIVE else
        f"{os.environ.get('OMP_WAIT_POLICY')} (set after torch was imported: not in effect)",
        "ram_total_gb": _meminfo_gb("MemTotal"),
        "load_start": _loadavg(),
        "import_torch_s": _IMPORT_TORCH_S,
    }
    if device == "cuda":
        free, total = torch.cuda.mem_get_info()
        env["gpu_total_gb"] = total / GB
        env["gpu_free_gb"] = free / GB
    return env


# ------------------------------------------------------------------------------------------ memory
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


class _CpuMem:
    """Peak RSS of this process during a cell: VmHWM after resetting it via /proc/self/clear_refs."""

    method = "cpu-rss-hwm"

    def __init__(self):
        self.ok = self._reset()
        self.base = 0

    @staticmethod
    def _status(key: str) -> int | None:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return None

    @staticmethod
    def _reset() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return _CpuMem._status("VmHWM") is not None
        except OSError:
            return False

    def limit_bytes(self, budget_gb: float) -> float:
        avail = _meminfo_gb("MemAvailable")
        lim = budget_gb * GB
        return min(lim, 0.8 * avail * GB) if avail else lim

    def start(self) -> None:
        gc.collect()
        _malloc_trim()  # hand freed heap pages back, so the cell's allocations show up as new RSS
        if self.ok:
            self.base = self._status("VmRSS") or 0
            self._reset()

    def stop(self) -> dict:
        if not self.ok:
            return {"peak_mb": None}
        return {"peak_mb": max(0, (self._status("VmHWM") or 0) - self.base) / MB}


class _CudaMem:
    method = "cuda-max-memory-allocated"
    ok = True

    def __init__(self):
        self.base = 0

    def limit_bytes(self, budget_gb: float) -> float:
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


# ------------------------------------------------------------------------------------------ estimates
def estimate_bytes(model: str, mode: str, L: int, H: int = 256, d_state: int = 64, C_k: int = 1, rank: int = 1) -> float:
    """Rough peak extra memory (bytes) of one kernel call, from the tensors each implementation materialises.

    Calibrated on CPU against the measured RSS peaks (within ~10% at H=256, N=64, L=1k-16k).
    SGConv: pieces + cat + normalised copy of the (C_k, H, L) float32 output.
    S4 (Cauchy, no pykeops): the (1+R, C_k+R, H, N, L/2+1) complex64 Cauchy terms + (H, N, L/2+1) denominators,
    summed in chunks of 2^24 elements without autograd (then the (1+R, C_k+R, H, L/2+1) sums dominate);
    backward keeps ~4x the whole quotient. S4D: chunked Vandermonde (<= 2 x 2^24 complex64) + complex output copies; backward
    keeps every chunk's exp (H, N/2, L) complex64.
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


# ------------------------------------------------------------------------------------------ timing core
def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, (MemoryError, getattr(torch, "OutOfMemoryError", MemoryError))) or "out of memory" in str(e).lower()


def _timed(fn, device: str) -> float:
    """Seconds of one call of fn (synchronised on a GPU); its result is dropped."""
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def _measure(fn, device: str, mem, s: Settings, min_reps: int | None = None, max_reps: int | None = None) -> dict:
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


def _skip(note: str, est_bytes: float | None = None) -> dict:
    return {"status": "skipped", "ms": None, "peak_mb": None, "note": note,
            "est_mb": None if est_bytes is None else est_bytes / MB}


def _run_cell(fn, device, mem, s: Settings, **kw) -> dict:
    try:
        return _measure(fn, device, mem, s, **kw)
    except Exception as e:  # a benchmark records a failing cell and goes on
        if device == "cuda":
            torch.cuda.empty_cache()
        gc.collect()
        if _is_oom(e):
            return {"status": "oom", "ms": None, "peak_mb": None, "note": f"out of memory: {str(e)[:120]}"}
        return {"status": "error", "ms": None, "peak_mb": None, "note": f"{type(e).__name__}: {str(e)[:200]}"}


def _zero_grads(module) -> None:
    for p in module.parameters():
        p.grad = None


def _kernel_fn(kernel, L: int, mode: str):
    if mode == "fwd":
        def fn():
            with torch.no_grad():
                return kernel(L)
    else:
        def fn():
            kernel(L).sum().backward()
            _zero_grads(kernel)
            return None
    return fn


def _build_kernels(L: int, s: Settings, device: str) -> tuple[dict, dict]:
    """SGConv, S4 and S4D kernels with l_max = L, and their construction times (S4's attune apart)."""
    t = {}
    t0 = time.perf_counter()
    sg = SGConvKernel(s.H, L, channels=s.channels, kernel_dim=s.kernel_dim)
    t["sgconv_build_ms"] = (time.perf_counter() - t0) * 1e3
    t0 = time.perf_counter()
    s4 = S4Kernel(s.H, s.d_state, channels=s.channels, l_max=None)
    t["s4_build_ms"] = (time.perf_counter() - t0) * 1e3
    t0 = time.perf_counter()
    s4.l_max = L
    s4.attune(L)  # exactly what the constructor does with l_max=L: C~ = C (I - dA^L), l_kernel = L
    t["s4_attune_ms"] = (time.perf_counter() - t0) * 1e3
    t0 = time.perf_counter()
    s4d = S4DKernel(s.H, s.d_state, channels=s.channels, l_max=L)
    t["s4d_build_ms"] = (time.perf_counter() - t0) * 1e3
    kernels = {"sgconv": sg, "s4": s4, "s4d": s4d}
    for k in kernels.values():
        k.to(device)
    return kernels, t


# ------------------------------------------------------------------------------------------ the benchmark
def run_benchmark(lengths=None, device: str = "auto", quick: bool = False, *, settings: Settings | None = None,
                  threads: int | None = None, progress=None, **overrides) -> list[dict]:
    """Run the kernel (and layer) benchmark; returns rows (dicts) for :func:`format_table` / JSON.

    Rows: one ``section="env"`` row (device, torch, threads, load average at start and end, settings, wall time),
    ``section="build"`` rows (construction times per L, S4 attune apart), ``section="kernel"`` rows (one per
    pass and L, a cell per model plus the SGConv/S4 and SGConv/S4D time ratios) and ``section="layer"`` rows.
    ``overrides`` are `Settings` fields (e.g. H=8, min_reps=1, layer=False, layer_lengths=[1024]).
    """
    t_start = time.perf_counter()
    if threads:
        torch.set_num_threads(int(threads))
    device = resolve_device(device, allow_index=False).type  # 'cpu' | 'cuda' (the current CUDA device)
    s = settings or Settings.make(quick, device, **overrides)
    lengths = sorted(set(lengths or (QUICK_LENGTHS if quick else FULL_LENGTHS)))
    say = progress or (lambda msg: None)
    mem = _CudaMem() if device == "cuda" else _CpuMem()
    env = environment(device)
    env.update({"quick": bool(quick), "lengths": lengths, "settings": asdict(s), "memory_method": mem.method,
                "memory_measured": bool(mem.ok)})
    rows: list[dict] = [env]

    kernels_at: dict[int, dict] = {}
    t_build = time.perf_counter()
    for L in lengths:
        kernels_at[L], t = _build_kernels(L, s, device)
        rows.append({"section": "build", "L": L, "n_scales": kernels_at[L]["sgconv"].n_scales, **t})
    env["build_s"] = time.perf_counter() - t_build

    last: dict[tuple, tuple] = {}   # (model, pass) -> (L, seconds per call) of the last measured cell
    spent = 0.0
    by_key: dict[tuple, dict] = {}
    for mode in PASSES:
        for L in lengths:
            row = {"section": "kernel", "pass": mode, "L": L, "n_scales": kernels_at[L]["sgconv"].n_scales,
                   "out_mb": s.channels * s.H * L * 4 / MB}
            for model in MODELS:
                est = estimate_bytes(model, mode, L, s.H, s.d_state, s.channels)
                limit = mem.limit_bytes(s.mem_budget_gb)
                pred = None
                if (model, mode) in last:
                    L0, t0 = last[(model, mode)]
                    pred = t0 * (L / L0) ** s.growth
                if mode == "fwd+bwd" and ("fwd", L, model) in by_key and by_key[("fwd", L, model)]["ms"]:
                    pred = max(pred or 0.0, 1.5 * by_key[("fwd", L, model)]["ms"] / 1e3)
                if mode == "fwd+bwd" and L > s.fb_max_L:
                    cell = _skip(f"skipped: fwd+bwd only up to {fmt_L(s.fb_max_L)} in this mode", est)
                elif est > limit:
                    cell = _skip(f"skipped: est. {est / GB:.1f} GB > {limit / GB:.1f} GB budget", est)
                elif pred is not None and pred > s.per_call_cap_s:
                    cell = _skip(f"skipped: est. {pred:.0f} s/call > {s.per_call_cap_s:g} s cap", est)
                elif pred is not None and (s.warmup + s.min_reps) * pred > s.budget_s - spent:
                    cell = _skip(f"skipped: time budget (est. {(s.warmup + s.min_reps) * pred:.0f} s, "
                                 f"{max(0.0, s.budget_s - spent):.0f} s left)", est)
                else:
                    if pred is not None and pred > 5:
                        say(f"{LABEL[model]} {mode} L={fmt_L(L)}: running (est. {pred:.0f} s per call) ...")
                    t0 = time.perf_counter()
                    cell = _run_cell(_kernel_fn(kernels_at[L][model], L, mode), device, mem, s)
                    spent += time.perf_counter() - t0
                    cell["est_mb"] = est / MB
                    if cell["ms"]:
                        last[(model, mode)] = (L, cell["ms"] / 1e3)
                    say(f"{LABEL[model]} {mode} L={fmt_L(L)}: {_fmt_num(cell.get('ms'))} ms x{cell.get('reps')}, "
                        f"peak {_fmt_num(cell.get('peak_mb'))} MB ({cell['status']})")
                row[model] = cell
                by_key[(mode, L, model)] = cell
            for other in ("s4", "s4d"):
                a, b = row["sgconv"].get("ms"), row[other].get("ms")
                row[f"sgconv_over_{other}"] = a / b if (a and b) else None
            rows.append(row)
    del kernels_at
    gc.collect()

    if s.layer and s.layer_lengths:
        t_layer = time.perf_counter()
        rows.extend(_layer_rows(s, device, mem, say))
        env["layer_s"] = time.perf_counter() - t_layer

    env["load_end"] = _loadavg()
    env["wall_s"] = time.perf_counter() - t_start
    env["kernel_cells_s"] = spent
    return rows


def _layer_rows(s: Settings, device: str, mem, say) -> list[dict]:
    """The bidirectional SGConv layer, forward and forward+backward at each of ``layer_lengths`` (1M; 64k, 256k, 1M
    without --quick) on a GPU. On a CPU one row saying it was skipped (unless ``layer_on_cpu``, for the tests)."""
    if device != "cuda" and not s.layer_on_cpu:
        note = f"skipped: the SGConv layer benchmark (L={fmt_L(max(s.layer_lengths))}) runs on a GPU only"
        say(note)
        return [{"section": "layer", "L": max(s.layer_lengths), "device": device, "H": s.H, "l_max": s.layer_l_max,
                 "fwd": _skip(note), "fwd+bwd": _skip(note), "note": note}]
    rows = []
    torch.manual_seed(0)
    t0 = time.perf_counter()
    kern = SGConvKernel(s.H, s.layer_l_max, channels=s.channels, bidirectional=True, kernel_dim=s.kernel_dim)
    layer = ConvLayer(kern).to(device)
    build_ms = (time.perf_counter() - t0) * 1e3
    n_params = sum(p.numel() for p in layer.parameters())
    for L in s.layer_lengths:
        row = {"section": "layer", "L": L, "device": device, "H": s.H, "l_max": s.layer_l_max,
               "n_scales": kern.n_scales, "n_params": n_params, "input_mb": s.H * L * 4 / MB, "build_ms": build_ms}
        est = {m: estimate_layer_bytes(m, L, s.H) for m in PASSES}
        limit = mem.limit_bytes(s.mem_budget_gb)
        if est["fwd+bwd"] > limit:
            note = f"skipped: est. {est['fwd+bwd'] / GB:.1f} GB > {limit / GB:.1f} GB"
            row.update({"fwd": _skip(note, est["fwd"]), "fwd+bwd": _skip(note, est["fwd+bwd"]), "note": note})
            rows.append(row)
            continue
        x = torch.randn(1, s.H, L, device=device)

        def fwd():
            return layer(x)  # autograd on, as in training (the graph is freed with the output)

        def fb():
            layer(x).sum().backward()
            _zero_grads(layer)

        say(f"layer L={fmt_L(L)}: running ...")
        for m, fn in zip(PASSES, (fwd, fb)):
            row[m] = _run_cell(fn, device, mem, s)
            row[m]["est_mb"] = est[m] / MB
        say(f"layer L={fmt_L(L)}: fwd {_fmt_num(row['fwd'].get('ms'))} ms, fwd+bwd {_fmt_num(row['fwd+bwd'].get('ms'))} ms")
        rows.append(row)
        del x
    return rows


# ------------------------------------------------------------------------------------------ table
def _table(header: list[str], body: list[list[str]], align: str) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(header)]

    def line(cells):
        return " | ".join(c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(cells, widths, align))
    return [line(header), "-+-".join("-" * w for w in widths)] + [line(r) for r in body]


def format_table(rows: list[dict]) -> str:
    """The printed report: environment, the two kernel tables with ratios, S4 attune times, the layer table."""
    env = next((r for r in rows if r.get("section") == "env"), {})
    st = env.get("settings", {})
    out = []
    if env:
        dev = env.get("device", "?")
        name = env.get("device_name", "?")
        cpus = f", {env.get('usable_cpus')} usable CPUs" if dev == "cpu" else f", {env.get('gpu_total_gb', 0):.0f} GB"
        out.append(f"device: {dev} ({name}{cpus}) | torch {env.get('torch')} | threads {env.get('threads')} | "
                   f"OMP_WAIT_POLICY={env.get('omp_wait_policy')} | RAM {_fmt_num(env.get('ram_total_gb'))} GB")
        out.append(f"load average (1/5/15 min): start {env.get('load_start')}, end {env.get('load_end')}"
                   + (f" | wall {env['wall_s']:.1f} s" if env.get("wall_s") is not None else "")
                   + (" | --quick" if env.get("quick") else ""))
        if env.get("device") == "cuda":
            mem_txt = ("peak MB = torch.cuda.max_memory_allocated minus allocated at cell start / "
                       "max_memory_reserved (caching allocator emptied, peak stats reset per cell)")
        elif env.get("memory_measured"):
            mem_txt = ("peak MB = process RSS high-water mark (VmHWM, reset per cell via /proc/self/clear_refs) "
                       "minus RSS at cell start (after gc + malloc_trim), over warm-up + timed calls; a few MB of noise")
        else:
            mem_txt = "peak MB not measurable here (/proc/self/clear_refs unavailable): see est_mb in the JSON"
        out.append(mem_txt)
        out.append(f"timing: {st.get('warmup', 1)} warm-up call, then median of k calls "
                   f"(k >= {st.get('min_reps')}, adaptive to ~{st.get('cell_target_s')} s per cell); "
                   f"skip if est. memory > budget ({st.get('mem_budget_gb')} GB on CPU), "
                   f"predicted > {st.get('per_call_cap_s')} s/call, or over the {st.get('budget_s')} s budget")
    notes = []

    def cell_txt(c: dict) -> tuple[str, str]:
        if c is None:
            return "-", "-"
        if c.get("status") == "ok":
            if c.get("reserved_mb") is not None:  # CUDA: allocated / reserved
                return _fmt_num(c["ms"]), f"{_fmt_num(c.get('peak_mb'))}/{_fmt_num(c['reserved_mb'])}"
            return _fmt_num(c["ms"]), _fmt_num(c.get("peak_mb"))
        note = c.get("note") or c.get("status")
        if note not in notes:
            notes.append(note)
        tag = {"skipped": "skip", "oom": "OOM", "error": "error"}.get(c.get("status"), "?")
        return f"{tag}[{notes.index(note) + 1}]", "-"

    for mode, title in (("fwd", "forward only (torch.no_grad)"), ("fwd+bwd", "forward+backward (kernel(L).sum().backward())")):
        krows = [r for r in rows if r.get("section") == "kernel" and r.get("pass") == mode]
        if not krows:
            continue
        out.append("")
        out.append(f"Kernel materialisation, {title}, float32; H={st.get('H')}, N={st.get('d_state')}, "
                   f"kernel_dim={st.get('kernel_dim')}, channels={st.get('channels')}, l_max=L "
                   f"(ratio < 1: SGConv faster)")
        body = []
        for r in krows:
            ms, mb = {}, {}
            for m in MODELS:
                ms[m], mb[m] = cell_txt(r.get(m))
            body.append([fmt_L(r["L"]), str(r.get("n_scales")), ms["sgconv"], ms["s4"], ms["s4d"],
                         _fmt_num(r.get("sgconv_over_s4")), _fmt_num(r.get("sgconv_over_s4d")),
                         mb["sgconv"], mb["s4"], mb["s4d"]])
        out += _table(["L", "S", "SGConv ms", "S4 ms", "S4D ms", "SGConv/S4", "SGConv/S4D",
                       "SGConv MB", "S4 MB", "S4D MB"], body, "rrrrrrrrrr")

    brows = [r for r in rows if r.get("section") == "build"]
    if brows:
        out.append("")
        out.append("S4 construction, not in the per-call times: attune (C~ = C (I - dA^L), dense float64, once per l_max) ms: "
                   + ", ".join(f"{fmt_L(r['L'])}: {_fmt_num(r['s4_attune_ms'])}" for r in brows))
        out.append("other construction ms (SGConv incl. its norm / S4 without attune / S4D): "
                   + ", ".join(f"{fmt_L(r['L'])}: {_fmt_num(r['sgconv_build_ms'])}/{_fmt_num(r['s4_build_ms'])}/"
                               f"{_fmt_num(r['s4d_build_ms'])}" for r in brows))

    lrows = [r for r in rows if r.get("section") == "layer"]
    if lrows and all(r.get("fwd", {}).get("status") == "skipped" and "GPU only" in (r.get("note") or "") for r in lrows):
        out.append("")
        out.append(f"SGConv layer forward+backward: {lrows[0]['note']} (this run: {lrows[0]['device']})")
    elif lrows:
        r0 = lrows[0]
        cuda = r0.get("device") == "cuda"
        out.append("")
        out.append(f"SGConv layer (ConvLayer: d_model {r0['H']}, kernel_dim {st.get('kernel_dim')}, bidirectional, "
                   f"l_max {fmt_L(r0['l_max'])} -> S={r0['n_scales']}, GELU, GLU output; {r0['n_params']:,} params), "
                   f"batch 1, float32, forward with autograd on; peak MB above model + input"
                   + (" (allocated/reserved; abs = max_memory_allocated incl. model + input)" if cuda else ""))
        body = []
        for r in lrows:
            f_ms, f_mb = cell_txt(r.get("fwd"))
            b_ms, b_mb = cell_txt(r.get("fwd+bwd"))
            line = [fmt_L(r["L"]), r["device"], f_ms, b_ms, f_mb, b_mb]
            if cuda:
                line += [_fmt_num((r.get(m) or {}).get("allocated_abs_mb")) for m in PASSES]
            body.append(line)
        head = ["L", "device", "fwd ms", "fwd+bwd ms", "fwd MB", "fwd+bwd MB"]
        if cuda:
            head += ["fwd alloc MB (abs)", "f+b alloc MB (abs)"]
        out += _table(head, body, "rlrrrr" + ("rr" if cuda else ""))
        ref = OFFICIAL_LAYER_REF
        out.append(f"reference: {ref['what']}: ~{ref['allocated_gb']:g} GB allocated / ~{ref['reserved_gb']:g} GB reserved")

    if notes:
        out.append("")
        out.append("notes:")
        out += [f"[{i}] {n}" for i, n in enumerate(notes, 1)]
    return "\n".join(out)


# ------------------------------------------------------------------------------------------ CLI
def main(argv=None) -> int:
    """`python -m analysis.bench`: run the benchmark and print its table (and --json); returns 0."""
    p = argparse.ArgumentParser(prog="python -m analysis.bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="lengths 1k-64k, fewer repeats, fwd+bwd up to 16k, layer at 1M only (GPU): < 1 min on a CPU")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--lengths", type=parse_lengths, default=None, help="comma list, e.g. 1k,4k,16k,64k,256k,1M")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--json", default=None, metavar="OUT", help="write every number to this JSON file")
    p.add_argument("--hidden", type=int, default=None, help="d_model H (default 256)")
    p.add_argument("--d-state", type=int, default=None, help="N (default 64)")
    p.add_argument("--kernel-dim", type=int, default=None, help="SGConv kernel_dim (default 32)")
    p.add_argument("--mem-gb", type=float, default=None, help="CPU memory budget per cell (default 8)")
    p.add_argument("--budget-s", type=float, default=None, help="time budget for the kernel cells")
    p.add_argument("--no-layer", action="store_true", help="skip the layer benchmark")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # H=8, L=256,1024, 1 repeat (tests)
    a = p.parse_args(argv)
    try:
        device = resolve_device(a.device, allow_index=False).type
    except ValueError as e:
        p.error(str(e))
    ov = {"H": a.hidden, "d_state": a.d_state, "kernel_dim": a.kernel_dim, "mem_budget_gb": a.mem_gb,
          "budget_s": a.budget_s}
    lengths = a.lengths
    if a.tiny:
        lengths = lengths or [256, 1024]
        ov.update({"H": ov["H"] or 8, "min_reps": 1, "max_reps": 1, "layer_lengths": [1024], "layer_l_max": 1024,
                   "layer_on_cpu": True})
    if a.no_layer:
        ov["layer"] = False
    s = Settings.make(a.quick or a.tiny, device, **ov)

    def say(msg):
        print(msg, file=sys.stderr, flush=True)

    rows = run_benchmark(lengths, device, a.quick or a.tiny, settings=s, threads=a.threads, progress=say)
    print(format_table(rows), flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"rows": rows}, f, indent=1, default=str)
        print(f"\nwrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
