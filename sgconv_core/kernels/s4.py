r"""S4: the diagonal-plus-low-rank (DPLR) state-space kernel (Gu et al. 2022), v4 parameterisation.

State matrix A = diag(Lambda) - P P^* over the conjugate-extended 2N' modes (Lambda from A_real, A_imag as
in S4D; P (R, n_ssm, N', 2)); input B; bilinear discretisation with step dt:
    dA = (I - dt/2 A)^-1 (I + dt/2 A),    dB = dt (I - dt/2 A)^-1 B,    K[l] = C^T dA^l dB.
The stored ``C`` is C~ = C (I - dA^{L_k}) with L_k = ``l_kernel`` (0: C itself), which lets the official
code evaluate the kernel at the L_k-th roots of unity with one Cauchy sum and a Woodbury correction:
    k^(w) = 2/(1+w) [r_BC - r_BQ r_PC / (1 + r_PQ)],   r_ab = sum_n dt a_n b_n / (z - dt Lambda_n),
    z = 2(1-w)/(1+w);   K = irfft(k^, L_k)[:L].
We use that route (differentiable, O(H N L)) for L <= L_k. Beyond L_k (`forward`, `block_C`) the kernel goes in
blocks of b = L_k taps: block j is the length-b kernel of C_j^T = C^T X^j, X = dA^b, whose C~ is
    C~_j = C_j^T (I - X) = C~ X^j        (X commutes with I - X; no solve with I - dA^{L_k}),
so the same Woodbury route at L_k gives every block, with the m = ceil(L / L_k) rows C~ X^j (formed by doubling,
complex128, on the dense discretisation) as channels; with more rows than 2N' it runs once on the unit vectors
(the kernel is real-linear in C~) and the blocks are one matrix product. l_kernel = 0 (C is the true C): blocks of
b = min(L, 4096) with C~_b = C (I - dA^b). Beyond L_k the route runs in float64 for float32 kernels too (rounded
once). Exact to rounding (float64 ~1e-13 relative against the recurrence at N = 64) and differentiable at any L.
The official code instead doubles C~ in place (C~_{2L} = C~_L (I + dA^L)) and evaluates at length 2^j L_k; nothing
stored is modified here. The modal form (`modal`, `vandermonde_terms`: C recovered by solving
(I - dA^{L_k})^T C = C~, dA = V diag(lambda) V^-1 in float64) is kept for analysis (poles, residues, mode
compression), not for kernels: it has no gradient and is accurate only to the eigenvectors' conditioning
(~1e-9 relative for HiPPO-LegS at N = 16, ~6e-8 at N = 64).
Parameter count: H + C_k*H*N + n_ssm*N*(2 + R).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..fftconv import rfft
from .base import check_length
from .hippo import legs_nplr
from .s4d import S4DKernel
from .ssm import init_inv_dt, inv_transform, tile, vandermonde

#: Largest 1/|1 - lambda^L_k| over the modes for which `S4Kernel.cauchy_kernel` takes the Vandermonde route (it
#: scales the rounding of the Vandermonde sums; beyond it the Cauchy matrix is used).
TRUNCATION_GAIN_MAX = 100.0

#: Most elements of the Cauchy matrix 1/(z_f - w_n) materialised at once when no gradient is needed.
_CAUCHY_CHUNK = 1 << 24

#: Most bytes of Woodbury generating-function sequences ((1+R)(C_k+R) per feature, length M) formed at once when no
#: gradient is needed: the features go in chunks (bounds the memory of long kernels, e.g. L = 1M).
_ROUTE_CHUNK_BYTES = 1 << 26

#: Block length of `S4Kernel.block_C` when l_kernel = 0 (C is the true C).
_BLOCK = 4096


def _cauchy(v: torch.Tensor, w: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    r"""r[a,b,h,f] = sum_n v[a,b,h,n] / (z[f] - w[h,n]): v (A, B', H, M), w (H, M), z (F,) -> (A, B', H, F).

    As a matrix product: the Cauchy matrix Q[h,n,f] = 1/(z_f - w_hn) is built once, (H, M, F), and every (a, b)
    pair is one row of a batched (A B', M) x (M, F) product per h. The quotient v/(z - w) of all pairs,
    (A, B', H, M, F), is never formed (A B' = 4 times larger for C_k = R = 1). With autograd (`_CauchyProduct`)
    the backward is two more batched products, with Q and Q^2 (dQ/dw = Q^2), and saves only Q. Without
    autograd the frequencies go in chunks of at most ``_CAUCHY_CHUNK`` elements of Q (the same terms per
    frequency), which keeps a long l_kernel within memory (H = 256, N = 64 at 16k: 1 GB -> 0.13 GB).
    """
    A, Bp, H, M = v.shape
    rows = v.permute(2, 0, 1, 3).reshape(H, A * Bp, M)  # (H, A B', M)
    n_f = z.shape[-1]
    if torch.is_grad_enabled() and (v.requires_grad or w.requires_grad):
        r = _CauchyProduct.apply(rows, w, z)
    else:
        step = max(1, _CAUCHY_CHUNK // max(H * M, 1))
        parts = [torch.bmm(rows, torch.reciprocal(z[i:i + step] - w.unsqueeze(-1))) for i in range(0, n_f, step)]
        r = parts[0] if len(parts) == 1 else torch.cat(parts, -1)  # (H, A B', F)
    return r.reshape(H, A, Bp, n_f).permute(1, 2, 0, 3)


class _CauchyProduct(torch.autograd.Function):
    """rows (H, K, M), w (H, M), z (F,) constant -> rows @ Q, Q = 1/(z - w) (H, M, F), complex.

    Backward (PyTorch's convention for complex gradients, g = dL/d conj(out)): with G the incoming (H, K, F),
    grad rows = G Q^H, grad Q = rows^H G, and Q holomorphic in w with dQ/dw = Q^2, so
    grad w[h,n] = sum_f grad Q[h,n,f] conj(Q[h,n,f]^2) = sum_k conj(rows[h,k,n]) (G (Q^2)^H)[h,k,n].
    Both products are taken as (Q or Q^2) G^H (H, M, K), conjugated and transposed: a product against the
    conjugate transpose of the big (M, F) matrix is several times slower on CPU.
    """

    @staticmethod
    def forward(ctx, rows, w, z):
        Q = torch.reciprocal(z - w.unsqueeze(-1))
        ctx.save_for_backward(rows, Q)
        return torch.bmm(rows, Q)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, G):
        rows, Q = ctx.saved_tensors
        Gh = G.conj().transpose(1, 2).contiguous()  # (H, F, K): small; Q stays untransposed (fast products)
        g_rows = torch.bmm(Q, Gh).conj().transpose(1, 2) if ctx.needs_input_grad[0] else None  # (G Q^H)
        g_w = None
        if ctx.needs_input_grad[1]:
            S = torch.bmm(Q * Q, Gh).conj().transpose(1, 2)  # G (Q^2)^H: (H, K, M)
            g_w = (rows.conj() * S).sum(1)
        return g_rows, g_w, None


class S4Kernel(S4DKernel):
    """DPLR SSM kernel (C_k, H, L). Args as `S4DKernel` plus rank R; init 'legs' (HiPPO-LegS)."""

    kind = "s4"

    def __init__(self, d_model: int, d_state: int = 64, rank: int = 1, init: str = "legs", **kw):
        self.rank = int(rank)
        kw.setdefault("disc", "bilinear")
        if kw["disc"] != "bilinear":
            raise ValueError("S4 (DPLR) kernels are always bilinear")
        super().__init__(d_model, d_state, init=init, **kw)

    def _init_params(self) -> None:
        if self.init not in ("legs", "hippo"):
            raise ValueError(f"unknown S4 init {self.init!r}; use 'legs'")
        W, P, B = legs_nplr(self.N)
        M, R = self.N // 2, self.rank
        A = torch.as_tensor(W).expand(self.n_ssm, M)
        Pt = torch.zeros(R, self.n_ssm, M, dtype=torch.complex128)
        Pt[0] = torch.as_tensor(P)
        self.inv_dt = nn.Parameter(init_inv_dt(self.H, self.dt_min, self.dt_max, self.dt_transform,
                                               1 if self.dt_tie else M).float())
        self.A_real = nn.Parameter(inv_transform(-A.real, self.real_transform).float().contiguous())
        self._scale_real()  # before attune: C~ = C (I - dA^L) with the scaled A
        self.A_imag = nn.Parameter(inv_transform(-A.imag, self.imag_transform).float().contiguous())
        self.B = nn.Parameter(torch.view_as_real(torch.as_tensor(B).expand(1, self.n_ssm, M).to(torch.complex64)).contiguous())
        self.P = nn.Parameter(torch.view_as_real(Pt.to(torch.complex64)).contiguous())
        self.C = nn.Parameter(torch.view_as_real(torch.randn(self.C_k, self.H, M, dtype=torch.complex64)))
        self.register_buffer("l_kernel", torch.tensor(0))
        if self.l_max:
            self.attune(self.l_max)

    # -- dense discretisation ---------------------------------------------------------------------
    def dense(self, dtype=torch.complex128):
        """Discretised system over 2N' modes: dA (H, 2N', 2N'), dB (H, 2N'), C~ (C_k, H, 2N')."""
        dt, A, B, C = self.ssm_params()
        P = tile(torch.view_as_complex(self.P.contiguous()), self.H, 1)
        dt, A, B, C, P = (x.to(dtype) for x in (dt, A, B, C, P))
        w = torch.cat([A, A.conj()], -1)
        p = torch.cat([P, P.conj()], -1)
        A_full = torch.diag_embed(w) - torch.einsum("rhm,rhn->hmn", p, p.conj())
        D = dt.expand(self.H, -1)
        D = torch.cat([D, D], -1) if D.shape[-1] > 1 else D.expand(self.H, w.shape[-1])
        M = D.unsqueeze(-1) * A_full
        I = torch.eye(M.shape[-1], dtype=dtype, device=M.device)
        dA = torch.linalg.solve(I - M / 2, I + M / 2)
        dB = torch.linalg.solve(I - M / 2, (D * torch.cat([B, B.conj()], -1)[0]).unsqueeze(-1)).squeeze(-1)
        return dA, dB, torch.cat([C, C.conj()], -1)

    def true_C(self, dA: torch.Tensor, C_tilde: torch.Tensor) -> torch.Tensor:
        """C from the stored C~ = C (I - dA^{L_k}): (C_k, H, 2N')."""
        Lk = int(self.l_kernel)
        if Lk == 0:
            return C_tilde
        I = torch.eye(dA.shape[-1], dtype=dA.dtype, device=dA.device)
        lhs = (I - torch.linalg.matrix_power(dA, Lk)).transpose(-1, -2)
        return torch.linalg.solve(lhs.unsqueeze(0), C_tilde.unsqueeze(-1)).squeeze(-1)

    def modal(self):
        """Residues r (C_k, H, 2N') and poles lambda (H, 2N'), float64: K[c,h,l] = Re sum_n r lambda^l."""
        with torch.no_grad():
            dA, dB, Ct = self.dense()
            C = self.true_C(dA, Ct)
            lam, V = torch.linalg.eig(dA)
            left = torch.einsum("chm,hmn->chn", C, V)
            right = torch.linalg.solve(V, dB.unsqueeze(-1)).squeeze(-1)
            return left * right.unsqueeze(0), lam

    @torch.no_grad()
    def attune(self, L: int) -> None:
        """Initialise: store C~ = C (I - dA^L) for the current (true) C and set l_kernel = L (official _setup_C)."""
        dA, _, Ct = self.dense()
        C = self.true_C(dA, Ct)
        I = torch.eye(dA.shape[-1], dtype=dA.dtype)
        Cn = torch.einsum("hnm,chn->chm", I - torch.linalg.matrix_power(dA, int(L)), C)  # C^T (I - dA^L)
        self.C.copy_(torch.view_as_real(Cn[..., : self.N // 2].to(torch.complex64 if self.C.dtype == torch.float32 else torch.complex128)))
        self.l_kernel.fill_(int(L))

    # -- kernels ----------------------------------------------------------------------------------
    def cauchy_kernel(self, L: int, route: str = "auto") -> torch.Tensor:
        """The official Cauchy + Woodbury route at the L_k roots of unity, truncated to L <= L_k: (C_k, H, L).

        ``route``: 'vandermonde' (the generating functions as the FFT of Vandermonde sums, `_woodbury_vandermonde`),
        'cauchy' (the Cauchy matrix, `_woodbury_cauchy`), or 'auto': the Vandermonde sums unless some mode has
        |1 - lambda^L_k| < 1/`TRUNCATION_GAIN_MAX` (a mode that has barely decayed over L_k steps), then the
        Cauchy matrix. Both are differentiable and agree to rounding (float64 ~1e-13 relative).
        """
        Lk = int(self.l_kernel)
        if not 0 < int(L) <= Lk:
            raise ValueError(f"the Cauchy route needs 0 < L <= l_kernel = {Lk}, got L = {L}")
        return self._dplr_kernel(None, Lk, int(L), route)

    def block_C(self, L: int) -> tuple[torch.Tensor, int]:
        r"""C~ of every block of b taps up to L, from the stored C~ without mutating it: (C~_j (m, C_k, H, N'), b).

        Block j of the kernel (taps jb .. jb+b-1) is the length-b kernel of C_j^T = C^T X^j, X = dA^b, and its
        C~ is C_j^T (I - X) = C^T (I - X) X^j = C~_b X^j (X commutes with I - X). l_kernel = L_k > 0: b = L_k and
        C~_b is the stored C~ (no solve with I - dA^{L_k}); l_kernel = 0 (C is the true C): b = min(L, ``_BLOCK``)
        and C~_b = C (I - dA^b). The m = ceil(L / b) rows C~_b X^j, j < m, are formed by doubling: with the rows
        for j < a and P = X^a, the rows for a <= j < 2a are those rows times P, then P <- P^2 (log2 m products).
        On the dense discretisation (`dense`, complex128, differentiable); the first N' entries are kept: X commutes
        with conjugating the mode pairs, so every row stays conjugate-paired (as the official ``_setup_C`` keeps
        them). Kept in complex128.
        """
        L, Lk = int(L), int(self.l_kernel)
        dA, _, Ct = self.dense()  # (H, 2N', 2N'), _, (C_k, H, 2N')
        b = Lk if Lk else min(L, _BLOCK)
        X = torch.linalg.matrix_power(dA, b)
        if not Lk:
            Ct = Ct - torch.einsum("chn,hnm->chm", Ct, X)  # C (I - dA^b)
        m = -(-L // b)
        rows, P = Ct.unsqueeze(0), X  # (a, C_k, H, 2N'), X^a
        while rows.shape[0] < m:
            rows = torch.cat([rows, torch.einsum("jchn,hnm->jchm", rows, P)], 0)
            if rows.shape[0] < m:
                P = P @ P
        return rows[:m, ..., : self.N // 2], b

    def _dplr_kernel(self, C: torch.Tensor, Lk: int, L: int, route: str = "auto", blocks: int = 1) -> torch.Tensor:
        r"""The Cauchy + Woodbury route for C~ = C attuned to Lk, the blocks laid end to end, truncated to L: (C_k, H, L).

        C: (blocks, C_k, H, N') (or (C_k, H, N') for one block; None: the stored C~); L <= blocks * Lk; the route runs in C's precision
        (complex128 C: float64 even for a float32 kernel). The kernel is real-linear in C~:
        K_j = sum_n Re C~_jn G_n + Im C~_jn G_{N'+n} with G (2N', H, Lk) the kernels of the unit vectors e_n and
        i e_n. With more block rows (blocks * C_k) than 2N', G is computed once (2N' channels) and every block is one
        matrix product (H, blocks C_k, 2N') x (H, 2N', Lk): a long kernel costs one length-Lk route plus
        O(H N' L) multiply-adds; otherwise the blocks are the route's channels. Without autograd the features go
        in chunks of at most ``_ROUTE_CHUNK_BYTES`` of generating-function sequences (the same arithmetic per
        feature, so the same kernel), which bounds the memory at long L.
        """
        if route not in ("auto", "vandermonde", "cauchy"):
            raise ValueError(f"unknown Cauchy route {route!r}; choose 'auto', 'vandermonde' or 'cauchy'")
        dt, A, B, stored = self.ssm_params()
        C = (stored if C is None else C).reshape(blocks, -1, *stored.shape[-2:])  # (m, C_k, H, N')
        m, C_k, H, M = C.shape
        P = tile(torch.view_as_complex(self.P.contiguous()), self.H, 1)
        dt, A, B, P = dt.to(C.real.dtype), A.to(C.dtype), B.to(C.dtype), P.to(C.dtype)
        w = A * dt
        basis = m * C_k > 2 * M
        if basis:  # the unit vectors e_n, i e_n as channels: (2N', H, N')
            eye = torch.eye(M, dtype=C.dtype, device=C.device)
            rows = torch.cat([eye, 1j * eye], 0).unsqueeze(1).expand(2 * M, H, M)
            coefs = torch.cat([C.real, C.imag], -1).flatten(0, 1).permute(1, 0, 2)  # (H, m C_k, 2N')
        else:
            rows = C.flatten(0, 1)
        v = torch.cat([B, P], 0).unsqueeze(1) * torch.cat([rows, P.conj()], 0).unsqueeze(0) * dt  # (1+R, rows+R, H, N')
        if route == "auto":
            with torch.no_grad():
                lam_L = torch.exp(Lk * torch.log((2 + w) / (2 - w)))
                gain = float((1 / (1 - lam_L).abs()).max())
            route = "vandermonde" if gain <= TRUNCATION_GAIN_MAX else "cauchy"
        run = self._woodbury_vandermonde if route == "vandermonde" else self._woodbury_cauchy

        def piece(h0: int, h1: int) -> torch.Tensor:  # features h0..h1-1: (C_k, h1-h0, L)
            K = run(v[:, :, h0:h1], w[h0:h1], Lk)  # (rows, H', Lk)
            if basis:
                K = torch.bmm(coefs[h0:h1], K.transpose(0, 1))  # (H', m C_k, Lk)
                return K.reshape(h1 - h0, m, C_k, Lk).permute(2, 0, 1, 3).flatten(2)[..., :L]
            return K.reshape(m, C_k, h1 - h0, Lk).permute(1, 2, 0, 3).flatten(2)[..., :L]

        per_h = v.shape[0] * v.shape[1] * Lk * v.real.element_size()
        grad = torch.is_grad_enabled() and (v.requires_grad or w.requires_grad)
        step = H if grad else max(1, _ROUTE_CHUNK_BYTES // max(per_h, 1))
        if step >= H:
            return piece(0, H)
        out = torch.empty(C_k, H, L, dtype=v.real.dtype, device=v.device)
        for h in range(0, H, step):
            out[:, h:h + step] = piece(h, min(h + step, H))
        return out

    def _woodbury_cauchy(self, v: torch.Tensor, w: torch.Tensor, Lk: int) -> torch.Tensor:
        """k^(omega) by the Cauchy matrix (`_cauchy`) and Woodbury, then irfft: (C_k, H, L_k)."""
        omega = torch.tensor(np.exp(-2j * np.pi / Lk), dtype=v.dtype, device=v.device) ** torch.arange(
            Lk // 2 + 1, device=v.device)
        z = 2 * (1 - omega) / (1 + omega)
        v2, w2 = torch.cat([v, v.conj()], -1), torch.cat([w, w.conj()], -1)
        r = _cauchy(v2, w2, z)  # r_ab(z) = sum_n v_n / (z - w_n): (1+R, C_k+R, H, Lk/2+1)
        k_f = self._woodbury(r, torch.ones_like(omega)) * 2 / (1 + omega)
        return torch.fft.irfft(k_f, n=Lk)[0]

    def _woodbury_vandermonde(self, v: torch.Tensor, w: torch.Tensor, Lk: int) -> torch.Tensor:
        r"""k^(omega) from Vandermonde sums, then irfft: (C_k, H, L_k). With lambda = (2 + w)/(2 - w) (the bilinear
        pole), 1/(z - w) = (1 + omega)/(2 - w) / (1 - lambda omega), so r_ab = (1 + omega) s_ab with
            s_ab(omega) = sum_n c_n / (1 - lambda_n omega),   c_n = v_n / (2 - w_n),
        and the Woodbury formula becomes k^ = 2 [s00 - (1+omega) s01 (1 + (1+omega) s11)^-1 s10] (no pole at
        omega = -1). At the L_k-th roots of unity omega^L_k = 1, so s_ab is the DFT of the length-L_k sequence
            S_ab[l] = sum_n c_n / (1 - lambda_n^L_k) lambda_n^l = 2 Re sum_{n < N'} (...)   (conjugate pairs),
        a real S4D-like kernel that `ssm.vandermonde` sums as a blocked matrix product (differentiable): four
        such kernels for C_k = R = 1 and one rfft replace the H N (L_k/2+1) reciprocals of the Cauchy matrix.
        The factor 1/(1 - lambda^L_k) amplifies rounding by at most `TRUNCATION_GAIN_MAX` (checked by the caller).
        """
        AB, H, M = v.shape[0] * v.shape[1], v.shape[2], v.shape[3]
        log_lam = torch.log((2 + w) / (2 - w))  # (H, N')
        lam_L = torch.exp(Lk * log_lam)
        coef = 2 * v / ((2 - w) * (1 - lam_L))  # (1+R, C_k+R, H, N'); the 2 of Re over conjugate pairs
        seq = vandermonde(coef.reshape(AB, H, M), log_lam, Lk, real=True, f64_tables=True)  # (AB, H, L_k)
        s = rfft(seq, Lk).reshape(*v.shape[:2], H, Lk // 2 + 1)
        f = torch.arange(Lk // 2 + 1, device=v.device, dtype=v.real.dtype)
        one_plus = 1 + torch.polar(torch.ones_like(f), -2 * np.pi / Lk * f)  # 1 + omega_f, each to rounding
        return torch.fft.irfft(2 * self._woodbury(s, one_plus), n=Lk)[0]

    def _woodbury(self, r: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """r00 - g r01 (1 + g r11)^-1 r10 for r (1+R, C_k+R, H, F) and a factor g (F,): (1, C_k, H, F)."""
        R = self.rank
        top, bottom = r.split([r.shape[0] - R, R], 0)  # split, not slices: its backward is one cat, no zero fills
        (r00, r01), (r10, r11) = (t.split([r.shape[1] - R, R], 1) for t in (top, bottom))
        if R == 1:
            return r00 - g * r01 * r10 / (1 + g * r11)
        eye = torch.eye(R, dtype=r.dtype, device=r.device)
        inv = torch.linalg.inv(eye + (g * r11).permute(2, 3, 0, 1)).permute(2, 3, 0, 1)
        return r00 - g * torch.einsum("ijhn,jkhn,klhn->ilhn", r01, inv, r10)

    def forward(self, L: int) -> torch.Tensor:
        """Kernel at length L: (C_k, H, L), differentiable at every L. L <= l_kernel: the Cauchy route on the stored
        C~ (`cauchy_kernel`); beyond (or l_kernel = 0): the same route per block of b taps (`block_C`: b = L_k, or
        min(L, 4096) when l_kernel = 0), the blocks laid end to end and truncated to L. Nothing stored is modified."""
        L = check_length(L, self.H, self.C_k)
        if 0 < L <= int(self.l_kernel):
            return self.cauchy_kernel(L)
        Cb, b = self.block_C(L)  # (m, C_k, H, N') complex128
        return self._dplr_kernel(Cb, b, L, blocks=Cb.shape[0]).to(self.C.dtype)

    def vandermonde_terms(self):
        """The modal form (analysis and the bench; `forward` does not use it) as `S4DKernel.vandermonde_terms` gives it: residues (C_k, H, 2N') and log poles (H, 2N'),
        complex128, without gradient (K = Re vandermonde(residues, log_poles, L) at any L)."""
        r, lam = self.modal()
        return r, torch.log(lam)

    @staticmethod
    def _state_params(n_ssm: int, N: int, has_B: bool, rank: int) -> int:
        """Parameters of A, B and P: n_ssm * N * (2 + R) (DPLR, rank R)."""
        return n_ssm * N * (2 + rank)

    def count_settings(self) -> dict:
        """The `count_params` keywords that describe this kernel."""
        return {**super().count_settings(), "rank": self.rank}

    @property
    def config(self) -> dict:
        cfg = super().config
        cfg["rank"] = self.rank
        return cfg
