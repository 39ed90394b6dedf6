"""Reading a .safetensors file: the safetensors library parses it, no code from the file runs at all."""
from __future__ import annotations

import os

import torch

from ...errors import CheckpointError
from .files import check_file


def read_safetensors_file(path: str | os.PathLike, max_bytes: int = 4 << 30) -> tuple[dict[str, torch.Tensor], dict]:
    """All tensors of a .safetensors file (on CPU) and its metadata dict (str -> str)."""
    from safetensors import safe_open

    source = os.fspath(path)
    check_file(source, max_bytes)
    try:
        with safe_open(source, framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own SafetensorError (and OSError, ValueError)
        raise CheckpointError(f"{source}: corrupt or truncated safetensors file ({e})") from None
    return tensors, meta

