"""kernelscope app entry point: ``streamlit run app/main.py`` (from the repository root).

The entry point is the frame around every page: it sets up the page, the sidebar (device, torch threads,
loaded models) and the navigation; each page in app/views/ is a short script over sgconv_core and analysis.

Links can preload pretrained checkpoints (by file name or stem, from the pretrained folder) and open a page
directly: ``http://localhost:8501/kernels?model=digits-sgconv&model=digits-s4d``; ``&path=/data/x.ckpt`` loads a
file by its path on this machine. Every page writes its loaded models back into its URL that way, so a reload
(F5) or a copied link keeps them (uploads excepted).

Cold start: this file is both the script each session runs (``__name__ == "__main__"``: the frame, `_frame`) and,
for ``streamlit run``, the module that holds the server's ``st.App`` (``app`` below). Streamlit finds that
assignment in the source and imports this file once, as the module ``main``, when the server starts; that import
starts the warm-up (app/store/runtime.py), so torch and the app's modules are imported while the server starts
and the browser loads the page, before the first session's script run. The server, the pages, links, reloads and
AppTest are as with a plain script.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

# `streamlit run app/main.py` puts app/ on sys.path, not the repository root that holds the `app` package the
# pages import from; the pages always run from here (st.navigation below), after this line.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # takes effect if torch is not imported yet

from app.store import runtime  # noqa: E402  (imports nothing heavy)

# First thing: the warm-up thread (runtime.py: pandas and plotly, torch and the loader, then the app's modules)
# starts, at server start under `streamlit run`, else (AppTest) at the first script run.
runtime.warm_up()

import streamlit as st  # noqa: E402


def _frame() -> None:
    """One script run of a session: page setup, navigation, the link's models, the sidebar, then the page."""
    st.set_page_config(page_title="kernelscope", page_icon=":material/waves:", layout="wide")
    prefetch = runtime.prefetch_plotly()  # first: the browser's plotly.js then loads while the rest runs
    with runtime.script_run():  # after the warm-up's imports in progress (runtime.py: they never overlap a run)
        _run(prefetch)


def _run(prefetch) -> None:
    from app import state, ui
    from app.store import link

    # The page scripts live in app/views/, not app/pages/: a pages/ folder beside the main script switches on
    # Streamlit's older folder-based navigation, which runs a page on its own (without this frame) when a link is
    # a fresh server's first request. The URL of a page is its file name: /kernels, /decay, ... (Models is /).
    pages = [
        st.Page("views/models.py", title="Models", icon=":material/folder_open:", default=True),
        st.Page("views/kernels.py", title="Kernels", icon=":material/show_chart:"),
        st.Page("views/decay.py", title="Decay", icon=":material/trending_down:"),
        st.Page("views/frequency.py", title="Frequency", icon=":material/graphic_eq:"),
        st.Page("views/parameters.py", title="Parameters", icon=":material/functions:"),
        st.Page("views/principles.py", title="Principles", icon=":material/gavel:"),
        st.Page("views/attribution.py", title="Attribution", icon=":material/target:"),
        st.Page("views/ablation.py", title="Ablation", icon=":material/content_cut:"),
        st.Page("views/interventions.py", title="Interventions", icon=":material/healing:"),
    ]

    page = st.navigation(pages)
    # A link may name models to load: .../kernels?model=digits-sgconv&model=digits-s4d (pretrained), &path=/x.ckpt
    for message in state.load_from_query(st.query_params.get_all("model"), st.query_params.get_all("path")):
        st.error(message, icon=":material/error:")
    # The sidebar's Runtime / Loaded-models block is drawn before the page runs, so that a page that stops early
    # (st.stop(): "load a model first") has it too; nothing can be drawn after st.stop().
    sidebar = st.sidebar.empty()
    ui.sidebar(sidebar)
    shown = list(state.models())
    state.write_link()
    link.begin_run()
    try:
        page.run()
    except Exception as exc:  # noqa: BLE001 - a last guard: a readable message instead of a traceback on the page
        ui.page_failed(page.title, exc)
    # reached when the page did not stop: the sidebar lists what it loaded, the URL names it (F5, copied links)
    if prefetch is not None:
        prefetch.empty()
    if list(state.models()) != shown:
        ui.sidebar(sidebar)
    state.write_link()
    link.drop_unused()  # the choices of the page before a page switch
    runtime.first_page_done()


if __name__ == "__main__":  # a session's script run (Streamlit runs this file as __main__ on every rerun)
    _frame()
elif hasattr(st, "App"):  # `streamlit run app/main.py` imports this file once at server start (see the docstring)
    app = st.App(__file__, lifespan=runtime.serving)  # a Streamlit without st.App: a plain script, warmed at its first run
