"""The pages' own options linked to the URL (app.ui radio / switch / number / features on the Kernels and Frequency
pages): a link's value is what the widget shows and what the plot draws, the widgets write their value back, a bad
value falls back with a note; and the per-layer kernel cache the pages draw from (app.store.caches.kernel_layer).
Fixture checkpoints: tests/conftest.py (`app_env`)."""
from __future__ import annotations

import numpy as np
from apptest import MAIN, chart, charts, ok

import sgconv_core
from analysis.extract import extract_kernels

SGC, S4D = "delay-sgconv", "digits-s4d"
L = 256  # the fixtures' l_max


def linked_app(page: str, **params):
    """A new session (a shared link, or F5) on ``page`` with the fixture models and ``params`` in the URL."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(MAIN, default_timeout=60)
    at.query_params["model"] = [SGC, S4D]
    for k, v in params.items():
        at.query_params[k] = v
    return ok(at.switch_page(f"views/{page}.py").run())


def names(fig) -> list[str]:
    return [t.get("name") for t in fig["data"]]


def trace_y(fig, name: str) -> np.ndarray:
    t = [t for t in fig["data"] if t.get("name") == name]
    assert t, names(fig)
    return np.asarray([np.nan if x is None else x for x in t[0]["y"]] if isinstance(t[0]["y"], list) else t[0]["y"],
                      dtype=np.float64)


def choices(at) -> dict:
    return {k: v for k, v in at.query_params.items() if k not in ("model", "path")}


def notes(at) -> str:
    return "\n".join(c.value for c in at.caption)


def test_kernels_page_reads_its_options_from_the_link(app_env):
    """?view=several&hs=2,5&axes=log-log&overlay=1: the widgets show these values and the one overlaid chart holds
    |k| of features 2 and 5 of both models on log axes (the extracted kernels)."""
    at = linked_app("kernels", view="several", hs="2,5", axes="log-log", overlay="1", layer="1")
    assert at.radio(key="k-view").value == "several" and at.multiselect(key="k-hs").value == [2, 5]
    assert at.radio(key="k-axes").value == "log-log (|k|)" and at.toggle(key="k-overlay").value is True
    figs = charts(at)
    assert len(figs) == 1  # overlaid
    fig = figs[0]
    assert fig["layout"]["xaxis"]["type"] == "log" and fig["layout"]["yaxis"]["type"] == "log"
    K = extract_kernels(sgconv_core.load(app_env / f"{S4D}.safetensors"), L)["layers.1"]
    np.testing.assert_allclose(trace_y(fig, f"{S4D}: h=5"), np.abs(K[0, 5]), rtol=2e-6, atol=1e-7)
    assert f"{SGC}: h=2" in names(fig) and f"{SGC}: h=0" not in names(fig)
    assert choices(at) == {"view": "several", "hs": "2,5", "axes": "log-log", "overlay": "1", "layer": "1"}
    assert "was not used" not in notes(at)


def test_kernels_page_one_feature_and_heatmap_log_axis(app_env):
    at = linked_app("kernels", feature="3")
    assert at.number_input(key="k-h").value == 3
    K = extract_kernels(sgconv_core.load(app_env / f"{SGC}.safetensors"), L)["layers.0"]
    np.testing.assert_allclose(trace_y(chart(at, f"{SGC} · layers.0"), "h=3"), K[0, 3], rtol=2e-6, atol=1e-7)
    hm = linked_app("kernels", view="all", loglag="1")
    assert hm.radio(key="k-view").value == "all (heatmap)" and hm.toggle(key="k-hm-log").value is True
    figs = charts(hm)
    assert len(figs) == 2 and all(f["data"][0]["type"] == "heatmap" and f["layout"]["xaxis"]["type"] == "log"
                                  for f in figs)


def test_kernels_page_writes_its_options_and_refuses_bad_ones(app_env):
    at = linked_app("kernels")
    assert choices(at) == {}
    at.radio(key="k-axes").set_value("log-log (|k|)").run()
    at.number_input(key="k-h").set_value(4).run()
    assert choices(ok(at)) == {"axes": "log-log", "feature": "4"}
    at.radio(key="k-axes").set_value("linear").run()
    assert choices(ok(at)) == {"feature": "4"}  # a default is left out of the URL
    bad = linked_app("kernels", view="bogus", feature="99", overlay="maybe")
    assert bad.radio(key="k-view").value == "one" and bad.number_input(key="k-h").value == 0
    assert bad.toggle(key="k-overlay").value is False
    text = notes(bad)
    assert "view=bogus was not used (choose one of one, several, all)" in text
    assert "feature=99 was not used (not between 0 and 7)" in text and "overlay=maybe was not used (use 1 or 0)" in text


def test_frequency_page_reads_its_switches_from_the_link(app_env):
    at = linked_app("frequency", logf="1", exact="0")
    assert at.toggle(key="f-logx").value is True and at.toggle(key="f-analytic").value is False
    mag = chart(at, "magnitude")
    assert mag["layout"]["xaxis"]["type"] == "log"
    assert names(mag) == [f"{SGC} h=0", f"{S4D} h=0"]  # no exact SSM curves
    assert choices(at) == {"logf": "1", "exact": "0"}
    default = linked_app("frequency")
    assert default.toggle(key="f-analytic").value is True and choices(default) == {}
    assert f"{S4D} h=0 (analytic, L → ∞)" in names(chart(default, "magnitude"))


def test_kernel_layer_computes_one_layer_float32_above_65536(app_env):
    """app.store.caches.kernel_layer: (name, K) of one layer, float64 up to 65,536 taps (the extracted kernel),
    float32 above (the float64 kernel rounded once), cached per (model, L, layer)."""
    from app.store import caches
    from app.store.loading import load_path

    entry = load_path(app_env / f"{S4D}.safetensors").entry
    ck = sgconv_core.load(app_env / f"{S4D}.safetensors")
    name, K = caches.kernel_layer(entry, 300, 1)
    assert name == "layers.1" and K.dtype == np.float64 and not K.flags.writeable
    np.testing.assert_array_equal(K, extract_kernels(ck, 300)["layers.1"])
    assert caches.kernel_layer(entry, 300, 1)[1] is K  # a hit
    L_long = caches.FLOAT32_ABOVE + 8
    name, K32 = caches.kernel_layer(entry, L_long, 0)
    assert name == "layers.0" and K32.dtype == np.float32 and K32.shape == (1, 8, L_long)
    np.testing.assert_array_equal(K32, extract_kernels(ck, L_long, layers=[0])["layers.0"].astype(np.float32))
    assert caches.kernel_layer(entry, caches.FLOAT32_ABOVE, 0)[1].dtype == np.float64


def test_kernels_page_notes_are_escaped(app_env, monkeypatch):
    """A message quoting text from a file (here a refused length's message with Markdown characters) shows as
    typed: st.info gets it through ui.plain (backslash-escaped), so no emphasis or link is rendered."""
    from app.store import caches

    def refuse(digest, skey, L, layer, _entry):
        raise ValueError("layer *x* of [a](b) refuses `L`")

    monkeypatch.setattr(caches, "_kernel_layer", refuse)
    at = linked_app("kernels")
    shown = [i.value for i in at.info]
    assert f"{SGC}: layer \\*x\\* of \\[a\\](b) refuses \\`L\\`" in shown, shown


def test_card_task_keeps_an_old_listops_cards_task():
    """A ListOps card written before the depth range (L = 512, fixed depth 4, no min_depth) rebuilds its own task
    in the app (`app.state.card_task`), not today's default (L = 192, depths 3..4)."""
    from app.state import card_task
    from sgconv_core.tasks import get_task

    old = {"L": 512, "max_depth": 4, "max_args": 5, "min_length": 32, "value_p": 0.25, "n_train": 200,
           "n_val": 20, "n_test": 20}
    card = {"task": "listops", "task_seed": 0, "task_params": {"n_train": 200, "n_val": 20, "n_test": 20},
            "task_spec": {"params": old}}
    task = card_task(card)
    assert task.spec.L == 512 and get_task("listops").spec.L == 192
    x, _ = task.split("test")
    assert x.shape == (20, 512) and int((x > 0).sum(1).min()) >= 32  # the old generator's length filter
