"""Decay of learned convolution kernels: envelopes, power-law / exponential fits, energy ranges.

Pure numpy/scipy. Every kernel ``k`` is a 1-D real array of length L indexed by lag
t = 0..L-1 (taps = samples). Fits use the position ``pos = lag + 1`` so that they read in
SGConv's own convention, where the 'learnable' decay multiplies the kernel by (pos+1)^-t with
pos starting at 0 (NOTES-models §1.2), i.e. by (lag+1)^-t; lag 0 then sits at pos = 1 and the
log-log fit never needs log(0).

Why the fits use binned RMS and not the raw taps: learned kernels oscillate (a carrier times an
envelope) and carry noise, so single taps scatter by orders of magnitude in log space. Averaging
|k|^2 over bins removes the carrier and the noise without a sample-count bias (a per-bin *max*
grows with the number of taps in the bin, and log bins hold more taps at long lags, which would
bias the slope). ``envelope(stat="max")`` is kept for display.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import binned_statistic, linregress

__all__ = [
    "MIN_FIT_LENGTH",
    "envelope",
    "power_law_fit",
    "power_law_exponent",
    "exp_fit",
    "exp_rate",
    "energy_curve",
    "effective_range",
    "decay_summary",
    "summarize_channels",
    "summarize_layer",
    "pole_decay",
]

MIN_FIT_LENGTH = 8  # shortest kernel the envelope / fits accept
_MIN_FIT_BINS = 3  # fewer qualifying bins than this -> fall back to every non-empty bin
_FRAC_RTOL = 1e-12  # effective_range: absorbs round-off in the cumulative energy
_SUMMARY_KEYS = ("t", "r", "range50", "range90", "range99")


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------
def _as_kernel(k, min_len: int = 1, name: str = "kernel") -> np.ndarray:
    """Return ``k`` as a finite 1-D float64 array of length >= min_len, else raise ValueError."""
    a = np.asarray(k)
    if a.dtype.kind == "c":
        raise ValueError(f"{name} must be real, got complex dtype {a.dtype}")
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
    a = a.astype(np.float64, copy=False)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D (lags on the only axis), got shape {a.shape}")
    if a.size < min_len:
        raise ValueError(f"{name} has length {a.size}; at least {min_len} taps are needed")
    bad = ~np.isfinite(a)
    if bad.any():
        i = int(np.argmax(bad))
        what = "NaN" if np.isnan(a[i]) else "Inf"
        n_bad = int(bad.sum())
        raise ValueError(f"{name} contains {what} ({n_bad} non-finite taps, first at lag {i})")
    return a


# --------------------------------------------------------------------------------------------
# binned envelopes
# --------------------------------------------------------------------------------------------
def _bin(lag: np.ndarray, absk: np.ndarray, edges: np.ndarray, stat: str, coords: list):
    """Per-bin (centers, value, count) over the non-empty bins.

    value = max |k| (stat "max") or sqrt(mean k^2) (stat "rms"); centers[i] = mean of
    ``coords[i]`` over the taps in each bin, shape (len(coords), n_non_empty).
    """
    count = binned_statistic(lag, lag, "count", bins=edges).statistic
    if stat == "max":
        value = binned_statistic(lag, absk, "max", bins=edges).statistic
    elif stat == "rms":
        value = np.sqrt(binned_statistic(lag, absk**2, "mean", bins=edges).statistic)
    else:
        raise ValueError(f"stat must be 'max' or 'rms', got {stat!r}")
    centers = binned_statistic(lag, coords, "mean", bins=edges).statistic
    keep = count > 0
    return centers[:, keep], value[keep], count[keep]


def _log_bins(k: np.ndarray, n_bins: int, stat: str):
    """Geometric bins over lags 1..L-1: (mean log(lag), mean log(pos), value, count) per bin."""
    if int(n_bins) < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    lag = np.arange(1, k.size, dtype=np.float64)
    edges = np.geomspace(1.0, k.size - 1.0, int(n_bins) + 1)  # last bin includes lag L-1
    centers, value, count = _bin(lag, np.abs(k[1:]), edges, stat, [np.log(lag), np.log1p(lag)])
    return centers[0], centers[1], value, count


def envelope(k, n_bins: int = 64, stat: str = "max") -> tuple[np.ndarray, np.ndarray]:
    """|k| envelope over log-spaced lag bins.

    Bins are geometric over lags 1..L-1 (``n_bins`` of them); lag 0 is its own point; empty
    bins (the narrow head bins between integer lags) are dropped.

    Args: k (L,) kernel, L >= 8; stat "max" (peak hold: max |k| per bin, ignores oscillation)
        or "rms" (sqrt of the mean k^2 per bin).
    Returns: (centers, values), both (n,) float: centers in taps (lag 0, then the geometric
        mean lag of each non-empty bin), values in the kernel's units (0 for an all-zero bin).
    """
    k = _as_kernel(k, MIN_FIT_LENGTH)
    log_lag, _, value, _ = _log_bins(k, n_bins, stat)
    centers = np.concatenate([[0.0], np.exp(log_lag)])
    values = np.concatenate([[abs(k[0])], value])
    return centers, values


# --------------------------------------------------------------------------------------------
# fits
# --------------------------------------------------------------------------------------------
def _select(value: np.ndarray, count: np.ndarray, min_count: int) -> np.ndarray:
    """Bins used by a fit: value > 0 (masks exact zeros) and >= min_count taps.

    Falls back to every bin with value > 0 when fewer than 3 bins qualify (short kernels).
    """
    positive = value > 0
    keep = positive & (count >= min_count)
    return keep if keep.sum() >= _MIN_FIT_BINS else positive


def _line_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Least squares y = slope*x + intercept; returns (slope, intercept, r2).

    r2 = 1 - SS_res/SS_tot (1.0 for an exactly constant y); NaNs when fewer than 2 points.
    """
    if x.size < 2:
        return math.nan, math.nan, math.nan
    fit = linregress(x, y)
    resid = y - (fit.slope * x + fit.intercept)
    ss_res, ss_tot = float(resid @ resid), float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    return float(fit.slope), float(fit.intercept), r2


