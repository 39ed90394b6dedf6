"""Opening a checkpoint file: regular files only, checked on the open descriptor (torch-free).

A path is opened once, without blocking (a FIFO or device would hang a plain ``open``), and what it is and how
large it is come from ``fstat`` of that descriptor: the checks and the reading are about the same file even if
the path is replaced in between.
"""
from __future__ import annotations

import os
import stat

from .errors import CheckpointError

_NOT_REGULAR = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def require_regular(source: str, mode: int) -> None:
    """CheckpointError unless ``mode`` (st_mode) is a regular file's."""
    if not stat.S_ISREG(mode):
        kind = next((what for test, what in _NOT_REGULAR if test(mode)), "not a regular file")
        raise CheckpointError(f"{source}: not a checkpoint file but {kind}; only regular files are read")


def check_size(source: str, size: int, max_bytes: int | None) -> None:
    """CheckpointError when ``size`` is over ``max_bytes`` (None: no limit)."""
    if max_bytes is not None and size > max_bytes:
        raise CheckpointError(
            f"{source}: the file is {size / 2**30:.2f} GiB, over the {max_bytes / 2**30:.2f} GiB limit "
            "(pass max_bytes=... to load a larger file)"
        )


def open_regular(path: str | os.PathLike, max_bytes: int | None = None):
    """-> (binary file object, size): ``path`` opened for reading without blocking, a regular file of at most
    ``max_bytes`` according to ``fstat`` of the open descriptor. CheckpointError otherwise (missing, a NUL byte in
    the path, unreadable, not a regular file, too large); the descriptor is closed on every error."""
    source = os.fspath(path)
    if "\x00" in source:
        raise CheckpointError(f"{source!r}: the path holds a NUL character")
    try:
        fd = os.open(source, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise CheckpointError(f"{source}: no such file") from None
    except OSError as e:
        raise CheckpointError(f"{source}: cannot be read ({e.strerror or e})") from None
    try:
        st = os.fstat(fd)
        require_regular(source, st.st_mode)
        check_size(source, st.st_size, max_bytes)
        return os.fdopen(fd, "rb"), st.st_size
    except BaseException:
        os.close(fd)
        raise


def descriptor_path(f) -> str | None:
    """A path naming the file open as ``f`` itself (``/proc/self/fd/N`` on Linux, ``/dev/fd/N`` where that exists),
    so a library that takes a path (safetensors' memory map) reads the very file that was checked, even if the
    original path has been replaced since; None where the platform has no such path."""
    fd = f.fileno()
    for folder in ("/proc/self/fd", "/dev/fd"):
        if os.path.isdir(folder):
            return f"{folder}/{fd}"
    return None


__all__ = ["require_regular", "check_size", "open_regular", "descriptor_path"]
