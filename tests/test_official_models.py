"""Official whole models run: ``ck.model(x)`` equals the official forward.

The genuine v4 Lightning SGConv checkpoint (tests/data/sgconv-lightning, see its README) against the output and
backbone features the official code computed on the stored input.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import sgconv_core

DATA = Path(__file__).parent / "data" / "sgconv-lightning"
CKPTS = ["gconv_pipeline_last.ckpt", "gconv_pipeline_last_plain_hparams.ckpt"]


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("name", CKPTS)
def test_genuine_lightning_sgconv_whole_model_matches_official_output(name):
    ck = sgconv_core.load(DATA / name)
    assert ck.model is not None, ck.warnings
    assert not any("kernels only" in w for w in ck.warnings)
    x = torch.from_numpy(np.load(DATA / "gconv_pipeline_input_B2_L1024_D2.npy"))       # (2, 1024, 2)
    ref = np.load(DATA / "gconv_pipeline_output.npy").astype(np.float64)               # (2, 1)
    with torch.no_grad():
        y = ck.model(x).double().numpy()
    assert y.shape == ref.shape == (2, 1)
    assert _rel(y, ref) <= 1e-5


@pytest.mark.parametrize("name", CKPTS)
def test_genuine_lightning_sgconv_backbone_features_match_official(name):
    ck = sgconv_core.load(DATA / name)
    x = torch.from_numpy(np.load(DATA / "gconv_pipeline_input_B2_L1024_D2.npy"))
    ref = np.load(DATA / "gconv_pipeline_backbone_features.npy").astype(np.float64)    # (2, 1024, 8)
    with torch.no_grad():
        h = ck.model.backbone_features(x).double().numpy()
    assert h.shape == ref.shape == (2, 1024, 8)
    assert _rel(h, ref) <= 1e-5
    assert _rel(h[:, -1], ref[:, -1]) <= 1e-5         # the step the 'last' decoder reads


def _lightning_obj(pool):
    obj = torch.load(DATA / "gconv_pipeline_last_plain_hparams.ckpt", weights_only=True)
    obj["hyper_parameters"]["model"]["pool"] = pool
    return obj


@pytest.mark.parametrize("pool", [None, {}, {"_name_": "pool", "stride": 1, "expand": 1}])
def test_identity_pool_variants_are_rebuilt(pool):
    from sgconv_core.checkpoints.layouts import from_object

    ck = from_object(_lightning_obj(pool), "x.ckpt")
    assert ck.model is not None, ck.warnings


@pytest.mark.parametrize("pool,why", [({"_name_": "pool", "stride": 4, "expand": None}, "stride 4"),
                                      ({"_name_": "pool", "stride": 1, "expand": 2}, "expand 2"),
                                      ({"_name_": "mpool", "stride": 1}, "'mpool'")])
def test_downsampling_pool_is_refused_with_reason(pool, why):
    from sgconv_core.checkpoints.layouts import from_object

    ck = from_object(_lightning_obj(pool), "x.ckpt")
    assert ck.model is None
    msgs = [w for w in ck.warnings if "kernels only" in w]
    assert len(msgs) == 1 and "model.pool" in msgs[0] and why in msgs[0]


def test_adding_dataset_one_output_per_sequence_without_a_warning():
    ck = sgconv_core.load(DATA / "gconv_pipeline_last.ckpt")
    assert ck.model is not None and not any("l_output" in w for w in ck.warnings)


def test_unknown_dataset_warns_once_that_l_output_is_not_stored():
    from sgconv_core.checkpoints.layouts import from_object

    obj = _lightning_obj(None)
    obj["hyper_parameters"]["dataset"]["_name_"] = "my_data"
    ck = from_object(obj, "x.ckpt")
    msgs = [w for w in ck.warnings if "l_output" in w]
    assert ck.model is not None and len(msgs) == 1
    assert "'my_data'" in msgs[0] and "last step" in msgs[0] and "Pass" not in msgs[0]


@pytest.mark.parametrize("change,why", [(("dataset", "_name_", "copying"), "several outputs"),
                                        (("decoder", "mode", "first"), "'first'"),
                                        (("decoder", "use_lengths", True), "use_lengths")])
def test_decoders_we_do_not_rebuild_are_refused_with_reason(change, why):
    from sgconv_core.checkpoints.layouts import from_object

    obj = _lightning_obj(None)
    section, key, value = change
    obj["hyper_parameters"][section][key] = value
    ck = from_object(obj, "x.ckpt")
    msgs = [w for w in ck.warnings if "kernels only" in w]
    assert ck.model is None and len(msgs) == 1 and why in msgs[0]


# ------------------------------------------------------------------ v4 S4 / S4D whole models (Lightning .ckpt)
# Keys as state-spaces/s4 v4 train.py writes them: encoder.0 (Linear), model.layers.{i}.layer (S4Block) with
# .layer (FFTConv: D, kernel.*) and .output_linear.0 (Linear, then GLU), model.layers.{i}.norm.norm (LayerNorm),
# model.norm.norm (final LayerNorm, prenorm), decoder.0.output_transform (Linear). The reference below follows
# src/models/sequence/{backbones/model.py, backbones/block.py, modules/s4block.py, kernels/fftconv.py} and
# src/tasks/decoders.py, in float64 numpy; the kernels come from the dense float64 references of test_foreign.
from test_foreign import dplr_ref, gen, npc, s4_v4_sd, s4d_v4_sd, softplus, tile, v4_ref  # noqa: E402

H4, D_IN, D_OUT, L_MAX = 3, 2, 5, 64


def _erf(x):
    from math import erf
    return np.vectorize(erf)(x)


def _gelu(x):
    return 0.5 * x * (1 + _erf(x / np.sqrt(2)))


def _ln(x, w, b):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-5) * w + b


def _v4_state_dict(kind: str, n_layers: int, prenorm: bool) -> dict:
    g = gen(70)
    sd = {"encoder.0.weight": torch.randn(H4, D_IN, generator=g), "encoder.0.bias": torch.randn(H4, generator=g),
          "decoder.0.output_transform.weight": torch.randn(D_OUT, H4, generator=g),
          "decoder.0.output_transform.bias": torch.randn(D_OUT, generator=g)}
    if prenorm:
        sd["model.norm.norm.weight"] = torch.rand(H4, generator=g) + 0.5
        sd["model.norm.norm.bias"] = torch.randn(H4, generator=g)
    for i in range(n_layers):
        if kind == "s4":
            layer = s4_v4_sd(H=H4, N=8, Lk=32, p="layer.layer.", g=gen(80 + i))
        else:
            layer = s4d_v4_sd(H=H4, N2=4, p="layer.layer.", g=gen(90 + i))
        sd.update({f"model.layers.{i}.{k}": v for k, v in layer.items()})
        sd[f"model.layers.{i}.norm.norm.weight"] = torch.rand(H4, generator=g) + 0.5
        sd[f"model.layers.{i}.norm.norm.bias"] = torch.randn(H4, generator=g)
    return sd


def _v4_config(kind: str, n_layers: int, prenorm: bool, mode: str) -> dict:
    layer = {"_name_": "s4", "d_state": 8, "channels": 1, "bidirectional": False, "gate": None, "bottleneck": None,
             "activation": "gelu", "mult_act": None, "final_act": "glu", "postact": None, "dt_transform": "softplus",
             "mode": "nplr" if kind == "s4" else "diag", "l_max": "${dataset.l_max}"}
    if kind == "s4d":
        layer["disc"] = "zoh"
    return {"model": {"_name_": "model", "d_model": H4, "n_layers": n_layers, "prenorm": prenorm, "transposed": False,
                      "residual": "R", "norm": "layer", "pool": {"_name_": "pool", "stride": 1, "expand": None},
                      "dropout": 0.0, "layer": layer},
            "dataset": {"_name_": "adding", "l_max": L_MAX}, "encoder": "linear",
            "decoder": {"_name_": "sequence", "mode": mode}}


def _kernel_ref(kind: str, sd: dict, i: int, Lk: int) -> np.ndarray:
    """(1, H, Lk) float64 kernel of layer i: softplus dt, DPLR bilinear (S4) or diag zoh (S4D)."""
    q = f"model.layers.{i}.layer.layer.kernel."
    if kind == "s4d":
        return v4_ref(sd, q, Lk, "softplus", "zoh", H4)
    dt = softplus(sd[q + "inv_dt"].double().numpy()[:, 0])
    A = tile(-np.exp(sd[q + "A_real"].double().numpy()) - 1j * sd[q + "A_imag"].double().numpy(), H4, 0)
    return dplr_ref(dt, A, tile(npc(sd[q + "P"]), H4, 1), tile(npc(sd[q + "B"])[0], H4, 0), npc(sd[q + "C"]),
                    int(sd[q + "l_kernel"]), Lk)


def _v4_reference(kind, sd, n_layers, prenorm, mode, x):
    """Official v4 pipeline forward, float64: x (B, L, d_in) -> (B, d_out)."""
    f = {k: v.double().numpy() for k, v in sd.items() if v.is_floating_point()}
    B, L, _ = x.shape
    h = x @ f["encoder.0.weight"].T + f["encoder.0.bias"]                       # (B, L, H)
    for i in range(n_layers):
        p = f"model.layers.{i}."
        y = _ln(h, f[p + "norm.norm.weight"], f[p + "norm.norm.bias"]) if prenorm else h
        K = _kernel_ref(kind, sd, i, min(L, L_MAX))[0]                          # FFTConv: min(L, l_max) taps
        D = f[p + "layer.layer.D"][0]
        conv = np.stack([[np.convolve(y[b, :, c], K[c])[:L] for c in range(H4)] for b in range(B)]).transpose(0, 2, 1)
        z = _gelu(_gelu(conv + D * y))          # FFTConv's own GELU, then the S4Block's activation
        z = z @ f[p + "layer.output_linear.0.weight"].T + f[p + "layer.output_linear.0.bias"]
        z = z[..., :H4] / (1 + np.exp(-z[..., H4:]))                            # GLU
        h = h + z                                                               # residual 'R'
        if not prenorm:
            h = _ln(h, f[p + "norm.norm.weight"], f[p + "norm.norm.bias"])
    if prenorm:
        h = _ln(h, f["model.norm.norm.weight"], f["model.norm.norm.bias"])
    pooled = h[:, -1] if mode == "last" else h.mean(1)                          # SequenceDecoder, l_output=0
    return pooled @ f["decoder.0.output_transform.weight"].T + f["decoder.0.output_transform.bias"]


def _save_v4(tmp_path, kind, n_layers, prenorm, mode, omegaconf):
    sd = _v4_state_dict(kind, n_layers, prenorm)
    cfg = _v4_config(kind, n_layers, prenorm, mode)
    if omegaconf:
        oc = pytest.importorskip("omegaconf")
        cfg = oc.OmegaConf.create(cfg)
    else:
        cfg["model"]["layer"]["l_max"] = L_MAX
    obj = {"epoch": 1, "global_step": 4, "pytorch-lightning_version": "2.1.0", "state_dict": sd,
           "hyper_parameters": cfg, "hparams_name": "config", "hparams_type": type(cfg),
           "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.001, "betas": [0.9, 0.999], "params": []}]}]}
    path = tmp_path / f"{kind}_last.ckpt"
    torch.save(obj, path)
    return sd, path


@pytest.mark.parametrize("kind,n_layers,prenorm,mode,omegaconf", [
    ("s4", 2, True, "pool", True), ("s4d", 2, True, "last", True),
    ("s4", 1, False, "last", False), ("s4d", 3, False, "pool", False)])
def test_v4_lightning_s4_whole_model_matches_official_forward(tmp_path, kind, n_layers, prenorm, mode, omegaconf):
    sd, path = _save_v4(tmp_path, kind, n_layers, prenorm, mode, omegaconf)
    ck = sgconv_core.load(path)
    assert ck.model is not None, ck.warnings
    assert ck.layout == f"{kind}-v4-lightning" and not any("kernels only" in w for w in ck.warnings)
    for L in (48, 80):                                   # 80 > l_max: FFTConv clips the kernel at 64 taps
        x = torch.randn(2, L, D_IN, generator=gen(L), dtype=torch.float64)
        ref = _v4_reference(kind, sd, n_layers, prenorm, mode, x.numpy())
        with torch.no_grad():
            y = ck.model(x.float()).double().numpy()
        assert y.shape == ref.shape == (2, D_OUT)
        assert _rel(y, ref) <= 1e-5, (L, _rel(y, ref))


def test_v4_reference_tells_single_from_double_gelu(tmp_path):
    """The check above can fail: one GELU (the standalone S4Block) is far from the pipeline's output."""
    sd, path = _save_v4(tmp_path, "s4d", 1, True, "pool", False)
    ck = sgconv_core.load(path)
    x = torch.randn(2, 48, D_IN, generator=gen(1), dtype=torch.float64)
    with torch.no_grad():
        y2 = ck.model(x.float()).double().numpy()
        ck.model.layers[0].layer.activation = torch.nn.GELU()
        y1 = ck.model(x.float()).double().numpy()
    ref = _v4_reference("s4d", sd, 1, True, "pool", x.numpy())
    assert _rel(y2, ref) <= 1e-5 and _rel(y1, ref) > 1e-2


