"""sgconv_core: SGConv, S4 and S4D kernels, FFT convolution, a residual sequence model, tasks, training,
and checkpoints (ours, and those the official SGConv and state-spaces/s4 code bases write).

    ck = sgconv_core.load(path, **settings)   # -> Checkpoint
    ck.kernels[i](L)                          # -> (C_k, H, L) kernel tensor

The names below are imported on first use, so that the torch-free modules (`sgconv_core.cards`,
`sgconv_core.settings`, `sgconv_core.errors`, `sgconv_core.lengths`) can be read without importing torch.
"""
from __future__ import annotations

import importlib

from .errors import CheckpointError

#: public name -> the submodule that defines it
_LAZY = {
    "Checkpoint": ".checkpoints", "load": ".checkpoints", "save": ".checkpoints", "fft_conv": ".fftconv",
    "Kernel": ".kernels", "SGConvKernel": ".kernels", "S4Kernel": ".kernels", "S4DKernel": ".kernels",
    "FreeKernel": ".kernels", "build_kernel": ".kernels", "ModelConfig": ".model", "SequenceModel": ".model",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sgconv_core' has no attribute {name!r}")


__all__ = ["CheckpointError", *_LAZY]
