r"""Long convolution by FFT, causal or bidirectional, with the D skip connection.

Causal:         y[b,c,h,t] = sum_{s<=t} k[c,h,t-s] u[b,h,s] + D[c,h] u[b,h,t]
Bidirectional:  k = [k_fwd; k_bwd] (2C channels); the backward half acts at negative lags -(j+1):
                y[b,c,h,t] += sum_j k_bwd[c,h,j] u[b,h,t+j+1]
Computed as irfft(rfft(u, n) * rfft(k, n), n)[..., :L] with n = Lk + L, which is exact (no wrap-around).

Bounded memory: the convolution is depthwise (each of the H channels on its own), so when the whole
(B, C, H, n/2+1) complex spectrum would exceed ``FFT_CHUNK_BYTES`` (`sgconv_core.lengths`) the H channels go in
chunks of h rows, each chunk's spectra built, used and freed before the next. With autograd the chunked path is
one `torch.autograd.Function` that saves only u and k and recomputes each chunk's spectra in backward, so
neither pass ever holds more than one chunk's spectra. Chunking changes nothing but the peak: every channel's
FFTs are the same computation as unchunked (equal to float round-off).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .lengths import FFT_CHUNK_BYTES


def two_sided(k: torch.Tensor, L: int) -> torch.Tensor:
    """Combine a bidirectional kernel (2C, H, Lk) into the two-sided (C, H, Lk + L) circular kernel."""
    C, Lk = k.shape[0] // 2, k.shape[-1]
    if torch.is_grad_enabled() and k.requires_grad:  # out-of-place: the backward of in-place slices is ~4% slower
        return F.pad(k[:C], (0, L)) + F.pad(k[C:].flip(-1), (L, 0))
    k2 = k.new_zeros(C, k.shape[1], Lk + L)  # one buffer (two pads and a sum would take three)
    k2[..., :Lk] = k[:C]
    k2[..., L:] += k[C:].flip(-1)
    return k2


def fft_conv(u: torch.Tensor, k: torch.Tensor, D: torch.Tensor | None = None, bidirectional: bool = False,
             chunk_bytes: int | None = None) -> torch.Tensor:
    """Convolve u (B, H, L) with kernel k (C_k, H, Lk): returns y (B, C, H, L).

    C = C_k (causal) or C_k/2 (bidirectional); D (C, H) adds the skip term D*u. ``chunk_bytes`` (default
    `FFT_CHUNK_BYTES`) bounds one chunk's (B, C, h, n/2+1) spectrum; the H channels go in chunks above it.
    """
    if u.dim() != 3 or k.dim() != 3 or u.shape[1] != k.shape[1]:
        raise ValueError(f"fft_conv expects u (B, H, L) and k (C, H, Lk) with the same H; got {tuple(u.shape)} and {tuple(k.shape)}")
    h = chunk_rows(u, k, bidirectional, FFT_CHUNK_BYTES if chunk_bytes is None else chunk_bytes)
    if h >= u.shape[1]:
        return _conv(u, k, D, bidirectional)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (u, k, D)):
        return _ChunkedFFTConv.apply(u, k, D, bidirectional, h)
    return _conv_chunked(u, k, D, bidirectional, h)


def chunk_rows(u: torch.Tensor, k: torch.Tensor, bidirectional: bool, budget: int) -> int:
    """Channels per chunk: the most h whose (B, C, h, n/2+1) complex spectrum fits ``budget`` bytes (at least 1)."""
    B, H, L = u.shape
    C = k.shape[0] // 2 if bidirectional else k.shape[0]
    n = k.shape[-1] + L
    row = B * C * (n // 2 + 1) * 2 * u.element_size()
    return int(min(H, max(1, budget // max(1, row))))


def _conv(u: torch.Tensor, k: torch.Tensor, D: torch.Tensor | None, bidirectional: bool) -> torch.Tensor:
    """The whole convolution at once: (B, C, H, L)."""
    L, Lk = u.shape[-1], k.shape[-1]
    n = Lk + L
    if bidirectional:
        k = two_sided(k, L)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (u, k, D)):
        return _FFTConv.apply(u, k, D, n)
    k_f = torch.fft.rfft(k, n=n)
    u_f = torch.fft.rfft(u, n=n)
    y = torch.fft.irfft(u_f.unsqueeze(1) * k_f.unsqueeze(0), n=n)[..., :L]
    if D is not None:
        y = y + u.unsqueeze(1) * D.unsqueeze(0).unsqueeze(-1)
    return y


def conv_block(u: torch.Tensor, k: torch.Tensor, D: torch.Tensor | None, bidirectional: bool) -> torch.Tensor:
    """`_conv` of one block of h channels without autograd, holding as few spectrum-sized buffers as it can.

    u (B, h, L), k (C_k, h, Lk), D (C, h) or None -> y (B, C, h, L), the same numbers as `_conv`: the two-sided
    kernel is freed once transformed and the product is taken in place, so at most two (B, C, h, n/2+1)
    spectra (or one spectrum and the (B, C, h, n) inverse) live at once. Used by `ConvLayer`'s inference path.
    """
    L, Lk = u.shape[-1], k.shape[-1]
    n = Lk + L
    with torch.no_grad():
        k_f = torch.fft.rfft(two_sided(k, L) if bidirectional else k, n=n)
        u_f = torch.fft.rfft(u, n=n).unsqueeze(1)
        if u_f.shape[0] == 1:
            prod = k_f.unsqueeze(0).mul_(u_f)  # (1, C, h, F): in place in k_f
        else:
            prod = u_f * k_f.unsqueeze(0)
        del k_f, u_f
        y = torch.fft.irfft(prod, n=n)
        del prod
        y = y[..., :L]
        if D is not None:
            return y + u.unsqueeze(1) * D.unsqueeze(0).unsqueeze(-1)
        return y.contiguous()


class _RFFT(torch.autograd.Function):
    r"""torch.fft.rfft(x, n) along the last axis, with its backward as one inverse real FFT.

    X_f = sum_t x_t W^{ft} (W = e^{-2 pi i/n}, f <= n/2) has the adjoint gx_t = Re sum_f g_f W^{-ft}, which is
    (n/2) irfft(h, n) with h = g except h_0 = 2 g_0 and, for even n, h_{n/2} = 2 g_{n/2} (irfft doubles every
    other bin for the Hermitian half it does not see, and reads only the real part of those two). Autograd's own
    backward of rfft is a full-length complex FFT of a zero-filled buffer.
    """

    @staticmethod
    def forward(ctx, x, n):
        ctx.n, ctx.L = n, x.shape[-1]
        return torch.fft.rfft(x, n=n)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        n = ctx.n
        h = g.clone()
        h[..., 0] *= 2
        if n % 2 == 0:
            h[..., -1] *= 2
        gx = torch.fft.irfft(h, n=n).mul_(n / 2)
        L = ctx.L
        if L <= n:
            return gx[..., :L], None
        return torch.nn.functional.pad(gx, (0, L - n)), None


def rfft(x: torch.Tensor, n: int) -> torch.Tensor:
    """``torch.fft.rfft(x, n=n)`` (last axis; real x) whose backward is one irfft (`_RFFT`)."""
    if torch.is_grad_enabled() and x.requires_grad:
        return _RFFT.apply(x, n)
    return torch.fft.rfft(x, n=n)


def spans(H: int, h: int) -> list[tuple[int, int]]:
    """The blocks [i, j) of at most h of the H channels, in order."""
    return [(i, min(H, i + h)) for i in range(0, H, h)]


def _rows(t: torch.Tensor | None, i: int, j: int, dim: int) -> torch.Tensor | None:
    """Channels i:j of t along dim (None stays None)."""
    return None if t is None else t.narrow(dim, i, j - i)


def _conv_chunked(u: torch.Tensor, k: torch.Tensor, D: torch.Tensor | None, bidirectional: bool, h: int) -> torch.Tensor:
    """`_conv` h channels at a time, into one preallocated output (no autograd graph)."""
    B, H, L = u.shape
    C = k.shape[0] // 2 if bidirectional else k.shape[0]
    y = u.new_empty(B, C, H, L)
    with torch.no_grad():
        for i, j in spans(H, h):
            y[:, :, i:j] = _conv(u[:, i:j], k[:, i:j], _rows(D, i, j, 1), bidirectional)
    return y


class _ChunkedFFTConv(torch.autograd.Function):
    """`_conv` in chunks of h channels; saves only u, k and D, and recomputes each chunk's spectra in backward."""

    @staticmethod
    def forward(ctx, u, k, D, bidirectional, h):
        ctx.save_for_backward(u, k, D)
        ctx.bidirectional, ctx.h = bidirectional, h
        return _conv_chunked(u, k, D, bidirectional, h)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy):
        u, k, D = ctx.saved_tensors
        need = ctx.needs_input_grad[:3]
        grads = [torch.zeros_like(t) if n else None for t, n in zip((u, k, D), need)]
        for i, j in spans(u.shape[1], ctx.h):
            parts = [None if t is None else _rows(t, i, j, 1).detach().requires_grad_(n) for t, n in zip((u, k, D), need)]
            with torch.enable_grad():
                yc = _conv(parts[0], parts[1], parts[2], ctx.bidirectional)
                wanted = [p for p, n in zip(parts, need) if n]
                got = iter(torch.autograd.grad(yc, wanted, gy[:, :, i:j]))
            for g, n in zip(grads, need):  # u, k and D all hold the H channels in dim 1
                if n:
                    _rows(g, i, j, 1).copy_(next(got))
        return grads[0], grads[1], grads[2], None, None


