"""Decay of learned convolution kernels: envelopes, power-law / exponential fits, energy ranges.

Pure numpy/scipy. Every kernel ``k`` is a 1-D real array of length L indexed by lag
t = 0..L-1 (taps = samples). Fits use the position ``pos = lag + 1`` so that they read in
SGConv's own convention, where the 'learnable' decay multiplies the kernel by (pos+1)^-t with
pos starting at 0 (docs/official-layouts.md §2.2), i.e. by (lag+1)^-t; lag 0 then sits at pos = 1 and the
log-log fit never needs log(0).

Why the fits use binned RMS and not the raw taps: learned kernels oscillate (a carrier times an
envelope) and carry noise, so single taps scatter by orders of magnitude in log space. Averaging
|k|^2 over bins removes the carrier and the noise without a sample-count bias (a per-bin *max*
grows with the number of taps in the bin, and log bins hold more taps at long lags, which would
bias the slope). ``envelope(stat="max")`` is kept for display.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

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
    "batch_decay",
    "summarize_channels",
    "median_iqr",
    "summarize_layer",
    "pole_decay",
    "reference_envelope",
    "reference_level",
    "anchor_reference",
    "sgconv_decay_params",
    "has_builtin_decay",
    "reference_envelopes",
    "EnvelopeFit",
    "envelope_fit",
    "PoleSummary",
    "pole_summary",
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
# binning (shared by the envelope and both fits; vectorised over rows)
# --------------------------------------------------------------------------------------------
def _runs(x: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-empty bins of a sorted sample x as contiguous runs, with scipy.stats.binned_statistic's bin
    assignment (right edge included in the last bin): (start index of each run, its count).

    The assignment is binned_statistic's own rule (np.digitize, then values equal to the last edge moved into
    the last bin), written out because importing scipy.stats costs about a second at the app's cold start;
    tests/test_decay.py checks it against scipy."""
    binnumber = np.searchsorted(edges, x, side="right")
    binnumber[x == edges[-1]] -= 1
    cnt = np.bincount(binnumber, minlength=len(edges) + 1)[1:len(edges)]
    nonempty = np.flatnonzero(cnt)
    return np.concatenate([[0], np.cumsum(cnt)[:-1]])[nonempty], cnt[nonempty]


def _log_bins(L: int, n_bins: int):
    """Geometric bins over lags 1..L-1: (first lag of each non-empty bin, count, mean log(lag), mean log(pos))."""
    if int(n_bins) < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    lag = np.arange(1, L, dtype=np.float64)
    starts, cnt = _runs(lag, np.geomspace(1.0, L - 1.0, int(n_bins) + 1))  # last bin includes lag L-1
    return starts + 1, cnt, np.add.reduceat(np.log(lag), starts) / cnt, np.add.reduceat(np.log1p(lag), starts) / cnt


def _lin_bins(L: int, n_bins: int):
    """Equal-width bins over lags 0..L-1: (first lag of each non-empty bin, count, mean pos = lag + 1)."""
    if int(n_bins) < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    lag = np.arange(L, dtype=np.float64)
    starts, cnt = _runs(lag, np.linspace(-0.5, L - 0.5, int(n_bins) + 1))
    return starts, cnt, np.add.reduceat(lag + 1.0, starts) / cnt


def _binned_rms(K2: np.ndarray, first: np.ndarray, cnt: np.ndarray) -> np.ndarray:
    """sqrt(mean k^2) per bin of each row: K2 (n, L) squared kernels -> (n, bins)."""
    return np.sqrt(np.add.reduceat(K2[:, first[0]:], first - first[0], axis=1) / cnt)


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
    first, cnt, log_lag, _ = _log_bins(k.size, n_bins)
    if stat == "max":
        value = np.maximum.reduceat(np.abs(k[1:]), first - 1)
    elif stat == "rms":
        value = _binned_rms(k[None] ** 2, first, cnt)[0]
    else:
        raise ValueError(f"stat must be 'max' or 'rms', got {stat!r}")
    return np.concatenate([[0.0], np.exp(log_lag)]), np.concatenate([[abs(k[0])], value])


