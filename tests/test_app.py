"""The Streamlit app through streamlit.testing.v1.AppTest: every page runs without an exception, with and without
models; the plotted data equals what `analysis` computes for the same checkpoint and settings; bad files give a
clear st.error and the session goes on.

Uploads are tested through `app.state.load_upload` (AppTest cannot drive st.file_uploader); the "path on disk"
input is tested through AppTest. Fixture checkpoints: tests/conftest.py (`app_models_dir`, `app_env`).
"""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from apptest import MAIN, REPO, chart, charts, ok, title

import sgconv_core
from analysis.decay import envelope, exp_fit, power_law_fit
from analysis.extract import extract_kernels, ssm_modes
from analysis.frequency import frequency_response, ssm_transfer

REPO_ROOT = str(REPO)
PAGES = ("kernels", "decay", "frequency", "parameters", "principles", "attribution")
SGC, S4D, S4 = "delay-sgconv", "digits-s4d", "digits-s4"
L = 256  # the fixtures' l_max


# ---------------------------------------------------------------------------------------------------- helpers
def new_app():
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(MAIN, default_timeout=60)


def trace(fig, name: str) -> dict:
    found = [t for t in fig["data"] if t.get("name") == name]
    assert found, f"no trace {name!r}; traces: {[t.get('name') for t in fig['data']]}"
    return found[0]


def arr(v) -> np.ndarray:
    return np.asarray([np.nan if x is None else x for x in v] if isinstance(v, list) else v, dtype=np.float64)


def shown(col) -> np.ndarray:
    """A per-layer table column as the page shows it (text, "–" for missing) back to floats."""
    return np.asarray([np.nan if v in ("–", "", None) else float(str(v).replace(",", "")) for v in col])


def close_shown(col, want, rtol=0.0, atol=0.0):
    """The shown values equal the computed ones to the precision shown (%.3f: atol 5e-4; %.3g: rtol 5e-3)."""
    a, b = shown(col), np.asarray(want, dtype=np.float64)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, equal_nan=True)


def close(a, b, rtol=2e-6, atol=1e-7):
    a, b = arr(a), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, equal_nan=True)


def load_pretrained(at, files):
    at.multiselect(key="pretrained-pick").set_value([f"{f}.safetensors" for f in files]).run()
    ok(at.button(key="pretrained-load").click().run())
    assert [s.value for s in at.success] == [f"Loaded **{f}**." for f in files]
    return at


def app_with(*files):
    at = ok(new_app().run())
    return load_pretrained(at, files)


def goto(at, page: str):
    return ok(at.switch_page(f"views/{page}.py").run())


def ck_of(models_dir, stem):
    return sgconv_core.load(models_dir / f"{stem}.safetensors")


def markdown_text(at) -> str:
    return "\n".join(m.value for m in at.markdown)


def link(at) -> dict[str, list[str]]:
    """The page URL's model parameters after the last run ({} when there are none)."""
    return {k: [v] if isinstance(v, str) else list(v) for k, v in at.query_params.items() if k in ("model", "path")}


def sidebar_text(at) -> str:
    return "\n".join(m.value for m in at.sidebar.markdown)


# ---------------------------------------------------------------------------------------------------- no models
def test_landing_with_no_models(app_env):
    at = ok(new_app().run())
    assert at.title[0].value == "Models"
    assert "Start here" in markdown_text(at)
    side = "\n".join(m.value for m in at.sidebar.markdown)
    assert "Device:" in side and "Torch threads:" in side and "none yet" in side
    assert not at.error


@pytest.mark.parametrize("page", PAGES)
def test_pages_without_models_point_to_models_page(app_env, page):
    at = ok(new_app().run())
    goto(at, page)
    assert any("load a model on the Models page" in i.value for i in at.info)
    assert not at.get("plotly_chart")


@pytest.mark.parametrize("page", ["kernels", "attribution"])
def test_sidebar_on_pages_that_stop_early(app_env, page):
    """A page that stops early (st.stop(): no model loaded) still has the sidebar's Runtime / Loaded-models block:
    app/main.py draws it before the page runs."""
    at = goto(ok(new_app().run()), page)
    side = sidebar_text(at)
    assert "Device:" in side and "Torch threads:" in side and "none yet" in side, side
    assert [c.value for c in at.sidebar.caption][:2] == ["Runtime", "Loaded models (0)"]


def test_empty_pretrained_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("KERNELSCOPE_PRETRAINED", str(tmp_path / "nothing-here"))
    at = ok(new_app().run())
    assert any("No checkpoints in the pretrained folder" in i.value for i in at.info)


