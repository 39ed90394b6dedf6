"""Evaluate one of our checkpoints on fresh examples of the task it was trained on.

    python -m sgconv_core.evaluate pretrained/digits-sgconv.safetensors --n 500 --seed 1

prints a human line, then ONE JSON object as the last line:
{"checkpoint", "task", "metric", "value", "n", "seed", "card_value", "baseline", ...}.
Library: ``evaluate(ck_or_path, n, seed)`` returns the same dict; ``evaluate_split`` scores a split.
A checkpoint that cannot be read, or is not one of ours with a task in its card, exits with code 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

import torch

from .errors import CheckpointError, printable


def _checkpoint(ck_or_path):
    from .checkpoints import Checkpoint, load

    ck = ck_or_path if isinstance(ck_or_path, Checkpoint) else load(ck_or_path)
    if ck.model is None:
        raise CheckpointError(f"{ck.path}: no runnable model in this checkpoint")
    if not ck.card.get("task"):
        raise CheckpointError(f"{ck.path}: the model card names no task (not trained by sgconv_core.train?)")
    return ck


def task_of(ck):
    """The task a checkpoint was trained on, rebuilt from its card."""
    from .tasks import get_task

    c = ck.card
    try:
        return get_task(c["task"], seed=int(c.get("task_seed", 0)), **(c.get("task_params") or {}))
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{ck.path}: cannot rebuild task {c.get('task')!r} from the card ({e})") from e


@torch.no_grad()
def _metric(model, task, x, y, batch_size: int) -> float:
    from .train import predict

    if len(x) == 0:
        raise ValueError("no examples to evaluate")
    return task.metric(predict(model, x, batch_size), y)


def evaluate(ck_or_path, n: int = 500, seed: int = 1, batch_size: int = 64) -> dict:
    """Score a checkpoint on ``n`` fresh examples ``task.sample(n, seed)`` of its task. Raises CheckpointError."""
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    ck = _checkpoint(ck_or_path)
    task = task_of(ck)
    x, y = task.sample(n, seed)
    ck.model.eval()
    value = _metric(ck.model, task, x, y, batch_size)
    c = ck.card
    return {"checkpoint": ck.path, "task": task.spec.name, "metric": task.spec.metric, "value": value, "n": n,
            "seed": seed, "card_value": c.get("test_value"), "baseline": c.get("baseline"),
            "family": c.get("family", ck.family), "train_seed": c.get("seed")}


def evaluate_split(ck_or_path, which: str = "test", limit: int | None = None, batch_size: int = 64) -> dict:
    """Score a checkpoint on (the first ``limit`` examples of) a split of its task."""
    ck = _checkpoint(ck_or_path)
    task = task_of(ck)
    x, y = task.split(which)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    ck.model.eval()
    value = _metric(ck.model, task, x, y, batch_size)
    return {"checkpoint": ck.path, "task": task.spec.name, "metric": task.spec.metric, "value": value,
            "n": len(y), "split": which, "card_value": ck.card.get("test_value")}


#: The most fresh examples the command line generates (they are held in memory at once).
MAX_EVAL_N = 100_000


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sgconv_core.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="one of our .safetensors checkpoints")
    p.add_argument("--seed", type=int, default=1, help="seed of the fresh examples (default 1)")
    p.add_argument("--n", type=int, default=500, help="number of fresh examples (default 500)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, help="CPU threads (torch.set_num_threads)")
    a = p.parse_args(argv)
    if a.n <= 0:
        p.error(f"--n must be positive, got {a.n}")
    if a.n > MAX_EVAL_N:
        p.error(f"--n must be at most {MAX_EVAL_N:,} (fresh examples are generated in memory), got {a.n:,}")
    if a.batch_size <= 0:
        p.error(f"--batch-size must be positive, got {a.batch_size}")
    if a.threads is not None and a.threads <= 0:
        p.error(f"--threads must be positive, got {a.threads}")
    if a.seed < 0:
        p.error(f"--seed must be >= 0, got {a.seed}")
    if a.threads:
        torch.set_num_threads(a.threads)
    if not os.path.isfile(a.checkpoint):
        print(f"error: {a.checkpoint}: no such file", file=sys.stderr)
        return 2
    try:
        ck = _checkpoint(a.checkpoint)
        if ck.card.get("seed") == a.seed:
            print(f"warning: --seed {a.seed} is also the seed this model was trained with; the examples are "
                  "still fresh (a separate random stream), but pick another seed to be safe", file=sys.stderr)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = evaluate(ck, a.n, a.seed, a.batch_size)
    except (CheckpointError, OSError) as e:
        print(f"error: {printable(e)}", file=sys.stderr)
        return 2
    except ValueError as e:  # e.g. the task cannot produce that many examples
        print(f"error: {printable(e)}", file=sys.stderr)
        return 2
    card = out["card_value"]
    print(f"{os.path.basename(a.checkpoint)}: {out['task']} {out['metric']} = {out['value']:.4f} on {out['n']} fresh "
          f"examples (seed {a.seed})" + (f"; card (test split): {card:.4f}" if isinstance(card, (int, float)) else ""))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
