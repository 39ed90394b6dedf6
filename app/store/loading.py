"""Loading a checkpoint from a path or an upload into a `LoadResult`, and the process-wide cache of loaded ones.

Two pure functions the tests call directly (AppTest cannot drive st.file_uploader):

    load_path(path, settings)            -> LoadResult (checkpoint and entry, or a readable error message)
    load_upload(data, filename, settings) -> LoadResult (the bytes are written to an upload folder first)

Neither raises: a `sgconv_core.CheckpointError` becomes its own message, anything else a generic one.
The Checkpoint objects live in an ``st.cache_resource`` keyed by (file content hash, settings JSON), shared by
every page and session; `checkpoint(entry)` reads it (and reloads from the file if the entry was evicted).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from app.store.files import file_digest, read_header, safe_filename, sha256_file, stem, uploads_dir, write_atomic
from app.store.settings import settings_key
from sgconv_core.errors import CheckpointError


@dataclass(frozen=True)
class ModelEntry:
    """One loaded model: its display name, the file it loads from, the file's content hash and the settings."""

    name: str
    path: str
    digest: str
    settings_json: str = "{}"
    source: str = "path"  # 'pretrained' | 'upload' | 'path'

    @property
    def key(self) -> tuple[str, str]:
        """What identifies the loaded object: (content hash, settings)."""
        return self.digest, self.settings_json

    @property
    def settings(self) -> dict:
        return json.loads(self.settings_json)


@dataclass
class LoadResult:
    """Outcome of a load: a checkpoint and its entry, or an error message for st.error; notes for st.info."""

    checkpoint: object | None = None
    entry: ModelEntry | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None


@st.cache_resource(show_spinner=False, max_entries=16)
def _load_cached(digest: str, skey: str, _path: str):
    import sgconv_core

    return sgconv_core.load(_path, **json.loads(skey))


def checkpoint(entry: ModelEntry):
    """The Checkpoint of a loaded model (from the shared cache; reloaded from its file if evicted)."""
    return _load_cached(entry.digest, entry.settings_json, _path=entry.path)


def _describe_failure(name: str, exc: BaseException) -> str:
    """The message shown for a load that failed with something other than CheckpointError."""
    if isinstance(exc, MemoryError):
        return f"{name}: not enough memory to load this file."
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    detail = f" ({type(exc).__name__}: {detail[:300]})" if detail else f" ({type(exc).__name__})"
    return (f"{name}: could not be loaded{detail}. The file may be damaged, or hold a model kernelscope does not "
            "know; supported are SGConv, S4 and S4D checkpoints (kernelscope .safetensors, state-spaces and "
            "SGConv torch files).")


def _missing(raw: str, name: str) -> str | None:
    """Why ``raw`` is not a file to load (a message), or None if it is one."""
    if not raw:
        return "Give the path of a checkpoint file."
    p = Path(raw).expanduser()
    if not p.exists():
        return f"{name}: no such file ({p})."
    if not p.is_file():
        return f"{name}: not a file ({p}); give the path of a checkpoint file."
    return None


def load_path(path: str | os.PathLike, settings: dict | None = None, source: str = "path",
              display_name: str | None = None) -> LoadResult:
    """Load a checkpoint from a file on disk. Never raises: errors come back as LoadResult.error.

    Settings are dropped (with a note) for kernelscope's own files, which hold every setting themselves.
    """
    raw = os.fspath(path).strip()
    name = display_name or os.path.basename(raw) or raw
    error = _missing(raw, name)
    if error:
        return LoadResult(error=error)
    p = Path(raw).expanduser()
    settings = dict(settings or {})
    notes = []
    if settings and read_header(p).get("format") == "kernelscope":
        notes.append(f"{name}: a kernelscope checkpoint holds its own kernel settings; the settings box was ignored.")
        settings = {}
    skey = settings_key(settings)
    try:
        digest = file_digest(p)
        ck = _load_cached(digest, skey, _path=str(p))
    except CheckpointError as e:
        msg = str(e)
        if source == "upload":  # name the file as uploaded, not the folder it was stored in
            msg = msg.replace(str(p), name)
        return LoadResult(error=msg)
    except Exception as e:  # noqa: BLE001 - the session must go on whatever the file holds
        return LoadResult(error=_describe_failure(name, e))
    if not getattr(ck, "kernels", None):
        return LoadResult(error=f"{name}: no convolution kernels were found in this file.")
    return LoadResult(checkpoint=ck, entry=ModelEntry(stem(name), str(p), digest, skey, source), notes=notes)


def _holds(target: Path, digest: str) -> bool:
    """Whether ``target`` is a file whose whole content hashes to ``digest`` (read afresh, not from a cache)."""
    try:
        return target.is_file() and sha256_file(target) == digest
    except OSError:
        return False


def load_upload(data: bytes, filename: str, settings: dict | None = None) -> LoadResult:
    """Load an uploaded checkpoint (its bytes and the name it was uploaded under). Never raises.

    The bytes are written to ``uploads_dir()/<hash prefix>/<file name>`` so that the loader (which names the
    file in its messages) and the caches see an ordinary file. A file already there is reused only if its full
    SHA-256 equals the upload's; otherwise it is replaced (atomically, through a uniquely named temporary file).
    """
    name = safe_filename(filename)
    if not data:
        return LoadResult(error=f"{name}: the file is empty.")
    digest = hashlib.sha256(data).hexdigest()
    folder = uploads_dir() / digest[:32]
    target = folder / name
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not _holds(target, digest):  # what is loaded must be exactly what was uploaded
            write_atomic(target, data)
    except OSError as e:
        return LoadResult(error=f"{name}: could not store the upload ({e.strerror or e}).")
    return load_path(target, settings, source="upload", display_name=name)