# ---------------------------------------------------------------------------------------------------- models page
def test_models_page_loads_and_shows_what_was_detected(app_env):
    at = app_with(SGC, S4D)
    ck = ck_of(app_env, SGC)
    frames = [d.value for d in at.dataframe]
    cards = frames[0]  # the pretrained folder's card table
    assert list(cards["file"]) == sorted(p.name for p in app_env.glob("*.safetensors"))
    assert set(cards["task"]) == {"delay", "digits"}
    detected = [f for f in frames if "field" in f and "kernel parameters" in set(f["field"])]
    assert len(detected) == 2
    d = dict(zip(detected[0]["field"], detected[0]["value"], strict=True))
    s = ck.summary()
    assert d["family"] == "sgconv" and d["layout"] == s["layout"]
    assert d["layers"] == str(s["layers"]) and d["H (d_model)"] == str(s["H"]) and d["kernel_dim"] == "16"
    assert d["kernel parameters"] == f"{ck.n_kernel_params:,}" and d["total parameters"] == f"{ck.n_params:,}"
    side = sidebar_text(at)
    assert SGC in side and S4D in side and "Device:" in side
    # loading the same file again is a no-op
    ok(at.button(key="pretrained-load").click().run())
    assert len([i for i in at.info if "already loaded" in i.value]) == 2
    # remove one
    ok(at.button(key=f"remove-{S4D}").click().run())
    assert "Loaded models (1)" in [h.value for h in at.header]


def test_path_input_errors_then_success(app_env, tmp_path):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps(_Evil(str(marker))))
    rnd = tmp_path / "random.safetensors"
    rnd.write_bytes(np.random.default_rng(0).bytes(4096))
    at = ok(new_app().run())
    for bad, expect in ((str(tmp_path / "missing.safetensors"), "no such file"), (str(tmp_path), "not a file"),
                        (str(evil), "evil.pt"), (str(rnd), "random.safetensors")):
        at.text_input(key="path-input").set_value(bad)
        ok(at.button[[b.label for b in at.button].index("Load")].click().run())
        errors = [e.value for e in at.error]
        assert len(errors) == 1 and expect in errors[0], errors
        assert "Traceback" not in errors[0]
        assert not marker.exists()
    at.text_input(key="path-input").set_value(str(app_env / f"{S4}.safetensors"))
    ok(at.button[[b.label for b in at.button].index("Load")].click().run())
    assert not at.error and [s.value for s in at.success] == [f"Loaded **{S4}**."]
    goto(at, "kernels")  # the session goes on
    assert at.get("plotly_chart")
    assert not marker.exists()


def test_link_loads_pretrained_models(app_env):
    """?model=<stem>&model=<file name> loads checkpoints of the pretrained folder; unknown names give an error."""
    at = new_app()
    at.query_params["model"] = [SGC, f"{S4D}.safetensors", "../../etc/passwd"]
    ok(at.run())
    assert list(at.session_state["ks_models"]) == [SGC, S4D]
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "../../etc/passwd: no checkpoint of that name" in errors[0]
    side = sidebar_text(at)
    assert SGC in side and S4D in side
    assert link(at) == {"model": [SGC, S4D]}  # the URL names what loaded (the unknown name is dropped)
    # removing a model later does not bring it back from the link, and drops it from the URL
    ok(at.button(key=f"remove-{SGC}").click().run())
    assert list(at.session_state["ks_models"]) == [S4D]
    assert link(at) == {"model": [S4D]}
    assert not at.error
    goto(at, "kernels")  # every page keeps the URL in step
    assert list(at.session_state["ks_models"]) == [S4D] and link(at) == {"model": [S4D]}


def test_url_keeps_the_loaded_models(app_env, tmp_path):
    """Models loaded on the Models page (pretrained, by path) are written to the URL on every page; the URL in a
    new session (a reload, F5) loads them again. Uploads stay out of it; a path that is gone is a clear error."""
    import shutil

    from app import state

    own = tmp_path / "own-s4.safetensors"
    shutil.copy(app_env / f"{S4}.safetensors", own)
    at = app_with(SGC, S4D)
    at.text_input(key="path-input").set_value(str(own))
    ok(at.button[[b.label for b in at.button].index("Load")].click().run())
    up = state.load_upload((app_env / f"{S4}.safetensors").read_bytes(), "my-upload.safetensors")
    at.session_state["ks_models"]["my-upload"] = state.ModelEntry("my-upload", up.entry.path, up.entry.digest,
                                                                  up.entry.settings_json, "upload")
    for page in ("kernels", "decay"):
        goto(at, page)
        assert link(at) == {"model": [SGC, S4D], "path": [str(own)]}
    assert any("not kept in the page's link" in c.value for c in goto(at, "models").caption)

    again = new_app()  # F5: a new session with the same URL
    again.query_params.update(at.query_params)
    goto(ok(again.run()), "kernels")
    assert list(again.session_state["ks_models"]) == [SGC, S4D, "own-s4"]
    assert not again.error and len(again.get("plotly_chart")) == 3
    assert link(again) == {"model": [SGC, S4D], "path": [str(own)]}

    own.unlink()  # the file is gone: one readable error, the other models load
    gone = new_app()
    gone.query_params.update(at.query_params)
    ok(gone.run())
    errors = [e.value for e in gone.error]
    assert len(errors) == 1 and "no such file" in errors[0] and "?path=" in errors[0], errors
    assert "Traceback" not in errors[0] and list(gone.session_state["ks_models"]) == [SGC, S4D]
    assert link(gone) == {"model": [SGC, S4D]}


