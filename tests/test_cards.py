"""Cards carry the test split's n and 95 % interval (and ListOps baselines); `cards --rescore` adds them to an
existing checkpoint without touching its weights; the zoo table shows them; evaluate never calls re-draws fresh."""
import json
import os
import struct

import pytest
import torch

import sgconv_core
from sgconv_core.baselines import listops_baselines
from sgconv_core.cards import read_card, read_metadata, rescore, rewrite_metadata
from sgconv_core.errors import CheckpointError
from sgconv_core.stats import nmse_ci, wilson_interval
from sgconv_core.train import TrainConfig, train

NEW_FIELDS = ("test_n", "test_ci", "test_interval")


def _tiny(task, out, **kw):
    cfg = dict(task=task, family="s4d", kernel_args={"d_state": 8}, d_model=16, n_layers=1, batch_size=16,
               steps=20, eval_every=10, threads=1, out=str(out))
    cfg.update(kw)
    return train(TrainConfig(**cfg))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("cards")
    digits = _tiny("digits", d / "digits-s4d.safetensors", task_params={"L": 64})
    delay = _tiny("delay", d / "delay-s4d.safetensors", task_params={"L": 64, "lag": 4, "n_train": 200,
                                                                     "n_val": 40, "n_test": 60})
    listops = _tiny("listops", d / "listops-s4d.safetensors", task_params={"n_train": 400, "n_val": 50,
                                                                          "n_test": 120})
    return {"digits": digits, "delay": delay, "listops": listops, "dir": d}


def _split_bytes(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def test_new_cards_carry_n_and_a_known_interval(trained):
    c = trained["digits"].card
    n = 250  # the digits test split
    k = round(c["test_value"] * n)
    assert c["test_n"] == n and c["test_interval"] == "Wilson"
    assert c["test_ci"] == list(wilson_interval(k, n)) and c["test_ci"][0] <= c["test_value"] <= c["test_ci"][1]
    d = trained["delay"]
    c = d.card
    from sgconv_core.tasks import get_task

    task = get_task("delay", **c["task_params"])
    x, y = task.split("test")
    with torch.no_grad():
        pred = d.model.eval()(x).double()
    sse = ((pred - y.double())[:, 4:] ** 2).reshape(60, -1).sum(1).numpy()
    energy = (y.double()[:, 4:] ** 2).reshape(60, -1).sum(1).numpy()
    assert c["test_n"] == 60 and c["test_interval"].startswith("bootstrap")
    assert c["test_ci"] == pytest.approx(list(nmse_ci(sse, energy, seed=0)), rel=1e-6)
    assert c["test_ci"][0] < c["test_value"] < c["test_ci"][1]
    assert "test_baselines" not in c


def test_listops_cards_carry_the_three_baselines_on_the_test_split(trained):
    c = trained["listops"].card
    from sgconv_core.tasks import task_from_card

    want = listops_baselines(task_from_card(c), "test")
    assert set(c["test_baselines"]) == {"majority", "operator_lookup", "one_level"}
    for name, b in c["test_baselines"].items():
        assert b["n"] == 120 and b["value"] == want[name]["value"]
        assert b["ci"] == [want[name]["ci_low"], want[name]["ci_high"]]
    assert c["task_spec"]["params"]["min_depth"] == 3 and c["task_spec"]["params"]["L"] == 192


@pytest.mark.parametrize("which", ["digits", "delay", "listops"])
def test_rescore_restores_the_fields_and_keeps_weights_byte_identical(trained, which, tmp_path):
    src = trained["dir"] / f"{which}-s4d.safetensors"
    path = tmp_path / src.name
    path.write_bytes(src.read_bytes())
    full = read_card(path)
    old = {k: v for k, v in full.items() if k not in (*NEW_FIELDS, "test_baselines")}
    meta = read_metadata(path)
    meta["card"] = json.dumps(old)
    rewrite_metadata(path, meta)  # an old-style card, as written before these fields existed
    header0, data0 = _split_bytes(path)
    assert "test_ci" not in read_card(path)
    new = rescore(path)
    header1, data1 = _split_bytes(path)
    assert data1 == data0 == _split_bytes(src)[1]  # the tensors' bytes are untouched
    assert {k: v for k, v in header1.items() if k != "__metadata__"} == \
        {k: v for k, v in header0.items() if k != "__metadata__"}
    assert (8 + len(json.dumps(header1, separators=(",", ":")))) <= os.path.getsize(path)
    for k in (*NEW_FIELDS, "test_baselines"):
        if k in full:
            assert new[k] == pytest.approx(full[k]) if k == "test_ci" else new[k] == full[k], k
    assert read_card(path) == json.loads(json.dumps(new))
    ck, ref = sgconv_core.load(path), sgconv_core.load(src)
    for k, v in ref.model.state_dict().items():
        assert torch.equal(ck.model.state_dict()[k], v)


def test_rescore_refuses_a_card_that_does_not_describe_the_weights(trained, tmp_path):
    src = trained["dir"] / "digits-s4d.safetensors"
    path = tmp_path / src.name
    path.write_bytes(src.read_bytes())
    meta = read_metadata(path)
    card = json.loads(meta["card"])
    card["test_value"] = card["test_value"] + 0.004  # one image off out of 250
    meta["card"] = json.dumps(card)
    rewrite_metadata(path, meta)
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match="differs from the card"):
        rescore(path)
    assert path.read_bytes() == before
    # an explicit, looser tolerance (float32 differences between CPUs) is accepted and recorded
    new = rescore(path, tolerance=0.005)
    assert new["rescore"]["tolerance"] == 0.005
    assert new["rescore"]["value"] == pytest.approx(card["test_value"] - 0.004, abs=1e-12)
    with pytest.raises(ValueError, match="tolerance"):
        rescore(path, tolerance=-1)


