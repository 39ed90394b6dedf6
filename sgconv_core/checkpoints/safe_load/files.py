"""Which paths are read at all (regular files only, within a size) and what format a file is in."""
from __future__ import annotations

import os
import struct

from ...errors import CheckpointError
from ...regular_file import check_size, open_regular, require_regular

# the one home of these checks is sgconv_core.regular_file (torch-free: sgconv_core.cards uses it too)
_require_regular = require_regular


def check_file(path: str | os.PathLike, max_bytes: int | None = None) -> int:
    """The size of a regular file, from its ``stat`` alone (nothing is opened: a FIFO would block).

    Raises CheckpointError if the path is missing, not a regular file, or (given max_bytes) larger than that.
    """
    source = os.fspath(path)
    if "\x00" in source:
        raise CheckpointError(f"{source!r}: the path holds a NUL character")
    try:
        st = os.stat(source)
    except FileNotFoundError:
        raise CheckpointError(f"{source}: no such file") from None
    except OSError as e:
        raise CheckpointError(f"{source}: cannot be read ({e.strerror or e})") from None
    _require_regular(source, st.st_mode)
    check_size(source, st.st_size, max_bytes)
    return st.st_size


def _open_regular(source: str):
    """Open for reading without blocking, and check again on the open file (the path may have changed since)."""
    return open_regular(source)[0]


def sniff_format(path: str | os.PathLike) -> str:
    """'safetensors' | 'torch-zip' | 'torch-legacy' | 'unknown', from the first bytes of the file.

    Raises CheckpointError if the file is missing, not a regular file, unreadable or empty.
    """
    source = os.fspath(path)
    size = check_file(source)
    try:
        with _open_regular(source) as f:
            head = f.read(16)
    except OSError as e:
        raise CheckpointError(f"{source}: cannot be read ({e.strerror or e})") from None
    if size == 0:
        raise CheckpointError(f"{source}: the file is empty")
    if head[:4] == b"PK\x03\x04":
        return "torch-zip"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "torch-legacy"
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if 2 <= n and head[8:9] == b"{":
            return "safetensors"  # a truncated one is reported by read_safetensors_file
    return "unknown"