# ------------------------------------------------------------------ v3 SequenceModel (Lightning .ckpt, S4 layers)
# v3 src/models/sequence/model.py: the same backbone (residual 'R', LayerNorm, final norm with prenorm); the block's
# layer is src/models/sequence/ss/s4.py::S4 itself at model.layers.{i}.layer. (D, kernel.kernel.*,
# output_linear.0): conv with min(L, l_max) taps, + D u, one activation, Linear + GLU (postact 'glu').
from test_foreign import diag_ref, v3_diag_sd, v3_nplr_sd  # noqa: E402


def _v3_state_dict(kind: str, n_layers: int, prenorm: bool) -> tuple[dict, int]:
    H = 3 if kind == "nplr" else 4
    g = gen(71)
    sd = {"encoder.0.weight": torch.randn(H, D_IN, generator=g), "encoder.0.bias": torch.randn(H, generator=g),
          "decoder.0.output_transform.weight": torch.randn(D_OUT, H, generator=g),
          "decoder.0.output_transform.bias": torch.randn(D_OUT, generator=g)}
    if prenorm:
        sd["model.norm.norm.weight"] = torch.rand(H, generator=g) + 0.5
        sd["model.norm.norm.bias"] = torch.randn(H, generator=g)
    for i in range(n_layers):
        layer = v3_nplr_sd(H=H, g=gen(60 + i)) if kind == "nplr" else v3_diag_sd(H=H, g=gen(50 + i))
        sd.update({"model." + k.replace("layers.0.", f"layers.{i}.", 1): v for k, v in layer.items()})
        sd[f"model.layers.{i}.norm.norm.weight"] = torch.rand(H, generator=g) + 0.5
        sd[f"model.layers.{i}.norm.norm.bias"] = torch.randn(H, generator=g)
    return sd, H


