"""Training loop, model card, checkpoint round trip, and the train / evaluate command lines (tiny, CPU)."""
import json
import math
import os
import shlex
import subprocess
import sys
from dataclasses import asdict

import pytest
import torch

import sgconv_core
from sgconv_core.evaluate import evaluate, evaluate_split
from sgconv_core.train import TrainConfig, build, lr_factor, make_optimizer, to_command, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_DIGITS = dict(task="digits", task_params={"L": 64}, d_model=16, n_layers=1, batch_size=16, threads=1)
CARD_FIELDS = {
    "task", "task_params", "metric", "test_value", "baseline", "steps", "wall_time_s", "device", "threads", "seed",
    "kernel_params", "total_params", "model_config", "torch", "date", "command", "notes",
}


def tiny(**kw) -> TrainConfig:
    args = {**TINY_DIGITS, "family": "s4d", "kernel_args": {"d_state": 8}, "steps": 40, "eval_every": 20}
    args.update(kw)
    return TrainConfig(**args)


@pytest.fixture(scope="module")
def run():
    """One tiny training run shared by several tests: (config, result, per-step progress calls)."""
    calls = []
    cfg = tiny(d_model=32, lr=0.03)  # big enough to learn visibly in 40 steps (H=16 at lr 0.01 barely moves)
    return cfg, train(cfg, progress=calls.append), calls


def test_loss_goes_down_and_progress_is_reported(run):
    cfg, res, calls = run
    steps = [c for c in calls if "val_metric" not in c]
    evals = [c for c in calls if "val_metric" in c]
    assert [c["step"] for c in steps] == list(range(1, cfg.steps + 1))
    assert {"step", "steps", "loss", "lr", "elapsed_s", "eta_s"} <= set(steps[0])
    assert [c["step"] for c in evals] == [20, 40] and all(0 <= c["val_metric"] <= 1 for c in evals)
    first = sum(c["loss"] for c in steps[:5]) / 5
    last = sum(c["loss"] for c in steps[-5:]) / 5
    assert last < first - 0.1, (first, last)
    assert res.steps_done == cfg.steps and res.stopped is None
    assert [h["step"] for h in res.history] == [20, 40]
    assert 0 <= res.test_metric <= 1 and res.device


def test_card_has_the_required_fields(run):
    cfg, res, _ = run
    card = res.card
    assert CARD_FIELDS <= set(card), CARD_FIELDS - set(card)
    assert card["task"] == "digits" and card["task_params"] == {"L": 64} and card["metric"] == "accuracy"
    assert card["test_value"] == res.test_metric and card["steps"] == 40 and card["seed"] == 0
    assert card["kernel_params"] == sum(k.n_params for k in res.model.kernels)
    assert card["total_params"] == sum(p.numel() for p in res.model.parameters())
    assert card["model_config"]["kernel"] == "s4d" and card["command"].startswith("python -m sgconv_core.train")
    assert "--task-param L=64" in card["command"] and "--steps 40" in card["command"]
    json.dumps(card)  # serialisable


def test_save_load_round_trip_and_evaluate_reproduces(run, tmp_path):
    cfg, res, _ = run
    path = tmp_path / "m.safetensors"
    sgconv_core.save(res.model, path, res.card)
    ck = sgconv_core.load(path)
    assert ck.card == json.loads(json.dumps(res.card))
    x, _ = build(cfg)[0].split("test")
    with torch.no_grad():
        assert torch.equal(ck.model(x[:4]), res.model.eval()(x[:4]))
    again = evaluate_split(ck, "test")
    assert again["value"] == pytest.approx(res.test_metric, abs=1e-9)
    fresh = evaluate(path, n=50, seed=3)
    assert fresh["task"] == "digits" and fresh["n"] == 50 and 0 <= fresh["value"] <= 1
    assert fresh["card_value"] == res.test_metric


def test_deterministic_given_seed():
    a = train(tiny(steps=6, eval_every=3))
    b = train(tiny(steps=6, eval_every=3))
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    for (k, v), w in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
        assert torch.equal(v, w), k


def test_should_stop_is_honoured():
    n = {"calls": 0}

    def stop():
        n["calls"] += 1
        return n["calls"] > 3

    res = train(tiny(steps=50, eval_every=100), should_stop=stop)
    assert res.stopped == "cancelled" and res.steps_done == 3
    assert res.history and res.history[-1]["step"] == 3  # the partial run is still evaluated
    assert res.card["stopped"] == "cancelled" and res.card["steps"] == 3


def test_time_budget_stops_early():
    res = train(tiny(steps=10_000, eval_every=10_000, time_budget_s=0.5))
    assert res.stopped == "time_budget" and 0 < res.steps_done < 10_000


