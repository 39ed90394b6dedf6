"""Train several runs of a sweep at once, as one batched model (or one after another, the same code path).

`train_group(runs, ...)` takes runs that share the data and the backbone shapes (:meth:`RunSpec.group_signature`)
and trains them with exactly the recipe of :func:`sgconv_core.train.train` (same model init from the run's seed,
same AdamW groups, warmup + cosine schedule, batch order, best-on-val model kept, test score, model card).

Batched mode (``batched=True`` and more than one run):

* every run keeps its own ``SequenceModel`` and optimiser (so its checkpoint is an ordinary one);
* each step, each run's kernels are computed by its own kernel module (shapes may differ: kernel_dim, d_state,
  even family), stacked to ``(V, C, H, L)``;
* the rest of the network (encoder, norms, FFT convolutions, D skip, GLU output, decoder), whose parameters have
  the same shapes in every run, runs once for all V runs: its parameters are stacked along a leading
  batch-of-models axis and ``torch.func.vmap(functional_call(stub, params, x))`` evaluates a copy of the model
  whose kernel modules are stubs returning the precomputed kernels;
* the V losses are summed and back-propagated once; as the runs share no parameters, each run gets exactly
  its own gradient, and its own optimiser steps it.

With one run (or ``batched=False``) the model is called directly, which reproduces ``sgconv_core.train.train``
bit for bit on CPU. The batched forward equals the per-model forward to float rounding.
"""
from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from sgconv_core.kernels.base import Kernel
from sgconv_core.model import SequenceModel
from sgconv_core.train import (better, build, device_name, lr_factor, make_card, make_optimizer, resolve_device,
                               score)

from .spec import RunSpec


class Cancelled(Exception):
    """Raised inside a group when should_stop() turned true; finished runs were already handed over."""


@dataclass
class RunOutcome:
    """What one run produced. status: 'done' | 'failed'."""

    run: RunSpec
    key: str
    status: str
    metric: str = ""
    test_metric: float = float("nan")
    val_metric: float = float("nan")
    best_step: int = 0
    steps_done: int = 0
    evals: list = field(default_factory=list)     # [{step, loss, val_metric}]
    losses: list = field(default_factory=list)    # [[step, loss]] (at most ~400 points)
    checkpoint: str | None = None
    card: dict = field(default_factory=dict)
    device: str = ""
    wall_time_s: float = 0.0
    batched_with: int = 1
    error: str | None = None
    kernel_params: int = 0
    total_params: int = 0

    def row(self, sweep: str | None = None) -> dict:
        """The database row for this run."""
        return {
            "key": self.key, "status": self.status, "sweep": sweep, "task": self.run.task, "family": self.run.family,
            "decay": self.run.decay, "decay_mode": self.run.decay_mode, "size": self.run.size, "seed": self.run.seed,
            "steps": self.run.steps, "metric": self.metric, "test_metric": self.test_metric,
            "val_metric": self.val_metric, "best_step": self.best_step, "steps_done": self.steps_done,
            "kernel_params": self.kernel_params, "total_params": self.total_params, "spec": self.run.to_dict(),
            "train_config": self.card.get("train_config"),
            "curve": {"evals": self.evals, "loss": self.losses}, "checkpoint": self.checkpoint,
            "device": self.device, "batched_with": self.batched_with, "wall_time_s": self.wall_time_s,
            "error": self.error,
        }


# ---------------------------------------------------------------------------------------------------- pieces
def apply_hook(model: SequenceModel, hook: dict) -> None:
    """The S4/S4D decay knob: scale Re A by `real_scale`; freeze the named kernel parameters."""
    from sgconv_core.kernels.ssm import inv_transform, param_transform

    if not hook:
        return
    for k in model.kernels:
        if "real_scale" in hook and hasattr(k, "A_real"):
            rt = getattr(k, "real_transform", "exp")
            with torch.no_grad():
                re = param_transform(k.A_real.detach(), rt) * float(hook["real_scale"])
                k.A_real.copy_(inv_transform(re, rt).to(k.A_real.dtype))
        for name in hook.get("freeze", ()):
            p = getattr(k, name, None)
            if isinstance(p, torch.nn.Parameter):
                p.requires_grad_(False)