# ---------------------------------------------------------------------------------------------------- choices
def linked_app(page: str, **params):
    """A new session (a fresh link, or F5) on ``page`` whose URL holds the fixture models and ``params``."""
    at = new_app()
    at.query_params["model"] = [SGC, S4D]
    for k, v in params.items():
        at.query_params[k] = v
    return ok(at.switch_page(f"views/{page}.py").run())


def choices(at) -> dict:
    """The URL's choice parameters after the last run (everything but the models)."""
    return {k: v for k, v in at.query_params.items() if k not in ("model", "path")}


def test_link_restores_layer_and_length(app_env):
    """?layer=1&L=128 on the Kernels page: the widgets show them and the plots hold layers.1 at L=128 (the kernels
    analysis.extract computes for that layer and length, not the default layer 0 at l_max 256)."""
    at = linked_app("kernels", layer="1", L="128")
    assert at.selectbox(key="k-layer").value == 1
    assert at.checkbox(key="k-own-L").value is False and at.number_input(key="k-L").value == 128
    fig = chart(at, f"{SGC} · layers.1")
    assert "L=128" in title(fig)
    close(trace(fig, "h=0")["y"], extract_kernels(ck_of(app_env, SGC), 128)["layers.1"][0, 0])
    close(trace(chart(at, f"{S4D} · layers.1"), "h=0")["y"],
          extract_kernels(ck_of(app_env, S4D), 128)["layers.1"][0, 0])
    assert choices(at) == {"layer": "1", "L": "128"}  # kept in the URL
    assert not at.caption or not any("was not used" in c.value for c in at.caption)


def test_link_follows_the_widgets(app_env):
    """Changing L, the layer or the features writes them into the URL; back to a default removes them; a new
    session with that URL (F5) shows the same choices."""
    at = linked_app("decay")
    assert choices(at) == {}
    at.checkbox(key="d-own-L").uncheck().run()
    at.number_input(key="d-L").set_value(200).run()
    at.selectbox(key="d-layer").set_value(1).run()
    at.multiselect(key="d-hs").set_value([2, 5]).run()
    assert choices(ok(at)) == {"L": "200", "layer": "1", "h": "2,5"}
    again = new_app()  # F5
    again.query_params.update(at.query_params)
    ok(again.switch_page("views/decay.py").run())
    assert again.number_input(key="d-L").value == 200 and again.selectbox(key="d-layer").value == 1
    assert again.multiselect(key="d-hs").value == [2, 5]
    names = [t["name"] for t in chart(again, "layers.1")["data"]]
    assert any(n.startswith(f"{SGC} h=5") for n in names), names
    at.selectbox(key="d-layer").set_value(0).run()
    at.checkbox(key="d-own-L").check().run()
    assert choices(ok(at)) == {"h": "2,5"}
    goto(at, "models")  # another page: its URL carries no choice of the Decay page
    assert choices(at) == {}


@pytest.mark.parametrize("params, notes", [
    ({"layer": "9"}, ["layer=9 was not used (not between 0 and 1)"]),
    ({"layer": "x", "L": "abc", "h": "0,99"}, ["layer=x was not used (not a whole number)",
                                              "L=abc was not used (not a whole number)",
                                              "h=0,99 was not used (not between 0 and 7)"]),
    ({"L": "99999999999"}, ["L=99999999999 was not used (not between 8 and"]),
    ({"pick": "nobody"}, ["pick=nobody was not used (no loaded model 'nobody')"]),
])
def test_bad_link_values_fall_back_with_a_note(app_env, params, notes):
    at = linked_app("frequency", **params)
    assert at.selectbox(key="f-layer").value == 0 and at.checkbox(key="f-own-L").value is True
    assert at.multiselect(key="f-hs").value == [0] and at.multiselect(key="f-models").value == [SGC, S4D]
    shown = [c.value for c in at.caption if "was not used" in c.value]
    assert len(shown) == len(notes) and all(any(n in c for c in shown) for n in notes), shown
    assert len(at.get("plotly_chart")) == 2  # the page drew with the defaults


