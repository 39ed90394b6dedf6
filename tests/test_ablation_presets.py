"""Ablation presets that can show the decay principle (issue 10, part 2): the PRESETS table, mean ± sd over seeds
in the table and figure data, SGConv's frozen (lag+1)^-t mode, and the S4/S4D decay knob as kernel arguments
(real_scale, freeze_decay) so that a run's card command re-creates the run. Tiny models; a few seconds in all."""
from __future__ import annotations

import json
import shlex

import pytest
import torch

import sgconv_core
from analysis.ablation import SweepSpec, train_group
from analysis.ablation import figures as afig
from analysis.ablation.__main__ import main as cli_main
from analysis.ablation.__main__ import summary_lines
from analysis.ablation.spec import PRESETS, preset, preset_sentence
from sgconv_core.kernels.s4 import S4Kernel
from sgconv_core.kernels.s4d import S4DKernel
from sgconv_core.kernels.sgconv import SGConvKernel
from sgconv_core.kernels.ssm import inv_transform, param_transform

TINY_DELAY = {"L": 64, "lag": 2, "n_train": 48, "n_val": 16, "n_test": 16}


def tiny(**kw) -> SweepSpec:
    base = dict(task="delay", task_params=dict(TINY_DELAY), family="sgconv", decays=(0.0, 1.0), sizes=(),
                base_size=4, seeds=(0,), steps=3, eval_every=3, batch_size=8, d_model=8, n_layers=1,
                eval_batch_size=64, name="tiny")
    base.update(kw)
    return SweepSpec(**base)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------------------------------------- presets
def test_presets_table():
    assert list(PRESETS)[:3] == ["delay-local", "delay-far", "digits"]
    assert {"quick", "default"} <= set(PRESETS)                       # old names still accepted
    for name in PRESETS:
        for fam in ("sgconv", "s4d", "s4"):
            s = preset(name, fam).check()
            assert len(s.seeds) >= 3, name                             # every preset: >= 3 seeds per point
            sentence = preset_sentence(name, s.task)
            assert sentence.endswith(".") and sentence.count(". ") == 0, (name, sentence)  # one sentence
            if name != "default":
                assert s.length() == 256 and s.d_model == 32 and s.n_layers <= 2 and s.steps == 300
                assert s.base_size == (8 if fam == "sgconv" else 32)   # SGConv base: kernel_dim 8
    local, far = preset("delay-local"), preset("delay-far")
    assert local.task == far.task == "delay" and local.sizes == far.sizes == ()
    assert local.task_params["lag"] == 2 and far.task_params["lag"] == 64
    assert preset("digits", task="delay").task == "digits"             # a one-task preset keeps its task
    assert preset("quick", task="delay").task == "delay"
    assert "64 taps back" in preset_sentence("delay-far") and "2 taps back" in preset_sentence("delay-local")
    assert preset_sentence("quick", "digits") == preset_sentence("digits")
    # a full delay preset is 6 decays x 3 seeds
    assert len(preset("delay-local").expand()) == 18
    with pytest.raises(ValueError, match="unknown preset 'fast'"):
        preset("fast")