class _KernelStub(Kernel):
    """Stands in for a kernel module in the batched forward: returns the precomputed kernel ``k``."""

    kind = "stub"

    def __init__(self, like: Kernel, L: int):
        super().__init__(like.H, like.channels, like.bidirectional, like.l_max)
        self.register_buffer("k", torch.zeros(like.C_k, like.H, L), persistent=False)

    def forward(self, L: int) -> torch.Tensor:
        return self.k

    @property
    def config(self) -> dict:
        return {}


def batchable(models: list[SequenceModel]) -> str | None:
    """None if the models can run as one batched model, else the reason they cannot."""
    c0 = models[0].cfg
    if c0.dropout > 0:
        return "dropout > 0 (random masks differ per run)"
    if c0.norm == "batch":
        return "batch norm (running statistics are updated in place)"
    shapes0 = _backbone_shapes(models[0])
    for m in models[1:]:
        if _backbone_shapes(m) != shapes0:
            return "the runs' backbones differ in shape"
        if m.layers[0].layer.kernel.C_k != models[0].layers[0].layer.kernel.C_k:
            return "kernel channels differ"
    return None


def _backbone_shapes(model: SequenceModel) -> list:
    return [(n, tuple(p.shape)) for n, p in model.named_parameters() if ".layer.kernel." not in n]


class BatchedModel:
    """V SequenceModels with identical backbones evaluated as one vmapped model (see the module docstring)."""

    def __init__(self, models: list[SequenceModel], L: int):
        self.models = models
        self.stub = copy.deepcopy(models[0])
        self.lengths = []
        for blk in self.stub.layers:
            Lk = blk.layer.kernel_length(L)
            self.lengths.append(Lk)
            blk.layer.kernel = _KernelStub(blk.layer.kernel, Lk)
        self.names = [n for n, _ in self.stub.named_parameters()]
        self.buffer_names = [n for n, _ in self.stub.named_buffers() if not n.endswith(".kernel.k")]
        for p in self.stub.parameters():
            p.requires_grad_(False)

    def to(self, device):
        self.stub.to(device)
        return self

    def __call__(self, xs: torch.Tensor, active: list[int] | None = None) -> torch.Tensor:
        """xs (V', B, ...) -> outputs (V', B, ...) for the runs `active` (default all)."""
        from torch.func import functional_call, vmap

        idx = list(range(len(self.models))) if active is None else active
        models = [self.models[i] for i in idx]
        per = [dict(m.named_parameters()) for m in models]
        params = {n: torch.stack([p[n] for p in per]) for n in self.names}
        if self.buffer_names:
            bufs = [dict(m.named_buffers()) for m in models]
            params.update({n: torch.stack([b[n] for b in bufs]) for n in self.buffer_names})
        for i, Lk in enumerate(self.lengths):
            params[f"layers.{i}.layer.kernel.k"] = torch.stack([m.layers[i].layer.kernel(Lk) for m in models])
        return vmap(lambda p, x: functional_call(self.stub, p, (x,)))(params, xs)


def _downsample(points: list, n: int = 400) -> list:
    if len(points) <= n:
        return points
    stride = math.ceil(len(points) / n)
    out = points[::stride]
    if out[-1] is not points[-1]:
        out.append(points[-1])
    return out


