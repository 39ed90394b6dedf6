"""Frequency: magnitude and phase responses per channel; exact SSM transfer functions vs the truncated-kernel FFT."""
from __future__ import annotations

import streamlit as st

from analysis import figures as afig
from analysis.extract import ssm_modes
from analysis.frequency import channel_responses
from app import figures as fig_
from app import state, ui

st.title("Frequency")
st.caption("H(f) = Σ k[l]·e^(-2πifl) of each kernel (FFT of the length-L kernel). For S4 / S4D the exact "
           "transfer function of the state-space model is drawn too: of the length-L kernel (dashed, on top of the "
           "FFT: a check of the kernel computation) and of the infinitely long kernel (dotted): the gap between "
           "dotted and solid is what truncating the kernel at L changes.")
loaded = ui.require_models("frequency responses")
names = ui.pick_models(loaded, key="f-models")
cks = {n: state.checkpoint(loaded[n]) for n in names}
colors = fig_.model_colors(names)  # one colour per model in both charts (channels in its shades)

layer, hs, lengths = ui.layer_features_length(cks, "f")
o1, o2, o3 = st.columns([1, 1.4, 2.6])
log_x = ui.switch(o1, "Log frequency axis", key="f-logx", param="logf")
analytic = ui.switch(o2, "Exact SSM response", key="f-analytic", param="exact", value=True,
                     help="S4 / S4D only: the transfer function from the poles and residues "
                          "(analysis.frequency.ssm_transfer), of the length-L kernel (dashed: it must match the "
                          "FFT) and of the infinitely long kernel (dotted: what truncating at L changes).")

series, phases, notes = [], [], []
for n, ck in cks.items():
    if layer >= len(ck.kernels):
        notes.append(f"{n} has no layers.{layer}.")
        continue
    _, K = state.kernel_layer(loaded[n], lengths[n], layer)
    modes = ssm_modes(ck.kernels[layer]) if analytic else None
    bi = getattr(ck.kernels[layer], "bidirectional", False)
    resps = channel_responses(K, [(c, h) for h in hs for c in range(K.shape[0])], modes)
    for resp, color in zip(resps, afig.shades(colors[n] if len(names) > 1 else None, len(resps)), strict=True):
        label = f"{n} {afig.channel_label(resp.c, resp.h, K.shape[0], bi)}"
        series.append({**resp.magnitude_series(label), "color": color})
        phases.append({**resp.phase_series(label), "color": color})
        if modes is not None and resp.exact_inf_db is None:
            notes.append(f"{label}: a pole is on or outside the unit circle, so the infinitely long kernel has no "
                         "response; only the length-L one is drawn.")
for msg in notes:
    st.info(ui.plain(msg))  # model names are text from files

if series:
    left, right = st.columns(2)
    with left:
        mfig = afig.frequency_figure(series, title=f"layers.{layer}: magnitude", log_x=log_x)
        fig_.compact(mfig, height=480, legend_below=True)
        ui.show_figure(mfig, fig_.figure_data(mfig), f"magnitude-layers.{layer}", key="f-mag")
    with right:
        pfig = afig.phase_figure(phases, title=f"layers.{layer}: phase", log_x=log_x)
        fig_.compact(pfig, height=480, legend_below=True)
        ui.show_figure(pfig, fig_.figure_data(pfig), f"phase-layers.{layer}", key="f-phase")
elif not hs:
    st.info("Choose at least one feature.")

st.subheader("Peak gain and bandwidth per layer", anchor=False)
st.caption("Medians over the channels of each layer: peak gain max|H| (dB), the frequency of the peak, the -3 dB "
           "bandwidth around it and the spectral centroid (cycles/sample). For S4 / S4D, the largest difference "
           "between the exact length-L transfer function and the FFT of the extracted kernel, relative to the peak "
           "(a check of the kernel computation: it should be ~1e-12).")
cols = {"peak gain dB": "peak_gain_db_median", "peak freq": "peak_freq_median", "bandwidth": "bandwidth_median",
        "centroid": "centroid_median", "exact vs FFT (rel.)": "analytic_vs_fft_rel"}
with st.spinner("Measuring every layer..."):
    ui.per_layer_table(names, loaded, lengths, cols, optional="exact vs FFT (rel.)",
                       file_name="frequency-per-layer.csv", key="f-table-csv",
                       column_config={c: st.column_config.NumberColumn(format="%.3g") for c in cols})