def power_law_fit(k, n_bins: int = 64, min_count: int = 8) -> dict:
    """Fit |k| ~ A * pos^-t, pos = lag + 1, by least squares on the log-log RMS envelope.

    Points: geometric bins over lags 1..L-1 (lag 0 skipped); x = mean log(pos) in the bin,
    y = log(RMS of k in the bin). Only bins holding >= ``min_count`` taps are used, which drops
    the head where a bin holds one or two taps and a carrier makes them unrepresentative (all
    non-empty bins are used if fewer than 3 qualify). Zero-valued bins are masked.

    Args: k (L,) kernel, L >= 8.
    Returns: dict(t: exponent (dimensionless, > 0 = decaying), log_amplitude: ln A,
        r2: coefficient of determination in log-log space, n_points: bins used).
        t, log_amplitude, r2 are NaN if fewer than 2 bins are non-zero.
    """
    k = _as_kernel(k, MIN_FIT_LENGTH)
    _, log_pos, value, count = _log_bins(k, n_bins, "rms")
    keep = _select(value, count, min_count)
    slope, intercept, r2 = _line_fit(log_pos[keep], np.log(value[keep]))
    return {"t": -slope, "log_amplitude": intercept, "r2": r2, "n_points": int(keep.sum())}


def power_law_exponent(k, n_bins: int = 64, min_count: int = 8) -> float:
    """t in |k| ~ pos^-t (pos = lag + 1); the ``t`` of :func:`power_law_fit`."""
    return power_law_fit(k, n_bins, min_count)["t"]


def exp_fit(k, n_bins: int = 64) -> dict:
    """Fit |k| ~ A * exp(-r * pos), pos = lag + 1, on the log RMS envelope vs linear lag.

    Points: ``n_bins`` linearly spaced bins over lags 0..L-1 (equal widths, so the head is not
    over-weighted as with log bins); x = mean pos in the bin, y = log(RMS of k in the bin).
    Zero-valued bins are masked.

    Args: k (L,) kernel, L >= 8.
    Returns: dict(r: rate per tap (1/samples), log_amplitude: ln A, r2: coefficient of
        determination of log|k| vs pos, n_points: bins used). NaNs if < 2 non-zero bins.
    """
    k = _as_kernel(k, MIN_FIT_LENGTH)
    if int(n_bins) < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    lag = np.arange(k.size, dtype=np.float64)
    edges = np.linspace(-0.5, k.size - 0.5, int(n_bins) + 1)
    (pos,), value, _ = _bin(lag, np.abs(k), edges, "rms", [lag + 1.0])
    keep = value > 0
    slope, intercept, r2 = _line_fit(pos[keep], np.log(value[keep]))
    return {"r": -slope, "log_amplitude": intercept, "r2": r2, "n_points": int(keep.sum())}


def exp_rate(k, n_bins: int = 64) -> float:
    """r in |k| ~ exp(-r * pos) (per tap); the ``r`` of :func:`exp_fit`."""
    return exp_fit(k, n_bins)["r"]


# --------------------------------------------------------------------------------------------
# energy
# --------------------------------------------------------------------------------------------
def energy_curve(k) -> np.ndarray:
    """Cumulative energy fraction E[t] = sum_{j<=t} k_j^2 / sum_j k_j^2.

    Args: k (L,) kernel, any L >= 1. Returns: (L,) float, non-decreasing, E[L-1] == 1.
    Raises ValueError for an all-zero kernel.
    """
    k = _as_kernel(k)
    peak = np.max(np.abs(k))
    if peak == 0:
        raise ValueError("kernel is all zeros: its energy fractions are undefined")
    cum = np.cumsum((k / peak) ** 2)  # scaled by the peak: no overflow for huge kernels
    return cum / cum[-1]


