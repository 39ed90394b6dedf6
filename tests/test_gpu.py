"""A GPU pass (``python -m pytest -m gpu`` on a machine with CUDA): kernels, FFT convolution and a training step
on CUDA agree with the CPU. Skipped without CUDA."""
import pytest
import torch

import sgconv_core
from sgconv_core.fftconv import fft_conv
from sgconv_core.kernels import S4DKernel, S4Kernel, SGConvKernel

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("make", [
    lambda: SGConvKernel(16, l_max=2048, kernel_dim=32, bidirectional=True),
    lambda: S4DKernel(16, d_state=32, l_max=2048),
    lambda: S4Kernel(16, d_state=32, l_max=2048),
], ids=["sgconv", "s4d", "s4"])
@pytest.mark.parametrize("L", [1000, 2048, 5000])
def test_kernels_on_cuda_equal_cpu(make, L):
    torch.manual_seed(0)
    k = make().double()
    ref = k(L).detach()
    got = k.cuda()(L).detach().cpu()
    assert got.shape == ref.shape
    assert (got - ref).abs().max() <= 1e-9 * ref.abs().max()


def test_fft_conv_on_cuda_equals_cpu():
    torch.manual_seed(0)
    u, k = torch.randn(2, 8, 4096, dtype=torch.float64), torch.randn(1, 8, 4096, dtype=torch.float64)
    assert torch.allclose(fft_conv(u.cuda(), k.cuda()).cpu(), fft_conv(u, k), rtol=0, atol=1e-10)


def test_a_pretrained_model_runs_on_cuda():
    import glob
    import os

    files = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "pretrained", "digits-*.safetensors")))
    if not files:
        pytest.skip("no pretrained digits model")
    ck = sgconv_core.load(files[0])
    x = torch.randn(4, 1024, 1)
    ck.model.eval()
    with torch.no_grad():
        ref = ck.model(x)
        got = ck.model.cuda()(x.cuda()).cpu()
    assert torch.allclose(got, ref, rtol=1e-4, atol=1e-4)
