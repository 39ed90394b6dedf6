"""Known-answer tests for analysis.frequency: FIR responses, bandwidth, exact SSM transfer."""

import math
import warnings

import numpy as np
import pytest

from analysis.frequency import (
    bandwidth,
    channel_responses,
    frequency_response,
    peak_gain,
    spectral_centroid,
    ssm_response_db,
    ssm_transfer,
    ssm_transfer_on_grid,
)


def ssm_kernel(residues, poles, L):
    """The reference SSM kernel K[l] = Re sum_n r_n lambda_n^l (..., L), by repeated multiplication."""
    r, lam = np.broadcast_arrays(np.asarray(residues, complex), np.asarray(poles, complex))
    x, out = np.ones(lam.shape, complex), []
    for _ in range(L):
        out.append((r * x).sum(-1).real)
        x = x * lam
    return np.stack(out, -1)


def _stable_pairs(rng, n_pairs):
    """Random stable poles / residues as explicit conjugate pairs: shapes (2 * n_pairs,)."""
    lam = rng.uniform(0.5, 0.995, n_pairs) * np.exp(1j * rng.uniform(0, np.pi, n_pairs))
    r = rng.standard_normal(n_pairs) + 1j * rng.standard_normal(n_pairs)
    return np.concatenate([r, r.conj()]), np.concatenate([lam, lam.conj()])