# --------------------------------------------------------------------------------------------
# fits
# --------------------------------------------------------------------------------------------
def _line_fits(x: np.ndarray, Y: np.ndarray, W: np.ndarray):
    """Per-row least squares y = slope*x + intercept over the points where W; x (B,), Y and W (n, B).

    Returns slope, intercept, r2, each (n,): r2 = 1 - SS_res/SS_tot in the fitted space (1.0 for a
    constant y); NaN where a row has fewer than 2 points.
    """
    W = W.astype(np.float64)
    n = W.sum(1)
    Yz = np.where(W > 0, Y, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        xm = (W * x).sum(1) / n
        ym = Yz.sum(1) / n
        dx = (x[None, :] - xm[:, None]) * W
        dy = (Yz - ym[:, None]) * W
        slope = (dx * dy).sum(1) / (dx * dx).sum(1)
        icpt = ym - slope * xm
        res = (Yz - slope[:, None] * x[None, :] - icpt[:, None]) * W
        ss_res, ss_tot = (res * res).sum(1), (dy * dy).sum(1)
        const = ss_tot <= 1e-24 * (Yz * Yz).sum(1)  # constant y up to round-off in its mean
        r2 = np.where(const, 1.0, 1.0 - ss_res / np.where(const, 1.0, ss_tot))
    for a in (slope, icpt, r2):
        a[n < 2] = np.nan
    return slope, icpt, r2


def _power_law_rows(K2: np.ndarray, n_bins: int, min_count: int):
    """Power-law fits of every row of K2 (n, L) squared kernels: (t, log_amplitude, r2, n_points), each (n,)."""
    first, cnt, _, log_pos = _log_bins(K2.shape[1], n_bins)
    value = _binned_rms(K2, first, cnt)
    positive = value > 0
    keep = positive & (cnt >= min_count)[None, :]
    keep = np.where((keep.sum(1) >= _MIN_FIT_BINS)[:, None], keep, positive)
    with np.errstate(divide="ignore"):
        slope, icpt, r2 = _line_fits(log_pos, np.log(value), keep)
    return -slope, icpt, r2, keep.sum(1)


def _exp_rows(K2: np.ndarray, n_bins: int):
    """Exponential fits of every row of K2 (n, L) squared kernels: (r, log_amplitude, r2, n_points), each (n,)."""
    first, cnt, pos = _lin_bins(K2.shape[1], n_bins)
    value = _binned_rms(K2, first, cnt)
    with np.errstate(divide="ignore"):
        slope, icpt, r2 = _line_fits(pos, np.log(value), value > 0)
    return -slope, icpt, r2, (value > 0).sum(1)


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
    t, a, r2, n = _power_law_rows(k[None] ** 2, n_bins, min_count)
    return {"t": float(t[0]), "log_amplitude": float(a[0]), "r2": float(r2[0]), "n_points": int(n[0])}


def power_law_exponent(k, n_bins: int = 64, min_count: int = 8) -> float:
    """t in |k| ~ pos^-t (pos = lag + 1, dimensionless) for a 1-D kernel k (L,), L >= 8; see :func:`power_law_fit`."""
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
    r, a, r2, n = _exp_rows(k[None] ** 2, n_bins)
    return {"r": float(r[0]), "log_amplitude": float(a[0]), "r2": float(r2[0]), "n_points": int(n[0])}


def exp_rate(k, n_bins: int = 64) -> float:
    """r in |k| ~ exp(-r * pos) (per tap) for a 1-D kernel k (L,), L >= 8; see :func:`exp_fit`."""
    return exp_fit(k, n_bins)["r"]


# --------------------------------------------------------------------------------------------
# energy
# --------------------------------------------------------------------------------------------
def _energy_rows(K: np.ndarray) -> np.ndarray:
    """Cumulative energy fraction of every row of K (n, L); NaN rows where a row is all zero."""
    peak = np.abs(K).max(1, keepdims=True)
    cum = np.cumsum((K / np.where(peak > 0, peak, 1.0)) ** 2, axis=1)  # scaled by the peak: no overflow
    with np.errstate(invalid="ignore", divide="ignore"):
        return cum / cum[:, -1:]


def _ranges(curve: np.ndarray, frac: float) -> np.ndarray:
    """1 + first index where each row of a cumulative energy curve reaches frac (n,) float."""
    return (curve < frac * (1.0 - _FRAC_RTOL)).sum(1).astype(np.float64) + 1.0


def energy_curve(k) -> np.ndarray:
    """Cumulative energy fraction E[t] = sum_{j<=t} k_j^2 / sum_j k_j^2.

    Args: k (L,) kernel, any L >= 1. Returns: (L,) float, non-decreasing, E[L-1] == 1.
    Raises ValueError for an all-zero kernel.
    """
    k = _as_kernel(k)
    if not np.any(k):
        raise ValueError("kernel is all zeros: its energy fractions are undefined")
    return _energy_rows(k[None])[0]


def effective_range(k, frac: float) -> int:
    """Smallest n (taps) such that lags 0..n-1 hold at least ``frac`` of the kernel's energy.

    n = 1 + min{t : E[t] >= frac} with E = :func:`energy_curve` (a spike at lag 5 gives 6 for
    any frac). Args: k (L,), any L >= 1; 0 < frac <= 1. Returns: int in 1..L.
    """
    frac = float(frac)
    if not 0.0 < frac <= 1.0:  # also rejects NaN
        raise ValueError(f"frac must satisfy 0 < frac <= 1, got {frac}")
    return int(_ranges(energy_curve(k)[None], frac)[0])


# --------------------------------------------------------------------------------------------
# summaries
# --------------------------------------------------------------------------------------------
def batch_decay(K2d, n_bins: int = 64, min_count: int = 8) -> dict:
    """:func:`decay_summary` (plus the fit amplitudes) of every row of a (n, L) kernel array at once.

    Args: K2d (n, L), L >= 8. Returns dict of (n,) float arrays: t, t_r2, t_log_amplitude (power law,
    :func:`power_law_fit`), r [1/tap], r_r2, r_log_amplitude (:func:`exp_fit`), range50, range90,
    range99 [taps] (:func:`effective_range`); and ``valid`` (n,) bool: False for all-zero or
    non-finite rows, whose numbers are NaN.
    """
    K = np.asarray(K2d, dtype=np.float64)
    if K.ndim != 2:
        raise ValueError(f"expected (n, L), got shape {K.shape}")
    if K.shape[1] < MIN_FIT_LENGTH:
        raise ValueError(f"kernels of length {K.shape[1]} are too short; at least {MIN_FIT_LENGTH} taps are needed")
    finite = np.isfinite(K).all(1)
    K = np.where(finite[:, None], K, 0.0)
    valid = finite & np.any(K != 0, axis=1)
    K2 = K * K
    out = {}
    out["t"], out["t_log_amplitude"], out["t_r2"], _ = _power_law_rows(K2, n_bins, min_count)
    out["r"], out["r_log_amplitude"], out["r_r2"], _ = _exp_rows(K2, n_bins)
    curve = _energy_rows(K)
    for pct in (50, 90, 99):
        out[f"range{pct}"] = _ranges(curve, pct / 100)
    out = {key: np.where(valid, v, np.nan) for key, v in out.items()}
    out["valid"] = valid
    return out


def decay_summary(k) -> dict:
    """Decay numbers of one kernel.

    Args: k (L,), L >= 8.
    Returns: dict(t, t_r2 (power law, :func:`power_law_fit`), r [1/tap], r_r2 (exponential,
        :func:`exp_fit`), range50, range90, range99 [taps, :func:`effective_range`]).
        An all-zero kernel (a dead channel) gives NaN for every entry instead of raising.
    """
    k = _as_kernel(k, MIN_FIT_LENGTH)
    b = batch_decay(k[None])
    out = {key: float(b[key][0]) for key in ("t", "t_r2", "r", "r_r2", "range50", "range90", "range99")}
    for pct in (50, 90, 99):
        if not math.isnan(out[f"range{pct}"]):
            out[f"range{pct}"] = int(out[f"range{pct}"])
    return out


def summarize_channels(K) -> list[dict]:
    """:func:`decay_summary` of every kernel of a layer, computed in one vectorised pass.

    Args: K (C, H, L) or (n, L), L >= 8, finite. Returns: list of dicts in C-major order, each the
    summary plus ``index``: (c, h) or (i,).
    """
    K = np.asarray(K)
    if K.ndim not in (2, 3):
        raise ValueError(f"K must be (C, H, L) or (n, L), got shape {K.shape}")
    K2 = K.reshape(-1, K.shape[-1])
    bad = ~np.isfinite(K2).all(1) if K2.dtype.kind in "fc" else np.zeros(len(K2), bool)
    for i in [0, *np.flatnonzero(bad)[:1]] if K2.size else []:  # the first row (dtype, length) and a bad one
        try:
            _as_kernel(K2[i], MIN_FIT_LENGTH)
        except ValueError as e:
            raise ValueError(f"kernel {tuple(int(j) for j in np.unravel_index(i, K.shape[:-1]))}: {e}") from None
    b = batch_decay(K2)
    rows = []
    for i, index in enumerate(np.ndindex(K.shape[:-1])):
        row = {key: float(b[key][i]) for key in ("t", "t_r2", "r", "r_r2")}
        for pct in (50, 90, 99):
            v = b[f"range{pct}"][i]
            row[f"range{pct}"] = math.nan if math.isnan(v) else int(v)
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
        out[key] = median_iqr([r[key] for r in rows])
    return out


def median_iqr(values) -> dict:
    """dict(median, q25, q75, iqr) of the finite entries of ``values`` (any shape); NaNs when there are none."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"median": math.nan, "q25": math.nan, "q75": math.nan, "iqr": math.nan}
    q25, med, q75 = (float(q) for q in np.percentile(v, [25, 50, 75]))
    return {"median": med, "q25": q25, "q75": q75, "iqr": q75 - q25}


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


def reference_level(k, d: float) -> float:
    """The reference envelope's flat level for kernel k (L,): its RMS over lags 0..min(d, L)-1 (the first scale,
    where SGConv's envelope is flat). 0 for an all-zero start."""
    k = np.asarray(k, dtype=np.float64).reshape(-1)
    n0 = max(1, min(k.size, int(np.ceil(float(d)))))
    return float(np.sqrt(np.mean(k[:n0] ** 2))) if k.size else 0.0


def reference_envelope(k, centers, d: float, m: float) -> tuple[np.ndarray, np.ndarray]:
    """The SGConv reference envelope A * max(t/d, 1)^(-log2 m) over lags ``centers``, at kernel k's level.

    SGConv's first scale spans lags [0, d) at one level and scale i >= 1 spans [d 2^(i-1), d 2^i) damped by one
    more factor m, so the envelope is flat up to d and then falls as (t/d)^(-log2 m). A is the kernel's own level
    over that first scale, `reference_level` (RMS of k over lags < d): the curve starts on the kernel, so the
    gap to a fast-decaying kernel's tail shows how much faster than SGConv's decay it falls (a fit through every
    lag bin would instead sit orders of magnitude below such a kernel's start).
    k: (L,) the kernel; centers (n,) lags in taps. Returns (centers, curve), float64 (NaN for an all-zero start)."""
    c = np.asarray(centers, dtype=np.float64)
    p = np.log2(m) if m > 0 else 0.0
    shape = np.maximum(c / float(d), 1.0) ** (-p)
    level = reference_level(k, d)
    if not (np.isfinite(level) and level > 0):
        return c, np.full(c.shape, np.nan)
    return c, level * shape


def anchor_reference(centers, curve, k) -> tuple[np.ndarray, np.ndarray]:
    """Any reference curve (centers (n,), curve (n,)) flat over its first scale and falling after, rescaled so
    that its flat level is `reference_level` of the kernel k over those lags (the lags up to the last flat center):
    the rule `reference_envelope` applies. Returns (centers, curve)."""
    c = np.asarray(centers, dtype=np.float64)
    v = np.asarray(curve, dtype=np.float64)
    if not (v.size and np.isfinite(v[0]) and v[0] > 0):
        return c, v
    flat = np.isfinite(v) & (v >= v[0] * (1 - 1e-9))
    level = reference_level(k, int(c[flat].max()) + 1)
    return c, v * (level / v[0]) if level > 0 else v


def sgconv_decay_params(kernel, h: int) -> tuple[int, float]:
    """(kernel_dim d, multiplier m) of the decay an SGConv kernel module builds in for feature h.

    Fixed decay: m is feature h's entry of the multiplier buffer (1, H, 1) (one shared value if it holds one).
    Learnable decay: the envelope is (pos+1)^-t_h, i.e. m = 2^t_h."""
    d = int(kernel.config["kernel_dim"])
    if getattr(kernel, "decay", None) is not None:
        return d, 2.0 ** float(kernel.decay.detach()[h])
    mult = kernel.multiplier.detach().reshape(-1)
    return d, float(mult[h] if mult.numel() == kernel.H else mult[0])


def has_builtin_decay(kind: str) -> bool:
    """Whether a kernel family builds in SGConv's decay (envelope ~ (pos+1)^-t, multiplier m = 2^t per scale),
    so that `sgconv_decay_params` can read its (d, m): the registry's ``decay_knob == 't'``."""
    from sgconv_core.families import FAMILIES

    fam = FAMILIES.get(kind)
    return fam is not None and fam.decay_knob == "t"


def reference_envelopes(kernel, K, channels, d: float = 64, m: float = 2.0, n_bins: int = 64) -> dict:
    """{(c, h): (centers, curve)}: the SGConv reference envelope (`reference_envelope`) of each channel of a
    layer's kernel K (C_k, H, L), at the centers of that channel's envelope (n_bins log bins) and at its level
    (RMS over lags < d). For a family with the built-in decay (`has_builtin_decay`) d and m are the kernel's own
    (`sgconv_decay_params`), else the given ones. Empty when L < MIN_FIT_LENGTH."""
    K = np.asarray(K)
    if K.shape[-1] < MIN_FIT_LENGTH:
        return {}
    own = has_builtin_decay(getattr(kernel, "kind", None))
    _, _, log_lag, _ = _log_bins(K.shape[-1], n_bins)
    centers = np.concatenate([[0.0], np.exp(log_lag)])  # `envelope`'s centers (they depend on L only)
    out = {}
    for c, h in channels:
        dd, mm = sgconv_decay_params(kernel, h) if own else (float(d), float(m))
        out[(c, h)] = reference_envelope(K[c, h], centers, dd, mm)
    return out


@dataclass(frozen=True)
class EnvelopeFit:
    """RMS envelope of one kernel over log-spaced lag bins with its power-law and exponential fits."""

    centers: np.ndarray  # taps
    values: np.ndarray
    power: dict  # `power_law_fit`: t, log_amplitude, r2, n_points
    exp: dict  # `exp_fit`: r, log_amplitude, r2, n_points

    def series(self, label: str) -> dict:
        """A series for `analysis.figures.decay_figure`."""
        return {"label": label, "centers": self.centers, "values": self.values, "power": self.power,
                "exp": self.exp}


def envelope_fit(k, n_bins: int = 64) -> EnvelopeFit | None:
    """`envelope` (RMS), `power_law_fit` and `exp_fit` of one kernel k (L,), L >= 8; None if k is all zero."""
    k = _as_kernel(k, MIN_FIT_LENGTH)
    if not k.any():
        return None
    centers, values = envelope(k, n_bins, "rms")
    return EnvelopeFit(centers, values, power_law_fit(k, n_bins), exp_fit(k, n_bins))


@dataclass(frozen=True)
class PoleSummary:
    """How fast an SSM layer's modes decay: the number of modes, the slowest rate (1/tap), its half-life
    (taps) and the largest |pole|."""

    modes: int
    slowest_rate: float
    half_life: float
    max_abs_pole: float


def pole_summary(poles) -> PoleSummary:
    """`PoleSummary` of a layer's poles (any shape, complex)."""
    lam = np.asarray(poles)
    pd_ = pole_decay(lam)
    return PoleSummary(int(lam.size), pd_["slowest_rate"], pd_["half_life"], float(np.abs(lam).max()))
