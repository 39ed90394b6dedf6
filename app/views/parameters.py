"""Parameters: kernel parameter count against length per family, and how well SGConv can express a kernel."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from analysis import figures as afig
from analysis.fit import dims_for, fit_sgconv
from analysis.params import TABLE_LENGTHS, model_families, scaling_lengths, scaling_pivot, scaling_table
from app import figures as fig_
from app import state, ui
from sgconv_core.lengths import default_length

st.title("Parameters")
st.caption("The paper's first principle: a long kernel should need few parameters. SGConv grows as O(log L) "
           "(one d-wide sub-kernel per octave), S4 / S4D do not grow with L, a free kernel grows as L.")
loaded = ui.require_models("parameter scaling")
cks = {n: state.checkpoint(e) for n, e in loaded.items()}

# ---------------------------------------------------------------------------------------------------- scaling
c1, _ = st.columns([2, 3])
others = c1.toggle("Also the other families at the first model's H", value=True, key="p-others",
                   help="SGConv (d=32), S4 and S4D with n_ssm = H and 1, and a free kernel, at the same H and C.")
rows = scaling_table(scaling_lengths(cks), model_families(cks, others))
first_lmax = next(iter(cks.values())).l_max
sfig = afig.scaling_figure(rows, title="kernel parameters per layer vs length (log-log)", mark_L=first_lmax)
sfig.update_layout(height=520)
ui.show_figure(sfig, pd.DataFrame(rows), "parameter-scaling", key="p-scaling")
table = scaling_pivot(rows, {ck.l_max for ck in cks.values() if ck.l_max} | set(TABLE_LENGTHS))
st.caption("Kernel parameters per layer" + (f" (dotted line in the plot: the first model's training length "
                                            f"l_max = {first_lmax:,})" if first_lmax else ""))
ui.table(pd.DataFrame([{k: v if k == "family" else (fig_.MISSING if v is None else f"{int(v):,}") for k, v in r.items()}
                       for r in table]))

# ---------------------------------------------------------------------------------------------------- fit
st.subheader("Can SGConv express this kernel?", anchor=False)
st.caption("Least-squares fit of an SGConv kernel (kernel_dim d, multiplier m) to one learned kernel channel: "
           "relative L2 error against SGConv's parameter count S·d (analysis.fit). Works for any family.")
f1, f2, f3, f4, f5 = st.columns([2, 1, 1, 1, 1])
name = f1.selectbox("Model", list(cks), key="p-model")
ck = cks[name]
layer = f2.selectbox("Layer", list(range(len(ck.kernels))), format_func=lambda i: f"layers.{i}", key="p-layer")
kernel = ck.kernels[layer]
c = int(f3.number_input("c", 0, kernel.C_k - 1, 0, key="p-c")) if kernel.C_k > 1 else 0
h = int(f3.number_input(f"h (0..{kernel.H - 1})", 0, kernel.H - 1, 0, key="p-h"))
m = float(f4.number_input("m (decay)", 1.0, 8.0, 2.0, step=0.5, key="p-m"))
mode = f5.selectbox("mode", ["cat", "sum"], key="p-mode")
L = default_length(kernel.l_max)
with st.spinner("Fitting SGConv kernels..."):
    fit_rows = state.fit_curve_rows(loaded[name], L, layer, c, h, m, mode, dims_for(L))
left, right = st.columns(2)
with left:
    ffig = afig.fit_curve_figure({f"{name} layers.{layer} h={h}": fit_rows})
    ffig.update_layout(title={"text": "best SGConv fit: error vs parameters", "subtitle": {
        "text": f"{name} · layers.{layer} · h={h} (L={L:,})", "font": {"size": 11}}})
    fig_.compact(ffig, height=460, legend_below=True)
    ui.show_figure(ffig, pd.DataFrame(fit_rows), f"sgconv-fit-{name}-layers.{layer}-h{h}", key="p-fit")
with right:
    d_options = [r["d"] for r in fit_rows]
    own_d = kernel.config.get("kernel_dim")  # an SGConv layer's own d (other families have none)
    d_show = st.select_slider("Show the fit at d", d_options, key="p-d",
                              value=own_d if own_d in d_options else d_options[len(d_options) // 2])
    target = state.kernel_layer(loaded[name], L, layer)[1][c, h]
    best = fit_sgconv(target, d_show, m, None, mode)
    kfig = afig.kernel_figure({"target": np.stack([target, best["fitted"]])[None]}, "target", channels=[0, 1])
    kfig.update_layout(title={"text": f"kernel vs SGConv fit at d={d_show}", "subtitle": {
        "text": f"{best['n_params']} parameters, relative error {best['rel_error']:.3f}", "font": {"size": 11}}})
    kfig.data[0].name, kfig.data[1].name = "learned kernel", f"SGConv fit (d={d_show})"
    kfig.data[1].line.dash = "dash"
    fig_.compact(fig_.lag_hover(kfig), height=460, legend_below=True)
    ui.show_figure(kfig, pd.DataFrame({"lag": np.arange(L), "kernel": target, "fit": best["fitted"]}),
                   f"sgconv-fit-d{d_show}-{name}", key="p-fit-kernel")
