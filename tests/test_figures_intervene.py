"""`analysis.figures.intervention_figure`: the traces carry exactly the record's numbers (accuracy x100, NMSE as
is), the unchanged model's line sits at its baseline with its interval as a band, the axes fit the kind."""
from __future__ import annotations

import numpy as np
import pytest

from analysis.figures import intervention_figure, model_colors

ACC = {"kind": "truncate", "values": [1, 8, 64], "metric": [0.25, 0.5, 0.9], "metric_name": "accuracy",
       "baseline": 0.92, "baseline_ci": [0.88, 0.95], "ci_low": [0.2, 0.45, 0.86], "ci_high": [0.3, 0.56, 0.93],
       "n": 250, "data": "digits test split", "layer": None, "L": 64}
NMSE = {"kind": "compress", "values": [1, 2, 4], "metric": [0.8, 0.3, 0.11], "metric_name": "nmse",
        "baseline": 0.1, "baseline_ci": [0.09, 0.12], "ci_low": [0.7, 0.25, 0.1], "ci_high": [0.9, 0.35, 0.13],
        "n": 100, "data": "x", "layer": "layers.1", "L": 64, "compress_method": "ssm_modes",
        "params_per_channel": [4, 8, 16]}


def by_name(fig, name):
    found = [t for t in fig.data if t.name == name]
    assert len(found) == 1, [t.name for t in fig.data]
    return found[0]


def test_accuracy_traces_are_the_record_in_percent_with_the_baseline_line_and_band():
    fig = intervention_figure(ACC)
    curve = by_name(fig, "model: truncate")
    np.testing.assert_array_equal(curve.x, [1, 8, 64])
    np.testing.assert_allclose(curve.y, [25.0, 50.0, 90.0], rtol=1e-12)
    # error bars reach exactly the interval ends: y + array = ci_high, y - arrayminus = ci_low (in %)
    np.testing.assert_allclose(curve.y + curve.error_y.array, [30.0, 56.0, 93.0], rtol=1e-12)
    np.testing.assert_allclose(curve.y - curve.error_y.arrayminus, [20.0, 45.0, 86.0], rtol=1e-12)
    line = by_name(fig, "model: unchanged")
    assert list(line.y) == [pytest.approx(92.0)] * 2 and list(line.x) == [1, 64]
    band = by_name(fig, "model: unchanged 95 % interval")
    assert min(band.y) == pytest.approx(88.0) and max(band.y) == pytest.approx(95.0)
    assert min(band.x) == 1 and max(band.x) == 64 and band.fill == "toself"
    assert fig.layout.xaxis.type == "log" and "taps" in fig.layout.xaxis.title.text
    assert fig.layout.yaxis.title.text.startswith("accuracy (%)")


def test_nmse_as_is_compress_against_parameters_and_one_colour_per_model():
    other = dict(NMSE, metric=[0.5, 0.2, 0.15], params_per_channel=[16, 32, 64], compress_method="sgconv_fit")
    fig = intervention_figure({"a": NMSE, "b": other})
    colors = model_colors(["a", "b"])
    a, b = by_name(fig, "a: compress"), by_name(fig, "b: compress")
    np.testing.assert_allclose(a.y, [0.8, 0.3, 0.11], rtol=1e-12)
    np.testing.assert_array_equal(a.x, [4, 8, 16])  # params per channel, 4 N'
    np.testing.assert_array_equal(b.x, [16, 32, 64])
    assert list(a.text) == ["N'=1", "N'=2", "N'=4"] and list(b.text) == ["d=1", "d=2", "d=4"]
    assert a.line.color == colors["a"] and b.line.color == colors["b"] != colors["a"]
    assert by_name(fig, "a: unchanged").y[0] == pytest.approx(0.1)
    # the baseline spans every model's x range
    assert list(by_name(fig, "b: unchanged").x) == [4, 64]
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.title.text.startswith("NMSE")


def test_decay_and_scales_axes_are_linear_and_mixed_records_are_refused():
    fig = intervention_figure(dict(ACC, kind="decay", values=[0.0, 1.0, 2.0]))
    assert fig.layout.xaxis.type != "log"
    np.testing.assert_array_equal(by_name(fig, "model: decay").x, [0.0, 1.0, 2.0])
    sc = intervention_figure(dict(ACC, kind="scales", values=[0, 1, 2], scale_lags=[[0, 8], [8, 16], [16, 32]]))
    assert list(by_name(sc, "model: scales").text)[1] == "scale 1: lags 8-16"
    with pytest.raises(ValueError, match="one kind and one metric"):
        intervention_figure({"a": ACC, "b": NMSE})
