"""Compare kernels: normalised cross-correlation over lags, relative L2 error, cosine similarity.

Pure numpy/scipy; correlations go through FFTs so 1M-tap kernels take a fraction of a second.
Lags in taps. Kernels of different lengths are compared after zero-padding the shorter one.

Lag convention: c[m] = sum_n k1[n] * k2[n - m]. A positive ``best_lag`` m means k2 delayed by
m taps (k2[n - m]) best matches k1; e.g. k1 = k2 delayed by 17 gives best_lag = +17.

`compare_results` puts several reports (`analysis.measure.analyze`) side by side: their layer tables and
the similarity of their layers' mean kernels and RMS profiles (an `analysis.records.Comparison`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import fft, signal

from .decay import _as_kernel
from .records import Comparison

__all__ = ["similarity", "similarity_matrix", "compare_results"]

_BLOCK_ELEMS = 1 << 24  # similarity_matrix: max floats per batched inverse FFT (~128 MB)


def _pad_pair(k1, k2) -> tuple[np.ndarray, np.ndarray]:
    """Validate two kernels and zero-pad the shorter to the common length."""
    a, b = _as_kernel(k1, name="k1"), _as_kernel(k2, name="k2")
    L = max(a.size, b.size)
    return np.pad(a, (0, L - a.size)), np.pad(b, (0, L - b.size))


def similarity(k1, k2) -> dict:
    """How alike two kernels are.

    ncc = max_m c[m] / (||k1|| ||k2||) with c[m] = sum_n k1[n] k2[n - m] (zero outside); by
    Cauchy-Schwarz in [-1, 1]; the signed maximum, so a sign-flipped copy is not a match.

    Args: k1 (L1,), k2 (L2,) real kernels (the shorter is zero-padded), neither all zero.
    Returns: dict(ncc, best_lag: m at the maximum in taps (k2 delayed by best_lag best matches
        k1), rel_l2: ||k1 - k2|| / ||k1||, cosine: <k1, k2> / (||k1|| ||k2||) at lag 0).
    """
    a, b = _pad_pair(k1, k2)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        raise ValueError("cannot compare an all-zero kernel (k1 or k2 is zero)")
    c = signal.correlate(a, b, mode="full", method="fft")
    lags = signal.correlation_lags(a.size, b.size, mode="full")
    i = int(np.argmax(c))
    ncc, best_lag = c[i] / (na * nb), int(lags[i])
    cosine = float(a @ b / (na * nb))
    if cosine >= ncc:  # FFT round-off must not rank lag 0 below its exact value
        ncc, best_lag = cosine, 0
    return {
        "ncc": float(np.clip(ncc, -1.0, 1.0)),
        "best_lag": best_lag,
        "rel_l2": float(np.linalg.norm(a - b) / na),
        "cosine": float(np.clip(cosine, -1.0, 1.0)),
    }


def similarity_matrix(kernels) -> np.ndarray:
    """Pairwise ncc (as in :func:`similarity`) of n kernels.

    Each kernel's spectrum F_i = rfft(k_i, n_fft), n_fft >= 2L-1 (no wrap-around), is computed
    once; c_ij[m] = irfft(F_i * conj(F_j))[m] = sum_n k_i[n + m] k_j[n], and
    S_ij = max_m c_ij[m] / (||k_i|| ||k_j||). S is symmetric (the max over all lags does not
    depend on the order), with 1 on the diagonal.

    Args: kernels (n, L) real. Returns: (n, n) float in [-1, 1]; rows/columns of all-zero
        kernels (dead channels) are NaN.
    """
    X = np.asarray(kernels)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"kernels must be (n, L) with n >= 1, got shape {X.shape}")
    X = np.stack([_as_kernel(x, name=f"kernel {i}") for i, x in enumerate(X)])
    n, L = X.shape
    norms = np.linalg.norm(X, axis=1)
    n_fft = fft.next_fast_len(2 * L - 1, real=True)
    F = fft.rfft(X, n=n_fft, axis=1)
    S = np.full((n, n), np.nan)
    block = max(1, _BLOCK_ELEMS // n_fft)
    for i in range(n):
        for j0 in range(i, n, block):
            j1 = min(n, j0 + block)
            c = fft.irfft(F[i] * np.conj(F[j0:j1]), n=n_fft, axis=1)
            S[i, j0:j1] = c.max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        S = S / np.outer(norms, norms)
    S = np.triu(S) + np.triu(S, 1).T
    live = norms > 0
    S[np.ix_(~live, np.arange(n))] = np.nan
    S[np.ix_(np.arange(n), ~live)] = np.nan
    S[np.diag_indices(n)] = np.where(live, 1.0, np.nan)
    return np.clip(S, -1.0, 1.0)


def _unique_labels(labels) -> list[str]:
    labels = list(labels)
    seen: dict[str, int] = {}
    for i, lab in enumerate(labels):
        if lab in seen:
            labels[i] = f"{lab} ({i})"
        seen[lab] = i
    return labels


def _layer_similarity(reports, labels, li: int) -> tuple[list, dict]:
    """Similarity rows and matrices of layer ``li`` of every report: mean kernels and RMS profiles."""
    layer_figs = [list(r.figures.values())[li] for r in reports]
    rows, matrices = [], {}
    for what in ("mean_kernel", "rms_profile"):
        X = np.stack([getattr(a, what) for a in layer_figs])
        matrices[what] = similarity_matrix(X)
        for i in range(len(reports)):
            for j in range(i + 1, len(reports)):
                try:
                    s = similarity(X[i], X[j])
                except ValueError:
                    s = {"ncc": math.nan, "best_lag": None, "rel_l2": math.nan, "cosine": math.nan}
                rows.append({"layer_index": li, "what": what, "a": labels[i], "b": labels[j], **s})
    return rows, matrices


def compare_results(results, labels=None) -> Comparison:
    """Side-by-side comparison of several `analysis.records.Report`s (all at the same L).

    Returns a `Comparison`: labels, L, tables ({label: layer rows}), summaries, similarity (rows: layer index,
    a, b, ncc, best_lag, rel_l2, cosine of the layers' mean kernels and of their RMS profiles), matrices
    ({layer index: {"mean_kernel": (n, n) ncc, "rms_profile": (n, n) ncc}}), reports (figure data).
    """
    if len(results) < 2:
        raise ValueError("compare needs at least two results")
    Ls = {r.L for r in results}
    if len(Ls) != 1:
        raise ValueError(f"results were analysed at different lengths {sorted(Ls)}; use one L")
    labels = _unique_labels(labels if labels else [str(r.checkpoint.summary.get("file", i))
                                                   for i, r in enumerate(results)])
    sim_rows, matrices = [], {}
    for li in range(min(len(r.layers) for r in results)):
        rows, matrices[li] = _layer_similarity(results, labels, li)
        sim_rows += rows
    return Comparison(
        labels=labels, L=Ls.pop(),
        summaries=[{"label": lab, **r.checkpoint.summary} for lab, r in zip(labels, results, strict=True)],
        tables={lab: r.layer_rows() for lab, r in zip(labels, results, strict=True)},
        warnings={lab: r.all_warnings() for lab, r in zip(labels, results, strict=True)},
        similarity=sim_rows, matrices=matrices,
        scaling=[dict(row, family=f"{lab}: {row['family']}") for lab, r in zip(labels, results, strict=True)
                 for row in r.params.scaling if row["family"].startswith("this model")],
        reports=list(results))
