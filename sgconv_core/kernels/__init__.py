"""Kernel families: each maps its parameters to a (C_k, H, L) convolution kernel at any length L."""
from .base import Kernel, check_length
from .free import FreeKernel
from .s4 import S4Kernel
from .s4d import S4DKernel
from .sgconv import SGConvKernel

#: kind -> class, for rebuilding a kernel from its saved config.
KERNELS = {"sgconv": SGConvKernel, "s4": S4Kernel, "s4d": S4DKernel, "conv": FreeKernel}


def build_kernel(kind: str, config: dict) -> Kernel:
    """Build a kernel of the given kind ('sgconv' | 's4' | 's4d' | 'conv') from its config dict."""
    if kind not in KERNELS:
        raise ValueError(f"unknown kernel kind {kind!r}; choose from {sorted(KERNELS)}")
    return KERNELS[kind](**config)


__all__ = ["Kernel", "check_length", "FreeKernel", "S4Kernel", "S4DKernel", "SGConvKernel", "KERNELS", "build_kernel"]
