"""What input a runnable model takes, and a user's data file checked against it before anything runs.

    spec = input_spec(model)          # InputSpec: what the model takes and gives (a SequenceModel or a ConvLayer)
    spec.input_text()                 # e.g. "(B, L, 2) float (continuous input, d_input = 2)"
    task_misfit(spec, task.spec)      # None when one of our tasks fits the model, else the reason in words
    data = load_data(path, spec)      # UserData: x (B, ...) tensor, y (B, ...) tensor or None, metric
    check_input(x, spec)              # an in-memory batch, checked the same way
    scores(pred, data.y, data.metric) # {"accuracy"} or {"nmse", "mse"}

Inputs, by what the model takes (B examples of length L; any L from 1 to `MAX_TASK_LENGTH`):

| model                                  | spec.kind    | x                                                  |
|----------------------------------------|--------------|----------------------------------------------------|
| SequenceModel, embedding encoder       | 'tokens'     | integer ids (B, L), each in [0, vocabulary size)   |
| SequenceModel, linear encoder          | 'continuous' | floats (B, L, d_input); (B, L) when d_input = 1    |
| one layer (ConvLayer, an official one) | 'layer'      | floats (B, H, L), H = the layer's d_model          |

Targets (optional; attribution needs none, evaluation needs them), by what the model gives:

| model output                    | y                                                 | metric              |
|---------------------------------|---------------------------------------------------|---------------------|
| pooled (B, d_out) ('mean'/'last')| integer class ids (B,), each in [0, d_out)       | accuracy            |
|                                 | floats (B, d_out); (B,) when d_out = 1            | nmse (and mse)      |
| per position (B, L, d_out)      | integer class ids (B, L)                          | accuracy            |
|                                 | floats (B, L, d_out); (B, L) when d_out = 1       | nmse (and mse)      |
| a layer (B, H, L)               | floats (B, H, L)                                  | nmse (and mse)      |

NMSE = mean((pred - y)^2) / mean(y^2), pooled over everything (as `sgconv_core.tasks`); accuracy = mean of
argmax(pred, -1) == y.

Files (the format is chosen by the extension):

- ``.npz`` (``numpy.savez`` / ``savez_compressed``): inputs under ``x``, ``inputs``, ``input`` or ``arr_0``
  (the name ``np.savez(f, x, y)`` gives), targets under ``y``, ``targets``, ``target``, ``labels`` or
  ``arr_1``. Read with ``allow_pickle=False``; each array's header (shape, dtype) is read and checked against the
  model before its data is read, and the zip directory's declared sizes are checked before anything is inflated.
- ``.npy``: one array, the inputs (no targets); its header is checked first in the same way.
- ``.pt`` / ``.pth``: a ``torch.save`` of a dict with those keys, an ``(x, y)`` tuple or list, or one tensor
  (the inputs). Read through the restricted unpickler of ``sgconv_core.checkpoints.safe_load``: nothing in the
  file can run code, and its budgets bound what it may allocate. Tensors or numpy arrays.

Every problem (missing file, wrong keys, two input keys, a non-numeric dtype, a wrong shape or width, a token
outside the vocabulary, NaN or inf, too many values) raises `DataError` (a ValueError) naming the file, the key,
what was expected and what was found.
"""
from __future__ import annotations

import math
import os
import zipfile
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .errors import CheckpointError
from .lengths import MAX_TASK_LENGTH

__all__ = ["DataError", "InputSpec", "UserData", "input_spec", "task_misfit", "check_input", "load_data", "scores",
           "INPUT_KEYS", "TARGET_KEYS", "DATA_SUFFIXES", "MAX_DATA_BYTES", "MAX_DATA_VALUES"]

#: accepted names of the inputs and the targets in a .npz file or a .pt dict (first match wins; two is an error)
INPUT_KEYS: tuple[str, ...] = ("x", "inputs", "input", "arr_0")
TARGET_KEYS: tuple[str, ...] = ("y", "targets", "target", "labels", "arr_1")
DATA_SUFFIXES: tuple[str, ...] = (".npz", ".npy", ".pt", ".pth")
#: the largest data file read (bytes), and the most values one array may hold (inputs or targets; 2**27 values
#: are 512 MB in float32, 1 GB in float64)
MAX_DATA_BYTES = 1 << 30
MAX_DATA_VALUES = 1 << 27
_MAX_MEMBERS = 64  # arrays in one .npz


