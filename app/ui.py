"""Widgets and layout pieces shared by the pages: sidebar, 'no model loaded' notice, figure + CSV download."""
from __future__ import annotations

import re

import pandas as pd
import streamlit as st

from app import state

#: Plotly toolbar: keep the PNG download ("toImage") and name the file after the figure.
def plotly_config(name: str) -> dict:
    return {"displaylogo": False, "toImageButtonOptions": {"format": "png", "filename": slug(name), "scale": 2}}


def slug(text: str) -> str:
    """A file-name-safe version of a label."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_") or "data"


def sidebar() -> None:
    """Device, torch threads and the loaded models, on every page."""
    with st.sidebar:
        st.caption("Runtime")
        st.markdown(f"**Device:** {state.device_label()}  \n**Torch threads:** {state.torch_threads()}")
        loaded = state.models()
        st.caption(f"Loaded models ({len(loaded)})")
        if not loaded:
            st.markdown("_none yet — load one on the Models page_")
        for name, entry in loaded.items():
            st.markdown(f"- `{name}`" + ("" if entry.source == "pretrained" else f" <small>({entry.source})</small>"),
                        unsafe_allow_html=True)


def require_models(what: str = "this page") -> dict:
    """The loaded models; with none, a notice pointing to the Models page and the page stops there."""
    loaded = state.models()
    if not loaded:
        st.info(f"No model is loaded yet: load a model on the Models page to see {what}.",
                icon=":material/info:")
        st.page_link("pages/models.py", label="Go to the Models page", icon=":material/folder_open:")
        st.stop()
    return loaded


def pick_models(loaded: dict, key: str, max_n: int = state.MAX_COMPARE, label: str = "Models") -> list[str]:
    """Multiselect of up to max_n loaded models (default: the first max_n)."""
    names = list(loaded)
    if len(names) == 1:
        return names
    chosen = st.multiselect(label, names, default=names[:max_n], max_selections=max_n, key=key,
                            help=f"Up to {max_n} models at once.")
    if not chosen:
        st.info("Choose at least one model.")
        st.stop()
    return chosen


def show_figure(fig, data: pd.DataFrame | None, name: str, key: str) -> None:
    """A plotly figure with the toolbar (PNG download) and its data as a CSV download button."""
    st.plotly_chart(fig, key=f"{key}-chart", config=plotly_config(name))
    if data is not None and len(data):
        st.download_button("Download data (CSV)", data.to_csv(index=False).encode(), file_name=f"{slug(name)}.csv",
                           mime="text/csv", key=f"{key}-csv", icon=":material/download:")


def fmt(v, digits: int = 3) -> str:
    """Numbers for tables: compact, NaN as an em dash."""
    try:
        if v != v:  # NaN
            return "—"
    except TypeError:
        return str(v)
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)
