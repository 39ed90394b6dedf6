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


def vandermonde(coef: torch.Tensor, log_pole: torch.Tensor, L: int, real: bool = False,
                chunk_elems: int = 1 << 25, f64_tables: bool = False) -> torch.Tensor:
    r"""K[c,h,l] = sum_n coef[c,h,n] * exp(log_pole[h,n] * l) for l < L, as a blocked Vandermonde product.

    coef: (C, H, M) complex; log_pole: (H, M) complex. Returns (C, H, L): complex, or its real part when
    ``real`` (half the arithmetic). float32 / complex64 inputs are evaluated in float32, float64 / complex128
    in float64; differentiable in both arguments. ``f64_tables``: with float32 inputs, form the two small tables
    of powers in float64 and round them once to float32 (everything after stays float32): an angle
    Im(log_pole) * l evaluated in float32 is off by ~l * 6e-8 radians, which matters where the sum cancels
    (the S4 generating functions: 1.8e-4 -> 7e-7 relative at L = 4k), at ~1.6x the cost of a plain S4D
    kernel's forward+backward; the S4D kernel itself gains nothing from it (2.1e-6 vs 1.9e-6 at 16k).

    With a block B = ceil(sqrt(L)) and J = ceil(L / B) blocks, lambda^(jB+i) = lambda^(jB) lambda^i, so
        K[c,h,jB+i] = sum_n (coef[c,h,n] lambda_hn^(jB)) lambda_hn^i,
    i.e. per h one (C*J, M) x (M, B) matrix product of two small tables of powers, (H, M, J) and (H, M, B),
    instead of H*M*L exponentials. Every power is exp(log_pole * l) evaluated directly (never by repeated
    multiplication), so the error stays at the level of one exp per factor (~1e-16 relative in float64).
    The complex product is done as real matrix products (real and imaginary parts side by side), which is
    what the CPU's BLAS is fastest at. A pole of 0 (log_pole = -inf) gives 0^0 = 1 and 0^l = 0.
    Memory: the output plus ~2M(C*J + J + 2B) table entries per feature h; beyond ``chunk_elems`` table
    entries in all, the features are done in chunks (the same arithmetic per h, so the same result).
    """
    if coef.dim() != 3 or log_pole.dim() != 2 or coef.shape[1:] != log_pole.shape:
        raise ValueError(f"expected coef (C, H, M) and log_pole (H, M), got {tuple(coef.shape)} "
                         f"and {tuple(log_pole.shape)}")
    L = int(L)
    if L < 1:
        raise ValueError(f"L must be >= 1, got {L}")
    C, H, M = coef.shape
    B = math.isqrt(L - 1) + 1  # ceil(sqrt(L))
    J = -(-L // B)
    per_h = 2 * M * (C * J + J + 2 * B)
    step = max(1, chunk_elems // max(per_h, 1))
    parts = [_blocked(coef[:, h:h + step], log_pole[h:h + step], L, B, J, real, f64_tables)
             for h in range(0, H, step)]
    return parts[0] if len(parts) == 1 else torch.cat(parts, 1)


def _powers(log_pole: torch.Tensor, l: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Real and imaginary parts of exp(log_pole * l): (H, M, len(l)) each, in l's dtype."""
    rd = l.dtype
    re = log_pole.real.to(rd).clamp_min(torch.finfo(rd).min)  # log 0 = -inf: -inf * 0 would be nan
    mag = torch.exp(re.unsqueeze(-1) * l)
    ang = log_pole.imag.to(rd).unsqueeze(-1) * l
    return mag * torch.cos(ang), mag * torch.sin(ang)


def _blocked(coef: torch.Tensor, log_pole: torch.Tensor, L: int, B: int, J: int, real: bool,
             f64_tables: bool = False) -> torch.Tensor:
    """`vandermonde` for one chunk of features: (C, H', L)."""
    C, H, M = coef.shape
    rd = torch.float64 if torch.float64 in (coef.real.dtype, log_pole.real.dtype) else torch.float32
    td = torch.float64 if f64_tables else rd  # the powers' dtype; rounded to rd before anything else
    coef = coef.to(rd.to_complex())
    l = torch.arange(max(B, J), device=log_pole.device, dtype=td)
    in_re, in_im = (t.to(rd) for t in _powers(log_pole.to(td.to_complex()), l[:B]))       # lambda^i,  (H, M, B)
    out_re, out_im = (t.to(rd) for t in _powers(log_pole.to(td.to_complex()), l[:J] * B))  # lambda^jB, (H, M, J)
    c_re, c_im = coef.real.unsqueeze(-1), coef.imag.unsqueeze(-1)
    a_re = c_re * out_re - c_im * out_im               # coef lambda^jB, (C, H, M, J)
    a_im = c_re * out_im + c_im * out_re
    # rows (c, j), columns [Re a, -Im a] over n: (H, C*J, 2M)
    A = torch.cat([a_re, -a_im], 2).permute(1, 0, 3, 2).reshape(H, C * J, 2 * M)
    if real:  # Re K = Re a Re p - Im a Im p
        P = torch.cat([in_re, in_im], 1)                                    # (H, 2M, B)
    else:     # Im K = Re a Im p + Im a Re p
        P = torch.cat([torch.cat([in_re, in_im], 1), torch.cat([in_im, -in_re], 1)], 2)  # (H, 2M, 2B)
    K = _DenseGrad.apply(torch.bmm(A, P))                                   # (H, C*J, B | 2B)
    if real:
        return K.reshape(H, C, J * B).transpose(0, 1)[..., :L].contiguous()
    K = K.reshape(H, C, J, 2, B).permute(1, 0, 2, 4, 3).reshape(C, H, J * B, 2)[:, :, :L]
    return torch.view_as_complex(K.contiguous())


class _DenseGrad(torch.autograd.Function):
    """Identity whose backward hands on a contiguous gradient: bmm's backward is ~10x slower on CPU when the
    incoming gradient has stride 0 (what ``K.sum().backward()`` sends through the reshapes), at no cost otherwise."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad.contiguous()