class DataError(ValueError):
    """A data file that does not fit the model, or cannot be read; the message names file, key and problem."""


# ---------------------------------------------------------------------------------------------------------------
# what the model takes


@dataclass(frozen=True)
class InputSpec:
    """What a runnable model takes and gives.

    kind: 'tokens' (B, L) integer ids | 'continuous' (B, L, width) floats | 'layer' (B, width = H, L) floats.
    width: vocabulary size (tokens), d_input (continuous) or H (layer).
    output: 'pooled' (B, d_output) | 'sequence' (B, L, d_output) | 'layer' (B, H, L), d_output = H.
    dtype: the floating dtype of the model's parameters (float inputs are cast to it).
    """

    kind: str
    width: int
    output: str
    d_output: int
    dtype: torch.dtype = torch.float32

    def input_text(self) -> str:
        """The input shape in words, e.g. '(B, L, 2) float (continuous input, d_input = 2)'."""
        if self.kind == "tokens":
            return f"(B, L) integer token ids in [0, {self.width}) (vocabulary of {self.width})"
        if self.kind == "layer":
            return f"(B, {self.width}, L) float (one layer: H = {self.width} channels by L positions)"
        return f"(B, L, {self.width}) float (continuous input, d_input = {self.width})"

    def output_text(self) -> str:
        """The output shape in words."""
        if self.output == "pooled":
            return f"(B, {self.d_output}): one output vector per sequence"
        if self.output == "layer":
            return f"(B, {self.d_output}, L): the layer's features"
        return f"(B, L, {self.d_output}): an output per position"


