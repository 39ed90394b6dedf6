"""The models this browser session has loaded: `ModelEntry` records by display name in ``st.session_state``.

Per session, not a cache: the Checkpoint objects themselves are in `app.store.loading`'s shared cache.
"""
from __future__ import annotations

import streamlit as st

from app.store.loading import ModelEntry

MAX_COMPARE = 4  # models shown side by side / overlaid at once
_SESSION_KEY = "ks_models"


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
