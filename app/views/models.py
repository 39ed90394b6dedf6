"""Models: load checkpoints (pretrained folder, upload, path on disk) and see what was detected in them."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from analysis.extract import kernel_table
from app import state, ui
from app.store.files import check_readable_path, clean_uploads, mark_uploads_in_use
from app.store.settings import SETTINGS_BOX, app_wording
from app.store.sweep import session_id

st.title("Models")
loaded = state.models()
if not loaded:
    st.markdown(
        "**kernelscope** shows what SGConv, S4 and S4D long-convolution models learned: their kernels, how fast "
        "they decay, their frequency responses, parameter scaling, and which inputs an output depends on.  \n"
        "**Start here:** load one or more checkpoints below (from the pretrained folder, by upload, or by a "
        "path on disk), then open the other pages in the sidebar."
    )


def report(result: state.LoadResult) -> None:
    """Show the outcome of one load and register the model."""
    for note in result.notes:
        st.info(ui.plain(app_wording(note)), icon=":material/info:")
    if not result.ok:
        st.error(ui.plain(app_wording(result.error)), icon=":material/error:")
        return
    name, added = state.add_model(result.entry)
    if added:
        st.success(f"Loaded **{ui.plain(name)}**.", icon=":material/check_circle:")
    else:
        st.info(f"**{ui.plain(name)}** is already loaded (same file and settings).", icon=":material/info:")


def uploads_in_this_session() -> list[str]:
    return [e.path for e in state.models().values() if e.source == "upload"]


# ---------------------------------------------------------------------------------------------------- settings
with st.expander(f"{SETTINGS_BOX} (official SGConv / state-spaces checkpoints)"):
    st.caption("Leave at *from the file* unless the official code was run with a non-default value. "
               "kernelscope's own .safetensors files hold every setting and ignore these.")
    cols = st.columns(4)
    chosen = {}
    for i, (key, (choices, help_)) in enumerate(state.SETTINGS_CHOICES.items()):
        with cols[i % 4]:
            chosen[key] = st.selectbox(key, [None, *choices], key=f"setting-{key}", help=help_,
                                       format_func=lambda v: "from the file" if v is None else str(v))
    extra = st.text_input("Other settings", key="setting-extra", placeholder="e.g. decay_min=1, decay_max=3",
                          help="key=value pairs separated by commas, or a JSON object; passed to the loader.")
settings = state.clean_settings(chosen)
try:
    settings.update(state.parse_extra_settings(extra))
except ValueError as e:
    st.error(str(e), icon=":material/error:")

# ---------------------------------------------------------------------------------------------------- sources
tab_pre, tab_up, tab_path = st.tabs(["Pretrained", "Upload a file", "Path on disk"])

with tab_pre:
    folder = state.pretrained_dir()
    files = state.list_pretrained(folder)
    if not files:
        st.info(f"No checkpoints in the pretrained folder `{folder}` (set ${state.PRETRAINED_ENV} to use "
                "another folder). Upload a file or give a path instead.", icon=":material/info:")
    else:
        rows = [{"file": f.name, **ui.card_row(state.read_card(f))} for f in files]
        st.caption(f"Checkpoints in `{folder}` and their model cards")
        ui.table(pd.DataFrame(rows), max_rows=12)
        picked = st.multiselect("Checkpoints to load", [f.name for f in files], key="pretrained-pick")
        if st.button("Load selected", key="pretrained-load", type="primary", disabled=not picked):
            for fname in picked:
                report(state.load_path(folder / fname, settings, source="pretrained"))

with tab_up:
    uploads = st.file_uploader("Checkpoint files", type=[e.lstrip(".") for e in state.EXTENSIONS],
                               accept_multiple_files=True, key="upload",
                               help="kernelscope .safetensors, or torch files (.ckpt/.pt/.pth) from the official "
                                    "SGConv or state-spaces code. Files are read without running any code in them.")
    st.caption("Uploaded models are not kept in the page's link: after a reload (F5), upload them again.")
    # Each uploaded file is loaded once; its outcome stays on show while the file is in the uploader.
    seen = st.session_state.setdefault("ks_uploads_seen", {})
    stored_new = False
    for up in uploads or []:
        if up.file_id not in seen:
            seen[up.file_id] = state.load_upload(up.getvalue(), up.name, settings)
            report(seen[up.file_id])
            stored_new = True
        else:
            result = seen[up.file_id]
            if result.ok:
                st.success(f"{ui.plain(up.name)}: loaded.", icon=":material/check_circle:")
            else:
                st.error(ui.plain(app_wording(result.error)), icon=":material/error:")
    if stored_new:  # keep the upload folder within its size and age (never a file a live session has loaded)
        mark_uploads_in_use(session_id(), uploads_in_this_session())
        try:
            clean_uploads()
        except ValueError as e:
            st.warning(ui.plain(f"Uploads are not cleaned up: {e}"), icon=":material/warning:")

with tab_path:
    with st.form("path-form", border=False):
        path = st.text_input("Path of a checkpoint file on this machine", key="path-input",
                             placeholder="/path/to/model.safetensors")
        submitted = st.form_submit_button("Load", type="primary")
    if submitted:
        try:
            target = check_readable_path(path)
        except ValueError as e:  # empty, or outside the folders this server may read ($KERNELSCOPE_ALLOWED_DIRS)
            st.error(ui.plain(str(e)), icon=":material/error:")
        else:
            report(state.load_path(target, settings, source="path"))

# ---------------------------------------------------------------------------------------------------- loaded
loaded = state.models()
st.header(f"Loaded models ({len(loaded)})")
if not loaded:
    st.caption("Nothing loaded yet.")
for name, entry in list(loaded.items()):
    try:
        ck = state.checkpoint(entry)
    except Exception as e:  # noqa: BLE001 - e.g. the file was removed since it was loaded
        st.error(ui.plain(f"{name}: could not be reloaded from {entry.path} ({type(e).__name__}: {e})."))
        if st.button("Remove", key=f"remove-{name}"):
            state.remove_model(name)
            st.rerun()
        continue
    with st.container(border=True):
        head, button = st.columns([6, 1], vertical_alignment="center")
        head.subheader(name, anchor=False)
        if button.button("Remove", key=f"remove-{name}", icon=":material/delete:"):
            state.remove_model(name)
            st.rerun()
        summary = ck.summary()
        detected = {
            "family": summary["family"], "layout": summary["layout"], "layers": summary["layers"],
            "H (d_model)": summary["H"], "C (channels)": summary["channels"],
            "bidirectional": summary["bidirectional"], "l_max": summary["l_max"],
        }
        for key in ("d_state", "kernel_dim", "n_scales", "mode", "disc", "n_ssm"):
            if key in summary:
                detected[("N (d_state)" if key == "d_state" else key)] = summary[key]
        detected["kernel parameters"] = f"{summary['kernel_params']:,}"
        detected["total parameters"] = f"{summary['total_params']:,}"
        detected["runnable model"] = summary["runnable"]
        detected["file"] = entry.path
        if entry.settings:
            detected["settings given"] = entry.settings_json
        left, right = st.columns(2)
        with left:
            st.caption("Detected")
            ui.table(pd.DataFrame({"field": list(detected), "value": [str(v) for v in detected.values()]}),
                     max_rows=20)
        with right:
            st.caption("Model card")
            if ck.card:
                card = ui.card_row(ck.card)
                ui.table(pd.DataFrame({"field": list(card), "value": [str(v) for v in card.values()]}), max_rows=20)
            else:
                st.markdown("_no card in this file (foreign checkpoints have none)_")
        if ck.warnings:
            st.caption("Assumed, not read from the file:")
        for w in ck.warnings:
            st.warning(ui.plain(app_wording(w)), icon=":material/warning:")
        with st.expander("Per layer"):
            ui.table(pd.DataFrame(kernel_table(ck)))
        if ck.card:
            with st.expander("Full model card (JSON)"):
                st.json(ck.card, expanded=False)

# the server keeps the upload files this session has loaded (clean_uploads never removes them)
mark_uploads_in_use(session_id(), uploads_in_this_session())
