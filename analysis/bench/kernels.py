"""Section 1: kernel materialisation ``kernel(L) -> (C_k, H, L)`` for SGConv, S4 (DPLR, Cauchy route) and S4D.

Each kernel is built with l_max = L (SGConv then has S = 1 + ceil(log2(L/32)) scales and S4's C~ is attuned to
L); S4's construction cost (``attune``: C~ = C (I - dA^L), dense float64) is timed once per L and reported apart
from the per-call times (the ``section="build"`` rows). Two passes: forward only under ``torch.no_grad`` and
forward+backward (``kernel(L).sum().backward()``), one ``section="kernel"`` row per pass and L, with a cell per
family and SGConv's time over each other family's.

Cells whose estimated peak memory exceeds the budget, whose predicted time per call exceeds the cap (predicted
from the same cell at the previous length), or that would overrun the run's time budget are skipped with a note
("skipped: est. X GB ...") instead of crashing.
"""
from __future__ import annotations

import time

import torch

from sgconv_core.families import title
from sgconv_core.kernels import S4DKernel, S4Kernel, SGConvKernel

from .memory import estimate_bytes
from .spec import MB, MODELS, PASSES, Settings, fmt_L, fmt_num
from .timing import run_cell, skip_reason, skipped, zero_grads


def _ms_since(t0: float) -> float:
    return (time.perf_counter() - t0) * 1e3


def build_kernels(L: int, s: Settings, device: str) -> tuple[dict, dict]:
    """SGConv, S4 and S4D kernels with l_max = L, and their construction times (S4's attune apart)."""
    t = {}
    t0 = time.perf_counter()
    sg = SGConvKernel(s.H, L, channels=s.channels, kernel_dim=s.kernel_dim)
    t["sgconv_build_ms"] = _ms_since(t0)
    t0 = time.perf_counter()
    s4 = S4Kernel(s.H, s.d_state, channels=s.channels, l_max=None)
    t["s4_build_ms"] = _ms_since(t0)
    t0 = time.perf_counter()
    s4.l_max = L
    s4.attune(L)  # exactly what the constructor does with l_max=L: C~ = C (I - dA^L), l_kernel = L
    t["s4_attune_ms"] = _ms_since(t0)
    t0 = time.perf_counter()
    s4d = S4DKernel(s.H, s.d_state, channels=s.channels, l_max=L)
    t["s4d_build_ms"] = _ms_since(t0)
    kernels = {"sgconv": sg, "s4": s4, "s4d": s4d}
    for k in kernels.values():
        k.to(device)
    return kernels, t


def build_rows(lengths: list[int], s: Settings, device: str) -> tuple[dict[int, dict], list[dict]]:
    """The kernels at every length ({L: {family: kernel}}) and one ``section="build"`` row per length."""
    kernels_at, rows = {}, []
    for L in lengths:
        kernels_at[L], t = build_kernels(L, s, device)
        rows.append({"section": "build", "L": L, "n_scales": kernels_at[L]["sgconv"].n_scales, **t})
    return kernels_at, rows


def kernel_fn(kernel, L: int, mode: str):
    """The call to time: ``kernel(L)`` under no_grad ('fwd'), or ``kernel(L).sum().backward()`` ('fwd+bwd')."""
    if mode == "fwd":
        def fn():
            with torch.no_grad():
                return kernel(L)
    else:
        def fn():
            kernel(L).sum().backward()
            zero_grads(kernel)
            return None
    return fn


def kernel_rows(lengths: list[int], kernels_at: dict[int, dict], s: Settings, device: str, mem,
                say) -> tuple[list[dict], float]:
    """One ``section="kernel"`` row per pass and length (all forward rows first), and the seconds the cells took."""
    cells = KernelCells(s, device, mem, say)
    rows = [cells.row(mode, L, kernels_at[L]) for mode in PASSES for L in lengths]
    return rows, cells.spent


class KernelCells:
    """Measures the kernel cells in order, remembering what it needs to skip the next ones in time: the last
    measured time per (family, pass), for the time predicted at the next length, and the seconds spent so far."""

    def __init__(self, s: Settings, device: str, mem, say):
        self.s, self.device, self.mem, self.say = s, device, mem, say
        self.last: dict[tuple, tuple] = {}   # (model, pass) -> (L, seconds per call) of the last measured cell
        self.done: dict[tuple, dict] = {}    # (pass, L, model) -> cell
        self.spent = 0.0

    def row(self, mode: str, L: int, kernels: dict) -> dict:
        """The row of one pass at one length: a cell per family, then SGConv's time over each other family's."""
        s = self.s
        row = {"section": "kernel", "pass": mode, "L": L, "n_scales": kernels["sgconv"].n_scales,
               "out_mb": s.channels * s.H * L * 4 / MB}
        for model in MODELS:
            row[model] = self.done[(mode, L, model)] = self.cell(mode, L, model, kernels[model])
        base = MODELS[0]
        for other in MODELS[1:]:
            a, b = row[base].get("ms"), row[other].get("ms")
            row[f"{base}_over_{other}"] = a / b if (a and b) else None
        return row

    def cell(self, mode: str, L: int, model: str, kernel) -> dict:
        """One family at one length and pass: measured, or skipped with the reason."""
        s = self.s
        est = estimate_bytes(model, mode, L, s.H, s.d_state, s.channels)
        limit = self.mem.limit_bytes(s.mem_budget_gb)
        pred = self.predict(mode, L, model)
        note = self.skip_note(mode, L, est, limit, pred)
        if note:
            return skipped(note, est)
        if pred is not None and pred > 5:
            self.say(f"{title(model)} {mode} L={fmt_L(L)}: running (est. {pred:.0f} s per call) ...")
        t0 = time.perf_counter()
        cell = run_cell(kernel_fn(kernel, L, mode), self.device, self.mem, s)
        self.spent += time.perf_counter() - t0
        cell["est_mb"] = est / MB
        if cell["ms"]:
            self.last[(model, mode)] = (L, cell["ms"] / 1e3)
        self.say(f"{title(model)} {mode} L={fmt_L(L)}: {fmt_num(cell.get('ms'))} ms x{cell.get('reps')}, "
                 f"peak {fmt_num(cell.get('peak_mb'))} MB ({cell['status']})")
        return cell

    def predict(self, mode: str, L: int, model: str) -> float | None:
        """Seconds per call: the last measured length scaled by (L/L0)^growth; forward+backward at least 1.5x the
        forward at the same length. None before anything was measured."""
        pred = None
        if (model, mode) in self.last:
            L0, t0 = self.last[(model, mode)]
            pred = t0 * (L / L0) ** self.s.growth
        fwd = self.done.get(("fwd", L, model))
        if mode == "fwd+bwd" and fwd is not None and fwd["ms"]:
            pred = max(pred or 0.0, 1.5 * fwd["ms"] / 1e3)
        return pred

    def skip_note(self, mode: str, L: int, est: float, limit: float, pred: float | None) -> str | None:
        """Why a cell is not run (None: run it); the time budget needs warm-up plus the minimum repeats."""
        s = self.s
        needed = None if pred is None else (s.warmup + s.min_reps) * pred
        return skip_reason(mode, L, est, limit, pred, fb_max_L=s.fb_max_L, cap_s=s.per_call_cap_s, needed_s=needed,
                           left_s=s.budget_s - self.spent)
