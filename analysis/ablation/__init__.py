"""Live ablations on SGConv's decay rate and on kernel parameter count (the paper's Figure: accuracy vs decay speed
and vs dimension per scale), for SGConv, S4 and S4D, on our offline tasks.

    from analysis.ablation import SweepSpec, run_sweep, preset
    res = run_sweep(preset("delay-local"), db="~/.kernelscope/ablations.sqlite", progress=print)
    res.rows                      # one dict per finished run: decay, size, test_metric, curve, checkpoint, ...
    figures.point_stats(res.spec, res.rows)   # per point: mean ± sd (ddof = 1) over its seeds, n

    python -m analysis.ablation --preset delay-local               # lag 2: decay should help (CPU, minutes)
    python -m analysis.ablation --preset delay-far                 # lag 64, its control: decay should hurt
    python -m analysis.ablation --task digits --family sgconv --decays 0 0.5 1 2 --sizes 4 16 64 --steps 300

Pieces: `spec` (grid, runs, validation, presets, the paper's numbers), `batched` (training, one run or many as
one batched model), `runner` (resume, executors, background job, progress), `store` (SQLite), `figures` (plotly).

Presets (`spec.PRESETS`, each with one sentence on what its task rewards): delay-local, delay-far, digits,
quick (both axes, any task), default (paper-like, GPU); every one trains 3 seeds per point.

Grid. One factor at a time around a base point, as in the paper: decay values x decay modes at the base size,
and sizes at the base decay. SGConv: decay speed t (envelope ~pos^-t) through the fixed multiplier m = 2^t
(kernel args decay_min = decay_max = m), the frozen mode (cat_randn_learnable_fixed: (lag+1)^-t, t not trained)
or the learnable mode (cat_randn_learnable, (lag+1)^-t with t initialised to the value and trained);
size = kernel_dim. S4/S4D: the decay knob is a factor r on Re A (kernel argument real_scale; 'fixed' adds
freeze_decay) or on the dt range, size = state size N. See `spec` for the details and the limits every grid is checked against
(a ValueError naming the field, before anything runs).

Persistence and resume. Each finished run (metrics, curves, config, checkpoint path, device, time) is written
to SQLite (WAL, busy timeout, one short transaction per run) under a key hashing its config; a sweep first looks
up which of its keys are done and trains only the rest, so an interrupted or cancelled sweep resumes where it
stopped and a second sweep never repeats a run. Checkpoints (``sgconv_core.save``, with the model card plus an
``ablation`` entry) go to ``<db folder>/ablation-checkpoints/<task>-<family>-<key>.safetensors``.

GPU batching design. All runs of a grid that share the data and the backbone shapes (task, d_model, n_layers,
steps, batch size) form one group, trained as one batched model (`batched.BatchedModel`): each run keeps its own
SequenceModel, optimiser and batch order; each step every run computes its own kernel (kernel_dim, d_state, decay
and even family may differ, the kernel is only (C, H, L) once computed), the kernels are stacked to (V, C, H, L),
the backbone parameters (encoder, norms, D, GLU output, decoder) are stacked along a batch-of-models axis, and
``torch.func.vmap(functional_call(stub_model, params, x))`` runs the V models' FFT convolutions and linear layers as
one set of kernels. The V losses are summed and back-propagated once (the runs share no parameters, so every run
receives exactly its own gradient). For the default grid (6 t values + 7 kernel_dims = 12 runs, digits L=1024,
2x64, batch 32, 300 steps) one step of all 12 runs is about as many GPU launches as one step of 2 runs trained
separately (the per-run kernel construction is the remaining per-run cost), so it should run in well under a
minute on an H100 (an estimate: no GPU was available when this was written; measure with
``python -m analysis.ablation --preset default --batched yes``). On CPU the vmapped model is slower, not faster:
the FLOPs are the same and the stacked (V, B, H, 2L) spectra fall out of cache (measured on one core at L=1024,
2x64, batch 32: one forward+backward of 4 runs takes 3.2 s batched vs 1.6 s one after another), so
``batched='auto'`` trains one run at a time on CPU, which also stores each run as soon as it finishes.
Verified on CPU: a batched group gives the same metrics as separate runs (tests/test_ablation.py). Runs that
cannot be batched (dropout, batch norm, differing backbones) fall back to one at a time.

Executors. ``executor='inprocess'`` (default) trains the groups one after another; ``executor='ray'``
(`runner.RayExecutor`, ray imported lazily, an optional dependency: ``pip install 'ray>=2.9'``) submits each group
as a Ray task (one CPU, plus one GPU when the cluster has GPUs) to the cluster ``ray.init()``
reaches (``RAY_ADDRESS``, or a new local instance), the driver writing results to SQLite as tasks finish and the
workers writing checkpoints into ``checkpoint_dir`` (shared storage on a multi-node cluster). A killed worker is
retried by Ray (``max_retries``, default 2; a retried run gives the same numbers), a group that still fails is
stored as 'failed' with the error and the sweep goes on; rerunning the sweep trains only what is not done.
Verified against a local ``ray.init(num_cpus=2)`` (tests/test_ray.py): the same metrics, curves and weights as
in-process, bit for bit. Any object with ``run(groups, train_kw, on_result, progress, should_stop)`` can be passed
as executor.
"""
from .batched import BatchedModel, Cancelled, RunOutcome, train_group
from .runner import InProcessExecutor, Progress, RayExecutor, SweepJob, SweepResult, run_sweep
from .spec import PAPER_DECAY, PAPER_KERNEL_DIM, PAPER_SOURCE, PRESETS, RunSpec, SweepSpec, preset
from .store import DB_ENV, Store, default_db_path

__all__ = [
    "SweepSpec", "RunSpec", "preset", "PRESETS", "run_sweep", "SweepResult", "SweepJob", "Progress",
    "InProcessExecutor", "RayExecutor", "train_group", "RunOutcome", "BatchedModel", "Cancelled", "Store",
    "default_db_path", "DB_ENV", "PAPER_DECAY", "PAPER_KERNEL_DIM", "PAPER_SOURCE",
]
