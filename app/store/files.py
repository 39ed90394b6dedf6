"""Where checkpoints are and what their files say, without loading them.

The pretrained folder ($KERNELSCOPE_PRETRAINED, else <repo>/pretrained), the upload folder
($KERNELSCOPE_UPLOADS, else <tmp>/kernelscope-uploads), safe names for uploads, the string header and model card
of a .safetensors file, and a file's SHA-256. The digest cache (``st.cache_data``) is keyed by
(path, size, modification time), so a rewritten file is hashed again.

Serving the app to others (environment variables, read when used):

* ``KERNELSCOPE_ALLOWED_DIRS``: the folders the "Path on disk" box and ``?path=`` links may read, separated by
  ``os.pathsep`` (``:``). Unset or empty: any file the server can read (local use). A path is resolved with
  ``os.path.realpath`` before the check, so ``..`` and symbolic links cannot lead outside (`check_readable_path`).
* ``KERNELSCOPE_UPLOADS_MAX_MB`` (default 2048) and ``KERNELSCOPE_UPLOADS_MAX_AGE_H`` (default 24): after each
  upload, stored uploads older than the age are removed, then the oldest until the folder is within the size
  (`clean_uploads`). A file that a live browser session has loaded is never removed (`mark_uploads_in_use`).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import threading
import time
from pathlib import Path

import streamlit as st

from sgconv_core.cards import read_card as read_card_strict
from sgconv_core.cards import read_metadata
from sgconv_core.errors import CheckpointError

REPO_ROOT = Path(__file__).resolve().parents[2]
PRETRAINED_ENV = "KERNELSCOPE_PRETRAINED"
UPLOADS_ENV = "KERNELSCOPE_UPLOADS"
ALLOWED_DIRS_ENV = "KERNELSCOPE_ALLOWED_DIRS"
UPLOADS_MAX_MB_ENV = "KERNELSCOPE_UPLOADS_MAX_MB"
UPLOADS_MAX_AGE_ENV = "KERNELSCOPE_UPLOADS_MAX_AGE_H"
UPLOADS_MAX_MB = 2048.0
UPLOADS_MAX_AGE_H = 24.0
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


# ---------------------------------------------------------------------------------------------------- sharing
def allowed_dirs() -> tuple[Path, ...] | None:
    """The folders paths may be read from ($KERNELSCOPE_ALLOWED_DIRS, resolved with realpath); None: anywhere."""
    raw = os.environ.get(ALLOWED_DIRS_ENV, "")
    parts = [p.strip() for p in raw.split(os.pathsep) if p.strip()]
    if not parts:
        return None
    return tuple(Path(os.path.realpath(os.path.expanduser(p))) for p in parts)


def check_readable_path(path: str | os.PathLike) -> Path:
    """The path to load for what a user typed (or a ``?path=`` link named); ValueError (one sentence) when it is
    empty, holds a NUL byte, or, with $KERNELSCOPE_ALLOWED_DIRS set, resolves (``..`` and symbolic links
    followed) outside those folders. Unrestricted: the path as given; restricted: its resolved form."""
    text = os.fspath(path).strip() if path is not None else ""
    if not text:
        raise ValueError("Give the path of a checkpoint file.")
    if "\x00" in text:
        raise ValueError("The path holds a NUL character; give a plain file path.")
    dirs = allowed_dirs()
    if dirs is None:
        return Path(text)
    real = Path(os.path.realpath(os.path.expanduser(text)))
    if any(real == d or d in real.parents for d in dirs):
        return real
    where = ", ".join(str(d) for d in dirs)
    raise ValueError(f"{text}: this server reads checkpoint files only from {where} "
                     f"(${ALLOWED_DIRS_ENV}); upload the file instead, or ask whoever runs it.")


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        v = float(raw)
    except ValueError:
        raise ValueError(f"${name}={raw!r} is not a number") from None
    if not v >= 0:
        raise ValueError(f"${name}={raw!r} must be >= 0")
    return v


def upload_limits() -> tuple[int, float]:
    """(max total bytes, max age in seconds) of the upload folder, from the environment (ValueError if bad)."""
    return (int(_env_number(UPLOADS_MAX_MB_ENV, UPLOADS_MAX_MB) * 2**20),
            _env_number(UPLOADS_MAX_AGE_ENV, UPLOADS_MAX_AGE_H) * 3600.0)


@st.cache_resource(show_spinner=False)
def _in_use() -> dict:
    """Server-wide: {'lock': Lock, 'by_session': {session id: set of upload paths (realpath)}}."""
    return {"lock": threading.Lock(), "by_session": {}}


def _session_alive(session_id: str) -> bool:
    """Whether a browser session is still connected (True when no Streamlit server runs, e.g. in tests)."""
    try:
        from streamlit.runtime import Runtime

        if not Runtime.exists():
            return True
        return Runtime.instance().is_active_session(session_id)
    except Exception:  # noqa: BLE001 - unknown: keep its files
        return True


def mark_uploads_in_use(session_id: str, paths) -> None:
    """Record the upload files a browser session has loaded now (replacing what it had before)."""
    reg = _in_use()
    with reg["lock"]:
        reg["by_session"][session_id] = {os.path.realpath(p) for p in paths}


def uploads_in_use() -> set[str]:
    """Upload files (realpath) that a live browser session has loaded; sessions that have gone are forgotten."""
    reg = _in_use()
    with reg["lock"]:
        for sid in [s for s in reg["by_session"] if not _session_alive(s)]:
            del reg["by_session"][sid]
        return set().union(*reg["by_session"].values()) if reg["by_session"] else set()


def clean_uploads(folder: str | os.PathLike | None = None, keep=(), max_bytes: int | None = None,
                  max_age_s: float | None = None, now: float | None = None) -> list[Path]:
    """Remove stored uploads: first those last written more than ``max_age_s`` ago, then the oldest until the
    folder holds at most ``max_bytes``; never a file in ``keep`` (paths) or in `uploads_in_use`. Empty
    sub-folders go too. Defaults: `uploads_dir` and `upload_limits`. Returns the removed files."""
    folder = Path(folder) if folder is not None else uploads_dir()
    if max_bytes is None or max_age_s is None:
        lim_bytes, lim_age = upload_limits()
        max_bytes = lim_bytes if max_bytes is None else max_bytes
        max_age_s = lim_age if max_age_s is None else max_age_s
    now = time.time() if now is None else now
    protected = {os.path.realpath(p) for p in keep} | uploads_in_use()
    files = []
    for p in folder.rglob("*") if folder.is_dir() else ():
        with contextlib.suppress(OSError):
            st_ = p.lstat()
            if p.is_file() and not p.is_symlink():
                files.append((st_.st_mtime, st_.st_size, p))
    files.sort(key=lambda f: f[0])  # oldest first
    total = sum(size for _, size, _ in files)
    removed = []
    for mtime, size, p in files:
        too_old = now - mtime > max_age_s
        if not (too_old or total > max_bytes) or os.path.realpath(p) in protected:
            continue
        with contextlib.suppress(OSError):
            p.unlink()
            removed.append(p)
            total -= size
    for d in sorted((d for d in folder.rglob("*") if d.is_dir()), key=lambda d: -len(d.parts)):
        with contextlib.suppress(OSError):
            d.rmdir()  # only if empty
    return removed
