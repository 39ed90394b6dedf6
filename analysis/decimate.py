"""Min/max decimation of long traces to the pixels they are drawn on (display only: no analysis result changes).

A line trace of n points drawn n_px pixels wide can show at most one vertical stroke per pixel column: from the
column's smallest to its largest value. Keeping, per bucket of x (one bucket ~ half a pixel column, so
``n_buckets`` ~ 2x the plot's width), the minimum and the maximum *in x order*, plus the first and the last
point, therefore draws the same picture as the whole trace, with at most 2 * n_buckets + 2 points: spikes,
global extremes and gaps (all-NaN buckets keep one NaN point) survive. Buckets are equal-width in x, or in
log x for a log axis.

Heatmaps are reduced along lag the same way: one column per bucket of lags holding the signed tap of largest
|value| in it (so a single spike still shows at full colour).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["DEFAULT_BUCKETS", "extreme_indices", "decimate", "column_edges", "reduce_columns"]

#: Buckets per trace: ~2x the widest plot the app draws (a full-width plot is ~1,000 px wide).
DEFAULT_BUCKETS = 2000


def _bucket_of(x: np.ndarray, n_buckets: int, log_x: bool) -> np.ndarray:
    """Bucket index (n,) int64 of each (ascending) x: equal-width buckets over [x[0], x[-1]] in x or log x."""
    if log_x:
        if x[0] <= 0:
            raise ValueError(f"log-x decimation needs x > 0; the smallest x is {x[0]:g}")
        x = np.log(x)
    span = x[-1] - x[0]
    if not span > 0:
        return np.zeros(x.size, dtype=np.int64)
    b = ((x - x[0]) * (n_buckets / span)).astype(np.int64)
    return np.minimum(b, n_buckets - 1)


def extreme_indices(y, n_buckets: int = DEFAULT_BUCKETS, x=None, log_x: bool = False) -> np.ndarray:
    """Indices (m,) int64, ascending, of the points to keep of a trace y (n,) over x (n,) (default 0..n-1):
    the first and last point and, per bucket of x, the first index of its minimum and of its maximum (NaN is
    skipped; an all-NaN bucket keeps its first point, so a gap stays a gap). m <= 2 * n_buckets + 2, and every
    index when n <= 2 * n_buckets + 2. x must be ascending (and > 0 with log_x)."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"decimation needs a 1-D trace, got shape {y.shape}")
    n = y.size
    if n_buckets < 1:
        raise ValueError(f"n_buckets must be >= 1, got {n_buckets}")
    if n <= 2 * n_buckets + 2:
        return np.arange(n, dtype=np.int64)
    if x is None:
        x = np.arange(n, dtype=np.float64)
    else:
        x = np.asarray(x, dtype=np.float64)
        if x.shape != y.shape:
            raise ValueError(f"x {x.shape} and y {y.shape} must have the same shape")
        if np.any(np.diff(x) < 0) or not np.isfinite(x[[0, -1]]).all():
            raise ValueError("decimation needs finite, ascending x")
    b = _bucket_of(x, n_buckets, log_x)
    starts = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])  # contiguous: x is ascending
    seg = np.repeat(np.arange(starts.size), np.diff(np.r_[starts, n]))
    yf = y.astype(np.float64, copy=False)
    nan = np.isnan(yf)
    lo = np.where(nan, np.inf, yf)
    hi = np.where(nan, -np.inf, yf)
    out = [np.array([0, n - 1], dtype=np.int64)]
    for vals, ext in ((lo, np.minimum.reduceat(lo, starts)), (hi, np.maximum.reduceat(hi, starts))):
        cand = np.flatnonzero(vals == ext[seg])  # every bucket has at least one (its extreme, or +-inf if all NaN)
        first = np.r_[True, seg[cand[1:]] != seg[cand[:-1]]]
        out.append(cand[first])
    return np.unique(np.concatenate(out))


def decimate(x, y, n_buckets: int = DEFAULT_BUCKETS, log_x: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A trace (x (n,), y (n,)) reduced to its per-bucket minima and maxima in x order (`extreme_indices`):
    returns (x' (m,), y' (m,)), m <= 2 * n_buckets + 2; the arrays themselves (no copy) when n is that short."""
    y = np.asarray(y)
    x = np.arange(y.size) if x is None else np.asarray(x)
    idx = extreme_indices(y, n_buckets, x, log_x)
    if idx.size == y.size:
        return x, y
    return x[idx], y[idx]


def column_edges(L: int, n_buckets: int = DEFAULT_BUCKETS, log_x: bool = False) -> np.ndarray:
    """Lag edges (n + 1,) int64 of the column buckets of a length-L lag axis: 0 = e_0 < e_1 < ... < e_n = L.
    Linear: equal blocks of ceil(L / n_buckets) taps. Log: equal steps of log(lag + 1) (the first columns, one
    tap each, where a log step is under one tap)."""
    if L < 1:
        raise ValueError(f"need at least one lag, got L={L}")
    if not log_x:
        b = max(1, math.ceil(L / n_buckets))
        return np.r_[np.arange(0, L, b), L].astype(np.int64)
    pos = np.unique(np.round(np.geomspace(1.0, L + 1.0, n_buckets + 1)).astype(np.int64))
    return np.unique(np.r_[0, pos - 1, L]).astype(np.int64)


def reduce_columns(Z, n_buckets: int = DEFAULT_BUCKETS, log_x: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A (rows, L) array reduced along lag to the column buckets of `column_edges`: each cell holds the signed
    value of largest |.| of its taps. Returns (Z' (rows, n) float64, edges (n + 1,) lags); Z itself (as float64)
    and 0..L when every bucket is one tap."""
    Z = np.asarray(Z, dtype=np.float64)
    if Z.ndim != 2:
        raise ValueError(f"expected a 2-D (rows, lags) array, got shape {Z.shape}")
    edges = column_edges(Z.shape[1], n_buckets, log_x)
    if edges.size == Z.shape[1] + 1:
        return Z, edges
    hi = np.maximum.reduceat(Z, edges[:-1], axis=1)
    lo = np.minimum.reduceat(Z, edges[:-1], axis=1)
    return np.where(hi >= -lo, hi, lo), edges
