"""analysis.causality: causal models show no future dependence (float64), bidirectional ones do."""
import pytest
import torch

from analysis.causality import causality_check
from sgconv_core import Checkpoint, ModelConfig, SequenceModel


def _model(kind="sgconv", bidir=False, input_kind="continuous", pool="mean"):
    torch.manual_seed(0)
    ka = {"kernel_dim": 8} if kind == "sgconv" else ({"d_state": 8} if kind in ("s4d", "s4") else {})
    cfg = ModelConfig(d_input=3 if input_kind == "continuous" else 12, d_output=2, d_model=8, n_layers=2, kernel=kind,
                      kernel_args=ka, l_max=64, bidirectional=bidir, input_kind=input_kind, pool=pool)
    return SequenceModel(cfg).eval()


@pytest.mark.parametrize("kind", ["sgconv", "s4d", "s4", "conv"])
def test_causal_models_pass(kind):
    m = _model(kind)
    r = causality_check(m, 64, position=[0, 31, 62])
    assert r["ok"] and r["expected_ok"] is True and r["bidirectional"] is False
    assert r["max_past_grad"] > 0
    assert r["max_future_grad"] <= 1e-10 * r["max_past_grad"]
    assert [p["position"] for p in r["per_position"]] == [0, 31, 62]
    assert next(m.parameters()).dtype == torch.float32  # checked on a float64 copy; the model is untouched


@pytest.mark.parametrize("kind", ["sgconv", "s4d"])
def test_bidirectional_models_depend_on_the_future(kind):
    r = causality_check(_model(kind, bidir=True), 64)
    assert not r["ok"] and r["bidirectional"] is True and r["expected_ok"] is False
    assert r["ratio"] > 1e-3
    assert "expected" in r["note"]


def test_token_model_and_checkpoint():
    m = _model("sgconv", input_kind="tokens")
    ck = Checkpoint(path="t.safetensors", kernels=m.kernels, model=m)
    r = causality_check(ck, 48, position=10)
    assert r["ok"] and r["positions"] == [10]


def test_plain_sequence_module():
    class Cumsum(torch.nn.Module):
        def forward(self, x):
            return x.cumsum(1)

    class Reverse(torch.nn.Module):
        def forward(self, x):
            return x.flip(1).cumsum(1).flip(1)

    assert causality_check(Cumsum(), 16, d_input=2)["ok"]
    assert not causality_check(Reverse(), 16, d_input=2)["ok"]


def test_errors():
    m = _model()
    with pytest.raises(ValueError):
        causality_check(m, 1)
    with pytest.raises(ValueError):
        causality_check(m, 16, position=16)
    with pytest.raises(ValueError, match="no runnable model"):
        causality_check(Checkpoint(path="k.pt", kernels=m.kernels), 16)


def test_cli_causality(tmp_path, capsys):
    """`python -m analysis causality FILE`: the verdict on stdout, exit 0 when the model behaves as built (a
    causal model is causal, a bidirectional one reads the future), 2 for a file that cannot be read."""
    import json

    import sgconv_core
    from analysis.__main__ import main

    for name, bidir in (("causal", False), ("bidir", True)):
        sgconv_core.save(_model("s4d", bidir=bidir), tmp_path / f"{name}.safetensors")
    assert main(["causality", str(tmp_path / "causal.safetensors"), "-L", "32", "--positions", "3,20"]) == 0
    out = capsys.readouterr().out
    assert "causal.safetensors at L = 32, output positions [3, 20]: causal:" in out
    assert main(["causality", str(tmp_path / "bidir.safetensors"), "--json"]) == 0  # L = l_max = 64
    res = json.loads(capsys.readouterr().out)
    assert res["bidirectional"] is True and res["ok"] is False and res["positions"] == [32]
    assert main(["causality", str(tmp_path / "missing.safetensors")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_cli_causality_exit_1_when_a_causal_model_reads_the_future(tmp_path, monkeypatch, capsys):
    import analysis.causality
    import sgconv_core
    from analysis.__main__ import main

    sgconv_core.save(_model("sgconv"), tmp_path / "m.safetensors")
    leaky = {"max_future_grad": 0.5, "max_past_grad": 1.0, "ratio": 0.5, "ok": False, "positions": [8],
             "per_position": [], "bidirectional": False, "expected_ok": True, "note": "not causal: ..."}
    monkeypatch.setattr(analysis.causality, "causality_check", lambda *a, **k: leaky)
    assert main(["causality", str(tmp_path / "m.safetensors"), "-L", "16"]) == 1
    assert "not causal" in capsys.readouterr().out
