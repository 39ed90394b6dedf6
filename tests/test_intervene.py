"""Kernel interventions: the ConvLayer override hook, the transforms' known answers, the intervals, the CLI."""
from __future__ import annotations

import dataclasses
import json
import math
import os

import numpy as np
import pytest
import torch

import sgconv_core
from analysis import intervene as iv
from sgconv_core import ModelConfig, SequenceModel
from sgconv_core.kernels import S4DKernel, SGConvKernel
from sgconv_core.layers import ConvLayer, kernel_override

PRE = os.path.join(os.path.dirname(__file__), "..", "pretrained")


def tiny(kernel="sgconv", kargs=None, L=64, seq=False, seed=0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        cfg = ModelConfig(d_input=1, d_output=1 if seq else 10, d_model=8, n_layers=2, kernel=kernel,
                          kernel_args=dict(kargs or {}), l_max=L, pool="none" if seq else "mean")
        return SequenceModel(cfg).eval()


def outputs(model, x, grad: bool):
    with torch.set_grad_enabled(grad):
        return model(x).detach()


# ------------------------------------------------------------------------------------------------ the hook
@pytest.mark.parametrize("kernel,kargs", [("sgconv", {"kernel_dim": 4}), ("s4d", {"d_state": 4}), ("s4", {"d_state": 4})])
@pytest.mark.parametrize("grad", [False, True])
def test_identity_interventions_reproduce_outputs_bit_for_bit(kernel, kargs, grad):
    model = tiny(kernel, kargs)
    x = torch.randn(3, 64, 1, generator=torch.Generator().manual_seed(1))
    ref = outputs(model, x, grad)
    for fn in (iv.truncate_fn(64), iv.decay_fn(0.0)):
        with kernel_override(model, fn):
            assert torch.equal(outputs(model, x, grad), ref)
    assert all(lay.kernel_transform is None for lay in model.modules() if isinstance(lay, ConvLayer))


def test_override_changes_both_routes_alike_one_layer_only_and_always_restores():
    model = tiny("sgconv", {"kernel_dim": 4})
    x = torch.randn(2, 64, 1, generator=torch.Generator().manual_seed(2))
    ref = outputs(model, x, False)
    seen = []

    def fn(k):
        seen.append(tuple(k.shape))
        return iv.truncate_fn(1)(k)
    with kernel_override(model, fn, layer="layers.1"):
        blocks, whole = outputs(model, x, False), outputs(model, x, True)
    assert seen == [(1, 8, 64), (1, 8, 64)]  # one layer, once per route
    assert not torch.allclose(blocks, ref)
    torch.testing.assert_close(blocks, whole, rtol=1e-5, atol=1e-6)
    with pytest.raises(RuntimeError, match="boom"):
        with kernel_override(model, fn):
            raise RuntimeError("boom")
    assert torch.equal(outputs(model, x, False), ref)
    with pytest.raises(ValueError, match="no layer named 'layers.9'.*layers.0, layers.1"):
        with kernel_override(model, fn, layer="layers.9"):
            pass
    with pytest.raises(ValueError, match="must return a tensor of shape"):
        with kernel_override(model, lambda k: k[..., :3]):
            outputs(model, x, False)


# ------------------------------------------------------------------------------------------------ transforms
def test_truncate_at_1_keeps_only_lag_0_and_decay_known_answer():
    k = torch.randn(2, 3, 16, dtype=torch.float64)
    t1 = iv.truncate_fn(1)(k)
    assert torch.equal(t1[..., 0], k[..., 0]) and torch.count_nonzero(t1[..., 1:]) == 0
    t5 = iv.truncate_fn(5)(k)
    assert torch.equal(t5[..., :5], k[..., :5]) and torch.count_nonzero(t5[..., 5:]) == 0
    ones = torch.ones(1, 1, 4, dtype=torch.float64)
    assert iv.decay_fn(1.0)(ones).flatten().tolist() == pytest.approx([1, 1 / 2, 1 / 3, 1 / 4], rel=1e-12)
    assert iv.decay_fn(2.0)(3 * ones).flatten().tolist() == pytest.approx([3, 3 / 4, 3 / 9, 3 / 16], rel=1e-12)
    assert iv.log_grid(1024) == [1, 3, 7, 20, 53, 141, 380, 1024]
    assert iv.log_grid(4) == [1, 2, 3, 4]


def test_dropping_a_cat_scale_zeroes_exactly_its_segment():
    torch.manual_seed(3)
    k = SGConvKernel(d_model=4, l_max=64, kernel_dim=4, mode="cat_randn")  # segments 4, 4, 8, 16, 32
    full = k(64).detach()
    pieces = iv.scale_contributions(k, 64)
    assert iv.scale_lags(k, 64) == [(0, 4), (4, 8), (8, 16), (16, 32), (32, 64)]
    torch.testing.assert_close(sum(pieces), full, rtol=1e-6, atol=1e-7)
    for (a, b), p in zip(iv.scale_lags(k, 64), pieces):
        out = full - p
        assert torch.count_nonzero(out[..., a:b]) == 0
        assert torch.equal(out[..., :a], full[..., :a]) and torch.equal(out[..., b:], full[..., b:])


def test_ssm_compress_all_modes_is_the_kernel_and_top_mode_is_the_dominant_pair():
    torch.manual_seed(4)
    k = S4DKernel(d_model=3, d_state=8).double()
    r, lam = iv_modes(k)
    M = iv.n_modes(lam)
    assert M == 4  # 8 listed poles = 4 conjugate pairs
    full = iv.ssm_compressed(r, lam, 50, [M])[M]
    torch.testing.assert_close(full, k(50).detach(), rtol=1e-9, atol=1e-12)
    # synthetic: one strong pair and one weak real pole; N' = 1 keeps the strong pair only
    lam = np.array([[0.9 + 0.1j, 0.9 - 0.1j, 0.5]])
    r = np.array([[[1.0 + 0j, 1.0 + 0j, 0.01]]])
    one = iv.ssm_compressed(r, lam, 6, [1, 2])
    lags = np.arange(6)
    np.testing.assert_allclose(one[1][0, 0].numpy(), 2 * np.real((0.9 + 0.1j) ** lags), rtol=1e-12)
    np.testing.assert_allclose(one[2][0, 0].numpy(), 2 * np.real((0.9 + 0.1j) ** lags) + 0.01 * 0.5 ** lags,
                               rtol=1e-12)


def iv_modes(kernel):
    from analysis.extract import ssm_modes

    return ssm_modes(kernel)


def test_sgconv_compress_matches_fit_sgconv_and_reproduces_an_sgconv_kernel():
    from analysis.fit import fit_sgconv

    target = np.random.default_rng(5).standard_normal((1, 2, 64))
    out, p = iv.sgconv_compressed(target, 4)
    assert p == 4 * 5  # S = 1 + log2(64/4) = 5 scales of d = 4 weights
    np.testing.assert_allclose(out[0, 1].numpy(), fit_sgconv(target[0, 1], 4)["fitted"], atol=1e-10)
    torch.manual_seed(6)
    k = SGConvKernel(d_model=3, l_max=64, kernel_dim=8, mode="cat_randn")  # multiplier 2, as the fit assumes
    kk = k(64).detach().double().numpy()
    out, _ = iv.sgconv_compressed(kk, 8)
    assert np.linalg.norm(out.numpy() - kk) / np.linalg.norm(kk) < 1e-6
    bad, _ = iv.sgconv_compressed(kk, 1)
    assert np.linalg.norm(bad.numpy() - kk) / np.linalg.norm(kk) > 0.1


# ------------------------------------------------------------------------------------------------ metric
def test_score_known_answers():
    logits = torch.zeros(10, 3)
    logits[:5, 1] = 1  # 5 of 10 right
    y = torch.ones(10, dtype=torch.long)
    v, lo, hi = iv.score(logits, y, "accuracy")
    assert v == 0.5 and lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    y = torch.tensor([[1.0, 2.0], [2.0, 2.0]])
    pred = torch.tensor([[1.0, 0.0], [1.0, 2.0]])
    v, lo, hi = iv.score(pred, y, "nmse")
    assert v == pytest.approx(5 / 13)  # sse 4 + 1 over energy 5 + 8
    assert lo <= v <= hi
    v, *_ = iv.score(pred, y, "nmse", nmse_start=1)  # lag 1: positions t >= 1 only
    assert v == pytest.approx(4 / 8)


# ------------------------------------------------------------------------------------------------ intervene
def test_intervene_on_a_data_file_curve_and_identity(tmp_path):
    model = tiny("s4d", {"d_state": 4}, L=32, seq=True)
    x = torch.randn(20, 32, 1, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        y = model(x) + 0.01 * torch.randn(20, 32, 1, generator=torch.Generator().manual_seed(8))
        with kernel_override(model, iv.truncate_fn(1)):
            cut = model(x)
    want = ((cut - y) ** 2).sum().item() / (y ** 2).sum().item()  # NMSE of the model with lag 0 only
    path = tmp_path / "m.safetensors"
    sgconv_core.save(model, path, {})
    data = tmp_path / "d.npz"
    np.savez(data, x=x.numpy(), y=y.numpy())
    r = iv.intervene(str(path), "truncate", [1, 32], data=str(data))
    assert r["metric_name"] == "nmse" and r["n"] == 20 and r["values"] == [1, 32]
    assert r["metric"][1] == r["baseline"] and r["metric"][0] == pytest.approx(want, rel=1e-5)
    assert r["metric"][0] > 2 * r["baseline"]
    assert all(lo <= m <= hi for lo, m, hi in zip(r["ci_low"], r["metric"], r["ci_high"]))
    r = iv.intervene(str(path), "compress", data=str(data))
    assert r["compress_method"] == "ssm_modes" and r["values"] == [1, 2]
    assert r["metric"][-1] == pytest.approx(r["baseline"], rel=1e-4)
    r = iv.intervene(str(path), "decay", [0, 1], layer="layers.0", data=str(data))
    assert r["metric"][0] == r["baseline"] and r["layer"] == "layers.0"


def test_pretrained_sgconv_identity_baseline_is_the_card_and_compress_approaches_it():
    ck = sgconv_core.load(os.path.join(PRE, "digits-sgconv.safetensors"))
    r = iv.intervene(ck, "truncate", [1, 1024])
    assert r["n"] == 250 and r["baseline"] == pytest.approx(ck.card["test_value"])
    assert r["metric"][1] == r["baseline"]
    assert r["metric"][0] < 0.3 < r["ci_low"][1]  # lag 0 alone: near chance
    r = iv.intervene(ck, "compress", [32], n=100, seed=2)  # its own kernel_dim: the fit is exact
    assert abs(r["metric"][0] - r["baseline"]) <= 0.02


def test_pretrained_s4d_all_modes_reproduce_the_baseline():
    ck = sgconv_core.load(os.path.join(PRE, "digits-s4d.safetensors"))
    M = iv.n_modes(iv_modes(ck.kernels[0])[1])
    r = iv.intervene(ck, "compress", [1, M], n=100, seed=2)
    assert r["metric"][1] == pytest.approx(r["baseline"], abs=0.011)
    assert r["params_per_channel"] == [4, 4 * M]


# ------------------------------------------------------------------------------------------------ bad input + CLI
def test_bad_input_is_refused_before_running(tmp_path):
    sg = sgconv_core.load(os.path.join(PRE, "digits-sgconv.safetensors"))
    s4d = sgconv_core.load(os.path.join(PRE, "digits-s4d.safetensors"))
    cases = [((sg, "shrink"), "unknown kind 'shrink'"),
             ((sg, "truncate", [0]), r"K \(the first lag zeroed\) 0 is out of range; it must be in \[1, 1024\]"),
             ((sg, "truncate", [2048]), "out of range"),
             ((sg, "truncate", [2.5]), "whole numbers"),
             ((sg, "decay", [-0.5]), "t must be >= 0"),
             ((sg, "compress", [0]), r"d \(weights per scale\) 0 is out of range"),
             ((s4d, "scales"), "layer layers.0 has a s4d kernel; dropping a scale needs SGConv"),
             ((sg, "truncate", [1], "layers.7"), "no layer named 'layers.7'"),
             ((sg, "truncate", [float("nan")]), "finite numbers")]
    for args, msg in cases:
        with pytest.raises(ValueError, match=msg):
            iv.intervene(*args)
    with pytest.raises(ValueError, match="only 250 held-out examples"):
        iv.intervene(sg, "truncate", [1], n=300)
    with pytest.raises(ValueError, match="no runnable model"):
        iv.intervene(dataclasses.replace(sg, model=None), "truncate", [1])
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((4, 64, 3), np.float32), y=np.zeros(4, np.int64))
    with pytest.raises(ValueError, match="bad.npz"):
        iv.intervene(sg, "truncate", [1], data=str(bad))


def test_cli_json_keys_table_and_one_line_errors(tmp_path, capsys):
    model = tiny("sgconv", {"kernel_dim": 4}, L=32, seq=True)
    path = tmp_path / "m.safetensors"
    sgconv_core.save(model, path, {"task": "delay", "task_params": {"L": 32, "lag": 2, "n_test": 16}, "task_seed": 0})
    out = tmp_path / "r.json"
    rc = iv.main([str(path), "--kind", "scales", "--json", str(out)])
    text = capsys.readouterr().out
    assert rc == 0 and "unchanged" in text and "lags 0-4" in text
    r = json.loads(out.read_text())
    assert {"kind", "values", "metric", "metric_name", "baseline", "ci_low", "ci_high", "seconds"} <= set(r)
    assert r["kind"] == "scales" and r["metric_name"] == "nmse" and r["values"] == [0, 1, 2, 3]
    assert len(r["metric"]) == len(r["ci_low"]) == len(r["ci_high"]) == 4 and r["n"] == 16
    assert all(math.isfinite(v) for v in r["metric"])
    for argv, msg in [(["--kind", "truncate", "--values", "0"], "out of range"),
                      (["--kind", "decay", "--values", "-1"], "t must be >= 0"),
                      (["--kind", "truncate", "--layer", "x\x1b[31m"], "no layer named 'x"),
                      (["--kind", "truncate", "--n", "0"], "--n must be positive")]:
        rc = iv.main([str(path), *argv, "--json", str(tmp_path / "e.json")])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and msg in err[0], err
        assert "\x1b" not in err[0]
    with pytest.raises(SystemExit) as e:
        iv.main([str(path), "--kind", "shrink", "--json", str(out)])
    assert e.value.code == 2 and "invalid choice: 'shrink'" in capsys.readouterr().err
