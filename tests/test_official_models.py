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
