"""S4 (DPLR) kernels beyond l_kernel (issue 11): the block route of `S4Kernel.forward`, exact and differentiable.

Known answers: a kernel built with l_kernel = 0 has its true C stored, so the float64 recurrence K[l] = C^T dA^l dB
(`s4_dense_powers`) is the reference; ``attune(L_k)`` then stores C~ = C (I - dA^{L_k}) and forward must give the
same kernel at any L > L_k. The former modal route (eigendecomposition of dA) gave 6e-8 relative at N = 64 on
these cases; the block route gives ~1e-13.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from test_kernels import s4_dense_powers

import sgconv_core.kernels.s4 as s4mod
from sgconv_core.kernels import S4Kernel


def _legs(H: int, N: int, seed: int = 0, **kw) -> S4Kernel:
    torch.manual_seed(seed)
    return S4Kernel(H, d_state=N, dt_min=0.01, dt_max=0.2, **kw).double()


def _rel(a, ref) -> float:
    a = a.detach().numpy() if isinstance(a, torch.Tensor) else a
    return float(np.abs(a - ref).max() / np.abs(ref).max())


# (N, L_k, L): L = 3 L_k and 5 L_k + 7 with the blocks as channels (m C_k <= 2N'), and two with more blocks than
# 2N' (the unit-vector basis and one matrix product).
@pytest.mark.parametrize("N, Lk, L", [
    (16, 128, 384), (32, 128, 647), (64, 128, 384), (64, 256, 1287),
    (16, 32, 41 * 32 + 7), (64, 16, 70 * 16 + 5),
])
def test_beyond_l_kernel_matches_the_recurrence(N, Lk, L):
    k = _legs(3, N, seed=N + Lk)
    ref = s4_dense_powers(k, L)  # l_kernel = 0: C is the true C
    k.attune(Lk)
    assert int(k.l_kernel) == Lk
    with torch.no_grad():
        assert _rel(k(L), ref) <= 1e-10
    assert _rel(k(L), ref) <= 1e-10  # with autograd (no feature chunks): the same numbers


@pytest.mark.parametrize("block", [100, 10])  # 4 blocks as channels; 36 blocks through the basis
def test_unattuned_kernel_in_blocks_matches_the_recurrence(monkeypatch, block):
    k = _legs(2, 16, seed=3)
    ref = s4_dense_powers(k, 357)
    monkeypatch.setattr(s4mod, "_BLOCK", block)
    with torch.no_grad():
        assert _rel(k(357), ref) <= 1e-10


def test_nothing_stored_is_mutated():
    k = _legs(2, 16, seed=4, l_max=64)
    before = {n: t.detach().clone() for n, t in k.state_dict().items()}
    k(300).sum().backward()
    with torch.no_grad():
        k(1000)
    for n, t in k.state_dict().items():
        assert torch.equal(t, before[n]), n
    assert int(k.l_kernel) == 64


@pytest.mark.parametrize("L", [29, 48])  # m = 4 blocks (channels), m = 6 > 2N' = 4 (basis)
def test_gradient_beyond_l_kernel_matches_finite_differences(L):
    k = _legs(2, 4, seed=5, l_max=8)
    names = [n for n, _ in k.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for _, p in k.named_parameters())
    buffers = dict(k.named_buffers())
    weight = torch.randn(1, 2, L, dtype=torch.float64)

    def f(*ps):
        out = torch.func.functional_call(k, ({**dict(zip(names, ps)), **buffers},), (L,))
        return (out * weight).sum()

    assert torch.autograd.gradcheck(f, params, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_float32_training_gradient_is_finite_for_every_parameter():
    torch.manual_seed(6)
    k = S4Kernel(8, d_state=32, l_max=128)
    k(3 * 128).sum().backward()
    for n, p in k.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().max() > 0, n


def test_float32_kernel_beyond_l_kernel_is_its_float64_kernel_rounded():
    """The route beyond l_kernel runs in float64 for a float32 kernel too (cast once at the end)."""
    torch.manual_seed(7)
    k = S4Kernel(4, d_state=64, l_max=256)
    with torch.no_grad():
        K = k(1287)
        ref = copy.deepcopy(k).double()(1287)
    assert K.dtype == torch.float32
    assert _rel(K.double(), ref.numpy()) <= 2e-6  # measured 6e-7 (float32 parameter transforms); 1.7e-6 within L_k


@pytest.mark.parametrize("L", [640, 64 * 40])  # channels; basis
def test_feature_chunks_give_the_same_kernel(monkeypatch, L):
    k = _legs(5, 16, seed=8, l_max=64)
    with torch.no_grad():
        whole = k(L)
        monkeypatch.setattr(s4mod, "_ROUTE_CHUNK_BYTES", 1)  # one feature at a time
        chunked = k(L)
    graded = k(L).detach()
    scale = float(whole.abs().max())
    assert torch.allclose(chunked, whole, rtol=0, atol=1e-14 * scale)
    assert torch.allclose(graded, whole, rtol=0, atol=1e-14 * scale)


def test_cauchy_kernel_refuses_lengths_beyond_l_kernel():
    k = _legs(2, 8, l_max=32)
    with pytest.raises(ValueError, match="l_kernel = 32"):
        k.cauchy_kernel(33)
