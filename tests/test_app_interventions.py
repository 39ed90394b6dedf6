"""The Interventions page through AppTest: with the pretrained digits-sgconv, a truncate run plots exactly what
`analysis.intervene.intervene` gives for the same arguments (accuracy in %), the table shows the same numbers, a
second run is a cache hit without an exception, and bad values give one st.error line (no traceback)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from apptest import MAIN, PRE, decode, ok

from analysis.intervene import intervene

STEM = "digits-sgconv"


@pytest.fixture
def page(tmp_path, monkeypatch):
    """A session with the real pretrained digits-sgconv loaded, on the Interventions page."""
    from streamlit.testing.v1 import AppTest

    if not (PRE / f"{STEM}.safetensors").is_file():
        pytest.skip("pretrained/digits-sgconv.safetensors is not in this checkout")
    monkeypatch.setenv("KERNELSCOPE_PRETRAINED", str(PRE))
    monkeypatch.setenv("KERNELSCOPE_UPLOADS", str(tmp_path / "uploads"))
    at = ok(AppTest.from_file(MAIN, default_timeout=90).run())
    at.multiselect(key="pretrained-pick").set_value([f"{STEM}.safetensors"]).run()
    ok(at.button(key="pretrained-load").click().run())
    return ok(at.switch_page("views/interventions.py").run())


def figure(at) -> dict:
    (chart,) = at.get("plotly_chart")
    return decode(json.loads(chart.proto.spec))


def trace(fig, name):
    (t,) = [t for t in fig["data"] if t.get("name") == name]
    return t


def test_truncate_run_plots_exactly_what_intervene_gives(page):
    at = page
    at.selectbox(key="iv-kind").set_value("truncate")
    at.text_input(key="iv-values-truncate").input("1, 16, 64")
    at.number_input(key="iv-n").set_value(50)
    ok(at.run())
    ok(at.button(key="iv-run").click().run())
    assert not at.error, [e.value for e in at.error]
    want = intervene(str(PRE / f"{STEM}.safetensors"), "truncate", [1, 16, 64], None, None, 50, 1)
    fig = figure(at)
    curve = trace(fig, f"{STEM}: truncate")
    np.testing.assert_array_equal(curve["x"], [1, 16, 64])
    np.testing.assert_allclose(curve["y"], np.array(want["metric"]) * 100, rtol=1e-12)
    np.testing.assert_allclose(np.array(curve["y"]) + np.array(curve["error_y"]["array"]),
                               np.array(want["ci_high"]) * 100, rtol=1e-9)
    assert trace(fig, f"{STEM}: unchanged")["y"] == pytest.approx([want["baseline"] * 100] * 2, rel=1e-12)
    # K = 1 keeps lag 0 only: the model must lose accuracy there (a real intervention, not a copy of the baseline)
    assert want["metric"][0] < want["baseline"] - 0.1
    table = at.dataframe[0].value
    col = "accuracy (%)"
    assert list(table["K"]) == ["unchanged", "1", "16", "64"]
    shown = [float(v) for v in table[col]]
    np.testing.assert_allclose(shown, np.array([want["baseline"], *want["metric"]]) * 100, atol=0.006)
    lo_hi = [[float(x) for x in v.strip("[]").split(",")] for v in table["95 % CI"]]
    np.testing.assert_allclose(lo_hi, np.array([want["baseline_ci"], *zip(want["ci_low"], want["ci_high"])]) * 100,
                               atol=0.006)
    assert any("50 examples" in c.value for c in at.caption)
    # the same settings again: a cache hit (no forward), the same figure, no exception
    ok(at.button(key="iv-run").click().run())
    np.testing.assert_array_equal(trace(figure(at), f"{STEM}: truncate")["y"], curve["y"])


@pytest.mark.parametrize("values,needle", [("0, 4", "out of range"), ("2, x", "is not a number")])
def test_bad_values_give_one_error_line(page, values, needle):
    at = page
    at.selectbox(key="iv-kind").set_value("truncate")
    at.text_input(key="iv-values-truncate").input(values)
    ok(at.run())
    ok(at.button(key="iv-run").click().run())
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and needle in errors[0], errors
    assert not at.get("plotly_chart")
