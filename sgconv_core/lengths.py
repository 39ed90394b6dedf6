"""The length policy: one place for the default kernel length and every cap on a length or a size.

A *length* is a number of taps (kernel) or time steps (sequence). Each cap says what it protects:

| name                  | value   | what it bounds                                                        |
|-----------------------|---------|-----------------------------------------------------------------------|
| DEFAULT_LENGTH        | 1,024   | the length used for a model that does not store its training length  |
| MAX_KERNEL_LENGTH     | 2**24   | any ``kernel(L)``: refused beyond (about 16.8 M taps)                 |
| MAX_KERNEL_VALUES     | 2**31   | any ``kernel(L)``: C_k * H * L values (8 GB in float32)               |
| APP_MAX_LENGTH        | 2**22   | the app's length box                                                  |
| APP_MAX_KERNEL_VALUES | 2**26   | the app: C_k * H * L values per layer (512 MB of float64)             |
| MAX_TASK_LENGTH       | 2**20   | a generated task's sequence length                                    |
| MAX_ABLATION_LENGTH   | 2**16   | a training run of an ablation sweep                                   |
| FFT_CHUNK_BYTES       | 2**28   | ``fft_conv``: one (B, C, h, n/2+1) complex64 spectrum (256 MB); above |
|                       |         | it the H channels go in chunks of h (forward, and backward recomputes)|
| LAYER_CHUNK_BYTES     | 2**26   | ``ConvLayer`` without autograd: one block's (B, C, h, n/2+1) spectrum |
|                       |         | (64 MB; the block's working set is ~4x that) and one block of tokens' |
|                       |         | output-linear buffers                                                 |
| MAX_LAYER_VALUES      | 2**31   | one ``ConvLayer`` call: the values it holds at once, `layer_values`   |
|                       |         | (8 GB in float32), checked before it allocates                        |
"""
from __future__ import annotations

from .errors import CheckpointError

DEFAULT_LENGTH = 1024
MAX_KERNEL_LENGTH = 1 << 24
MAX_KERNEL_VALUES = 1 << 31
APP_MAX_LENGTH = 1 << 22
APP_MAX_KERNEL_VALUES = 1 << 26
MAX_TASK_LENGTH = 1 << 20
MAX_ABLATION_LENGTH = 1 << 16
FFT_CHUNK_BYTES = 1 << 28
LAYER_CHUNK_BYTES = 1 << 26
MAX_LAYER_VALUES = 1 << 31

#: values an autograd forward of ``ConvLayer`` holds per (B, C, H, L) activation value: the whole (C_k, H, L) kernel
#: and its two-sided copy, the convolution's output, the activation's input and output, the output linear's input,
#: its (B, L, 2H) output and the GLU's (B, L, H): measured 7.2 GB at B = 1, C = 1, H = 256, L = 1M, i.e. ~6.7.
GRAD_VALUES_PER_ACTIVATION = 8


def default_length(l_max: int | None) -> int:
    """The length to show a kernel at: its training length ``l_max`` when known, else `DEFAULT_LENGTH`."""
    return int(l_max) if l_max else DEFAULT_LENGTH


def app_max_length(widest: int) -> int:
    """Longest length the app offers for models whose widest layer has ``widest`` = C_k * H kernels.

    min(APP_MAX_LENGTH, APP_MAX_KERNEL_VALUES // widest), but never below DEFAULT_LENGTH.
    """
    return int(min(APP_MAX_LENGTH, max(DEFAULT_LENGTH, APP_MAX_KERNEL_VALUES // max(1, int(widest)))))


def layer_values(B: int, C: int, H: int, L: int, grad: bool) -> int:
    """Values one ``ConvLayer`` call on an input (B, H, L) holds at once, for C channels per feature.

    Without autograd: the (B, C, H, L) activations, plus the (B, H, L) output when C > 1 (with C = 1 the output
    is written over the activations, token block by token block); the per-block buffers are bounded by
    `LAYER_CHUNK_BYTES`. With autograd: `GRAD_VALUES_PER_ACTIVATION` per activation value.
    """
    act = int(B) * int(C) * int(H) * int(L)
    if grad:
        return GRAD_VALUES_PER_ACTIVATION * act
    return act + (int(B) * int(H) * int(L) if C > 1 else 0)


def check_layer_size(B: int, C: int, H: int, L: int, grad: bool) -> None:
    """Refuse, before anything is allocated, a ``ConvLayer`` call whose `layer_values` exceed `MAX_LAYER_VALUES`.

    Raises CheckpointError (a ValueError) naming the input shape, the values it would need and the budget.
    """
    need = layer_values(B, C, H, L, grad)
    if need > MAX_LAYER_VALUES:
        how = "with autograd" if grad else "without autograd"
        hint = "; without autograd (torch.no_grad()) it would need about 1/8 of that" if grad else ""
        raise CheckpointError(
            f"a convolution layer on an input of shape ({B}, {H}, {L}) with {C} channel(s) would hold about "
            f"{need:,} values ({need * 4 / 2**30:.1f} GB in float32) {how}, over the memory budget of "
            f"{MAX_LAYER_VALUES:,} values (sgconv_core.lengths.MAX_LAYER_VALUES); use a shorter input or a smaller "
            f"batch{hint}")


__all__ = ["DEFAULT_LENGTH", "MAX_KERNEL_LENGTH", "MAX_KERNEL_VALUES", "APP_MAX_LENGTH", "APP_MAX_KERNEL_VALUES",
           "MAX_TASK_LENGTH", "MAX_ABLATION_LENGTH",
           "FFT_CHUNK_BYTES", "LAYER_CHUNK_BYTES", "MAX_LAYER_VALUES", "GRAD_VALUES_PER_ACTIVATION",
           "default_length", "app_max_length", "layer_values", "check_layer_size"]
