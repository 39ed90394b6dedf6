"""Shared state of the app, as the pages use it: ``from app import state; state.checkpoint(entry)``.

A facade: each concept lives in its own module of :mod:`app.store`, and this module only re-exports them.

    app.store.files     where checkpoints are; headers, cards, safe upload names, content hashes
    app.store.settings  the kernel-settings box (choices, parsing) and the canonical settings key
    app.store.loading   load_path / load_upload -> LoadResult (never raise); the loaded-checkpoint cache
    app.store.session   the session's loaded models (st.session_state)
    app.store.link      the page link (?model= / ?path=): load_from_query, write_link
    app.store.caches    kernels (one layer: kernel_layer), the report's records, fitted curves, generated tasks,
                        kernel interventions (shared by every session)
    app.store.runtime   device, torch threads, the warm-up thread

To replace a function in a test, patch it in the module that defines it (e.g. ``app.store.loading._load_cached``):
the other modules look it up there, not here.
"""
from __future__ import annotations

from app.store.caches import (
    FLOAT32_ABOVE,
    analysis,
    card_task,
    fit_curve_rows,
    intervention,
    kernel_layer,
    kernels,
    task_for,
    verdict,
)
from app.store.files import (
    EXTENSIONS,
    PRETRAINED_ENV,
    REPO_ROOT,
    UPLOADS_ENV,
    file_digest,
    find_pretrained,
    list_pretrained,
    pretrained_dir,
    read_card,
    read_header,
    safe_filename,
    uploads_dir,
)
from app.store.link import LINK_PARAMS, link_params, load_from_query, write_link
from app.store.loading import LoadResult, ModelEntry, checkpoint, load_path, load_upload
from app.store.runtime import compute_device, device_label, torch_threads, warm_up
from app.store.session import MAX_COMPARE, add_model, models, remove_model, unique_name
from app.store.settings import SETTINGS_CHOICES, clean_settings, parse_extra_settings, settings_key

__all__ = [
    "EXTENSIONS", "FLOAT32_ABOVE", "LINK_PARAMS", "MAX_COMPARE", "PRETRAINED_ENV", "REPO_ROOT", "SETTINGS_CHOICES", "UPLOADS_ENV",
    "LoadResult", "ModelEntry", "add_model", "analysis", "card_task", "checkpoint", "clean_settings", "compute_device",
    "device_label", "file_digest", "find_pretrained", "fit_curve_rows", "intervention", "kernel_layer", "kernels", "link_params",
    "list_pretrained", "load_from_query", "load_path", "load_upload", "models", "parse_extra_settings",
    "pretrained_dir", "read_card", "read_header", "remove_model", "safe_filename", "settings_key", "task_for",
    "torch_threads", "unique_name", "uploads_dir", "verdict", "warm_up", "write_link",
]