def test_cli_preset_prints_its_sentence(tmp_path, capsys):
    assert cli_main(["--preset", "delay-far", "--dry-run", "--quiet", "--db", str(tmp_path / "a.sqlite")]) == 0
    out = capsys.readouterr().out
    assert "preset delay-far: Delay with lag 64" in out and "18 runs" in out
    # a preset made for one task refuses another (exit 2, one line naming the clash)
    assert cli_main(["--preset", "digits", "--task", "delay", "--dry-run", "--db", str(tmp_path / "a.sqlite")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "preset 'digits' is made for the digits task" in err


# ---------------------------------------------------------------------------------------------------- mean ± sd
def _rows(spec: SweepSpec, metric: str, values: dict) -> list[dict]:
    """Fake stored rows for the runs of a spec: values {(decay, seed): test_metric}."""
    out = []
    for r in spec.expand():
        if (r.decay, r.seed) in values:
            out.append({"key": r.key(), "decay": r.decay, "decay_mode": r.decay_mode, "size": r.size, "seed": r.seed,
                        "metric": metric, "test_metric": values[(r.decay, r.seed)], "kernel_params": 10})
    return out


@pytest.mark.parametrize("metric, scale", [("nmse", 1.0), ("accuracy", 100.0)])
def test_mean_sd_over_seeds_in_table_and_figure(metric, scale):
    spec = tiny(seeds=(0, 1, 2), decays=(0.0, 1.0), sizes=(2,))
    rows = _rows(spec, metric, {(0.0, 0): 0.1, (0.0, 1): 0.2, (0.0, 2): 0.3,
                                (1.0, 0): 0.5, (1.0, 1): 0.5, (1.0, 2): 0.8})
    pts = {(p["decay"], p["size"]): p for p in afig.point_stats(spec, rows)}
    p0 = pts[(0.0, 4)]
    assert p0["n"] == 3 and p0["axis"] == "decay"
    assert p0["mean"] == pytest.approx(0.2 * scale) and p0["sd"] == pytest.approx(0.1 * scale)  # sample sd, ddof=1
    p1 = pts[(1.0, 4)]
    assert p1["axis"] == "both"                                                # the base point: both axes
    assert p1["mean"] == pytest.approx(0.6 * scale) and p1["sd"] == pytest.approx(0.03 ** 0.5 * scale)
    # the figure draws the same numbers
    tr = afig.decay_figure(spec, rows, metric, show_paper=False).data[0]
    assert list(tr.x) == [0.0, 1.0]
    assert list(tr.y) == pytest.approx([0.2 * scale, 0.6 * scale])
    assert list(tr.error_y.array) == pytest.approx([0.1 * scale, 0.03 ** 0.5 * scale])
    assert tr.error_y.visible and "n = 3 seeds" in tr.name
    # the CLI's summary
    lines = summary_lines(spec, rows)
    assert any(f"t=0 (fixed) kernel_dim=4: {0.2 * scale:.4g} ± {0.1 * scale:.2g} (n = 3)" in ln for ln in lines)


def test_mean_sd_single_and_nan():
    assert afig.mean_sd([0.4]) == (0.4, 0.0)
    m, sd = afig.mean_sd([0.1, float("nan")])
    assert m != m and sd != sd


# ---------------------------------------------------------------------------------------------------- frozen
def test_frozen_mode_kernel_is_power_law_and_not_trained():
    spec = tiny(decays=(1.5,), decay_modes=("frozen",))
    run = spec.expand()[0]
    args = run.kernel_args()
    assert args["mode"] == "cat_randn_learnable_fixed" and args["decay_min"] == args["decay_max"] == 1.5
    # the kernel is the undecayed one times (lag+1)^-t (up to the frozen norm, a constant)
    torch.manual_seed(0)
    k_t = SGConvKernel(4, 64, kernel_dim=4, mode="cat_randn_learnable_fixed", decay_min=1.5, decay_max=1.5)
    torch.manual_seed(0)
    k_0 = SGConvKernel(4, 64, kernel_dim=4, mode="cat_randn_learnable_fixed", decay_min=0.0, decay_max=0.0)
    with torch.no_grad():
        a, b = k_t(64).double(), k_0(64).double()
    ratio = a / b
    ratio = ratio / ratio[..., :1]
    lag = torch.arange(64, dtype=torch.float64)
    assert torch.allclose(ratio, (lag + 1) ** -1.5 * torch.ones_like(ratio), rtol=1e-4)
    assert not k_t.decay.requires_grad
    # through a training step: the decay stays exactly t while the sub-kernels move
    out = train_group([run], device="cpu")[0]
    k = out.model.kernels[0]
    assert not k.decay.requires_grad
    assert torch.equal(k.decay.detach(), torch.full((8,), 1.5))
    torch.manual_seed(run.seed)
    from sgconv_core.train import build

    _, fresh = build(run.train_config())
    assert not torch.equal(fresh.kernels[0].kernel_list[0], k.kernel_list[0])
    # learnable from the same t does train its decay
    learn = train_group(tiny(decays=(1.5,), decay_modes=("learnable",)).expand(), device="cpu")[0]
    assert learn.model.kernels[0].decay.requires_grad
    assert not torch.equal(learn.model.kernels[0].decay.detach(), torch.full((8,), 1.5))


def test_frozen_is_sgconv_only():
    with pytest.raises(ValueError, match="decay_modes: 'frozen' is SGConv's"):
        tiny(family="s4d", decay_modes=("frozen",)).check()


# ---------------------------------------------------------------------------------------------------- S4/S4D args
def _old_hook(kernel, real_scale: float) -> None:
    """What `batched.apply_hook` did before the knob became a kernel argument (the reference for S4D)."""
    with torch.no_grad():
        re = param_transform(kernel.A_real.detach(), kernel.real_transform) * real_scale
        kernel.A_real.copy_(inv_transform(re, kernel.real_transform).to(kernel.A_real.dtype))


@pytest.mark.parametrize("r", [0.0, 0.3, 4.0])
def test_s4d_real_scale_matches_the_old_hook_bit_for_bit(r):
    torch.manual_seed(3)
    new = S4DKernel(8, 8, real_scale=r)
    torch.manual_seed(3)
    old = S4DKernel(8, 8)
    _old_hook(old, r)
    for (n, a), (_, b) in zip(new.state_dict().items(), old.state_dict().items(), strict=True):
        assert torch.equal(a, b), n
    re = -torch.exp(new.A_real)
    if r > 0:
        assert re.mean().item() == pytest.approx(-0.5 * r, rel=1e-5)   # S4D-Lin: Re A = -0.5 r
    else:
        assert re.abs().max().item() < 1e-3                             # clamped: almost no decay


def test_s4_real_scale_before_attune():
    torch.manual_seed(0)
    k = S4Kernel(4, 8, l_max=32, real_scale=3.0)
    torch.manual_seed(0)
    k1 = S4Kernel(4, 8, l_max=32)
    re3 = param_transform(k.A_real, "exp")
    re1 = param_transform(k1.A_real, "exp")
    assert torch.allclose(re3, 3 * re1, rtol=1e-6)
    # the stored C~ was formed with the scaled A, so the true C is the same draw as the unscaled kernel's
    dA, _, Ct = k.dense()
    dA1, _, Ct1 = k1.dense()
    assert torch.allclose(k.true_C(dA, Ct), k1.true_C(dA1, Ct1), atol=1e-5)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), "3", True])
