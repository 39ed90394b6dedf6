"""sgconv_core.data (what a model takes; a user's data file checked before anything runs), evaluate --data,
and attribution of one layer. Known answers: shapes and messages by construction, NMSE of 2x the official
output = 0.25, accuracy of half-right targets = 0.5, a linear layer's attributions written out by hand."""
import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from official_layer import sgconv_layer_state

import sgconv_core
from sgconv_core import Checkpoint, ModelConfig, SequenceModel
from sgconv_core import data as D
from sgconv_core.data import DataError, InputSpec, check_input, input_spec, load_data, scores, task_misfit
from sgconv_core.evaluate import evaluate_data, main
from sgconv_core.kernels import build_kernel
from sgconv_core.layers import ConvLayer
from sgconv_core.tasks import get_task

FIX = Path(__file__).parent / "data" / "sgconv-lightning"
CKPT = FIX / "gconv_pipeline_last.ckpt"
X_FIX = FIX / "gconv_pipeline_input_B2_L1024_D2.npy"
Y_FIX = FIX / "gconv_pipeline_output.npy"


def _model(pool="mean", input_kind="continuous", d_input=1, d_output=10, L=64):
    torch.manual_seed(0)
    cfg = ModelConfig(d_input=d_input, d_output=d_output, d_model=8, n_layers=1, kernel="sgconv",
                      kernel_args={"kernel_dim": 8}, l_max=L, pool=pool, input_kind=input_kind)
    return SequenceModel(cfg).eval()


def _layer(H=3, L=64, activation="gelu", output="glu"):
    torch.manual_seed(1)
    k = build_kernel("sgconv", {"d_model": H, "channels": 1, "bidirectional": False, "l_max": L, "kernel_dim": 8})
    return ConvLayer(k, activation, output).eval()


SPEC_C = InputSpec("continuous", 2, "pooled", 1)


# ------------------------------------------------------------------------------------------ what a model takes
def test_input_spec_and_which_tasks_fit():
    s = input_spec(_model())
    assert (s.kind, s.width, s.output, s.d_output, s.dtype) == ("continuous", 1, "pooled", 10, torch.float32)
    assert s.input_text() == "(B, L, 1) float (continuous input, d_input = 1)"
    digits, delay, listops = (get_task(n).spec for n in ("digits", "delay", "listops"))
    assert task_misfit(s, digits) is None
    assert "per position" in task_misfit(s, delay)
    assert "tokens" in task_misfit(s, listops)
    assert task_misfit(input_spec(_model("none", d_output=1)), delay) is None
    tok = input_spec(_model(input_kind="tokens", d_input=16))
    assert (tok.kind, tok.width) == ("tokens", 16) and task_misfit(tok, listops) is None
    assert "vocabulary has 8" in task_misfit(input_spec(_model(input_kind="tokens", d_input=8)), listops)
    assert "d_input = 2" in task_misfit(input_spec(_model(d_input=2)), digits)
    layer = input_spec(_layer(H=3))
    assert (layer.kind, layer.width, layer.output, layer.d_output) == ("layer", 3, "layer", 3)
    for t in (digits, delay, listops):  # no task fits one layer: the sentence says what to give instead
        assert task_misfit(layer, t) == ("a single layer takes features (B, 3, L) float (one layer: H = 3 channels "
                                         "by L positions), not a task's input; give a data file of shape (B, 3, L)")
    with pytest.raises(DataError, match="cannot tell what input a Linear takes"):
        input_spec(torch.nn.Linear(2, 2))


def test_official_whole_model_spec_and_single_layer_error_is_clear():
    ck = sgconv_core.load(CKPT)
    s = input_spec(ck.model)
    assert (s.kind, s.width, s.output, s.d_output) == ("continuous", 2, "pooled", 1)
    # the defect: a task's (1, 1024, 1) input fed to one layer of H = 8 gave fft_conv's raw shape error
    with pytest.raises(DataError) as e:
        check_input(torch.zeros(1, 1024, 1), InputSpec("layer", 8, "layer", 8), "the example")
    assert str(e.value) == ("the example has shape (1, 1024, 1) float32; the layer takes (B, 8, L) float "
                            "(one layer: H = 8 channels by L positions)")


