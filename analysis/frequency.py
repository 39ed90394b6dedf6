"""Frequency responses of convolution kernels and exact transfer functions of discrete SSMs.

Pure numpy/scipy. Units: lag in taps (samples); ``freq`` in cycles/sample (0..0.5 on the rfft
grid); ``omega`` in rad/sample (omega = 2*pi*freq); gains in dB are 20*log10|H|.

SSM kernels are written in the general complex form K[l] = sum_n r_n * lambda_n^l with
residues r_n and discrete poles lambda_n (docs/official-layouts.md §3.1). The callers pass conjugate pairs
explicitly (S4D's ``2*Re sum C' lambda^l`` over N' modes = sum over the 2N' modes
{C', conj C'} x {lambda, conj lambda}), so the kernel is real.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import fft

from .decay import _as_kernel

__all__ = [
    "frequency_response",
    "peak_gain",
    "bandwidth",
    "spectral_centroid",
    "frequency_summary",
    "ssm_transfer",
    "ssm_transfer_on_grid",
    "ssm_response_db",
    "ChannelResponse",
    "channel_responses",
]


def _db(mag: np.ndarray) -> np.ndarray:
    """20*log10(mag); -inf (without a warning) where mag == 0."""
    with np.errstate(divide="ignore"):
        return 20.0 * np.log10(mag)


def frequency_response(k, n_fft: int | None = None) -> dict:
    """Frequency response of a kernel: H[f] = sum_l k[l] exp(-2*pi*i*f*l), from the rfft.

    Args: k (L,) real kernel, any L >= 1; n_fft >= L: FFT size (zero-padding; default L).
    Returns: dict(freq (n_fft//2+1,) cycles/sample in 0..0.5, mag_db: 20*log10|H| in dB (-inf
        where H == 0), phase: unwrapped angle of H in rad, H: complex rfft).
    """
    k = _as_kernel(k)
    n = k.size if n_fft is None else int(n_fft)
    if n < k.size:
        raise ValueError(f"n_fft={n} is shorter than the kernel (L={k.size}); it would drop taps")
    H = fft.rfft(k, n=n)
    return {
        "freq": fft.rfftfreq(n),
        "mag_db": _db(np.abs(H)),
        "phase": np.unwrap(np.angle(H)),
        "H": H,
    }


def _grid(freq, n: int) -> np.ndarray:
    """``freq`` as a float array matching n points; default: the even-n_fft rfft grid 0..0.5."""
    f = np.linspace(0.0, 0.5, n) if freq is None else np.asarray(freq, dtype=np.float64)
    if f.shape != (n,):
        raise ValueError(f"freq must have shape ({n},), got {f.shape}")
    if n > 1 and np.any(np.diff(f) <= 0):
        raise ValueError("freq must be strictly increasing")
    return f


def peak_gain(H, freq=None) -> tuple[float, float, float]:
    """Peak gain max_f |H(f)| over the sampled grid (the H-infinity norm on that grid).

    Args: H (M,) complex response; freq (M,) cycles/sample, default np.linspace(0, 0.5, M)
        (the rfft grid of an even n_fft; pass it for odd n_fft or other grids).
    Returns: (gain_linear, gain_db = 20*log10(gain_linear), freq of the peak in cycles/sample).
    """
    H = np.asarray(H)
    if H.ndim != 1 or H.size == 0:
        raise ValueError(f"H must be a non-empty 1-D array, got shape {H.shape}")
    mag = np.abs(H)
    if not np.all(np.isfinite(mag)):
        raise ValueError("H contains NaN/Inf")
    f = _grid(freq, H.size)
    i = int(np.argmax(mag))
    return float(mag[i]), float(_db(mag[i])), float(f[i])


def _band_width(freq: np.ndarray, amp: np.ndarray, peak: np.ndarray, thr: float) -> np.ndarray:
    """Width (cycles/sample) of the contiguous run around each row's peak where amp >= thr.

    freq (F,); amp (n, F) amplitude relative to the row's peak (1 there); peak (n,) peak indices.
    Edges are interpolated linearly in amplitude between the last point inside and the first outside;
    a run that reaches an end of the grid stops there.
    """
    n, F = amp.shape
    rows = np.arange(n)
    outside = amp < thr
    j = np.arange(F)[None, :]
    lo = np.where(outside & (j < peak[:, None]), j, -1).max(1) + 1
    hi = np.where(outside & (j > peak[:, None]), j, F).min(1) - 1

    def edge(i_in, i_out):  # where the amplitude falls to thr between i_in (inside) and i_out (outside)
        a_in, a_out = amp[rows, i_in], amp[rows, i_out]
        with np.errstate(invalid="ignore", divide="ignore"):
            return freq[i_in] + (freq[i_out] - freq[i_in]) * (a_in - thr) / (a_in - a_out)

    f_lo = np.where(lo == 0, freq[lo], edge(lo, np.maximum(lo - 1, 0)))
    f_hi = np.where(hi == F - 1, freq[hi], edge(hi, np.minimum(hi + 1, F - 1)))
    return f_hi - f_lo


def _relative_amplitude(mag_db: np.ndarray, peak: np.ndarray) -> np.ndarray:
    """10^((mag_db - peak dB)/20) per row: (n, F) amplitude relative to the peak (0 where mag_db = -inf)."""
    with np.errstate(invalid="ignore"):
        return 10.0 ** ((mag_db - mag_db[np.arange(len(peak)), peak][:, None]) / 20.0)


def bandwidth(freq, mag_db, drop_db: float = 3.0) -> float:
    """Width of the band around the peak where mag_db >= peak - drop_db, in cycles/sample.

    The band is the contiguous run of grid points around the (first) maximum; its two edges
    are interpolated linearly in amplitude 10^(mag_db/20) between the last point inside and the
    first point outside. A band that reaches an end of the grid stops there, so for a low-pass
    (peak at f = 0) the width is the -drop_db cutoff frequency; a response that never drops by
    drop_db has width freq[-1] - freq[0].

    Args: freq (M,) increasing, cycles/sample; mag_db (M,) dB (-inf allowed); drop_db > 0 dB.
    Returns: float, cycles/sample.
    """
    mag_db = np.asarray(mag_db, dtype=np.float64)
    if mag_db.ndim != 1 or mag_db.size == 0:
        raise ValueError(f"mag_db must be a non-empty 1-D array, got shape {mag_db.shape}")
    f = _grid(freq, mag_db.size)
    if np.any(np.isnan(mag_db)) or np.any(mag_db == np.inf):
        raise ValueError("mag_db contains NaN/+Inf")
    if not drop_db > 0:
        raise ValueError(f"drop_db must be > 0, got {drop_db}")
    peak = np.array([int(np.argmax(mag_db))])
    if mag_db[peak[0]] == -np.inf:
        raise ValueError("response is zero everywhere: no bandwidth")
    amp = _relative_amplitude(mag_db[None], peak)
    return float(_band_width(f, amp, peak, 10.0 ** (-drop_db / 20.0))[0])


def frequency_summary(K2d, n_fft: int | None = None, drop_db: float = 3.0, keep_rows=None, workers: int = 2) -> dict:
    """:func:`peak_gain`, :func:`bandwidth` and :func:`spectral_centroid` of every row of a (n, L) kernel array.

    Args: K2d (n, L) real kernels; n_fft >= L (rfft size, default L); drop_db: band edge in dB below the
    peak; keep_rows: row indices whose complex responses to return; workers: scipy.fft threads.
    Returns dict: freq (F,) cycles/sample; peak_gain (linear), peak_gain_db (dB), peak_freq, bandwidth,
    centroid (cycles/sample), each (n,) and NaN for all-zero / non-finite rows; H_rows (len(keep_rows), F)
    complex, or None.
    """
    K = np.asarray(K2d, dtype=np.float64)
    if K.ndim != 2:
        raise ValueError(f"expected (n, L), got shape {K.shape}")
    n, L = K.shape
    n_fft = L if n_fft is None else int(n_fft)
    finite = np.isfinite(K).all(1)
    Hf = fft.rfft(np.where(finite[:, None], K, 0.0), n=n_fft, axis=1, workers=workers)
    freq = fft.rfftfreq(n_fft)
    mag = np.abs(Hf)
    p = mag.argmax(1)
    peak = mag[np.arange(n), p]
    valid = finite & (peak > 0)
    mag_db = _db(mag)
    width = _band_width(freq, _relative_amplitude(mag_db, p), p, 10.0 ** (-drop_db / 20.0))
    power = mag * mag
    with np.errstate(invalid="ignore", divide="ignore"):
        centroid = power @ freq / power.sum(1)
    out = {"peak_gain": peak, "peak_gain_db": mag_db[np.arange(n), p], "peak_freq": freq[p], "bandwidth": width,
           "centroid": centroid}
    out = {key: np.where(valid, v, np.nan) for key, v in out.items()}
    out["freq"] = freq
    out["H_rows"] = Hf[list(keep_rows)] if keep_rows is not None else None
    return out


def spectral_centroid(freq, H) -> float:
    """Power-weighted mean frequency sum_f f*|H(f)|^2 / sum_f |H(f)|^2, in cycles/sample.

    Args: freq (M,) cycles/sample; H (M,) complex (or magnitude). Raises ValueError if H == 0.
    """
    H = np.asarray(H)
    if H.ndim != 1 or H.size == 0:
        raise ValueError(f"H must be a non-empty 1-D array, got shape {H.shape}")
    f = _grid(freq, H.size)
    power = np.abs(H) ** 2
    total = power.sum()
    if not np.isfinite(total):
        raise ValueError("H contains NaN/Inf")
    if total == 0:
        raise ValueError("response is zero everywhere: no spectral centroid")
    return float(f @ power / total)


def _modes(residues, poles) -> tuple[np.ndarray, np.ndarray]:
    """Broadcast residues and poles to a common complex (..., N) shape."""
    r, lam = np.broadcast_arrays(
        np.asarray(residues, dtype=np.complex128), np.asarray(poles, dtype=np.complex128)
    )
    if r.ndim == 0 or r.shape[-1] == 0:
        raise ValueError("residues/poles need a non-empty last axis of modes")
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(lam))):
        raise ValueError("residues/poles contain NaN/Inf")
    return r, lam


def _geometric_sum(z: np.ndarray, L: int | None) -> np.ndarray:
    """sum_{l<L} z^l = (1 - z^L)/(1 - z) (= L where z == 1); 1/(1 - z) when L is None."""
    if L is None:
        return 1.0 / (1.0 - z)
    one = z == 1
    den = np.where(one, 1.0, 1.0 - z)
    return np.where(one, float(L), (1.0 - z**L) / den)


def ssm_transfer(residues, poles, omega, L: int | None = None) -> np.ndarray:
    """Exact transfer function of the SSM kernel K[l] = sum_n r_n lambda_n^l, l = 0..L-1.

    H(omega) = sum_n r_n (1 - (lambda_n e^{-i omega})^L) / (1 - lambda_n e^{-i omega}) for
    finite L; sum_n r_n / (1 - lambda_n e^{-i omega}) for L = None (L -> inf, needs |lambda|<1).
    At omega = 2*pi*k/L this equals np.fft.rfft of the length-L kernel (k = 0..L//2).

    Args: residues, poles: complex (..., N), broadcastable (modes on the last axis, conjugate
        pairs passed explicitly for a real kernel); omega: (M,) or scalar, rad/sample;
        L: kernel length in taps or None.
    Returns: complex (..., M).
    """
    r, lam = _modes(residues, poles)
    w = np.atleast_1d(np.asarray(omega, dtype=np.float64))
    if w.ndim != 1:
        raise ValueError(f"omega must be a scalar or 1-D, got shape {w.shape}")
    if L is None:
        if np.any(np.abs(lam) >= 1):
            raise ValueError("L=None (infinite length) needs every |pole| < 1")
    elif int(L) < 1:
        raise ValueError(f"L must be >= 1 or None, got {L}")
    shift = np.exp(-1j * w)  # e^{-i omega}
    H = np.zeros(r.shape[:-1] + w.shape, dtype=np.complex128)
    L = None if L is None else int(L)
    for n in range(r.shape[-1]):  # one mode at a time: memory O(batch * M), not O(batch * N * M)
        H += r[..., n, None] * _geometric_sum(lam[..., n, None] * shift, L)
    return H


def ssm_transfer_on_grid(residues, poles, omega, L: int) -> np.ndarray:
    """:func:`ssm_transfer` of the length-L kernel at omega = 2 pi k / L (the rfft grid), ~50x faster.

    There e^{-i omega L} = 1, so (lambda e^{-i omega})^L = lambda^L and the finite-length response equals
    the infinite-length one of the residues r (1 - lambda^L), which needs no complex power per frequency.
    Falls back to the finite-L form when some |lambda| >= 1. Only valid on that grid.
    """
    lam = np.asarray(poles, dtype=np.complex128)
    if np.all(np.abs(lam) < 1):
        return ssm_transfer(np.asarray(residues) * (1.0 - lam ** int(L)), lam, omega, None)
    return ssm_transfer(residues, lam, omega, L=int(L))


def ssm_response_db(residues, poles, freq, L: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Exact |H| in dB of an SSM kernel on the rfft grid ``freq`` of length L (cycles/sample):
    (length-L kernel, L -> infinity or None when some |pole| >= 1). Shapes (..., F)."""
    omega = 2 * np.pi * np.asarray(freq, dtype=np.float64)
    finite = _db(np.abs(ssm_transfer_on_grid(residues, poles, omega, L)))
    if not np.all(np.abs(np.asarray(poles)) < 1):
        return finite, None
    return finite, _db(np.abs(ssm_transfer(residues, poles, omega, None)))


@dataclass(frozen=True)
class ChannelResponse:
    """Frequency response of one kernel channel (c, h): the FFT of the length-L kernel and, for an SSM, the
    exact transfer function of the length-L kernel and of the infinitely long one (None when unstable)."""

    c: int
    h: int
    freq: np.ndarray  # cycles/sample
    mag_db: np.ndarray
    phase: np.ndarray  # rad, unwrapped
    exact_db: np.ndarray | None = None
    exact_inf_db: np.ndarray | None = None

    def magnitude_series(self, label: str) -> dict:
        """A series for `analysis.figures.frequency_figure`."""
        s = {"label": label, "freq": self.freq, "mag_db": self.mag_db}
        if self.exact_db is not None:
            s["analytic_freq"] = self.freq
            s["analytic_mag_db"] = self.exact_db
            if self.exact_inf_db is not None:
                s["analytic_inf_mag_db"] = self.exact_inf_db
        return s

    def phase_series(self, label: str) -> dict:
        """A series for `analysis.figures.phase_figure`."""
        return {"label": label, "freq": self.freq, "phase": self.phase}


def channel_responses(K, channels, modes=None) -> list[ChannelResponse]:
    """:class:`ChannelResponse` of each channel (c, h) of a layer's kernel K (C_k, H, L).

    modes: the layer's (residues (C_k, H, M), poles (H, M)) (`analysis.extract.ssm_modes`) for the exact
    responses, or None."""
    K = np.asarray(K)
    L = K.shape[-1]
    out = []
    for c, h in channels:
        fr = frequency_response(K[c, h])
        exact = exact_inf = None
        if modes is not None:
            r, lam = modes
            exact, exact_inf = ssm_response_db(r[c, h], lam[h], fr["freq"], L)
        out.append(ChannelResponse(int(c), int(h), fr["freq"], fr["mag_db"], fr["phase"], exact, exact_inf))
    return out