def _v3_kernel_ref(kind: str, sd: dict, i: int, Lk: int, H: int) -> np.ndarray:
    q = f"model.layers.{i}.layer.kernel.kernel."
    dt = np.exp(sd[q + "log_dt"].double().numpy())                      # v3: always exp
    if kind == "nplr":
        A = -np.exp(sd[q + "inv_w_real"].double().numpy()) + 1j * sd[q + "w_imag"].double().numpy()
        return dplr_ref(dt, A, npc(sd[q + "P"]), npc(sd[q + "B"])[0], npc(sd[q + "C"]), int(sd[q + "L"]), Lk)
    A = -np.exp(sd[q + "inv_A_real"].double().numpy()) + 1j * sd[q + "A_imag"].double().numpy()
    return diag_ref(dt[:, None], A, npc(sd[q + "B"]), npc(sd[q + "C"]), Lk, "bilinear")  # v3 diag: bilinear


def _v3_reference(kind, sd, H, n_layers, prenorm, mode, x):
    f = {k: v.double().numpy() for k, v in sd.items() if v.is_floating_point()}
    B, L, _ = x.shape
    h = x @ f["encoder.0.weight"].T + f["encoder.0.bias"]
    for i in range(n_layers):
        p = f"model.layers.{i}."
        y = _ln(h, f[p + "norm.norm.weight"], f[p + "norm.norm.bias"]) if prenorm else h
        K = _v3_kernel_ref(kind, sd, i, min(L, L_MAX), H)[0]
        conv = np.stack([[np.convolve(y[b, :, c], K[c])[:L] for c in range(H)] for b in range(B)]).transpose(0, 2, 1)
        z = _gelu(conv + f[p + "layer.D"][0] * y)                              # one activation
        z = z @ f[p + "layer.output_linear.0.weight"].T + f[p + "layer.output_linear.0.bias"]
        h = h + z[..., :H] / (1 + np.exp(-z[..., H:]))
        if not prenorm:
            h = _ln(h, f[p + "norm.norm.weight"], f[p + "norm.norm.bias"])
    if prenorm:
        h = _ln(h, f["model.norm.norm.weight"], f["model.norm.norm.bias"])
    pooled = h[:, -1] if mode == "last" else h.mean(1)
    return pooled @ f["decoder.0.output_transform.weight"].T + f["decoder.0.output_transform.bias"]


