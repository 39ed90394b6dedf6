"""analysis.extract: kernels as float64 arrays equal to the kernel modules' own output, cached once per length."""
import copy

import numpy as np
import pytest
import torch

from analysis.extract import clear_cache, extract_kernels, kernel_table, ssm_modes
from sgconv_core import Checkpoint, CheckpointError, ModelConfig, SequenceModel
from sgconv_core.kernels import FreeKernel, S4DKernel, S4Kernel, SGConvKernel


def _model(kind, **ka):
    torch.manual_seed(0)
    cfg = ModelConfig(d_input=1, d_output=3, d_model=8, n_layers=2, kernel=kind, kernel_args=ka, l_max=256)
    return SequenceModel(cfg).eval()


def _ck(model):
    return Checkpoint(path="test.safetensors", kernels=model.kernels, model=model, config=model.cfg.to_dict())


def _f64(kernel, L):
    with torch.no_grad():
        return copy.deepcopy(kernel).double()(L).numpy()


def test_sgconv_and_free_equal_the_module_output_exactly():
    for kind, ka in (("sgconv", {"kernel_dim": 16}), ("conv", {})):
        m = _model(kind, **ka)
        K = extract_kernels(_ck(m), 300)
        assert list(K) == ["layers.0", "layers.1"]
        for k, arr in zip(m.kernels, K.values(), strict=True):
            with torch.no_grad():
                ref = k(300).double().numpy()
            assert arr.dtype == np.float64 and arr.shape == (1, 8, 300)
            np.testing.assert_array_equal(arr, ref)


@pytest.mark.parametrize("ka", [{"d_state": 16}, {"d_state": 16, "disc": "bilinear"}, {"d_state": 8, "init": "real"},
                                {"d_state": 16, "n_ssm": 2, "bidirectional": True}])
def test_s4d_equals_float64_copy(ka):
    ka = dict(ka)
    bidir = ka.pop("bidirectional", False)
    torch.manual_seed(1)
    k = S4DKernel(8, l_max=256, bidirectional=bidir, **ka)
    K = extract_kernels([k], 1000)["layers.0"]
    ref = _f64(k, 1000)
    assert K.shape == ref.shape == (2 if bidir else 1, 8, 1000)
    assert np.abs(K - ref).max() <= 1e-12 * np.abs(ref).max()


def test_s4_equals_float64_copy_inside_and_beyond_l_kernel():
    torch.manual_seed(2)
    k = S4Kernel(4, d_state=16, l_max=128)
    for L in (100, 128, 700):  # Cauchy route (float64) inside l_kernel, block route beyond: the module's own
        K = extract_kernels([k], L)["layers.0"]
        ref = _f64(k, L)
        assert np.abs(K - ref).max() <= 1e-12 * np.abs(ref).max()
    assert int(k.l_kernel) == 128  # nothing stored was modified


def test_dss_goes_through_the_module():
    torch.manual_seed(3)
    k = S4DKernel(4, d_state=8, disc="dss")
    assert ssm_modes(k) is None
    K = extract_kernels([k], 64)["layers.0"]
    np.testing.assert_allclose(K, _f64(k, 64), rtol=0, atol=1e-12)


def test_cache_hits_and_invalidates_on_edit():
    clear_cache()
    m = _model("sgconv", kernel_dim=16)
    ck = _ck(m)
    a = extract_kernels(ck, 256)
    b = extract_kernels(ck, 256)
    assert a["layers.0"] is b["layers.0"]  # computed once
    assert not a["layers.0"].flags.writeable
    assert extract_kernels(ck, 128)["layers.0"].shape[-1] == 128  # another L, another entry
    with torch.no_grad():
        m.kernels[0].kernel_list[0].mul_(2.0)  # in-place edit bumps the version counter
    c = extract_kernels(ck, 256)
    assert c["layers.0"] is not a["layers.0"]
    assert not np.array_equal(c["layers.0"], a["layers.0"])
    np.testing.assert_array_equal(c["layers.1"], a["layers.1"])


def test_bad_length_raises_checkpoint_error():
    m = _model("s4d", d_state=8)
    with pytest.raises(CheckpointError):
        extract_kernels(_ck(m), 0)
    with pytest.raises(CheckpointError):
        extract_kernels(_ck(_model("sgconv", kernel_dim=16)), -5)


