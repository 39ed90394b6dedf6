"""analysis.attribution: Integrated Gradients completeness, token input, causal zero attribution, distance profile."""
import numpy as np
import pytest
import torch

from analysis.attribution import Attribution, DistanceProfile, attribute, distance_profile, envelope_comparison
from sgconv_core import Checkpoint, ModelConfig, SequenceModel


def _model(pool="mean", kind="sgconv", input_kind="continuous", d_input=2, d_output=3, L=128, bidir=False):
    torch.manual_seed(0)
    ka = {"kernel_dim": 8} if kind == "sgconv" else {"d_state": 8}
    cfg = ModelConfig(d_input=d_input, d_output=d_output, d_model=8, n_layers=2, kernel=kind, kernel_args=ka,
                      l_max=L, pool=pool, input_kind=input_kind, bidirectional=bidir)
    return SequenceModel(cfg).eval()


def _f(model, x, pos=None):
    with torch.no_grad():
        y = model(x)
    return y[0, pos] if y.dim() == 3 else y[0]


def test_completeness_continuous_class_output():
    m = _model("mean", d_input=2)
    x = torch.randn(128, 2, generator=torch.Generator().manual_seed(1))
    res = attribute(m, x, n_steps=32, internal_batch_size=16)
    assert isinstance(res, Attribution) and res.attr.shape == (128,) and res.L == 128
    tgt = res.target
    assert tgt == int(_f(m, x[None]).argmax())  # default: the predicted class
    diff = float(_f(m, x[None])[tgt] - _f(m, torch.zeros(1, 128, 2))[tgt])
    assert abs(res.attr.sum() - diff) <= abs(res.delta) + 1e-4
    assert abs(res.delta) < 0.02 * abs(diff) + 1e-4  # the Gauss-Legendre path integral converged
    # f_x, f_baseline are the attributed output itself; captum's delta = sum(attr) - (f(x) - f(baseline))
    assert res.f_x == pytest.approx(float(_f(m, x[None])[tgt]), rel=1e-6, abs=1e-7)
    assert res.f_baseline == pytest.approx(float(_f(m, torch.zeros(1, 128, 2))[tgt]), rel=1e-6, abs=1e-7)
    assert res.total == pytest.approx(res.f_x - res.f_baseline + res.delta, rel=1e-6, abs=1e-7)
    assert (res.output_kind, res.position, res.target) == ("class", 127, tgt)
    assert "L-1" in res.note and res.method == "IntegratedGradients"
    with pytest.raises(AttributeError):  # a frozen record
        res.target = 0


def test_token_model_layer_integrated_gradients():
    m = _model("mean", input_kind="tokens", d_input=16, d_output=10, L=64)
    ids = torch.randint(1, 16, (64,), generator=torch.Generator().manual_seed(2))
    ids[50:] = 0  # padding
    calls = []
    res = attribute(m, ids, target=3, n_steps=20, internal_batch_size=10, progress=lambda d, t: calls.append((d, t)))
    assert res.method.startswith("LayerIntegratedGradients")
    assert res.attr.shape == (64,) and res.target == 3
    assert np.all(res.attr[50:] == 0)  # pad positions: embedding equals the baseline's
    diff = float(_f(m, ids[None])[3] - _f(m, torch.zeros(1, 64, dtype=torch.long))[3])
    assert abs(res.attr.sum() - diff) <= abs(res.delta) + 1e-4
    assert calls and calls[-1][0] == calls[-1][1]


@pytest.mark.parametrize("kind", ["sgconv", "s4d"])
def test_causal_sequence_model_ignores_the_future(kind):
    m = _model("none", kind=kind, d_input=1, d_output=2, L=96)
    x = torch.randn(96, 1, generator=torch.Generator().manual_seed(3))
    res = attribute(m, x, target=1, position=40, n_steps=16, internal_batch_size=16)
    a = np.abs(res.attr)
    assert (res.output_kind, res.position, res.target) == ("sequence", 40, 1)
    assert a[:41].max() > 0
    assert a[41:].max() <= 1e-5 * a[:41].max()  # FFT round-off only
    diff = float(_f(m, x[None], 40)[1] - _f(m, torch.zeros(1, 96, 1), 40)[1])
    assert abs(res.attr.sum() - diff) <= abs(res.delta) + 1e-4
    centers, values = res.distance_profile
    assert centers[0] == 0 and values[0] == pytest.approx(a[40])
    assert res.distance_profile.centers is centers and res.distance_profile.values is values


def test_bidirectional_model_reads_the_future():
    m = _model("none", d_input=1, d_output=1, L=64, bidir=True)
    x = torch.randn(64, 1, generator=torch.Generator().manual_seed(4))
    a = np.abs(attribute(m, x, position=20, n_steps=8, internal_batch_size=8).attr)
    assert a[21:].max() > 1e-3 * a.max()


