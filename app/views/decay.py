"""Decay: kernel envelopes with fitted power-law and exponential lines; per-layer decay table; SSM poles."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from analysis import figures as afig
from analysis.decay import MIN_FIT_LENGTH, envelope_fit, pole_summary
from analysis.extract import ssm_modes
from app import figures as fig_
from app import state, ui

st.title("Decay")
st.caption("How fast the kernels fall off with lag: |k| ≈ A·pos^(-t) (power law, pos = lag + 1) or "
           "A·exp(-r·pos). SGConv's built-in decay has t = log2(m); the paper finds any t ≥ 0.75 works.")
loaded = ui.require_models("decay")
names = ui.pick_models(loaded, key="d-models")
cks = {n: state.checkpoint(loaded[n]) for n in names}
colors = fig_.model_colors(names)  # one colour per model in the envelope and pole charts

layer, hs, lengths = ui.layer_features_length(
    cks, "d", features_help="Each chosen feature of each model gets its envelope and both fitted lines.")

# ---------------------------------------------------------------------------------------------------- envelopes
series, fits, skipped = [], [], []
for n, ck in cks.items():
    L = lengths[n]
    if layer >= len(ck.kernels):
        skipped.append(f"{n} has no layers.{layer}.")
        continue
    if L < MIN_FIT_LENGTH:
        skipped.append(f"{n}: L={L} is too short to fit (at least {MIN_FIT_LENGTH} taps).")
        continue
    _, K = state.kernel_layer(loaded[n], L, layer)
    bi = getattr(ck.kernels[layer], "bidirectional", False)
    chans = [(c, h) for h in hs for c in range(K.shape[0])]
    for (c, h), color in zip(chans, afig.shades(colors[n] if len(names) > 1 else None, len(chans)), strict=True):
        label = f"{n} {afig.channel_label(c, h, K.shape[0], bi)}"
        fit = envelope_fit(K[c, h])
        if fit is None:
            skipped.append(f"{label}: all-zero kernel (a dead channel).")
            continue
        series.append({**fit.series(label), "color": color})
        fits.append({"kernel": label, "t (power law)": fit.power["t"], "R² (power)": fit.power["r2"],
                     "r (exp, 1/tap)": fit.exp["r"], "R² (exp)": fit.exp["r2"]})
for msg in skipped:
    st.info(ui.plain(msg))  # model names are text from files
if series:
    fig = afig.decay_figure(series, title=f"layers.{layer}: RMS envelope and fits (log-log)",
                            L=max(lengths.values()))
    fig.update_layout(height=520)
    afig.place_legend(fig, "right")
    fig_.clip_log_y(fig, [s["values"] for s in series])  # fitted lines may run far outside the envelopes
    ui.show_figure(fig, fig_.figure_data(fig), f"decay-layers.{layer}", key="d-fig")
    st.dataframe(fig_.format_table(pd.DataFrame(fits)), hide_index=True)
elif not hs:
    st.info("Choose at least one feature to plot its envelope.")

# ---------------------------------------------------------------------------------------------------- table
st.subheader("Per layer and model", anchor=False)
st.caption("Medians over the channels of each layer: t = power-law exponent (and its interquartile range), "
           "r = exponential rate per tap, range50/90/99 = taps holding 50/90/99 % of the kernel's energy; "
           "layer profile t = exponent of the layer's RMS kernel; half-life = median over features of the "
           "slowest SSM mode's half-life (S4 / S4D).")
with st.spinner("Summarising every layer..."):
    ui.per_layer_table(
        names, loaded, lengths,
        {"dead": "n_zero", "t": "t_median", "t IQR": "t_iqr", "r (1/tap)": "r_median", "range50": "range50_median",
         "range90": "range90_median", "range99": "range99_median", "layer profile t": "profile_t",
         "half-life (taps)": "median_half_life"},
        optional="half-life (taps)", file_name="decay-per-layer.csv", key="d-table-csv", column_config={
            "t": st.column_config.NumberColumn(format="%.3f"), "t IQR": st.column_config.NumberColumn(format="%.3f"),
            "layer profile t": st.column_config.NumberColumn(format="%.3f"),
            "half-life (taps)": st.column_config.NumberColumn(format="%.4g"),
            "r (1/tap)": st.column_config.NumberColumn(format="%.3g"),
            "range50": st.column_config.NumberColumn(format="%.0f"),
            "range90": st.column_config.NumberColumn(format="%.0f"),
            "range99": st.column_config.NumberColumn(format="%.0f")})

# ---------------------------------------------------------------------------------------------------- poles
st.subheader("SSM poles", anchor=False)
poles, pole_rows = {}, []
for n, ck in cks.items():
    modes = ssm_modes(ck.kernels[layer]) if layer < len(ck.kernels) else None
    if modes is None:
        continue
    poles[n] = modes[1]
    p = pole_summary(modes[1])
    pole_rows.append({"model": n, "layer": f"layers.{layer}", "modes": p.modes, "slowest rate (1/tap)": p.slowest_rate,
                      "half-life (taps)": p.half_life, "max |λ|": p.max_abs_pole})
if not poles:
    st.caption("None of the chosen models is an S4 / S4D state-space model (SGConv kernels have no poles).")
else:
    st.caption("Discrete-time poles λ of every mode in this layer; |λ| < 1 decays, and the slowest mode "
               "(largest |λ|) sets the long-range tail. Hover for |λ| and the half-life.")
    ui.table(fig_.format_table(pd.DataFrame(pole_rows), keep=["modes"], formats={
        "slowest rate (1/tap)": "{:.3g}", "half-life (taps)": "{:.4g}", "max |λ|": "{:.6f}"}))
    left, _ = st.columns([3, 2])
    with left:
        pfig = afig.pole_figure(poles, title=f"layers.{layer}: poles λ", colors=colors)
        pfig.update_layout(height=560)
        ui.show_figure(pfig, fig_.figure_data(pfig), f"poles-layers.{layer}", key="d-poles")
