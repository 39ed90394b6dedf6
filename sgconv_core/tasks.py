"""Deterministic long-range tasks that train offline (nothing is downloaded).

Three tasks, built by :func:`get_task` (names in :data:`TASKS`):

``digits``
    Sequential digits: scikit-learn's bundled 8x8 digits (1,797 images), upsampled bilinearly to
    ``side x side`` (default 32x32), scaled to [0, 1], standardised with the train split's pixel
    mean/std and read row-major as a pixel sequence of length ``L = side**2`` (default 1024).
    1 input channel, 10 classes, metric accuracy.
``delay``
    Lag-copy regression: band-limited Gaussian noise ``x`` and target ``y[t] = x[t - lag]``
    (0 for ``t < lag``). The ideal causal kernel is a unit spike at ``lag``
    (:meth:`Task.ideal_kernel`). Metric: normalised MSE over ``t >= lag``.
``listops``
    Mini-ListOps: the Long Range Arena ListOps grammar (MIN, MAX, MED, SM over digits 0-9) at a
    size that trains on a CPU: depths 3..4, L = 192. 16 tokens (pad 0), 10 classes, metric accuracy.

Shapes: continuous inputs are float32 ``(N, L, d_input)``; token inputs are int64 ``(N, L)``,
right-padded with 0; class targets are int64 ``(N,)``; sequence targets are float32
``(N, L, d_output)``. A model's ``pred`` is ``(N, d_output)`` logits for class tasks and
``(N, L, d_output)`` for sequence tasks.

Everything is a pure function of ``(seed, params)``: the same call gives identical tensors.
Generated splits are cached in-process, and :meth:`Task.split` returns fresh copies.
"""

from __future__ import annotations

import functools
import math
import operator
import random
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .lengths import MAX_TASK_LENGTH

__all__ = ["TASKS", "TaskSpec", "Task", "get_task", "task_from_card", "task_params_from_card", "listops_detokenize",
           "LISTOPS_VOCAB"]

TASKS: tuple[str, ...] = ("digits", "delay", "listops")

_SPLITS = ("train", "val", "test")
_SAMPLE_STREAM = 3  # seed stream for sample(); streams 0, 1, 2 belong to train, val, test
_TAGS = {"digits": 101, "delay": 102, "listops": 103}  # keep each task's random streams apart
_MAX_DIGITS_SIDE = 128  # 1,797 x 128^2 float32 is ~118 MB
_MAX_DELAY_ELEMENTS = 2**28  # per split: n * L (x and y are 1 GiB each at this size)

# ListOps vocabulary: 0 = pad, the 4 operators (each includes its opening bracket), "]", digits 0-9.
LISTOPS_VOCAB: tuple[str, ...] = ("<pad>", "[MIN", "[MAX", "[MED", "[SM", "]") + tuple("0123456789")
_OP0, _CLOSE, _DIGIT0 = 1, 5, 6


@dataclass(frozen=True)
class TaskSpec:
    """What a task's tensors look like and how it is scored.

    ``params`` holds every parameter the task used (defaults filled in, derived values included).
    """

    name: str  # "digits" | "delay" | "listops"
    L: int  # sequence length
    input_kind: str  # "continuous" | "tokens"
    d_input: int  # continuous: input channels; tokens: vocabulary size (incl. pad id 0)
    d_output: int  # classes (classification) or output channels (regression)
    output_kind: str  # "class" (one label per sequence) | "sequence" (a target per position)
    metric: str  # "accuracy" (higher is better) | "nmse" (lower is better)
    params: dict = field(default_factory=dict, hash=False)


# --------------------------------------------------------------------------------------------
# Seeds and parameter checks


def _rng(task: str, seed: int, stream: int, sub: int = 0) -> np.random.Generator:
    """A numpy Generator for one (task, seed, stream, sub-seed); fixed-length keys never collide."""
    return np.random.default_rng([_TAGS[task], seed, stream, sub])


def _py_seed(task: str, seed: int, stream: int, sub: int = 0) -> int:
    """A 64-bit integer seed for ``random.Random`` derived like :func:`_rng`."""
    lo, hi = np.random.SeedSequence([_TAGS[task], seed, stream, sub]).generate_state(2)
    return int(lo) | (int(hi) << 32)


