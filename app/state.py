"""Shared state of the app: where checkpoints come from, how they are loaded and cached, and which are loaded.

Loading goes through two pure functions the tests call directly (AppTest cannot drive st.file_uploader):

    load_path(path, settings)            -> LoadResult (checkpoint and entry, or a readable error message)
    load_upload(data, filename, settings) -> LoadResult (the bytes are written to an upload folder first)

Neither raises: a `sgconv_core.CheckpointError` becomes its own message, anything else a generic one.
Loaded models live in ``st.session_state`` as `ModelEntry` records by display name; the Checkpoint objects
themselves live in an ``st.cache_resource`` keyed by (file content hash, settings), and kernels / analyses in
``st.cache_data`` keyed by (content hash, settings, L, ...), so every page and session shares them.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from sgconv_core.cards import read_card as read_card_strict
from sgconv_core.cards import read_metadata
from sgconv_core.errors import CheckpointError
from sgconv_core.settings import OFFERED

REPO_ROOT = Path(__file__).resolve().parents[1]
PRETRAINED_ENV = "KERNELSCOPE_PRETRAINED"
UPLOADS_ENV = "KERNELSCOPE_UPLOADS"
EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth")
MAX_COMPARE = 4  # models shown side by side / overlaid at once
_SESSION_KEY = "ks_models"

#: Official kernel settings a foreign file may not hold, as the Models page's settings box offers them:
#: name -> (choices, help); the one table of load settings is `sgconv_core.checkpoints.settings`.
SETTINGS_CHOICES: dict[str, tuple[list, str]] = OFFERED


# --------------------------------------------------------------------------------------------------------------
# where checkpoints are
# --------------------------------------------------------------------------------------------------------------
def pretrained_dir() -> Path:
    """The pretrained-checkpoint folder: $KERNELSCOPE_PRETRAINED, else <repo>/pretrained."""
    return Path(os.environ.get(PRETRAINED_ENV) or REPO_ROOT / "pretrained")


def list_pretrained(folder: str | os.PathLike | None = None) -> list[Path]:
    """Checkpoint files (by extension) directly in the pretrained folder, sorted by name; [] if it is missing."""
    folder = Path(folder) if folder is not None else pretrained_dir()
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS)


def uploads_dir() -> Path:
    """Where uploaded bytes are written before loading: $KERNELSCOPE_UPLOADS, else <tmp>/kernelscope-uploads."""
    return Path(os.environ.get(UPLOADS_ENV) or Path(tempfile.gettempdir()) / "kernelscope-uploads")


# --------------------------------------------------------------------------------------------------------------
# records
# --------------------------------------------------------------------------------------------------------------
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


def settings_key(settings: dict | None) -> str:
    """Canonical JSON of a settings dict (sorted keys) for cache keys."""
    return json.dumps(settings or {}, sort_keys=True, default=str)


def clean_settings(values: dict) -> dict:
    """Drop settings left at 'from the file' (None or '') so only the ones the user chose reach the loader."""
    return {k: v for k, v in values.items() if v is not None and v != ""}


def parse_extra_settings(text: str) -> dict:
    """Parse the free-form 'other settings' box: JSON object, or ``key=value`` pairs split by commas/newlines.

    Values are read as JSON where possible (numbers, true/false, null), else kept as strings.
    Raises ValueError with a readable message.
    """
    text = (text or "").strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            out = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"other settings: not valid JSON ({e.msg} at character {e.pos})") from None
        if not isinstance(out, dict):
            raise ValueError("other settings: expected a JSON object such as {\"mode\": \"cat_randn\"}")
        return out
    out = {}
    for part in re.split(r"[,\n]", text):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise ValueError(f"other settings: {part!r} is not of the form key=value")
        k, v = (s.strip() for s in part.split("=", 1))
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
            raise ValueError(f"other settings: {k!r} is not a setting name")
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


# --------------------------------------------------------------------------------------------------------------
# hashing and loading
# --------------------------------------------------------------------------------------------------------------
def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@st.cache_data(show_spinner=False, max_entries=256)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    return _sha256_file(path)


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's content (cached by path, size and modification time)."""
    st_ = os.stat(path)
    return _file_digest(os.fspath(path), st_.st_size, st_.st_mtime_ns)


