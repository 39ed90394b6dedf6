"""Train a SequenceModel on one of our offline tasks (digits, delay, listops) and write a checkpoint.

    from sgconv_core.train import TrainConfig, train
    result = train(TrainConfig(task="digits", family="sgconv", steps=1500, out="digits-sgconv.safetensors"))
    result.test_metric, result.card

    python -m sgconv_core.train --task digits --family sgconv --d-model 64 --n-layers 2 --kernel-dim 32 \
        --steps 1500 --batch-size 32 --out pretrained/digits-sgconv.safetensors

The recipe is the official one: AdamW, the kernel parameters (``model.kernel_parameters()``) at a small
learning rate without weight decay, everything else at ``lr`` with weight decay on matrices only (biases,
norms and the kernel get none); linear warmup then cosine decay to 0 over ``steps``. The model is evaluated
on the val split every ``eval_every`` steps; the best one on val is kept and finally scored on the test split.
On CPU, a run is a pure function of its config (with a fixed ``threads``) unless the time budget stops it.

One loop trains everything: :func:`fit` steps a list of :class:`Run` (a model, its optimiser and all its
bookkeeping) side by side; `train` is ``fit`` with one run. The ablation sweeps (``analysis.ablation.batched``)
call ``fit`` with many runs and swap :class:`SeparateModels` for a vmapped batch of models.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone

import torch

from .device import device_name, resolve_device, reuse_freed_memory
from .families import FAMILIES
from .model import ModelConfig, SequenceModel


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in the model card; ``to_command`` rebuilds the CLI call)."""

    # task
    task: str = "digits"                 # 'digits' | 'delay' | 'listops'
    task_params: dict = field(default_factory=dict)  # get_task(task, seed=task_seed, **task_params)
    task_seed: int = 0                   # seed of the task's data (splits); the training seed is `seed`
    # model
    family: str = "sgconv"               # 'sgconv' | 's4' | 's4d' | 'conv'
    d_model: int = 64
    n_layers: int = 2
    kernel_args: dict = field(default_factory=dict)  # per family: kernel_dim, mode, decay_min, d_state, init, ...
    dropout: float = 0.0
    prenorm: bool = True
    norm: str = "layer"
    bidirectional: bool = False
    pool: str | None = None              # None: 'mean' for class tasks, 'none' for sequence tasks
    # optimisation
    steps: int = 1000
    batch_size: int = 32
    lr: float = 0.01
    kernel_lr: float = 0.001
    weight_decay: float = 0.05
    warmup: int | None = None            # warmup steps; None: 5 % of steps
    grad_clip: float = 0.0               # 0: no clipping
    # evaluation, budget, bookkeeping
    eval_every: int = 100
    eval_batch_size: int = 128
    time_budget_s: float | None = None   # stop early (at a step boundary) once this much time has passed
    seed: int = 0
    device: str = "auto"                 # 'auto' -> cuda if available else cpu
    threads: int | None = None           # torch.set_num_threads on CPU; None: leave torch's default
    out: str | None = None               # write the best checkpoint here (.safetensors)
    notes: str = ""                      # free text copied into the card

    def check(self) -> None:
        """Raise ValueError for settings that make no sense (before anything is built)."""
        from .tasks import TASKS

        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; choose from {list(TASKS)}")
        if self.family not in FAMILIES:
            raise ValueError(f"unknown family {self.family!r}; choose from {sorted(FAMILIES)}")
        for name in ("steps", "batch_size", "d_model", "n_layers", "eval_every", "eval_batch_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("lr", "kernel_lr", "weight_decay", "grad_clip"):
            v = getattr(self, name)
            if not (v >= 0 and math.isfinite(v)):
                raise ValueError(f"{name} must be a finite number >= 0, got {v}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.warmup is not None and self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise ValueError(f"time budget must be positive, got {self.time_budget_s}")
        if self.threads is not None and self.threads <= 0:
            raise ValueError(f"threads must be positive, got {self.threads}")
        resolve_device(self.device)  # ValueError for an unknown or missing device


@dataclass
class TrainResult:
    """What `train` returns. ``stopped``: None (ran all steps), 'time_budget' or 'cancelled'."""

    model: SequenceModel
    history: list[dict]        # one entry per evaluation: step, loss (mean since the last one), val_metric, ...
    test_metric: float
    val_metric: float          # of the kept (best) model
    best_step: int
    wall_time_s: float
    device: str
    steps_done: int
    stopped: str | None
    card: dict


# ----------------------------------------------------------------------------------------------------------
# pieces


def build(cfg: TrainConfig):
    """The task and a freshly initialised model (seeded by cfg.seed) for a config. Raises ValueError."""
    from .tasks import get_task

    cfg.check()
    task = get_task(cfg.task, seed=cfg.task_seed, **cfg.task_params)
    spec = task.spec
    pool = cfg.pool or ("mean" if spec.output_kind == "class" else "none")
    mcfg = ModelConfig(
        d_input=spec.d_input, d_output=spec.d_output, d_model=cfg.d_model, n_layers=cfg.n_layers,
        kernel=cfg.family, kernel_args=dict(cfg.kernel_args), l_max=spec.L, bidirectional=cfg.bidirectional,
        input_kind=spec.input_kind, prenorm=cfg.prenorm, norm=cfg.norm, dropout=cfg.dropout, pool=pool,
    )
    torch.manual_seed(cfg.seed)
    try:
        model = SequenceModel(mcfg)
    except TypeError as e:  # an unknown kernel argument
        raise ValueError(f"bad kernel arguments for {cfg.family!r}: {e}") from None
    return task, model


def make_optimizer(model: SequenceModel, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW: kernel params at kernel_lr without decay; matrices at lr with decay; biases/norms at lr without."""
    kernel_ids = {id(p) for p in model.kernel_parameters()}
    kernel, decay, no_decay = [], [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        if id(p) in kernel_ids:
            kernel.append(p)
        elif p.dim() >= 2:
            decay.append(p)
        else:
            no_decay.append(p)
    groups = [
        {"params": decay, "lr": cfg.lr, "weight_decay": cfg.weight_decay, "name": "decay"},
        {"params": no_decay, "lr": cfg.lr, "weight_decay": 0.0, "name": "no_decay"},
        {"params": kernel, "lr": cfg.kernel_lr, "weight_decay": 0.0, "name": "kernel"},
    ]
    for g in groups:
        g["base_lr"] = g["lr"]
    return torch.optim.AdamW([g for g in groups if g["params"]])


def lr_factor(step: int, steps: int, warmup: int) -> float:
    """Linear warmup to 1 over `warmup` steps, then cosine to 0 at `steps` (step counts from 0)."""
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 128, device=None) -> torch.Tensor:
    """Model outputs for all of x, in batches, on CPU."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = [model(x[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return torch.cat(out)


def score(model, task, x, y, batch_size: int = 128) -> float:
    """The task's metric of model on (x, y)."""
    return task.metric(predict(model, x, batch_size), y)


def better(a: float, b: float | None, metric: str) -> bool:
    """Is metric value a better than b? (accuracy: higher; nmse: lower)."""
    if b is None or math.isnan(b):
        return not math.isnan(a)
    return a > b if metric == "accuracy" else a < b


def to_command(cfg: TrainConfig) -> str:
    """The CLI call that reproduces a config (only settings that differ from the defaults are spelled out)."""
    d = TrainConfig()
    parts = ["python", "-m", "sgconv_core.train", "--task", cfg.task, "--family", cfg.family]
    for k, v in sorted(cfg.task_params.items()):
        parts += ["--task-param", _key_value(k, v)]
    for k, v in sorted(cfg.kernel_args.items()):
        parts += ["--kernel-arg", _key_value(k, v)]
    for f in fields(TrainConfig):
        if f.name in ("task", "family", "task_params", "kernel_args", "notes"):
            continue
        v = getattr(cfg, f.name)
        flag = "--" + f.name.replace("_", "-")
        if f.name == "prenorm":
            if v != d.prenorm:
                parts.append("--postnorm")
        elif f.name == "bidirectional":
            if v:
                parts.append("--bidirectional")
        elif f.name in ("steps", "batch_size", "seed") or v != getattr(d, f.name):
            if v is not None:
                parts += [flag if f.name != "time_budget_s" else "--time-budget", str(v)]
    return " ".join(shlex.quote(p) for p in parts)


def _key_value(k: str, v) -> str:
    """KEY=VALUE as `parse_value` reads it back: a string as is if it stays a string (init=inv), else JSON
    (so the string '1' is written "1", not 1, and comes back as the string)."""
    plain = isinstance(v, str) and parse_value(v) == v
    return f"{k}={v if plain else json.dumps(v)}"


def make_card(cfg: TrainConfig, task, model, *, test_metric, val_metric, best_step, steps_done, wall, device,
              stopped, summary: dict | None = None) -> dict:
    """The model card of a finished run. Besides the config and bookkeeping it carries the test split's metric with
    its n and 95 % interval (``test_n``, ``test_ci``, ``test_interval``) and, for ListOps, the three baselines on the
    same split (``test_baselines``): `sgconv_core.evaluate.test_summary` (``summary``: already computed by
    `Run.finish` from the same outputs)."""
    from .evaluate import test_summary

    spec = task.spec
    n_kernel = sum(k.n_params for k in model.kernels)
    summary = dict(summary) if summary is not None else test_summary(model, task, cfg.eval_batch_size)
    summary.pop("test_value", None)  # the caller's test_metric is the value (the same model on the same split)
    return {
        "name": os.path.splitext(os.path.basename(cfg.out))[0] if cfg.out else f"{cfg.task}-{cfg.family}",
        "task": cfg.task, "task_params": dict(cfg.task_params), "task_seed": cfg.task_seed,
        "task_spec": {k: v for k, v in asdict(spec).items()},
        "family": cfg.family, "metric": spec.metric, "split": "test",
        "test_value": test_metric, "val_value": val_metric, "baseline": task.baseline(),
        "n_test": len(task.split("test")[1]), **summary,
        "steps": steps_done, "steps_planned": cfg.steps, "best_step": best_step, "stopped": stopped,
        "wall_time_s": round(wall, 2), "device": device_name(device), "device_type": device.type,
        "threads": torch.get_num_threads() if device.type == "cpu" else None, "seed": cfg.seed,
        "kernel_params": n_kernel, "total_params": sum(p.numel() for p in model.parameters()),
        "model_config": model.cfg.to_dict(), "train_config": asdict(cfg),
        "torch": torch.__version__, "python": platform.python_version(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": to_command(cfg), "notes": cfg.notes,
    }


# ----------------------------------------------------------------------------------------------------------
# the runs


@dataclass
class Run:
    """One model in training and everything the loop tracks for it (`fit` steps a list of these)."""

    cfg: TrainConfig
    model: SequenceModel
    opt: torch.optim.Optimizer
    gen: torch.Generator                 # batch order, seeded by cfg.seed
    warmup: int                          # lr warmup steps
    key: str = ""                        # names the run in progress events
    order: torch.Tensor | None = None    # this epoch's permutation of the training set
    pos: int = 0                         # next position in `order`
    step: int = 0                        # optimiser steps taken
    best: float | None = None            # best val metric so far, at best_step, with the weights then
    best_step: int = 0
    best_state: dict | None = None
    history: list = field(default_factory=list)     # one dict per evaluation: step, loss, val_metric, ...
    losses: list = field(default_factory=list)      # [step, loss] for every step
    since_eval: list = field(default_factory=list)  # losses since the last evaluation
    error: str | None = None             # why the run stopped (a non-finite loss); it takes no more steps
    test_summary: dict | None = None     # set by finish: test value, n, 95 % interval (evaluate.test_summary_of)

    @classmethod
    def start(cls, cfg: TrainConfig, model: SequenceModel, key: str = "") -> Run:
        warmup = cfg.warmup if cfg.warmup is not None else int(0.05 * cfg.steps)
        return cls(cfg=cfg, model=model, opt=make_optimizer(model, cfg), gen=torch.Generator().manual_seed(cfg.seed),
                   warmup=warmup, key=key)

    @property
    def lr(self) -> float:
        return self.opt.param_groups[0]["lr"]

    @property
    def val_metric(self) -> float:
        return float("nan") if self.best is None else self.best

    def next_batch(self, n: int) -> torch.Tensor:
        """Indices of the next training batch (a fresh permutation of range(n) each epoch)."""
        bs = self.cfg.batch_size
        if self.order is None or self.pos + bs > len(self.order):
            self.order, self.pos = torch.randperm(n, generator=self.gen), 0
        self.pos += bs
        return self.order[self.pos - bs:self.pos]

    def set_lr(self, step: int) -> None:
        f = lr_factor(step, self.cfg.steps, self.warmup)
        for g in self.opt.param_groups:
            g["lr"] = g["base_lr"] * f

    def take_step(self, step: int, loss: float) -> None:
        """Apply the gradients of this step's loss, or stop the run if the loss is not finite."""
        if not math.isfinite(loss):
            self.error = f"loss is {loss} at step {step}; lower lr or kernel_lr"
            return
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.opt.step()
        self.step = step + 1
        self.since_eval.append(loss)
        self.losses.append([self.step, loss])

    def eval_due(self, step: int) -> bool:
        """Evaluate after `step` steps? Every eval_every steps, and after the last one."""
        return step % self.cfg.eval_every == 0 or step == self.cfg.steps

    def record_eval(self, step: int, val: float, metric: str, t0: float) -> None:
        """Log an evaluation (with the mean loss since the last one); keep the weights if val is the best yet."""
        loss = sum(self.since_eval) / max(1, len(self.since_eval))
        self.since_eval.clear()
        if better(val, self.best, metric):
            self.best, self.best_step = val, step
            self.best_state = copy.deepcopy(self.model.state_dict())
        self.history.append({"step": step, "loss": loss, "val_metric": val, "best_val": self.best,
                             "elapsed_s": time.time() - t0})

    def finish(self, task) -> float:
        """Load the best weights, score them on the test split, move the model to the CPU; the test metric."""
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        self.model.eval()
        from .evaluate import test_summary_of

        x_test, _ = task.split("test")
        self.test_summary = test_summary_of(task, predict(self.model, x_test, self.cfg.eval_batch_size))
        self.model.cpu()
        return self.test_summary["test_value"]

    def card(self, task, test_metric: float, wall: float, device: torch.device, stopped: str | None) -> dict:
        return make_card(self.cfg, task, self.model, test_metric=test_metric, val_metric=self.best,
                         best_step=self.best_step, steps_done=self.step, wall=wall, device=device, stopped=stopped,
                         summary=self.test_summary)


class SeparateModels:
    """How `fit` runs its models: each on its own batch. (The ablation's BatchedModel runs them as one.)"""

    def forward(self, runs: list[Run], xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [r.model(x) for r, x in zip(runs, xs, strict=True)]

    def predict(self, runs: list[Run], x: torch.Tensor) -> list[torch.Tensor]:
        return [predict(r.model, x, r.cfg.eval_batch_size) for r in runs]


def save_checkpoint(model: SequenceModel, path: str, card: dict) -> None:
    from .checkpoints import save

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save(model, path, card)


# ----------------------------------------------------------------------------------------------------------
# the loop


def fit(runs: list[Run], task, models=None, progress: Callable[[dict], None] | None = None,
        should_stop: Callable[[], bool] | None = None, time_budget_s: float | None = None,
        t0: float | None = None) -> str | None:
    """Train `runs` (same task, same number of steps) side by side; return None, 'cancelled' or 'time_budget'.

    Each step every active run draws its own batch, the summed losses are back-propagated once (the runs share
    no parameters, so each gets exactly its own gradient) and each optimiser steps. A run whose loss is not
    finite stops (run.error). Runs are evaluated on val every cfg.eval_every steps and after the last step.
    ``models`` (default SeparateModels()) maps batches to outputs. progress gets
    {"event": "step", "keys", "step", "steps", "losses": {key: loss}, "elapsed_s", "eta_s"} and
    {"event": "eval", "keys", "step", "steps", "val_metrics", "metric", "elapsed_s"}.
    """
    device = next(runs[0].model.parameters()).device
    # on the CPU the step's activations are re-allocated every step: keep their memory mapped
    with reuse_freed_memory() if device.type == "cpu" else contextlib.nullcontext():
        return _fit(runs, task, models, progress, should_stop, time_budget_s, t0, device)


def _fit(runs, task, models, progress, should_stop, time_budget_s, t0, device) -> str | None:
    """`fit`'s loop."""
    models = models or SeparateModels()
    t0 = time.time() if t0 is None else t0
    steps, metric = runs[0].cfg.steps, task.spec.metric
    if any(r.cfg.steps != steps for r in runs):
        raise ValueError("runs trained together must have the same number of steps")
    x_train, y_train = (t.to(device) for t in task.split("train"))
    x_val, y_val = task.split("val")

    def evaluate(which: list[Run], step: int) -> None:
        vals = [task.metric(pred, y_val) for pred in models.predict(which, x_val)]
        for r, val in zip(which, vals, strict=True):
            r.record_eval(step, val, metric, t0)
        if progress:
            progress({"event": "eval", "keys": [r.key for r in which], "step": step, "steps": steps,
                      "val_metrics": vals, "metric": metric, "elapsed_s": time.time() - t0})

    active, stopped = list(runs), None
    for step in range(steps):
        if should_stop is not None and should_stop():
            stopped = "cancelled"
            break
        if time_budget_s is not None and time.time() - t0 > time_budget_s:
            stopped = "time_budget"
            break
        idx = [r.next_batch(len(x_train)).to(device) for r in active]
        for r in active:
            r.set_lr(step)
            r.opt.zero_grad(set_to_none=True)
        outs = models.forward(active, [x_train[i] for i in idx])
        losses = [task.loss(out, y_train[i]) for out, i in zip(outs, idx, strict=True)]
        (losses[0] if len(losses) == 1 else torch.stack(losses).sum()).backward()
        values = torch.stack([loss.detach() for loss in losses]).tolist()
        for r, value in zip(active, values, strict=True):
            r.take_step(step, value)
        stepped, active = active, [r for r in active if r.error is None]
        if progress:
            elapsed = time.time() - t0
            progress({"event": "step", "keys": [r.key for r in active], "step": step + 1, "steps": steps,
                      "losses": {r.key: v for r, v in zip(stepped, values, strict=True)}, "elapsed_s": elapsed,
                      "eta_s": elapsed / (step + 1) * (steps - step - 1)})
        due = [r for r in active if r.eval_due(step + 1)]
        if due:
            evaluate(due, step + 1)
        if not active:
            break
    late = [r for r in active if r.step > 0 and (not r.history or r.history[-1]["step"] != r.step)]
    if late:  # stopped early, between evaluations
        evaluate(late, late[0].step)
    return stopped


def train(cfg: TrainConfig, progress: Callable[[dict], None] | None = None,
          should_stop: Callable[[], bool] | None = None) -> TrainResult:
    """Train, keep the best model on val, score it on test, write cfg.out if set. See the module docstring."""
    t0 = time.time()
    device = resolve_device(cfg.device)
    if device.type == "cpu" and cfg.threads:
        torch.set_num_threads(cfg.threads)
    task, model = build(cfg)
    model.to(device).train()
    run = Run.start(cfg, model)
    stopped = fit([run], task, progress=_one_run_progress(progress, run), should_stop=should_stop,
                  time_budget_s=cfg.time_budget_s, t0=t0)
    if run.error:
        raise FloatingPointError(run.error)
    test_metric = run.finish(task)
    wall = time.time() - t0
    card = run.card(task, test_metric, wall, device, stopped)
    if cfg.out:
        save_checkpoint(model, cfg.out, card)
    return TrainResult(model=model, history=run.history, test_metric=test_metric, val_metric=run.val_metric,
                       best_step=run.best_step, wall_time_s=wall, device=card["device"], steps_done=run.step,
                       stopped=stopped, card=card)


def _one_run_progress(progress: Callable[[dict], None] | None, run: Run) -> Callable[[dict], None] | None:
    """`fit`'s events as `train` reports them: per step {step, steps, loss, lr, elapsed_s, eta_s}; per
    evaluation the history entry {step, loss, val_metric, best_val, elapsed_s} plus steps, lr, metric, eta_s."""
    if progress is None:
        return None

    def report(ev: dict) -> None:
        steps = ev["steps"]
        if ev["event"] == "eval":
            entry = run.history[-1]
            eta = entry["elapsed_s"] / max(1, entry["step"]) * (steps - entry["step"])
            progress({**entry, "steps": steps, "lr": run.lr, "metric": ev["metric"], "eta_s": eta})
        elif run.error is None:
            progress({"step": ev["step"], "steps": steps, "loss": ev["losses"][run.key], "lr": run.lr,
                      "elapsed_s": ev["elapsed_s"], "eta_s": ev["eta_s"]})

    return report


# ----------------------------------------------------------------------------------------------------------
# command line


def parse_value(s: str):
    """'3' -> 3, '0.5' -> 0.5, 'true' -> True, 'null' -> None, '[1,2]' -> [1, 2], anything else -> the string."""
    try:
        return json.loads(s)
    except ValueError:
        return s


def key_values(items: list[str], parser: argparse.ArgumentParser, flag: str) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item or not item.split("=", 1)[0]:
            parser.error(f"{flag} expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip().replace("-", "_")] = parse_value(v)
    return out


def build_parser() -> argparse.ArgumentParser:
    """The `python -m sgconv_core.train` command line (`config_from_args` turns its parse into a TrainConfig)."""
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="python -m sgconv_core.train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--task", default=d.task, help="digits | delay | listops")
    p.add_argument("--task-param", action="append", metavar="K=V", help="task parameter, e.g. lag=256 (repeatable)")
    p.add_argument("--task-seed", type=int, default=d.task_seed, help="seed of the task's data splits")
    p.add_argument("--family", default=d.family, help=" | ".join(FAMILIES))
    p.add_argument("--d-model", type=int, default=d.d_model)
    p.add_argument("--n-layers", type=int, default=d.n_layers)
    p.add_argument("--kernel-dim", type=int, help="SGConv kernel_dim (same as --kernel-arg kernel_dim=N)")
    p.add_argument("--d-state", type=int, help="S4/S4D state size (same as --kernel-arg d_state=N)")
    p.add_argument("--kernel-arg", action="append", metavar="K=V", help="kernel argument, e.g. mode=cat_randn")
    p.add_argument("--dropout", type=float, default=d.dropout)
    p.add_argument("--postnorm", action="store_true", help="post-norm residual blocks (default pre-norm)")
    p.add_argument("--norm", default=d.norm, choices=["layer", "scalar", "batch", "none"])
    p.add_argument("--bidirectional", action="store_true")
    p.add_argument("--pool", choices=["mean", "last", "none"], help="default: mean (class) / none (sequence)")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--kernel-lr", type=float, default=d.kernel_lr)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--warmup", type=int, help="warmup steps (default 5%% of steps)")
    p.add_argument("--grad-clip", type=float, default=d.grad_clip)
    p.add_argument("--eval-every", type=int, default=d.eval_every)
    p.add_argument("--eval-batch-size", type=int, default=d.eval_batch_size)
    p.add_argument("--time-budget", type=float, help="seconds; stop early when spent")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device, help="auto | cpu | cuda[:i]")
    p.add_argument("--threads", type=int, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--out", help="write the checkpoint here (.safetensors)")
    p.add_argument("--notes", default="", help="free text stored in the model card")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def config_from_args(a: argparse.Namespace, p: argparse.ArgumentParser) -> TrainConfig:
    """The TrainConfig a parsed command line asks for (p.error on a malformed KEY=VALUE)."""
    kernel_args = key_values(a.kernel_arg, p, "--kernel-arg")
    if a.kernel_dim is not None:
        kernel_args["kernel_dim"] = a.kernel_dim
    if a.d_state is not None:
        kernel_args["d_state"] = a.d_state
    return TrainConfig(
        task=a.task, task_params=key_values(a.task_param, p, "--task-param"), task_seed=a.task_seed,
        family=a.family, d_model=a.d_model, n_layers=a.n_layers, kernel_args=kernel_args, dropout=a.dropout,
        prenorm=not a.postnorm, norm=a.norm, bidirectional=a.bidirectional, pool=a.pool, steps=a.steps,
        batch_size=a.batch_size, lr=a.lr, kernel_lr=a.kernel_lr, weight_decay=a.weight_decay, warmup=a.warmup,
        grad_clip=a.grad_clip, eval_every=a.eval_every, eval_batch_size=a.eval_batch_size,
        time_budget_s=a.time_budget, seed=a.seed, device=a.device, threads=a.threads, out=a.out, notes=a.notes,
    )


#: Upper bounds the command line puts on sizes (beyond them one model does not fit a usual machine's memory).
CLI_MAX_SIZES = {"d_state": 4096, "kernel_dim": 4096, "d_model": 4096, "n_layers": 64}


def cli_problem(cfg: TrainConfig) -> str | None:
    """Why the command line refuses this config before building anything (one line), or None."""
    for name, hi in CLI_MAX_SIZES.items():
        v = cfg.kernel_args.get(name) if name in ("d_state", "kernel_dim") else getattr(cfg, name)
        if isinstance(v, int) and not isinstance(v, bool) and v > hi:
            return f"{name} must be at most {hi:,}, got {v:,}"
    if cfg.threads is not None and cfg.threads <= 0:
        return f"threads must be positive, got {cfg.threads}"
    if cfg.out:
        out = os.path.abspath(os.path.expanduser(cfg.out))
        if os.path.isdir(out):
            return f"--out {cfg.out} is a folder; give a file path such as {os.path.join(cfg.out, 'model.safetensors')}"
        parent = os.path.dirname(out)
        if not os.path.isdir(parent):
            what = "is not a folder" if os.path.exists(parent) else "does not exist"
            return f"--out {cfg.out}: {parent} {what}"
    return None


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    a = p.parse_args(argv)
    cfg = config_from_args(a, p)
    problem = cli_problem(cfg)
    if problem:
        p.error(problem)
    try:
        with torch.random.fork_rng():
            task, model = build(cfg)  # validate everything before the (long) run
    except ValueError as e:
        p.error(str(e))
    n_kernel = sum(k.n_params for k in model.kernels)
    n_total = sum(q.numel() for q in model.parameters())
    print(f"{cfg.task} ({task.spec.metric}, L={task.spec.L}) | {cfg.family} {cfg.n_layers}x{cfg.d_model} | "
          f"{n_kernel:,} kernel / {n_total:,} params | {device_name(resolve_device(cfg.device))}", flush=True)

    from tqdm import tqdm

    bar = tqdm(total=cfg.steps, unit="step", disable=a.quiet, dynamic_ncols=True, file=sys.stderr)

    def progress(info: dict) -> None:
        if "val_metric" in info:
            tqdm.write(f"step {info['step']:>6}/{cfg.steps} | loss {info['loss']:.4f} | val {info['metric']} "
                       f"{info['val_metric']:.4f} (best {info['best_val']:.4f}) | {info['elapsed_s']:.0f}s",
                       file=sys.stdout)
            sys.stdout.flush()
        else:
            bar.update(info["step"] - bar.n)
            bar.set_postfix(loss=f"{info['loss']:.4f}", lr=f"{info['lr']:.2e}", refresh=False)

    res = train(cfg, progress=progress)
    bar.close()
    c = res.card
    lo, hi = c["test_ci"]
    msg = (f"test {c['metric']} {c['test_value']:.4f}, 95% CI [{lo:.4f}, {hi:.4f}] ({c['test_interval']}), "
           f"n = {c['test_n']:,} (trivial baseline {c['baseline']:.4f}) | best val "
           f"{c['val_value']:.4f} at step {c['best_step']} | {c['steps']} steps in {c['wall_time_s']:.0f}s")
    if res.stopped:
        msg += f" | stopped early: {res.stopped}"
    print(msg + (f" | wrote {cfg.out}" if cfg.out else ""), flush=True)
    for name, b in (c.get("test_baselines") or {}).items():
        print(f"  baseline {name} on the same test split: {b['value']:.4f}, 95% CI [{b['ci'][0]:.4f}, "
              f"{b['ci'][1]:.4f}] (Wilson), n = {b['n']:,}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
