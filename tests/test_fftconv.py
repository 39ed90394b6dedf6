"""fft_conv in chunks of channels (bounded memory): equal to the unchunked result and to direct convolution,
forward and backward (gradcheck in float64 with a tiny budget forcing several chunks)."""
import numpy as np
import pytest
import torch

from sgconv_core import fftconv
from sgconv_core.fftconv import chunk_rows, fft_conv
from sgconv_core.lengths import FFT_CHUNK_BYTES


def _direct(u, k, D, bidirectional):
    """y (B, C, H, L) by numpy.convolve in float64 (the bidirectional half at negative lags -(j+1))."""
    B, H, L = u.shape
    C = k.shape[0] // 2 if bidirectional else k.shape[0]
    y = np.zeros((B, C, H, L))
    for b in range(B):
        for c in range(C):
            for h in range(H):
                y[b, c, h] = np.convolve(u[b, h], k[c, h])[:L] + D[c, h] * u[b, h]
                if bidirectional:  # sum_j k1[j] u[t+j+1]
                    y[b, c, h] += _anticausal(u[b, h], k[C + c, h])
    return y


def _anticausal(u, k1):
    L = len(u)
    return np.array([sum(k1[j] * u[t + j + 1] for j in range(min(len(k1), L - t - 1))) for t in range(L)])


def _case(bidirectional, B=2, H=5, L=37, Lk=37, C=2, seed=0):
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(B, H, L))
    k = rng.normal(size=((2 * C) if bidirectional else C, H, Lk))
    D = rng.normal(size=(C, H))
    return u, k, D


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("Lk", [37, 12])
def test_chunked_equals_unchunked_and_direct_float64(bidirectional, Lk):
    u, k, D = _case(bidirectional, Lk=Lk)
    tu, tk, tD = torch.tensor(u), torch.tensor(k), torch.tensor(D)
    assert chunk_rows(tu, tk, bidirectional, 1) == 1  # a 1-byte budget: one channel per chunk
    y_full = fft_conv(tu, tk, tD, bidirectional).numpy()
    y_chunk = fft_conv(tu, tk, tD, bidirectional, chunk_bytes=1).numpy()
    ref = _direct(u, k, D, bidirectional)
    assert np.abs(y_chunk - y_full).max() < 1e-12
    assert np.abs(y_chunk - ref).max() < 1e-12
    assert np.abs(y_full - ref).max() < 1e-12


@pytest.mark.parametrize("bidirectional", [False, True])
def test_chunked_float32_equals_unchunked_to_round_off(bidirectional):
    torch.manual_seed(0)
    u, k = torch.randn(1, 16, 3000), torch.randn(2 if bidirectional else 1, 16, 3000)
    y0 = fft_conv(u, k, bidirectional=bidirectional)
    for budget in (1, 3 * 3001 * 8):  # 1 channel per chunk; 3 per chunk (the last one shorter)
        y1 = fft_conv(u, k, bidirectional=bidirectional, chunk_bytes=budget)
        assert torch.allclose(y1, y0, rtol=0, atol=1e-5 * float(y0.abs().max()))


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("C", [1, 2])
def test_unchunked_gradcheck_float64(bidirectional, C):
    """The whole-buffer route's hand-written backward (_FFTConv): gradcheck for u, k and D, and without D."""
    u, k, D = (torch.tensor(a, requires_grad=True) for a in _case(bidirectional, B=2, H=3, L=9, Lk=6, C=C))
    assert torch.autograd.gradcheck(lambda u, k, D: fft_conv(u, k, D, bidirectional), (u, k, D))
    assert torch.autograd.gradcheck(lambda u, k: fft_conv(u, k, None, bidirectional), (u, k))


