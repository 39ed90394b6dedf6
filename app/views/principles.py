"""Principles: the verdict on the paper's two questions for each loaded model, per layer (analysis.verdict)."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from analysis.verdict import METHOD, PARAM_LENGTHS
from app import figures as fig_
from app import state, ui

st.title("Principles")
st.caption("Li et al. (2022): a good long-convolution kernel needs (1) a number of parameters that grows "
           "sub-linearly with the length L and (2) a decaying weight. For each model and layer: the kernel "
           "parameters at L = 1k / 16k / 1M with their growth class, and the decay model that fits the kernels better.")
loaded = ui.require_models("the verdict on the two principles")
names = ui.pick_models(loaded, key="v-models")
cks = {n: state.checkpoint(loaded[n]) for n in names}
c1, c2, _ = st.columns([1.2, 1.4, 3])
lengths = ui.length_controls(cks, "v", c1, c2)

_SHORT = {1024: "1k", 16384: "16k", 1048576: "1M"}
_COLUMNS = {"layer": "layer", "kind": "family", **{f"params_L{L}": f"params at {_SHORT[L]}" for L in PARAM_LENGTHS},
            "growth": "growth in L", "verdict": "decay", "r2_power": "R² (power)", "r2_exp": "R² (exp)"}

all_rows = []
for n in names:
    st.subheader(ui.plain(n), anchor=False)
    try:
        with st.spinner(f"Fitting {n}'s kernels..."):
            v = state.verdict(loaded[n], lengths[n])
    except ValueError as e:  # CheckpointError included: a length the kernels refuse
        st.error(ui.plain(f"{n}: {e}"), icon=":material/error:")
        continue
    st.markdown(ui.plain(v.principle1) + "  \n" + ui.plain(v.principle2))
    rows = v.rows()
    table = pd.DataFrame([{shown: r[key] for key, shown in _COLUMNS.items()} for r in rows])
    ui.table(fig_.format_table(table, formats={**{f"params at {s}": "{:,}" for s in _SHORT.values()},
                                               "R² (power)": "{:.2f}", "R² (exp)": "{:.2f}"}))
    for r in rows:  # the notes under the table (a column would be too wide to read)
        if r["note"]:
            st.caption(ui.plain(f"{r['layer']}: {r['note']}."))
    all_rows += [{"model": n, "L": v.L, **r} for r in rows]

st.caption(METHOD)
if all_rows:
    ui.csv_download("Download the verdict (CSV)", pd.DataFrame(all_rows), "verdict.csv", key="v-csv")