# ---------------------------------------------------------------------------------------------------- training
def train_group(runs: list[RunSpec], device: str = "auto", batched: bool = True, checkpoint_dir: str | None = None,
                threads: int | None = None, progress: Callable[[dict], None] | None = None,
                should_stop: Callable[[], bool] | None = None,
                on_result: Callable[[RunOutcome], None] | None = None) -> list[RunOutcome]:
    """Train `runs` (same group signature) together; see the module docstring.

    progress(event) gets {"event": "step" | "eval", "keys": [...], "step", "steps", "losses": [...], ...};
    on_result(outcome) is called for each run as soon as its checkpoint is written. Raises Cancelled when
    should_stop() turns true (nothing of the group is kept).
    """
    if not runs:
        return []
    sig = runs[0].group_signature()
    if any(r.group_signature() != sig for r in runs):
        raise ValueError("train_group: the runs do not share data and shapes (group_signature)")
    t0 = time.time()
    dev = resolve_device(device)
    if dev.type == "cpu" and threads:
        torch.set_num_threads(threads)
    V = len(runs)
    keys = [r.key() for r in runs]
    cfgs, models, task = [], [], None
    for r, k in zip(runs, keys):
        out = os.path.join(checkpoint_dir, f"{r.task}-{r.family}-{k}.safetensors") if checkpoint_dir else None
        cfg = r.train_config(device=device, threads=threads, out=out)
        with torch.random.fork_rng(devices=[]):
            task_r, model = build(cfg)
        apply_hook(model, r.hook())
        task = task or task_r
        model.to(dev).train()
        cfgs.append(cfg)
        models.append(model)
    metric = task.spec.metric
    x_train, y_train = task.split("train")
    x_val, y_val = task.split("val")
    x_train, y_train = x_train.to(dev), y_train.to(dev)
    use_batch = batched and V > 1 and batchable(models) is None
    bm = BatchedModel(models, task.spec.L).to(dev) if use_batch else None

    opts = [make_optimizer(m, c) for m, c in zip(models, cfgs)]
    steps = cfgs[0].steps
    warmups = [c.warmup if c.warmup is not None else int(0.05 * c.steps) for c in cfgs]
    gens = [torch.Generator().manual_seed(c.seed) for c in cfgs]
    orders = [torch.randperm(len(x_train), generator=g) for g in gens]
    pos = [0] * V
    active = list(range(V))
    errors: dict[int, str] = {}
    best = [None] * V
    best_state = [None] * V
    best_step = [0] * V
    evals = [[] for _ in range(V)]
    losses = [[] for _ in range(V)]
    since_eval = [[] for _ in range(V)]
    steps_done = [0] * V

    def predict_all(x: torch.Tensor, which: list[int]) -> list[torch.Tensor]:
        bs = cfgs[0].eval_batch_size
        outs = [[] for _ in which]
        with torch.no_grad():
            for m in (models[i] for i in which):
                m.eval()
            for s in range(0, len(x), bs):
                xb = x[s:s + bs].to(dev)
                if bm is not None:
                    pred = bm(xb.unsqueeze(0).expand(len(which), *xb.shape), which)
                    for j in range(len(which)):
                        outs[j].append(pred[j].float().cpu())
                else:
                    for j, i in enumerate(which):
                        outs[j].append(models[i](xb).float().cpu())
            for m in (models[i] for i in which):
                m.train()
        return [torch.cat(o) for o in outs]

    def evaluate(step: int) -> None:
        if not active:
            return
        if bm is None:  # exactly what sgconv_core.train does
            vals = [score(models[i], task, x_val, y_val, cfgs[i].eval_batch_size) for i in active]
        else:
            vals = [task.metric(p, y_val) for p in predict_all(x_val, active)]
        for i, val in zip(active, vals):
            loss = sum(since_eval[i]) / max(1, len(since_eval[i]))
            since_eval[i].clear()
            if better(val, best[i], metric):
                best[i], best_step[i] = val, step
                best_state[i] = copy.deepcopy(models[i].state_dict())
            evals[i].append({"step": step, "loss": loss, "val_metric": val, "best_val": best[i],
                             "elapsed_s": time.time() - t0})
        if progress:
            progress({"event": "eval", "keys": [keys[i] for i in active], "step": step, "steps": steps,
                      "val_metrics": vals, "metric": metric, "elapsed_s": time.time() - t0})

    for step in range(steps):
        if should_stop is not None and should_stop():
            raise Cancelled(f"cancelled at step {step} of {steps}")
        xs, ys = [], []
        for i in active:
            if pos[i] + cfgs[i].batch_size > len(orders[i]):
                orders[i], pos[i] = torch.randperm(len(x_train), generator=gens[i]), 0
            idx = orders[i][pos[i]:pos[i] + cfgs[i].batch_size]
            pos[i] += cfgs[i].batch_size
            xs.append(x_train[idx.to(dev)] if dev.type != "cpu" else x_train[idx])
            ys.append(y_train[idx.to(dev)] if dev.type != "cpu" else y_train[idx])
            f = lr_factor(step, steps, warmups[i])
            for g in opts[i].param_groups:
                g["lr"] = g["base_lr"] * f
        if bm is not None:
            preds = bm(torch.stack(xs), active)
            step_losses = [task.loss(preds[j], ys[j]) for j in range(len(active))]
        else:
            step_losses = [task.loss(models[i](xs[j]), ys[j]) for j, i in enumerate(active)]
        for i in active:
            opts[i].zero_grad(set_to_none=True)
        torch.stack(step_losses).sum().backward() if len(step_losses) > 1 else step_losses[0].backward()
        values = torch.stack([l.detach() for l in step_losses]).tolist()
        stepped = list(active)
        for j, i in enumerate(stepped):
            if not math.isfinite(values[j]):
                errors[i] = f"loss is {values[j]} at step {step}; lower lr or kernel_lr"
                continue
            if cfgs[i].grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(models[i].parameters(), cfgs[i].grad_clip)
            opts[i].step()
            since_eval[i].append(values[j])
            losses[i].append([step + 1, values[j]])
            steps_done[i] = step + 1
        active = [i for i in active if i not in errors]
        if progress:
            el = time.time() - t0
            progress({"event": "step", "keys": [keys[i] for i in active], "step": step + 1, "steps": steps,
                      "losses": {keys[i]: values[j] for j, i in enumerate(stepped)},
                      "elapsed_s": el, "eta_s": el / (step + 1) * (steps - step - 1)})
        if (step + 1) % cfgs[0].eval_every == 0:
            evaluate(step + 1)
        if not active:
            break
    if active and (not evals[active[0]] or evals[active[0]][-1]["step"] != steps):
        evaluate(steps)

    # test, card, checkpoint
    from sgconv_core.checkpoints import save

    wall = time.time() - t0
    outcomes = []
    x_test, y_test = task.split("test")
    for i, (r, k, cfg, model) in enumerate(zip(runs, keys, cfgs, models)):
        if i in errors:
            o = RunOutcome(run=r, key=k, status="failed", metric=metric, error=errors[i], steps_done=steps_done[i],
                           evals=evals[i], losses=_downsample(losses[i]), device=device_name(dev),
                           wall_time_s=wall, batched_with=V)
        else:
            if best_state[i] is not None:
                model.load_state_dict(best_state[i])
            model.eval()
            test = score(model, task, x_test, y_test, cfg.eval_batch_size)
            model.cpu()
            card = make_card(cfg, task, model, test_metric=test, val_metric=best[i], best_step=best_step[i],
                             steps_done=steps_done[i], wall=wall, device=dev, stopped=None)
            card["ablation"] = {"key": k, **r.to_dict(), "hook": r.hook(), "batched_with": V}
            if cfg.out:
                os.makedirs(os.path.dirname(os.path.abspath(cfg.out)), exist_ok=True)
                save(model, cfg.out, card)
            o = RunOutcome(run=r, key=k, status="done", metric=metric, test_metric=test,
                           val_metric=float("nan") if best[i] is None else best[i], best_step=best_step[i],
                           steps_done=steps_done[i], evals=evals[i], losses=_downsample(losses[i]),
                           checkpoint=os.path.abspath(cfg.out) if cfg.out else None, card=card,
                           device=card["device"], wall_time_s=wall, batched_with=V,
                           kernel_params=card["kernel_params"], total_params=card["total_params"])
            o.model = model  # for callers that want it in memory (not stored)
        outcomes.append(o)
        if on_result:
            on_result(o)
    return outcomes
