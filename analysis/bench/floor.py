"""Section 3: how close the S4D kernel is to the hardware's floor. Our S4D kernel (``kernel(L)``: the blocked
Vandermonde product of `sgconv_core.kernels.ssm.vandermonde`) next to the straightforward route, measured in
the same run, and both against a plain float32 matmul on the same machine.

The straightforward route (`straightforward_vandermonde`) is what ``ssm.vandermonde`` was before the blocked
product: the exponential of the full (H, N/2, L) outer product of log poles and positions, then a contraction
with the coefficients, *with* its chunking over l (2^24 complex values per chunk) so that long L fits in memory;
it gets the same coefficients and log poles as ours (``S4DKernel.vandermonde_terms``), so the two differ only in
how the Vandermonde sum is evaluated. Forward (under ``torch.no_grad``) and forward+backward
(``K.sum().backward()``), one ``section="floor"`` row per pass and L.

Work: C*H*(N/2)*L complex multiply-adds, counted as 8 real flops each (``flops``); GFLOP/s = flops / time, for the
forward. Ours computes only the real part (4 real flops per complex multiply-add), so its rate by this count can
reach twice what the matmul achieves. The matmul (``section="matmul"``): a float32 (n x n) @ (n x n), 2 n^3 flops.

The straightforward route is slow (seconds at 16k): its cells run without a warm-up call once a call is predicted
to take over a second (the first, short cells have warmed it up), and are skipped, with a note, when predicted
over ``floor_cap_s`` per call, over the section's time budget ``floor_budget_s`` or over the memory budget.
"""
from __future__ import annotations

import dataclasses
import time

import torch

from sgconv_core.kernels import S4DKernel

from .spec import MB, PASSES, Settings, fmt_L, fmt_num
from .timing import run_cell, skip_reason, skipped, zero_grads

#: The two routes of this section, ours first: the ratio column is the straightforward time over ours.
ROUTES = ("ours", "straightforward")
#: Complex values of exp(log_pole * l) per chunk of the straightforward route (as ssm.vandermonde chunked).
STRAIGHT_CHUNK = 1 << 24


