"""A free kernel: one weight per tap, the no-structure baseline (state-spaces' ConvKernel).

Stored tensor ``kernel`` (C_k, H, l_max). At length L the kernel is cropped or zero-padded.
Parameter count: C_k * H * l_max, linear in the length.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import Kernel, check_length


class FreeKernel(Kernel):
    """Free (C_k, H, l_max) kernel, initialised N(0, 1/l_max) scaled so early taps dominate nothing."""

    kind = "conv"

    def __init__(self, d_model: int, l_max: int, channels: int = 1, bidirectional: bool = False):
        super().__init__(d_model, channels, bidirectional, l_max)
        if not l_max or l_max < 1:
            raise ValueError(f"a free kernel needs l_max >= 1, got {l_max}")
        self.kernel = nn.Parameter(torch.randn(self.C_k, self.H, self.l_max) / math.sqrt(self.l_max))

    def forward(self, L: int) -> torch.Tensor:
        """Kernel at length L: (C_k, H, L)."""
        L = check_length(L, self.H, self.C_k)
        k = self.kernel[..., :L]
        return F.pad(k, (0, L - k.shape[-1])) if k.shape[-1] < L else k

    @staticmethod
    def count_params(L: int, H: int, C_k: int = 1) -> int:
        """Kernel parameters at length L: C_k * H * L (one weight per tap)."""
        return int(C_k) * int(H) * int(L)

    def count_settings(self) -> dict:
        """The `count_params` keywords that describe this kernel (none)."""
        return {}

    @property
    def config(self) -> dict:
        return {"d_model": self.H, "l_max": self.l_max, "channels": self.channels, "bidirectional": self.bidirectional}
