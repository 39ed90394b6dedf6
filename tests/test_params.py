"""analysis.params: parameter-count formulas against NOTES §3 and against counting our kernel classes' tensors."""
import math

import pytest
import torch

from analysis.params import (DEFAULT_LENGTHS, default_families, families_from_checkpoint, param_count,
                             scaling_table, sgconv_scales)
from sgconv_core.kernels import FreeKernel, S4DKernel, S4Kernel, SGConvKernel


def _count(module):
    return sum(p.numel() for p in module.parameters())


# NOTES-models §3, measured with the official classes (H=256, N=64, d=32, unidirectional)
@pytest.mark.parametrize("L,S,sg", [(1024, 6, 49_152), (4096, 8, 65_536), (16_384, 10, 81_920),
                                    (65_536, 12, 98_304), (1_048_576, 16, 131_072)])
def test_notes_table(L, S, sg):
    assert sgconv_scales(L, 32) == S
    assert param_count("sgconv", L, 256, d=32) == sg
    assert param_count("s4", L, 256, N=64, n_ssm=None) == 65_792
    assert param_count("s4", L, 256, N=64, n_ssm=1) == 16_832
    assert param_count("s4d", L, 256, N=64, n_ssm=None) == 49_408
    assert param_count("s4d", L, 256, N=64, n_ssm=1) == 16_768
    assert param_count("conv", L, 256) == 256 * L


@pytest.mark.parametrize("L", DEFAULT_LENGTHS)
def test_sgconv_formula_counts_the_class_tensors(L):
    k = SGConvKernel(256, L, kernel_dim=32, init_norm=False)  # only the S sub-kernels exist: cheap at 1M
    assert _count(k) == param_count("sgconv", L, 256, d=32)


@pytest.mark.parametrize("L", [100, 1000, 3000])
@pytest.mark.parametrize("d,C,bidir,init_scale,mode", [(8, 1, False, 0, "cat_randn"), (16, 2, True, 0, "sum_randn"),
                                                       (4, 1, False, 1, "cat_randn_learnable")])
def test_sgconv_formula_odd_lengths_and_options(L, d, C, bidir, init_scale, mode):
    k = SGConvKernel(6, L, channels=C, bidirectional=bidir, kernel_dim=d, init_scale=init_scale, mode=mode,
                     init_norm=False)
    assert k.n_scales == sgconv_scales(L, d, init_scale)
    assert _count(k) == param_count("sgconv", L, 6, C_k=C * (2 if bidir else 1), d=d, init_scale=init_scale,
                                    learnable_decay="learnable" in mode)


def test_sgconv_scales_matches_float_formula():
    for L in range(1, 600):
        for d in (1, 3, 8, 32, 100):
            assert sgconv_scales(L, d) == 1 + math.ceil(math.log2(L / d))


@pytest.mark.parametrize("n_ssm", [None, 1, 4])
def test_ssm_formulas_count_the_class_tensors(n_ssm):
    H, N = 256, 64
    for C, bidir in ((1, False), (2, True)):
        C_k = C * (2 if bidir else 1)
        s4d = S4DKernel(H, N, channels=C, bidirectional=bidir, n_ssm=n_ssm)
        assert _count(s4d) == param_count("s4d", 1024, H, C_k=C_k, N=N, n_ssm=n_ssm)
        s4 = S4Kernel(H, N, channels=C, bidirectional=bidir, n_ssm=n_ssm, rank=2)  # l_max None: no attune
        assert _count(s4) == param_count("s4", 1024, H, C_k=C_k, N=N, n_ssm=n_ssm, rank=2)
    assert _count(S4DKernel(8, 16, dt_tie=False)) == param_count("s4d", 1, 8, N=16, dt_tie=False)
    assert _count(S4DKernel(8, 16, has_B=False)) == param_count("s4d", 1, 8, N=16, has_B=False)
    assert _count(S4DKernel(8, 16, init="real")) == param_count("s4d", 1, 8, N=16)


def test_free_kernel_counts():
    for L in (10, 1000):
        assert _count(FreeKernel(4, L, channels=2)) == param_count("conv", L, 4, C_k=2)


def test_errors():
    with pytest.raises(ValueError):
        param_count("sgconv", 8, 4, d=32)  # fewer than one scale
    with pytest.raises(ValueError):
        param_count("s4d", 8, 6, n_ssm=4)  # n_ssm must divide H
    with pytest.raises(ValueError):
        param_count("lstm", 8, 4)


def test_scaling_table_sublinear():
    rows = scaling_table(DEFAULT_LENGTHS)
    fams = {r["family"] for r in rows}
    assert len(fams) == len(default_families()) == 6
    by = {(r["family"], r["L"]): r["params"] for r in rows}
    assert by[("SGConv (d=32)", 1024)] == 49_152 and by[("SGConv (d=32)", 1 << 20)] == 131_072
    assert by[("free kernel", 1 << 20)] == 256 << 20
    assert {by[("S4D (n_ssm=1)", L)] for L in DEFAULT_LENGTHS} == {16_768}
    short = scaling_table([16, 64], [{"label": "sg", "kind": "sgconv", "H": 4, "d": 32}])
    assert short[0]["params"] is None and short[1]["params"] == 2 * 4 * 32


def test_families_from_checkpoint():
    torch.manual_seed(0)
    k = S4DKernel(8, 16, n_ssm=2)
    fams = families_from_checkpoint(type("Ck", (), {"kernels": [k]})())
    assert fams[0]["label"].startswith("this model") and fams[0]["n_ssm"] == 2 and fams[0]["N"] == 16
    rows = scaling_table([1024], fams)
    assert rows[0]["params"] == k.n_params