# ------------------------------------------------------------------------------------------------------ files
def test_npz_roundtrip_values_and_keys(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 50, 2)).astype(np.float32)
    y = rng.standard_normal((3, 1))
    np.savez(tmp_path / "a.npz", x=x, y=y)
    d = load_data(tmp_path / "a.npz", SPEC_C)
    assert (d.n, d.L, d.x_key, d.y_key, d.metric) == (3, 50, "x", "y", "nmse")
    assert d.x.dtype == torch.float32 and torch.equal(d.x, torch.from_numpy(x))
    np.testing.assert_array_equal(d.y.numpy(), y.astype(np.float32))
    np.savez(tmp_path / "b.npz", x, y[:, 0])  # positional names arr_0 / arr_1; (B,) floats for d_out = 1
    d = load_data(tmp_path / "b.npz", SPEC_C)
    assert (d.x_key, d.y_key, tuple(d.y.shape)) == ("arr_0", "arr_1", (3, 1))
    np.savez(tmp_path / "c.npz", inputs=x)
    d = load_data(tmp_path / "c.npz", SPEC_C)
    assert d.y is None and d.metric is None and "no targets" in d.describe()
    with pytest.raises(DataError, match="no targets found.*evaluation needs them"):
        load_data(tmp_path / "c.npz", SPEC_C, need_targets=True)
    np.savez(tmp_path / "d1.npz", x=x[..., 0])  # d_input = 1: (B, L) is read as (B, L, 1)
    d = load_data(tmp_path / "d1.npz", InputSpec("continuous", 1, "pooled", 10))
    assert tuple(d.x.shape) == (3, 50, 1)
    np.save(tmp_path / "x.npy", np.asfortranarray(x))  # .npy: the inputs alone (Fortran order too)
    d = load_data(tmp_path / "x.npy", SPEC_C)
    assert d.y is None and torch.equal(d.x, torch.from_numpy(x))


def test_shape_dtype_and_key_errors_name_file_key_expected_and_got(tmp_path):
    x = np.zeros((2, 16, 3), np.float32)
    f = tmp_path / "w.npz"
    np.savez(f, x=x)
    with pytest.raises(DataError) as e:
        load_data(f, SPEC_C)
    assert str(e.value) == (f"{f}: key 'x' has shape (2, 16, 3) float32; the model takes (B, L, 2) float "
                            "(continuous input, d_input = 2)")
    np.savez(f, q=x, r=x)
    with pytest.raises(DataError, match="no inputs found: expected a key named one of x, inputs, input, arr_0.*"
                                        "the file holds 'q', 'r'"):
        load_data(f, SPEC_C)
    np.savez(f, x=x[..., :2], inputs=x[..., :2])
    with pytest.raises(DataError, match="both 'x' and 'inputs' are present"):
        load_data(f, SPEC_C)
    np.savez(f, x=x[..., :2], y=np.zeros((3, 1)))
    with pytest.raises(DataError, match=r"key 'y' has shape \(3, 1\) float64; .* for 2 inputs the targets must be "
                                        r"integer class ids \(2,\) in \[0, 1\), or floats \(2, 1\) or \(2,\)"):
        load_data(f, SPEC_C)
    np.savez(f, x=x[..., :2].astype(np.complex64))
    with pytest.raises(DataError, match="dtype complex64, not a real number type"):
        load_data(f, SPEC_C)
    np.savez(f, x=np.zeros((2, 0, 2), np.float32))
    with pytest.raises(DataError, match="no examples"):
        load_data(f, SPEC_C)
    for name in ("data.csv", "data"):
        (tmp_path / name).write_bytes(b"1,2\n")
        with pytest.raises(DataError, match="unknown data file type"):
            load_data(tmp_path / name, SPEC_C)
    with pytest.raises(DataError, match="no such file"):
        load_data(tmp_path / "missing.npz", SPEC_C)
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(DataError, match="the file is empty"):
        load_data(tmp_path / "empty.npz", SPEC_C)


