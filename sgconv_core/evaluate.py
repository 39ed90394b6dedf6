"""Evaluate a checkpoint on fresh examples of the task it was trained on, or on the user's own data file.

    python -m sgconv_core.evaluate pretrained/digits-sgconv.safetensors --n 500 --seed 1
    python -m sgconv_core.evaluate last.ckpt --data mydata.npz      # any runnable model, inputs + targets

prints a human line, then ONE JSON object as the last line:
{"checkpoint", "task", "metric", "value", "n", "seed", "card_value", "baseline", ...}; with ``--data``:
{"checkpoint", "data", "metric", "value", "n", "nmse", "mse"} or {..., "accuracy"}. The metric follows the
targets (`sgconv_core.data`): accuracy for integer class ids, NMSE (and MSE) for floats.
Library: ``evaluate(ck_or_path, n, seed)`` returns the same dict; ``evaluate_split`` scores a split;
``evaluate_data(ck_or_path, data_path)`` scores a data file (file format and key names: `sgconv_core.data`).
A checkpoint that cannot be read, is not one of ours with a task in its card (without ``--data``), holds no
runnable model, or a data file that does not fit the model, exits with code 2 and one line naming the problem.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

import torch

from .errors import CheckpointError, printable


def _runnable(ck_or_path):
    from .checkpoints import Checkpoint, load

    ck = ck_or_path if isinstance(ck_or_path, Checkpoint) else load(ck_or_path)
    if ck.model is None:
        raise CheckpointError(f"{ck.path}: no runnable model in this checkpoint (only its kernels could be "
                              "recovered), so it cannot be evaluated")
    return ck


def _checkpoint(ck_or_path):
    ck = _runnable(ck_or_path)
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


def evaluate_data(ck_or_path, data_path, batch_size: int = 64) -> dict:
    """Score a runnable checkpoint on the inputs and targets of a user's data file (`sgconv_core.data.load_data`:
    shapes checked against the model before anything runs). Raises CheckpointError / DataError (ValueErrors)."""
    from .data import input_spec, load_data, scores
    from .train import predict

    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    ck = _runnable(ck_or_path)
    data = load_data(data_path, input_spec(ck.model), need_targets=True)
    with torch.no_grad():
        pred = predict(ck.model, data.x, batch_size)
    s = scores(pred, data.y, data.metric)
    return {"checkpoint": ck.path, "data": os.path.basename(data.source), "metric": data.metric,
            "value": s[data.metric], "n": data.n, "L": data.L, **s}


#: The most fresh examples the command line generates (they are held in memory at once).
MAX_EVAL_N = 100_000


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sgconv_core.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="one of our .safetensors checkpoints (any runnable checkpoint with --data)")
    p.add_argument("--data", help="score on this .npz / .npy / .pt file of inputs and targets instead of fresh task "
                                  "examples (keys x/inputs and y/targets; see sgconv_core.data)")
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
        print(f"error: {printable(a.checkpoint)}: no such file", file=sys.stderr)
        return 2
    if a.data is not None:
        return _main_data(a)
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
    print(f"{printable(os.path.basename(a.checkpoint))}: {out['task']} {out['metric']} = {out['value']:.4f} on {out['n']} fresh "
          f"examples (seed {a.seed})" + (f"; card (test split): {card:.4f}" if isinstance(card, (int, float)) else ""))
    print(json.dumps(out))
    return 0


def _main_data(a) -> int:
    """``--data FILE``: score the checkpoint on the file's inputs and targets."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = evaluate_data(a.checkpoint, a.data, a.batch_size)
    except (ValueError, OSError) as e:  # CheckpointError and DataError are ValueErrors
        print(f"error: {printable(e)}", file=sys.stderr)
        return 2
    extra = f" (MSE {out['mse']:.4g})" if out["metric"] == "nmse" else ""
    print(printable(f"{os.path.basename(a.checkpoint)}: {out['metric']} = {out['value']:.4f}{extra} on {out['n']} "
                    f"example(s) of {out['data']}"))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