@pytest.mark.parametrize("bidirectional", [False, True])
def test_chunked_gradcheck_float64(bidirectional):
    u, k, D = (torch.tensor(a, requires_grad=True) for a in _case(bidirectional, B=2, H=4, L=9, Lk=6, C=1))
    budget = 2 * 16 * 8 * 2  # two channels of (B=2, C=1, n/2+1=8) complex128: 2 chunks of 2
    assert chunk_rows(u, k, bidirectional, budget) == 2
    assert torch.autograd.gradcheck(lambda u, k, D: fft_conv(u, k, D, bidirectional, chunk_bytes=budget), (u, k, D))
    assert torch.autograd.gradcheck(lambda u, k, D: fft_conv(u, k, D, bidirectional, chunk_bytes=1), (u, k, D))


@pytest.mark.parametrize("bidirectional", [False, True])
def test_chunked_gradients_equal_unchunked(bidirectional):
    torch.manual_seed(1)
    u = torch.randn(2, 6, 200, requires_grad=True)
    k = torch.randn(2 if bidirectional else 1, 6, 150, requires_grad=True)
    g = torch.randn(2, 1, 6, 200)
    a = torch.autograd.grad(fft_conv(u, k, None, bidirectional), (u, k), g)
    b = torch.autograd.grad(fft_conv(u, k, None, bidirectional, chunk_bytes=1), (u, k), g)
    for x, y in zip(a, b):
        assert torch.allclose(x, y, rtol=0, atol=1e-5 * float(x.abs().max()))
    # only k needs a gradient (u a plain input, as for a model's first layer)
    gk = torch.autograd.grad(fft_conv(u.detach(), k, None, bidirectional, chunk_bytes=1), k, g)[0]
    assert torch.allclose(gk, a[1], rtol=0, atol=1e-5 * float(a[1].abs().max()))


def test_chunked_backward_saves_only_inputs():
    """The chunked path's graph holds u, k and D, not the spectra: its saved tensors are the inputs."""
    u = torch.randn(1, 8, 64, requires_grad=True)
    k = torch.randn(2, 8, 64, requires_grad=True)
    D = torch.randn(1, 8, requires_grad=True)
    y = fft_conv(u, k, D, True, chunk_bytes=1)
    assert type(y.grad_fn).__name__.startswith("_ChunkedFFTConv")
    assert [t.shape for t in y.grad_fn.saved_tensors] == [u.shape, k.shape, D.shape]


def test_default_budget_keeps_short_inputs_whole_and_chunks_long_ones():
    assert FFT_CHUNK_BYTES == fftconv.FFT_CHUNK_BYTES
    H = 256
    short = torch.empty(1, H, 1 << 16), torch.empty(2, H, 1 << 16)     # 64k: one piece, as before
    long = torch.empty(1, H, 1 << 20), torch.empty(2, H, 1 << 20)      # 1M: the 2 GB spectrum in chunks
    assert chunk_rows(*short, True, FFT_CHUNK_BYTES) == H
    h = chunk_rows(*long, True, FFT_CHUNK_BYTES)
    assert h < H and h * ((1 << 21) // 2 + 1) * 8 <= FFT_CHUNK_BYTES


@pytest.mark.parametrize("L,n", [(8, 8), (7, 7), (6, 10), (12, 8), (5, 6)])
def test_rfft_backward_is_the_adjoint(L, n):
    """fftconv.rfft's backward (one irfft with the DC and Nyquist bins doubled): gradcheck, and equal to autograd's
    own backward of torch.fft.rfft, for even and odd n, x shorter (zero-padded) and longer (cropped) than n."""
    from sgconv_core.fftconv import rfft

    torch.manual_seed(L * n)
    x = torch.randn(3, L, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: torch.view_as_real(rfft(x, n)), (x,))
    g = torch.randn(3, n // 2 + 1, dtype=torch.complex128)
    ours = torch.autograd.grad(rfft(x, n), x, g)[0]
    ref = torch.autograd.grad(torch.fft.rfft(x, n=n), x, g)[0]
    assert (ours - ref).abs().max() < 1e-13
