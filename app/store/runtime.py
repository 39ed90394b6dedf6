"""Where models run: the device, torch's thread count, and the warm-up thread that imports the heavy modules.

torch is imported inside each function, never at module import. No cache: `warm_up` runs once per process.

Cold start (``streamlit run app/main.py``): Streamlit imports app/main.py once as a module when the server starts,
because it holds an ``st.App`` (see app/main.py), and main.py calls `warm_up` then. The warm-up thread imports, in
this order:

1. `FIRST` (torch, the loader, the kernel extraction) at once: about a second, while the server starts and the
   browser loads the page;
2. `PAGES` (the app's own modules, pandas, plotly, the Kernels page's figures) once Streamlit's runtime exists
   (`serving`, the st.App's lifespan; or at once inside a script run): their ``st.cache_*`` decorators want it;
3. `LATER` (scipy through analysis.frequency, the report's measures) a few seconds after a first page has run
   (`first_page_done`), so that they do not compete with that page (nor the browser drawing it) for the CPU.

So the first script run imports nothing heavy itself. A failed import is left to the page that needs it (which
reports it); the warm-up only imports.
"""
from __future__ import annotations

import threading
import time
from contextlib import asynccontextmanager, contextmanager

_warmed = False


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


#: What the first script run draws with before anything else (`prefetch_plotly`): imported first.
BASICS = ("pandas", "plotly.graph_objects")
#: What every model page needs before its first plot and that does not touch Streamlit.
FIRST = ("torch", "sgconv_core", "sgconv_core.checkpoints", "analysis.extract")
#: The app's own modules and what the first page draws with, imported once Streamlit's runtime exists.
PAGES = ("app.state", "app.ui", "app.figures", "analysis.figures", "analysis.decay")
#: What only the other pages add, imported `LATER_DELAY_S` seconds after the first page ran.
LATER = ("analysis.frequency", "analysis.measure")
LATER_DELAY_S = 3.0
_runtime_ready = threading.Event()
_first_page = threading.Event()
_basics = threading.Event()
# Imports and script runs never overlap: a module another thread is importing sits half-made in sys.modules, and
# libraries that look there for optional modules (plotly for pandas: "partially initialized module 'pandas' has no
# attribute 'Series'") take it as it is. The warm-up imports a group only while no script run is active
# (`script_run`); a script run starts only while the warm-up imports nothing.
_turn = threading.Condition()
_active_runs = 0
_importing = False


def _import(names) -> None:
    import importlib

    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a warm-up only; the pages import (and report) for themselves
            pass


def _import_group(names, wait_s: float) -> None:
    """Import ``names`` once no script run is active (waits at most ``wait_s`` for that, then gives up)."""
    global _importing
    with _turn:
        if not _turn.wait_for(lambda: _active_runs == 0, timeout=wait_s):
            return
        _importing = True
    try:
        _import(names)
    finally:
        with _turn:
            _importing = False
            _turn.notify_all()


def _import_all(basics=BASICS, first=FIRST, pages=PAGES, later=LATER, wait_s: float = 60.0) -> None:
    try:
        _import_group(basics, wait_s)
    finally:
        _basics.set()
    _import_group(first, wait_s)
    if _runtime_ready.wait(wait_s):
        _import_group(pages, wait_s)
    # the later modules would compete with the first page's own work for the CPU: the script's, then the browser's
    # (plotly.js and the first render take it about a second after the script run ends)
    _first_page.wait(wait_s)
    time.sleep(LATER_DELAY_S)
    _import_group(later, wait_s)


@contextmanager
def script_run(wait_s: float = 120.0):
    """The body of a script run (app/main.py): starts once the warm-up is not importing (at most ``wait_s``
    later: a cold start's first run waits here for torch and the app's modules, which it would import anyway),
    and keeps the warm-up from starting another group until it ends."""
    global _active_runs
    with _turn:
        _turn.wait_for(lambda: not _importing, timeout=wait_s)
        _active_runs += 1
    try:
        yield
    finally:
        with _turn:
            _active_runs -= 1
            _turn.notify_all()


def _in_script_run() -> bool:
    """True inside a Streamlit script run (a session's rerun, or AppTest's), where the runtime's caches exist."""
    try:
        from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx
    except ImportError:  # pragma: no cover - another Streamlit layout
        return False
    return get_script_run_ctx(suppress_warning=True) is not None


def warm_up() -> None:
    """Start the warm-up thread (once per process; see the module docstring for what it imports, when).
    app/main.py calls it first thing: at server start under ``streamlit run``, else at the first script run."""
    global _warmed
    if _in_script_run():
        _runtime_ready.set()
    if _warmed:
        return
    _warmed = True
    threading.Thread(target=_import_all, name="kernelscope-warm-up", daemon=True).start()


@asynccontextmanager
async def serving(_app):
    """The st.App's lifespan (app/main.py): entered once Streamlit's runtime has started, before the first request.

    Lets the warm-up import the app's modules, and opens the browser as a plain ``streamlit run`` does (unless
    ``server.headless``), which Streamlit leaves to the script when it serves an st.App."""
    _runtime_ready.set()
    _open_browser()
    yield None


def _open_browser() -> None:
    """What ``streamlit run`` does at server start for a script (streamlit.web.bootstrap._on_server_start)."""
    try:
        from streamlit import cli_util, config
        from streamlit.web.server import server_util
    except ImportError:  # pragma: no cover - another Streamlit layout
        return
    if config.get_option("server.headless"):
        return
    if config.is_manually_set("browser.serverAddress"):
        addr = config.get_option("browser.serverAddress")
    elif config.is_manually_set("server.address"):
        addr = server_util.get_display_address(config.get_option("server.address"))
    else:
        addr = "localhost"
    cli_util.open_browser(server_util.get_url(addr))


def prefetch_plotly():
    """On a session's first run, draw a tiny blank plotly chart at once and return its placeholder (else None).

    The browser evaluates its plotly.js module (about 0.7 s of its main thread here) only when a first chart
    arrives; sending a blank one first thing lets that overlap the script's own work (the page, the model).
    Runs before `script_run`, while the warm-up may be importing torch: it uses only streamlit, pandas and plotly,
    which the warm-up imports first (`BASICS`). The caller empties the placeholder after the page."""
    import streamlit as st

    if st.session_state.get("ks_plotly_prefetched"):
        return None
    st.session_state["ks_plotly_prefetched"] = True
    if _warmed:
        _basics.wait(30.0)  # pandas and plotly imported whole (see `_turn`); the warm-up goes on with torch
    import plotly.graph_objects as go

    fig = go.Figure(layout={"height": 10, "margin": {"l": 0, "r": 0, "t": 0, "b": 0}, "xaxis": {"visible": False},
                            "yaxis": {"visible": False}, "plot_bgcolor": "rgba(0,0,0,0)",
                            "paper_bgcolor": "rgba(0,0,0,0)"})
    slot = st.empty()
    slot.plotly_chart(fig, key="ks-plotly-prefetch", config={"staticPlot": True, "displayModeBar": False},
                      theme=None)
    if _importing:
        time.sleep(0.05)  # let the server send it before this thread waits for the warm-up (the GIL)
    return slot


def first_page_done() -> None:
    """A page has run: the warm-up thread may import the modules only the other pages need."""
    _first_page.set()