@pytest.mark.parametrize("kind,n_layers,prenorm,mode", [("nplr", 2, True, "pool"), ("diag", 2, False, "last")])
def test_v3_lightning_sequence_model_matches_official_forward(tmp_path, kind, n_layers, prenorm, mode):
    sd, H = _v3_state_dict(kind, n_layers, prenorm)
    cfg = {"model": {"_name_": "model", "d_model": H, "n_layers": n_layers, "prenorm": prenorm, "residual": "R",
                     "norm": "layer", "pool": {"_name_": "pool", "stride": 1, "expand": None}, "dropout": 0.0,
                     "layer": {"_name_": "s4", "mode": kind, "activation": "gelu", "postact": "glu",
                               "l_max": L_MAX}},
           "dataset": {"_name_": "adding", "l_max": L_MAX}, "encoder": "linear",
           "decoder": {"_name_": "sequence", "mode": mode}}
    path = tmp_path / "v3.ckpt"
    torch.save({"epoch": 1, "global_step": 4, "pytorch-lightning_version": "1.5.10", "state_dict": sd,
                "hyper_parameters": cfg}, path)
    ck = sgconv_core.load(path)
    assert ck.model is not None, ck.warnings
    assert ck.layout == ("s4" if kind == "nplr" else "s4d") + "-v3-lightning"
    assert ck.model.cfg.inner_activation is None
    for L in (40, 90):
        x = torch.randn(2, L, D_IN, generator=gen(L + 1), dtype=torch.float64)
        ref = _v3_reference(kind, sd, H, n_layers, prenorm, mode, x.numpy())
        with torch.no_grad():
            y = ck.model(x.float()).double().numpy()
        assert _rel(y, ref) <= 1e-5, (L, _rel(y, ref))


