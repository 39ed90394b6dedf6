"""FFT convolution against direct convolution; the sequence model; our checkpoint format."""
import numpy as np
import pytest
import torch

import sgconv_core
from sgconv_core import CheckpointError, ModelConfig, SequenceModel, fft_conv


def test_causal_fft_conv_matches_numpy_convolve():
    rng = np.random.default_rng(0)
    u, k, D = rng.normal(size=(2, 3, 50)), rng.normal(size=(2, 3, 50)), rng.normal(size=(2, 3))
    y = fft_conv(torch.tensor(u), torch.tensor(k), torch.tensor(D)).numpy()
    for b in range(2):
        for c in range(2):
            for h in range(3):
                ref = np.convolve(u[b, h], k[c, h])[:50] + D[c, h] * u[b, h]
                assert np.allclose(y[b, c, h], ref, atol=1e-12)


def test_bidirectional_fft_conv_matches_direct_sum():
    """Backward half acts at negative lags -(j+1): y[t] += sum_j k1[j] u[t+j+1]."""
    rng = np.random.default_rng(1)
    L = 40
    u, k, D = rng.normal(size=(1, 2, L)), rng.normal(size=(2, 2, L)), rng.normal(size=(1, 2))
    y = fft_conv(torch.tensor(u), torch.tensor(k), torch.tensor(D), bidirectional=True).numpy()
    for h in range(2):
        fwd = np.convolve(u[0, h], k[0, h])[:L]
        bwd = np.array([sum(k[1, h, j] * u[0, h, t + j + 1] for j in range(L - t - 1)) for t in range(L)])
        assert np.allclose(y[0, 0, h], fwd + bwd + D[0, h] * u[0, h], atol=1e-12)


def test_shorter_kernel_is_zero_padded_linear_conv():
    rng = np.random.default_rng(2)
    u, k = rng.normal(size=(1, 1, 64)), rng.normal(size=(1, 1, 16))
    y = fft_conv(torch.tensor(u), torch.tensor(k)).numpy()
    assert np.allclose(y[0, 0, 0], np.convolve(u[0, 0], k[0, 0])[:64], atol=1e-12)


@pytest.mark.parametrize("kind,args", [("sgconv", {"kernel_dim": 8}), ("s4", {"d_state": 8}),
                                       ("s4d", {"d_state": 8}), ("conv", {})])
def test_model_runs_and_is_causal(kind, args):
    torch.manual_seed(0)
    m = SequenceModel(ModelConfig(d_input=2, d_output=3, d_model=8, n_layers=2, kernel=kind, kernel_args=args,
                                  l_max=64, pool="none")).double()
    x = torch.randn(2, 64, 2, dtype=torch.float64, requires_grad=True)
    y = m(x)
    assert y.shape == (2, 64, 3)
    y[0, 30].sum().backward()
    past = x.grad[0, :31].abs().max()
    assert past > 0 and x.grad[0, 31:].abs().max() < 1e-12 * past  # FFT round-off only
    assert [k.name for k in m.kernels] == ["layers.0", "layers.1"]


def test_token_model():
    m = SequenceModel(ModelConfig(d_input=16, d_output=10, d_model=8, input_kind="tokens", l_max=32,
                                  kernel_args={"kernel_dim": 8}))
    assert m(torch.randint(0, 16, (3, 32))).shape == (3, 10)
    with pytest.raises(ValueError):
        m(torch.randn(3, 32))


@pytest.mark.parametrize("kind,args", [("sgconv", {"kernel_dim": 8, "mode": "cat_randn_learnable"}),
                                       ("s4", {"d_state": 8}), ("s4d", {"d_state": 8, "init": "real"}),
                                       ("conv", {})])
def test_save_load_round_trip_is_bitwise(tmp_path, kind, args):
    torch.manual_seed(1)
    cfg = ModelConfig(d_input=1, d_output=4, d_model=8, n_layers=2, kernel=kind, kernel_args=args, l_max=128,
                      bidirectional=kind == "sgconv")
    m = SequenceModel(cfg)
    path = tmp_path / "m.safetensors"
    sgconv_core.save(m, path, card={"task": "digits", "value": 0.5})
    ck = sgconv_core.load(path)
    assert ck.card == {"task": "digits", "value": 0.5}
    assert ck.config == cfg.to_dict() and ck.layout == "kernelscope" and ck.family == kind
    a, b = m.state_dict(), ck.model.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key
    for k1, k2 in zip(m.kernels, ck.kernels):
        assert torch.equal(k1(300), k2(300))
    x = torch.randn(2, 128, 1)
    m.eval()
    assert torch.equal(m(x), ck.model(x))


def test_nan_weights_and_wrong_shapes_are_refused(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    m = SequenceModel(ModelConfig(d_input=1, d_output=2, d_model=4, n_layers=1, kernel="s4d", kernel_args={"d_state": 4}))
    path = tmp_path / "m.safetensors"
    sgconv_core.save(m, path)
    with safe_open(path, "pt") as f:
        meta = f.metadata()
    t = load_file(path)
    t["layers.0.layer.kernel.A_real"][0, 0] = float("nan")
    save_file(t, tmp_path / "nan.safetensors", metadata=meta)
    with pytest.raises(CheckpointError, match=r"nan.safetensors: key 'layers.0.layer.kernel.A_real' holds 1 NaN"):
        sgconv_core.load(tmp_path / "nan.safetensors")
    t = load_file(path)
    t["layers.0.layer.D"] = torch.zeros(3, 3)
    save_file(t, tmp_path / "shape.safetensors", metadata=meta)
    with pytest.raises(CheckpointError, match=r"key 'layers.0.layer.D' has shape \(3, 3\) but \(1, 4\)"):
        sgconv_core.load(tmp_path / "shape.safetensors")
    t = load_file(path)
    del t["decoder.bias"]
    save_file(t, tmp_path / "missing.safetensors", metadata=meta)
    with pytest.raises(CheckpointError, match="decoder.bias' is missing"):
        sgconv_core.load(tmp_path / "missing.safetensors")
