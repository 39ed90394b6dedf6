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
