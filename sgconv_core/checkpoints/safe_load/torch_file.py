"""Reading a torch.save file (zip or legacy): the zip directory checked first, every pickle through the restricted
unpickler within the file's budget, the result turned into plain containers."""
from __future__ import annotations

import os

import torch

from ...errors import CheckpointError
from .budget import _STATE, BudgetExceeded, Refused, RefusedGlobal, _LoadState
from .files import _open_regular, check_file
from .plain import resolve_interpolations, to_plain
from .unpickler import restricted_pickle
from .zipdir import _is_tar, _zip_records


def read_torch_file(path: str | os.PathLike, max_bytes: int = 4 << 30):
    """The object a torch.save file holds, with OmegaConf containers turned into plain dicts / lists.

    Never executes code from the file (the restricted unpickler) and never allocates more than the budgets in
    budget.py allow. Raises CheckpointError naming the file and the problem (corrupt, truncated, refused global,
    exceeded budget).
    """
    source = os.fspath(path)
    size = check_file(source, max_bytes)
    try:
        return _read(source, size, max_bytes)
    except CheckpointError:
        raise
    except RefusedGlobal as e:
        raise CheckpointError(
            f"{source}: refused to load: the pickle references '{e.global_name}', which could run code; "
            "kernelscope only reads tensors, plain containers and OmegaConf configs"
        ) from None
    except Refused as e:
        raise CheckpointError(f"{source}: refused to load: {e}") from None
    except BudgetExceeded as e:
        raise CheckpointError(f"{source}: {e}") from None
    except MemoryError:
        raise CheckpointError(f"{source}: ran out of memory while loading") from None
    except RecursionError:
        raise CheckpointError(f"{source}: nesting too deep to load") from None
    except Exception as e:
        raise CheckpointError(f"{source}: corrupt, truncated or not a torch checkpoint ({_short(e)})") from None


def _read(source: str, size: int, max_bytes: int):
    """read_torch_file's work, raising the loader's own exceptions (read_torch_file words them)."""
    with _open_regular(source) as f:
        zipped = f.read(4) == b"PK\x03\x04"
        f.seek(0)
        if zipped:
            records = _zip_records(f, size, max_bytes)
        elif _is_tar(f):
            raise Refused("a tar archive (torch's pre-2018 format), which kernelscope does not read")
        else:
            records = None
        f.seek(0)
        token = _STATE.set(_LoadState(size, records))
        try:
            obj = torch.load(f, map_location="cpu", weights_only=False, pickle_module=restricted_pickle)
        finally:
            _STATE.reset(token)
    obj = to_plain(obj)
    if isinstance(obj, dict) and isinstance(obj.get("hyper_parameters"), dict):
        obj["hyper_parameters"] = resolve_interpolations(obj["hyper_parameters"])
    return obj


def _short(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__
