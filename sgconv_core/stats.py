"""Confidence intervals for the metrics kernelscope prints: the one home for them (torch-free).

- :func:`wilson_interval` for an accuracy, k correct of n (Wilson score interval, no continuity correction);
- :func:`bootstrap_interval` for a mean or a pooled ratio such as NMSE = sum(sse) / sum(energy), by a seeded
  percentile bootstrap over examples (rows resampled with replacement);
- :func:`accuracy_ci` and :func:`nmse_ci` wrap both for per-example arrays.

Every function returns ``(low, high)`` as floats; ``confidence`` is two-sided (0.95 by default).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["wilson_interval", "bootstrap_interval", "accuracy_ci", "nmse_ci", "DEFAULT_RESAMPLES"]

#: Bootstrap resamples used unless told otherwise.
DEFAULT_RESAMPLES = 1000


def _z(confidence: float) -> float:
    if not (isinstance(confidence, (int, float)) and 0.0 < confidence < 1.0):
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    from scipy.stats import norm

    return float(norm.ppf(0.5 + confidence / 2.0))


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion ``k / n``; e.g. 0/10 -> (0, 0.2775), 5/10 -> (0.2366, 0.7634).

    ``k`` and ``n`` are counts (0 <= k <= n, n >= 1). The interval always lies in [0, 1] and is never empty.
    """
    k, n = int(k), int(n)
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if not 0 <= k <= n:
        raise ValueError(f"k must be in [0, n] = [0, {n}], got {k}")
    z = _z(confidence)
    p = k / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    lo, hi = centre - half, centre + half
    # exact at the ends (k = 0 gives lo = 0, k = n gives hi = 1; rounding could leave 1e-17)
    return (0.0 if k == 0 else max(0.0, lo)), (1.0 if k == n else min(1.0, hi))


def bootstrap_interval(values, denominators=None, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                       confidence: float = 0.95) -> tuple[float, float]:
    """Percentile-bootstrap interval of ``mean(values)``, or of ``sum(values) / sum(denominators)`` when given.

    ``values`` (and ``denominators``) are per-example numbers, shape ``(n,)``; each resample draws n examples with
    replacement (pairs stay together for a ratio), from ``numpy.random.default_rng(seed)``: the same call gives
    the same interval. A constant statistic gives a zero-width interval.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    n = len(v)
    if n < 1:
        raise ValueError("bootstrap_interval needs at least one value")
    if not np.all(np.isfinite(v)):
        raise ValueError("bootstrap_interval: values must be finite")
    d = None
    if denominators is not None:
        d = np.asarray(denominators, dtype=np.float64).reshape(-1)
        if d.shape != v.shape:
            raise ValueError(f"values {v.shape} and denominators {d.shape} must have the same shape")
        if not np.all(np.isfinite(d)) or np.any(d < 0) or d.sum() <= 0:
            raise ValueError("bootstrap_interval: denominators must be finite, >= 0, and not all 0")
    n_resamples = int(n_resamples)
    if n_resamples < 10:
        raise ValueError(f"n_resamples must be at least 10, got {n_resamples}")
    alpha = (1.0 - confidence) / 2.0
    _z(confidence)  # validates confidence
    rng = np.random.default_rng(seed)
    stats = np.empty(n_resamples)
    chunk = max(1, 4_000_000 // n)  # bounded memory: at most ~32 MB of indices at once
    for a in range(0, n_resamples, chunk):
        b = min(n_resamples, a + chunk)
        idx = rng.integers(0, n, size=(b - a, n))
        num = v[idx].sum(axis=1)
        if d is None:
            stats[a:b] = num / n
        else:
            den = d[idx].sum(axis=1)
            with np.errstate(divide="ignore", invalid="ignore"):
                stats[a:b] = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.inf)
    lo, hi = np.quantile(stats, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def accuracy_ci(correct, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson interval of the accuracy of per-example outcomes ``correct`` (bools or 0/1, shape ``(n,)``)."""
    c = np.asarray(correct).reshape(-1)
    return wilson_interval(int(np.count_nonzero(c)), len(c), confidence)


def nmse_ci(sse, energy, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
            confidence: float = 0.95) -> tuple[float, float]:
    """Bootstrap interval of NMSE = sum(sse) / sum(energy) from per-example squared error and target energy
    (both shape ``(n,)``, summed over the scored positions and channels of each example)."""
    return bootstrap_interval(sse, energy, n_resamples=n_resamples, seed=seed, confidence=confidence)
