r"""A training step of zoo models, timed through the training loop itself, against two baselines in the same run.

    python -m analysis.bench.train_step [--models digits-s4d,digits-s4,digits-sgconv] [--steps 8] [--rounds 2]
                                        [--threads 2] [--json OUT]

For each model its card's training config (``pretrained/<name>.safetensors``) is rebuilt (`sgconv_core.train.build`)
and `sgconv_core.train.fit` runs ``2 + steps`` steps of it in a fresh process (`memory.run_in_child`: the allocator
starts as a user's would); a step's time is the gap between two of fit's progress events (forward, loss,
backward, AdamW; the first two steps are warm-up and dropped). Interleaved over ``rounds``:

- **step**: fit as it is (on the CPU it keeps freed tensors' memory mapped: `sgconv_core.device.reuse_freed_memory`);
- **default allocator**: the same steps with glibc's default allocation (fit's ``reuse_freed_memory`` replaced by a
  no-op for the call), the allocator's share of the step;
- **ops floor**: the operations no implementation of this model's step can skip, each timed alone on the step's
  shapes (median of ``reps``) and summed: per convolution layer the four (B, C, H, n) FFTs (rfft of the input and
  of the output gradient, irfft of the output and of the input gradient), the three spectrum products (U K,
  G conj(K), sum_b G conj(U)), the output linear's three matmuls, and the native GELU, GLU and LayerNorm forward
  and backward (one LayerNorm per block and the final one). Left out: residual adds, layout copies, the kernel's
  own construction, the encoder, decoder, loss and optimiser, so the floor is a lower bound on torch's own kernels
  (a step below it needs fused kernels, not a better order of these calls).

Printed: per model the medians, step / default-allocator and step / floor, and the floor's parts. Minor page faults
per step come from getrusage. Nothing is asserted; correctness of the step's pieces is tested elsewhere.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import resource
import statistics
import time
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F

from sgconv_core import train as train_mod
from sgconv_core.device import reuse_freed_memory
from sgconv_core.layers import conv_layers

from . import env  # the package imported it first: OMP_WAIT_POLICY is set before torch loads
from .memory import run_in_child

PRETRAINED = Path(__file__).resolve().parents[2] / "pretrained"
DEFAULT_MODELS = ("digits-s4d", "digits-s4", "digits-sgconv")
WARMUP_STEPS = 2
#: The step's variants, in the order they run within a round.
VARIANTS = ("step", "default allocator")


def train_config(name: str, steps: int, threads: int | None) -> train_mod.TrainConfig:
    """The card's training config of pretrained model ``name``, for ``steps`` steps, evaluated only at the end."""
    from sgconv_core.cards import read_card

    path = PRETRAINED / f"{name}.safetensors"
    if not path.is_file():
        raise ValueError(f"no pretrained model {name!r} (looked for {path})")
    tc = read_card(str(path)).get("train_config")
    if not isinstance(tc, dict):
        raise ValueError(f"{path.name} has no training config in its card")
    known = {k: v for k, v in tc.items() if k in train_mod.TrainConfig.__dataclass_fields__}
    known.update(steps=steps, eval_every=steps, out=None, time_budget_s=None, device="cpu", threads=threads)
    return train_mod.TrainConfig(**known)


def step_times(cfg: train_mod.TrainConfig, allocator: str = "reuse") -> dict:
    """Run `fit` on a fresh model of ``cfg``; {'ms': [per-step ms after the warm-up], 'faults_per_step'}.
    ``allocator``: 'reuse' (fit as it is) or 'default' (its reuse_freed_memory replaced by a no-op)."""
    task, model = train_mod.build(cfg)
    model.train()
    run = train_mod.Run.start(cfg, model)
    stamps: list[tuple[float, int]] = []

    def progress(info: dict) -> None:
        if info["event"] == "step":
            stamps.append((time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt))

    patch = (contextlib.nullcontext() if allocator == "reuse"
             else mock.patch.object(train_mod, "reuse_freed_memory", contextlib.nullcontext))
    with patch:
        train_mod.fit([run], task, progress=progress)
    kept = stamps[WARMUP_STEPS - 1:]
    ms = [(b[0] - a[0]) * 1e3 for a, b in zip(kept, kept[1:])]
    faults = (kept[-1][1] - kept[0][1]) / max(1, len(ms))
    return {"ms": ms, "faults_per_step": faults}


