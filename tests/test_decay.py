"""Known-answer tests for analysis.decay: power-law / exponential fits, energy ranges, poles."""

import math
import warnings

import numpy as np
import pytest

from analysis.decay import (
    decay_summary,
    effective_range,
    energy_curve,
    envelope,
    exp_fit,
    exp_rate,
    pole_decay,
    power_law_exponent,
    power_law_fit,
    summarize_channels,
    summarize_layer,
)

L = 4096
POS = np.arange(L, dtype=np.float64)  # SGConv's pos = lag = 0..L-1; decay (pos+1)^-t


def _noise(seed):
    return 1.0 + 0.3 * np.random.default_rng(seed).standard_normal(L)


# Spread of the estimate over seeds (50 seeds, t = 0.5): std ~2 % of t, so 5 % is ~2.5 sigma;
# the seeds are fixed, so the tests are deterministic.
@pytest.mark.parametrize("t", [0.5, 1.0, 2.0])
def test_power_law_exponent_noisy(t):
    k = (POS + 1) ** -t * _noise(0)
    assert power_law_exponent(k) == pytest.approx(t, rel=0.05)


@pytest.mark.parametrize("t", [0.5, 1.0, 2.0])
def test_power_law_exponent_with_random_sign_carrier(t):
    sign = np.random.default_rng(1).choice([-1.0, 1.0], L)
    k = (POS + 1) ** -t * np.cos(0.3 * POS) * sign * _noise(2)
    assert power_law_exponent(k) == pytest.approx(t, rel=0.05)


def test_power_law_fit_exact_and_quality():
    fit = power_law_fit(3.0 * (POS + 1) ** -1.5)
    assert fit["t"] == pytest.approx(1.5, rel=1e-3)
    assert fit["log_amplitude"] == pytest.approx(math.log(3.0), abs=0.02)
    assert fit["r2"] > 0.9999
    assert fit["n_points"] >= 10
    flat = power_law_fit(np.ones(64))  # fallback to all bins for a short kernel; t = 0
    assert flat["t"] == pytest.approx(0.0, abs=1e-12) and flat["r2"] == 1.0


@pytest.mark.parametrize("r", [0.001, 0.01])
def test_exp_rate_noisy(r):
    k = np.exp(-r * POS) * _noise(3)
    assert exp_rate(k) == pytest.approx(r, rel=0.05)


def test_exp_fit_exact():
    fit = exp_fit(2.0 * np.exp(-0.02 * (POS + 1)))
    assert fit["r"] == pytest.approx(0.02, rel=1e-9)
    # RMS over a 64-tap bin of exp(-r pos) = value at the bin centre * sqrt(sinh(64 r) / (64 r))
    bias = 0.5 * math.log(math.sinh(64 * 0.02) / (64 * 0.02))
    assert fit["log_amplitude"] == pytest.approx(math.log(2.0) + bias, abs=1e-3)
    assert fit["r2"] == pytest.approx(1.0, abs=1e-12)


def test_envelope_shapes_and_centers():
    k = (POS + 1) ** -1.0 * np.cos(0.3 * POS)
    c, v = envelope(k)
    assert c[0] == 0.0 and v[0] == pytest.approx(1.0)
    assert np.all(np.diff(c) > 0) and c[-1] < L and c.shape == v.shape
    assert len(c) <= 65  # lag 0 + at most 64 bins, empty head bins dropped
    c2, v2 = envelope(k, stat="rms")
    assert np.allclose(c, c2) and np.all(v2 <= v + 1e-15)
    c3, v3 = envelope(np.arange(8.0), n_bins=64)  # short kernel: one tap per non-empty bin
    assert np.allclose(c3, np.arange(8)) and np.allclose(v3, np.arange(8))
    with pytest.raises(ValueError, match="stat"):
        envelope(k, stat="mean")


