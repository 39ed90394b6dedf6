"""The analysis caches, shared by every page and browser session (the heavy modules are imported on first use).

    kernel_layer(entry, L, i)  st.cache_resource keyed by (content hash, settings JSON, L, layer): one layer's
                               kernel, float32 above FLOAT32_ABOVE taps (what the pages draw; read-only)
    kernels(entry, L)          st.cache_resource keyed by (content hash, settings JSON, L): every layer's kernel
                               (read-only float64 arrays; a resource cache so a layer switch does not copy tens of MB)
    analysis(entry, L)         st.cache_data keyed by (content hash, settings JSON, L): the report's records
                               (`analysis.records.Report` without the kernel arrays)
    fit_curve_rows(entry, ...) st.cache_data keyed by (content hash, settings JSON, L, layer, c, h, m, mode, dims)
    task_for(name, seed, ...)  st.cache_resource keyed by (task name, seed, parameters JSON): generated tasks
    intervention(entry, ...)   st.cache_data keyed by (content hash, settings JSON, kind, values, layer, data file
                               and its hash, n, seed): `analysis.intervene.intervene` records
    verdict(entry, L)          st.cache_data keyed by (content hash, settings JSON, L): `analysis.verdict.verdict`

The ``_entry`` arguments are not hashed (leading underscore): the key's hash and settings identify the model.
"""
from __future__ import annotations

import json

import numpy as np
import streamlit as st

from app.store.loading import ModelEntry, checkpoint

#: Above this many taps `kernel_layer` keeps kernels in float32 (at most 2^26 values, 256 MB, a layer; float64
#: would be 512 MB). Why float32 loses nothing the pages show: an SGConv (or free) kernel is computed in the model's
#: own float32, so the float32 array is exactly what the model convolves with; an S4 / S4D kernel is evaluated
#: from a float64 copy of its state (the accuracy of the float64 evaluation) and rounded once, a relative error
#: <= 6e-8 per tap, far below anything a plot, an envelope or a fit resolves. At or below it, float64 (cheap there).
FLOAT32_ABOVE = 65_536


@st.cache_resource(show_spinner=False, max_entries=8)
def _kernel_layer(digest: str, skey: str, L: int, layer: int, _entry: ModelEntry) -> tuple[str, np.ndarray]:
    from analysis.extract import extract_kernels

    dtype = "float32" if L > FLOAT32_ABOVE else "float64"
    ((name, K),) = extract_kernels(checkpoint(_entry), L, layers=[layer], dtype=dtype).items()
    return name, K


def kernel_layer(entry: ModelEntry, L: int, layer: int) -> tuple[str, np.ndarray]:
    """(name, K): layer ``layer``'s kernel at length L, K (C_k, H, L) read-only, float64 for L <= FLOAT32_ABOVE
    and float32 above it (see FLOAT32_ABOVE); only this layer is computed (analysis.extract layers=).

    Cached by (file content hash, settings, L, layer) for every session (a resource cache: no copy per read; at
    most 8 layers, each at most 2^26 values by the app's length policy). Raises CheckpointError (a ValueError)
    for a length the kernel refuses, ValueError for a layer the model does not have."""
    return _kernel_layer(entry.digest, entry.settings_json, int(L), int(layer), _entry=entry)


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

    _, K = kernel_layer(_entry, L, layer)
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


def card_task(card: dict):
    """The task a model card was trained on, exactly (`sgconv_core.tasks.task_params_from_card`: the card's full
    parameters, so a card keeps its task when defaults change), shared across sessions (raises ValueError)."""
    from sgconv_core.tasks import task_params_from_card

    return task_for(card.get("task"), int(card.get("task_seed", 0)), task_params_from_card(card))


@st.cache_data(show_spinner=False, max_entries=64)
def _intervention(digest: str, skey: str, kind: str, values, layer, data, data_digest, n, seed: int,
                  _entry: ModelEntry, _progress=None) -> dict:
    from analysis.intervene import intervene

    return intervene(checkpoint(_entry), kind, None if values is None else list(values), layer, data, n, seed,
                     progress=_progress)


def intervention(entry: ModelEntry, kind: str, values=None, layer=None, data: str | None = None, n=None,
                 seed: int = 1, progress=None) -> dict:
    """`analysis.intervene.intervene(checkpoint, kind, values, layer, data, n, seed)`: the record (a dict with
    lists aligned with its values), cached by (content hash, settings, kind, values, layer, data file path and
    content hash, n, seed) for every session. Raises what intervene raises (ValueError / CheckpointError naming
    the problem); errors are not cached.

    progress: optional callable(done, total), called in the caller's thread (e.g. to move an st.progress bar).
    The record is computed in a worker thread: st.cache_data records every st element call made inside a cached
    function to replay it on a hit, and a progress bar drawn before the call could not be replayed."""
    import queue
    import threading

    key = (entry.digest, entry.settings_json, str(kind), None if values is None else tuple(float(v) for v in values),
           None if layer is None else str(layer), None if data is None else str(data),
           None if data is None else _data_digest(data), None if n is None else int(n), int(seed))
    if progress is None:
        return _intervention(*key, _entry=entry)
    steps: queue.Queue = queue.Queue()
    out: dict = {}

    def work():
        try:
            out["record"] = _intervention(*key, _entry=entry, _progress=lambda d, t: steps.put((d, t)))
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            out["error"] = e
        finally:
            steps.put(None)

    from streamlit.runtime.scriptrunner import add_script_run_ctx, get_script_run_ctx

    worker = threading.Thread(target=work, name="kernelscope-intervention", daemon=True)
    add_script_run_ctx(worker, get_script_run_ctx(suppress_warning=True))  # the cache knows its session
    worker.start()
    while (step := steps.get()) is not None:
        progress(*step)
    worker.join()
    if "error" in out:
        raise out["error"]
    return out["record"]


def _data_digest(path: str) -> str:
    """The data file's content hash (a missing file: '' - intervene then names the problem)."""
    from app.store.files import file_digest

    try:
        return file_digest(path)
    except OSError:
        return ""


@st.cache_data(show_spinner=False, max_entries=32)
def _verdict(digest: str, skey: str, L: int, _entry: ModelEntry):
    from analysis.verdict import verdict as verdict_of

    return verdict_of(checkpoint(_entry), L)


def verdict(entry: ModelEntry, L: int):
    """`analysis.verdict.verdict(checkpoint, L)`: the model's `Verdict` on the two principles (per layer rows and
    one sentence per principle), cached by (content hash, settings, L) for every session. Raises what verdict
    raises (ValueError / CheckpointError naming the problem)."""
    return _verdict(entry.digest, entry.settings_json, int(L), _entry=entry)
