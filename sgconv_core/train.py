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
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Callable

import torch

from .kernels import KERNELS
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
        if self.family not in KERNELS:
            raise ValueError(f"unknown family {self.family!r}; choose from {sorted(KERNELS)}")
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
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ValueError(f"unknown device {self.device!r}; use 'auto', 'cpu' or 'cuda[:i]'")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {self.device!r} asked for but CUDA is not available")


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


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def device_name(device: torch.device) -> str:
    """'NVIDIA H100 80GB HBM3' or the CPU model, e.g. 'AMD EPYC (2 cores)'."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    name = name or platform.processor() or platform.machine() or "cpu"
    return f"{name} ({os.cpu_count()} cores)"


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
        parts += ["--task-param", f"{k}={json.dumps(v) if not isinstance(v, str) else v}"]
    for k, v in sorted(cfg.kernel_args.items()):
        parts += ["--kernel-arg", f"{k}={json.dumps(v) if not isinstance(v, str) else v}"]
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


def make_card(cfg: TrainConfig, task, model, *, test_metric, val_metric, best_step, steps_done, wall, device,
              stopped) -> dict:
    spec = task.spec
    n_kernel = sum(k.n_params for k in model.kernels)
    return {
        "name": os.path.splitext(os.path.basename(cfg.out))[0] if cfg.out else f"{cfg.task}-{cfg.family}",
        "task": cfg.task, "task_params": dict(cfg.task_params), "task_seed": cfg.task_seed,
        "task_spec": {k: v for k, v in asdict(spec).items()},
        "family": cfg.family, "metric": spec.metric, "split": "test",
        "test_value": test_metric, "val_value": val_metric, "baseline": task.baseline(),
        "n_test": len(task.split("test")[1]),
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
# the loop


def train(cfg: TrainConfig, progress: Callable[[dict], None] | None = None,
          should_stop: Callable[[], bool] | None = None) -> TrainResult:
    """Train, keep the best model on val, score it on test, write cfg.out if set. See the module docstring."""
    t0 = time.time()
    device = resolve_device(cfg.device)
    if device.type == "cpu" and cfg.threads:
        torch.set_num_threads(cfg.threads)
    task, model = build(cfg)
    model.to(device).train()
    metric = task.spec.metric
    x_train, y_train = task.split("train")
    x_val, y_val = task.split("val")
    opt = make_optimizer(model, cfg)
    warmup = cfg.warmup if cfg.warmup is not None else int(0.05 * cfg.steps)
    gen = torch.Generator().manual_seed(cfg.seed)  # batch order
    order, pos = torch.randperm(len(x_train), generator=gen), 0

    history, best, best_state, best_step = [], None, None, 0
    losses_since_eval, stopped, step = [], None, 0

    def evaluate_now(step: int) -> None:
        nonlocal best, best_state, best_step
        val = score(model, task, x_val, y_val, cfg.eval_batch_size)
        loss = sum(losses_since_eval) / max(1, len(losses_since_eval))
        losses_since_eval.clear()
        if better(val, best, metric):
            best, best_step = val, step
            best_state = copy.deepcopy(model.state_dict())
        elapsed = time.time() - t0
        entry = {"step": step, "loss": loss, "val_metric": val, "best_val": best, "elapsed_s": elapsed}
        history.append(entry)
        if progress:
            progress({**entry, "steps": cfg.steps, "lr": opt.param_groups[0]["lr"], "metric": metric,
                      "eta_s": elapsed / max(1, step) * (cfg.steps - step)})

    for step in range(cfg.steps):
        if should_stop is not None and should_stop():
            stopped = "cancelled"
            break
        if cfg.time_budget_s is not None and time.time() - t0 > cfg.time_budget_s:
            stopped = "time_budget"
            break
        # batch (a fresh permutation each epoch)
        if pos + cfg.batch_size > len(order):
            order, pos = torch.randperm(len(x_train), generator=gen), 0
        idx = order[pos:pos + cfg.batch_size]
        pos += cfg.batch_size
        x, y = x_train[idx].to(device), y_train[idx].to(device)
        # step
        f = lr_factor(step, cfg.steps, warmup)
        for g in opt.param_groups:
            g["lr"] = g["base_lr"] * f
        loss = task.loss(model(x), y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {step}; lower lr or kernel_lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        losses_since_eval.append(loss.item())
        if progress:
            elapsed = time.time() - t0
            progress({"step": step + 1, "steps": cfg.steps, "loss": losses_since_eval[-1],
                      "lr": opt.param_groups[0]["lr"], "elapsed_s": elapsed,
                      "eta_s": elapsed / (step + 1) * (cfg.steps - step - 1)})
        if (step + 1) % cfg.eval_every == 0:
            evaluate_now(step + 1)
    else:
        step = cfg.steps
    steps_done = step
    if steps_done > 0 and (not history or history[-1]["step"] != steps_done):
        evaluate_now(steps_done)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    x_test, y_test = task.split("test")
    test_metric = score(model, task, x_test, y_test, cfg.eval_batch_size)
    wall = time.time() - t0
    model.cpu()
    card = make_card(cfg, task, model, test_metric=test_metric, val_metric=best, best_step=best_step,
                     steps_done=steps_done, wall=wall, device=device, stopped=stopped)
    if cfg.out:
        from .checkpoints import save

        os.makedirs(os.path.dirname(os.path.abspath(cfg.out)), exist_ok=True)
        save(model, cfg.out, card)
    return TrainResult(model=model, history=history, test_metric=test_metric,
                       val_metric=float("nan") if best is None else best, best_step=best_step, wall_time_s=wall,
                       device=card["device"], steps_done=steps_done, stopped=stopped, card=card)


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


def main(argv: list[str] | None = None) -> int:
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="python -m sgconv_core.train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--task", default=d.task, help="digits | delay | listops")
    p.add_argument("--task-param", action="append", metavar="K=V", help="task parameter, e.g. lag=256 (repeatable)")
    p.add_argument("--task-seed", type=int, default=d.task_seed, help="seed of the task's data splits")
    p.add_argument("--family", default=d.family, help="sgconv | s4 | s4d | conv")
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
    a = p.parse_args(argv)

    kernel_args = key_values(a.kernel_arg, p, "--kernel-arg")
    if a.kernel_dim is not None:
        kernel_args["kernel_dim"] = a.kernel_dim
    if a.d_state is not None:
        kernel_args["d_state"] = a.d_state
    cfg = TrainConfig(
        task=a.task, task_params=key_values(a.task_param, p, "--task-param"), task_seed=a.task_seed,
        family=a.family, d_model=a.d_model, n_layers=a.n_layers, kernel_args=kernel_args, dropout=a.dropout,
        prenorm=not a.postnorm, norm=a.norm, bidirectional=a.bidirectional, pool=a.pool, steps=a.steps,
        batch_size=a.batch_size, lr=a.lr, kernel_lr=a.kernel_lr, weight_decay=a.weight_decay, warmup=a.warmup,
        grad_clip=a.grad_clip, eval_every=a.eval_every, eval_batch_size=a.eval_batch_size,
        time_budget_s=a.time_budget, seed=a.seed, device=a.device, threads=a.threads, out=a.out, notes=a.notes,
    )
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
    msg = (f"test {c['metric']} {c['test_value']:.4f} (baseline {c['baseline']:.4f}) | best val "
           f"{c['val_value']:.4f} at step {c['best_step']} | {c['steps']} steps in {c['wall_time_s']:.0f}s")
    if res.stopped:
        msg += f" | stopped early: {res.stopped}"
    print(msg + (f" | wrote {cfg.out}" if cfg.out else ""), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
