"""Reading our checkpoints' metadata and model card from the safetensors header alone (no tensors, no torch).

    read_card("pretrained/digits-s4d.safetensors")   # -> dict (task, family, metric, test_value, ...)

Our format (`sgconv_core.checkpoints.ours`) stores JSON strings under the metadata keys "format" (= `FORMAT`),
"version", "config" and "card"; safetensors' own reader (`safe_open(...).metadata()`) reads them.
"""
from __future__ import annotations

import json
import os

from .errors import CheckpointError

FORMAT = "kernelscope"


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata of a .safetensors file, read by safetensors from the header alone (no tensors).

    Raises CheckpointError naming the file when it cannot be read or is not a safetensors file.
    """
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(os.fspath(path), framework="np") as f:
            return dict(f.metadata() or {})
    except (OSError, SafetensorError) as e:
        raise CheckpointError(f"{os.fspath(path)}: cannot read a safetensors header ({e})") from None


def read_card(path: str | os.PathLike) -> dict:
    """The model card of one of our checkpoints (header only). CheckpointError when the file is not ours."""
    meta = read_metadata(path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{os.fspath(path)}: not a kernelscope checkpoint")
    try:
        card = json.loads(meta.get("card") or "{}")
    except ValueError as e:
        raise CheckpointError(f"{os.fspath(path)}: its model card is not JSON ({e})") from None
    if not isinstance(card, dict):
        raise CheckpointError(f"{os.fspath(path)}: its model card is not a JSON object")
    return card


__all__ = ["FORMAT", "read_metadata", "read_card"]
