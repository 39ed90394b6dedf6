"""The interface every kernel family implements.

A kernel module maps its parameters to a convolution kernel: ``kernel(L) -> (C_k, H, L)``, with
C_k = channels, doubled when bidirectional (first half forward-direction kernels, second half
backward-direction kernels, each over lags 0..L-1).
"""
from __future__ import annotations

import math
import operator

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError
from ..lengths import MAX_KERNEL_LENGTH, MAX_KERNEL_VALUES


def check_length(L: int, H: int, C_k: int, *, max_elements: int = MAX_KERNEL_VALUES) -> int:
    """Validate a requested kernel length L (taps) for a (C_k, H, L) kernel; returns int(L).

    L must be an integer: a Python or numpy int (or a 0-d integer tensor), not a bool, a float (2.5 used to give
    2 taps; 64.0 is refused too, with the int to pass), a string ('64' used to be converted), inf or NaN.
    The caps (`MAX_KERNEL_LENGTH` taps, ``max_elements`` values) are the length policy's (`sgconv_core.lengths`).

    Raises CheckpointError (a ValueError) for a non-integer, non-positive or over-budget length, naming it.
    """
    if isinstance(L, (bool, np.bool_)) or (isinstance(L, torch.Tensor) and L.dtype == torch.bool):
        raise CheckpointError(f"kernel length must be a positive integer, got the bool {L!r}")
    if isinstance(L, (float, np.floating)):
        if not math.isfinite(L):
            raise CheckpointError(f"kernel length must be a positive integer, got {L!r}")
        if L != int(L):
            raise CheckpointError(f"kernel length must be a whole number of taps, got {L!r}")
        raise CheckpointError(f"kernel length must be an integer, got the float {L!r} (pass {int(L)})")
    try:
        L = operator.index(L)
    except TypeError:
        raise CheckpointError(f"kernel length must be a positive integer, got {L!r:.60}") from None
    if L < 1:
        raise CheckpointError(f"kernel length must be at least 1, got {L}")
    if L > MAX_KERNEL_LENGTH:
        raise CheckpointError(f"kernel length {L:,} is beyond the supported maximum {MAX_KERNEL_LENGTH:,}")
    if L * H * C_k > max_elements:
        raise CheckpointError(
            f"a kernel of shape ({C_k}, {H}, {L}) has {L * H * C_k:,} values, over the memory budget "
            f"of {max_elements:,}; ask for fewer taps"
        )
    return L


class Kernel(nn.Module):
    """Base class: a module whose forward takes a length and returns a kernel.

    Attributes: ``name`` (the layer it belongs to, e.g. "layers.0"), ``kind`` (family),
    ``H`` (features), ``channels`` (C), ``bidirectional``, ``l_max`` (training length or None).
    """

    kind: str = "kernel"

    def __init__(self, H: int, channels: int = 1, bidirectional: bool = False, l_max: int | None = None):
        super().__init__()
        if H < 1 or channels < 1:
            raise ValueError(f"d_model and channels must be positive, got H={H}, channels={channels}")
        self.H = int(H)
        self.channels = int(channels)
        self.bidirectional = bool(bidirectional)
        self.l_max = None if l_max is None else int(l_max)
        self.name = ""

    @property
    def C_k(self) -> int:
        """Number of kernel channels: channels, doubled when bidirectional."""
        return self.channels * (2 if self.bidirectional else 1)

    @property
    def n_params(self) -> int:
        """Number of kernel parameters (trainable tensors; buffers such as norms excluded)."""
        return sum(p.numel() for p in self.parameters())

    @property
    def config(self) -> dict:
        """Constructor settings that rebuild this kernel (JSON-serialisable)."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config.items())

    def forward(self, L: int) -> torch.Tensor:  # pragma: no cover - interface
        """Kernel at length L: (C_k, H, L)."""
        raise NotImplementedError