def test_sequence_task_and_sgconv():
    res = train(TrainConfig(task="delay", task_params={"L": 64, "lag": 8, "n_train": 64, "n_val": 16, "n_test": 16},
                            family="sgconv", kernel_args={"kernel_dim": 8}, d_model=8, n_layers=1, steps=4,
                            batch_size=8, eval_every=2, threads=1))
    assert res.card["metric"] == "nmse" and math.isfinite(res.test_metric) and res.card["baseline"] == pytest.approx(1.0)
    assert res.model.cfg.pool == "none"


def test_optimizer_groups_follow_the_official_split():
    cfg = tiny(family="sgconv", kernel_args={"kernel_dim": 8})
    _, model = build(cfg)
    opt = make_optimizer(model, cfg)
    groups = {g["name"]: g for g in opt.param_groups}
    kernel = {id(p) for p in model.kernel_parameters()}
    assert {id(p) for p in groups["kernel"]["params"]} == kernel
    assert groups["kernel"]["lr"] == 0.001 and groups["kernel"]["weight_decay"] == 0
    assert groups["decay"]["weight_decay"] == 0.05 and all(p.dim() >= 2 for p in groups["decay"]["params"])
    assert groups["no_decay"]["weight_decay"] == 0 and all(p.dim() < 2 for p in groups["no_decay"]["params"])
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))


def test_lr_schedule_warms_up_then_decays_to_zero():
    f = [lr_factor(s, 100, 10) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0) and f[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:], strict=False)) and f[-1] < 0.001


@pytest.mark.parametrize("bad", [dict(steps=0), dict(batch_size=-1), dict(family="nope"), dict(task="nope"),
                                 dict(kernel_args={"bogus": 1})])
def test_nonsense_is_refused(bad):
    with pytest.raises(ValueError):
        build(tiny(**bad))