def test_checkpoint_input_and_errors():
    m = _model("last", d_input=1)
    ck = Checkpoint(path="x.safetensors", kernels=m.kernels, model=m)
    res = attribute(ck, torch.randn(1, 128, 1), target=0, n_steps=4, internal_batch_size=4)
    assert res.position == 127
    with pytest.raises(ValueError, match="no runnable model"):
        attribute(Checkpoint(path="k.pt", kernels=m.kernels), torch.randn(128, 1))
    with pytest.raises(ValueError):
        attribute(m, torch.randn(128, 1), target=7)
    assert not m.training


def test_distance_profile_known_answer():
    attr = np.zeros(101)
    attr[50] = 2.0
    attr[49] = attr[51] = -1.0  # distance 1
    attr[0] = 4.0  # distance 50
    prof = distance_profile(attr, 50, n_bins=8)
    assert isinstance(prof, DistanceProfile)
    centers, values = prof
    assert centers[0] == 0 and values[0] == 2.0
    assert centers[1] == 1.0 and values[1] == 1.0  # both distance-1 taps in the first bin
    assert np.all(np.diff(centers) > 0) and centers[-1] <= 50
    # the bins by their definition, written out here: geometric edges over distances 1..51, a distance d in the
    # bin [e_i, e_i+1); every distance 1..50 occurs twice (left and right of position 50)
    edges = np.geomspace(1.0, 51.0, 9)
    bins = [[d for d in range(1, 51) if lo <= d < hi] for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    counts = [2 * len(b) for b in bins if b]
    assert len(values) == 1 + len(counts)
    np.testing.assert_allclose(centers[1:], [np.mean(b) for b in bins if b], rtol=1e-12)
    # the far bin (distances 32..50, 38 taps) holds only the tap at distance 50: mean 4/38
    assert bins[-1] == list(range(32, 51)) and values[-1] == pytest.approx(4.0 / 38)
    # mean |attr| over every tap at distance >= 1 equals the count-weighted mean of the bins
    far = np.abs(np.delete(attr, 50))
    assert np.dot(counts, values[1:]) / sum(counts) == pytest.approx(far.mean(), rel=1e-12)


def test_envelope_comparison_scales_each_curve_to_peak_one():
    from analysis.records import RMSProfile

    prof = RMSProfile(np.array([0.0, 1.0, 3.0]), np.array([2.0, 4.0, 1.0]), 1.0, 0.0, 0.1, 0.0)
    dead = RMSProfile(np.zeros(1), np.zeros(1), np.nan, np.nan, np.nan, np.nan)
    series = envelope_comparison((np.array([0, 1, 5]), np.array([0.5, 0.25, 0.1])), {"a": prof, "b": dead})
    assert [s["label"] for s in series] == ["mean |attribution| by distance", "kernel RMS envelope a"]
    np.testing.assert_allclose(series[0]["values"], [1.0, 0.5, 0.2])
    np.testing.assert_allclose(series[1]["values"], [0.5, 1.0, 0.25])
    np.testing.assert_array_equal(series[1]["centers"], prof.centers)


def test_record_table_and_envelope_series_known_answer():
    from analysis.records import RMSProfile

    attr = np.array([0.5, -1.0, 2.0, 0.0])
    res = Attribution(attr=attr, delta=0.25, f_x=3.0, f_baseline=1.75, output_kind="sequence", position=3, target=0,
                      distance_profile=distance_profile(attr, 3, n_bins=4), method="IntegratedGradients", note="n")
    assert res.L == 4 and res.total == 1.5  # 0.5 - 1 + 2 + 0 (= f_x - f_baseline + delta here)
    cols = res.table(np.arange(8.0).reshape(4, 2))
    assert list(cols) == ["position", "attribution", "input"]
    np.testing.assert_array_equal(cols["position"], [0, 1, 2, 3])
    np.testing.assert_array_equal(cols["attribution"], attr)
    np.testing.assert_array_equal(cols["input"], [1.0, 5.0, 9.0, 13.0])  # each row's two channels summed
    assert list(res.table()) == ["position", "attribution"]
    # distances from position 3: 3, 2, 1, 0 with |attr| 0.5, 1, 2, 0; geometric edges over 1..4 (4 bins:
    # 1, 1.41, 2, 2.83, 4) put each distance in a bin of its own; peak 2, so scaled 0, 1, 0.5, 0.25
    series = res.envelope_series({"layers.0": RMSProfile(np.array([0.0, 2.0]), np.array([1.0, 4.0]),
                                                         1.0, 0.0, 0.1, 0.0)})
    assert [s["label"] for s in series] == ["mean |attribution| by distance", "kernel RMS envelope layers.0"]
    np.testing.assert_array_equal(series[0]["centers"], [0.0, 1.0, 2.0, 3.0])
    np.testing.assert_allclose(series[0]["values"], [0.0, 1.0, 0.5, 0.25], rtol=1e-15)
    np.testing.assert_allclose(series[1]["values"], [0.25, 1.0], rtol=1e-15)
