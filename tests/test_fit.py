"""analysis.fit: least-squares SGConv fits recover SGConv kernels exactly and improve with kernel_dim."""
import numpy as np
import pytest
import torch

from analysis.fit import DEFAULT_DIMS, dims_for, fit_curve, fit_sgconv, sgconv_design
from sgconv_core.kernels import SGConvKernel


def _sgconv_target(L, d, m, mode, seed=0):
    torch.manual_seed(seed)
    k = SGConvKernel(1, L, kernel_dim=d, mode=mode, decay_min=m, decay_max=m).double()
    with torch.no_grad():
        raw = k.raw_kernel(L)[0, 0].numpy()
    W = np.stack([w.detach()[0, 0].numpy() for w in k.kernel_list])
    return np.pad(raw, (0, L - raw.size)), W


@pytest.mark.parametrize("mode", ["cat_randn", "cat_randn_nearest", "sum_randn"])
@pytest.mark.parametrize("L", [1024, 1000])
def test_recovers_an_sgconv_kernel(mode, L):
    d, m = 8, 1.5
    target, W = _sgconv_target(L, d, m, mode)
    r = fit_sgconv(target, d, m, mode=mode.split("_")[0], interp="nearest" if "nearest" in mode else "linear")
    assert r["rel_error"] < 1e-6
    assert r["n_params"] == r["n_scales"] * d == W.size
    np.testing.assert_allclose(r["fitted"], target, atol=1e-9 * np.abs(target).max())
    if mode.startswith("cat") and L == 1024:  # L = L_raw: every weight is determined
        np.testing.assert_allclose(r["weights"], W, atol=1e-9)


def test_normalised_kernel_is_fit_too():
    """The model's kernel is raw / kernel_norm: a scalar, so it is just as expressible."""
    torch.manual_seed(4)
    k = SGConvKernel(1, 512, kernel_dim=16)
    with torch.no_grad():
        target = k(512)[0, 0].double().numpy()
    assert fit_sgconv(target, 16, 2.0)["rel_error"] < 1e-6


def test_design_matrix_columns_are_unit_responses():
    A = sgconv_design(64, 4, 2.0)
    S = A.shape[1] // 4
    assert A.shape == (64, S * 4) and S == 5
    # 'cat': column block i is non-zero only on scale i's segment; scale 0 carries m^(S-1)
    np.testing.assert_allclose(A[:4, :4], np.eye(4) * 2.0 ** (S - 1))
    assert not A[4:, :4].any()
    w = np.random.default_rng(0).standard_normal(A.shape[1])
    r = fit_sgconv(A @ w, 4, 2.0)
    assert r["rel_error"] < 1e-10


def test_error_falls_with_kernel_dim_for_a_smooth_target():
    t = np.arange(16384, dtype=np.float64)
    target = np.exp(-t / 3000.0) * np.cos(t / 400.0)
    rows = fit_curve(target, dims=(1, 2, 4, 8, 16, 32, 64), m=2.0)
    errs = [r["rel_error"] for r in rows]
    assert [r["d"] for r in rows] == [1, 2, 4, 8, 16, 32, 64]
    assert all(b < a for a, b in zip(errs, errs[1:], strict=False))
    assert errs[-1] < 0.01 < errs[0]
    assert [r["n_params"] for r in rows] == [r["n_scales"] * r["d"] for r in rows]


def test_spike_needs_resolution():
    """A lag spike (the delay task's ideal kernel) is hard for small d: resolution at lag tau is ~tau/d taps."""
    k = np.zeros(1024)
    k[700] = 1.0
    e = {d: fit_sgconv(k, d, 1.0)["rel_error"] for d in (16, 256)}
    assert e[256] < e[16] and e[16] > 0.3


def test_bad_inputs():
    with pytest.raises(ValueError):
        fit_sgconv(np.zeros((4, 4)), 2)
    with pytest.raises(ValueError):
        fit_sgconv(np.ones(8), 16)  # kernel_dim > L: no valid number of scales
    with pytest.raises(ValueError):
        fit_sgconv(np.ones(64), 4, mode="concat")
    assert fit_sgconv(np.zeros(64), 4)["rel_error"] == 0.0


def test_dims_for():
    assert dims_for(256) == list(DEFAULT_DIMS)
    assert dims_for(20) == [1, 2, 4, 8, 16] and dims_for(1) == [1]