def test_kernel_table_and_modes():
    m = _model("s4d", d_state=16, n_ssm=2)
    rows = kernel_table(_ck(m))
    assert [r["name"] for r in rows] == ["layers.0", "layers.1"]
    r = rows[0]
    assert (r["kind"], r["H"], r["C_k"], r["d_state"], r["n_ssm"], r["disc"]) == ("s4d", 8, 1, 16, 2, "zoh")
    assert r["n_params"] == m.kernels[0].n_params
    res, lam = ssm_modes(m.kernels[0])
    assert res.shape == (1, 8, 16) and lam.shape == (8, 16) and res.dtype == np.complex128
    assert ssm_modes(SGConvKernel(4, 64, kernel_dim=8)) is None
    assert ssm_modes(FreeKernel(4, 64)) is None
    sg = kernel_table([SGConvKernel(4, 64, kernel_dim=8, mode="cat_randn_learnable")])[0]
    assert (sg["kind"], sg["kernel_dim"], sg["n_scales"], sg["mode"]) == ("sgconv", 8, 4, "cat_randn_learnable")


@pytest.mark.parametrize("kind", ["s4d", "s4"])
def test_ssm_kernels_equal_the_modal_sum_of_their_modes(kind):
    """Independent of the evaluator: K[c,h,l] = Re sum_m r lambda^l with numpy powers of `ssm_modes`."""
    torch.manual_seed(4)
    k = S4DKernel(6, d_state=16, channels=2, l_max=256) if kind == "s4d" else S4Kernel(4, d_state=16, l_max=128)
    r, lam = ssm_modes(k)
    L = 1500
    ref = np.einsum("chm,hml->chl", r, lam[..., None] ** np.arange(L)).real
    K = extract_kernels([k], L)["layers.0"]
    assert np.abs(K - ref).max() <= (1e-12 if kind == "s4d" else 1e-8) * np.abs(ref).max()


def test_layers_computes_only_the_requested_layers(monkeypatch):
    """layers=: only those layers are computed (the others' modules are never called), equal to the full
    extraction, cached per layer (a later full call reuses them); bad layers are one ValueError."""
    import analysis.extract as ex

    clear_cache()
    m = _model("s4d", d_state=8)
    ck = _ck(m)
    calls = []
    real = ex._kernel_array
    monkeypatch.setattr(ex, "_kernel_array", lambda k, L, dt: calls.append(k) or real(k, L, dt))
    one = extract_kernels(ck, 300, layers=[1])
    assert list(one) == ["layers.1"] and calls == [m.kernels[1]]
    np.testing.assert_array_equal(one["layers.1"], _f64(m.kernels[1], 300))
    assert list(extract_kernels(ck, 300, layers="layers.1")) == ["layers.1"] and len(calls) == 1  # by name: a hit
    full = extract_kernels(ck, 300)
    assert calls == [m.kernels[1], m.kernels[0]]  # only the missing layer was computed
    assert full["layers.1"] is one["layers.1"] and list(full) == ["layers.0", "layers.1"]
    np.testing.assert_array_equal(full["layers.0"], _f64(m.kernels[0], 300))
    assert list(extract_kernels(ck, 300, layers=[-1, 0])) == ["layers.0", "layers.1"]  # model order
    for bad in ([2], ["layers.9"], [1.5], [True]):
        with pytest.raises(ValueError, match="layer"):
            extract_kernels(ck, 300, layers=bad)
    with pytest.raises(ValueError, match="dtype"):
        extract_kernels(ck, 300, dtype="float16")


def test_float32_is_the_module_output_for_sgconv_and_the_rounded_float64_for_ssms():
    """dtype='float32': SGConv's own float32 kernel bit for bit; S4D's float64 kernel rounded once (so within
    2^-24 relative of the float64 taps, far tighter than a float32 evaluation); cached apart from float64."""
    clear_cache()
    sg = _model("sgconv", kernel_dim=16)
    K32 = extract_kernels(_ck(sg), 500, layers=[0], dtype="float32")["layers.0"]
    with torch.no_grad():
        ref = sg.kernels[0](500).numpy()
    assert K32.dtype == np.float32 and ref.dtype == np.float32
    np.testing.assert_array_equal(K32, ref)
    s4 = _model("s4d", d_state=16)
    ck = _ck(s4)
    K64 = extract_kernels(ck, 500, layers=[0])["layers.0"]
    K32 = extract_kernels(ck, 500, layers=[0], dtype=np.float32)["layers.0"]
    assert K32.dtype == np.float32 and K64.dtype == np.float64
    np.testing.assert_array_equal(K32, K64.astype(np.float32))
    assert np.max(np.abs(K32 - K64)) <= 2.0 ** -24 * np.max(np.abs(K64)) * 1.0001
    assert extract_kernels(ck, 500, layers=[0])["layers.0"] is K64  # the float32 entry did not replace it
