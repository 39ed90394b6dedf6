"""Section 3: how close the S4D and S4 kernels are to the hardware's floor. Our S4D kernel (``kernel(L)``: the
blocked Vandermonde product of `sgconv_core.kernels.ssm.vandermonde`) and our S4 kernel (``kernel(L)`` with
l_max = L, `S4Kernel.cauchy_kernel`: the Woodbury generating functions as rffts of Vandermonde sums, or the Cauchy
matrix 1/(z - w) as one batched product where a mode has not decayed over L)
each next to its straightforward route, measured in the same run, and all against a plain float32 matmul on the
same machine.

S4 (``section="floor_s4"`` rows): the straightforward route (`straightforward_cauchy_kernel`) is what
``S4Kernel.cauchy_kernel`` was before the matrix product: the quotient v_ab,n / (z_f - w_n) of every pair
(a, b) of the (1+R) x (C_k+R) Woodbury terms formed in full, (1+R, C_k+R, H, N, L/2+1), then summed over n
(chunked over frequencies without autograd, as it was, so that 16k fits in memory), then the same Woodbury
correction and inverse FFT. Work: (1+R)(C_k+R)*H*N*(L/2+1) complex multiply-adds (8 real flops each), the
Cauchy matrix's H*N*(L/2+1) reciprocals not counted.

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

import numpy as np
import torch

from sgconv_core.kernels import S4DKernel, S4Kernel
from sgconv_core.kernels.ssm import tile

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


def straightforward_cauchy_kernel(kernel: S4Kernel, L: int, chunk_elems: int = STRAIGHT_CHUNK) -> torch.Tensor:
    """The S4 kernel (C_k, H, L), L <= l_kernel, by the former Cauchy route: the full quotient of every Woodbury pair
    (1+R, C_k+R, H, N, F), summed over the modes (frequency chunks of ``chunk_elems`` quotients without autograd)."""
    Lk = int(kernel.l_kernel)
    if not 0 < L <= Lk:
        raise ValueError(f"the Cauchy route needs 0 < L <= l_kernel = {Lk}, got L = {L}")
    dt, A, B, C = kernel.ssm_params()
    P = tile(torch.view_as_complex(kernel.P.contiguous()), kernel.H, 1)
    omega = torch.tensor(np.exp(-2j * np.pi / Lk), dtype=C.dtype, device=C.device) ** torch.arange(
        Lk // 2 + 1, device=C.device)
    z = 2 * (1 - omega) / (1 + omega)
    w = A * dt
    v = torch.cat([B, P], 0).unsqueeze(1) * torch.cat([C, P.conj()], 0).unsqueeze(0) * dt  # (1+R, C_k+R, H, N')
    v2, w2 = torch.cat([v, v.conj()], -1), torch.cat([w, w.conj()], -1)
    n_f = z.shape[-1]
    step = n_f if torch.is_grad_enabled() and v2.requires_grad else max(1, chunk_elems // max(v2.numel(), 1))
    r = torch.cat([(v2.unsqueeze(-1) / (z[i:i + step] - w2.unsqueeze(-1))).sum(-2) for i in range(0, n_f, step)], -1)
    R = kernel.rank
    r00, r01, r10, r11 = r[:-R, :-R], r[:-R, -R:], r[-R:, :-R], r[-R:, -R:]
    if R == 1:
        k_f = r00 - r01 * r10 / (1 + r11)
    else:
        r11 = torch.linalg.inv(torch.eye(R, dtype=r.dtype) + r11.permute(2, 3, 0, 1)).permute(2, 3, 0, 1)
        k_f = r00 - torch.einsum("ijhn,jkhn,klhn->ilhn", r01, r11, r10)
    return torch.fft.irfft(k_f * 2 / (1 + omega), n=Lk)[0, ..., :L]


def s4_flops(L: int, s: Settings, rank: int = 1) -> float:
    """Real flops of one S4 Cauchy kernel at length L = l_kernel: 8 per complex multiply-add,
    (1+R)(C_k+R)*H*N*(L/2+1) of them (the Cauchy matrix's reciprocals not counted)."""
    return 8.0 * (1 + rank) * (s.channels + rank) * s.H * s.d_state * (L // 2 + 1)


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


def estimate_s4_floor_bytes(route: str, mode: str, L: int, s: Settings, rank: int = 1) -> float:
    """Peak bytes of one S4 cell, roughly (complex64): ours holds the Cauchy matrix (H, N, L/2+1) (twice with
    autograd: Q and Q^2 in the backward); the straightforward route the quotient of all pairs (chunked without
    autograd; with autograd in full, ~3 copies for the division's backward)."""
    pairs = (1 + rank) * (s.channels + rank)
    q = 8.0 * s.H * s.d_state * (L // 2 + 1)
    out = 3 * 8.0 * pairs * s.H * (L // 2 + 1)
    if route == "ours":
        return out + (3 if mode == "fwd+bwd" else 1) * min(q, 8.0 * (1 << 24) if mode == "fwd" else q)
    if mode == "fwd":
        return out + 3 * 8.0 * min(pairs * q / 8.0, STRAIGHT_CHUNK)
    return out + 4 * pairs * q


def _fn(route: str, kernel, L: int, mode: str):
    """The call to time for one route and pass (S4D or S4 by the kernel's kind)."""
    straight = straightforward_cauchy_kernel if kernel.kind == "s4" else straightforward_kernel
    compute = (lambda: kernel(L)) if route == "ours" else (lambda: straight(kernel, L))
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
    """The matmul row, then one ``section="floor"`` row (S4D) per pass and length (all forward rows first), then
    one ``section="floor_s4"`` row (S4, l_max = L: the Cauchy route) per pass and length. Each family has its
    own ``floor_budget_s``."""
    rows = [matmul_row(s, device, mem, say)]
    for fam in ("s4d", "s4"):
        cells = FloorCells(s, device, mem, say, family=fam)
        for mode in PASSES:
            for L in lengths:
                torch.manual_seed(0)
                cls = S4Kernel if fam == "s4" else S4DKernel
                kernel = cls(s.H, s.d_state, channels=s.channels, l_max=L).to(device)
                rows.append(cells.row(mode, L, kernel))
    return rows


class FloorCells:
    """Measures the floor cells in order; remembers the last time per (route, pass) to predict the next length's
    (time ~ L^growth) and skip what would not fit, and the seconds spent."""

    def __init__(self, s: Settings, device: str, mem, say, family: str = "s4d"):
        self.s, self.device, self.mem, self.say = s, device, mem, say
        self.family = family
        self.last: dict[tuple, tuple] = {}  # (route, pass) -> (L, seconds per call)
        self.spent = 0.0

    def row(self, mode: str, L: int, kernel) -> dict:
        """One pass at one length: a cell per route, the straightforward/ours ratio, the forward GFLOP/s."""
        s4 = self.family == "s4"
        row = {"section": "floor_s4" if s4 else "floor", "family": self.family, "pass": mode, "L": L,
               "flops": s4_flops(L, self.s, kernel.rank) if s4 else flops(L, self.s)}
        for route in ROUTES:
            row[route] = self.cell(mode, L, route, kernel)
        a, b = row["straightforward"].get("ms"), row["ours"].get("ms")
        row["ratio"] = a / b if (a and b) else None
        for route in ROUTES:
            ms = row[route].get("ms")
            row[f"{route}_gflops"] = row["flops"] / (ms / 1e3) / 1e9 if (ms and mode == "fwd") else None
        return row

    def cell(self, mode: str, L: int, route: str, kernel) -> dict:
        s = self.s
        est = (estimate_s4_floor_bytes(route, mode, L, s, kernel.rank) if self.family == "s4"
               else estimate_floor_bytes(route, mode, L, s))
        pred = self.predict(route, mode, L)
        note = self.skip_note(mode, L, est, self.mem.limit_bytes(s.mem_budget_gb), pred)
        if note:
            return skipped(note, est)
        if pred is not None and pred > 1.0:  # slow: warmed up by the shorter cells already; one timed call
            s = dataclasses.replace(s, warmup=0)
        if pred is not None and pred > 5:
            self.say(f"{self.family.upper()} {route} {mode} L={fmt_L(L)}: running (est. {pred:.0f} s per call) ...")
        t0 = time.perf_counter()
        cell = run_cell(_fn(route, kernel, L, mode), self.device, self.mem, s)
        self.spent += time.perf_counter() - t0
        cell["est_mb"] = est / MB
        if cell.get("ms"):
            self.last[(route, mode)] = (L, cell["ms"] / 1e3)
        self.say(f"{self.family.upper()} {route} {mode} L={fmt_L(L)}: {fmt_num(cell.get('ms'))} ms x{cell.get('reps')} "
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
