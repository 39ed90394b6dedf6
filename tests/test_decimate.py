"""Min/max decimation (analysis.decimate) against brute-force per-bucket answers."""
from __future__ import annotations

import numpy as np
import pytest

from analysis.decimate import column_edges, decimate, extreme_indices, reduce_columns


def _brute_buckets(x, n_buckets, log_x=False):
    """Bucket of each x by a plain loop over explicit edges (independent of the vectorised code)."""
    t = np.log(x) if log_x else np.asarray(x, dtype=np.float64)
    edges = np.linspace(t[0], t[-1], n_buckets + 1)
    out = []
    for v in t:
        j = int(np.searchsorted(edges, v, side="right")) - 1
        out.append(min(j, n_buckets - 1))
    return np.array(out)


def test_short_traces_are_returned_whole():
    x, y = np.arange(10.0), np.random.default_rng(0).standard_normal(10)
    xd, yd = decimate(x, y, n_buckets=4)  # 10 <= 2*4+2
    assert xd is x and yd is y
    assert extreme_indices(y[:3], n_buckets=1).tolist() == [0, 1, 2]


def test_keeps_global_extremes_first_last_and_bucket_extremes():
    rng = np.random.default_rng(1)
    n, nb = 100_003, 50
    y = rng.standard_normal(n)
    y[777] = 40.0  # a single spike
    y[90_001] = -35.0
    x = np.arange(n)
    xd, yd = decimate(x, y, n_buckets=nb)
    assert len(xd) <= 2 * nb + 2
    assert yd.max() == 40.0 and yd.min() == -35.0
    assert xd[0] == 0 and xd[-1] == n - 1 and np.all(np.diff(xd) > 0)  # x order
    b = _brute_buckets(x, nb)
    for j in range(nb):
        seg = np.flatnonzero(b == j)
        kept = (xd >= seg[0]) & (xd <= seg[-1])
        assert yd[kept].max() == y[seg].max() and yd[kept].min() == y[seg].min()
        assert seg[0] + np.argmax(y[seg]) in xd and seg[0] + np.argmin(y[seg]) in xd


def test_log_buckets_follow_log_x():
    n, nb = 50_000, 20
    x = np.arange(1, n + 1, dtype=np.float64)
    y = np.sin(np.arange(n) * 0.37) / x
    idx = extreme_indices(y, nb, x, log_x=True)
    b = _brute_buckets(x, nb, log_x=True)
    expect = {0, n - 1}
    for j in np.unique(b):
        seg = np.flatnonzero(b == j)
        expect |= {seg[0] + int(np.argmax(y[seg])), seg[0] + int(np.argmin(y[seg]))}
    assert set(idx.tolist()) == expect
    with pytest.raises(ValueError, match="x > 0"):
        extreme_indices(y, nb, x - 1, log_x=True)


def test_nan_gap_survives_and_bad_input_is_refused():
    y = np.ones(10_000)
    y[4000:6000] = np.nan
    y[100] = 5.0
    xd, yd = decimate(np.arange(y.size), y, n_buckets=10)
    assert np.isnan(yd).any() and np.nanmax(yd) == 5.0
    assert 4000 <= xd[np.isnan(yd)][0] < 6000
    with pytest.raises(ValueError, match="ascending"):
        extreme_indices(np.ones(100), 5, x=np.arange(100)[::-1])
    with pytest.raises(ValueError, match="1-D"):
        extreme_indices(np.ones((2, 100)), 5)


def test_reduce_columns_keeps_signed_largest_magnitude():
    rng = np.random.default_rng(2)
    Z = rng.standard_normal((3, 10_000))
    Z[1, 5_555] = -50.0
    R, edges = reduce_columns(Z, n_buckets=100)
    assert R.shape == (3, 100) and edges[0] == 0 and edges[-1] == 10_000 and np.all(np.diff(edges) == 100)
    for j in (0, 55, 99):
        blk = Z[:, edges[j]:edges[j + 1]]
        np.testing.assert_array_equal(R[:, j], blk[np.arange(3), np.abs(blk).argmax(1)])
    assert R[1, 55] == -50.0
    # log columns: the first ones one tap each, the last ones wide; covering 0..L exactly once
    e = column_edges(1 << 20, 200, log_x=True)
    assert e[0] == 0 and e[-1] == 1 << 20 and np.all(np.diff(e) >= 1) and e.size <= 201
    assert e[1] == 1 and e[-1] - e[-2] > 10_000
    Rl, el = reduce_columns(Z, 64, log_x=True)
    assert Rl.shape[1] == el.size - 1 and np.abs(Rl).max() == 50.0
    same, e1 = reduce_columns(Z[:, :50], 100)
    np.testing.assert_array_equal(same, Z[:, :50]) and np.testing.assert_array_equal(e1, np.arange(51))
