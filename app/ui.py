"""Widgets and layout pieces shared by the pages: sidebar, 'no model loaded' notice, figure + CSV download."""
from __future__ import annotations

import re

import pandas as pd
import streamlit as st

from app import state
from app.store import link
from sgconv_core.lengths import APP_MAX_KERNEL_VALUES, app_max_length


#: Plotly toolbar: keep the PNG download ("toImage") and name the file after the figure.
def plotly_config(name: str) -> dict:
    return {"displaylogo": False, "toImageButtonOptions": {"format": "png", "filename": slug(name), "scale": 2}}


def slug(text: str) -> str:
    """A file-name-safe version of a label."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_") or "data"


#: Start of the message `page_failed` shows (the tests look for it).
PAGE_FAILED = "could not finish"


_MD_SPECIAL = "\\`*[]<>~$|"


def plain(text) -> str:
    """``text`` (a message that may quote key names or card text from a file) made safe to show in
    st.error / st.warning, which render Markdown: Markdown characters are backslash-escaped, so they show as
    typed (an underscore inside a word, as in file names, cannot start emphasis and is left as is; # - + only
    at the start), and control characters are shown escaped."""
    text = str(text)
    out = []
    for i, c in enumerate(text):
        if not c.isprintable():
            out.append(repr(c)[1:-1])
        elif (c in _MD_SPECIAL or (c in "#-+" and i == 0)
              or (c == "_" and not (0 < i < len(text) - 1 and text[i - 1].isalnum() and text[i + 1].isalnum()))):
            out.append("\\" + c)
        else:
            out.append(c)
    return "".join(out)


def page_failed(title: str, exc: BaseException) -> None:
    """Show an unexpected error of a page as one readable line (the traceback goes to the server's log only);
    the session goes on: the other pages and the next action work."""
    import logging

    logging.getLogger("kernelscope.app").error("page %s failed", title, exc_info=exc)
    detail = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    if isinstance(exc, MemoryError):
        msg = "not enough memory for this setting; choose a shorter length L or fewer channels"
    else:
        msg = f"{type(exc).__name__}" + (f": {plain(detail)}" if detail else "")
    st.error(f"The {title} page {PAGE_FAILED} ({msg}). Change the settings above or load another model; the "
             "details are in the server's log.", icon=":material/error:")


def sidebar(slot=None) -> None:
    """Device, torch threads and the loaded models, on every page. app/main.py draws it into a sidebar
    placeholder (``slot``, an ``st.sidebar.empty()``) before the page runs, so that a page that stops early still
    has it, and again after the page if the page changed the loaded models."""
    with (slot.container() if slot is not None else st.sidebar):
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
        st.page_link("views/models.py", label="Go to the Models page", icon=":material/folder_open:")
        st.stop()
    return loaded


def pick_models(loaded: dict, key: str, max_n: int = state.MAX_COMPARE, label: str = "Models") -> list[str]:
    """Multiselect of up to max_n loaded models (default: the first max_n), linked to ``?pick=``."""
    names = list(loaded)
    if len(names) == 1:
        return names
    default = names[:max_n]
    first, note = link.initial("pick", key, default, link.parse_names(names, max_n))
    chosen = st.multiselect(label, names, default=first, max_selections=max_n, key=key,
                            help=f"Up to {max_n} models at once.")
    _note(st, note)
    link.remember("pick", None if chosen == default else chosen)
    if not chosen:
        st.info("Choose at least one model.")
        st.stop()
    return chosen


def show_figure(fig, data: pd.DataFrame | None, name: str, key: str) -> None:
    """A plotly figure with the toolbar (PNG download) and its data as a CSV download button."""
    # theme=None: our figures carry their own styling (analysis.figures); Streamlit's theme layer costs ~70 ms of
    # browser time per interaction with two charts (0.23 -> 0.16 s for a bare two-chart page on this machine).
    st.plotly_chart(fig, key=f"{key}-chart", config=plotly_config(name), theme=None)
    if data is not None and len(data):
        csv_download("Download data (CSV)", data, f"{slug(name)}.csv", key=f"{key}-csv")


def csv_download(label: str, table: pd.DataFrame, file_name: str, key: str) -> None:
    """A download button for a table as CSV. The CSV is written only when the button is clicked (a callable
    ``data``), not on every rerun: a channel x lag heatmap is 65k rows."""
    st.download_button(label, lambda: table.to_csv(index=False).encode(), file_name=file_name, mime="text/csv",
                       key=key, icon=":material/download:")


def per_layer_table(names: list[str], loaded: dict, lengths: dict, columns: dict[str, str], optional: str,
                    file_name: str, key: str, column_config: dict | None = None) -> pd.DataFrame:
    """One row per (model, layer) from `state.analysis`: model, layer, L, channels, then ``columns`` (shown name
    -> column of layers.csv, i.e. a key of `analysis.records.LayerStats.row`). The ``optional`` column (an SSM-only value) is dropped when no model has
    it. Shown with a CSV download; returns the table."""
    rows = []
    for n in names:
        for stats in state.analysis(loaded[n], lengths[n]).layers:
            r = stats.row()  # the layers.csv columns
            rows.append({"model": n, "layer": stats.layer, "L": lengths[n], "channels": stats.n_channels,
                         **{c: r.get(k) for c, k in columns.items()}})
    table = pd.DataFrame(rows)
    if optional in table and table[optional].isna().all():
        table = table.drop(columns=[optional])
    st.dataframe(_shown(table, column_config), hide_index=True)
    csv_download("Download table (CSV)", table, file_name, key=key)
    return table


def _shown(table: pd.DataFrame, column_config: dict | None) -> pd.DataFrame:
    """The table as shown: missing values as "–" and numbers in the column configs' printf formats (``'%.3f'``),
    through `app.figures.format_table` (Streamlit itself would show None as 'None'); counts stay numbers."""
    from app import figures

    formats = {}
    for col, cfg in (column_config or {}).items():
        fmt = ((cfg or {}).get("type_config") or {}).get("format") if isinstance(cfg, dict) else None
        if isinstance(fmt, str) and re.fullmatch(r"%[.\d]*[dfeEgG]", fmt):
            formats[col] = "{:" + fmt[1:] + "}"
    keep = [c for c in ("L", "channels") if c in table]
    return figures.format_table(table, formats=formats, keep=keep)


def _note(container, note: str | None) -> None:
    """The small note of a link value that was not used (see `app.store.link.initial`)."""
    if note:
        container.caption(plain(note))


def length_controls(cks: dict, key: str, own_col=None, value_col=None) -> dict[str, int]:
    """'Each model at its l_max' (default) or one length L for all: {model name: L}. The length box is capped by
    the length policy (`sgconv_core.lengths.app_max_length` of the widest model). Linked to ``?L=``: present when
    one length is chosen for all."""
    own_col = own_col or st
    value_col = value_col or st
    l_maxes = {n: ck.default_length for n, ck in cks.items()}
    max_L = app_max_length(max(ck.d_model * ck.kernel_channels for ck in cks.values()))
    L_default = min(max(l_maxes.values()), max_L)
    L_link, note = link.initial("L", f"{key}-own-L", None, link.parse_int(8, max_L))
    own = own_col.checkbox("Each model at its l_max", value=L_link is None, key=f"{key}-own-L",
                           help="The length each model was built for; untick to choose one length for all.")
    _note(own_col, note)
    if own:
        link.remember("L", None)
        value_col.markdown("**L:** " + ", ".join(f"{v:,}" for v in dict.fromkeys(l_maxes.values())))
        return l_maxes
    first, note = link.initial("L", f"{key}-L", L_link or L_default, link.parse_int(8, max_L))
    L = int(value_col.number_input("Length L (taps)", min_value=8, max_value=max_L, value=first, step=256,
                                   key=f"{key}-L",
                                   help=f"At most {max_L:,} taps for these models (about "
                                        f"{APP_MAX_KERNEL_VALUES * 8 >> 20:,} MB of float64 kernel per layer)."))
    _note(value_col, note)
    link.remember("L", [str(L)])
    return {n: L for n in cks}


def features(container, label: str, H: int, default: list[int], key: str, param: str = "h", **kw) -> list[int]:
    """Multiselect of features h in 0..H-1, linked to ``?h=`` (repeated, or 'h=0,3')."""
    first, note = link.initial(param, key, default, link.parse_int_list(0, H - 1))
    hs = container.multiselect(label, list(range(H)), default=first, key=key, **kw)
    _note(container, note)
    link.remember(param, None if hs == default else [",".join(str(h) for h in hs)] if hs else ["none"])
    return hs


def layer_features_length(cks: dict, key: str, features_help: str | None = None) -> tuple[int, list[int], dict]:
    """The Decay / Frequency pages' control row: layer, features h (multi-select over the narrowest model),
    and the length controls. Returns (layer index, [h, ...], {model name: L})."""
    c1, c2, c3, c4 = st.columns([1, 2, 1.2, 1.4])
    layer = layer_select(cks, f"{key}-layer", c1)
    H_min = min(ck.d_model for ck in cks.values())
    hs = features(c2, "Features h", H_min, [0], f"{key}-hs", help=features_help)
    return layer, hs, length_controls(cks, key, c3, c4)


def layer_select(cks: dict, key: str, container=None) -> int:
    """Layer index (over the deepest of the chosen models), linked to ``?layer=`` (1 or layers.1)."""
    container = container or st
    n_layers = max(len(ck.kernels) for ck in cks.values())
    first, note = link.initial("layer", key, 0, link.parse_int(0, n_layers - 1, prefix="layers."))
    layer = container.selectbox("Layer", list(range(n_layers)), index=first, format_func=lambda i: f"layers.{i}",
                                key=key)
    _note(container, note)
    link.remember("layer", None if layer == 0 else [str(layer)])
    return layer


def radio(container, label: str, options: list[str], key: str, param: str, index: int = 0, **kw) -> str:
    """st.radio linked to ``?param=<first word of the option>`` (e.g. axes=log-log)."""
    container = container or st
    tokens = link.option_tokens(options)
    first, note = link.initial(param, key, options[index], link.parse_option(options, tokens))
    value = container.radio(label, options, index=options.index(first), key=key, **kw)
    _note(container, note)
    link.remember(param, None if value == options[index] else [tokens[options.index(value)]])
    return value


def switch(container, label: str, key: str, param: str, value: bool = False, kind: str = "toggle", **kw) -> bool:
    """st.toggle (or st.checkbox, ``kind='checkbox'``) linked to ``?param=1`` / ``?param=0``."""
    container = container or st
    first, note = link.initial(param, key, value, link.parse_bool)
    widget = container.checkbox if kind == "checkbox" else container.toggle
    on = widget(label, value=first, key=key, **kw)
    _note(container, note)
    link.remember(param, None if on == value else ["1" if on else "0"])
    return on


def number(container, label: str, lo: int, hi: int, value: int, key: str, param: str, **kw) -> int:
    """A whole-number st.number_input in [lo, hi] linked to ``?param=``."""
    container = container or st
    first, note = link.initial(param, key, value, link.parse_int(lo, hi))
    v = int(container.number_input(label, lo, hi, first, key=key, **kw))
    _note(container, note)
    link.remember(param, None if v == value else [str(v)])
    return v


def table(df: pd.DataFrame, max_rows: int = 16, **kw) -> None:
    """st.dataframe tall enough to show up to max_rows rows without an inner scrollbar."""
    height = 35 * (min(len(df), max_rows) + 1) + 3
    st.dataframe(df, hide_index=True, height=height, **kw)


#: Card fields shown first (in this order) in card tables; other scalar fields follow, nested ones are left out.
CARD_FIRST = ("task", "family", "metric", "test_value", "val_value", "baseline", "kernel_params", "total_params",
              "steps", "wall_time_s", "device", "date")


#: The column that shows a card's test value with its 95 % interval and n (`sgconv_core.zoo_table.format_test_value`).
TEST_VALUE_COLUMN = "test value [95 % CI] (n)"


def card_row(card: dict) -> dict:
    """A model card flattened for a table: the main fields first (the test value as "value [low, high] (n)",
    accuracy in % here and in val_value / baseline), task_params compact, nested dicts dropped."""
    from sgconv_core.zoo_table import format_metric, format_test_value

    row = {}
    for key in CARD_FIRST:
        if key == "test_value" and key in card:
            row[TEST_VALUE_COLUMN] = format_test_value(card)
        elif key in ("val_value", "baseline") and isinstance(card.get(key), (int, float)):
            row[key] = format_metric(card.get("metric"), card[key])  # accuracy in %, like the test value
        elif key in card:
            row[key] = card[key]
    if isinstance(card.get("task_params"), dict):
        row["task_params"] = ", ".join(f"{k}={v}" for k, v in card["task_params"].items())
    for key, v in card.items():
        if key not in row and key not in ("task_params", "test_value", "test_n") and (
                v is None or isinstance(v, (int, float, str, bool))):
            row[key] = v
    return row
