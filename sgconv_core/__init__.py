"""sgconv_core: SGConv, S4 and S4D kernels, FFT convolution, a residual sequence model, tasks, training,
and checkpoints (ours, and those the official SGConv and state-spaces/s4 code bases write).

    ck = sgconv_core.load(path, **settings)   # -> Checkpoint
    ck.kernels[i](L)                          # -> (C_k, H, L) kernel tensor
"""
from .checkpoints import Checkpoint, load, save
from .errors import CheckpointError
from .fftconv import fft_conv
from .kernels import FreeKernel, Kernel, S4DKernel, S4Kernel, SGConvKernel, build_kernel
from .model import ModelConfig, SequenceModel

__all__ = [
    "Checkpoint", "CheckpointError", "load", "save", "fft_conv", "Kernel", "SGConvKernel", "S4Kernel",
    "S4DKernel", "FreeKernel", "build_kernel", "ModelConfig", "SequenceModel",
]