def test_energy_curve_and_effective_range():
    k = np.array([3.0, 0.0, 0.0, 4.0])  # energies 9, 0, 0, 16 of 25
    assert np.allclose(energy_curve(k), [0.36, 0.36, 0.36, 1.0])
    assert effective_range(k, 0.36) == 1
    assert effective_range(k, 0.37) == 4
    assert effective_range(k, 0.5) == 4
    assert effective_range(k, 1.0) == 4
    padded = np.concatenate([k, np.zeros(12)])  # trailing zeros add no range
    assert [effective_range(padded, f) for f in (0.36, 0.5, 1.0)] == [1, 4, 4]
    spike = np.zeros(100)
    spike[5] = -2.0
    assert {effective_range(spike, f) for f in (1e-9, 0.5, 0.99, 1.0)} == {6}


def test_effective_range_errors():
    with pytest.raises(ValueError, match="zero"):
        effective_range(np.zeros(16), 0.5)
    for bad in (0.0, -0.1, 1.01, float("nan")):
        with pytest.raises(ValueError, match="frac"):
            effective_range(np.ones(16), bad)


def test_input_validation():
    k = np.ones(32)
    k[7] = np.nan
    with pytest.raises(ValueError, match="NaN.*lag 7"):
        power_law_exponent(k)
    k[7] = np.inf
    with pytest.raises(ValueError, match="Inf"):
        exp_rate(k)
    with pytest.raises(ValueError, match="length 7"):
        envelope(np.ones(7))
    with pytest.raises(ValueError, match="1-D"):
        decay_summary(np.ones((2, 16)))
    with pytest.raises(ValueError, match="complex"):
        energy_curve(np.ones(16, dtype=complex))


def test_zero_tail_emits_no_warnings():
    k = (POS + 1) ** -1.0
    k[1000:] = 0.0  # exact zeros in the tail (e.g. a cropped / zero-padded kernel)
    k[500:510] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c, v = envelope(k)
        s = decay_summary(k)
    assert np.isfinite(s["t"]) and np.isfinite(s["r"]) and s["range99"] <= 1000
    assert np.any(v == 0) and np.all(np.isfinite(c))


def test_decay_summary_and_layer():
    rng = np.random.default_rng(4)
    pos = POS[:1024]
    ts_true = (0.5, 1.0, 1.5, 2.0)
    K = np.stack([(pos + 1) ** -t * (1 + 0.1 * rng.standard_normal(1024)) for t in ts_true])
    K = K.reshape(2, 2, 1024)
    rows = summarize_channels(K)
    assert [r["index"] for r in rows] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert set(rows[0]) >= {"t", "t_r2", "r", "r_r2", "range50", "range90", "range99"}
    ts = [r["t"] for r in rows]
    assert np.allclose(ts, ts_true, rtol=0.05)
    assert all(r["range50"] <= r["range90"] <= r["range99"] for r in rows)
    lay = summarize_layer(K)
    assert lay["n_channels"] == 4 and lay["n_zero"] == 0
    assert lay["t"]["median"] == pytest.approx(np.median(ts))
    assert lay["t"]["iqr"] == pytest.approx(np.percentile(ts, 75) - np.percentile(ts, 25))
    # a dead (all-zero) channel gives NaNs and is excluded from the layer statistics
    K2 = np.concatenate([K.reshape(4, 1024), np.zeros((1, 1024))])
    rows2 = summarize_channels(K2)
    assert math.isnan(rows2[-1]["t"]) and rows2[-1]["index"] == (4,)
    lay2 = summarize_layer(rows2)
    assert lay2["n_zero"] == 1 and lay2["t"]["median"] == pytest.approx(lay["t"]["median"])
    with pytest.raises(ValueError, match="shape"):
        summarize_channels(np.ones(16))


def test_pole_decay():
    out = pole_decay(np.array([0.5]))
    assert out["half_life"] == 1.0  # exactly: ln2 / -ln(0.5)
    assert out["slowest_rate"] == pytest.approx(math.log(2.0))
    lam = np.array([[0.9 * np.exp(0.3j), 0.99 * np.exp(-1j)], [0.5, 0.0]])
    out = pole_decay(lam)
    assert out["rates"].shape == (2, 2) and out["rates"][1, 1] == np.inf
    assert out["slowest_index"] == (0, 1)
    assert out["half_life"] == pytest.approx(math.log(2) / -math.log(0.99))
    dt, re_a = 0.01, -0.5  # |lambda| = exp(dt * Re A): half-life ln2 / (0.005) taps
    assert pole_decay(np.exp(dt * (re_a + 3j)))["half_life"] == pytest.approx(math.log(2) / 0.005)
    assert pole_decay([1.0, 0.5])["half_life"] == math.inf
    assert pole_decay([1.01j])["half_life"] == math.inf
    with pytest.raises(ValueError):
        pole_decay([])
    with pytest.raises(ValueError):
        pole_decay([np.nan])