# ------------------------------------------------------------------ example.py's S4Model (minimal S4D layers)
# example.py: {'model': S4Model.state_dict(), 'acc', 'epoch'}; encoder Linear, s4_layers.{i} (models/s4/s4d.py S4D:
# full-length kernel, + D u, GELU, Conv1d(H, 2H, 1) + GLU), norms.{i} (LayerNorm, post-norm by default), dropouts,
# mean over L, decoder Linear.
from test_foreign import minimal_ref, minimal_sd  # noqa: E402


def _example_state_dict(n_layers: int, H: int = 4, d_out: int = 10) -> dict:
    g = gen(72)
    sd = {"encoder.weight": torch.randn(H, D_IN, generator=g), "encoder.bias": torch.randn(H, generator=g),
          "decoder.weight": torch.randn(d_out, H, generator=g), "decoder.bias": torch.randn(d_out, generator=g)}
    for i in range(n_layers):
        sd.update(minimal_sd(H=H, p=f"s4_layers.{i}.", g=gen(40 + i)))
        sd[f"norms.{i}.weight"] = torch.rand(H, generator=g) + 0.5
        sd[f"norms.{i}.bias"] = torch.randn(H, generator=g)
    return sd


def _example_reference(sd, n_layers, x, prenorm=False):
    f = {k: v.double().numpy() for k, v in sd.items()}
    B, L, _ = x.shape
    h = x @ f["encoder.weight"].T + f["encoder.bias"]
    H = h.shape[-1]
    for i in range(n_layers):
        p = f"s4_layers.{i}."
        y = _ln(h, f[f"norms.{i}.weight"], f[f"norms.{i}.bias"]) if prenorm else h
        K = minimal_ref(sd, p, L)[0]                                            # whole input length, no l_max
        conv = np.stack([[np.convolve(y[b, :, c], K[c])[:L] for c in range(H)] for b in range(B)]).transpose(0, 2, 1)
        z = _gelu(conv + f[p + "D"] * y)
        z = z @ f[p + "output_linear.0.weight"][..., 0].T + f[p + "output_linear.0.bias"]
        h = h + z[..., :H] / (1 + np.exp(-z[..., H:]))
        if not prenorm:
            h = _ln(h, f[f"norms.{i}.weight"], f[f"norms.{i}.bias"])
    return h.mean(1) @ f["decoder.weight"].T + f["decoder.bias"]


