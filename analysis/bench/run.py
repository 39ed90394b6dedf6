"""`run_benchmark`: the env row, the build rows, the kernel rows (section 1), the matmul and floor rows (section 3)
and the layer rows (section 2)."""
from __future__ import annotations

import gc
import time
from dataclasses import asdict

import torch

from sgconv_core.device import resolve_device

from .env import environment, loadavg
from .floor import floor_rows
from .kernels import build_rows, kernel_rows
from .layer import layer_rows
from .memory import memory_probe
from .spec import FULL_LENGTHS, QUICK_LENGTHS, Settings


def run_benchmark(lengths=None, device: str = "auto", quick: bool = False, *, settings: Settings | None = None,
                  threads: int | None = None, progress=None, **overrides) -> list[dict]:
    """Run the kernel (and layer) benchmark; returns rows (dicts) for :func:`format_table` / JSON.

    Rows: one ``section="env"`` row (device, torch, threads, load average at start and end, settings, wall time),
    ``section="build"`` rows (construction times per L, S4 attune apart), ``section="kernel"`` rows (one per
    pass and L, a cell per model plus the SGConv/S4 and SGConv/S4D time ratios), one ``section="matmul"`` row and
    ``section="floor"`` rows (S4D ours vs the straightforward route, per pass and L) and ``section="layer"`` rows.
    ``overrides`` are `Settings` fields (e.g. H=8, min_reps=1, layer=False, layer_lengths=[1024]).
    """
    t_start = time.perf_counter()
    if threads:
        torch.set_num_threads(int(threads))
    device = resolve_device(device, allow_index=False).type  # 'cpu' | 'cuda' (the current CUDA device)
    s = settings or Settings.make(quick, device, **overrides)
    lengths = sorted(set(lengths or (QUICK_LENGTHS if quick else FULL_LENGTHS)))
    say = progress or (lambda msg: None)
    mem = memory_probe(device)
    env = environment(device)
    env.update({"quick": bool(quick), "lengths": lengths, "settings": asdict(s), "memory_method": mem.method,
                "memory_measured": bool(mem.ok)})
    rows: list[dict] = [env]

    t_build = time.perf_counter()
    kernels_at, built = build_rows(lengths, s, device)
    rows += built
    env["build_s"] = time.perf_counter() - t_build
    measured, spent = kernel_rows(lengths, kernels_at, s, device, mem, say)
    rows += measured
    del kernels_at
    gc.collect()

    if s.floor:
        t_floor = time.perf_counter()
        rows.extend(floor_rows(lengths, s, device, mem, say))
        env["floor_s"] = time.perf_counter() - t_floor
        gc.collect()

    if s.layer and s.layer_lengths:
        t_layer = time.perf_counter()
        rows.extend(layer_rows(s, device, mem, say))
        env["layer_s"] = time.perf_counter() - t_layer

    env["load_end"] = loadavg()
    env["wall_s"] = time.perf_counter() - t_start
    env["kernel_cells_s"] = spent
    return rows
