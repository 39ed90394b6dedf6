"""Known-answer tests for analysis.compare: lag sign convention, ncc, rel_l2, matrix."""

import time

import numpy as np
import pytest

from analysis.compare import similarity, similarity_matrix


def _decaying(L, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(L) * np.exp(-np.arange(L) / 50.0)


def test_identical():
    k = _decaying(1000, 0)
    s = similarity(k, k)
    assert s["ncc"] == pytest.approx(1.0, abs=1e-12) and s["best_lag"] == 0
    assert s["rel_l2"] == 0.0 and s["cosine"] == pytest.approx(1.0, abs=1e-15)


@pytest.mark.parametrize("shift", [17, -17])
def test_shift_sign_convention(shift):
    base = _decaying(800, 1)
    k1, k2 = np.zeros(1000), np.zeros(1000)
    k2[100:900] = base
    k1[100 + shift : 900 + shift] = base  # k1[n] = k2[n - shift]
    s = similarity(k1, k2)
    assert s["best_lag"] == shift  # k2 delayed by best_lag best matches k1
    assert s["ncc"] == pytest.approx(1.0, abs=1e-9)
    assert s["cosine"] < 0.5 and s["rel_l2"] > 0.5


def test_sign_flip_scale_and_lengths():
    k = _decaying(500, 2)
    s = similarity(k, -k)
    assert s["cosine"] == pytest.approx(-1.0) and s["rel_l2"] == pytest.approx(2.0)
    assert s["ncc"] < 0.5  # signed maximum: a flipped copy is not a match
    s = similarity(k, 3 * k)
    assert s["ncc"] == pytest.approx(1.0) and s["rel_l2"] == pytest.approx(2.0)
    s = similarity(k[:300], k)  # different lengths: the shorter is zero-padded
    tail = np.linalg.norm(k[300:])
    assert s["rel_l2"] == pytest.approx(tail / np.linalg.norm(k[:300]))
    with pytest.raises(ValueError, match="zero"):
        similarity(k, np.zeros(500))
    with pytest.raises(ValueError, match="NaN"):
        similarity(k, np.full(5, np.nan))


def test_long_kernels_are_fast():
    L = 1 << 20
    k = _decaying(L, 3) + 1e-3 * np.random.default_rng(4).standard_normal(L)
    t0 = time.perf_counter()
    s = similarity(np.roll(k, 5), k)
    assert time.perf_counter() - t0 < 3.0  # ~0.3 s here; method="direct" would take minutes
    assert s["best_lag"] == 5


def test_similarity_matrix():
    rng = np.random.default_rng(5)
    K = np.stack([_decaying(256, i) for i in range(5)])
    K[3] = np.roll(K[0], 7)
    K[4] = 0.0  # dead channel
    S = similarity_matrix(K)
    assert S.shape == (5, 5)
    assert np.all(np.isnan(S[4])) and np.all(np.isnan(S[:, 4]))
    live = S[:4, :4]
    np.testing.assert_allclose(live, live.T)
    np.testing.assert_allclose(np.diag(live), 1.0)
    for i in range(4):
        for j in range(4):
            assert live[i, j] == pytest.approx(similarity(K[i], K[j])["ncc"], abs=1e-12)
    assert live[0, 3] == pytest.approx(1.0, abs=1e-4)  # roll wraps a tail of ~exp(-5) in
    assert np.all(np.abs(live) <= 1.0)
    with pytest.raises(ValueError, match="shape"):
        similarity_matrix(rng.standard_normal(16))