def test_link_picks_the_models_shown(app_env):
    at = linked_app("kernels", pick=S4D)
    assert at.multiselect(key="k-models").value == [S4D] and len(at.get("plotly_chart")) == 1
    at.multiselect(key="k-models").set_value([SGC, S4D]).run()
    assert "pick" not in choices(ok(at))


def test_linked_option_widgets():
    """ui.radio / ui.switch / ui.number (for the pages' own options): first value from the URL, back into it."""
    from streamlit.testing.v1 import AppTest

    def script(root):
        import sys

        sys.path.insert(0, root)
        from app import ui
        from app.store import link

        link.begin_run()
        ui.radio(None, "Axes", ["linear", "log-log (|k|)"], key="ax", param="axes", horizontal=True)
        ui.switch(None, "Log f", key="lf", param="logf")
        ui.number(None, "h", 0, 7, 0, key="hh", param="h")
        link.drop_unused()

    at = AppTest.from_function(script, default_timeout=30, args=(REPO_ROOT,))
    at.query_params.update({"axes": "log-log", "logf": "1", "h": "5", "stale": "x"})
    ok(at.run())
    assert at.radio(key="ax").value == "log-log (|k|)" and at.toggle(key="lf").value is True
    assert at.number_input(key="hh").value == 5
    at.radio(key="ax").set_value("linear").run()
    at.number_input(key="hh").set_value(3).run()
    assert {k: v for k, v in at.query_params.items()} == {"logf": "1", "h": "3", "stale": "x"}
    bad = AppTest.from_function(script, default_timeout=30, args=(REPO_ROOT,))
    bad.query_params.update({"axes": "polar", "logf": "maybe", "h": "8"})
    ok(bad.run())
    assert bad.radio(key="ax").value == "linear" and bad.toggle(key="lf").value is False
    assert bad.number_input(key="hh").value == 0
    assert [c.value for c in bad.caption] == [
        "The link's axes=polar was not used (choose one of linear, log-log); showing the default.",
        "The link's logf=maybe was not used (use 1 or 0); showing the default.",
        "The link's h=8 was not used (not between 0 and 7); showing the default."]
    assert dict(bad.query_params.items()) == {}


def test_settings_box(app_env):
    at = ok(new_app().run())
    at.selectbox(key="setting-disc").set_value("bilinear").run()
    at.text_input(key="setting-extra").set_value("decay_min=1, decay_max=3").run()
    load_pretrained(at, [SGC])
    assert any("holds its own kernel settings" in i.value for i in at.info)
    at.text_input(key="setting-extra").set_value("{not json").run()
    assert any("not valid JSON" in e.value for e in ok(at).error)


# ---------------------------------------------------------------------------------------------------- kernels page
def test_kernels_page_plots_the_extracted_kernels(app_env):
    at = goto(app_with(SGC, S4D), "kernels")
    ck_s, ck_d = ck_of(app_env, SGC), ck_of(app_env, S4D)
    K_s, K_d = extract_kernels(ck_s, L), extract_kernels(ck_d, L)
    assert len(at.get("plotly_chart")) == 2  # side by side
    fig = chart(at, f"{SGC} · layers.0")
    close(trace(fig, "h=0")["x"], np.arange(L))
    close(trace(fig, "h=0")["y"], K_s["layers.0"][0, 0])
    from sgconv_core.tasks import get_task

    ideal = get_task("delay", **json.loads(json.dumps(ck_s.card["task_params"]))).ideal_kernel(L)
    close(trace(fig, "ideal")["y"], ideal)
    assert "reference h=0" in [t["name"] for t in fig["data"]]
    close(trace(chart(at, f"{S4D} · layers.0"), "h=0")["y"], K_d["layers.0"][0, 0])
    assert len(at.get("download_button")) == 2

    # switch layer, several channels, log-log
    at.selectbox(key="k-layer").set_value(1).run()
    close(trace(chart(ok(at), f"{SGC} · layers.1"), "h=0")["y"], K_s["layers.1"][0, 0])
    at.radio(key="k-view").set_value("several").run()
    at.multiselect(key="k-hs").set_value([2, 5]).run()
    at.radio(key="k-axes").set_value("log-log (|k|)").run()
    fig = chart(ok(at), f"{S4D} · layers.1")
    assert fig["layout"]["xaxis"]["type"] == "log" and fig["layout"]["yaxis"]["type"] == "log"
    close(trace(fig, "h=5")["x"], np.arange(L) + 1)
    close(trace(fig, "h=5")["y"], np.abs(K_d["layers.1"][0, 5]))

    # overlay on shared axes
    at.toggle(key="k-overlay").set_value(True).run()
    figs = charts(ok(at))
    assert len(figs) == 1
    close(trace(figs[0], f"{SGC}: h=2")["y"], np.abs(K_s["layers.1"][0, 2]))
    close(trace(figs[0], f"{S4D}: h=5")["y"], np.abs(K_d["layers.1"][0, 5]))

    # all channels as a heatmap (the overlay toggle does not apply)
    at.radio(key="k-view").set_value("all (heatmap)").run()
    figs = charts(ok(at))
    assert len(figs) == 2 and all(f["data"][0]["type"] == "heatmap" for f in figs)
    close(chart(at, f"{SGC} · layers.1")["data"][0]["z"], K_s["layers.1"].reshape(-1, L))

    # one common length
    at.radio(key="k-view").set_value("one").run()
    at.checkbox(key="k-own-L").uncheck().run()
    at.number_input(key="k-L").set_value(512).run()
    K512 = extract_kernels(ck_d, 512)["layers.1"][0, 0]
    fig = chart(ok(at), "layers.1: ")  # still overlaid on log-log axes
    close(trace(fig, f"{S4D}: h=0")["x"], np.arange(512) + 1)
    close(trace(fig, f"{S4D}: h=0")["y"], np.abs(K512))
    at.toggle(key="k-overlay").set_value(False).run()
    at.radio(key="k-axes").set_value("linear").run()
    close(trace(chart(ok(at), f"{S4D} · layers.1 (L=512)"), "h=0")["y"], K512)


