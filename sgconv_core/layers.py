"""Layers of the sequence model: the convolution layer around a kernel, norms, and the residual block.

Tensor layout inside the backbone is (B, H, L) ("transposed"), as in the official code.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .fftconv import fft_conv
from .kernels import Kernel


class ScalarLN(nn.Module):
    """LayerNorm over features with one scalar gain ``s`` and shift ``m`` (state-spaces' TransposedLN). x: (B, H, L)."""

    def __init__(self):
        super().__init__()
        self.m = nn.Parameter(torch.zeros(1))
        self.s = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s, m = torch.std_mean(x, dim=1, unbiased=False, keepdim=True)
        return (self.s / s) * (x - m + self.m)


class FeatureNorm(nn.Module):
    """Normalisation over the feature axis of (B, H, L): 'layer' (LayerNorm), 'scalar', 'batch' or 'none'."""

    def __init__(self, H: int, kind: str = "layer"):
        super().__init__()
        self.kind = kind
        if kind == "layer":
            self.norm = nn.LayerNorm(H)
        elif kind == "scalar":
            self.norm = ScalarLN()
        elif kind == "batch":
            self.norm = nn.BatchNorm1d(H)
        elif kind == "none":
            self.norm = nn.Identity()
        else:
            raise ValueError(f"unknown norm {kind!r}; choose from 'layer', 'scalar', 'batch', 'none'")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "layer":
            return self.norm(x.transpose(1, 2)).transpose(1, 2)
        return self.norm(x)


class ConvLayer(nn.Module):
    """kernel -> FFT conv + D skip -> GELU -> dropout -> output linear (GLU doubles it, then halves).

    x (B, H, L) -> (B, H, L). ``clip_to_l_max``: use at most l_max taps for longer inputs (v4 FFTConv).
    """

    def __init__(self, kernel: Kernel, activation: str = "gelu", output: str = "glu", dropout: float = 0.0,
                 clip_to_l_max: bool = False):
        super().__init__()
        self.kernel = kernel
        H, C = kernel.H, kernel.channels
        self.D = nn.Parameter(torch.randn(C, H))
        self.activation = {"gelu": nn.GELU(), "relu": nn.ReLU(), "id": nn.Identity(), "silu": nn.SiLU()}[activation]
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.output = output
        if output == "glu":
            self.output_linear = nn.Linear(C * H, 2 * H)
        elif output == "linear":
            self.output_linear = nn.Linear(C * H, H)
        elif output == "none":
            if C != 1:
                raise ValueError("output='none' needs channels=1")
            self.output_linear = None
        else:
            raise ValueError(f"unknown output {output!r}; choose from 'glu', 'linear', 'none'")
        self.clip_to_l_max = clip_to_l_max

    def kernel_length(self, L: int) -> int:
        """Taps used for an input of length L."""
        lm = self.kernel.l_max
        return min(L, lm) if (self.clip_to_l_max and lm) else L

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, L = x.shape
        k = self.kernel(self.kernel_length(L)).to(x.dtype)
        y = fft_conv(x, k, self.D.to(x.dtype), self.kernel.bidirectional)  # (B, C, H, L)
        y = self.dropout(self.activation(y.reshape(B, -1, L)))
        if self.output_linear is None:
            return y
        y = self.output_linear(y.transpose(1, 2))
        if self.output == "glu":
            y = F.glu(y, dim=-1)
        return y.transpose(1, 2)


class ResidualBlock(nn.Module):
    """x + dropout(layer(norm(x))) (prenorm) or norm(x + dropout(layer(x))) (postnorm). x: (B, H, L)."""

    def __init__(self, layer: ConvLayer, norm: str = "layer", prenorm: bool = True, dropout: float = 0.0):
        super().__init__()
        self.layer = layer
        self.norm = FeatureNorm(layer.kernel.H, norm)
        self.prenorm = prenorm
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.prenorm:
            return x + self.dropout(self.layer(self.norm(x)))
        return self.norm(x + self.dropout(self.layer(x)))
