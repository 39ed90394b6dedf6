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
"""
from __future__ import annotations

DEFAULT_LENGTH = 1024
MAX_KERNEL_LENGTH = 1 << 24
MAX_KERNEL_VALUES = 1 << 31
APP_MAX_LENGTH = 1 << 22
APP_MAX_KERNEL_VALUES = 1 << 26
MAX_TASK_LENGTH = 1 << 20
MAX_ABLATION_LENGTH = 1 << 16
FFT_CHUNK_BYTES = 1 << 28


def default_length(l_max: int | None) -> int:
    """The length to show a kernel at: its training length ``l_max`` when known, else `DEFAULT_LENGTH`."""
    return int(l_max) if l_max else DEFAULT_LENGTH


def app_max_length(widest: int) -> int:
    """Longest length the app offers for models whose widest layer has ``widest`` = C_k * H kernels.

    min(APP_MAX_LENGTH, APP_MAX_KERNEL_VALUES // widest), but never below DEFAULT_LENGTH.
    """
    return int(min(APP_MAX_LENGTH, max(DEFAULT_LENGTH, APP_MAX_KERNEL_VALUES // max(1, int(widest)))))


__all__ = ["DEFAULT_LENGTH", "MAX_KERNEL_LENGTH", "MAX_KERNEL_VALUES", "APP_MAX_LENGTH", "APP_MAX_KERNEL_VALUES",
           "MAX_TASK_LENGTH", "MAX_ABLATION_LENGTH",
           "FFT_CHUNK_BYTES", "default_length", "app_max_length"]
