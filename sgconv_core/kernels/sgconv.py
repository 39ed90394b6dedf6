r"""SGConv: the structured global convolution kernel (Li et al. 2022), exactly as the official code builds it.

S sub-kernels w_i of shape (C_k, H, d) are stretched by interpolation and damped by powers of the
per-feature multiplier m, then joined:

    cat:  k = concat_i [ Up(w_i, 2^(max(0, i-1) + init_scale)) * m^(S-1-i) ]      segments d, d, 2d, 4d, ...
    sum:  k = sum_i    pad_right(Up(w_i, 2^(i + init_scale)), L_raw) * m^(S-1-i)

with L_raw = d * 2^(S-1+init_scale) and Up = ``F.interpolate(..., mode='linear'|'nearest')`` over the
last axis (align_corners=False). In 'learnable' mode k[t] *= (t+1)^(-decay_h) after joining.
The kernel at length L is k cropped or zero-padded to L and divided by ``kernel_norm``: the L2 norm of
the *initial* raw kernel over L_raw, frozen at the first forward (a stored buffer).

Parameter count: S * C_k * H * d  (+ H with a learnable decay), with S = 1 + ceil(log2(l_max / d)) - init_scale.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import Kernel, check_length


def n_scales_for(l_max: int, kernel_dim: int, init_scale: int = 0) -> int:
    """Number of scales S = 1 + ceil(log2(l_max / kernel_dim)) - init_scale (the official default).

    Exact integer arithmetic: ceil(log2(L/d)) is the smallest integer c with d * 2^c >= L.
    """
    L, d = int(l_max), int(kernel_dim)
    if L < 1 or d < 1:
        raise ValueError(f"L and kernel_dim must be positive, got L={L}, d={d}")
    c = 0
    if L <= d:  # c <= 0: the smallest c with d * 2^c >= L, i.e. the most halvings of d that stay >= L
        while L * 2 ** (1 - c) <= d:
            c -= 1
    else:
        while d * 2 ** c < L:
            c += 1
    return 1 + c - int(init_scale)


def parse_mode(mode: str) -> dict:
    """Split an official mode string such as 'cat_randn_learnable_fixed' into its flags."""
    if ("cat" in mode) == ("sum" in mode):
        raise ValueError(f"SGConv mode {mode!r} must contain exactly one of 'cat' or 'sum'")
    return {
        "combine": "cat" if "cat" in mode else "sum",
        "init": "cos" if "cos" in mode else "randn",
        "interp": "nearest" if "nearest" in mode else "linear",
        "learnable": "learnable" in mode,
        "fixed": "fixed" in mode,
    }


class SGConvKernel(Kernel):
    """SGConv kernel (C_k, H, L) from S multi-scale sub-kernels ``kernel_list.i`` of shape (C_k, H, d).

    Args (the official GConv names): d_model=H, l_max (sets S only), channels, bidirectional,
    kernel_dim=d, n_scales (None: from l_max), init_scale, mode (flags 'cat'|'sum', 'randn'|'cos',
    'nearest', 'learnable', 'fixed'), decay_min / decay_max (multiplier m, or the range of the learnable
    decay).
    """

    kind = "sgconv"

    def __init__(
        self,
        d_model: int,
        l_max: int,
        channels: int = 1,
        bidirectional: bool = False,
        kernel_dim: int = 64,
        n_scales: int | None = None,
        init_scale: int = 0,
        mode: str = "cat_randn",
        decay_min: float = 2.0,
        decay_max: float = 2.0,
        init_norm: bool = True,
    ):
        super().__init__(d_model, channels, bidirectional, l_max)
        if l_max is None or l_max < 1:
            raise ValueError(f"SGConv needs l_max >= 1 (it sets the number of scales), got {l_max}")
        if kernel_dim < 1:
            raise ValueError(f"kernel_dim must be at least 1, got {kernel_dim}")
        if decay_min < 0 or decay_max < 0:
            raise ValueError(f"decay must be non-negative, got decay_min={decay_min}, decay_max={decay_max}")
        self.flags = parse_mode(mode)
        self.mode = mode
        self.kernel_dim = int(kernel_dim)
        self.init_scale = int(init_scale)
        self.n_scales = int(n_scales) if n_scales is not None else n_scales_for(l_max, kernel_dim, init_scale)
        if self.n_scales < 1:
            raise ValueError(f"SGConv with l_max={l_max}, kernel_dim={kernel_dim} has {self.n_scales} scales; need >= 1")
        self.decay_min, self.decay_max = float(decay_min), float(decay_max)
        H, C_k, d = self.H, self.C_k, self.kernel_dim

        self.kernel_list = nn.ParameterList()
        for _ in range(self.n_scales):
            if self.flags["init"] == "randn":
                w = torch.randn(C_k, H, d)
            else:  # feature h gets cos(linspace(0, 2*pi*h, d)), rows permuted per scale
                rows = [torch.cos(torch.linspace(0, 2 * h * math.pi, d)).expand(C_k, 1, d) for h in range(H)]
                w = torch.cat(rows, dim=1)[:, torch.randperm(H), :]
            self.kernel_list.append(nn.Parameter(w))
        if self.flags["learnable"]:
            self.decay = nn.Parameter(torch.rand(H) * (decay_max - decay_min) + decay_min,
                                      requires_grad=not self.flags["fixed"])
            self.register_buffer("multiplier", torch.tensor(1.0))
        else:
            self.decay = None
            self.register_buffer("multiplier", torch.linspace(decay_min, decay_max, H).view(1, H, 1))
        self.register_buffer("kernel_norm", torch.ones(C_k, H, 1))
        self.register_buffer("kernel_norm_initialized", torch.tensor(False))
        if init_norm:
            self.freeze_norm()

    # -- construction -------------------------------------------------------------------------
    @property
    def raw_length(self) -> int:
        """L_raw = d * 2^(S-1+init_scale): the length of the un-cropped kernel (taps)."""
        return self.kernel_dim * 2 ** (self.n_scales - 1 + self.init_scale)

    def _scale_factor(self, i: int) -> int:
        if self.flags["combine"] == "cat":
            return 2 ** (max(0, i - 1) + self.init_scale)
        return 2 ** (i + self.init_scale)

    def raw_kernel(self, L: int | None = None, rows: slice = slice(None)) -> torch.Tensor:
        """Un-normalised kernel over lags 0..min(L, L_raw)-1 of the features ``rows``: (C_k, h, min(L, L_raw)).

        Every feature's kernel depends on that feature's parameters only, so rows i:j are exactly rows i:j of
        the whole kernel (the same operations on fewer rows).
        """
        L_raw = self.raw_length
        n = L_raw if L is None else min(int(L), L_raw)
        S, mode = self.n_scales, self.flags["interp"]
        mult = self.multiplier if self.multiplier.dim() == 0 else self.multiplier[:, rows]
        weights = [w[:, rows] for w in self.kernel_list]
        if self.flags["combine"] == "cat":
            pieces, offset = [], 0
            for i in range(S):
                if offset >= n:
                    break
                up = F.interpolate(weights[i], scale_factor=self._scale_factor(i), mode=mode)
                up = up * mult ** (S - 1 - i)
                pieces.append(up[..., : n - offset])
                offset += up.shape[-1]
            k = torch.cat(pieces, dim=-1)
        else:
            ref = weights[0]
            k = torch.zeros(ref.shape[0], ref.shape[1], n, dtype=ref.dtype, device=ref.device)
            for i in range(S):
                up = F.interpolate(weights[i], scale_factor=self._scale_factor(i), mode=mode)
                up = (up * mult ** (S - 1 - i))[..., :n]
                k = k + F.pad(up, (0, n - up.shape[-1]))
        if self.decay is not None:  # (t+1)^(-decay_h)
            t = torch.arange(n, device=k.device, dtype=k.dtype)
            k = k * torch.exp(-self.decay[rows].view(1, -1, 1).to(k.dtype) * torch.log(t + 1).view(1, 1, -1))
        return k

    @torch.no_grad()
    def freeze_norm(self) -> None:
        """Fix ``kernel_norm`` = ||raw kernel||_2 over L_raw per (c, h), as the official first forward does."""
        self.kernel_norm = self.raw_kernel().norm(dim=-1, keepdim=True).detach().clone()
        self.kernel_norm_initialized = torch.tensor(True, device=self.kernel_norm.device)

    def current_norm(self, rows: slice = slice(None)) -> torch.Tensor:
        """The norm the official forward divides by: the frozen buffer, or (not yet frozen) the current one.
        (C_k, h, 1) for the features ``rows``."""
        if bool(self.kernel_norm_initialized):
            return self.kernel_norm[:, rows]
        return self.raw_kernel(rows=rows).norm(dim=-1, keepdim=True).detach()

    def forward(self, L: int) -> torch.Tensor:
        """Kernel at length L: (C_k, H, L), the raw kernel cropped or zero-padded, divided by the norm."""
        L = check_length(L, self.H, self.C_k)
        return self._rows(L, slice(None))

    def rows(self, L: int, i: int, j: int) -> torch.Tensor:
        """Features i:j of the kernel at length L: (C_k, j - i, L), equal to ``self(L)[:, i:j]`` value for value,
        without building the other features (a long layer builds its kernel a block of features at a time)."""
        if not 0 <= i < j <= self.H:
            raise ValueError(f"feature rows {i}:{j} are not within 0:{self.H}")
        L = check_length(L, j - i, self.C_k)
        return self._rows(L, slice(i, j))

    def _rows(self, L: int, rows: slice) -> torch.Tensor:
        k = self.raw_kernel(L, rows)
        if k.shape[-1] < L:
            k = F.pad(k, (0, L - k.shape[-1]))
        return k / self.current_norm(rows)

    @staticmethod
    def count_params(L: int, H: int, C_k: int = 1, *, kernel_dim: int = 64, init_scale: int = 0,
                     learnable_decay: bool = False) -> int:
        """Kernel parameters at length L: S * C_k * H * d (+ H with a learnable decay), S = `n_scales_for`."""
        S = n_scales_for(L, kernel_dim, init_scale)
        if S < 1:
            raise ValueError(f"SGConv with L={L}, kernel_dim={kernel_dim}, init_scale={init_scale} has {S} scales; "
                             "need >= 1")
        return S * int(C_k) * int(H) * int(kernel_dim) + (int(H) if learnable_decay else 0)

    def count_settings(self) -> dict:
        """The `count_params` keywords that describe this kernel."""
        return {"kernel_dim": self.kernel_dim, "init_scale": self.init_scale, "learnable_decay": self.decay is not None}

    @property
    def config(self) -> dict:
        return {
            "d_model": self.H, "l_max": self.l_max, "channels": self.channels,
            "bidirectional": self.bidirectional, "kernel_dim": self.kernel_dim, "n_scales": self.n_scales,
            "init_scale": self.init_scale, "mode": self.mode,
            "decay_min": self.decay_min, "decay_max": self.decay_max,
        }
