"""Reading and writing checkpoints: our safetensors format and the official SGConv / state-spaces layouts.

Loading never executes code from a file: safetensors, torch's weights-only unpickler, or our restricted
unpickler (see the safe_load package). Anything else is refused with CheckpointError.
"""
from __future__ import annotations

import os

from ..errors import CheckpointError
from .checkpoint import Checkpoint
from .ours import FORMAT, save

#: Files larger than this are refused unless load(..., max_bytes=...) raises the limit.
DEFAULT_MAX_BYTES = 4 << 30


def load(path: str | os.PathLike, max_bytes: int = DEFAULT_MAX_BYTES, **settings) -> Checkpoint:
    """Load any supported checkpoint file into a `Checkpoint`.

    settings: kernel settings the weights do not hold, under the official argument names (mode,
    init_scale, dt_transform, disc, real_transform, imag_transform, is_real, ...). Raises CheckpointError, also
    for anything but a regular file, a file over max_bytes, and a hostile file over one of the budgets of
    safe_load/budget.py (nesting, values, inflated zip records, tensor views outside their storage).
    """
    from . import ours
    from .safe_load import check_file, read_safetensors_file, read_torch_file, sniff_format

    source = os.path.basename(os.fspath(path)) or os.fspath(path)
    check_file(path, max_bytes)  # a FIFO, device or directory is refused from its stat, before anything opens it
    kind = sniff_format(path)
    if kind == "safetensors":
        tensors, meta = read_safetensors_file(path, max_bytes=max_bytes)
        if meta.get("format") == FORMAT:
            if settings:
                raise CheckpointError(f"{source}: settings {sorted(settings)} do not apply to a kernelscope checkpoint")
            return ours.from_safetensors(tensors, meta, source)
        from . import foreign

        return foreign.from_object(tensors, source, settings)
    if kind in ("torch-zip", "torch-legacy"):
        obj = read_torch_file(path, max_bytes=max_bytes)
        from . import foreign

        return foreign.from_object(obj, source, settings)
    raise CheckpointError(f"{source}: not a checkpoint (neither safetensors nor a torch.save file)")


__all__ = ["Checkpoint", "CheckpointError", "load", "save", "DEFAULT_MAX_BYTES"]
