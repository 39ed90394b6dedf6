"""The budgets a checkpoint file is read within, the errors that refuse a file, and what one load has spent.

Budgets (module constants, re-exported by the package):

| name               | default     | bounds                                                                       |
|--------------------|-------------|------------------------------------------------------------------------------|
| `MAX_DEPTH`        | 200         | nesting of the object (every container and OmegaConf node is a level); keeps |
|                    |             | recursive walks far from Python's 1,000-frame limit; real files nest < 30    |
| `MAX_NODES`        | 1,000,000   | values built by constructor calls, and the converted object / resolved       |
|                    |             | hyper-parameters counted as a tree; real checkpoints have < 100,000          |
| `MAX_INFLATED_BYTES` | 1 GiB     | compressed (DEFLATE) zip records, declared sizes in total: torch.save stores |
|                    |             | records uncompressed, so only a re-zipped file has any                       |
| ``max_bytes``      | 4 GiB       | the file (`DEFAULT_MAX_BYTES`), and all zip records' declared sizes in total |
| `MAX_RECORDS`      | 100,000     | entries of a zip directory (one per tensor storage in a torch.save file)     |
| `MAX_DIMS`         | 64          | dimensions of a tensor or array (torch's own limit)                          |

The walks over the unpickled object (`plain.py`) recurse once per level of nesting, so `MAX_DEPTH` bounds their
Python stack as well.
"""
from __future__ import annotations

import contextvars
import pickle

MAX_DEPTH = 200
MAX_NODES = 1_000_000
MAX_INFLATED_BYTES = 1 << 30
MAX_RECORDS = 100_000
MAX_DIMS = 64


class Refused(pickle.UnpicklingError):
    """The file asks for something refused on principle (a global, a numpy object dtype, a constructor call)."""


class RefusedGlobal(Refused):
    """The pickle names a global outside the allow-list."""

    def __init__(self, module: str, name: str):
        self.global_name = f"{module}.{name}"
        super().__init__(f"refused global '{self.global_name}'")


class BudgetExceeded(Exception):
    """The file asks for more than a budget allows; the message says what exceeded which budget."""


def _bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:,.2f} {unit}"
    return f"{n:,} bytes"


class _LoadState:
    """What one file has spent so far: constructor-built values and storage bytes; what its archive holds."""

    def __init__(self, file_size: int = 0, records: dict[str, int] | None = None):
        self.file_size, self.records = file_size, records  # records: None for a legacy (non-zip) file
        self.nodes = 0
        self.storages: dict[object, int] = {}  # legacy root key -> elements

    def spend(self, n: int, what: str) -> None:
        self.nodes += n
        if self.nodes > MAX_NODES:
            raise BudgetExceeded(f"{what}: the pickle builds more than {MAX_NODES:,} values, over the budget")


#: the load in progress (set by read_torch_file, and by RestrictedUnpickler.load for each pickle it reads)
_STATE: contextvars.ContextVar[_LoadState] = contextvars.ContextVar("kernelscope_load_state")


def _spend(n: int, what: str) -> None:
    _STATE.get().spend(n, what)
