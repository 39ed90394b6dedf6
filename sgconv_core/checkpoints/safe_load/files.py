"""Which paths are read at all (regular files only, within a size) and what format a file is in."""
from __future__ import annotations

import os
import stat
import struct

from ...errors import CheckpointError

_NOT_REGULAR = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _require_regular(source: str, mode: int) -> None:
    if not stat.S_ISREG(mode):
        kind = next((what for test, what in _NOT_REGULAR if test(mode)), "not a regular file")
        raise CheckpointError(f"{source}: not a checkpoint file but {kind}; only regular files are read")


def check_file(path: str | os.PathLike, max_bytes: int | None = None) -> int:
    """The size of a regular file, from its ``stat`` alone (nothing is opened: a FIFO would block).

    Raises CheckpointError if the path is missing, not a regular file, or (given max_bytes) larger than that.
    """
    source = os.fspath(path)
    try:
        st = os.stat(source)
    except FileNotFoundError:
        raise CheckpointError(f"{source}: no such file") from None
    except OSError as e:
        raise CheckpointError(f"{source}: cannot be read ({e.strerror or e})") from None
    _require_regular(source, st.st_mode)
    if max_bytes is not None and st.st_size > max_bytes:
        raise CheckpointError(
            f"{source}: the file is {st.st_size / 2**30:.2f} GiB, over the {max_bytes / 2**30:.2f} GiB limit "
            "(pass max_bytes=... to load a larger file)"
        )
    return st.st_size


def _open_regular(source: str):
    """Open for reading without blocking, and check again on the open file (the path may have changed since)."""
    try:
        fd = os.open(source, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as e:
        raise CheckpointError(f"{source}: cannot be read ({e.strerror or e})") from None
    try:
        _require_regular(source, os.fstat(fd).st_mode)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")



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