def test_real_scale_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="real_scale"):
        S4DKernel(4, 4, real_scale=bad)
    with pytest.raises(ValueError, match="freeze_decay"):
        S4DKernel(4, 4, freeze_decay="yes")


def test_s4d_kernel_args_and_key():
    a = tiny(family="s4d", decays=(3.0,), base_size=4, decay_modes=("fixed",)).expand()[0]
    b = tiny(family="s4d", decays=(0.3,), base_size=4, decay_modes=("fixed",)).expand()[0]
    c = tiny(family="s4d", decays=(3.0,), base_size=4, decay_modes=("learnable",)).expand()[0]
    one = tiny(family="s4d", decays=(1.0,), base_size=4, decay_modes=("learnable",)).expand()[0]
    assert a.kernel_args() == {"d_state": 4, "real_scale": 3.0, "freeze_decay": True}
    assert c.kernel_args() == {"d_state": 4, "real_scale": 3.0}
    assert one.kernel_args() == {"d_state": 4}                          # r = 1 learnable: as before, same key
    assert len({a.key(), b.key(), c.key(), one.key()}) == 4             # the key changes with real_scale
    dt = tiny(family="s4d", decays=(3.0,), base_size=4, ssm_knob="dt").expand()[0]
    assert "real_scale" not in dt.kernel_args() and dt.kernel_args()["dt_max"] == pytest.approx(0.3)


def test_card_command_recreates_the_ablation_run(tmp_path):
    """The command in an ablation run's card, run through sgconv_core.train in-process, gives the same model."""
    from sgconv_core.train import build_parser, config_from_args, train

    spec = tiny(family="s4d", decays=(3.0,), base_size=4, decay_modes=("fixed",))
    out = train_group(spec.expand(), device="cpu", checkpoint_dir=str(tmp_path))[0]
    assert out.status == "done"
    cmd = out.card["command"]
    assert "real_scale=3.0" in cmd and "freeze_decay=true" in cmd
    argv = shlex.split(cmd)
    assert argv[:3] == ["python", "-m", "sgconv_core.train"]
    p = build_parser()
    a = p.parse_args(argv[3:] + ["--out", str(tmp_path / "again.safetensors"), "--quiet"])
    cfg = config_from_args(a, p)
    assert cfg.kernel_args == {"d_state": 4, "real_scale": 3.0, "freeze_decay": True}
    again = train(cfg)
    for (n, x), (_, y) in zip(out.model.state_dict().items(), again.model.state_dict().items(), strict=True):
        assert torch.equal(x, y), n
    assert again.test_metric == out.test_metric
    # frozen through training: A_real and inv_dt as initialised (Re A = -1.5), and the checkpoint rebuilds so
    ck = sgconv_core.load(out.checkpoint)
    k = ck.kernels[0]
    assert k.real_scale == 3.0 and k.freeze_decay
    assert not k.A_real.requires_grad and not k.inv_dt.requires_grad
    assert (-torch.exp(k.A_real)).mean().item() == pytest.approx(-1.5, rel=1e-5)
    assert json.loads(json.dumps(k.config))["freeze_decay"] is True


def test_batched_equals_separate_with_frozen_and_s4d_fixed():
    """The kernel-argument knobs in a batched group: the same metrics as one run at a time, and still frozen."""
    runs = (tiny(decays=(1.5,), decay_modes=("frozen",)).expand()
            + tiny(family="s4d", decays=(3.0,), base_size=4, decay_modes=("fixed",)).expand())
    sep = [train_group([r], device="cpu")[0] for r in runs]
    bat = train_group(runs, device="cpu", batched=True)
    assert all(o.batched_with == 2 for o in bat)
    for a, b in zip(sep, bat, strict=True):
        assert a.key == b.key and a.test_metric == pytest.approx(b.test_metric, rel=1e-4)
    assert torch.equal(bat[0].model.kernels[0].decay.detach(), torch.full((8,), 1.5))
    k = bat[1].model.kernels[0]
    assert (-torch.exp(k.A_real)).mean().item() == pytest.approx(-1.5, rel=1e-5)
