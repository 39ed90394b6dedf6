"""The free-kernel baseline: state-spaces/s4 v4 ``FFTConv(mode='conv')`` holding a ``ConvKernel``.

Read from src/models/sequence/kernels/kernel.py (ConvKernel) and kernels/fftconv.py. Marker ``kernel.kernel``
under the FFTConv prefix p, when it is a 3-D tensor and the only key under ``p + kernel.``:

    p + kernel.kernel   (C_k, H, L)   -> our FreeKernel's ``kernel``, unchanged; l_max = L
    p + D               (C, H)        block + output_linear.0.weight (2H, C*H): runnable.py (as v4 S4 / S4D)

No settings. The official FFTConv clips the kernel at l_max; for inputs shorter than L it folds the taps beyond
the input length back circularly (its FFT is shorter than the kernel), where our rebuilt layer crops them.
"""
from __future__ import annotations

import torch

from ...kernels import FreeKernel, Kernel
from .base import FFTConvInBlock
from .context import Ctx, channels, load_into


class ConvKernelV4(FFTConvInBlock):
    family, title, marker = "conv-v4", "free kernel (v4 ConvKernel)", "kernel.kernel"
    rebuild_note = ("for inputs shorter than l_max the official FFTConv wraps the free kernel's taps beyond "
                    "L circularly; the rebuilt layer crops them.")

    def matches(self, sd: dict, prefix: str, key: str) -> bool:
        t = sd[key]
        others = [k for k in sd if k.startswith(prefix + "kernel.") and k != key]
        return torch.is_tensor(t) and t.dim() == 3 and not others

    def build_kernel(self, ctx: Ctx, p: str) -> tuple[Kernel, dict]:
        key = p + "kernel.kernel"
        w = ctx.get(key, 3)
        C_k, H, L = w.shape
        chan, bidir = channels(ctx, p, C_k, key)
        with torch.random.fork_rng():
            k = FreeKernel(d_model=H, l_max=L, channels=chan, bidirectional=bidir)
        return load_into(k, {"kernel": w}, w.dtype), {}


ADAPTERS = (ConvKernelV4(),)
