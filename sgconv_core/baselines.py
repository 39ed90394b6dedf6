"""Baselines for ListOps that a model must beat before it can be said to compute ListOps.

Three predictors, each fitted on a training split (token ids ``(N, L)`` int64 right-padded with 0, labels ``(N,)``)
and scored on other examples with n and a 95 % Wilson interval (`sgconv_core.stats`):

``majority``
    the most common label of the training split, for every example.
``operator_lookup``
    a class per top-level operator (MIN, MAX, MED, SM): the most common label among training expressions
    with that top operator (on the default task: MIN->0, MAX->9, MED->4, SM->4). A bare digit predicts itself.
``one_level``
    the top operator applied to its arguments, where a digit argument is kept and a sub-expression is replaced
    by the most common value of sub-expressions with its operator, counted over the top-level arguments of the
    training expressions (their values computed exactly). It uses one level of the tree and nothing below it.

Library: ``fit_listops_baselines(x, y)`` -> :class:`ListOpsBaselines`; ``.predict(name, x)`` -> ``(N,)`` int64;
``.score(x, y)`` -> ``{name: {"value", "k", "n", "ci_low", "ci_high"}}``; ``listops_baselines(task, which)`` fits on
the task's train split and scores a split. Token ids and operator semantics are those of `sgconv_core.tasks`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .stats import wilson_interval
from .tasks import _CLOSE, _DIGIT0, _OP0, _listops_value

__all__ = ["BASELINES", "OPERATORS", "ListOpsBaselines", "fit_listops_baselines", "listops_baselines",
           "parse_listops"]

#: Names of the baselines, in the order they are printed.
BASELINES: tuple[str, ...] = ("majority", "operator_lookup", "one_level")
#: Operator names by index (0 MIN, 1 MAX, 2 MED, 3 SM), as in `sgconv_core.tasks`.
OPERATORS: tuple[str, ...] = ("MIN", "MAX", "MED", "SM")


def parse_listops(ids):
    """One token-id sequence (1-D, pads 0 anywhere after the expression) -> a tree: an int digit, or
    ``(op, [children])`` with op in 0..3. Raises ValueError for a malformed sequence."""
    seq = [int(t) for t in (ids.tolist() if isinstance(ids, (torch.Tensor, np.ndarray)) else ids)]
    while seq and seq[-1] == 0:
        seq.pop()
    pos = 0

    def node():
        nonlocal pos
        if pos >= len(seq):
            raise ValueError("listops: expression ends early")
        t = seq[pos]
        pos += 1
        if _DIGIT0 <= t <= _DIGIT0 + 9:
            return t - _DIGIT0
        if not _OP0 <= t < _OP0 + 4:
            raise ValueError(f"listops: unexpected token id {t} at position {pos - 1}")
        children = []
        while pos < len(seq) and seq[pos] != _CLOSE:
            children.append(node())
        if pos >= len(seq):
            raise ValueError("listops: an operator is never closed")
        pos += 1
        if not children:
            raise ValueError("listops: an operator without arguments")
        return (t - _OP0, children)

    tree = node()
    if pos != len(seq):
        raise ValueError(f"listops: tokens after the end of the expression at position {pos}")
    return tree


def _value(tree) -> int:
    if isinstance(tree, int):
        return tree
    op, children = tree
    return _listops_value(op, [_value(c) for c in children])


def _most_common(values, fallback: int) -> int:
    """The most common value (the smallest on a tie), or ``fallback`` when there is none."""
    if not len(values):
        return fallback
    return int(np.bincount(np.asarray(values, dtype=np.int64), minlength=10).argmax())


@dataclass(frozen=True)
class ListOpsBaselines:
    """Fitted baselines: ``majority`` (a class), ``lookup[op]`` and ``sub_value[op]`` (a class per operator)."""

    majority: int
    lookup: tuple[int, int, int, int]
    sub_value: tuple[int, int, int, int]
    n_train: int

    def predict(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Predicted classes ``(N,)`` int64 of baseline ``name`` for token ids ``x`` ``(N, L)``."""
        if name not in BASELINES:
            raise ValueError(f"unknown baseline {name!r}; expected one of {BASELINES}")
        x = torch.as_tensor(x)
        if x.ndim != 2:
            raise ValueError(f"listops token ids must be (N, L), got shape {tuple(x.shape)}")
        if name == "majority":
            return torch.full((len(x),), self.majority, dtype=torch.int64)
        out = []
        for row in x:
            tree = parse_listops(row)
            if isinstance(tree, int):
                out.append(tree)
            elif name == "operator_lookup":
                out.append(self.lookup[tree[0]])
            else:
                op, children = tree
                args = [c if isinstance(c, int) else self.sub_value[c[0]] for c in children]
                out.append(_listops_value(op, args))
        return torch.tensor(out, dtype=torch.int64)

    def score(self, x: torch.Tensor, y: torch.Tensor, confidence: float = 0.95) -> dict:
        """Each baseline's accuracy on ``(x, y)``: ``{name: {"value", "k", "n", "ci_low", "ci_high"}}``."""
        y = torch.as_tensor(y)
        if len(y) != len(x) or len(y) == 0:
            raise ValueError(f"need the same positive number of inputs and labels, got {len(x)} and {len(y)}")
        out = {}
        for name in BASELINES:
            k = int((self.predict(name, x) == y).sum())
            lo, hi = wilson_interval(k, len(y), confidence)
            out[name] = {"value": k / len(y), "k": k, "n": len(y), "ci_low": lo, "ci_high": hi}
        return out

    def tables(self) -> dict:
        """The fitted classes by operator name, e.g. ``{"operator_lookup": {"MIN": 0, ...}, ...}``."""
        return {"majority": self.majority,
                "operator_lookup": dict(zip(OPERATORS, self.lookup, strict=True)),
                "one_level": dict(zip(OPERATORS, self.sub_value, strict=True))}


def fit_listops_baselines(x: torch.Tensor, y: torch.Tensor) -> ListOpsBaselines:
    """Fit the three baselines on training token ids ``x`` ``(N, L)`` and labels ``y`` ``(N,)``."""
    y = torch.as_tensor(y)
    if len(x) != len(y) or len(y) == 0:
        raise ValueError(f"need the same positive number of inputs and labels, got {len(x)} and {len(y)}")
    labels = [int(v) for v in y.tolist()]
    majority = _most_common(labels, 0)
    by_top: dict[int, list[int]] = {op: [] for op in range(4)}
    sub: dict[int, list[int]] = {op: [] for op in range(4)}
    for row, label in zip(x, labels, strict=True):
        tree = parse_listops(row)
        if isinstance(tree, int):
            continue
        op, children = tree
        by_top[op].append(label)
        for c in children:
            if not isinstance(c, int):
                sub[c[0]].append(_value(c))
    lookup = tuple(_most_common(by_top[op], majority) for op in range(4))
    sub_value = tuple(_most_common(sub[op], lookup[op]) for op in range(4))
    return ListOpsBaselines(majority, lookup, sub_value, len(labels))


def listops_baselines(task, which: str = "test", confidence: float = 0.95) -> dict:
    """Fit on ``task``'s train split and score split ``which``: ``{name: {...}, "tables": {...}, "split": which}``."""
    if task.spec.name != "listops":
        raise ValueError(f"ListOps baselines need the listops task, got {task.spec.name!r}")
    b = fit_listops_baselines(*task.split("train"))
    return {**b.score(*task.split(which), confidence=confidence), "tables": b.tables(), "split": which}