def _check_int(what: str, value, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{what} must be an integer, got {value!r}") from None
    if value < lo or (hi is not None and value > hi):
        bounds = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{what} must be {bounds}, got {value}")
    return value


def _check_float(what: str, value, lo: float, hi: float, lo_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{what} must be a number, got {value!r}")
    value = float(value)
    if not (value > lo if lo_open else value >= lo) or not value <= hi:
        raise ValueError(f"{what} must be in {'(' if lo_open else '['}{lo}, {hi}], got {value}")
    return value


# --------------------------------------------------------------------------------------------
# The task object


class Task:
    """A task: its :class:`TaskSpec`, its splits, fresh samples, loss and metric."""

    def __init__(self, spec: TaskSpec, seed: int):
        self.spec = spec
        self.seed = seed

    def __repr__(self) -> str:
        return f"{type(self).__name__}(seed={self.seed}, params={self.spec.params})"

    # Subclasses implement _split(which) and _sample(n, seed); both return tensors (x, y).
    def split(self, which: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``"train"``, ``"val"`` or ``"test"`` split as ``(x, y)`` (fresh copies; shapes: module doc)."""
        if which not in _SPLITS:
            raise ValueError(f"unknown split {which!r}; expected one of {_SPLITS}")
        x, y = self._split(which)
        return x.clone(), y.clone()

    def sample(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` test-distribution examples ``(x, y)``, a pure function of ``(task seed, seed)``."""
        n = _check_int("n", n, 1)
        seed = _check_int("seed", seed, 0, 2**32 - 1)
        x, y = self._sample(n, seed)
        return x.clone(), y.clone()

    def _check_pred(self, pred: torch.Tensor, y: torch.Tensor) -> None:
        s = self.spec
        want = (len(y), s.d_output) if s.output_kind == "class" else tuple(y.shape)
        if tuple(pred.shape) != want:
            raise ValueError(
                f"{s.name}: pred has shape {tuple(pred.shape)} but {want} was expected "
                f"(targets {tuple(y.shape)})"
            )

    def loss(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Scalar training loss: cross-entropy of ``(N, C)`` logits, or MSE over all ``(N, L, C)`` positions."""
        self._check_pred(pred, y)
        y = y.to(pred.device)
        if self.spec.output_kind == "class":
            return F.cross_entropy(pred, y)
        return F.mse_loss(pred, y)

    def metric(self, pred: torch.Tensor, y: torch.Tensor) -> float:
        """Accuracy in [0, 1] (argmax of ``(N, C)`` logits), or NMSE = mse / mean(y**2) over ``t >= t0``.

        For NMSE both means are pooled over the batch and channels; ``t0`` is the lag for ``delay``.
        """
        self._check_pred(pred, y)
        pred, y = pred.detach(), y.to(pred.device)
        if self.spec.metric == "accuracy":
            return (pred.argmax(-1) == y).double().mean().item()
        t0 = self._nmse_start()
        p, t = pred[:, t0:].double(), y[:, t0:].double()
        return (((p - t) ** 2).mean() / (t**2).mean()).item()

    @property
    def nmse_start(self) -> int:
        """The first position NMSE is scored from (0; the delay task: its lag, before which the target is 0)."""
        return self._nmse_start()

    def _nmse_start(self) -> int:
        return 0

    def baseline(self) -> float:
        """Metric of a trivial predictor on the test split: majority-class accuracy, or NMSE of zeros (1.0)."""
        _, y = self._split("test")
        if self.spec.output_kind == "class":
            counts = torch.bincount(y, minlength=self.spec.d_output)
            logits = torch.zeros(len(y), self.spec.d_output)
            logits[:, int(counts.argmax())] = 1.0
            return self.metric(logits, y)
        return self.metric(torch.zeros_like(y), y)

    def ideal_kernel(self, L: int | None = None) -> np.ndarray | None:
        """The known optimal causal convolution kernel, shape ``(L,)``; ``None`` where none is known."""
        return None


# --------------------------------------------------------------------------------------------
# digits


@functools.lru_cache(maxsize=4)
def _digits_data(seed: int, side: int, n_train: int, n_val: int, n_test: int) -> dict:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    labels = digits.target.astype(np.int64)
    idx = np.arange(len(labels))
    rest, test = train_test_split(idx, test_size=n_test, stratify=labels, random_state=seed)
    train, val = train_test_split(rest, test_size=n_val, stratify=labels[rest], random_state=seed)
    if n_train < len(train):
        train, _ = train_test_split(train, train_size=n_train, stratify=labels[train], random_state=seed)

    images = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0  # (N, 1, 8, 8) in [0, 1]
    images = F.interpolate(images, size=(side, side), mode="bilinear", align_corners=False)
    x = images.reshape(len(labels), side * side, 1)
    mean, std = x[train].mean(), x[train].std()
    x = (x - mean) / std
    y = torch.from_numpy(labels)
    out = {"indices": {"train": train, "val": val, "test": test}}
    for which, i in out["indices"].items():
        i = torch.from_numpy(i)
        out[which] = (x[i].contiguous(), y[i].contiguous())
    return out


class DigitsTask(Task):
    """Sequential digits (see :func:`get_task`)."""

    def _data(self) -> dict:
        p = self.spec.params
        return _digits_data(self.seed, p["side"], p["n_train"], p["n_val"], p["n_test"])

    def _split(self, which):
        return self._data()[which]

    def split_indices(self, which: str) -> np.ndarray:
        """Indices into ``sklearn.datasets.load_digits()`` of the images in a split, shape ``(n,)``."""
        if which not in _SPLITS:
            raise ValueError(f"unknown split {which!r}; expected one of {_SPLITS}")
        return self._data()["indices"][which].copy()

    def _sample(self, n, seed):
        x, y = self._split("test")
        rng = _rng("digits", self.seed, _SAMPLE_STREAM, seed)
        if n <= len(y):
            i = rng.choice(len(y), size=n, replace=False)
        else:
            i = rng.integers(0, len(y), size=n)
        i = torch.from_numpy(i)
        return x[i], y[i]


def _make_digits(seed: int, L: int = 1024, n_train: int | None = None, n_val: int = 250,
                 n_test: int = 250) -> Task:
    L = _check_int("L", L, 16, _MAX_DIGITS_SIDE**2)
    side = math.isqrt(L)
    if side * side != L:
        raise ValueError(f"digits: L must be a perfect square (side x side image), got {L}")
    n_val = _check_int("n_val", n_val, 10)  # stratified splits need one image per class
    n_test = _check_int("n_test", n_test, 10)
    rest = 1797 - n_val - n_test
    if rest < 10:
        raise ValueError(f"digits: n_val + n_test = {n_val + n_test} leaves fewer than 10 of 1797 images to train on")
    n_train = rest if n_train is None else _check_int("n_train", n_train, 10, rest)
    params = {"L": L, "side": side, "n_train": n_train, "n_val": n_val, "n_test": n_test}
    spec = TaskSpec("digits", L, "continuous", 1, 10, "class", "accuracy", params)
    return DigitsTask(spec, seed)


# --------------------------------------------------------------------------------------------
# delay


def _band_limited_noise(rng: np.random.Generator, n: int, L: int, band: float) -> np.ndarray:
    """Unit-variance low-pass Gaussian noise, float64 ``(n, L)``; keeps rFFT bins ``1..K``, K = max(1, int(band * L//2))."""
    k = max(1, int(band * (L // 2)))
    out = np.empty((n, L))
    chunk = max(1, 2**22 // L)
    for start in range(0, n, chunk):
        white = rng.standard_normal((min(chunk, n - start), L))
        f = np.fft.rfft(white, axis=1)
        f[:, 0] = 0.0  # no DC: zero-mean sequences
        f[:, k + 1 :] = 0.0
        x = np.fft.irfft(f, n=L, axis=1)
        out[start : start + len(x)] = x / x.std(axis=1, keepdims=True)
    return out


@functools.lru_cache(maxsize=8)
def _delay_data(seed: int, stream: int, sub: int, n: int, L: int, lag: int, band: float):
    x = torch.from_numpy(_band_limited_noise(_rng("delay", seed, stream, sub), n, L, band)).float()
    y = torch.zeros_like(x)
    y[:, lag:] = x[:, : L - lag]
    return x[..., None], y[..., None]


class DelayTask(Task):
    """Lag-copy regression (see :func:`get_task`)."""

    def _args(self):
        p = self.spec.params
        return p["L"], p["lag"], p["band"]

    def _split(self, which):
        stream = _SPLITS.index(which)
        return _delay_data(self.seed, stream, 0, self.spec.params[f"n_{which}"], *self._args())

    def _sample(self, n, seed):
        L = self.spec.L
        if n * L > _MAX_DELAY_ELEMENTS:
            raise ValueError(f"delay: n * L = {n * L} exceeds {_MAX_DELAY_ELEMENTS}; ask for fewer examples")
        return _delay_data(self.seed, _SAMPLE_STREAM, seed, n, *self._args())

    def _nmse_start(self) -> int:
        return self.spec.params["lag"]

    def ideal_kernel(self, L: int | None = None) -> np.ndarray:
        """The lag spike: float64 ``(L,)``, 1.0 at index ``lag`` and 0 elsewhere (``L`` defaults to ``spec.L``)."""
        lag = self.spec.params["lag"]
        L = self.spec.L if L is None else _check_int("L", L, lag + 1)
        k = np.zeros(L)
        k[lag] = 1.0
        return k


def _make_delay(seed: int, L: int = 1024, lag: int | None = None, band: float = 0.25,
                n_train: int = 4000, n_val: int = 500, n_test: int = 500) -> Task:
    L = _check_int("L", L, 16, MAX_TASK_LENGTH)
    lag = L // 4 if lag is None else _check_int("lag", lag, 0, L - 1)
    band = _check_float("band", band, 0.0, 1.0, lo_open=True)
    sizes = {k: _check_int(k, v, 1) for k, v in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test))}
    for k, v in sizes.items():
        if v * L > _MAX_DELAY_ELEMENTS:
            raise ValueError(f"delay: {k} * L = {v * L} exceeds {_MAX_DELAY_ELEMENTS} (memory); lower {k} or L")
    params = {"L": L, "lag": lag, "band": band, **sizes}
    spec = TaskSpec("delay", L, "continuous", 1, 1, "sequence", "nmse", params)
    return DelayTask(spec, seed)


# --------------------------------------------------------------------------------------------
# listops


def _listops_value(op: int, args: list[int]) -> int:
    """Apply operator ``op`` (0 MIN, 1 MAX, 2 MED, 3 SM) to digit arguments; MED is LRA's int(np.median)."""
    if op == 0:
        return min(args)
    if op == 1:
        return max(args)
    if op == 3:
        return sum(args) % 10
    s = sorted(args)
    m = len(s) // 2
    return s[m] if len(s) % 2 else (s[m - 1] + s[m]) // 2


def _listops_tree(rnd, depth: int, max_depth: int, max_args: int, value_p: float, out: list) -> tuple[int, int]:
    """Append one random expression's token ids to ``out``; return (its value, its depth) (LRA's generate_tree).

    ``depth`` is the depth of this node (the root is at depth 1); the returned depth is the deepest level reached.
    """
    if depth < max_depth and rnd() >= value_p:
        n_args = 2 + int(rnd() * (max_args - 1))
        op = int(rnd() * 4)
        out.append(_OP0 + op)
        args, deepest = [], depth
        for _ in range(n_args):
            v, d = _listops_tree(rnd, depth + 1, max_depth, max_args, value_p, out)
            args.append(v)
            deepest = max(deepest, d)
        out.append(_CLOSE)
        return _listops_value(op, args), deepest
    v = int(rnd() * 10)
    out.append(_DIGIT0 + v)
    return v, depth


def _listops_max_length(max_depth: int, max_args: int) -> int:
    length = 1
    for _ in range(max_depth - 1):  # the root is at depth 1, as in LRA
        length = 2 + max_args * length
    return length


def _listops_min_length(depth: int) -> int:
    """Tokens of the shortest expression of exactly ``depth`` levels (1 digit; each level adds "[OP", a digit, "]")."""
    return 1 + 3 * (depth - 1)


def _listops_generate(rnd, n: int, L: int, max_depth: int, max_args: int, min_length: int,
                      value_p: float, min_depth: int | None = None, exclude: frozenset = frozenset()):
    """``n`` distinct expressions with ``min_length <= length <= L`` and not in ``exclude``.

    ``min_depth`` None (cards written before depth ranges existed): every expression is one tree of at most
    ``max_depth`` levels. Otherwise each try first draws a depth ``d`` uniformly in ``[min_depth, max_depth]``,
    generates a tree of at most ``d`` levels and keeps it only if it has exactly ``d`` levels.
    Returns (token id lists, labels, keys) where a key is ``bytes(token ids)``.
    """
    seqs, labels, keys, seen = [], [], [], set()
    budget = 200 * n + 10_000
    for _ in range(budget):
        if len(seqs) == n:
            break
        out: list[int] = []
        if min_depth is None:
            v, _ = _listops_tree(rnd, 1, max_depth, max_args, value_p, out)
        else:
            want = min_depth + int(rnd() * (max_depth - min_depth + 1))
            v, depth = _listops_tree(rnd, 1, want, max_args, value_p, out)
            if depth != want:
                continue
        if not min_length <= len(out) <= L:
            continue
        key = bytes(out)
        if key in seen or key in exclude:
            continue
        seen.add(key)
        seqs.append(out)
        labels.append(v)
        keys.append(key)
    else:
        if len(seqs) < n:
            depths = f"depth {max_depth}" if min_depth is None else f"depths {min_depth}..{max_depth}"
            raise ValueError(
                f"listops: found only {len(seqs)} of {n} distinct expressions of length "
                f"{min_length}..{L} at {depths} in {budget} tries; raise max_depth/max_args or lower min_length"
            )
    return seqs, labels, keys


def _listops_tensors(seqs: list[list[int]], labels: list[int], L: int):
    lengths = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))
    x = np.zeros((len(seqs), L), dtype=np.int64)
    x[np.arange(L) < lengths[:, None]] = np.fromiter(
        (t for s in seqs for t in s), dtype=np.int64, count=int(lengths.sum())
    )
    return torch.from_numpy(x), torch.tensor(labels, dtype=torch.int64)


@functools.lru_cache(maxsize=4)
def _listops_data(seed: int, L: int, max_depth: int, max_args: int, min_length: int, value_p: float,
                  min_depth: int | None, n_train: int, n_val: int, n_test: int) -> dict:
    rnd = random.Random(_py_seed("listops", seed, 0)).random
    n = n_train + n_val + n_test
    seqs, labels, keys = _listops_generate(rnd, n, L, max_depth, max_args, min_length, value_p, min_depth)
    out = {"train_keys": frozenset(keys[:n_train])}
    bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, n)}
    for which, (a, b) in bounds.items():
        out[which] = _listops_tensors(seqs[a:b], labels[a:b], L)
    return out


class ListOpsTask(Task):
    """Mini-ListOps (see :func:`get_task`)."""

    def _gen_args(self):
        p = self.spec.params
        return p["L"], p["max_depth"], p["max_args"], p["min_length"], p["value_p"], p["min_depth"]

    def _data(self) -> dict:
        p = self.spec.params
        return _listops_data(self.seed, *self._gen_args(), p["n_train"], p["n_val"], p["n_test"])

    def _split(self, which):
        return self._data()[which]

    def _sample(self, n, seed):
        rnd = random.Random(_py_seed("listops", self.seed, _SAMPLE_STREAM, seed)).random
        seqs, labels, _ = _listops_generate(rnd, n, *self._gen_args(), exclude=self._data()["train_keys"])
        return _listops_tensors(seqs, labels, self.spec.L)


def _make_listops(seed: int, L: int = 192, max_depth: int = 4, max_args: int = 5, min_length: int | None = None,
                  value_p: float = 0.25, n_train: int = 20_000, n_val: int = 1000, n_test: int = 1000,
                  min_depth: int | None = 3) -> Task:
    L = _check_int("L", L, 16, MAX_TASK_LENGTH)
    max_depth = _check_int("max_depth", max_depth, 2, 50)
    if min_depth is not None:
        min_depth = _check_int("min_depth", min_depth, 2)
        if min_depth > max_depth:
            raise ValueError(f"listops: min_depth={min_depth} is above max_depth={max_depth}; "
                             f"need 2 <= min_depth <= max_depth")
    max_args = _check_int("max_args", max_args, 2, 100)
    shortest = _listops_min_length(min_depth) if min_depth is not None else 1
    min_length = shortest if min_length is None else _check_int("min_length", min_length, 1, L)
    value_p = _check_float("value_p", value_p, 0.0, 1.0)
    longest = _listops_max_length(max_depth, max_args)
    if min_length > longest:
        raise ValueError(
            f"listops: min_length={min_length} but max_depth={max_depth}, max_args={max_args} "
            f"allow expressions of at most {longest} tokens"
        )
    if min_depth is not None and shortest > L:
        raise ValueError(f"listops: L={L} is shorter than the shortest expression of depth {min_depth} "
                         f"({shortest} tokens); raise L or lower min_depth")
    if value_p == 1.0 and (min_length > 1 or min_depth is not None):
        raise ValueError("listops: value_p=1.0 only makes single-digit expressions; lower value_p")
    sizes = {k: _check_int(k, v, 1) for k, v in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test))}
    params = {"L": L, "min_depth": min_depth, "max_depth": max_depth, "max_args": max_args,
              "min_length": min_length, "value_p": value_p, **sizes}
    spec = TaskSpec("listops", L, "tokens", len(LISTOPS_VOCAB), 10, "class", "accuracy", params)
    return ListOpsTask(spec, seed)


def listops_detokenize(ids) -> str:
    """Readable text of one ListOps token sequence (1-D ids; pads dropped), e.g. ``"[MAX 2 9 [MIN 4 7 ] 0 ]"``."""
    ids = np.asarray(ids.cpu() if isinstance(ids, torch.Tensor) else ids).reshape(-1)
    if ids.size and (ids.min() < 0 or ids.max() >= len(LISTOPS_VOCAB)):
        raise ValueError(f"listops token ids must be in [0, {len(LISTOPS_VOCAB) - 1}]")
    return " ".join(LISTOPS_VOCAB[i] for i in ids.tolist() if i != 0)


# --------------------------------------------------------------------------------------------

def task_params_from_card(card: dict) -> dict:
    """The task parameters that rebuild exactly the task a model card was trained on.

    A card's ``task_spec.params`` (every parameter, defaults filled in) is preferred over ``task_params`` (only
    what the command line gave), so a card keeps its task when defaults change. Derived values are dropped
    (digits' ``side``). ListOps cards written before depth ranges existed have no ``min_depth``: they get
    ``min_depth=None``, the generator they were trained with.
    """
    import inspect

    name = card.get("task")
    if name not in _MAKERS:
        raise ValueError(f"unknown task {name!r} in the card; expected one of {TASKS}")
    spec = card.get("task_spec")
    full = spec.get("params") if isinstance(spec, dict) else None
    given = card.get("task_params") or {}
    if not isinstance(given, dict) or (full is not None and not isinstance(full, dict)):
        raise ValueError("the card's task parameters are not a JSON object")
    if not full:
        return dict(given)
    allowed = set(inspect.signature(_MAKERS[name]).parameters) - {"seed"}
    params = {k: v for k, v in full.items() if k in allowed}
    if name == "listops" and "min_depth" not in full:
        params["min_depth"] = None
    return params


def task_from_card(card: dict) -> Task:
    """The task a model card was trained on (:func:`task_params_from_card`, seed ``task_seed``). ValueError if bad."""
    return get_task(card.get("task"), seed=_check_int("task_seed", card.get("task_seed", 0), 0, 2**32 - 1),
                    **task_params_from_card(card))


_MAKERS = {"digits": _make_digits, "delay": _make_delay, "listops": _make_listops}


def get_task(name: str, seed: int = 0, **params) -> Task:
    """Build a task by name; ``params`` override its defaults (all validated, ValueError if bad).

    ``digits``: ``L=1024`` (a perfect square; the image side is sqrt(L)), ``n_val=250``,
    ``n_test=250``, ``n_train`` = the remaining 1,297 images (or fewer). Splits are stratified by
    class and drawn with ``seed``; inputs are standardised with the train split's mean/std.
    ``sample(n, seed)`` draws from the test split (without replacement when ``n <= n_test``).

    ``delay``: ``L=1024``, ``lag=L//4`` (256), ``band=0.25``, ``n_train=4000``, ``n_val=500``,
    ``n_test=500``. ``x`` is white Gaussian noise with all rFFT bins above
    ``K = max(1, int(band * L//2))`` and the DC bin zeroed (frequencies up to ``band`` x Nyquist),
    scaled to unit variance per sequence; ``y[t] = x[t - lag]``, 0 for ``t < lag``. The loss is
    MSE over all positions; the metric is NMSE over ``t >= lag`` only (predicting zeros gives 1.0).
    Splits and ``sample`` use separate random streams derived from ``seed``.

    ``listops``: ``L=192`` (maximum length; shorter sequences are right-padded with 0; the longest expression
    the defaults allow has 187 tokens), ``min_depth=3``, ``max_depth=4``, ``max_args=5``, ``min_length`` = the
    shortest expression of ``min_depth`` levels (7 tokens at depth 3: no length filter), ``value_p=0.25``,
    ``n_train=20000``, ``n_val=1000``, ``n_test=1000``. As in LRA's generator the root is at depth 1; a node
    above the tree's depth limit is a digit with probability ``value_p`` and otherwise an operator with
    ``2..max_args`` children; nodes at the limit are digits. Each try draws a depth ``d`` uniformly in
    ``[min_depth, max_depth]``, generates a tree with limit ``d`` and keeps it only if it really has ``d``
    levels (so every example has a known depth in the range; shallow trees are rejected more often at depth 4,
    and the defaults give about 47 % depth 3 and 53 % depth 4, lengths 7..~140 tokens, mean ~34).
    Why 3..4: a depth-2 expression (one operator over digits) is solved exactly by the one-level baseline
    (`sgconv_core.baselines`), so including it makes a lookup look like ListOps (one-level accuracy 52 % over
    depths 2..4); over 3..4 the baselines are majority ~11-13 %, top-operator lookup ~23 %, one-level ~32-33 %,
    and beating one-level needs the values of nested sub-expressions. ``min_depth=None`` is the generator of
    cards written before depth ranges existed (one tree with limit ``max_depth``, any depth; then L=512 and
    min_length=32 were the defaults): :func:`task_from_card` passes it for them, so they rebuild their splits.
    Expressions are kept when ``min_length <= tokens <= L`` and are distinct across (and within) all splits;
    ``sample`` makes fresh expressions that do not occur in the train split. MED is ``int(np.median)``
    (the floor of the mean of the two middle values for an even count), SM is the sum mod 10.
    Tokens: 0 pad, 1-4 ``[MIN [MAX [MED [SM``, 5 ``]``, 6-15 digits 0-9 (LRA's parentheses are
    dropped). Differences from LRA ListOps: LRA uses max_depth=10, max_args=10 and keeps
    500 < length < 2000; and LRA's code picks a digit when ``random() > 0.25``, i.e. its
    ``value_p`` is effectively 0.75 (pass ``value_p=0.75`` to match; long expressions then
    need a large ``max_depth`` and ``max_args``).
    """
    if name not in _MAKERS:
        raise ValueError(f"unknown task {name!r}; expected one of {TASKS}")
    seed = _check_int("seed", seed, 0, 2**32 - 1)
    try:
        return _MAKERS[name](seed, **params)
    except TypeError as e:  # an unknown keyword argument
        import inspect

        allowed = [p for p in inspect.signature(_MAKERS[name]).parameters if p != "seed"]
        unknown = sorted(set(params) - set(allowed))
        if not unknown:
            raise
        raise ValueError(f"{name}: unknown parameter(s) {unknown}; allowed: {allowed}") from e
