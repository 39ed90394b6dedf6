"""Reading checkpoint files without ever running code from them, within a resource budget.

- `.safetensors`: parsed by the safetensors library (no code at all).
- `torch.save` files (zip or legacy): torch.load reads the container format, but every pickle in the file goes
  through `RestrictedUnpickler`, which resolves only an allow-list of globals: torch's tensor-rebuild
  functions, plain containers, numpy's numeric scalars / arrays, and the OmegaConf classes of Lightning
  checkpoints' ``hyper_parameters``, replaced by inert stand-ins (omegaconf is never imported) that `to_plain`
  turns into plain dicts and lists. Any other global (``os.system``, ``builtins.eval``, a user class, ...) is
  refused before it can be called, and the whole file is refused. torch's own ``weights_only`` unpickler is not
  used: it calls ``torch.Tensor(n)``, ``bytearray(n)`` and ``Tensor.set_`` as the pickle asks, i.e. allocates
  whatever a 200-byte file requests, before anything could check it.

Hostile files cost at most a `CheckpointError` naming the file and the budget: every allow-listed callable is a
`_Global` whose function checks its arguments before it builds anything, and what the pickle builds never
reaches numpy's or torch's own ``__setstate__`` (placeholders, converted by `to_plain` from checked parts).
Checks made before anything is allocated:

- only regular files are opened (a FIFO, device or directory is refused from its ``stat``, never opened);
- a zip archive's directory is read first: a record whose declared size is over a budget is refused before it is
  inflated; a TorchScript archive (torch.load would hand it to torch.jit.load) and an old tar-format file are
  refused;
- a tensor's storage must be a record of the archive (zip; at most the record's bytes) or fit in the file
  (legacy); a tensor view must lie inside its storage without overlapping itself (no stride-0 ``expand`` or
  ``as_strided`` view that would materialise as terabytes);
- constructor calls in the pickle (``list(range(n))``, ``bytes(...)``, ``torch.Size(...)``) count against a node
  budget; ``torch.Tensor(...)`` and ``bytes(n)`` are refused;
- the unpickled object's nesting depth and its size *as a tree* are bounded while it is converted (shared
  sub-objects are converted once but counted each time they appear, so a DAG of shared tuples or a web of
  ``${x}`` interpolations cannot blow up here or in any later walk over it); a reference cycle is refused.

The budgets (`MAX_DEPTH`, `MAX_NODES`, `MAX_INFLATED_BYTES`, ``max_bytes``, `MAX_RECORDS`, `MAX_DIMS`) are listed,
with what each bounds, in `budget.py`, the one place they are defined.

One module per concern, in the order a torch file goes through them:

| module               | what it holds                                                                          |
|----------------------|----------------------------------------------------------------------------------------|
| `budget.py`          | the budgets, the errors that refuse a file (Refused, BudgetExceeded), one load's spend  |
| `files.py`           | regular files only, their size (`check_file`), the format from the first bytes         |
| `safetensors_file.py`| `read_safetensors_file`                                                                |
| `zipdir.py`          | a zip archive's directory, checked before any record is inflated; tar files spotted    |
| `unpickler.py`       | `RestrictedUnpickler.find_class`: the one place a pickle's globals are looked up       |
| `stubs.py`           | the stand-ins on the pickle's stack (`_Global`, `Inert`, `_Stub`)                      |
| `builtin_rebuild.py` | the allow-listed builtins / collections / _codecs callables                            |
| `torch_rebuild.py`   | the allow-listed torch callables: storages from the archive, checked tensor views      |
| `numpy_rebuild.py`   | the allow-listed numpy callables: numeric dtypes, scalars and arrays                   |
| `plain.py`           | `to_plain` and `resolve_interpolations`: the result as plain, bounded containers       |
| `torch_file.py`      | `read_torch_file`, which puts the above together                                       |

The allow-lists are the dicts of `_Global`s that `find_class` consults, never a module's namespace: importing
or re-exporting a name (here or in any module of this package) does not make it loadable.
"""
from __future__ import annotations

from .budget import (
    MAX_DEPTH,
    MAX_DIMS,
    MAX_INFLATED_BYTES,
    MAX_NODES,
    MAX_RECORDS,
    BudgetExceeded,
    Refused,
    RefusedGlobal,
)
from .files import check_file, sniff_format
from .plain import resolve_interpolations, to_plain
from .safetensors_file import read_safetensors_file
from .stubs import Inert
from .torch_file import read_torch_file
from .torch_rebuild import check_view
from .unpickler import RestrictedUnpickler, restricted_pickle

__all__ = [
    "MAX_DEPTH", "MAX_DIMS", "MAX_INFLATED_BYTES", "MAX_NODES", "MAX_RECORDS", "BudgetExceeded", "Refused",
    "RefusedGlobal", "check_file", "sniff_format", "resolve_interpolations", "to_plain", "read_safetensors_file",
    "Inert", "read_torch_file", "check_view", "RestrictedUnpickler", "restricted_pickle",
]