def straightforward_vandermonde(coef: torch.Tensor, log_pole: torch.Tensor, L: int,
                                chunk_elems: int = STRAIGHT_CHUNK) -> torch.Tensor:
    """K[c,h,l] = sum_n coef[c,h,n] exp(log_pole[h,n] l): exp of the (H, M, L) outer product, then a contraction,
    chunked over l (the former ``ssm.vandermonde``, kept here as the benchmark's baseline). (C, H, L) complex."""
    H, M = log_pole.shape
    step = max(1, chunk_elems // max(1, H * M))
    out = []
    for start in range(0, L, step):
        l = torch.arange(start, min(L, start + step), device=log_pole.device, dtype=log_pole.real.dtype)
        out.append(torch.einsum("chn,hnl->chl", coef, torch.exp(log_pole.unsqueeze(-1) * l)))
    return torch.cat(out, dim=-1)


def straightforward_kernel(kernel: S4DKernel, L: int) -> torch.Tensor:
    """The S4D kernel (C_k, H, L) by the straightforward route, from the kernel's own coefficients and log poles."""
    coef, log_pole = kernel.vandermonde_terms()
    return straightforward_vandermonde(coef, log_pole, L).real


def flops(L: int, s: Settings) -> float:
    """Real flops of one S4D kernel at length L: 8 per complex multiply-add, C*H*(N/2)*L of them."""
    return 8.0 * s.channels * s.H * (s.d_state // 2) * L


def estimate_floor_bytes(route: str, mode: str, L: int, s: Settings) -> float:
    """Peak bytes of one cell, roughly: the output, plus for the straightforward route a few chunks of powers
    (forward) or every power, kept for the backward, and its gradient (forward+backward); float32 / complex64."""
    H, M, C = s.H, s.d_state // 2, s.channels
    out = C * H * L * 8.0
    if route == "ours":  # output + tables ~2M(C*J + J + 2B) per feature, J = B = sqrt(L)
        return 3 * out + 4.0 * 2 * M * H * (C + 3) * L ** 0.5
    if mode == "fwd":
        return 2 * out + 3 * 8.0 * min(H * M * L, STRAIGHT_CHUNK)
    return 2 * out + 3 * 8.0 * H * M * L


def _fn(route: str, kernel: S4DKernel, L: int, mode: str):
    """The call to time for one route and pass."""
    compute = (lambda: kernel(L)) if route == "ours" else (lambda: straightforward_kernel(kernel, L))
    if mode == "fwd":
        def fn():
            with torch.no_grad():
                return compute()
    else:
        def fn():
            compute().sum().backward()
            zero_grads(kernel)
    return fn


def matmul_row(s: Settings, device: str, mem, say) -> dict:
    """A plain float32 (n x n) @ (n x n) matmul, n = ``floor_matmul_n``: the ``section="matmul"`` row."""
    n = s.floor_matmul_n
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    cell = run_cell(lambda: a @ b, device, mem, s)
    gf = 2.0 * n ** 3 / (cell["ms"] / 1e3) / 1e9 if cell.get("ms") else None
    say(f"matmul float32 {n}x{n}: {fmt_num(cell.get('ms'))} ms, {fmt_num(gf)} GFLOP/s")
    return {"section": "matmul", "n": n, "dtype": "float32", "cell": cell, "gflops": gf}


def floor_rows(lengths: list[int], s: Settings, device: str, mem, say) -> list[dict]:
    """The matmul row, then one ``section="floor"`` row per pass and length (all forward rows first)."""
    rows = [matmul_row(s, device, mem, say)]
    cells = FloorCells(s, device, mem, say)
    for mode in PASSES:
        for L in lengths:
            torch.manual_seed(0)
            kernel = S4DKernel(s.H, s.d_state, channels=s.channels, l_max=L).to(device)
            rows.append(cells.row(mode, L, kernel))
    return rows


class FloorCells:
    """Measures the floor cells in order; remembers the last time per (route, pass) to predict the next length's
    (time ~ L^growth) and skip what would not fit, and the seconds spent."""

    def __init__(self, s: Settings, device: str, mem, say):
        self.s, self.device, self.mem, self.say = s, device, mem, say
        self.last: dict[tuple, tuple] = {}  # (route, pass) -> (L, seconds per call)
        self.spent = 0.0

    def row(self, mode: str, L: int, kernel: S4DKernel) -> dict:
        """One pass at one length: a cell per route, the straightforward/ours ratio, the forward GFLOP/s."""
        row = {"section": "floor", "pass": mode, "L": L, "flops": flops(L, self.s)}
        for route in ROUTES:
            row[route] = self.cell(mode, L, route, kernel)
        a, b = row["straightforward"].get("ms"), row["ours"].get("ms")
        row["ratio"] = a / b if (a and b) else None
        for route in ROUTES:
            ms = row[route].get("ms")
            row[f"{route}_gflops"] = row["flops"] / (ms / 1e3) / 1e9 if (ms and mode == "fwd") else None
        return row

    def cell(self, mode: str, L: int, route: str, kernel: S4DKernel) -> dict:
        s = self.s
        est = estimate_floor_bytes(route, mode, L, s)
        pred = self.predict(route, mode, L)
        note = self.skip_note(mode, L, est, self.mem.limit_bytes(s.mem_budget_gb), pred)
        if note:
            return skipped(note, est)
        if pred is not None and pred > 1.0:  # slow: warmed up by the shorter cells already; one timed call
            s = dataclasses.replace(s, warmup=0)
        if pred is not None and pred > 5:
            self.say(f"S4D {route} {mode} L={fmt_L(L)}: running (est. {pred:.0f} s per call) ...")
        t0 = time.perf_counter()
        cell = run_cell(_fn(route, kernel, L, mode), self.device, self.mem, s)
        self.spent += time.perf_counter() - t0
        cell["est_mb"] = est / MB
        if cell.get("ms"):
            self.last[(route, mode)] = (L, cell["ms"] / 1e3)
        self.say(f"S4D {route} {mode} L={fmt_L(L)}: {fmt_num(cell.get('ms'))} ms x{cell.get('reps')} "
                 f"({cell['status']})")
        return cell

    def predict(self, route: str, mode: str, L: int) -> float | None:
        """Seconds per call from the last measured length of this route and pass; None before any."""
        if (route, mode) not in self.last:
            return None
        L0, t0 = self.last[(route, mode)]
        return t0 * (L / L0) ** self.s.growth

    def skip_note(self, mode: str, L: int, est: float, limit: float, pred: float | None) -> str | None:
        """Why a cell is not run (None: run it); a slow cell is timed once, so the budget needs one call."""
        s = self.s
        return skip_reason(mode, L, est, limit, pred, fb_max_L=s.fb_max_L, cap_s=s.floor_cap_s, needed_s=pred,
                           left_s=s.floor_budget_s - self.spent)