# ---------------------------------------------------------------------------------------------------- decay page
def test_decay_page_matches_analysis(app_env):
    from analysis.measure import analyze

    at = goto(app_with(SGC, S4D), "decay")
    ck_s, ck_d = ck_of(app_env, SGC), ck_of(app_env, S4D)
    fig = chart(at, "RMS envelope and fits")
    k = extract_kernels(ck_s, L)["layers.0"][0, 0]
    centers, values = envelope(k, stat="rms")
    env_tr = trace(fig, f"{SGC} h=0")
    close(env_tr["x"], centers + 1)
    close(env_tr["y"], np.where(values > 0, values, np.nan))
    pw = power_law_fit(k)
    pos = np.geomspace(1.0, L, 200)
    close(trace(fig, f"{SGC} h=0: power law t={pw['t']:.2f}")["y"], np.exp(pw["log_amplitude"]) * pos ** -pw["t"])
    ex = exp_fit(k)
    assert f"{SGC} h=0: exp r={ex['r']:.2g}/tap" in [t["name"] for t in fig["data"]]

    table = [d.value for d in at.dataframe if "range90" in d.value.columns][0]
    for ck, name in ((ck_s, SGC), (ck_d, S4D)):
        want = analyze(ck, L).layers
        got = table[table["model"] == name]
        close_shown(got["t"], [r.t_median for r in want], atol=5e-4)
        close_shown(got["range90"], [r.range90_median for r in want], atol=0.5)  # %.0f
        close_shown(got["r (1/tap)"], [r.r_median for r in want], rtol=5e-3)

    poles = chart(at, "poles")
    lam = ssm_modes(ck_d.kernels[0])[1].reshape(-1)
    close(trace(poles, S4D)["x"], lam.real)
    close(trace(poles, S4D)["y"], lam.imag)
    assert SGC not in [t["name"] for t in poles["data"]]  # SGConv has no poles


# ---------------------------------------------------------------------------------------------------- frequency
def test_frequency_page_matches_analysis(app_env):
    from analysis.measure import analyze

    at = goto(app_with(SGC, S4D), "frequency")
    ck_s, ck_d = ck_of(app_env, SGC), ck_of(app_env, S4D)
    mag, phase = chart(at, "magnitude"), chart(at, "phase")
    k = extract_kernels(ck_s, L)["layers.0"][0, 0]
    fr = frequency_response(k)
    close(trace(mag, f"{SGC} h=0")["x"], fr["freq"])
    close(trace(mag, f"{SGC} h=0")["y"], np.where(np.isfinite(fr["mag_db"]), fr["mag_db"], np.nan), rtol=1e-5)
    close(trace(phase, f"{SGC} h=0")["y"], fr["phase"], rtol=1e-5, atol=1e-5)
    kd = extract_kernels(ck_d, L)["layers.0"][0, 0]
    frd = frequency_response(kd)
    close(trace(mag, f"{S4D} h=0 (FFT)")["y"], frd["mag_db"], rtol=1e-5)
    r, lam = ssm_modes(ck_d.kernels[0])
    Hinf = ssm_transfer(r[0, 0], lam[0], 2 * np.pi * frd["freq"], None)
    close(trace(mag, f"{S4D} h=0 (analytic, L → ∞)")["y"], 20 * np.log10(np.abs(Hinf)), rtol=1e-5)
    # the exact response of the length-L kernel equals its FFT
    close(trace(mag, f"{S4D} h=0 (analytic, length L)")["y"], frd["mag_db"], rtol=1e-4, atol=1e-4)
    at.toggle(key="f-analytic").set_value(False).run()
    assert [t["name"] for t in chart(ok(at), "magnitude")["data"]] == [f"{SGC} h=0", f"{S4D} h=0"]

    table = [d.value for d in at.dataframe if "bandwidth" in d.value.columns][0]
    for ck, name in ((ck_s, SGC), (ck_d, S4D)):
        want = analyze(ck, L).layers
        got = table[table["model"] == name]
        close_shown(got["peak gain dB"], [r.peak_gain_db_median for r in want], rtol=5e-3)
        close_shown(got["bandwidth"], [r.bandwidth_median for r in want], rtol=5e-3)


