r"""Long convolution by FFT, causal or bidirectional, with the D skip connection.

Causal:         y[b,c,h,t] = sum_{s<=t} k[c,h,t-s] u[b,h,s] + D[c,h] u[b,h,t]
Bidirectional:  k = [k_fwd; k_bwd] (2C channels); the backward half acts at negative lags -(j+1):
                y[b,c,h,t] += sum_j k_bwd[c,h,j] u[b,h,t+j+1]
Computed as irfft(rfft(u, n) * rfft(k, n), n)[..., :L] with n = Lk + L, which is exact (no wrap-around).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def two_sided(k: torch.Tensor, L: int) -> torch.Tensor:
    """Combine a bidirectional kernel (2C, H, Lk) into the two-sided (C, H, Lk + L) circular kernel."""
    C = k.shape[0] // 2
    k0, k1 = k[:C], k[C:]
    return F.pad(k0, (0, L)) + F.pad(k1.flip(-1), (L, 0))


def fft_conv(u: torch.Tensor, k: torch.Tensor, D: torch.Tensor | None = None, bidirectional: bool = False) -> torch.Tensor:
    """Convolve u (B, H, L) with kernel k (C_k, H, Lk): returns y (B, C, H, L).

    C = C_k (causal) or C_k/2 (bidirectional); D (C, H) adds the skip term D*u.
    """
    if u.dim() != 3 or k.dim() != 3 or u.shape[1] != k.shape[1]:
        raise ValueError(f"fft_conv expects u (B, H, L) and k (C, H, Lk) with the same H; got {tuple(u.shape)} and {tuple(k.shape)}")
    L, Lk = u.shape[-1], k.shape[-1]
    if bidirectional:
        k = two_sided(k, L)
        n = Lk + L
    else:
        n = Lk + L
    k_f = torch.fft.rfft(k, n=n)
    u_f = torch.fft.rfft(u, n=n)
    y = torch.fft.irfft(u_f.unsqueeze(1) * k_f.unsqueeze(0), n=n)[..., :L]
    if D is not None:
        y = y + u.unsqueeze(1) * D.unsqueeze(0).unsqueeze(-1)
    return y