def _rfft_padded(x: torch.Tensor, n: int) -> torch.Tensor:
    """torch.fft.rfft(x, n=n) for n >= x's length, zero-filling only the padding (F.pad fills the whole buffer, then
    copies x over it); x may have any strides (the copy also makes a token-major x contiguous along its last axis)."""
    L = x.shape[-1]
    buf = x.new_empty(*x.shape[:-1], n)
    buf[..., :L].copy_(x)
    buf[..., L:].zero_()
    return torch.fft.rfft(buf)


class _FFTConv(torch.autograd.Function):
    r"""`_conv` with its backward written out: u (B, H, L), k (C, H, n' <= n), D (C, H) or None -> (B, C, H, L).

    y = irfft(U K')[:L] with U = rfft(u, n) and K' = rfft(k, n) + D: the skip term D u is the convolution with
    D at lag 0, whose spectrum is D at every frequency, so it rides in the kernel's spectrum (no pass over the
    (B, C, H, L) output for it, forward or backward). The gradient of a (zero-padded, length-n) circular
    convolution is the circular correlation, so with G = rfft(gy, n):
        gu = irfft(sum_c G conj(K'))[:L],   gk = irfft(sum_b G conj(U))[:n'],   gD = irfft(sum_b G conj(U))[0]
    (D's gradient is the kernel's at lag 0). One rfft and two irfft's, where autograd's backward of rfft is a
    full-length complex FFT over a zero-filled buffer. Saves U and K' (the spectra the product saved).

    Layout: the output has shape (B, C, H, L) in token-major memory (strides of a contiguous (B, L, C, H)),
    which is the layout the layer's activation, output linear and the residual stream use (`ConvLayer`): the
    slice that drops the wrapped-around half of the inverse FFT is a copy anyway, and it writes that layout. gu
    is returned token-major too (the layout of the LayerNorm that produced u).
    """

    @staticmethod
    def forward(ctx, u, k, D, n):
        B, H, L = u.shape
        C = k.shape[0]
        U, K = _rfft_padded(u, n), torch.fft.rfft(k, n=n)
        if D is not None:
            K = K + D.unsqueeze(-1)  # D at lag 0 <-> D at every frequency
        y = torch.fft.irfft(U.unsqueeze(1) * K, n=n)  # (B, C, H, n)
        out = y.new_empty(B, L, C, H).permute(0, 2, 3, 1)
        out.copy_(y[..., :L])
        ctx.save_for_backward(U, K)
        ctx.n, ctx.L, ctx.Lk, ctx.has_D = n, L, k.shape[-1], D is not None
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy):
        U, K = ctx.saved_tensors
        n, L = ctx.n, ctx.L
        G = _rfft_padded(gy, n)  # (B, C, H, n/2+1)
        gu = gk = gD = None
        if ctx.needs_input_grad[0]:
            prod = G[:, 0] * K[0].conj() if K.shape[0] == 1 else (G * K.conj()).sum(1)
            full = torch.fft.irfft(prod, n=n)  # (B, H, n)
            B, H = full.shape[:2]
            gu = full.new_empty(B, L, H).transpose(1, 2)
            gu.copy_(full[..., :L])
        if ctx.needs_input_grad[1] or (ctx.has_D and ctx.needs_input_grad[2]):
            corr = torch.fft.irfft((G * U.conj().unsqueeze(1)).sum(0), n=n)  # (C, H, n)
            if ctx.needs_input_grad[1]:
                gk = corr[..., :ctx.Lk]
            if ctx.has_D and ctx.needs_input_grad[2]:
                gD = corr[..., 0]
        return gu, gk, gD, None