# ---------------------------------------------------------------------------------------------------- parameters
def test_parameters_page_matches_analysis(app_env):
    from analysis.fit import DEFAULT_DIMS, fit_curve
    from analysis.params import DEFAULT_LENGTHS, param_count

    at = goto(app_with(SGC, S4D), "parameters")
    fig = chart(at, "kernel parameters per layer vs length")
    lengths = sorted(set(DEFAULT_LENGTHS) | {L})
    tr = trace(fig, f"{SGC} (sgconv)")
    close(tr["x"], lengths)
    close(tr["y"], [param_count("sgconv", n, 8, 1, d=16) for n in lengths])
    close(trace(fig, f"{S4D} (s4d)")["y"], [param_count("s4d", L, 8, 1, N=16)] * len(lengths))
    assert "free kernel" in [t["name"] for t in fig["data"]]

    k = extract_kernels(ck_of(app_env, SGC), L)["layers.0"][0, 0]
    rows = fit_curve(k, dims=[d for d in DEFAULT_DIMS if d <= L], m=2.0, mode="cat")
    fit = chart(at, "best SGConv fit")
    close(fit["data"][0]["x"], [r["n_params"] for r in rows])
    close(fit["data"][0]["y"], [max(r["rel_error"], 1e-16) for r in rows], rtol=1e-6, atol=1e-12)
    at.selectbox(key="p-model").set_value(S4D).run()
    at.number_input(key="p-h").set_value(3).run()
    k = extract_kernels(ck_of(app_env, S4D), L)["layers.0"][0, 3]
    rows = fit_curve(k, dims=[d for d in DEFAULT_DIMS if d <= L], m=2.0, mode="cat")
    close(chart(ok(at), "best SGConv fit")["data"][0]["y"], [max(r["rel_error"], 1e-16) for r in rows],
          rtol=1e-6, atol=1e-12)


# ---------------------------------------------------------------------------------------------------- attribution
@pytest.mark.parametrize("stem", [SGC, S4D])
def test_attribution_page_matches_captum(app_env, stem):
    from analysis.attribution import attribute
    from sgconv_core.tasks import get_task

    at = goto(app_with(stem), "attribution")
    assert any("Run integrated gradients" in i.value for i in at.info)
    at.number_input(key="a-idx").set_value(3).run()
    ok(at.button(key="a-run").click().run())
    ck = ck_of(app_env, stem)
    task = get_task(ck.card["task"], seed=0, **ck.card["task_params"])
    x, _ = task.split("test")
    if ck.card["task"] == "delay":
        want = attribute(ck, x[3], target=0, position=L - 1, n_steps=32, internal_batch_size=10)
    else:
        want = attribute(ck, x[3], target=None, n_steps=32, internal_batch_size=10)
    fig = chart(at, f"{stem}: test example 3")
    close(trace(fig, "attribution")["y"], want.attr, rtol=1e-5, atol=1e-9)
    dist = np.where(want.distance_profile.values > 0, want.distance_profile.values, np.nan)
    close(trace(fig, "|attr| by distance")["y"], dist, rtol=1e-5, atol=1e-12)
    assert fig["layout"]["yaxis"]["title"]["text"] == "attribution"  # the attribution per position
    assert fig["layout"]["yaxis3"]["title"]["text"] == "mean |attribution|"  # by distance (yaxis2: the input)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Convergence δ"] == f"{want.delta:.3g}"
    assert metrics["f(x)"] == f"{want.f_x:.4g}"
    assert metrics["f(baseline)"] == f"{want.f_baseline:.4g}"
    assert metrics["Σ attributions"] == f"{float(np.sum(want.attr)):.4g}"
    env = chart(at, "attribution vs kernel envelopes")
    close(trace(env, "mean |attribution| by distance")["y"],
          want.distance_profile.values / want.distance_profile.values.max(), rtol=1e-5, atol=1e-12)
    assert [t["name"] for t in env["data"]][:3] == ["mean |attribution| by distance", "kernel RMS envelope layers.0",
                                                    "kernel RMS envelope layers.1"]