def test_nan_inf_tokens_and_class_ids(tmp_path):
    f = tmp_path / "n.npz"
    x = np.zeros((2, 8, 2), np.float32)
    x[1, 5, 0] = np.nan
    x[1, 6, 1] = np.inf
    np.savez(f, x=x)
    with pytest.raises(DataError, match=r"key 'x' holds 2 NaN or infinite value\(s\), the first at index \(1, 5, 0\)"):
        load_data(f, SPEC_C)
    np.savez(f, x=np.zeros((2, 8, 2), np.float32), y=np.array([1.0, np.nan]))
    with pytest.raises(DataError, match="key 'y' holds 1 NaN"):
        load_data(f, SPEC_C)
    tok = InputSpec("tokens", 16, "pooled", 10)
    ids = np.arange(20).reshape(2, 10) % 16
    ids[1, 3] = 16
    np.savez(f, x=ids, y=np.array([0, 9]))
    with pytest.raises(DataError, match=r"token ids must lie in \[0, 16\), but index \(1, 3\) holds 16"):
        load_data(f, tok)
    np.savez(f, x=ids.astype(np.float32) % 16)
    with pytest.raises(DataError, match="the ids must be integers"):
        load_data(f, tok)
    np.savez(f, x=ids % 16, y=np.array([0, 10]))
    with pytest.raises(DataError, match=r"class ids must lie in \[0, 10\), but index \(1,\) holds 10"):
        load_data(f, tok)
    np.savez(f, x=ids % 16, y=np.array([0, 9]))
    d = load_data(f, tok)
    assert d.x.dtype == torch.int64 and d.metric == "accuracy" and d.y.tolist() == [0, 9]


def test_pt_files_go_through_the_restricted_unpickler(tmp_path):
    x = torch.randn(2, 12, 2)
    y = torch.tensor([[0.5], [1.5]])
    for obj in ({"inputs": x, "targets": y}, (x, y), [x.numpy(), y.numpy()]):
        torch.save(obj, tmp_path / "d.pt")
        d = load_data(tmp_path / "d.pt", SPEC_C)
        assert torch.equal(d.x, x) and torch.equal(d.y, y) and d.metric == "nmse"
    torch.save(x, tmp_path / "one.pth")
    assert load_data(tmp_path / "one.pth", SPEC_C).y is None
    torch.save({"x": x, "y": "text"}, tmp_path / "s.pt")
    with pytest.raises(DataError, match="key 'y' is a str, not a tensor or numpy array"):
        load_data(tmp_path / "s.pt", SPEC_C)
    torch.save({"x": torch.zeros(2, 12, 2, dtype=torch.complex64)}, tmp_path / "c.pt")
    with pytest.raises(DataError, match="complex64, not a real number type"):
        load_data(tmp_path / "c.pt", SPEC_C)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pt_and_pickled_npz_are_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"x": torch.zeros(1, 4, 2), "y": _Evil(marker)}, tmp_path / "evil.pt")
    with pytest.raises(DataError, match="refused to load: the pickle references '(posix|nt).system'"):
        load_data(tmp_path / "evil.pt", SPEC_C)
    assert not marker.exists()
    np.savez(tmp_path / "obj.npz", x=np.array([_Evil(marker)], dtype=object))
    with pytest.raises(DataError, match="holds Python objects"):
        load_data(tmp_path / "obj.npz", SPEC_C)
    np.save(tmp_path / "obj.npy", np.array([_Evil(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="holds Python objects"):
        load_data(tmp_path / "obj.npy", SPEC_C)
    assert not marker.exists()
    (tmp_path / "raw.pt").write_bytes(pickle.dumps(_Evil(marker)))  # a legacy (non-zip) pickle
    with pytest.raises(DataError):
        load_data(tmp_path / "raw.pt", SPEC_C)
    assert not marker.exists()


def test_absurd_sizes_are_refused_before_reading(tmp_path, monkeypatch):
    # a 200-byte .npy whose header claims 10^12 values: refused from the header, nothing allocated
    f = tmp_path / "huge.npy"
    with open(f, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (10**6, 10**6, 2)})
    with pytest.raises(DataError, match="2,000,000,000,000 values, over the limit of 134,217,728"):
        load_data(f, SPEC_C)
    with open(f, "wb") as fh:  # a plausible header, but the data is missing
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (2, 10, 2)})
        fh.write(b"\0" * 16)
    with pytest.raises(DataError, match="the header promises 160 bytes but the file holds 16"):
        load_data(f, SPEC_C)
    with pytest.raises(DataError, match="over the longest sequence"):
        check_input(np.zeros((1, D.MAX_TASK_LENGTH + 1, 2), np.float32), SPEC_C)
    # a compressed .npz whose arrays inflate beyond the limit: refused from the zip directory
    np.savez_compressed(tmp_path / "bomb.npz", x=np.zeros((4, 4096, 2), np.float32))
    assert (tmp_path / "bomb.npz").stat().st_size < 4096
    monkeypatch.setattr(D, "MAX_DATA_BYTES", 64 * 1024)
    with pytest.raises(DataError, match="the arrays declare 131,200 bytes when inflated, over the data file limit"):
        load_data(tmp_path / "bomb.npz", SPEC_C)
    with pytest.raises(DataError, match="over the"):
        load_data(tmp_path / "bomb.npz", SPEC_C, max_bytes=100)
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="not a readable .npz file"):
        load_data(tmp_path / "bad.npz", SPEC_C)
    with zipfile.ZipFile(tmp_path / "many.npz", "w") as z:
        for i in range(D._MAX_MEMBERS + 1):
            z.writestr(f"a{i}.npy", b"")
    with pytest.raises(DataError, match="65 arrays, over the limit of 64"):
        load_data(tmp_path / "many.npz", SPEC_C)