@st.cache_resource(show_spinner=False, max_entries=16)
def _load_cached(digest: str, skey: str, _path: str):
    import sgconv_core

    return sgconv_core.load(_path, **json.loads(skey))


def _describe_failure(name: str, exc: BaseException) -> str:
    """The message shown for a load that failed with something other than CheckpointError."""
    if isinstance(exc, MemoryError):
        return f"{name}: not enough memory to load this file."
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    detail = f" ({type(exc).__name__}: {detail[:300]})" if detail else f" ({type(exc).__name__})"
    return (f"{name}: could not be loaded{detail}. The file may be damaged, or hold a model kernelscope does not "
            "know; supported are SGConv, S4 and S4D checkpoints (kernelscope .safetensors, state-spaces and "
            "SGConv torch files).")


def _stem(filename: str) -> str:
    p = Path(filename)
    return p.stem if p.suffix.lower() in EXTENSIONS else p.name


def load_path(path: str | os.PathLike, settings: dict | None = None, source: str = "path",
              display_name: str | None = None) -> LoadResult:
    """Load a checkpoint from a file on disk. Never raises: errors come back as LoadResult.error.

    Settings are dropped (with a note) for kernelscope's own files, which hold every setting themselves.
    """
    raw = os.fspath(path).strip()
    name = display_name or os.path.basename(raw) or raw
    if not raw:
        return LoadResult(error="Give the path of a checkpoint file.")
    p = Path(raw).expanduser()
    if not p.exists():
        return LoadResult(error=f"{name}: no such file ({p}).")
    if not p.is_file():
        return LoadResult(error=f"{name}: not a file ({p}); give the path of a checkpoint file.")
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
    return LoadResult(checkpoint=ck, entry=ModelEntry(_stem(name), str(p), digest, skey, source), notes=notes)


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


_SAFE_NAME = re.compile(r"[^A-Za-z0-9._+-]+")


def safe_filename(filename: str) -> str:
    """A plain file name for an uploaded file (no folders, no odd characters; 'upload' if nothing is left)."""
    base = os.path.basename((filename or "").replace("\\", "/"))
    base = _SAFE_NAME.sub("_", base).strip("._") or "upload"
    return base[:120]


def load_upload(data: bytes, filename: str, settings: dict | None = None) -> LoadResult:
    """Load an uploaded checkpoint (its bytes and the name it was uploaded under). Never raises.

    The bytes are written to ``uploads_dir()/<hash prefix>/<file name>`` so that the loader (which names the
    file in its messages) and the caches see an ordinary file.
    """
    name = safe_filename(filename)
    if not data:
        return LoadResult(error=f"{name}: the file is empty.")
    digest = hashlib.sha256(data).hexdigest()
    folder = uploads_dir() / digest[:32]
    target = folder / name
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not (target.is_file() and target.stat().st_size == len(data)):
            tmp = target.with_name(target.name + ".part")
            tmp.write_bytes(data)
            os.replace(tmp, target)
    except OSError as e:
        return LoadResult(error=f"{name}: could not store the upload ({e.strerror or e}).")
    return load_path(target, settings, source="upload", display_name=name)


# --------------------------------------------------------------------------------------------------------------
# the session's loaded models
# --------------------------------------------------------------------------------------------------------------
def models() -> dict[str, ModelEntry]:
    """Loaded models by display name, in the order they were loaded."""
    return st.session_state.setdefault(_SESSION_KEY, {})


def unique_name(stem: str, taken) -> str:
    """stem, or 'stem (2)', 'stem (3)', ... whichever is not taken."""
    if stem not in taken:
        return stem
    i = 2
    while f"{stem} ({i})" in taken:
        i += 1
    return f"{stem} ({i})"


