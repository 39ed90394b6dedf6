"""Where checkpoints are and what their files say, without loading them.

The pretrained folder ($KERNELSCOPE_PRETRAINED, else <repo>/pretrained), the upload folder
($KERNELSCOPE_UPLOADS, else <tmp>/kernelscope-uploads), safe names for uploads, the string header and model card
of a .safetensors file, and a file's SHA-256. The digest cache (``st.cache_data``) is keyed by
(path, size, modification time), so a rewritten file is hashed again.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path

import streamlit as st

from sgconv_core.cards import read_card as read_card_strict
from sgconv_core.cards import read_metadata
from sgconv_core.errors import CheckpointError

REPO_ROOT = Path(__file__).resolve().parents[2]
PRETRAINED_ENV = "KERNELSCOPE_PRETRAINED"
UPLOADS_ENV = "KERNELSCOPE_UPLOADS"
EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth")


def pretrained_dir() -> Path:
    """The pretrained-checkpoint folder: $KERNELSCOPE_PRETRAINED, else <repo>/pretrained."""
    return Path(os.environ.get(PRETRAINED_ENV) or REPO_ROOT / "pretrained")


def list_pretrained(folder: str | os.PathLike | None = None) -> list[Path]:
    """Checkpoint files (by extension) directly in the pretrained folder, sorted by name; [] if it is missing."""
    folder = Path(folder) if folder is not None else pretrained_dir()
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS)


def find_pretrained(name: str, folder: str | os.PathLike | None = None) -> Path | None:
    """The pretrained checkpoint called ``name`` (file name or stem); None if the folder holds none by that name.

    Only names inside the pretrained folder resolve: a link (``?model=...``) can never point at another file."""
    name = (name or "").strip()
    for p in list_pretrained(folder):
        if name in (p.name, p.stem):
            return p
    return None


def uploads_dir() -> Path:
    """Where uploaded bytes are written before loading: $KERNELSCOPE_UPLOADS, else <tmp>/kernelscope-uploads."""
    return Path(os.environ.get(UPLOADS_ENV) or Path(tempfile.gettempdir()) / "kernelscope-uploads")


_SAFE_NAME = re.compile(r"[^A-Za-z0-9._+-]+")


def safe_filename(filename: str) -> str:
    """A plain file name for an uploaded file (no folders, no odd characters; 'upload' if nothing is left)."""
    base = os.path.basename((filename or "").replace("\\", "/"))
    base = _SAFE_NAME.sub("_", base).strip("._") or "upload"
    return base[:120]


def stem(filename: str) -> str:
    """The display name of a checkpoint file: its name without a checkpoint extension."""
    p = Path(filename)
    return p.stem if p.suffix.lower() in EXTENSIONS else p.name


def read_header(path: str | os.PathLike) -> dict:
    """The string metadata of a .safetensors file (its header only; nothing is executed); {} otherwise."""
    try:
        return read_metadata(path)
    except CheckpointError:
        return {}


def read_card(path: str | os.PathLike) -> dict:
    """The model card stored in a kernelscope .safetensors file's metadata ({} when there is none)."""
    try:
        return read_card_strict(path)
    except CheckpointError:
        return {}


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 of a file's content, read now (no cache)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@st.cache_data(show_spinner=False, max_entries=256)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's content (cached by path, size and modification time)."""
    st_ = os.stat(path)
    return _file_digest(os.fspath(path), st_.st_size, st_.st_mtime_ns)


def write_atomic(target: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``target`` through a uniquely named temporary file in the same folder and os.replace.

    Readers see the old file or the new one, never a half-written one; concurrent writers never share a
    temporary file; the temporary file is removed if anything fails."""
    target = Path(target)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
