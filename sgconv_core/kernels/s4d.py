r"""S4D: the diagonal state-space kernel (Gu et al. 2022), in the state-spaces/s4 v4 parameterisation.

Stored tensors (v4 names; v3 and the minimal s4d.py layouts are converted to these on load):
    inv_dt (H, 1) or (H, N')      dt = dt_transform(inv_dt)
    A_real (n_ssm, N')            Re A = -real_transform(A_real)
    A_imag (n_ssm, N')            Im A = -imag_transform(A_imag)           (absent for S4D-Real)
    B      (1, n_ssm, N', 2)      complex via view_as_real; optional (None = all ones)
    C      (C_k, H, N', 2)        complex; real (C_k, H, N) for S4D-Real
Feature h uses SSM copy h mod n_ssm. With C' = B*C and dtA = dt*A:
    zoh:       K[c,h,l] = 2 Re sum_n C'_n (exp(dtA_n) - 1)/A_n * exp(dtA_n)^l
    bilinear:  K[c,h,l] = 2 Re sum_n C'_n dt/(1 - dtA_n/2) * lambda_n^l,   lambda = (1 + dtA/2)/(1 - dtA/2)
The kernel at any L is an exact prefix extension.
Decay arguments (the ablation's S4/S4D decay knob, recorded in ``config`` so a checkpoint or a card's command
rebuilds the run): ``real_scale`` r multiplies Re A at initialisation (Re A <- r Re A, before anything else
uses A; S4D-Lin: Re A = -0.5 r), so the envelope exp(Re A dt l) decays r times faster (r = 0 is clamped to the
transforms' floor, Re A ~ -1e-4: almost no decay); ``freeze_decay`` makes A_real and inv_dt non-trainable
(requires_grad False: the decay rates stay as initialised). Neither changes the state-dict keys.
Parameter count: H + C_k*H*N + 2*n_ssm*N
(H*|dt| + C + A_real, A_imag + B; N = 2N').
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .base import Kernel, check_length
from .hippo import diag_init
from .ssm import init_inv_dt, inv_transform, param_transform, tile, vandermonde

DISCS = ("zoh", "bilinear", "dss")


class S4DKernel(Kernel):
    """Diagonal SSM kernel (C_k, H, L).

    Args: d_model=H, d_state=N (state size; N' = N/2 complex modes, or N real modes if is_real),
    channels, bidirectional, l_max, n_ssm (None: H), init ('lin' | 'inv' | 'legs' | 'real'),
    dt_min, dt_max, dt_tie, dt_transform, real_transform, imag_transform, disc ('zoh' | 'bilinear' |
    'dss'), bandlimit, has_B (False: the minimal S4D layout without a B tensor), real_scale (factor on Re A at
    initialisation), freeze_decay (A_real and inv_dt not trained); see the module doc.
    """

    kind = "s4d"

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        channels: int = 1,
        bidirectional: bool = False,
        l_max: int | None = None,
        n_ssm: int | None = None,
        init: str = "lin",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dt_tie: bool = True,
        dt_transform: str = "exp",
        real_transform: str = "exp",
        imag_transform: str = "none",
        disc: str = "zoh",
        bandlimit: float | None = None,
        has_B: bool = True,
        real_scale: float = 1.0,
        freeze_decay: bool = False,
    ):
        super().__init__(d_model, channels, bidirectional, l_max)
        if disc not in DISCS:
            raise ValueError(f"unknown discretisation {disc!r}; choose from {DISCS}")
        if d_state < 2 or d_state % 2:
            raise ValueError(f"d_state must be an even number >= 2, got {d_state}")
        self.N = int(d_state)
        self.is_real = init == "real"
        self.n_ssm = int(n_ssm) if n_ssm is not None else self.H
        if self.H % self.n_ssm:
            raise ValueError(f"n_ssm={self.n_ssm} must divide d_model={self.H}")
        self.init, self.disc, self.bandlimit = init, disc, bandlimit
        self.dt_min, self.dt_max, self.dt_tie = dt_min, dt_max, dt_tie
        self.dt_transform, self.real_transform, self.imag_transform = dt_transform, real_transform, imag_transform
        self.has_B = has_B
        if isinstance(real_scale, bool) or not isinstance(real_scale, (int, float)) or not math.isfinite(real_scale) \
                or real_scale < 0:
            raise ValueError(f"real_scale must be a finite number >= 0, got {real_scale!r}")
        if not isinstance(freeze_decay, bool):
            raise ValueError(f"freeze_decay must be true or false, got {freeze_decay!r}")
        self.real_scale, self.freeze_decay = float(real_scale), freeze_decay
        self._init_params()
        if self.freeze_decay:
            self.A_real.requires_grad_(False)
            self.inv_dt.requires_grad_(False)

    @torch.no_grad()
    def _scale_real(self) -> None:
        """Re A <- real_scale * Re A on the freshly initialised A_real (through its transform, in its dtype)."""
        if self.real_scale != 1.0:
            re = param_transform(self.A_real.detach(), self.real_transform) * self.real_scale
            self.A_real.copy_(inv_transform(re, self.real_transform).to(self.A_real.dtype))

    def _init_params(self) -> None:
        A, B = diag_init(self.init, self.N)
        M = A.shape[-1]
        A = torch.as_tensor(A).expand(self.n_ssm, M)
        B = torch.as_tensor(B).expand(self.n_ssm, M)
        self.inv_dt = nn.Parameter(init_inv_dt(self.H, self.dt_min, self.dt_max, self.dt_transform,
                                               1 if self.dt_tie else M).float())
        self.A_real = nn.Parameter(inv_transform(-A.real, self.real_transform).float().contiguous())
        self._scale_real()
        if self.is_real:
            self.A_imag = None
            self.B = nn.Parameter(B.real.float().unsqueeze(0).contiguous()) if self.has_B else None
            self.C = nn.Parameter(torch.randn(self.C_k, self.H, M))
        else:
            self.A_imag = nn.Parameter(inv_transform(-A.imag, self.imag_transform).float().contiguous())
            self.B = nn.Parameter(torch.view_as_real(B.to(torch.complex64)).unsqueeze(0).contiguous()) if self.has_B else None
            self.C = nn.Parameter(torch.view_as_real(torch.randn(self.C_k, self.H, M, dtype=torch.complex64)))

    # -- parameters -> (dt, A, B, C) -------------------------------------------------------------
    def ssm_params(self):
        """dt (H, 1|M), A (H, M), B (1, H, M) or None, C (C_k, H, M); complex unless is_real."""
        dt = param_transform(self.inv_dt, self.dt_transform)
        A = -param_transform(self.A_real, self.real_transform)
        if not self.is_real:
            A = A - 1j * param_transform(self.A_imag, self.imag_transform)
            C = torch.view_as_complex(self.C.contiguous())
            B = None if self.B is None else torch.view_as_complex(self.B.contiguous())
        else:
            C, B = self.C, self.B
        A = tile(A, self.H, 0)
        if B is not None:
            B = tile(B, self.H, 1)
        if self.bandlimit is not None:  # zero modes above the band limit (S4D-Real: every mode is at frequency 0)
            freqs = dt * (A.imag.abs() if A.is_complex() else torch.zeros_like(A)) / (2 * math.pi)
            C = C * (freqs < self.bandlimit * 0.5).to(C.dtype)
        return dt, A, B, C

    def modal(self):
        """Residues r (C_k, H, M') and poles lambda (H, M') with K[c,h,l] = Re sum_m r lambda^l.

        Conjugate pairs are listed explicitly (M' = 2N' = N), so the sum is real; for S4D-Real M' = N.
        """
        if self.disc == "dss":
            raise ValueError("the 'dss' discretisation has a length-dependent kernel and no fixed modal form")
        dt, A, B, C = self.ssm_params()
        Cp = C if B is None else B * C
        dtA = dt * A
        if self.disc == "zoh":
            lam, coef = torch.exp(dtA), Cp * (torch.exp(dtA) - 1.0) / A
        else:
            lam, coef = (1.0 + dtA / 2) / (1.0 - dtA / 2), Cp * dt / (1.0 - dtA / 2)
        if self.is_real:
            return 2 * coef, lam
        return torch.cat([coef, coef.conj()], -1), torch.cat([lam, lam.conj()], -1)

    def forward(self, L: int) -> torch.Tensor:
        """Kernel at length L: (C_k, H, L)."""
        L = check_length(L, self.H, self.C_k)
        if self.disc == "dss":
            return self._dss(*self._discretised(), L)
        return vandermonde(*self.vandermonde_terms(), L, real=True)

    def vandermonde_terms(self):
        """coef (C_k, H, N') and log_pole (H, N'), complex, with K = Re vandermonde(coef, log_pole, L)
        (`ssm.vandermonde`: K[c,h,l] = Re sum_n coef[c,h,n] exp(log_pole[h,n] l)); the factor 2 of the
        conjugate pairs is in coef. zoh and bilinear only ('dss' depends on L)."""
        dtA, A, Cp, dt = self._discretised()
        if self.disc == "zoh":
            return 2 * Cp * (torch.exp(dtA) - 1.0) / A, dtA
        if self.disc == "bilinear":
            return 2 * Cp * dt / (1.0 - dtA / 2), torch.log((1.0 + dtA / 2) / (1.0 - dtA / 2))
        raise ValueError("the 'dss' discretisation has a length-dependent kernel and no fixed Vandermonde form")

    def _discretised(self):
        """dt A (H, M), A (H, M), C' = B C (C_k, H, M), dt (H, 1|M); complex (S4D-Real too: complex arithmetic
        keeps negative bilinear poles, dtA < -2, finite)."""
        dt, A, B, C = self.ssm_params()
        Cp = C if B is None else B * C
        dtA = dt * A
        if self.is_real:
            ctype = torch.complex128 if dtA.dtype == torch.float64 else torch.complex64
            dtA, A, Cp, dt = dtA.to(ctype), A.to(ctype), Cp.to(ctype), dt.to(ctype)
        return dtA, A, Cp, dt

    def _dss(self, dtA, A, Cp, dt, L):
        """DSS discretisation (Gupta et al.), as state-spaces v4 writes it (no factor 2, real part)."""
        pos = A.real > 0
        P = dtA.unsqueeze(-1) * torch.arange(L, device=dtA.device, dtype=dtA.real.dtype)
        if pos.any():
            P = P - (dtA * (pos * (L - 1))).unsqueeze(-1)
        dtA_neg = dtA * (1 - 2 * pos.to(dtA.real.dtype))
        num, den = torch.exp(dtA_neg) - 1, torch.exp(dtA_neg * L) - 1
        x = den * A
        r = x.conj() / (x * x.conj() + 1e-7)
        return torch.einsum("chn,hnl->chl", Cp * num * r, torch.exp(P)).real

    @classmethod
    def count_params(cls, L: int, H: int, C_k: int = 1, *, d_state: int = 64, n_ssm: int | None = None,
                     dt_tie: bool = True, has_B: bool = True, rank: int = 1) -> int:
        """Kernel parameters (independent of L): dt + C_k*H*N + 2*n_ssm*N (S4D; - n_ssm*N without B).

        N = d_state (N/2 complex modes); dt is H values when tied, H*N/2 untied; n_ssm None means H.
        ``rank`` is ignored here (the DPLR subclass uses it).
        """
        H, C_k, N = int(H), int(C_k), int(d_state)
        n = H if n_ssm is None else int(n_ssm)
        if n < 1 or H % n:
            raise ValueError(f"n_ssm={n} must be a positive divisor of H={H}")
        dt = H if dt_tie else H * (N // 2)
        return dt + C_k * H * N + cls._state_params(n, N, has_B, int(rank))

    @staticmethod
    def _state_params(n_ssm: int, N: int, has_B: bool, rank: int) -> int:
        """Parameters of A and B: A (N/2 complex = N reals) and B (N reals) per SSM copy."""
        return (2 if has_B else 1) * n_ssm * N

    def count_settings(self) -> dict:
        """The `count_params` keywords that describe this kernel."""
        return {"d_state": self.N, "n_ssm": self.n_ssm, "dt_tie": self.dt_tie, "has_B": self.has_B}

    @property
    def config(self) -> dict:
        return {
            "d_model": self.H, "d_state": self.N, "channels": self.channels, "bidirectional": self.bidirectional,
            "l_max": self.l_max, "n_ssm": self.n_ssm, "init": self.init, "dt_min": self.dt_min, "dt_max": self.dt_max,
            "dt_tie": self.dt_tie, "dt_transform": self.dt_transform, "real_transform": self.real_transform,
            "imag_transform": self.imag_transform, "disc": self.disc, "bandlimit": self.bandlimit, "has_B": self.has_B,
            "real_scale": self.real_scale, "freeze_decay": self.freeze_decay,
        }
