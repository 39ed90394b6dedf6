"""Readable figures (issue 12.4) and decimated traces (issue 11.3), checked on the figure objects: titles, axis
titles, tick formats, legend positions, one colour per model across a page's charts, forward / backward names,
the reference envelope's scale, table formatting of missing values and percentages."""
from __future__ import annotations

import base64
import json
import types
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest

from analysis import figures as FG
from analysis.ablation.figures import curves_figure, run_labels
from analysis.decay import reference_envelopes
from app import figures as AF

SGC, S4D = "delay-sgconv", "digits-s4d"
REPO = Path(__file__).resolve().parents[1]


def _decode(v):
    if isinstance(v, dict):
        if "bdata" in v and "dtype" in v:
            a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
            return a.reshape([int(s) for s in str(v["shape"]).split(",")]) if v.get("shape") else a
        return {k: _decode(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_decode(x) for x in v]
    return v


# ---------------------------------------------------------------------------------------------------- decimation
def test_long_kernel_trace_is_decimated_and_keeps_extremes():
    L = 1 << 20
    rng = np.random.default_rng(0)
    K = (rng.standard_normal((1, 2, L)) * np.exp(-np.arange(L) / 5e4)).astype(np.float64)
    K[0, 1, 700_001] = 9.0
    for log in (False, True):
        fig = FG.kernel_figure({"l": K}, "l", channels=[0, 1], log_x=log, log_y=log)
        for h, tr in enumerate(fig.data[:2]):
            y = np.asarray(tr.y, dtype=np.float64)
            assert len(y) <= 2 * 2000 + 2 and len(tr.x) == len(y)
            ref = np.abs(K[0, h]) if log else K[0, h]
            assert y.max() == pytest.approx(ref.max(), rel=1e-6) and y.min() == pytest.approx(ref.min(), rel=1e-6)
            assert int(tr.x[0]) == (1 if log else 0) and int(tr.x[-1]) == (L if log else L - 1)
        assert (np.asarray(fig.data[1].x) == (700_002 if log else 700_001)).any()  # the spike's own lag
    # short kernels are drawn whole
    fig = FG.kernel_figure({"l": K[:, :, :3000]}, "l", channels=[0])
    np.testing.assert_array_equal(np.asarray(fig.data[0].x), np.arange(3000))


def test_frequency_phase_and_heatmap_are_reduced():
    f = np.linspace(0, 0.5, 500_001)
    m = np.sin(f * 400)
    m[123_456] = 50.0
    for log in (False, True):
        mag = FG.frequency_figure({"label": "a", "freq": f, "mag_db": m}, log_x=log)
        ph = FG.phase_figure({"label": "a", "freq": f, "phase": m}, log_x=log)
        for fig in (mag, ph):
            y = np.asarray(fig.data[0].y)
            assert len(y) <= 4002 and y.max() == 50.0
    Z = np.random.default_rng(1).standard_normal((4, 200_000))
    hm = FG.heatmap_figure(Z, "t", max_cols=1000)
    assert np.asarray(hm.data[0].z).shape == (4, 1000) and len(hm.data[0].x) == 1001
    hl = FG.heatmap_figure(Z, "t", max_cols=300, log_x=True)
    z = np.asarray(hl.data[0].z)
    assert z.shape[1] <= 300 and hl.layout.xaxis.type == "log" and np.asarray(hl.data[0].x)[0] == 1
    np.testing.assert_array_equal(z[:, 0], Z[:, 0].astype(np.float32))  # lag 0 is its own column on a log axis
    assert np.abs(z).max() == pytest.approx(np.abs(Z).max(), rel=1e-6)
    data = AF.figure_data(hm)  # the CSV of a reduced heatmap: one row per cell, x = its first lag
    assert len(data) == 4 * 1000 and data["x"].iloc[1] == 200


# ---------------------------------------------------------------------------------------------------- titles, axes
def test_panel_titles_are_short_with_the_full_name_in_the_subtitle():
    t = AF.panel_title("conv_bi_state_dict", "layer", "L=1,024", n_panels=4)
    assert len(t["text"]) <= AF.TITLE_CHARS[4] and "layer" in t["text"] and "…" in t["text"]
    assert t["subtitle"]["text"] == "conv_bi_state_dict · layer (L=1,024)"
    t = AF.panel_title("digits-s4d", "layers.1", "L=512", n_panels=2)
    assert t == {"text": "digits-s4d · layers.1 (L=512)"}
    very = AF.panel_title("x" * 200, "layers.0", "L=1,048,576", n_panels=3)
    assert len(very["text"]) <= AF.TITLE_CHARS[3] and "layers.0" in very["text"] and very["text"].startswith("xxx")
    long_layer = AF.panel_title("m" * 30, "backbone.layers.3.mixer.kernel", "L=1,048,576", 4)
    assert len(long_layer["text"]) <= AF.TITLE_CHARS[4] and "…" in long_layer["text"]
    assert long_layer["subtitle"]["text"] == "m" * 30 + " · backbone.layers.3.mixer.kernel (L=1,048,576)"


def _axis_titles(fig: go.Figure) -> dict:
    lay = fig.to_plotly_json()["layout"]
    return {k: (v.get("title") or {}).get("text") for k, v in lay.items() if k.startswith(("xaxis", "yaxis"))}


def test_every_axis_is_labelled_and_magnitudes_use_e_ticks():
    from analysis.attribution import Attribution, DistanceProfile

    k = np.exp(-np.arange(4096) / 50.0)
    att = Attribution(attr=np.r_[np.ones(10), np.zeros(5)], delta=0.0, f_x=1.0, f_baseline=0.0,
                      output_kind="sequence", position=9, target=0,
                      distance_profile=DistanceProfile(np.r_[0, 1, 3], np.r_[1, 1, 1]), method="IG", note="n")
    figs = {
        "kernel": FG.kernel_figure({"l": k[None, None]}, "l", log_x=True, log_y=True),
        "heatmap": FG.heatmap_figure(k[None], "h"),
        "decay": FG.decay_figure({"label": "a", "centers": np.r_[0, 1, 10], "values": np.r_[1, 0.5, 0.1]}),
        "frequency": FG.frequency_figure({"label": "a", "freq": np.linspace(0, .5, 9), "mag_db": np.zeros(9)}),
        "phase": FG.phase_figure({"label": "a", "freq": np.linspace(0, .5, 9), "phase": np.zeros(9)}),
        "attribution": FG.attribution_figure(att, x=np.ones(15)),
        "curves": curves_figure([{"label": "sgconv t=1", "decay": 1.0, "loss_curve": [(0, 1.0), (1, 0.5)]}]),
    }
    for name, fig in figs.items():
        titles = _axis_titles(fig)
        if name != "curves":  # the figure builders' own axes grow their margins to fit labels and titles
            assert all(v.get("automargin") for k, v in fig.to_plotly_json()["layout"].items()
                       if k.startswith(("xaxis", "yaxis"))), name
        assert titles and all(titles.values()), (name, titles)
        for key, ax in fig.to_plotly_json()["layout"].items():
            if key.startswith("yaxis"):
                assert ax.get("exponentformat") == "e", (name, key)  # 1e-06, never 1µ / 1n / 1p / 1f
    assert _axis_titles(figs["attribution"]) == {
        "xaxis": "input position", "xaxis2": "distance from output position + 1 (taps)", "yaxis": "attribution",
        "yaxis2": "input", "yaxis3": "mean |attribution|"}
    assert figs["frequency"].layout.xaxis.exponentformat == "e"  # 1e-3 cycles/sample on a log axis, not 1m


def test_legends_sit_clear_of_axis_and_chart_titles():
    fig = FG.frequency_figure([{"label": f"m{i}", "freq": np.linspace(0, .5, 9), "mag_db": np.zeros(9)}
                               for i in range(3)])
    AF.compact(fig, height=480, legend_below=True)
    leg = fig.layout.legend
    # at the figure's bottom edge, below the band for tick labels and the axis title, one row per entry
    # horizontal: a vertical legend makes plotly push the left margin by its width (a blank band beside the y axis)
    assert (leg.yref, leg.y, leg.yanchor, leg.orientation) == ("container", 0.0, "bottom", "h")
    assert fig.layout.margin.b >= FG.AXIS_BAND_PX + 3 * FG.LEGEND_ROW_PX
    assert fig.layout.height == 480 + 3 * FG.LEGEND_ROW_PX  # the plot area keeps its height
    # many entries: right of the plot, below the title (which sits above the plot area)
    many = FG.frequency_figure([{"label": f"m{i}", "freq": np.linspace(0, .5, 9), "mag_db": np.zeros(9)}
                                for i in range(13)])
    AF.compact(many, legend_below=True)
    assert many.layout.legend.x >= 1.0 and many.layout.legend.y <= 1.0 and many.layout.legend.yanchor == "top"
    from analysis.attribution import Attribution, DistanceProfile

    att = Attribution(attr=np.ones(20), delta=0.0, f_x=1.0, f_baseline=0.0, output_kind="sequence", position=9,
                      target=0, distance_profile=DistanceProfile(np.r_[0, 1], np.r_[1, 1]), method="IG", note="n")
    a = FG.attribution_figure(att, x=np.ones(20))
    assert a.layout.legend.yref == "container" and a.layout.legend.y == 0.0  # not over the subplot titles
    assert a.layout.title.subtitle.text.startswith("n")
    with pytest.raises(ValueError, match="where"):
        FG.place_legend(go.Figure(), "top")


# ---------------------------------------------------------------------------------------------------- names
def test_bidirectional_channels_are_forward_and_backward():
    K = np.random.default_rng(0).standard_normal((2, 3, 64))
    fig = FG.kernel_figure({"l": K}, "l", channels=[(0, 1), (1, 1)], bidirectional=True, overlay_envelope=True)
    assert [t.name for t in fig.data] == ["forward h=1", "backward h=1", "envelope forward h=1",
                                          "envelope backward h=1"]
    assert fig.data[2].line.color == fig.data[0].line.color  # each envelope in its channel's colour
    assert FG.channel_label(3, 2, 4, True) == "backward c=1, h=2"
    assert FG.channel_label(1, 2, 2, False) == "c=1, h=2" and FG.channel_label(0, 5, 1) == "h=5"


def test_ablation_runs_are_named_by_the_factor_that_differs():
    runs = [{"label": f"sgconv t={t:g} (fixed) kernel_dim={d} seed=0", "decay": t, "decay_mode": "fixed",
             "size": d, "seed": 0, "loss_curve": [(0, 1.0)]} for t, d in ((0.5, 32), (1.0, 32), (1.0, 8))]
    assert run_labels(runs) == ["t = 0.5, d = 32", "t = 1, d = 32", "t = 1, d = 8"]
    assert run_labels(runs[:2]) == ["t = 0.5", "t = 1"]
    s4d = [{"label": f"s4d r={r:g} (fixed) d_state={n} seed={s}", "decay": r, "decay_mode": "fixed", "size": n,
            "seed": s} for r, n, s in ((1.0, 16, 0), (1.0, 16, 1))]
    assert run_labels(s4d) == ["seed = 0", "seed = 1"]
    fig = curves_figure(runs[:2])
    assert [t.name for t in fig.data] == ["t = 0.5", "t = 1"]
    assert "sgconv t=0.5 (fixed)" in fig.data[0].hovertemplate  # the full label on hover


# ---------------------------------------------------------------------------------------------------- envelope
def test_reference_envelope_starts_on_a_fast_decaying_kernel():
    """An S4-like kernel (exponential decay, oscillating) at L = 65,536: the reference envelope starts at the
    kernel's level (the fit through every lag bin used to sit orders of magnitude below it); anchored, its flat
    level is the kernel's RMS over the first scale (lags < d), computed here directly."""
    L, d = 65_536, 64
    lag = np.arange(L)
    k = 0.8 * np.exp(-lag / 40.0) * np.cos(0.3 * lag)
    K = k[None, None]
    refs = reference_envelopes(types.SimpleNamespace(kind="s4d"), K, [(0, 0)], d=d, m=2.0)
    centers, raw = refs[(0, 0)]
    start = float(np.sqrt(np.mean(k[:d] ** 2)))
    assert raw[0] == pytest.approx(start, rel=1e-12)  # at the kernel's level (analysis.decay.reference_level)
    c2, anchored = FG.anchor_reference(centers, raw, k)
    assert anchored[0] == pytest.approx(start, rel=0.10)
    first_bins = centers < d
    kernel_env = np.sqrt(np.mean(k[: int(centers[first_bins].max()) + 1] ** 2))
    assert anchored[first_bins].max() == pytest.approx(kernel_env, rel=0.10)
    np.testing.assert_allclose(anchored / anchored[0], raw / raw[0])  # the shape is kept
    np.testing.assert_array_equal(c2, centers)


# ---------------------------------------------------------------------------------------------------- tables
def test_missing_values_and_percentages():
    assert AF.fmt_missing(None) == "–" and AF.fmt_missing(float("nan")) == "–"
    assert AF.fmt_missing(0.123456) == "0.1235" and AF.fmt_missing("abc") == "abc"
    assert AF.fmt_percent(0.9712) == "97.12 %" and AF.fmt_percent(None) == "–" and AF.fmt_percent(1) == "100.00 %"


def test_format_table_for_display():
    import pandas as pd

    df = pd.DataFrame({"model": ["a", "b"], "t": [1.23456, None], "acc": [0.9712, float("nan")], "n": [3, 4],
                       "L": [65536, 1024]})
    out = AF.format_table(df, formats={"L": "{:,}"}, percent=["acc"], keep=["n"])
    assert out.to_dict("list") == {"model": ["a", "b"], "t": ["1.235", "–"], "acc": ["97.12 %", "–"], "n": [3, 4],
                                   "L": ["65,536", "1,024"]}
    assert df["t"].isna().sum() == 1  # the input is not changed


def test_model_colours_and_shades():
    cols = FG.model_colors(["a", "b", "c"])
    assert len(set(cols.values())) == 3 and cols["a"] == FG.PALETTE[0]
    sh = FG.shades(cols["b"], 4)
    assert sh[0] == cols["b"] and len(set(sh)) == 4
    assert FG.shades(None, 3) == FG.PALETTE[:3]


# ---------------------------------------------------------------------------------------------------- pages
def _charts(at) -> list[dict]:
    return [_decode(json.loads(el.proto.spec)) for el in at.get("plotly_chart")]


def _app(files):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "app" / "main.py"), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    at.multiselect(key="pretrained-pick").set_value([f"{f}.safetensors" for f in files]).run()
    at.button(key="pretrained-load").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _colors_by_model(fig: dict, models) -> dict:
    out = {}
    for tr in fig["data"]:
        for m in models:
            if str(tr.get("name", "")).startswith(m):
                c = (tr.get("line") or {}).get("color") or (tr.get("marker") or {}).get("color")
                out.setdefault(m, set()).add(c)
    return out


def test_one_colour_per_model_across_a_pages_charts(app_env):
    at = _app([SGC, S4D])
    at.switch_page("views/frequency.py").run()
    assert not at.exception, [e.value for e in at.exception]
    mag, phase = [f for f in _charts(at) if (f["layout"].get("title") or {}).get("text", "")][:2]
    cm, cp = _colors_by_model(mag, [SGC, S4D]), _colors_by_model(phase, [SGC, S4D])
    expect = FG.model_colors([SGC, S4D])
    for m in (SGC, S4D):
        assert cm[m] == cp[m] == {expect[m]}, (m, cm, cp)
    at.switch_page("views/kernels.py").run()
    assert not at.exception, [e.value for e in at.exception]
    figs = [f for f in _charts(at) if f["layout"].get("title")]
    assert len(figs) == 2
    for fig, m in zip(figs, (SGC, S4D), strict=True):
        assert fig["layout"]["title"]["text"].startswith(m)
        assert fig["data"][0]["line"]["color"] == expect[m]  # the model's first channel in the model's colour