# ------------------------------------------------------------------------------------------------------ scores
def test_scores_known_answers():
    pred = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    assert scores(pred, torch.tensor([1, 0, 0, 1]), "accuracy") == {"accuracy": 0.5}
    y = torch.tensor([[1.0], [-2.0]])
    s = scores(torch.tensor([[1.5], [-2.0]]), y, "nmse")
    assert s["mse"] == pytest.approx(0.125) and s["nmse"] == pytest.approx(0.125 / 2.5)
    with pytest.raises(DataError, match="do not match"):
        scores(torch.zeros(2, 3), y, "nmse")
    with pytest.raises(ValueError, match="unknown metric"):
        scores(pred, y, "f1")


# -------------------------------------------------------------------------------------------------- evaluation
def test_evaluate_data_on_the_official_fixture(tmp_path):
    x, out = np.load(X_FIX), np.load(Y_FIX).astype(np.float64)  # (2, 1024, 2), the official output (2, 1)
    np.savez(tmp_path / "exact.npz", x=x, y=out)
    r = evaluate_data(CKPT, tmp_path / "exact.npz")
    assert (r["metric"], r["n"], r["L"], r["data"]) == ("nmse", 2, 1024, "exact.npz")
    assert r["value"] == r["nmse"] < 1e-10  # our rebuilt model reproduces the official output
    np.savez(tmp_path / "double.npz", x=x, targets=2 * out)
    r = evaluate_data(CKPT, tmp_path / "double.npz")
    # pred = out, y = 2 out: mse = mean(out^2), nmse = mean(out^2) / mean(4 out^2) = 1/4
    assert r["nmse"] == pytest.approx(0.25, rel=1e-5)
    assert r["mse"] == pytest.approx(float(np.mean(out**2)), rel=1e-5)
    np.savez(tmp_path / "wrong.npz", x=x[..., :1], y=out)
    with pytest.raises(DataError, match=r"key 'x' has shape \(2, 1024, 1\) float32; the model takes \(B, L, 2\)"):
        evaluate_data(CKPT, tmp_path / "wrong.npz")


