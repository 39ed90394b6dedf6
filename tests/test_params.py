"""analysis.params: parameter counts against docs/official-layouts.md §8 and against our kernel classes' tensors."""
import math

import pytest
import torch

from analysis.params import (
    DEFAULT_LENGTHS,
    default_families,
    families_from_checkpoint,
    param_count,
    scaling_table,
    sgconv_scales,
)
from sgconv_core.kernels import FreeKernel, S4DKernel, S4Kernel, SGConvKernel


def _count(module):
    return sum(p.numel() for p in module.parameters())


# docs/official-layouts.md §8, measured with the official classes (H=256, N=64, d=32, unidirectional)
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


def test_model_families_lengths_and_pivot():
    """The Parameters page's families: each model's own labelled by its name, then the comparison families at
    the first model's H and C_k except those a model already is; the table pivots the scaling rows."""
    from analysis.params import TABLE_LENGTHS, model_families, scaling_lengths, scaling_pivot
    from sgconv_core import Checkpoint

    sg = Checkpoint(path="a", kernels=[SGConvKernel(8, l_max=300, kernel_dim=16)])
    s4d = Checkpoint(path="b", kernels=[S4DKernel(8, l_max=None, d_state=16, n_ssm=1)])
    fams = model_families({"a": sg, "b": s4d})
    labels = [f["label"] for f in fams]
    assert labels[:2] == ["a (sgconv)", "b (s4d)"]
    assert "S4D (n_ssm=1)" not in labels and "S4D (n_ssm=H)" in labels and "free kernel" in labels
    assert "SGConv (d=32)" not in labels  # model a is an SGConv
    assert [f["label"] for f in model_families({"a": sg}, others=False)] == ["a (sgconv)"]
    assert scaling_lengths({"a": sg, "b": s4d}) == sorted(set(DEFAULT_LENGTHS) | {300})
    rows = scaling_table([8, 300, 1024], fams)
    table = scaling_pivot(rows, {300, *TABLE_LENGTHS})
    assert list(table[0]) == ["family", "L=300", "L=1,024"]  # lengths the rows do not hold are left out
    assert table[0]["L=300"] == param_count("sgconv", 300, 8, d=16) == 6 * 8 * 16  # S = 1 + ceil(log2(300/16))
    by = {r["family"]: r for r in table}
    assert by["b (s4d)"]["L=1,024"] == param_count("s4d", 1024, 8, N=16, n_ssm=1)
    assert by["free kernel"]["L=300"] == 8 * 300
    by8 = {r["family"]: r for r in scaling_pivot(rows, [8])}
    assert "a (sgconv)" not in by8  # SGConv d=16 is undefined at L=8: a family with no value is left out
    assert by8["b (s4d)"]["L=8"] == param_count("s4d", 8, 8, N=16, n_ssm=1)