def add_model(entry: ModelEntry) -> tuple[str, bool]:
    """Register a loaded model; returns (display name, added). Loading the same file+settings twice is a no-op."""
    loaded = models()
    for name, other in loaded.items():
        if other.key == entry.key:
            return name, False
    name = unique_name(entry.name, loaded)
    loaded[name] = ModelEntry(name, entry.path, entry.digest, entry.settings_json, entry.source)
    return name, True


def remove_model(name: str) -> None:
    models().pop(name, None)


def find_pretrained(name: str, folder: str | os.PathLike | None = None) -> Path | None:
    """The pretrained checkpoint called ``name`` (file name or stem); None if the folder holds none by that name.

    Only names inside the pretrained folder resolve: a link (``?model=...``) can never point at another file."""
    name = (name or "").strip()
    for p in list_pretrained(folder):
        if name in (p.name, p.stem):
            return p
    return None


#: The query parameters a link (and the page's own URL) carries the loaded models in: pretrained names, paths.
LINK_PARAMS = ("model", "path")
_LINK_MAX = 8  # per parameter


def _link_values(values) -> list[str]:
    return [str(v).strip() for v in values or [] if str(v).strip()][:_LINK_MAX]


def load_from_query(names, paths=()) -> list[str]:
    """Load the models a link names into the session; returns the errors (messages, never a traceback).

    ``names``: checkpoints of the pretrained folder (``?model=a&model=b``, by stem or file name); ``paths``: files
    on this machine (``?path=/data/x.safetensors``), loaded as the Models page's 'Path on disk' does. Runs once
    per session and set of names and paths, so that removing a model later does not bring it back."""
    names, paths = _link_values(names), _link_values(paths)
    done = st.session_state.setdefault("ks_query_loaded", set())
    key = (tuple(names), tuple(paths))
    if not (names or paths) or key in done:
        return []
    done.add(key)
    errors = []
    for n in names:
        path = find_pretrained(n)
        if path is None:
            errors.append(f"{n}: no checkpoint of that name in the pretrained folder (link parameter ?model={n}).")
            continue
        res = load_path(path, source="pretrained")
        if res.ok:
            add_model(res.entry)
        else:
            errors.append(res.error)
    for p in paths:
        res = load_path(p, source="path")
        if res.ok:
            add_model(res.entry)
        else:
            errors.append(f"{res.error.rstrip('.')}; the link names it in ?path=.")
    return errors


def link_params(loaded: dict[str, ModelEntry] | None = None) -> dict[str, list[str]]:
    """The query parameters that load these models again (default: the session's): {'model': [pretrained names],
    'path': [files]}, in load order. Uploads are left out (a link cannot carry a file), and so are models loaded
    with kernel settings (reloading them without the settings would give another model)."""
    loaded = models() if loaded is None else loaded
    out: dict[str, list[str]] = {k: [] for k in LINK_PARAMS}
    for entry in loaded.values():
        if entry.settings or entry.source == "upload":
            continue
        if entry.source == "pretrained":
            p = Path(entry.path)
            out["model"].append(p.stem if find_pretrained(p.stem) == p else p.name)
        else:
            out["path"].append(entry.path)
    return {k: v[:_LINK_MAX] for k, v in out.items()}


def write_link() -> None:
    """Keep the page's URL (``st.query_params``) equal to `link_params`, so that a reload (F5), a page link or a
    shared URL loads the same models. Writes only what changed; other query parameters are left alone."""
    for key, values in link_params().items():
        if st.query_params.get_all(key) == values:
            continue
        if values:
            st.query_params[key] = values
        else:
            del st.query_params[key]


_warmed = False