@pytest.mark.parametrize("L", [2, 3, 17, 100, 1024, 4099, 65536])
@pytest.mark.parametrize("n_bins", [1, 7, 32, 200])
def test_bin_assignment_equals_scipy_binned_statistic(L, n_bins):
    from scipy.stats import binned_statistic

    from analysis.decay import _runs

    for x, edges in [(np.arange(1, L, dtype=float), np.geomspace(1.0, max(L - 1.0, 1.0 + 1e-9), n_bins + 1)),
                     (np.arange(L, dtype=float), np.linspace(-0.5, L - 0.5, n_bins + 1))]:
        if x.size == 0:
            continue
        b = binned_statistic(x, x, "count", bins=edges).binnumber
        cnt = np.bincount(b, minlength=len(edges) + 1)[1:len(edges)]
        nz = np.flatnonzero(cnt)
        starts, counts = _runs(x, edges)
        np.testing.assert_array_equal(counts, cnt[nz])
        np.testing.assert_array_equal(starts, np.concatenate([[0], np.cumsum(cnt)[:-1]])[nz])


def test_sgconv_reference_matches_a_built_kernel_with_known_decay():
    """The reference envelope's parameters come from the kernel module, and its slope is -log2 m past d."""
    import torch

    from analysis.decay import reference_envelope, sgconv_decay_params
    from sgconv_core.kernels import SGConvKernel

    torch.manual_seed(0)
    k = SGConvKernel(4, l_max=1024, kernel_dim=16, decay_min=2.0, decay_max=4.0)
    d, m = sgconv_decay_params(k, 3)
    assert d == 16 and m == pytest.approx(float(k.multiplier.reshape(-1)[3]))
    c, curve = reference_envelope(np.ones(5), np.array([1.0, 8.0, 16.0, 64.0, 256.0]), d, m)
    assert curve[0] == curve[1] == curve[2]  # flat over the first scale
    assert np.log(curve[4] / curve[3]) / np.log(4.0) == pytest.approx(-np.log2(m))


def test_envelope_fit_known_answers_and_dead_channel():
    from analysis.decay import envelope_fit

    k = 3.0 * (POS + 1) ** -1.5
    fit = envelope_fit(k)
    assert fit.power["t"] == pytest.approx(1.5, rel=1e-3) and fit.power["r2"] == pytest.approx(1.0, abs=1e-6)
    e = envelope_fit(np.exp(-0.02 * (POS + 1)))
    assert e.exp["r"] == pytest.approx(0.02, rel=1e-9)
    s = fit.series("x")
    assert s["label"] == "x" and s["power"] is fit.power and s["exp"] is fit.exp
    assert s["centers"][0] == 0.0 and s["values"][0] == pytest.approx(3.0)  # lag 0 is its own point: |k[0]|
    assert envelope_fit(np.zeros(64)) is None


def test_pole_summary():
    from analysis.decay import pole_summary

    p = pole_summary(np.array([[0.5, 0.9j], [0.25, -0.8]]))
    assert p.modes == 4 and p.max_abs_pole == pytest.approx(0.9)
    assert p.slowest_rate == pytest.approx(-math.log(0.9)) and p.half_life == pytest.approx(math.log(2) / -math.log(0.9))


