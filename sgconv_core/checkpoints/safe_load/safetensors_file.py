"""Reading a .safetensors file: the safetensors library parses it, no code from the file runs at all.

The file is opened once (`sgconv_core.regular_file.open_regular`: regular file and size from ``fstat`` of the
open descriptor) and read whole from that descriptor; the tensors are parsed from those bytes
(``safetensors.torch.load``) and the metadata from the same bytes' header. A path swapped after the check cannot
change what is read. Peak memory: about twice the file (its bytes and the tensors) during the parse.
"""
from __future__ import annotations

import io
import os

import torch

from ...cards import read_header
from ...errors import CheckpointError
from ...regular_file import open_regular


def read_safetensors_file(path: str | os.PathLike, max_bytes: int = 4 << 30) -> tuple[dict[str, torch.Tensor], dict]:
    """All tensors of a .safetensors file (on CPU) and its metadata dict (str -> str)."""
    from safetensors.torch import load

    source = os.fspath(path)
    f, size = open_regular(source, max_bytes)
    with f:
        try:
            data = f.read(size + 1)
        except OSError as e:
            raise CheckpointError(f"{source}: cannot be read ({e.strerror or e})") from None
    if len(data) != size:
        raise CheckpointError(f"{source}: the file changed while it was read ({size:,} bytes, then {len(data):,})")
    meta = dict(read_header(io.BytesIO(data), size, source).get("__metadata__") or {})  # CheckpointError
    try:
        tensors = load(data)
    except Exception as e:  # safetensors raises its own SafetensorError (and OSError, ValueError)
        raise CheckpointError(f"{source}: corrupt or truncated safetensors file ({e})") from None
    return tensors, meta