def test_length_box_is_capped_by_memory(app_env):
    from sgconv_core.lengths import APP_MAX_KERNEL_VALUES, APP_MAX_LENGTH

    at = goto(app_with(SGC), "kernels")
    at.checkbox(key="k-own-L").uncheck().run()
    box = ok(at).number_input(key="k-L")
    assert box.max == min(APP_MAX_LENGTH, APP_MAX_KERNEL_VALUES // 8) and box.value == L  # H = 8, C_k = 1


def test_unexpected_page_error_is_one_readable_line():
    """main.py's last guard: an exception a page did not expect becomes one st.error, never a traceback."""
    from streamlit.testing.v1 import AppTest

    def script(root):
        import sys

        sys.path.insert(0, root)
        from app import ui

        try:
            raise RuntimeError("boom\nsecond line")
        except RuntimeError as e:
            ui.page_failed("Kernels", e)
        import streamlit as st

        st.button("next", key="next")

    at = AppTest.from_function(script, default_timeout=30, args=(REPO_ROOT,))
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == ["The Kernels page could not finish (RuntimeError: boom). Change the "
                                           "settings above or load another model; the details are in the "
                                           "server's log."]


# ---------------------------------------------------------------------------------------------------- uploads
class _Evil:
    """A pickle whose loading would run a shell command creating ``marker``."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _linear_state_dict_bytes(tmp_path) -> bytes:
    path = tmp_path / "linear.pt"
    torch.save(torch.nn.Linear(4, 3).state_dict(), path)
    return path.read_bytes()


@pytest.fixture
def bad_uploads(app_env, tmp_path):
    """(file name, bytes, marker file) of every bad upload."""
    from app import state  # noqa: F401  (import after app_env set the upload folder)

    marker = tmp_path / "PWNED"
    good = (app_env / f"{SGC}.safetensors").read_bytes()
    evil_zip = tmp_path / "evil_zip.pt"
    torch.save({"state_dict": _Evil(str(marker))}, evil_zip)  # a torch zip file whose pickle runs a command
    return marker, [
        ("random.safetensors", np.random.default_rng(1).bytes(10_000)),
        ("random.pt", np.random.default_rng(2).bytes(10_000)),
        ("evil.pt", pickle.dumps(_Evil(str(marker)))),
        ("evil_zip.pt", evil_zip.read_bytes()),
        ("truncated.safetensors", good[: len(good) // 2]),
        ("linear.pt", _linear_state_dict_bytes(tmp_path)),
        ("empty.ckpt", b""),
    ]


def test_bad_uploads_give_clear_errors_and_the_next_load_works(bad_uploads, app_env):
    from app import state

    marker, cases = bad_uploads
    for name, data in cases:
        res = state.load_upload(data, name)
        assert not res.ok and res.checkpoint is None, name
        assert isinstance(res.error, str) and name in res.error, (name, res.error)
        assert "Traceback" not in res.error and len(res.error) < 1000
        assert str(state.uploads_dir()) not in res.error  # named as uploaded, not by where it was stored
        assert not marker.exists(), f"{name}: the pickle's command ran"
    good = state.load_upload((app_env / f"{S4D}.safetensors").read_bytes(), f"{S4D}.safetensors")
    assert good.ok and good.entry.name == S4D and good.checkpoint.family == "s4d"
    assert Path(good.entry.path).read_bytes() == (app_env / f"{S4D}.safetensors").read_bytes()
    assert not marker.exists()


def test_bad_uploads_through_the_uploader_widget(bad_uploads, app_env):
    """The same files through st.file_uploader on the Models page: one st.error each, naming the file, no
    traceback, nothing executed; then a good upload loads and the Kernels page plots it."""
    marker, cases = bad_uploads
    at = ok(new_app().run())
    at.file_uploader(key="upload").set_value([(n, d, "application/octet-stream") for n, d in cases if d]).run()
    errors = [e.value for e in ok(at).error]
    names = [n for n, d in cases if d]
    assert len(errors) == len(names), errors
    for name, err in zip(names, errors, strict=True):
        assert name in err and "Traceback" not in err, (name, err)
    assert not marker.exists()
    assert "ks_models" not in at.session_state or not at.session_state["ks_models"]
    good = (app_env / f"{S4D}.safetensors").read_bytes()
    at.file_uploader(key="upload").set_value((f"{S4D}.safetensors", good, "application/octet-stream")).run()
    assert [s.value for s in ok(at).success] == [f"Loaded **{S4D}**."] and not at.error
    close(trace(chart(goto(at, "kernels"), f"{S4D} · layers.0"), "h=0")["y"],
          extract_kernels(ck_of(app_env, S4D), L)["layers.0"][0, 0])
    assert not marker.exists()


def test_upload_names_are_sanitised(app_env):
    from app import state

    res = state.load_upload((app_env / f"{SGC}.safetensors").read_bytes(), "../../etc/my model?.safetensors")
    assert res.ok
    p = Path(res.entry.path)
    assert p.name == "my_model_.safetensors" and state.uploads_dir() in p.parents


def test_load_path_never_raises(app_env):
    from app import state

    assert "Give the path" in state.load_path("").error
    res = state.load_path(app_env / f"{S4}.safetensors", {"disc": "zoh"})
    assert res.ok and res.notes and "holds its own kernel settings" in res.notes[0]
    assert res.entry.settings == {}


def test_parse_extra_settings():
    from app.state import parse_extra_settings

    assert parse_extra_settings("") == {}
    assert parse_extra_settings("decay_min=1, mode=cat_randn\nis_real=true") == {
        "decay_min": 1, "mode": "cat_randn", "is_real": True}
    assert parse_extra_settings('{"init_scale": 2}') == {"init_scale": 2}
    for bad in ("{oops", "[1, 2]", "novalue", "1x=2"):
        with pytest.raises(ValueError):
            parse_extra_settings(bad)


def test_uploaded_model_shows_on_every_page(app_env):
    """A model registered through the upload path works on every page like a pretrained one."""
    from app import state

    at = ok(new_app().run())
    res = state.load_upload((app_env / f"{S4}.safetensors").read_bytes(), "my-s4.safetensors")
    assert res.ok
    at.session_state["ks_models"] = {"my-s4": state.ModelEntry("my-s4", res.entry.path, res.entry.digest,
                                                               res.entry.settings_json, "upload")}
    for page in PAGES:
        goto(at, page)
        assert not at.error
    close(trace(chart(goto(at, "kernels"), "my-s4 · layers.0"), "h=0")["y"],
          extract_kernels(ck_of(app_env, S4), L)["layers.0"][0, 0])


def test_uploads_with_the_same_name_and_size_load_as_themselves(app_env):
    """Issue 14: an upload is never swapped for a file already stored under its name with the same size."""
    import hashlib

    from app import state

    a = (app_env / f"{S4}.safetensors").read_bytes()
    ck_a = sgconv_core.load(app_env / f"{S4}.safetensors")
    # b: same size as a, different content (one kernel weight changed in place in the tensor data)
    b = bytearray(a)
    b[-3] ^= 0x01
    b = bytes(b)
    assert len(a) == len(b) and a != b
    res_a = state.load_upload(a, "model.safetensors")
    res_b = state.load_upload(b, "model.safetensors")
    assert res_a.ok and res_b.ok, (res_a.error, res_b.error)
    assert Path(res_a.entry.path).read_bytes() == a and Path(res_b.entry.path).read_bytes() == b
    assert res_a.entry.digest == hashlib.sha256(a).hexdigest() and res_b.entry.digest == hashlib.sha256(b).hexdigest()

    # A stale or tampered file of the same name and size in the upload's own folder is replaced, not loaded.
    target = Path(res_a.entry.path)
    target.write_bytes(b)
    res = state.load_upload(a, "model.safetensors")
    assert res.ok and Path(res.entry.path).read_bytes() == a and res.entry.digest == hashlib.sha256(a).hexdigest()
    assert len(state.checkpoint(res.entry).kernels) == len(ck_a.kernels)
    assert not [p for p in target.parent.iterdir() if p.name.endswith(".part")]


def test_card_row_shows_the_test_value_with_its_interval_and_n():
    """The Models page's card table: the test value as "value [low, high] (n)", accuracy in % there and in the
    val and baseline columns (one unit per quantity), NMSE as is; the raw fraction and n are not repeated."""
    from app.ui import TEST_VALUE_COLUMN, card_row

    acc = card_row({"task": "listops", "metric": "accuracy", "test_value": 0.372, "test_ci": [0.343, 0.402],
                    "test_n": 1000, "val_value": 0.389, "baseline": 0.128})
    assert acc[TEST_VALUE_COLUMN] == "37.2 [34.3, 40.2] % (1,000)"
    assert acc["val_value"] == "38.9 %" and acc["baseline"] == "12.8 %"
    assert "test_value" not in acc and "test_n" not in acc
    nmse = card_row({"task": "delay", "metric": "nmse", "test_value": 0.0115, "test_ci": [0.0113, 0.0117],
                     "test_n": 500, "val_value": 0.0117, "baseline": 1.0})
    assert nmse[TEST_VALUE_COLUMN] == "0.0115 [0.0113, 0.0117] (500)" and nmse["val_value"] == "0.0117"
    old = card_row({"task": "digits", "metric": "accuracy", "test_value": 0.98})  # a card without an interval
    assert old[TEST_VALUE_COLUMN] == "98.0 %"
