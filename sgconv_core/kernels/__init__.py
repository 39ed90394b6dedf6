"""Kernel families: each maps its parameters to a (C_k, H, L) convolution kernel at any length L.

Which families exist, and what each is called, lives in `sgconv_core.families`.
"""
from .base import Kernel, check_length
from .free import FreeKernel
from .s4 import S4Kernel
from .s4d import S4DKernel
from .sgconv import SGConvKernel


def build_kernel(kind: str, config: dict) -> Kernel:
    """Build a kernel of the given kind ('sgconv' | 's4' | 's4d' | 'conv') from its config dict."""
    from ..families import family

    return family(kind).build(config)


__all__ = ["Kernel", "check_length", "FreeKernel", "S4Kernel", "S4DKernel", "SGConvKernel", "build_kernel"]