def test_example_py_s4d_model_matches_official_forward(tmp_path):
    sd = _example_state_dict(3)
    path = tmp_path / "ckpt.pth"
    torch.save({"model": sd, "acc": 81.2, "epoch": 7}, path)
    ck = sgconv_core.load(path)
    assert ck.model is not None and ck.layout == "s4d-minimal-example", ck.warnings
    assert [k.name for k in ck.kernels] == ["s4_layers.0", "s4_layers.1", "s4_layers.2"]
    assert sum("--prenorm" in w for w in ck.warnings) == 1
    for L in (30, 130):
        x = torch.randn(2, L, D_IN, generator=gen(L + 2), dtype=torch.float64)
        ref = _example_reference(sd, 3, x.numpy())
        with torch.no_grad():
            y = ck.model(x.float()).double().numpy()
        assert y.shape == ref.shape == (2, 10)
        assert _rel(y, ref) <= 1e-5, (L, _rel(y, ref))
    # the check can fail: a prenorm model's output is far from the post-norm one
    assert _rel(y, _example_reference(sd, 3, x.numpy(), prenorm=True)) > 1e-2


def test_example_py_prenorm_setting_rebuilds_the_prenorm_model(tmp_path):
    sd = _example_state_dict(2)
    path = tmp_path / "ckpt.pth"
    torch.save({"model": sd}, path)
    ck = sgconv_core.load(path, prenorm=True)
    assert ck.model is not None and not any("--prenorm" in w for w in ck.warnings), ck.warnings
    x = torch.randn(2, 40, D_IN, generator=gen(9), dtype=torch.float64)
    with torch.no_grad():
        y = ck.model(x.float()).double().numpy()
    assert _rel(y, _example_reference(sd, 2, x.numpy(), prenorm=True)) <= 1e-5
    assert _rel(y, _example_reference(sd, 2, x.numpy(), prenorm=False)) > 1e-2


@pytest.mark.parametrize("edit,why", [(("extra", "pos_encoder.weight"), "pos_encoder.weight"),
                                      (("drop", "norms.1.bias"), "norms.1.bias"),
                                      (("drop", "decoder.weight"), "decoder.weight")])
def test_example_py_model_we_cannot_rebuild_is_kernels_only_with_reason(edit, why):
    from sgconv_core.checkpoints.layouts import from_object

    sd = _example_state_dict(2)
    action, key = edit
    if action == "extra":
        sd[key] = torch.zeros(4, 4)
    else:
        del sd[key]
    ck = from_object({"model": sd, "acc": 1.0, "epoch": 1}, "ckpt.pth", {})
    msgs = [w for w in ck.warnings if "kernels only" in w]
    assert ck.model is None and len(ck.kernels) == 2 and len(msgs) == 1 and why in msgs[0]


def test_rebuilt_v4_s4_model_round_trips_through_our_format(tmp_path):
    """The pipeline's double GELU (ModelConfig.inner_activation) survives save -> load in our format."""
    from sgconv_core.checkpoints import save

    sd, path = _save_v4(tmp_path, "s4d", 2, True, "pool", False)
    ck = sgconv_core.load(path)
    assert ck.model.cfg.inner_activation == "gelu"
    save(ck.model, tmp_path / "ours.safetensors")
    back = sgconv_core.load(tmp_path / "ours.safetensors")
    assert back.model.cfg.inner_activation == "gelu"
    x = torch.randn(2, 48, D_IN, generator=gen(3), dtype=torch.float64)
    ref = _v4_reference("s4d", sd, 2, True, "pool", x.numpy())
    with torch.no_grad():
        assert _rel(back.model(x.float()).double().numpy(), ref) <= 1e-5


@pytest.mark.parametrize("name", CKPTS)
def test_genuine_sgconv_model_round_trips_through_our_format(tmp_path, name):
    from sgconv_core.checkpoints import save

    ck = sgconv_core.load(DATA / name)
    save(ck.model, tmp_path / "ours.safetensors")
    back = sgconv_core.load(tmp_path / "ours.safetensors")
    x = torch.from_numpy(np.load(DATA / "gconv_pipeline_input_B2_L1024_D2.npy"))
    ref = np.load(DATA / "gconv_pipeline_output.npy").astype(np.float64)
    with torch.no_grad():
        assert _rel(back.model(x).double().numpy(), ref) <= 1e-5


@pytest.mark.parametrize("residual", [None, "F"])
def test_residual_other_than_R_is_refused(residual):
    from sgconv_core.checkpoints.layouts import from_object

    obj = _lightning_obj(None)
    obj["hyper_parameters"]["model"]["residual"] = residual
    ck = from_object(obj, "x.ckpt")
    msgs = [w for w in ck.warnings if "kernels only" in w]
    assert ck.model is None and len(msgs) == 1 and "model.residual" in msgs[0]