def warm_up() -> None:
    """Import the heavy modules the analysis pages need (torch, scipy.stats, plotly) in a background thread,
    once per process, so the first visit to a plotting page does not wait for them."""
    global _warmed
    if _warmed:
        return
    _warmed = True

    def run():
        try:
            import analysis.decay  # noqa: F401  (scipy.stats)
            import analysis.extract  # noqa: F401  (torch)
            import analysis.figures  # noqa: F401  (plotly)
            import analysis.frequency  # noqa: F401
            import analysis.measure  # noqa: F401
            import sgconv_core  # noqa: F401
        except Exception:  # noqa: BLE001 - a warm-up only; the pages import (and report) for themselves
            pass

    import threading

    threading.Thread(target=run, name="kernelscope-warm-up", daemon=True).start()


def checkpoint(entry: ModelEntry):
    """The Checkpoint of a loaded model (from the shared cache; reloaded from its file if evicted)."""
    return _load_cached(entry.digest, entry.settings_json, _path=entry.path)


# --------------------------------------------------------------------------------------------------------------
# environment
# --------------------------------------------------------------------------------------------------------------
def device_label() -> str:
    """The accelerator in use: the CUDA device name, or 'CPU'."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.cuda.current_device())
    return "CPU"


def compute_device():
    """torch.device used to run models (attribution): CUDA when there is one."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


# --------------------------------------------------------------------------------------------------------------
# kernels and analyses (shared by every page and session)
# --------------------------------------------------------------------------------------------------------------
@st.cache_resource(show_spinner=False, max_entries=16)
def _kernels(digest: str, skey: str, L: int, _entry: ModelEntry) -> dict:
    from analysis.extract import extract_kernels

    return extract_kernels(checkpoint(_entry), L)


def kernels(entry: ModelEntry, L: int) -> dict:
    """Every layer's kernel at length L: {name: (C_k, H, L) float64, read-only} (analysis.extract).

    Cached by (file content hash, settings, L) for every session. A resource cache rather than st.cache_data:
    the arrays are read-only and can be tens of MB, which st.cache_data would copy (pickle) on every read, i.e.
    on every layer or channel switch. Raises CheckpointError (a ValueError) for a length the kernels refuse.
    """
    return _kernels(entry.digest, entry.settings_json, int(L), _entry=entry)


@st.cache_data(show_spinner=False, max_entries=32)
def _analysis(digest: str, skey: str, L: int, _entry: ModelEntry):
    from analysis.measure import analyze

    # the kernels themselves stay in analysis.extract's cache; the figure arrays of shown channels are small
    return analyze(checkpoint(_entry), L).without_kernels()


def analysis(entry: ModelEntry, L: int):
    """`analysis.measure.analyze(checkpoint, L)` without the kernel arrays: an `analysis.records.Report` with
    per-layer records (decay medians, peak gain, bandwidth, SSM half-lives, analytic-vs-FFT agreement),
    per-channel records, parameter scaling and the figure data. Cached by (content hash, settings, L) for every
    session."""
    return _analysis(entry.digest, entry.settings_json, int(L), _entry=entry)


@st.cache_data(show_spinner=False, max_entries=64)
def _fit_curve(digest: str, skey: str, L: int, layer: int, c: int, h: int, m: float, mode: str, dims: tuple,
               _entry: ModelEntry) -> list[dict]:
    from analysis.fit import fit_curve

    K = list(kernels(_entry, L).values())[layer]
    return fit_curve(K[c, h], dims=dims, m=m, mode=mode)


def fit_curve_rows(entry: ModelEntry, L: int, layer: int, c: int, h: int, m: float, mode: str, dims) -> list[dict]:
    """analysis.fit.fit_curve of one kernel channel (cached)."""
    return _fit_curve(entry.digest, entry.settings_json, int(L), int(layer), int(c), int(h), float(m), mode,
                      tuple(int(d) for d in dims), _entry=entry)


@st.cache_resource(show_spinner=False, max_entries=8)
def _task(name: str, seed: int, params_json: str):
    from sgconv_core.tasks import get_task

    return get_task(name, seed=seed, **json.loads(params_json))


def task_for(name: str, seed: int = 0, params: dict | None = None):
    """sgconv_core.tasks.get_task(name, seed, **params), shared across sessions (raises ValueError)."""
    return _task(name, int(seed), json.dumps(params or {}, sort_keys=True))
