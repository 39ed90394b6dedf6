"""Reading our checkpoints' metadata and model card from the safetensors header alone (no tensors, no torch).

    read_card("pretrained/digits-s4d.safetensors")   # -> dict (task, family, metric, test_value, ...)

Our format (`sgconv_core.checkpoints.ours`) stores JSON strings under the metadata keys "format" (= `FORMAT`),
"version", "config" and "card". The file is opened once (`sgconv_core.regular_file.open_regular`: a regular file,
checked on the open descriptor) and its header is read from that descriptor: an 8-byte little-endian length, then
that many bytes of JSON whose ``__metadata__`` is the str -> str metadata (the safetensors format).
"""
from __future__ import annotations

import json
import os
import struct

from .errors import CheckpointError
from .regular_file import descriptor_path, open_regular

FORMAT = "kernelscope"
#: The largest header read (the safetensors library's own limit: 100 MB).
HEADER_MAX_BYTES = 100_000_000


def read_header(f, size: int, source: str) -> dict:
    """The JSON header of a safetensors file, read from the start of the open binary file ``f`` of ``size``
    bytes. CheckpointError naming ``source`` when it is not a safetensors header (too short, a length beyond the
    file or over `HEADER_MAX_BYTES`, not a JSON object, metadata not str -> str)."""
    head = f.read(8)
    if len(head) < 8:
        raise CheckpointError(f"{source}: cannot read a safetensors header (the file is {size} bytes)")
    (n,) = struct.unpack("<Q", head)
    if n > min(HEADER_MAX_BYTES, size - 8):
        raise CheckpointError(f"{source}: cannot read a safetensors header (it declares {n:,} bytes; the file has "
                              f"{max(size - 8, 0):,} after the length, the limit is {HEADER_MAX_BYTES:,})")
    raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8")) if len(raw) == n else None
    except (UnicodeDecodeError, ValueError, RecursionError):
        header = None
    if not isinstance(header, dict):
        raise CheckpointError(f"{source}: cannot read a safetensors header (not a JSON object)")
    meta = header.get("__metadata__") or {}
    if not (isinstance(meta, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items())):
        raise CheckpointError(f"{source}: cannot read a safetensors header (its metadata is not str -> str)")
    return header


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata of a .safetensors file, from its header alone (no tensors are read).

    Raises CheckpointError naming the file when it cannot be read or is not a safetensors file.
    """
    source = os.fspath(path)
    f, size = open_regular(source)
    with f:
        fd_path = descriptor_path(f)
        if fd_path is None:  # no path for the open descriptor on this platform: parse the header ourselves
            try:
                return dict(read_header(f, size, source).get("__metadata__") or {})
            except OSError as e:
                raise CheckpointError(f"{source}: cannot be read ({e.strerror or e})") from None
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(fd_path, framework="np") as st:
                return dict(st.metadata() or {})
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{source}: cannot read a safetensors header ({e})") from None


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


__all__ = ["FORMAT", "HEADER_MAX_BYTES", "read_header", "read_metadata", "read_card"]