def effective_range(k, frac: float) -> int:
    """Smallest n (taps) such that lags 0..n-1 hold at least ``frac`` of the kernel's energy.

    n = 1 + min{t : E[t] >= frac} with E = :func:`energy_curve` (a spike at lag 5 gives 6 for
    any frac). Args: k (L,), any L >= 1; 0 < frac <= 1. Returns: int in 1..L.
    """
    frac = float(frac)
    if not 0.0 < frac <= 1.0:  # also rejects NaN
        raise ValueError(f"frac must satisfy 0 < frac <= 1, got {frac}")
    curve = energy_curve(k)
    return int(np.searchsorted(curve, frac * (1.0 - _FRAC_RTOL), side="left")) + 1


# --------------------------------------------------------------------------------------------
# summaries
# --------------------------------------------------------------------------------------------
def decay_summary(k) -> dict:
    """Decay numbers of one kernel.

    Args: k (L,), L >= 8.
    Returns: dict(t, t_r2 (power law, :func:`power_law_fit`), r [1/tap], r_r2 (exponential,
        :func:`exp_fit`), range50, range90, range99 [taps, :func:`effective_range`]).
        An all-zero kernel (a dead channel) gives NaN for every entry instead of raising.
    """
    k = _as_kernel(k, MIN_FIT_LENGTH)
    if not np.any(k):
        return dict.fromkeys(("t", "t_r2", "r", "r_r2", "range50", "range90", "range99"), math.nan)
    pl, ex = power_law_fit(k), exp_fit(k)
    out = {"t": pl["t"], "t_r2": pl["r2"], "r": ex["r"], "r_r2": ex["r2"]}
    for pct in (50, 90, 99):
        out[f"range{pct}"] = effective_range(k, pct / 100)
    return out


def summarize_channels(K) -> list[dict]:
    """:func:`decay_summary` of every kernel of a layer.

    Args: K (C, H, L) or (n, L). Returns: list of dicts in C-major order, each the summary plus
    ``index``: (c, h) or (i,).
    """
    K = np.asarray(K)
    if K.ndim not in (2, 3):
        raise ValueError(f"K must be (C, H, L) or (n, L), got shape {K.shape}")
    rows = []
    for index in np.ndindex(K.shape[:-1]):
        try:
            row = decay_summary(K[index])
        except ValueError as e:
            raise ValueError(f"kernel {index}: {e}") from None
        row["index"] = index
        rows.append(row)
    return rows


def summarize_layer(K_or_rows) -> dict:
    """Per-layer spread of t, r, range50/90/99 over channels.

    Args: K (C, H, L) / (n, L), or the list returned by :func:`summarize_channels`.
    Returns: dict(n_channels, n_zero (all-zero channels, excluded), and for each key in
        t, r, range50, range90, range99: dict(median, q25, q75, iqr)) — NaN where no channel has
        a finite value. Units as in :func:`decay_summary`.
    """
    rows = K_or_rows if isinstance(K_or_rows, list) else summarize_channels(K_or_rows)
    out: dict = {"n_channels": len(rows), "n_zero": sum(math.isnan(r["range50"]) for r in rows)}
    for key in _SUMMARY_KEYS:
        v = np.array([r[key] for r in rows], dtype=np.float64)
        v = v[np.isfinite(v)]
        if v.size == 0:
            q25 = med = q75 = math.nan
        else:
            q25, med, q75 = (float(q) for q in np.percentile(v, [25, 50, 75]))
        out[key] = {"median": med, "q25": q25, "q75": q75, "iqr": q75 - q25}
    return out


# --------------------------------------------------------------------------------------------
# SSM poles
# --------------------------------------------------------------------------------------------
def pole_decay(poles) -> dict:
    """Per-mode decay of a discrete-time SSM from its poles lambda_n (|lambda| = exp(dt * Re A)).

    Mode n contributes lambda_n^lag, so |.| falls by exp(-rate_n) per tap with
    rate_n = -ln|lambda_n|; the slowest mode sets the long-range tail.

    Args: poles: complex array, any shape (non-empty, finite).
    Returns: dict(rates: same shape as poles [1/tap] (inf for lambda = 0),
        slowest_rate: min rate [1/tap], slowest_index: index tuple of that pole,
        half_life: ln2 / slowest_rate [taps], inf when |lambda| >= 1 for some mode).
    """
    lam = np.asarray(poles, dtype=np.complex128)
    if lam.size == 0:
        raise ValueError("poles is empty")
    if not np.all(np.isfinite(lam)):
        raise ValueError(f"poles contain NaN/Inf ({int((~np.isfinite(lam)).sum())} entries)")
    with np.errstate(divide="ignore"):  # lambda = 0 -> rate = +inf, a legitimate answer
        rates = -np.log(np.abs(lam))
    i = int(np.argmin(rates))
    slowest = float(rates.flat[i])
    half_life = math.log(2.0) / slowest if slowest > 0 else math.inf
    return {
        "rates": rates,
        "slowest_rate": slowest,
        "slowest_index": tuple(int(j) for j in np.unravel_index(i, lam.shape)),
        "half_life": half_life,
    }
