"""Reading a .safetensors file: the safetensors library parses it, no code from the file runs at all.

The file is opened once (`sgconv_core.regular_file.open_regular`: regular file and size from ``fstat`` of the
open descriptor); safetensors then reads that open file through the descriptor's own path (``/proc/self/fd/N``),
memory-mapped, so a path swapped after the check cannot change what is read and peak memory is the tensors
(about the file's size). Where a platform has no such path, the file is read whole from the descriptor and parsed
from those bytes (about twice the file during the parse).
"""
from __future__ import annotations

import io
import os

import torch

from ...cards import read_header
from ...errors import CheckpointError
from ...regular_file import descriptor_path, open_regular


def read_safetensors_file(path: str | os.PathLike, max_bytes: int = 4 << 30) -> tuple[dict[str, torch.Tensor], dict]:
    """All tensors of a .safetensors file (on CPU) and its metadata dict (str -> str)."""
    source = os.fspath(path)
    f, size = open_regular(source, max_bytes)
    with f:
        fd_path = descriptor_path(f)
        if fd_path is not None:
            return _read_mapped(fd_path, source)
        return _read_bytes(f, size, source)


def _read_mapped(fd_path: str, source: str) -> tuple[dict[str, torch.Tensor], dict]:
    """safetensors' own reader on the open descriptor's path: a memory map, each tensor copied out once."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(fd_path, framework="pt", device="cpu") as st:
            meta = dict(st.metadata() or {})
            tensors = {k: st.get_tensor(k) for k in st.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{source}: corrupt or truncated safetensors file ({e})") from None
    return tensors, meta


def _read_bytes(f, size: int, source: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Where the platform has no path for an open descriptor: the whole file read from it, then parsed."""
    from safetensors.torch import load

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