def test_evaluate_data_accuracy_known_answer(tmp_path):
    m = _model("mean", d_output=4, L=32)
    x = torch.randn(8, 32, 1, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        pred = m(x).argmax(-1)
    y = pred.clone()
    y[:6] = (y[:6] + 1) % 4  # 6 of 8 wrong
    np.savez(tmp_path / "c.npz", x=x.numpy(), y=y.numpy())
    r = evaluate_data(Checkpoint(path="m.safetensors", kernels=m.kernels, model=m), tmp_path / "c.npz", batch_size=3)
    assert (r["metric"], r["value"], r["n"]) == ("accuracy", 0.25, 8)


def test_evaluate_cli_data(tmp_path, capsys):
    x, out = np.load(X_FIX), np.load(Y_FIX)
    np.savez(tmp_path / "d.npz", x=x, y=2 * out)
    assert main([str(CKPT), "--data", str(tmp_path / "d.npz")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("gconv_pipeline_last.ckpt: nmse = 0.2500 (MSE")
    res = json.loads(lines[-1])
    assert res["metric"] == "nmse" and res["value"] == pytest.approx(0.25, rel=1e-5) and res["n"] == 2
    np.savez(tmp_path / "e.npz", x=x)
    assert main([str(CKPT), "--data", str(tmp_path / "e.npz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "no targets found" in err[0]
    assert main([str(CKPT), "--data", str(tmp_path / "missing.npz")]) == 2
    assert "missing.npz: no such file" in capsys.readouterr().err


# -------------------------------------------------------------------------------------------- one layer
def test_one_layer_data_file_and_attribution_known_answer(tmp_path):
    from analysis.attribution import attribute

    H, L, h, p = 3, 64, 1, 40
    layer = _layer(H, L, activation="id", output="linear").double()  # a linear layer: IG = input x gradient
    u = np.random.default_rng(2).standard_normal((2, H, L))
    np.savez(tmp_path / "feats.npz", x=u, y=u)
    d = load_data(tmp_path / "feats.npz", input_spec(layer))
    assert (d.n, d.L, d.metric, d.x.dtype) == (2, L, "nmse", torch.float64)
    res = attribute(layer, d.x[0], target=h, position=p, n_steps=8, internal_batch_size=8)
    # written out: y[h, p] = sum_i W[h, i] (sum_{j <= p} k_i[p - j] u_i[j] + D_i u_i[p]) + b_h, linear in u, so the
    # attribution of position j (zero baseline) is sum_i u_i[j] W[h, i] (k_i[p - j] + D_i [j == p])
    k = layer.kernel(L).detach().numpy()[0]  # (H, L)
    W = layer.output_linear.weight.detach().numpy()
    Dv = layer.D.detach().numpy()[0]
    want = np.zeros(L)
    for j in range(p + 1):
        want[j] = sum(u[0, i, j] * W[h, i] * (k[i, p - j] + (Dv[i] if j == p else 0.0)) for i in range(H))
    np.testing.assert_allclose(res.attr, want, rtol=1e-7, atol=1e-10 * np.abs(want).max())
    assert (res.output_kind, res.position, res.target) == ("sequence", p, h)
    assert res.note == f"output channel {h} at position {p}"
    with pytest.raises(ValueError, match=r"has shape \(1, 64, 1\) float32; the layer takes \(B, 3, L\)"):
        attribute(layer, torch.zeros(64, 1, dtype=torch.float32))


def test_official_single_layer_file_through_load(tmp_path):
    from analysis.attribution import attribute

    H = 8
    torch.save(sgconv_layer_state(H), tmp_path / "layer.pt")
    ck = sgconv_core.load(tmp_path / "layer.pt", mode="cat_randn", init_scale=0)
    spec = input_spec(ck.model)
    assert (spec.kind, spec.width) == ("layer", H)
    assert all(task_misfit(spec, get_task(t).spec).startswith("a single layer") for t in ("digits", "delay"))
    # the task's (1, 1024, 1) input the app used to feed it: now one clear error before anything runs
    with pytest.raises(ValueError, match=r"the example has shape \(1, 1024, 1\) float32; the layer takes \(B, 8, L\)"):
        attribute(ck, torch.zeros(1024, 1))
    np.save(tmp_path / "f.npy", np.random.default_rng(0).standard_normal((1, H, 128)).astype(np.float32))
    d = load_data(tmp_path / "f.npy", spec)
    res = attribute(ck, d.x[0], target=3, position=100, n_steps=16, internal_batch_size=16)
    a = np.abs(res.attr)
    assert res.L == 128 and a[:101].max() > 0 and a[101:].max() <= 1e-5 * a[:101].max()  # causal
    assert abs(res.total - (res.f_x - res.f_baseline)) <= abs(res.delta) + 1e-6
