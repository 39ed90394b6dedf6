"""Train several runs of a sweep at once, as one batched model (or one after another, the same code path).

`train_group(runs, ...)` takes runs that share the data and the backbone shapes (:meth:`RunSpec.group_signature`)
and trains them with the loop of :func:`sgconv_core.train.train`, :func:`sgconv_core.train.fit`, which steps
many runs side by side (same model init from the run's seed, same AdamW groups, warmup + cosine schedule, batch
order, best-on-val model kept, test score, model card). What is here is only what batching adds: building the
runs of a sweep, the vmapped `BatchedModel` that fit uses instead of calling each model, and
turning each trained run into a `RunOutcome` (row, checkpoint).

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
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from sgconv_core.device import device_name, resolve_device
from sgconv_core.kernels.base import Kernel
from sgconv_core.model import SequenceModel
from sgconv_core.train import Run, build, fit, save_checkpoint

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
    """V SequenceModels with identical backbones evaluated as one vmapped model (see the module docstring).

    Used by :func:`sgconv_core.train.fit` in place of ``SeparateModels`` (``forward`` and ``predict``).
    """

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
        idx = list(range(len(self.models))) if active is None else active
        return self._apply([self.models[i] for i in idx], xs)

    def _apply(self, models: list[SequenceModel], xs: torch.Tensor) -> torch.Tensor:
        from torch.func import functional_call, vmap

        per = [dict(m.named_parameters()) for m in models]
        params = {n: torch.stack([p[n] for p in per]) for n in self.names}
        if self.buffer_names:
            bufs = [dict(m.named_buffers()) for m in models]
            params.update({n: torch.stack([b[n] for b in bufs]) for n in self.buffer_names})
        for i, Lk in enumerate(self.lengths):
            params[f"layers.{i}.layer.kernel.k"] = torch.stack([m.layers[i].layer.kernel(Lk) for m in models])
        return vmap(lambda p, x: functional_call(self.stub, p, (x,)))(params, xs)

    def forward(self, runs: list[Run], xs: list[torch.Tensor]) -> list[torch.Tensor]:
        """One training batch per run -> one output per run, in one vmapped call."""
        return list(self._apply([r.model for r in runs], torch.stack(xs)).unbind(0))

    @torch.no_grad()
    def predict(self, runs: list[Run], x: torch.Tensor) -> list[torch.Tensor]:
        """Every run's outputs for all of x (on CPU), in batches of eval_batch_size, evaluated together."""
        models = [r.model for r in runs]
        device, bs = next(models[0].parameters()).device, runs[0].cfg.eval_batch_size
        outs = [[] for _ in models]
        for m in models:
            m.eval()
        for s in range(0, len(x), bs):
            xb = x[s:s + bs].to(device)
            pred = self._apply(models, xb.unsqueeze(0).expand(len(models), *xb.shape))
            for j in range(len(models)):
                outs[j].append(pred[j].float().cpu())
        for m in models:
            m.train()
        return [torch.cat(o) for o in outs]


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
    """Train `runs` (same group signature) together with :func:`sgconv_core.train.fit`; see the module docstring.

    progress(event) gets fit's events {"event": "step" | "eval", "keys": [...], "step", "steps", "losses", ...};
    on_result(outcome) is called for each run as soon as its checkpoint is written. Raises Cancelled when
    should_stop() turns true (nothing of the group is kept).
    """
    if not runs:
        return []
    if any(r.group_signature() != runs[0].group_signature() for r in runs):
        raise ValueError("train_group: the runs do not share data and shapes (group_signature)")
    t0 = time.time()
    dev = resolve_device(device)
    if dev.type == "cpu" and threads:
        torch.set_num_threads(threads)
    task, states = _start_runs(runs, device, dev, threads, checkpoint_dir)
    models = [s.model for s in states]
    vmapped = batched and len(runs) > 1 and batchable(models) is None  # else fit calls each model in turn
    bm = BatchedModel(models, task.spec.L).to(dev) if vmapped else None

    def stop() -> bool:  # a cancelled group raises: none of it is kept
        if should_stop is not None and should_stop():
            raise Cancelled(f"cancelled at step {max(s.step for s in states)} of {states[0].cfg.steps}")
        return False

    fit(states, task, bm, progress=progress, should_stop=stop, t0=t0)
    wall = time.time() - t0
    outcomes = []
    for spec, state in zip(runs, states, strict=True):
        outcomes.append(_outcome(spec, state, task, dev, wall, len(runs)))
        if on_result:
            on_result(outcomes[-1])
    return outcomes


def _start_runs(runs: list[RunSpec], device: str, dev: torch.device, threads: int | None,
                checkpoint_dir: str | None) -> tuple:
    """The shared task and one `Run` per spec: its model built from its seed (the global RNG left as it was),
    on `dev` (every decay knob is a kernel argument of its config); the checkpoint path <checkpoint_dir>/<task>-<family>-<key>.safetensors."""
    task, states = None, []
    for r in runs:
        key = r.key()
        out = os.path.join(checkpoint_dir, f"{r.task}-{r.family}-{key}.safetensors") if checkpoint_dir else None
        cfg = r.train_config(device=device, threads=threads, out=out)
        with torch.random.fork_rng(devices=[]):
            task_r, model = build(cfg)
        task = task or task_r
        model.to(dev).train()
        states.append(Run.start(cfg, model, key))
    return task, states


def _outcome(spec: RunSpec, run: Run, task, dev: torch.device, wall: float, batched_with: int) -> RunOutcome:
    """A trained run's outcome: test score, card (with an 'ablation' entry), checkpoint written; or its failure."""
    common = dict(run=spec, key=run.key, metric=task.spec.metric, steps_done=run.step, evals=run.history,
                  losses=_downsample(run.losses), wall_time_s=wall, batched_with=batched_with)
    if run.error:
        return RunOutcome(status="failed", error=run.error, device=device_name(dev), **common)
    test = run.finish(task)
    card = run.card(task, test, wall, dev, stopped=None)
    card["ablation"] = {"key": run.key, **spec.to_dict(), "batched_with": batched_with}
    if run.cfg.out:
        save_checkpoint(run.model, run.cfg.out, card)
    o = RunOutcome(status="done", test_metric=test, val_metric=run.val_metric, best_step=run.best_step,
                   checkpoint=os.path.abspath(run.cfg.out) if run.cfg.out else None, card=card,
                   device=card["device"], kernel_params=card["kernel_params"], total_params=card["total_params"],
                   **common)
    o.model = run.model  # for callers that want it in memory (not stored)
    return o
