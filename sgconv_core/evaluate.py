"""Evaluate a checkpoint on held-out examples of the task it was trained on, or on the user's own data file.

    python -m sgconv_core.evaluate pretrained/listops-sgconv.safetensors --n 2000 --seed 1
    python -m sgconv_core.evaluate pretrained/digits-sgconv.safetensors          # all 250 test images
    python -m sgconv_core.evaluate last.ckpt --data mydata.npz      # any runnable model, inputs + targets

What the examples are, said exactly (``source`` in the output):
- ``digits`` has a finite test split (250 images by default). ``--n`` (default: all of it) picks that many of
  its images without replacement; they are the images the card's test value was measured on, not new ones.
  ``--n`` above the split's size is refused (it could only re-draw the same images).
- ``delay`` and ``listops`` generate ``--n`` (default 500) fresh examples with ``--seed``, in a random stream of
  their own, apart from the streams of the train/val/test splits. Delay inputs are new draws of continuous noise;
  ListOps expressions are distinct and none occurs in the train split (one may occur in val/test: counted in
  ``overlap_val_test``).

Every metric comes with n (``n_unique``: distinct inputs) and a 95 % interval (``ci_low``, ``ci_high``): Wilson
for accuracy, a seeded percentile bootstrap over examples (1000 resamples, seed = ``--seed``) for NMSE
(`sgconv_core.stats`). For ListOps the majority, top-operator lookup and one-level baselines
(`sgconv_core.baselines`, fitted on the train split) are scored on the same examples and printed beside the model.

Prints human lines, then ONE JSON object as the last line: {"checkpoint", "task", "metric", "value", "n",
"n_unique", "ci_low", "ci_high", "interval", "source", "seed", "card_value", "baseline", ...} (+ "baselines" for
ListOps); with ``--data``: {"checkpoint", "data", "metric", "value", "n", "n_unique", "ci_low", "ci_high", "nmse",
"mse"} or {..., "accuracy"}. The metric follows the targets (`sgconv_core.data`): accuracy for integer class ids,
NMSE (and MSE) for floats.
Library: ``evaluate(ck_or_path, n, seed)`` returns the same dict; ``evaluate_split`` scores a split;
``evaluate_data(ck_or_path, data_path)`` scores a data file (file format and key names: `sgconv_core.data`).
A checkpoint that cannot be read, is not one of ours with a task in its card (without ``--data``), holds no
runnable model, or a data file that does not fit the model, exits with code 2 and one line naming the problem.
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
import warnings

import torch

from .errors import CheckpointError, printable


def runnable(ck_or_path, purpose: str = "it cannot be evaluated"):
    """The Checkpoint (loaded from a path if need be) when it has a runnable model; else CheckpointError saying
    only its kernels could be recovered, "so <purpose>"."""
    from .checkpoints import Checkpoint, load

    ck = ck_or_path if isinstance(ck_or_path, Checkpoint) else load(ck_or_path)
    if ck.model is None:
        raise CheckpointError(f"{ck.path}: no runnable model in this checkpoint (only its kernels could be "
                              f"recovered), so {purpose}")
    return ck


def _checkpoint(ck_or_path):
    ck = runnable(ck_or_path)
    if not ck.card.get("task"):
        raise CheckpointError(f"{ck.path}: the model card names no task (not trained by sgconv_core.train?)")
    return ck


def task_of(ck):
    """The task a checkpoint was trained on, rebuilt from its card (`sgconv_core.tasks.task_from_card`: the card's
    full task parameters, so a card keeps its task when defaults change)."""
    from .tasks import task_from_card

    c = ck.card
    try:
        return task_from_card(c)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{ck.path}: cannot rebuild task {c.get('task')!r} from the card ({e})") from e


#: Two-sided confidence of every printed interval.
CONFIDENCE = 0.95


def _unique_rows(x: torch.Tensor) -> int:
    """The number of distinct examples (rows) of ``x`` ``(N, ...)``."""
    return int(torch.unique(x.reshape(len(x), -1), dim=0).shape[0]) if len(x) else 0


def metric_interval(metric: str, pred: torch.Tensor, y: torch.Tensor, t0: int = 0, seed: int = 0) -> dict:
    """``{"value", "ci_low", "ci_high", "interval"}``: the metric of outputs ``pred`` against ``y`` and its 95 %
    interval from per-example terms (shapes: `sgconv_core.tasks`). The one home of a scored metric's interval
    (evaluation, interventions).

    accuracy: (B, d) logits and (B,) ids: Wilson over examples; (B, L, d) and (B, L): a bootstrap over examples of
    the pooled accuracy. nmse: sum(sse) / sum(energy) over positions ``t >= t0`` and channels, a bootstrap over
    examples (``seed``); an infinite value (targets all zero) has no interval (NaN ends)."""
    from .stats import DEFAULT_RESAMPLES, bootstrap_interval, nmse_ci, wilson_interval

    boot = f"bootstrap, {DEFAULT_RESAMPLES} resamples"
    pred = pred.detach().double().cpu()
    if metric == "accuracy":
        correct = (pred.argmax(-1) == y.cpu()).reshape(len(y), -1)
        k, total = int(correct.sum()), correct.numel()
        if correct.shape[1] == 1:
            lo, hi = wilson_interval(k, len(y), CONFIDENCE)
            return {"value": k / total, "ci_low": lo, "ci_high": hi, "interval": "Wilson"}
        lo, hi = bootstrap_interval(correct.sum(1).double().numpy(), torch.full((len(y),), correct.shape[1],
                                    dtype=torch.float64).numpy(), seed=seed, confidence=CONFIDENCE)
        return {"value": k / total, "ci_low": lo, "ci_high": hi, "interval": boot}
    if metric != "nmse":
        raise ValueError(f"unknown metric {metric!r}; expected 'accuracy' or 'nmse'")
    yd = y.double().cpu()
    if tuple(pred.shape) != tuple(yd.shape):
        raise ValueError(f"outputs {tuple(pred.shape)} do not match targets {tuple(yd.shape)}")
    if pred.dim() >= 2 and t0:
        pred, yd = pred[:, t0:], yd[:, t0:]
    sse = ((pred - yd) ** 2).reshape(len(yd), -1).sum(1).numpy()
    energy = (yd**2).reshape(len(yd), -1).sum(1).numpy()
    value = float(sse.sum() / energy.sum()) if energy.sum() > 0 else math.inf
    if not math.isfinite(value):
        return {"value": value, "ci_low": math.nan, "ci_high": math.nan, "interval": boot}
    lo, hi = nmse_ci(sse, energy, seed=seed, confidence=CONFIDENCE)
    return {"value": value, "ci_low": lo, "ci_high": hi, "interval": boot}


def _interval(metric: str, pred: torch.Tensor, y: torch.Tensor, t0: int, seed: int) -> dict:
    """`metric_interval` without its value (the caller reports the task's own metric as the value)."""
    out = metric_interval(metric, pred, y, t0, seed)
    del out["value"]
    return out


def _score(model, task, x, y, batch_size: int, seed: int) -> dict:
    """``{"value", "n", "n_unique", "ci_low", "ci_high", "interval"}`` of ``model`` on ``(x, y)`` of ``task``."""
    from .train import predict

    if len(x) == 0:
        raise ValueError("no examples to evaluate")
    with torch.no_grad():
        pred = predict(model, x, batch_size)
    value = task.metric(pred, y)  # the task's own metric is the value; the interval comes from per-example terms
    return {"value": value, "n": len(y), "n_unique": _unique_rows(x),
            **_interval(task.spec.metric, pred, y, task.nmse_start, seed)}


def test_summary(model, task, batch_size: int = 128) -> dict:
    """What a model card says about the test split: ``{"test_value", "test_n", "test_ci", "test_interval"}`` and,
    for ListOps, ``"test_baselines"``: ``{name: {"value", "n", "ci"}}`` of the majority, top-operator lookup and
    one-level baselines (`sgconv_core.baselines`, fitted on the train split) on the same test split.

    ``test_value`` is the task's metric; ``test_n`` the number of distinct test examples; ``test_ci`` ``[low,
    high]`` its 95 % interval (`metric_interval`: Wilson for accuracy, a bootstrap with seed 0 for NMSE)."""
    from .train import predict

    x, y = task.split("test")
    with torch.no_grad():
        pred = predict(model, x, batch_size)
    return test_summary_of(task, pred)


def test_summary_of(task, pred: torch.Tensor) -> dict:
    """`test_summary` from a model's outputs ``pred`` on ``task``'s whole test split (computed once by the caller)."""
    x, y = task.split("test")
    if len(pred) != len(y):
        raise ValueError(f"outputs for {len(pred)} examples but the test split has {len(y)}")
    s = {"value": task.metric(pred, y), "n_unique": _unique_rows(x),
         **_interval(task.spec.metric, pred, y, task.nmse_start, 0)}
    out = {"test_value": s["value"], "test_n": s["n_unique"], "test_ci": [s["ci_low"], s["ci_high"]],
           "test_interval": s["interval"]}
    if task.spec.name == "listops":
        out["test_baselines"] = listops_test_baselines(task)
    return out


def listops_test_baselines(task) -> dict:
    """``{name: {"value", "n", "ci": [low, high]}}``: the ListOps baselines, fitted on the train split, scored on the
    test split (cached per task parameters: fitting parses the whole train split)."""
    return _listops_test_baselines(task.seed, tuple(sorted(task.spec.params.items())))


@functools.lru_cache(maxsize=8)
def _listops_test_baselines(seed: int, params: tuple) -> dict:
    from .baselines import fit_listops_baselines
    from .tasks import get_task

    task = get_task("listops", seed=seed, **dict(params))
    scores = fit_listops_baselines(*task.split("train")).score(*task.split("test"), CONFIDENCE)
    return {name: {"value": b["value"], "n": b["n"], "ci": [b["ci_low"], b["ci_high"]]} for name, b in scores.items()}


def finite_test_size(task) -> int | None:
    """The number of examples of a task whose held-out examples come from a finite test split (digits), else None."""
    return int(task.spec.params["n_test"]) if task.spec.name == "digits" else None


#: How many examples ``evaluate`` generates when not told (tasks without a finite test split).
DEFAULT_EVAL_N = 500


def _examples(task, n: int | None, seed: int):
    """``(x, y, info)``: the held-out examples ``evaluate`` scores, and what they are (``info``: "source",
    "examples" (words), and for ListOps "overlap_val_test")."""
    finite = finite_test_size(task)
    if finite is not None:
        n = finite if n is None else n
        if n > finite:
            raise ValueError(f"{task.spec.name}: n = {n:,} is more than the {finite:,} images of its test split; they "
                             f"would be re-drawn with replacement (re-sampling, not new images), so this is refused: "
                             f"ask for n <= {finite:,}")
        x, y = task.sample(n, seed)
        what = (f"all {n:,} test-split images" if n == finite else
                f"{n:,} of the {finite:,} test-split images (chosen with seed {seed}, without replacement)")
        return x, y, {"source": "test_split", "examples": what + ", the images the card's test value was measured on"}
    n = DEFAULT_EVAL_N if n is None else n
    x, y = task.sample(n, seed)
    if task.spec.name == "listops":
        held = {bytes(r.numpy().astype("uint8")) for w in ("val", "test") for r in task.split(w)[0]}
        overlap = sum(bytes(r.numpy().astype("uint8")) in held for r in x)
        return x, y, {"source": "fresh", "overlap_val_test": overlap,
                      "examples": f"{n:,} fresh expressions (generated with seed {seed}, distinct, none in the train "
                                  f"split; {overlap:,} also in the val/test splits)"}
    return x, y, {"source": "fresh", "examples": f"{n:,} fresh examples (generated with seed {seed} in a random "
                                                 f"stream of their own, apart from the train/val/test splits)"}


def evaluate(ck_or_path, n: int | None = None, seed: int = 1, batch_size: int = 64) -> dict:
    """Score a checkpoint on held-out examples of its task (module doc: which, and what they are).

    ``n``: digits, at most the test split's size (default all of it); generated tasks, default 500. Raises
    CheckpointError, or ValueError for ``n`` above a finite test split."""
    if n is not None and n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    ck = _checkpoint(ck_or_path)
    task = task_of(ck)
    x, y, info = _examples(task, n, seed)
    ck.model.eval()
    c = ck.card
    out = {"checkpoint": ck.path, "task": task.spec.name, "metric": task.spec.metric,
           **_score(ck.model, task, x, y, batch_size, seed), "confidence": CONFIDENCE, **info, "seed": seed, "card_value": c.get("test_value"), "baseline": c.get("baseline"),
           "family": c.get("family", ck.family), "train_seed": c.get("seed")}
    if task.spec.name == "listops":
        from .baselines import fit_listops_baselines

        b = fit_listops_baselines(*task.split("train"))
        out["baselines"] = {**b.score(x, y, CONFIDENCE), "tables": b.tables()}
    return out


def evaluate_split(ck_or_path, which: str = "test", limit: int | None = None, batch_size: int = 64) -> dict:
    """Score a checkpoint on (the first ``limit`` examples of) a split of its task, with n and a 95 % interval."""
    ck = _checkpoint(ck_or_path)
    task = task_of(ck)
    x, y = task.split(which)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    ck.model.eval()
    return {"checkpoint": ck.path, "task": task.spec.name, "metric": task.spec.metric,
            **_score(ck.model, task, x, y, batch_size, seed=0), "split": which,
            "card_value": ck.card.get("test_value")}


def evaluate_data(ck_or_path, data_path, batch_size: int = 64) -> dict:
    """Score a runnable checkpoint on the inputs and targets of a user's data file (`sgconv_core.data.load_data`:
    shapes checked against the model before anything runs). Raises CheckpointError / DataError (ValueErrors)."""
    from .data import input_spec, load_data, scores
    from .train import predict

    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    ck = runnable(ck_or_path)
    data = load_data(data_path, input_spec(ck.model), need_targets=True)
    with torch.no_grad():
        pred = predict(ck.model, data.x, batch_size)
    s = scores(pred, data.y, data.metric)
    ci = _interval(data.metric, pred, data.y, 0, seed=0) if data.n else {}
    return {"checkpoint": ck.path, "data": os.path.basename(data.source), "metric": data.metric,
            "value": s[data.metric], "n": data.n, "n_unique": _unique_rows(data.x), **ci, "confidence": CONFIDENCE,
            "L": data.L, **s}


def _ci_text(out: dict, f: str | None = None, extra: str = "") -> str:
    """``value{extra}, 95% CI [lo, hi] (method), n = N`` of an output dict (``n_unique`` said when it differs);
    numbers in format ``f`` (default: 4 significant digits for NMSE, 4 decimals for accuracy)."""
    dup = f" ({out['n_unique']:,} distinct)" if out.get("n_unique") not in (None, out["n"]) else ""
    f = f or (".4g" if out.get("metric") == "nmse" else ".4f")
    return (f"{out['value']:{f}}{extra}, {round(100 * CONFIDENCE)}% CI [{out['ci_low']:{f}}, {out['ci_high']:{f}}] "
            f"({out['interval']}), n = {out['n']:,}{dup}")


def _card_text(card: dict, metric: str) -> str:
    """``; card (test split): value, 95% CI [lo, hi], n = N`` from a model card; a card written before cards carried
    n and an interval says so (``python -m sgconv_core.cards --rescore`` adds them); "" without a test value."""
    v = card.get("test_value")
    if not isinstance(v, (int, float)):
        return ""
    f = ".4g" if metric == "nmse" else ".4f"
    ci, n = card.get("test_ci"), card.get("test_n")
    if not ci or n is None:
        return f"; card (test split): {v:{f}} (no n or interval in this card: python -m sgconv_core.cards --rescore)"
    return f"; card (test split): {v:{f}}, {round(100 * CONFIDENCE)}% CI [{ci[0]:{f}}, {ci[1]:{f}}], n = {n:,}"


#: The most examples the command line generates (they are held in memory at once).
MAX_EVAL_N = 100_000


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sgconv_core.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="one of our .safetensors checkpoints (any runnable checkpoint with --data)")
    p.add_argument("--data", help="score on this .npz / .npy / .pt file of inputs and targets instead of fresh task "
                                  "examples (keys x/inputs and y/targets; see sgconv_core.data)")
    p.add_argument("--seed", type=int, default=1, help="seed of the examples' draw and of the bootstrap (default 1)")
    p.add_argument("--n", type=int, help=f"number of examples: digits, at most its test split (default: all of it); "
                                         f"generated tasks, default {DEFAULT_EVAL_N}")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, help="CPU threads (torch.set_num_threads)")
    a = p.parse_args(argv)
    if a.n is not None and a.n <= 0:
        p.error(f"--n must be positive, got {a.n}")
    if a.n is not None and a.n > MAX_EVAL_N:
        p.error(f"--n must be at most {MAX_EVAL_N:,} (examples are held in memory), got {a.n:,}")
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
            print(f"warning: --seed {a.seed} is also the seed this model was trained with; harmless here (the "
                  "examples are drawn in a random stream of their own, apart from the train/val/test splits)",
                  file=sys.stderr)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = evaluate(ck, a.n, a.seed, a.batch_size)
    except (CheckpointError, OSError) as e:
        print(f"error: {printable(e)}", file=sys.stderr)
        return 2
    except ValueError as e:  # e.g. n above a finite test split, or the task cannot produce that many examples
        print(f"error: {printable(e)}", file=sys.stderr)
        return 2
    print(printable(f"{os.path.basename(a.checkpoint)}: {out['task']} {out['metric']} = {_ci_text(out)}: "
                    f"{out['examples']}") + _card_text(ck.card, out["metric"]))
    names = {"majority": "majority class", "operator_lookup": "top-operator lookup", "one_level": "one-level"}
    for name, b in (out.get("baselines") or {}).items():
        if name in names:
            b = {**b, "interval": "Wilson"}
            print(f"  baseline, {names[name]} (fitted on the train split), same examples: {_ci_text(b)}")
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
    print(printable(f"{os.path.basename(a.checkpoint)}: {out['metric']} = {_ci_text(out, '.4f', extra)}: the example(s) "
                    f"of {out['data']}"))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
