"""Kernels: the learned convolution kernels of up to four models, side by side or overlaid."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from analysis import figures as afig
from analysis.decay import envelope, has_builtin_decay, reference_envelopes
from app import figures as fig_
from app import state, ui

st.title("Kernels")
loaded = ui.require_models("kernels")
names = ui.pick_models(loaded, key="k-models")
cks = {n: state.checkpoint(loaded[n]) for n in names}
colors = fig_.model_colors(names) if len(names) > 1 else {}  # one colour per model in every chart of the page

# ---------------------------------------------------------------------------------------------------- controls
c1, c2, c3, c4 = st.columns([1.2, 1, 1.4, 1.2])
layer = ui.layer_select(cks, "k-layer", c1)
view = ui.radio(c2, "Channels", ["one", "several", "all (heatmap)"], key="k-view", param="view")
heatmap = view.startswith("all")
axes = ui.radio(c3, "Axes", ["linear", "log-log (|k|)"], key="k-axes", param="axes", horizontal=True,
                disabled=heatmap,
                help="Line plots: |k| against lag + 1 on log axes (the heatmap has its own log-lag switch).")
overlay = ui.switch(c4, "Overlay on shared axes", key="k-overlay", param="overlay", disabled=len(names) < 2 or heatmap,
                    help="Draw the models on one set of axes instead of side by side (not for heatmaps).")
overlay = overlay and len(names) > 1 and not heatmap
log = axes.startswith("log") and not heatmap

H_min = min(ck.d_model for ck in cks.values())
C_max = max(ck.kernel_channels for ck in cks.values())
bidi = next((ck for ck in cks.values() if ck.kernel_channels == C_max), None)
bidi = bool(bidi and bidi.kernels and getattr(bidi.kernels[0], "bidirectional", False))
d1, d2, d3 = st.columns([1.2, 1.4, 2.6])
lengths = ui.length_controls(cks, "k", d1, d2)
channels: list[tuple[int, int]] = []
if not heatmap:
    with d3:
        cc1, cc2 = st.columns([1, 3])
        c_idx = cc1.selectbox("Direction" if bidi and C_max == 2 else "c (kernel channel)", list(range(C_max)),
                              format_func=lambda c: afig.channel_label(c, 0, C_max, bidi).removesuffix(" h=0")
                              .removesuffix(", h=0"), key="k-c") if C_max > 1 else 0
        if view == "one":
            h = ui.number(cc2, f"Feature h (0..{H_min - 1})", 0, H_min - 1, 0, key="k-h", param="feature")
            channels = [(int(c_idx), int(h))]
        else:
            hs = ui.features(cc2, "Features h", H_min, list(range(min(4, H_min))), key="k-hs", param="hs")
            channels = [(int(c_idx), int(h)) for h in sorted(hs)]
    if not channels:
        st.info("Choose at least one feature.")
        st.stop()

show_env = show_ref = show_ideal = False
ref_d = ref_m = None
if not heatmap:
    e1, e2, e3, e4 = st.columns(4)
    show_env = e1.checkbox("Peak envelope", key="k-env",
                           help="Peak |k| over log-spaced lag bins (analysis.decay.envelope).")
    show_ref = e2.checkbox("SGConv reference envelope", value=True, key="k-ref",
                           help="max(t/d, 1)^(-log2 m): the decay SGConv builds in (flat over the first scale, then a "
                                "power law), at each plotted kernel's level (its RMS over lags < d). For SGConv models d "
                                "and m are the model's own; for others choose them.")
    if any((ck.card or {}).get("task") == "delay" for ck in cks.values()):
        show_ideal = e3.checkbox("Ideal kernel (delay task)", value=True, key="k-ideal",
                                 help="For models trained on the delay task: the spike at the lag.")
    if show_ref and any(not has_builtin_decay(f) for ck in cks.values() for f in ck.families):
        with e4:
            r1, r2 = st.columns(2)
            ref_d = r1.number_input("d (non-SGConv)", 1, 4096, 64, key="k-ref-d")
            ref_m = r2.number_input("m (non-SGConv)", 1.0, 16.0, 2.0, step=0.5, key="k-ref-m")
else:
    log = ui.switch(d3, "Log lag axis", key="k-hm-log", param="loglag",
                    help="Columns equal in log(lag + 1) on a log axis, so the first taps, where most structure "
                         "sits, get their own columns instead of a thin stripe.")
    st.caption("Heatmap: every kernel channel of the layer (rows) against lag; colour = signed tap value (each "
               "column shows its tap of largest |k|). Axes and overlays apply to the line plots.")


# ---------------------------------------------------------------------------------------------------- figures
def reference_for(kernel, K, chans):
    """{label: (centers, curve)} of the SGConv reference envelope of each plotted channel (analysis.decay:
    it starts at the channel's own level)."""
    refs = reference_envelopes(kernel, K, chans, ref_d or 64, ref_m or 2.0)
    bi = getattr(kernel, "bidirectional", False)
    return {f"reference {afig.channel_label(c, h, K.shape[0], bi)}": curve for (c, h), curve in refs.items()} or None


def ideal_for(ck, L):
    """The delay task's ideal kernel (L,) for a model trained on it, from the shared task cache; else None."""
    card = ck.card or {}
    if card.get("task") != "delay":
        return None
    try:
        return state.card_task(card).ideal_kernel(L)
    except (ValueError, TypeError):
        return None


figs, tables, notes = {}, {}, {}
n_panels = 1 if overlay else len(names)
for n, ck in cks.items():
    if layer >= len(ck.kernels):
        notes[n] = f"{n} has {len(ck.kernels)} layer(s); no layers.{layer}."
        continue
    L = lengths[n]
    try:
        with st.spinner(f"Computing {n}'s layers.{layer} kernel at L={L:,}..."):
            lname, K = state.kernel_layer(loaded[n], L, layer)
    except ValueError as e:  # CheckpointError for lengths the kernel refuses
        notes[n] = f"{n}: {e}"
        continue
    kernel = ck.kernels[layer]
    bi = getattr(kernel, "bidirectional", False)
    if heatmap:
        rows = K.reshape(-1, K.shape[-1])
        labels = [afig.channel_label(c, h, K.shape[0], bi) for c in range(K.shape[0]) for h in range(K.shape[1])]
        fig = afig.heatmap_figure(rows, y_labels=labels, log_x=log)
        fig.update_layout(title=fig_.panel_title(n, lname, f"L={L:,}", n_panels))
        fig.update_yaxes(type="category", autorange="reversed")  # first channel on top
        figs[n] = fig
        df = pd.DataFrame(rows.T, columns=labels)
        df.insert(0, "lag", np.arange(K.shape[-1]))
        tables[n] = df
        continue
    chans = [(c, h) for c, h in channels if c < K.shape[0] and h < K.shape[1]]
    ref = reference_for(kernel, K, chans) if show_ref else None
    env = True if show_env else None
    if ref and env:
        env = {f"envelope {afig.channel_label(c, h, K.shape[0], bi)}": envelope(K[c, h], 64, "max") for c, h in chans}
        env = {**env, **ref}
    elif ref:
        env = ref
    ideal = ideal_for(ck, L) if show_ideal else None
    fig = afig.kernel_figure({lname: K}, lname, channels=chans, log_x=log, log_y=log, overlay_envelope=env,
                             ideal=ideal, color=colors.get(n), bidirectional=bi)
    fig.update_layout(title=fig_.panel_title(n, lname, f"L={L:,}", n_panels))
    figs[n] = fig_.mark_sparse(fig_.lag_hover(fig_.style_references(fig, len(chans)), log_x=log))
    cols = {"lag": np.arange(L)}
    for c, h in chans:
        cols[f"k[{afig.channel_label(c, h, K.shape[0], bi)}]"] = K[c, h]
    if ideal is not None:
        cols["ideal"] = ideal
    tables[n] = pd.DataFrame(cols)

for msg in notes.values():
    st.info(ui.plain(msg))  # model names and the checkpoint's messages are text from files
if not figs:
    st.stop()


def with_model(name: str, df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    out.insert(0, "model", name)
    return out


if overlay and len(figs) > 1:
    first = next(iter(figs.values()))
    fig = fig_.overlay(figs, title=f"layers.{layer}: {', '.join(figs)}", xaxis_title=first.layout.xaxis.title.text,
                       yaxis_title=first.layout.yaxis.title.text, log_x=log, log_y=log,
                       colors=colors or None)
    fig = fig_.mark_sparse(fig_.lag_hover(fig, log_x=log))
    fig.update_layout(height=600)
    data = pd.concat([with_model(n, t) for n, t in tables.items()], ignore_index=True)
    ui.show_figure(fig, data, f"kernels-layers.{layer}-overlay", key="k-overlay-fig")
else:
    cols = st.columns(len(figs))
    for col, (n, fig) in zip(cols, figs.items(), strict=True):
        with col:
            fig_.compact(fig, height=520 if len(figs) > 1 else 600, legend_below=len(figs) > 1 and not heatmap)
            ui.show_figure(fig, tables[n], f"kernels-{n}-layers.{layer}", key=f"k-fig-{n}")