def test_rescore_cli(trained, tmp_path, capsys):
    from sgconv_core.cards import main

    src = trained["dir"] / "digits-s4d.safetensors"
    path = tmp_path / src.name
    path.write_bytes(src.read_bytes())
    assert main(["--rescore", str(path)]) == 0
    out = capsys.readouterr().out
    assert "95% CI [" in out and "n = 250" in out and "weights unchanged" in out
    assert main(["--rescore", str(tmp_path / "missing.safetensors")]) == 2
    assert "error:" in capsys.readouterr().err
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint")
    assert main(["--rescore", str(junk)]) == 2
    assert main([str(path)]) == 0 and json.loads(capsys.readouterr().out)["test_n"] == 250


def test_zoo_table_shows_value_ci_n_and_listops_baselines(trained):
    from sgconv_core.zoo_table import markdown, target_met

    table = markdown(str(trained["dir"]))
    c = trained["digits"].card
    lo, hi = c["test_ci"]
    assert f"{100 * c['test_value']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] % (250)" in table
    assert "### Baselines on the same test split" in table
    b = trained["listops"].card["test_baselines"]["one_level"]
    assert f"{100 * b['value']:.1f} [{100 * b['ci'][0]:.1f}, {100 * b['ci'][1]:.1f}] % (120)" in table
    base = {"task": "listops", "family": "s4", "test_value": 0.40, "test_ci": [0.38, 0.42],
            "test_baselines": {"one_level": {"value": 0.33, "n": 2000, "ci": [0.31, 0.35]}}}
    assert target_met(base) is True
    assert target_met({**base, "test_ci": [0.34, 0.42]}) is False  # not measurably above one-level
    assert target_met({**base, "test_value": 0.34}) is False        # under 35 %
    assert target_met({k: v for k, v in base.items() if k != "test_baselines"}) is False
    assert target_met({"task": "delay", "family": "sgconv", "test_value": 0.5}) is None


def test_evaluate_refuses_more_digits_than_its_test_split(trained):
    from sgconv_core.evaluate import evaluate, main

    path = str(trained["dir"] / "digits-s4d.safetensors")
    with pytest.raises(ValueError, match="re-sampling"):
        evaluate(path, n=251)
    assert main([path, "--n", "251"]) == 2
    out = evaluate(path, n=250)
    assert out["source"] == "test_split" and "fresh" not in out["examples"] and out["n_unique"] == 250
    assert {"n", "n_unique", "ci_low", "ci_high"} <= set(out)


def test_evaluate_prints_the_card_value_with_its_interval_and_n(trained, capsys):
    from sgconv_core.evaluate import main

    path = str(trained["dir"] / "digits-s4d.safetensors")
    assert main([path, "--n", "100", "--seed", "2"]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    c = read_card(path)
    assert "n = 100" in line and "95% CI [" in line
    assert (f"card (test split): {c['test_value']:.4f}, 95% CI [{c['test_ci'][0]:.4f}, {c['test_ci'][1]:.4f}], "
            f"n = 250") in line
    meta = read_metadata(path)
    old = {k: v for k, v in json.loads(meta["card"]).items() if k not in NEW_FIELDS}
    meta["card"] = json.dumps(old)
    rewrite_metadata(path, meta)
    try:
        assert main([path, "--n", "100"]) == 0
        assert "no n or interval in this card: python -m sgconv_core.cards --rescore" in capsys.readouterr().out
    finally:
        rescore(path)