def child(argv: list[str]) -> None:
    """In a fresh process: `step_times` of model argv[0] for argv[1] steps, argv[2] threads (0: torch's default),
    allocator argv[3]; prints the result as one JSON line (`memory.run_in_child`)."""
    name, steps, threads, allocator = argv[0], int(argv[1]), int(argv[2]) or None, argv[3]
    if threads:
        torch.set_num_threads(threads)
    print(json.dumps(step_times(train_config(name, steps, threads), allocator)))


def _median_ms(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def floor_parts(cfg: train_mod.TrainConfig, batch_size: int, reps: int = 7) -> dict:
    """The ops floor of one step of ``cfg``'s model (see the module docstring): {'fft', 'spectrum products',
    'matmuls', 'norms and activations'} in ms, each the sum over the model's layers of its ops timed alone."""
    _, model = train_mod.build(cfg)
    parts = {"fft": 0.0, "spectrum products": 0.0, "matmuls": 0.0, "norms and activations": 0.0}
    torch.manual_seed(0)
    with reuse_freed_memory():
        for layer in conv_layers(model).values():
            for k, v in _layer_floor(layer, batch_size, model.cfg.l_max, reps).items():
                parts[k] += v
        parts["norms and activations"] += _ln_ms(batch_size, model.cfg.l_max, model.cfg.d_model, reps)  # final
    return parts


def _layer_floor(layer, B: int, L: int, reps: int) -> dict:
    """One ConvLayer's share of the ops floor, ms by part."""
    H, C = layer.kernel.H, layer.kernel.channels
    n = layer.kernel_length(L) + L
    f = n // 2 + 1
    u, gy = torch.randn(B, H, L), torch.randn(B, C, H, L)
    U = torch.randn(B, 1, H, f, dtype=torch.complex64)
    G = torch.randn(B, C, H, f, dtype=torch.complex64)
    K = torch.randn(C, H, f, dtype=torch.complex64)
    out = {
        "fft": sum(_median_ms(fn, reps) for fn in (
            lambda: torch.fft.rfft(u, n=n), lambda: torch.fft.irfft(G, n=n),
            lambda: torch.fft.rfft(gy, n=n), lambda: torch.fft.irfft(G[:, 0], n=n))),
        "spectrum products": sum(_median_ms(fn, reps) for fn in (
            lambda: U * K, lambda: (G * K.conj()).sum(1), lambda: (G * U.conj()).sum(0))),
        "matmuls": 0.0,
        "norms and activations": _act_ms(B, L, H, C, layer.output == "glu", reps),
    }
    lin = layer.output_linear
    if lin is not None:
        a, gz = torch.randn(B * L, lin.in_features), torch.randn(B * L, lin.out_features)
        out["matmuls"] = sum(_median_ms(fn, reps) for fn in (
            lambda: F.linear(a, lin.weight, lin.bias), lambda: gz @ lin.weight, lambda: gz.t() @ a))
    return out


def _act_ms(B: int, L: int, H: int, C: int, glu: bool, reps: int) -> float:
    """GELU forward + backward on (B, L, C H), GLU's on (B, L, 2H), one LayerNorm's: ms."""
    x = torch.randn(B, L, C * H)
    g = torch.randn(B, L, C * H)
    ms = _median_ms(lambda: F.gelu(x), reps) + _median_ms(lambda: torch.ops.aten.gelu_backward(g, x), reps)
    if glu:
        z = torch.randn(B, L, 2 * H)
        gh = torch.randn(B, L, H)
        ms += _median_ms(lambda: F.glu(z, -1), reps) + _median_ms(lambda: torch.ops.aten.glu_backward(gh, z, -1), reps)
    return ms + _ln_ms(B, L, H, reps)


def _ln_ms(B: int, L: int, H: int, reps: int) -> float:
    x = torch.randn(B, L, H)
    w, b = torch.ones(H), torch.zeros(H)
    out, mean, rstd = torch.ops.aten.native_layer_norm(x, [H], w, b, 1e-5)
    g = torch.randn(B, L, H)
    return (_median_ms(lambda: F.layer_norm(x, (H,), w, b), reps)
            + _median_ms(lambda: torch.ops.aten.native_layer_norm_backward(g, x, [H], mean, rstd, w, b,
                                                                           [True, True, True]), reps))


def run(models=DEFAULT_MODELS, steps: int = 8, rounds: int = 2, threads: int | None = 2, progress=print) -> list[dict]:
    """Interleaved measurements (see the module docstring): one row per model."""
    if threads:
        torch.set_num_threads(threads)
    cfgs = {m: train_config(m, WARMUP_STEPS + steps, threads) for m in models}  # bad names fail here, at once
    got = {m: {v: [] for v in VARIANTS} for m in models}
    faults = {m: {v: [] for v in VARIANTS} for m in models}
    for r in range(rounds):
        for m in models:
            for v in VARIANTS:
                res = run_in_child("analysis.bench.train_step:child",
                                   [m, str(WARMUP_STEPS + steps), str(threads or 0), "reuse" if v == "step" else "default"])
                got[m][v] += res["ms"]
                faults[m][v].append(res["faults_per_step"])
                progress(f"round {r + 1}/{rounds} {m} {v}: median {statistics.median(res['ms']):.1f} ms, "
                         f"{res['faults_per_step']:.0f} faults/step")
    rows = []
    for m in models:
        parts = floor_parts(cfgs[m], cfgs[m].batch_size)
        med = {v: statistics.median(got[m][v]) for v in VARIANTS}
        floor = sum(parts.values())
        rows.append({"model": m, "batch_size": cfgs[m].batch_size, "n_steps": len(got[m]["step"]),
                     "step_ms": med["step"], "default_allocator_ms": med["default allocator"],
                     "faults_per_step": statistics.median(faults[m]["step"]),
                     "default_faults_per_step": statistics.median(faults[m]["default allocator"]),
                     "floor_ms": floor, "floor_parts_ms": parts, "step_over_floor": med["step"] / floor})
    return rows


def format_rows(rows: list[dict]) -> str:
    head = ("model | B | steps | step ms | default allocator ms | step / default | faults/step (default) | "
            "ops floor ms | step / floor")
    lines = [head, "|".join("---" for _ in head.split("|"))]
    for r in rows:
        lines.append(f"{r['model']} | {r['batch_size']} | {r['n_steps']} | {r['step_ms']:.1f} | "
                     f"{r['default_allocator_ms']:.1f} | {r['step_ms'] / r['default_allocator_ms']:.2f} | "
                     f"{r['faults_per_step']:.0f} ({r['default_faults_per_step']:.0f}) | {r['floor_ms']:.1f} | "
                     f"{r['step_over_floor']:.2f}")
    lines.append("")
    lines.append("ops floor parts (ms): " + "; ".join(
        f"{r['model']}: " + ", ".join(f"{k} {v:.1f}" for k, v in r["floor_parts_ms"].items()) for r in rows))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.bench.train_step", description=__doc__.split("\n")[0])
    p.add_argument("--models", default=",".join(DEFAULT_MODELS), help="pretrained model names, comma-separated")
    p.add_argument("--steps", type=int, default=8, help="timed steps per run (after 2 warm-up steps)")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--json", help="write the rows here")
    a = p.parse_args(argv)
    if a.steps < 1 or a.rounds < 1:
        p.error("--steps and --rounds must be at least 1")
    try:
        rows = run([m.strip() for m in a.models.split(",") if m.strip()], a.steps, a.rounds, a.threads)
    except ValueError as e:
        print(f"error: {e}")
        return 2
    e = env.environment("cpu")
    print(f"\n{e.get('device_name')} ({e.get('usable_cpus')} usable CPUs) | torch {torch.__version__} | threads {torch.get_num_threads()} | "
          f"load average {env.loadavg()}")
    print(format_rows(rows))
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
