"""The page link: the loaded models as query parameters (``?model=<pretrained name>``, ``?path=<file>``).

`load_from_query` loads what a link names into the session (once per session and set of names, remembered in
``st.session_state['ks_query_loaded']``); `write_link` keeps ``st.query_params`` equal to the session's models.
No cache of its own: loading goes through `app.store.loading`.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from app.store.files import find_pretrained
from app.store.loading import ModelEntry, load_path
from app.store.session import add_model, models

#: The query parameters a link (and the page's own URL) carries the loaded models in: pretrained names, paths.
LINK_PARAMS = ("model", "path")
_LINK_MAX = 8  # per parameter
_DONE_KEY = "ks_query_loaded"


def _link_values(values) -> list[str]:
    return [str(v).strip() for v in values or [] if str(v).strip()][:_LINK_MAX]


def load_from_query(names, paths=()) -> list[str]:
    """Load the models a link names into the session; returns the errors (messages, never a traceback).

    ``names``: checkpoints of the pretrained folder (``?model=a&model=b``, by stem or file name); ``paths``: files
    on this machine (``?path=/data/x.safetensors``), loaded as the Models page's 'Path on disk' does. Runs once
    per session and set of names and paths, so that removing a model later does not bring it back."""
    names, paths = _link_values(names), _link_values(paths)
    done = st.session_state.setdefault(_DONE_KEY, set())
    key = (tuple(names), tuple(paths))
    if not (names or paths) or key in done:
        return []
    done.add(key)
    return _load_names(names) + _load_paths(paths)


def _load_names(names: list[str]) -> list[str]:
    """Load pretrained checkpoints by name into the session; returns the errors."""
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
    return errors


def _load_paths(paths: list[str]) -> list[str]:
    """Load files on this machine into the session; returns the errors."""
    errors = []
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