@pytest.mark.parametrize("L", [256, 257])
def test_ssm_transfer_equals_rfft_of_kernel(L):
    r, lam = _stable_pairs(np.random.default_rng(0), 16)
    K = ssm_kernel(r, lam, L)
    assert K.shape == (L,) and K.dtype == np.float64
    omega = 2 * np.pi * np.arange(L // 2 + 1) / L
    H = ssm_transfer(r, lam, omega, L)
    ref = np.fft.rfft(K)
    np.testing.assert_allclose(H, ref, rtol=1e-8, atol=1e-8 * np.abs(ref).max())


def test_ssm_transfer_batches():
    r, lam = _stable_pairs(np.random.default_rng(1), 4)
    # batched (H, N) residues with shared poles broadcast to (H, M)
    R = np.stack([r, 2 * r, -r])
    HB = ssm_transfer(R, lam, np.linspace(0, np.pi, 7), 50)
    assert HB.shape == (3, 7)
    np.testing.assert_allclose(HB[1], 2 * HB[0])
    np.testing.assert_allclose(HB[2], -HB[0])


@pytest.mark.parametrize("L", [64, 65])
def test_ssm_transfer_on_grid_equals_rfft_of_kernel(L):
    """The fast rfft-grid form (the report's and the Frequency page's) against the FFT of the kernel, for
    stable poles and for a pole outside the unit circle (the finite-L fallback)."""
    r, lam = _stable_pairs(np.random.default_rng(2), 6)
    omega = 2 * np.pi * np.arange(L // 2 + 1) / L
    unstable = lam.copy()
    unstable[[5, 11]] *= 1.01 / abs(lam[5])  # one conjugate pair just outside the unit circle
    for poles in (lam, unstable):
        ref = np.fft.rfft(ssm_kernel(r, poles, L))
        np.testing.assert_allclose(ssm_transfer_on_grid(r, poles, omega, L), ref, rtol=1e-8,
                                   atol=1e-8 * np.abs(ref).max())


def test_ssm_response_db_first_order_lowpass():
    """K[l] = a^l: |H_L| is |(1 - a^L e^{-i w L}) / (1 - a e^{-i w})|, |H_inf| = 1/|1 - a e^{-i w}|."""
    a, L = 0.9, 32
    freq = np.fft.rfftfreq(L)
    w = 2 * np.pi * freq
    finite, inf = ssm_response_db(np.array([1.0]), np.array([a]), freq, L)
    np.testing.assert_allclose(finite, 20 * np.log10(np.abs((1 - a ** L) / (1 - a * np.exp(-1j * w)))), atol=1e-10)
    np.testing.assert_allclose(inf, -20 * np.log10(np.abs(1 - a * np.exp(-1j * w))), atol=1e-10)
    assert inf[0] == pytest.approx(20 * math.log10(10.0))  # DC gain 1/(1 - a)
    assert ssm_response_db(np.array([1.0]), np.array([1.05]), freq, L)[1] is None  # unstable: no L -> inf


def test_channel_responses():
    """FFT of each chosen channel; with modes, the exact responses of the length-L and infinite kernels."""
    L, a = 64, 0.8
    K = np.zeros((1, 2, L))
    K[0, 0, :4] = 0.25  # a 4-tap moving average: |H(f)| = |sin(4 pi f) / (4 sin(pi f))|
    K[0, 1] = a ** np.arange(L)
    modes = (np.zeros((1, 2, 1), complex), np.array([[0.5], [a]], complex))
    modes[0][0, 1, 0] = 1.0
    fa, fb = channel_responses(K, [(0, 0), (0, 1)], modes)
    f = fa.freq[1:]
    np.testing.assert_allclose(10 ** (fa.mag_db[1:] / 20), np.abs(np.sin(4 * np.pi * f) / (4 * np.sin(np.pi * f))),
                               atol=1e-12)
    assert (fb.c, fb.h) == (0, 1) and fb.exact_inf_db[0] == pytest.approx(20 * math.log10(1 / (1 - a)))
    np.testing.assert_allclose(fb.exact_db, fb.mag_db, atol=1e-9)  # exact length-L response = FFT
    s = fb.magnitude_series("x")
    assert s["analytic_mag_db"] is fb.exact_db and s["analytic_inf_mag_db"] is fb.exact_inf_db
    (plain,) = channel_responses(K, [(0, 1)])
    assert plain.exact_db is None and "analytic_mag_db" not in plain.magnitude_series("x")


def test_ssm_transfer_infinite_length_first_order_lowpass():
    a = 0.9
    omega = np.linspace(0, np.pi, 33)
    H = ssm_transfer([1.0], [a], omega)  # K[l] = a^l, L -> inf
    np.testing.assert_allclose(H, 1 / (1 - a * np.exp(-1j * omega)), rtol=1e-14)
    # a long finite kernel converges to it (a^2000 ~ 1e-92)
    Hk = frequency_response(a ** np.arange(2000.0), n_fft=2048)["H"]
    ref = 1 / (1 - a * np.exp(-2j * np.pi * np.arange(1025) / 2048))
    np.testing.assert_allclose(Hk, ref, rtol=1e-12)
    with pytest.raises(ValueError, match="< 1"):
        ssm_transfer([1.0], [1.0], omega)


def test_ssm_transfer_pole_on_unit_circle_finite_L():
    # lambda = 1 at omega = 0: (1 - z^L)/(1 - z) -> L (a constant kernel of L ones sums to L)
    H = ssm_transfer([1.0], [1.0], [0.0, np.pi], 10)
    np.testing.assert_allclose(H, [10.0, 0.0], atol=1e-12)


@pytest.mark.parametrize("M", [4, 7])
def test_moving_average_magnitude(M):
    k = np.full(M, 1.0 / M)
    fr = frequency_response(k, n_fft=1024)
    f, mag_db = fr["freq"], fr["mag_db"]
    assert f[0] == 0.0 and f[-1] == 0.5 and f.shape == (513,)
    with np.errstate(divide="ignore", invalid="ignore"):
        ref = np.abs(np.sin(np.pi * f * M) / (M * np.sin(np.pi * f)))
    ref[0] = 1.0
    finite = ref > 1e-6  # exact nulls are -inf dB on both sides
    np.testing.assert_allclose(mag_db[finite], 20 * np.log10(ref[finite]), atol=1e-9)
    # linear phase of a symmetric FIR: -pi f (M - 1), unwrapped within the main lobe
    main = f < 1.0 / M
    np.testing.assert_allclose(fr["phase"][main], -np.pi * f[main] * (M - 1), atol=1e-9)


def test_two_tap_average_bandwidth_and_zero_at_nyquist():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # H(0.5) == 0 exactly: -inf dB, no divide warning
        fr = frequency_response([0.5, 0.5], n_fft=4096)
    assert fr["mag_db"][-1] == -np.inf
    # |H| = |cos(pi f)|: half power (-10 log10 2 = -3.0103 dB) at exactly 0.25 cycles/sample
    half_power = 10 * math.log10(2)
    assert bandwidth(fr["freq"], fr["mag_db"], drop_db=half_power) == pytest.approx(0.25, abs=1e-6)
    exact_3db = math.acos(10 ** (-3 / 20)) / math.pi  # 0.2492...
    assert bandwidth(fr["freq"], fr["mag_db"]) == pytest.approx(exact_3db, abs=1e-6)
    assert bandwidth(fr["freq"], fr["mag_db"]) == pytest.approx(0.25, abs=1e-3)


def test_bandwidth_bandpass_and_allpass():
    f = np.linspace(0, 0.5, 2001)
    mag_db = -((f - 0.2) / 0.05) ** 2  # -3 dB at 0.2 +- 0.05*sqrt(3)
    assert bandwidth(f, mag_db) == pytest.approx(2 * 0.05 * math.sqrt(3), rel=1e-3)
    fr = frequency_response(np.eye(1, 64, 5)[0])  # a pure delay: flat magnitude
    assert bandwidth(fr["freq"], fr["mag_db"]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="zero everywhere"):
        bandwidth(f, np.full(f.size, -np.inf))


def test_peak_gain_and_centroid():
    a = 0.8
    fr = frequency_response(a ** np.arange(512.0), n_fft=1024)
    g, g_db, f_peak = peak_gain(fr["H"])
    assert g == pytest.approx(1 / (1 - a)) and g_db == pytest.approx(20 * math.log10(5))
    assert f_peak == 0.0
    g2, _, f2 = peak_gain(fr["H"], fr["freq"])
    assert (g2, f2) == (g, f_peak)
    hp = frequency_response((-a) ** np.arange(512.0), n_fft=1024)  # high-pass mirror
    assert peak_gain(hp["H"])[2] == 0.5
    c_lp = spectral_centroid(fr["freq"], fr["H"])
    c_hp = spectral_centroid(hp["freq"], hp["H"])
    assert c_lp == pytest.approx(0.5 - c_hp, abs=1e-12) and c_lp < 0.1
    # centroid of a pure cosine at bin 100 of 1024: exactly its frequency
    cos = np.cos(2 * np.pi * 100 / 1024 * np.arange(1024))
    fr_c = frequency_response(cos)
    assert spectral_centroid(fr_c["freq"], fr_c["H"]) == pytest.approx(100 / 1024, abs=1e-12)


def test_validation():
    with pytest.raises(ValueError, match="n_fft"):
        frequency_response(np.ones(16), n_fft=8)
    with pytest.raises(ValueError, match="NaN"):
        frequency_response([1.0, np.nan])
    with pytest.raises(ValueError, match="increasing"):
        bandwidth([0.0, 0.2, 0.1], [0.0, -1.0, -2.0])
    with pytest.raises(ValueError, match="zero everywhere"):
        spectral_centroid(np.linspace(0, 0.5, 5), np.zeros(5))
    with pytest.raises(ValueError, match="shape"):
        peak_gain(np.ones(5), np.linspace(0, 0.5, 4))
