r"""Speed and memory of SGConv, S4 and S4D kernels, and of one SGConv layer at long lengths.

    python -m analysis.bench [--quick] [--device auto|cpu|cuda] [--lengths 1k,4k,...] [--threads N] [--json OUT]

    from analysis.bench import run_benchmark, format_table
    rows = run_benchmark([1024, 4096], device="cpu", quick=True)   # dicts, also what --json writes
    print(format_table(rows))

What is measured (speed is measured here, never asserted; every ratio compares numbers taken in the same run):

1. Kernel materialisation ``kernel(L) -> (C_k, H, L)`` for SGConv, S4 (DPLR, Cauchy route) and S4D at H=256,
   N=64 (d_state), kernel_dim=32, channels=1, float32, each built with l_max = L, forward only and
   forward+backward; S4's construction (``attune``) timed apart (`kernels`).
2. One SGConv layer (``ConvLayer`` around ``SGConvKernel``: d_model 256, bidirectional, l_max = 1M), batch 1,
   forward and forward+backward, on a GPU only, next to the official code's memory at L = 1M (`layer`).
3. The S4D kernel against the hardware's floor: ours (the blocked Vandermonde product) next to the straightforward
   route (exp of the full (H, N/2, L) outer product, then a contraction), forward and forward+backward, with the
   ratio and the forward's GFLOP/s (8 real flops per complex multiply-add) against a plain float32 matmul timed
   in the same run (`floor`; runs before section 2).

Timing: one warm-up call, then the median of k timed calls, k adaptive (`timing`). Cells whose estimated peak
memory exceeds the budget, whose predicted time per call exceeds the cap, or that would overrun the run's time
budget are skipped with a note instead of crashing (`kernels`, `memory`). Peak memory: CUDA's allocator stats,
or on a CPU the process's RSS high-water mark reset per cell (`memory`).

Modules, one concern each:
    env      OMP_WAIT_POLICY (set before torch loads), and the env row: device, torch, threads, RAM, load
    spec     the families compared, passes, lengths, `Settings`; '1k'/'1M' lengths read and written
    memory   peak memory measured per cell (CPU RSS high-water mark, CUDA allocator) and estimated beforehand
    timing   one measured cell: warm-up, median of k calls, peak memory; failures recorded, not raised
    kernels  section 1: build SGConv/S4/S4D per length, time them, skip what would not fit
    layer    section 2: the SGConv layer
    floor    section 3: S4D ours vs the straightforward route, GFLOP/s against a plain matmul
    run      `run_benchmark`: all of the above, as rows
    table    `format_table`: the printed report
    cli      `python -m analysis.bench`

Set ``OMP_WAIT_POLICY=PASSIVE`` before torch is imported (this package does it when it is the first to import
torch): with other processes busy, spinning OpenMP threads make small FFT convs 10-100x slower.
"""
from .env import environment  # first: sets OMP_WAIT_POLICY before anything here imports torch

# isort: split
from .cli import main
from .memory import estimate_bytes, estimate_layer_bytes
from .run import run_benchmark
from .spec import (
    FULL_LENGTHS,
    GB,
    MB,
    MODELS,
    OFFICIAL_LAYER_REF,
    PASSES,
    QUICK_LENGTHS,
    K,
    M,
    Settings,
    fmt_L,
    parse_lengths,
)
from .table import format_table

__all__ = [
    "run_benchmark", "format_table", "main", "Settings", "parse_lengths", "fmt_L", "estimate_bytes",
    "estimate_layer_bytes", "environment", "MODELS", "PASSES", "QUICK_LENGTHS", "FULL_LENGTHS", "OFFICIAL_LAYER_REF",
    "K", "M", "GB", "MB",
]
