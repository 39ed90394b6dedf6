"""A genuine state-spaces v4 Lightning checkpoint of a 2-layer bidirectional SGConv model (tests/data/sgconv-lightning,
see its README): it loads through `sgconv_core.load` (no omegaconf, no code from the file) and every kernel equals the
one the official forward computed, both directions."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import sgconv_core

DATA = Path(__file__).parent / "data" / "sgconv-lightning"


@pytest.mark.parametrize("name", ["gconv_pipeline_last.ckpt", "gconv_pipeline_last_plain_hparams.ckpt"])
def test_genuine_lightning_sgconv_kernels_are_exact(name):
    ck = sgconv_core.load(DATA / name)
    ref = np.load(DATA / "gconv_pipeline_kernels_L1024.npz")
    assert ck.family == "sgconv" and len(ck.kernels) == 2 and ck.d_model == 8 and ck.l_max == 1024
    for i, k in enumerate(ck.kernels):
        assert (k.bidirectional, k.channels, k.kernel_dim, k.mode) == (True, 1, 32, "cat_randn")
        with torch.no_grad():
            K = k(1024).double().numpy()                       # (2, 8, 1024): forward, backward
        official = ref[f"layer{i}"][0].astype(np.float64)      # (8, 2048): forward, then backward reversed in time
        np.testing.assert_array_equal(K[0], official[:, :1024])
        np.testing.assert_array_equal(K[1], official[:, 1024:][:, ::-1])