def _typed(v):
    """A value with the type of every part spelled out, so that 1 != 1.0 != '1' and True != 1."""
    if isinstance(v, dict):
        return {k: _typed(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return (type(v).__name__, [_typed(x) for x in v])
    return (type(v).__name__, v)


@pytest.mark.parametrize("kw", [
    dict(),
    dict(task_params={"L": 64, "n_val": 20, "name": "true", "tag": "x y"}, time_budget_s=5.0, warmup=3,
         kernel_args={"d_state": 8, "init": "inv", "mode": "1", "empty": "", "rate": 0.5, "dims": [1, 2],
                      "quoted": '"q"', "nothing": None, "flag": False},
         family="sgconv", d_model=24, n_layers=3, dropout=0.1, prenorm=False, norm="scalar", bidirectional=True,
         pool="last", lr=0.003, kernel_lr=1e-4, weight_decay=0.0, grad_clip=1.5, eval_every=7, eval_batch_size=9,
         seed=4, task_seed=2, device="cpu", threads=2, out="some dir/m.safetensors"),
])
def test_command_round_trips_through_the_parser(kw):
    """to_command then the CLI's parser gives back the same config, types included (notes are not in it)."""
    from sgconv_core.train import build_parser, config_from_args

    cfg = tiny(**kw)
    argv = shlex.split(to_command(cfg))
    assert argv[:3] == ["python", "-m", "sgconv_core.train"]
    p = build_parser()
    back = config_from_args(p.parse_args(argv[3:]), p)
    assert _typed(asdict(back)) == _typed(asdict(cfg))
    assert "--kernel-arg init=inv" in to_command(tiny(kernel_args={"init": "inv"}))  # plain strings stay plain


def _run(args, timeout=60):
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_cli_train_then_evaluate(tmp_path):
    out = tmp_path / "cli.safetensors"
    r = _run(["sgconv_core.train", "--task", "digits", "--task-param", "L=64", "--family", "sgconv", "--d-model", "8",
              "--n-layers", "1", "--kernel-dim", "8", "--steps", "6", "--batch-size", "8", "--eval-every", "3",
              "--threads", "1", "--out", str(out), "--quiet"])
    assert r.returncode == 0, r.stderr
    assert "val accuracy" in r.stdout and "test accuracy" in r.stdout and out.exists()
    card = sgconv_core.load(out).card
    assert card["steps"] == 6 and card["model_config"]["kernel_args"] == {"kernel_dim": 8}
    lo, hi = card["test_ci"]  # the printed test metric carries its interval and n
    assert (f"test accuracy {card['test_value']:.4f}, 95% CI [{lo:.4f}, {hi:.4f}] (Wilson), n = 250"
            in r.stdout), r.stdout

    r = _run(["sgconv_core.evaluate", str(out), "--n", "40", "--seed", "5"])
    assert r.returncode == 0, r.stderr
    last = json.loads(r.stdout.strip().splitlines()[-1])
    assert {"task", "metric", "value", "n", "n_unique", "ci_low", "ci_high", "checkpoint", "card_value", "seed"} <= set(last)
    assert last["task"] == "digits" and last["n"] == 40 and last["seed"] == 5
    r = _run(["sgconv_core.evaluate", str(out), "--n", "40", "--seed", "0"])  # the training seed: warned
    assert r.returncode == 0 and "warning" in r.stderr
    json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("args, message", [
    (["--steps", "0"], "steps must be positive"),
    (["--batch-size", "0"], "batch_size must be positive"),
    (["--family", "lstm"], "unknown family"),
    (["--task", "mnist"], "unknown task"),
    (["--task-param", "L"], "KEY=VALUE"),
])
def test_cli_train_refuses_nonsense(args, message):
    r = _run(["sgconv_core.train", *args])
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_cli_evaluate_bad_checkpoint(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint at all")
    r = _run(["sgconv_core.evaluate", str(bad)])
    assert r.returncode == 2 and r.stderr.strip() and "Traceback" not in r.stderr
    r = _run(["sgconv_core.evaluate", str(tmp_path / "missing.safetensors")])
    assert r.returncode == 2 and "no such file" in r.stderr


# ---------------------------------------------------------------------------------------------------- one loop
def test_fit_with_two_runs_equals_two_trains():
    """fit() steps several runs side by side; each ends exactly where train() alone would (R=1 is train)."""
    from sgconv_core.train import Run, fit

    cfgs = [tiny(steps=6, eval_every=4), tiny(steps=6, eval_every=3, seed=1, lr=0.02)]
    torch.set_num_threads(1)  # as train() does for these configs (threads=1): same reduction order
    runs = []
    for cfg in cfgs:
        task, model = build(cfg)
        runs.append(Run.start(cfg, model.train(), key=f"seed{cfg.seed}"))
    events = []
    assert fit(runs, task, progress=events.append) is None
    for cfg, run in zip(cfgs, runs, strict=True):
        alone = train(cfg)
        assert run.history == [dict(h, elapsed_s=e["elapsed_s"]) for h, e in zip(alone.history, run.history, strict=True)]
        assert run.step == alone.steps_done == 6 and run.best_step == alone.best_step
        assert run.finish(task) == alone.test_metric
        for (k, v), w in zip(run.model.state_dict().items(), alone.model.state_dict().values(), strict=True):
            assert torch.equal(v, w), k
    assert [e["step"] for e in events if e["event"] == "eval"] == [3, 4, 6]  # each run's own cadence
    assert {e["event"] for e in events} == {"step", "eval"}


def test_a_run_with_a_non_finite_loss_stops_alone():
    from sgconv_core.train import Run, fit

    cfg = tiny(steps=4, eval_every=2)
    runs = []
    for key in ("ok", "bad"):
        task, model = build(cfg)
        runs.append(Run.start(cfg, model.train(), key=key))
    with torch.no_grad():
        next(runs[1].model.parameters()).fill_(float("nan"))
    fit(runs, task)
    assert runs[0].error is None and runs[0].step == 4 and [h["step"] for h in runs[0].history] == [2, 4]
    assert runs[1].error == "loss is nan at step 0; lower lr or kernel_lr" and runs[1].step == 0
    assert runs[1].history == []


def test_train_raises_on_a_non_finite_loss(monkeypatch):
    import sgconv_core.train as T

    def nan_build(cfg, _build=T.build):
        task, model = _build(cfg)
        with torch.no_grad():
            next(model.parameters()).fill_(float("nan"))
        return task, model

    monkeypatch.setattr(T, "build", nan_build)
    with pytest.raises(FloatingPointError, match="loss is nan at step 0"):
        train(tiny(steps=3))


# ---------------------------------------------------------------------------------------------------- devices
def test_resolve_device():
    from sgconv_core.device import device_name, resolve_device
    from sgconv_core.train import resolve_device as from_train

    assert from_train is resolve_device
    assert resolve_device("cpu") == torch.device("cpu") and resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(None) == resolve_device("auto")
    for bad in ("gpu", "cuda:x", "cuda:-1", "mps", "cpu:0"):
        with pytest.raises(ValueError, match="unknown device"):
            resolve_device(bad)
    with pytest.raises(ValueError, match="'auto', 'cpu' or 'cuda'"):
        resolve_device("cuda:0", allow_index=False)
    if torch.cuda.is_available():
        assert resolve_device("cuda:0") == torch.device("cuda:0")
        with pytest.raises(ValueError, match="CUDA device"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
    else:
        for name in ("cuda", "cuda:0"):
            with pytest.raises(ValueError, match="no CUDA device"):
                resolve_device(name)
    assert "cores" in device_name(torch.device("cpu"))