def _param_dtype(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def input_spec(model: nn.Module) -> InputSpec:
    """What ``model`` takes: our SequenceModel (its ``cfg``) or one ConvLayer ((B, H, L) -> (B, H, L)).

    Raises DataError for any other module (its input cannot be told from the module)."""
    from .layers import ConvLayer
    from .model import SequenceModel

    dtype = _param_dtype(model)
    if isinstance(model, SequenceModel):
        cfg = model.cfg
        output = "sequence" if cfg.pool == "none" else "pooled"
        return InputSpec(cfg.input_kind, int(cfg.d_input), output, int(cfg.d_output), dtype)
    if isinstance(model, ConvLayer):
        H = int(model.kernel.H)
        return InputSpec("layer", H, "layer", H, dtype)
    raise DataError(f"cannot tell what input a {type(model).__name__} takes (only a SequenceModel or one layer)")


def task_misfit(spec: InputSpec, task_spec) -> str | None:
    """None if our task (its `sgconv_core.tasks.TaskSpec`) gives input the model takes and targets its output
    can be scored on; else one sentence saying why not."""
    t = task_spec
    if spec.kind == "layer":
        return (f"a single layer takes features {spec.input_text()}, not a task's input; give a data file of "
                f"shape (B, {spec.width}, L)")
    if spec.kind != t.input_kind:
        return f"the model takes {spec.kind} input, the {t.name} task gives {t.input_kind} input"
    if spec.kind == "continuous" and spec.width != t.d_input:
        return f"the model takes d_input = {spec.width}, the {t.name} task gives d_input = {t.d_input}"
    if spec.kind == "tokens" and t.d_input > spec.width:
        return f"the model's vocabulary has {spec.width} tokens, the {t.name} task uses {t.d_input}"
    want = "pooled" if t.output_kind == "class" else "sequence"
    if spec.output != want or spec.d_output != t.d_output:
        return (f"the model gives {spec.output_text()}, the {t.name} task needs "
                + (f"(B, {t.d_output}) class logits" if want == "pooled" else f"(B, L, {t.d_output}) per position"))
    return None


# ---------------------------------------------------------------------------------------------------------------
# checks on (shape, dtype) before reading, and on the values after


def _shape(shape) -> str:
    return "(" + ", ".join(str(int(s)) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _numeric_kind(dtype: np.dtype, where: str) -> str:
    """'int' | 'float' for a numeric numpy dtype; DataError otherwise."""
    if dtype.kind in "iu":
        return "int"
    if dtype.kind == "f":
        return "float"
    raise DataError(f"{where} has dtype {dtype}, not a real number type (integers or floats)")


def _count(shape) -> int:
    return math.prod(int(s) for s in shape)


def _check_input_header(shape: tuple, dtype: np.dtype, spec: InputSpec, where: str) -> tuple:
    """The input's shape as the model takes it ((B, L) / (B, L, d) / (B, H, L)), from the stored shape and dtype,
    or DataError. Nothing is read."""
    kind = _numeric_kind(dtype, where)
    want = spec.input_text()
    shape = tuple(int(s) for s in shape)
    got = f"{where} has shape {_shape(shape)} {dtype}"
    if spec.kind == "tokens":
        if kind != "int":
            raise DataError(f"{got}; the model takes {want}, so the ids must be integers")
        if len(shape) != 2:
            raise DataError(f"{got}; the model takes {want}")
        B, L = shape
    elif spec.kind == "continuous":
        if len(shape) == 2 and spec.width == 1:
            shape = (*shape, 1)
        if len(shape) != 3 or shape[2] != spec.width:
            raise DataError(f"{got}; the model takes {want}")
        B, L = shape[0], shape[1]
    else:
        if len(shape) != 3 or shape[1] != spec.width:
            raise DataError(f"{got}; the layer takes {want}")
        B, L = shape[0], shape[2]
    if B < 1 or L < 1:
        raise DataError(f"{got}: no examples (B and L must be at least 1)")
    if L > MAX_TASK_LENGTH:
        raise DataError(f"{got}: L = {L:,} is over the longest sequence read ({MAX_TASK_LENGTH:,})")
    if _count(shape) > MAX_DATA_VALUES:
        raise DataError(f"{got}: {_count(shape):,} values, over the limit of {MAX_DATA_VALUES:,}")
    return shape


def _check_target_header(shape: tuple, dtype: np.dtype, spec: InputSpec, xshape: tuple,
                         where: str) -> tuple[tuple, str]:
    """(the targets' shape as compared with the output, metric 'accuracy' | 'nmse') or DataError."""
    kind = _numeric_kind(dtype, where)
    shape = tuple(int(s) for s in shape)
    B = xshape[0]
    L = xshape[2] if spec.kind == "layer" else xshape[1]
    d = spec.d_output
    if spec.output == "layer":
        options = {"float": [(B, d, L)]}
        text = f"floats ({B}, {d}, {L}) (the layer's output)"
    elif spec.output == "pooled":
        options = {"int": [(B,)], "float": [(B, d)] + ([(B,)] if d == 1 else [])}
        text = f"integer class ids ({B},) in [0, {d}), or floats ({B}, {d})" + (f" or ({B},)" if d == 1 else "")
    else:
        options = {"int": [(B, L)], "float": [(B, L, d)] + ([(B, L)] if d == 1 else [])}
        text = f"integer class ids ({B}, {L}) in [0, {d}), or floats ({B}, {L}, {d})" + (
            f" or ({B}, {L})" if d == 1 else "")
    if shape not in options.get(kind, []):
        raise DataError(f"{where} has shape {_shape(shape)} {dtype}; the model gives {spec.output_text()}, so "
                        f"for {B} inputs the targets must be {text}")
    if _count(shape) > MAX_DATA_VALUES:
        raise DataError(f"{where}: {_count(shape):,} values, over the limit of {MAX_DATA_VALUES:,}")
    if kind == "float" and spec.output != "layer" and len(shape) < (2 if spec.output == "pooled" else 3):
        shape = (*shape, 1)
    return shape, ("accuracy" if kind == "int" else "nmse")


def _check_finite(a: np.ndarray, where: str) -> None:
    if a.dtype.kind == "f":
        bad = ~np.isfinite(a)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise DataError(f"{where} holds {int(bad.sum()):,} NaN or infinite value(s), the first at index "
                            f"{first} ({a[first]})")


def _check_ids(a: np.ndarray, n: int, what: str, where: str) -> None:
    lo, hi = int(a.min()), int(a.max())
    if lo < 0 or hi >= n:
        bad = np.argwhere((a < 0) | (a >= n))[0]
        raise DataError(f"{where}: {what} must lie in [0, {n}), but index {tuple(int(i) for i in bad)} holds "
                        f"{int(a[tuple(bad)])} (values range over [{lo}, {hi}])")


# ---------------------------------------------------------------------------------------------------------------
# reading


@dataclass(frozen=True)
class UserData:
    """A user's data, checked against a model. x: (B, L) int64 tokens, (B, L, d) or (B, H, L) floats in the
    model's dtype. y: None, int64 class ids (B,) / (B, L), or floats shaped like the output. metric: 'accuracy'
    | 'nmse' | None (no targets)."""

    source: str
    x: torch.Tensor
    y: torch.Tensor | None
    x_key: str
    y_key: str | None
    metric: str | None
    L: int  # sequence length of the examples

    @property
    def n(self) -> int:
        """Number of examples B."""
        return int(self.x.shape[0])

    def describe(self) -> str:
        """One line: what was read."""
        t = (f", targets '{self.y_key}' {_shape(self.y.shape)} ({self.metric})" if self.y is not None
             else ", no targets")
        return f"{os.path.basename(self.source)}: {self.n} example(s), inputs '{self.x_key}' {_shape(self.x.shape)}{t}"


def _pick(names, keys: tuple[str, ...], source: str, what: str) -> str | None:
    found = [k for k in keys if k in names]
    if len(found) > 1:
        raise DataError(f"{source}: both {found[0]!r} and {found[1]!r} are present; keep one {what} key")
    return found[0] if found else None


def _require_inputs(names, source: str) -> tuple[str, str | None]:
    xk = _pick(names, INPUT_KEYS, source, "input")
    yk = _pick(names, TARGET_KEYS, source, "target")
    if xk is None:
        listed = ", ".join(repr(str(n)) for n in list(names)[:10]) or "none"
        raise DataError(f"{source}: no inputs found: expected a key named one of {', '.join(INPUT_KEYS)} "
                        f"(targets, optional: {', '.join(TARGET_KEYS)}); the file holds {listed}")
    return xk, yk


def _npy_header(f, where: str) -> tuple[tuple, np.dtype, bool]:
    """(shape, dtype, fortran order) from an open .npy stream, reading its header only."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = fmt.read_array_header_2_0(f)
        else:
            raise ValueError(f"format version {version}")
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{where} is not a readable .npy array ({e})") from None
    if dtype.hasobject:
        raise DataError(f"{where} holds Python objects (dtype {dtype}); only numeric arrays are read "
                        "(pickled data is never loaded)")
    return tuple(shape), dtype, fortran


def _read_npy_data(f, shape, dtype, fortran, where: str, declared: int | None) -> np.ndarray:
    """The data after a .npy header (already read), at most prod(shape) * itemsize bytes."""
    nbytes = _count(shape) * dtype.itemsize
    if declared is not None and nbytes > declared:
        raise DataError(f"{where}: the header promises {nbytes:,} bytes but the file holds {declared:,}")
    buf = f.read(nbytes)
    if len(buf) != nbytes:
        raise DataError(f"{where} is truncated: {len(buf):,} of {nbytes:,} data bytes")
    a = np.frombuffer(buf, dtype=dtype)
    return a.reshape(shape[::-1]).transpose() if fortran else a.reshape(shape)


def _checked_file(path, max_bytes: int) -> tuple[str, int]:
    source = os.fspath(path)
    try:
        from .checkpoints.safe_load import check_file

        size = check_file(source, max_bytes)
    except CheckpointError as e:
        raise DataError(str(e).replace("pass max_bytes=... to load a larger file", "data file limit")) from None
    if size == 0:
        raise DataError(f"{source}: the file is empty")
    return source, size


def _read_npy(source: str, size: int, spec: InputSpec):
    where = f"{source}: the array"
    with open(source, "rb") as f:
        shape, dtype, fortran = _npy_header(f, where)
        xshape = _check_input_header(shape, dtype, spec, where)
        a = _read_npy_data(f, shape, dtype, fortran, where, size - f.tell())
    return (a, xshape, "(the array)"), None


def _read_npz(source: str, size: int, spec: InputSpec):
    try:
        z = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(f"{source}: not a readable .npz file ({e})") from None
    with z:
        infos = z.infolist()
        if len(infos) > _MAX_MEMBERS:
            raise DataError(f"{source}: {len(infos):,} arrays, over the limit of {_MAX_MEMBERS}")
        members = {i.filename[:-4] if i.filename.endswith(".npy") else i.filename: i for i in infos}
        xk, yk = _require_inputs(members, source)
        declared = sum(members[k].file_size for k in (xk, yk) if k is not None)
        if declared > MAX_DATA_BYTES:
            raise DataError(f"{source}: the arrays declare {declared:,} bytes when inflated, over the data file "
                            f"limit of {MAX_DATA_BYTES:,}")
        out = []
        for key, target in ((xk, False), (yk, True)):
            if key is None:
                out.append(None)
                continue
            where = f"{source}: key '{key}'"
            try:
                with z.open(members[key]) as f:
                    shape, dtype, fortran = _npy_header(f, where)
                    if target:
                        checked = _check_target_header(shape, dtype, spec, out[0][1], where)
                    else:
                        checked = _check_input_header(shape, dtype, spec, where)
                    a = _read_npy_data(f, shape, dtype, fortran, where, members[key].file_size - f.tell())
            except (zipfile.BadZipFile, OSError, EOFError) as e:  # CRC errors, broken deflate streams
                raise DataError(f"{where} is corrupt ({e})") from None
            out.append((a, checked, key))
    return out[0], out[1]


def _as_array(v, where: str) -> np.ndarray:
    if isinstance(v, torch.Tensor):
        if v.is_complex() or v.dtype == torch.bool:
            raise DataError(f"{where} has dtype {v.dtype}, not a real number type (integers or floats)")
        if v.dtype == torch.bfloat16:
            v = v.float()
        return v.detach().cpu().numpy()
    if isinstance(v, np.ndarray):
        return v
    raise DataError(f"{where} is a {type(v).__name__}, not a tensor or numpy array")


def _read_pt(source: str, size: int, spec: InputSpec):
    from .checkpoints.safe_load import read_torch_file

    try:
        obj = read_torch_file(source, max_bytes=MAX_DATA_BYTES)
    except CheckpointError as e:
        raise DataError(str(e)) from None
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        items, xk, yk = {"(the tensor)": obj}, "(the tensor)", None
    elif isinstance(obj, (tuple, list)) and len(obj) in (1, 2):
        items = {f"[{i}]": v for i, v in enumerate(obj)}
        xk, yk = "[0]", ("[1]" if len(obj) == 2 else None)
    elif isinstance(obj, dict):
        items = obj
        xk, yk = _require_inputs([k for k in obj if isinstance(k, str)], source)
    else:
        raise DataError(f"{source}: holds a {type(obj).__name__}; expected a dict with keys "
                        f"{'/'.join(INPUT_KEYS[:2])} (and {'/'.join(TARGET_KEYS[:2])}), an (x, y) pair or one tensor")
    where = f"{source}: key '{xk}'"
    xa = _as_array(items[xk], where)
    x = (xa, _check_input_header(xa.shape, xa.dtype, spec, where), xk)
    y = None
    if yk is not None:
        where = f"{source}: key '{yk}'"
        ya = _as_array(items[yk], where)
        y = (ya, _check_target_header(ya.shape, ya.dtype, spec, x[1], where), yk)
    return x, y


def _finish_input(a: np.ndarray, shape: tuple, spec: InputSpec, where: str) -> torch.Tensor:
    """Values checked (finite; ids inside the vocabulary), then as the model takes them."""
    _check_finite(a, where)
    if spec.kind == "tokens":
        _check_ids(a, spec.width, "token ids", where)
        return torch.from_numpy(np.array(a, dtype=np.int64))
    return torch.from_numpy(np.array(a, dtype=np.float64).reshape(shape)).to(spec.dtype)


def check_input(x, spec: InputSpec, where: str = "the input") -> torch.Tensor:
    """An in-memory batch x (a tensor or array, shapes as in the module doc) checked against ``spec`` like a
    file's inputs, as the model takes it. Raises DataError naming ``where``, the expected and the given shape."""
    a = _as_array(x, where)
    shape = _check_input_header(a.shape, a.dtype, spec, where)
    return _finish_input(a, shape, spec, where)


def load_data(path, spec: InputSpec, max_bytes: int = MAX_DATA_BYTES, need_targets: bool = False) -> UserData:
    """Read a user's inputs (and targets) from ``path`` and check them against ``spec`` (see the module doc).

    Returns UserData with x as the model takes it: (B, L) int64, (B, L, d) or (B, H, L) in ``spec.dtype``.
    Raises DataError naming the file, the key, the expected and the found shape / dtype / value."""
    source, size = _checked_file(path, max_bytes)
    suffix = os.path.splitext(source)[1].lower()
    if suffix == ".npz":
        x, y = _read_npz(source, size, spec)
    elif suffix == ".npy":
        x, y = _read_npy(source, size, spec)
    elif suffix in (".pt", ".pth"):
        x, y = _read_pt(source, size, spec)
    else:
        raise DataError(f"{source}: unknown data file type {suffix or '(no extension)'!r}; "
                        f"use one of {', '.join(DATA_SUFFIXES)}")
    if need_targets and y is None:
        raise DataError(f"{source}: no targets found (a key named one of {', '.join(TARGET_KEYS)}); "
                        "evaluation needs them")
    xa, xshape, xk = x
    xt = _finish_input(xa, xshape, spec, f"{source}: key '{xk}'")
    yt, yk, metric = None, None, None
    if y is not None:
        ya, (yshape, metric), yk = y
        where = f"{source}: key '{yk}'"
        _check_finite(ya, where)
        if metric == "accuracy":
            _check_ids(ya, spec.d_output, "class ids", where)
            yt = torch.from_numpy(np.array(ya, dtype=np.int64))
        else:
            yt = torch.from_numpy(np.array(ya, dtype=np.float64).reshape(yshape)).float()
    L = int(xt.shape[2] if spec.kind == "layer" else xt.shape[1])
    return UserData(source, xt, yt, xk, yk, metric, L)


# ---------------------------------------------------------------------------------------------------------------
# scores


def scores(pred: torch.Tensor, y: torch.Tensor, metric: str) -> dict:
    """The metric of outputs ``pred`` against targets ``y`` (shapes as `load_data` returns them).

    'accuracy': pred (B, d) or (B, L, d) logits, y (B,) or (B, L) ids -> {"accuracy": mean(argmax == y)}.
    'nmse': pred and y of the same shape -> {"nmse": mse / mean(y^2), "mse": mean((pred - y)^2)}.
    """
    pred = pred.detach().double().cpu()
    if metric == "accuracy":
        if tuple(pred.shape[:-1]) != tuple(y.shape):
            raise DataError(f"outputs {_shape(pred.shape)} do not match class targets {_shape(y.shape)}")
        return {"accuracy": (pred.argmax(-1) == y.cpu()).double().mean().item()}
    if metric != "nmse":
        raise ValueError(f"unknown metric {metric!r}; expected 'accuracy' or 'nmse'")
    yd = y.double().cpu()
    if tuple(pred.shape) != tuple(yd.shape):
        raise DataError(f"outputs {_shape(pred.shape)} do not match targets {_shape(yd.shape)}")
    mse = ((pred - yd) ** 2).mean().item()
    power = (yd**2).mean().item()
    return {"nmse": mse / power if power > 0 else math.inf, "mse": mse}