def test_reference_envelopes_own_and_given_parameters():
    """SGConv kernels use their own (d, m) (the registry's decay knob 't'); other families the given ones."""
    import torch

    from analysis.decay import has_builtin_decay, reference_envelope, reference_envelopes, sgconv_decay_params
    from sgconv_core.kernels import S4DKernel, SGConvKernel

    assert has_builtin_decay("sgconv") and not has_builtin_decay("s4d") and not has_builtin_decay("nonsense")
    torch.manual_seed(0)
    sg = SGConvKernel(4, l_max=512, kernel_dim=16, decay_min=2.0, decay_max=4.0)
    with torch.no_grad():
        K = sg(512).double().numpy()
    refs = reference_envelopes(sg, K, [(0, 1), (0, 3)], d=999, m=9.0)
    for c, h in [(0, 1), (0, 3)]:
        d, m = sgconv_decay_params(sg, h)
        centers, _ = envelope(K[c, h], 64, "rms")
        want = reference_envelope(K[c, h], centers, d, m)
        np.testing.assert_array_equal(refs[(c, h)][0], centers)  # the envelope's own lag bins
        np.testing.assert_allclose(refs[(c, h)][1], want[1])
        assert want[1][0] == pytest.approx(np.sqrt(np.mean(K[c, h, :d] ** 2)), rel=1e-12)  # the kernel's level
        # past d the curve falls as (lag/d)^-log2(m) with the kernel's own m (not the given 9)
        i, j = np.searchsorted(centers, [64, 256])
        slope = np.log(refs[(c, h)][1][j] / refs[(c, h)][1][i]) / np.log(centers[j] / centers[i])
        assert slope == pytest.approx(-np.log2(m), rel=1e-9)
    s4d = S4DKernel(4, l_max=512, d_state=8)
    with torch.no_grad():
        K4 = s4d(512).double().numpy()
    c4, curve = reference_envelopes(s4d, K4, [(0, 0)], d=32, m=4.0)[(0, 0)]
    i, j = np.searchsorted(c4, [64, 256])
    assert np.log(curve[j] / curve[i]) / np.log(c4[j] / c4[i]) == pytest.approx(-2.0, rel=1e-9)  # -log2(4)
    assert reference_envelopes(s4d, K4[..., :4], [(0, 0)]) == {}  # too short to fit


def test_reference_envelope_starts_at_the_level_of_an_s4_kernel():
    """Known answer (issue 12.4): an S4 kernel at L = 65,536 (a real S4Kernel, fast decay): the reference envelope
    reference_envelopes draws has its flat level within 10 % of the kernel's RMS over its first d lags, computed
    here directly (the old fit through every lag bin sat ~1e-18 below); the shape past d is (t/d)^-log2(m)."""
    import torch

    from analysis.decay import anchor_reference, reference_envelopes, reference_level
    from sgconv_core.kernels import S4Kernel

    torch.manual_seed(0)
    L, d, m = 65_536, 64, 2.0
    s4 = S4Kernel(2, l_max=L, d_state=16)
    with torch.no_grad():
        K = s4(L).double().numpy()
    k = K[0, 1]
    want = float(np.sqrt(np.sum(k[:d] ** 2) / d))
    assert want > 0
    centers, curve = reference_envelopes(s4, K, [(0, 1)], d=d, m=m)[(0, 1)]
    flat = centers < d
    assert flat.sum() >= 5
    assert np.abs(curve[flat] / want - 1).max() < 0.10
    assert reference_level(k, d) == pytest.approx(want, rel=1e-12)
    i, j = np.searchsorted(centers, [256, 4096])
    assert np.log(curve[j] / curve[i]) / np.log(centers[j] / centers[i]) == pytest.approx(-np.log2(m), rel=1e-9)
    # a curve at any level, anchored, comes out at the same level (one rule)
    c2, again = anchor_reference(centers, curve * 1e-18, k)
    np.testing.assert_array_equal(c2, centers)
    lag_flat = int(centers[flat].max()) + 1
    assert again[0] == pytest.approx(np.sqrt(np.mean(k[:lag_flat] ** 2)), rel=1e-12)
    assert np.abs(again[0] / want - 1) < 0.10
    # the all-zero kernel has no level: NaN, never a division by zero
    assert np.isnan(reference_envelopes(s4, np.zeros((1, 2, 64)), [(0, 0)], d=d)[(0, 0)][1]).all()
