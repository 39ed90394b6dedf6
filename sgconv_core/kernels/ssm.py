"""Pieces shared by the S4D and S4 kernels: positive-parameter transforms, dt init, Vandermonde sums."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

TRANSFORMS = ("none", "exp", "relu", "sigmoid", "softplus")


def param_transform(p: torch.Tensor, transform: str) -> torch.Tensor:
    """Map a stored parameter to a positive value: none | exp | relu (+1e-4) | sigmoid | softplus."""
    if transform == "none":
        return p
    if transform == "exp":
        return torch.exp(p)
    if transform == "relu":
        return F.relu(p) + 1e-4
    if transform == "sigmoid":
        return torch.sigmoid(p)
    if transform == "softplus":
        return F.softplus(p)
    raise ValueError(f"unknown parameter transform {transform!r}; choose from {TRANSFORMS}")


def inv_transform(x: torch.Tensor, transform: str) -> torch.Tensor:
    """Inverse of `param_transform` for initialisation (x clamped to >= 1e-4 first, as the official code does)."""
    x = torch.clamp(x, min=1e-4)
    if transform in ("none", "relu"):
        return x
    if transform == "exp":
        return torch.log(x)
    if transform == "sigmoid":
        return torch.logit(x)
    if transform == "softplus":
        return torch.log(torch.expm1(x))
    raise ValueError(f"unknown parameter transform {transform!r}; choose from {TRANSFORMS}")


def init_inv_dt(H: int, dt_min: float, dt_max: float, transform: str, n: int = 1) -> torch.Tensor:
    """Stored timescale parameter (H, n) with dt log-uniform in [dt_min, dt_max]."""
    log_dt = torch.rand(H, n, dtype=torch.float64) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
    if transform == "exp":
        return log_dt
    return inv_transform(torch.exp(log_dt), transform)


def tile(x: torch.Tensor, H: int, dim: int) -> torch.Tensor:
    """Broadcast n_ssm copies to H features by tiling (feature h uses copy h mod n_ssm)."""
    n = x.shape[dim]
    if H % n:
        raise ValueError(f"n_ssm={n} must divide d_model={H}")
    reps = [1] * x.dim()
    reps[dim] = H // n
    return x.repeat(*reps)


def vandermonde(coef: torch.Tensor, log_pole: torch.Tensor, L: int, chunk_elems: int = 1 << 24) -> torch.Tensor:
    """K[c,h,l] = sum_n coef[c,h,n] * exp(log_pole[h,n] * l) for l < L, chunked over l to bound memory.

    coef: (C, H, M) complex; log_pole: (H, M) complex. Returns (C, H, L) complex.
    """
    H, M = log_pole.shape
    step = max(1, chunk_elems // max(1, H * M))
    out = []
    for start in range(0, L, step):
        l = torch.arange(start, min(L, start + step), device=log_pole.device, dtype=log_pole.real.dtype)
        out.append(torch.einsum("chn,hnl->chl", coef, torch.exp(log_pole.unsqueeze(-1) * l)))
    return torch.cat(out, dim=-1)
