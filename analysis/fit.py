"""Can SGConv express this kernel? Least-squares fits of an SGConv kernel to any target kernel.

For a fixed kernel_dim d, decay multiplier m, number of scales S and mode, the *un-normalised* SGConv
kernel is linear in its S*d sub-kernel weights: k = A w with A the (L x S*d) design matrix whose column
(i, j) is the kernel produced by a unit weight at position j of scale i. We build A with
`sgconv_core.kernels.SGConvKernel` itself (H = 1, one kernel channel per unit vector, float64), so the
fit uses exactly the interpolation, scale factors and multipliers of the model code. SGConv divides the
kernel by a frozen scalar norm; a scalar does not change what can be expressed, so we fit the
un-normalised form and report the relative L2 error ||A w - k|| / ||k||.

'cat' mode: scale i occupies its own segment of lags ([0, d), [d, 2d), [2d, 4d), ...), so A is block
diagonal and each scale is an independent (segment x d) least-squares problem: O(L d^2) in all.
'sum' mode: the scales overlap (all start at lag 0), so the full (L x S*d) problem is solved at once.
Taps beyond the SGConv raw length d*2^(S-1) cannot be expressed (the model zero-pads) and count as error.
"""
from __future__ import annotations

import numpy as np
import torch

from sgconv_core.kernels import SGConvKernel
from sgconv_core.kernels.sgconv import n_scales_for

__all__ = ["fit_sgconv", "fit_curve", "sgconv_design", "dims_for", "DEFAULT_DIMS"]

DEFAULT_DIMS = (1, 2, 4, 8, 16, 32, 64)


def dims_for(L: int, dims=DEFAULT_DIMS) -> list[int]:
    """The kernel_dims d of ``dims`` an SGConv kernel of length L (taps) can have (d <= L)."""
    return [int(d) for d in dims if d <= int(L)]


def _as_target(k) -> np.ndarray:
    a = np.asarray(k, dtype=np.float64)
    if a.ndim != 1 or a.size < 1:
        raise ValueError(f"kernel_1d must be a non-empty 1-D array, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("kernel_1d contains NaN/Inf")
    return a


def _layer(L: int, d: int, m: float, S: int, mode: str, interp: str) -> SGConvKernel:
    if mode not in ("cat", "sum"):
        raise ValueError(f"mode must be 'cat' or 'sum', got {mode!r}")
    if interp not in ("linear", "nearest"):
        raise ValueError(f"interp must be 'linear' or 'nearest', got {interp!r}")
    flags = f"{mode}_randn" + ("_nearest" if interp == "nearest" else "")
    with torch.random.fork_rng():
        k = SGConvKernel(d_model=1, l_max=L, channels=d, kernel_dim=d, n_scales=S, mode=flags,
                         decay_min=m, decay_max=m, init_norm=False)
    return k.double()


def _n_scales(L: int, d: int, n_scales: int | None) -> int:
    S = n_scales_for(L, d) if n_scales is None else int(n_scales)
    if S < 1:
        raise ValueError(f"SGConv with L={L}, kernel_dim={d} has {S} scales; need >= 1 (kernel_dim <= L)")
    return S


def _columns(layer: SGConvKernel, i: int | None, L: int) -> np.ndarray:
    """(d, min(L, L_raw)) responses to the d unit weight vectors (kernel channel j = unit vector j) placed
    in scale i only, or in every scale at once (i None; 'cat' mode keeps the scales' segments apart)."""
    d = layer.kernel_dim
    with torch.no_grad():
        for s, w in enumerate(layer.kernel_list):
            w.zero_()
            if i is None or s == i:
                w[:, 0, :] = torch.eye(d, dtype=w.dtype)
        return layer.raw_kernel(L)[:, 0, :].numpy()


def _segments(layer: SGConvKernel) -> list[tuple[int, int]]:
    """Lag ranges [start, stop) of each scale in 'cat' mode (uncropped)."""
    out, start = [], 0
    for i in range(layer.n_scales):
        n = layer.kernel_dim * layer._scale_factor(i)
        out.append((start, start + n))
        start += n
    return out


def sgconv_design(L: int, kernel_dim: int, decay: float = 2.0, n_scales: int | None = None, mode: str = "cat",
                  interp: str = "linear") -> np.ndarray:
    """The (L, S*d) design matrix: column i*d + j is the un-normalised SGConv kernel of a unit weight j in scale i."""
    L, d = int(L), int(kernel_dim)
    S = _n_scales(L, d, n_scales)
    layer = _layer(L, d, float(decay), S, mode, interp)
    A = np.zeros((L, S * d))
    for i in range(S):
        cols = _columns(layer, i, L)
        A[: cols.shape[1], i * d:(i + 1) * d] = cols.T
    return A


def fit_sgconv(kernel_1d, kernel_dim: int, decay: float = 2.0, n_scales: int | None = None, mode: str = "cat",
               interp: str = "linear") -> dict:
    """Best SGConv approximation (least squares) of a target kernel.

    Args: kernel_1d (L,) target; kernel_dim d; decay m (the multiplier: scale i is damped by m^(S-1-i));
        n_scales S (None: 1 + ceil(log2(L/d)), the model's default for l_max = L); mode 'cat' | 'sum';
        interp 'linear' | 'nearest'.
    Returns: dict(weights (S, d) sub-kernel weights (minimum-norm where a weight does not reach any of the
        L taps), fitted (L,) the SGConv kernel A w, rel_error ||fitted - k|| / ||k|| (0 for an all-zero
        target), n_params S*d, n_scales S, kernel_dim d, decay m, mode, interp).
    """
    k = _as_target(kernel_1d)
    L, d = k.size, int(kernel_dim)
    if d < 1:
        raise ValueError(f"kernel_dim must be >= 1, got {d}")
    S = _n_scales(L, d, n_scales)
    m = float(decay)
    layer = _layer(L, d, m, S, mode, interp)
    W = np.zeros((S, d))
    fitted = np.zeros(L)
    if mode == "cat":
        cols = _columns(layer, None, L)  # (d, n), n = min(L, L_raw); scale i lives on its segment [a, b)
        for i, (a, b) in enumerate(_segments(layer)):
            if a >= cols.shape[1]:
                break
            b = min(b, cols.shape[1])
            block = cols[:, a:b].T  # (segment, d)
            w, *_ = np.linalg.lstsq(block, k[a:b], rcond=None)
            W[i] = w
            fitted[a:b] = block @ w
    else:
        A = sgconv_design(L, d, m, S, mode, interp)
        w, *_ = np.linalg.lstsq(A, k, rcond=None)
        W = w.reshape(S, d)
        fitted = A @ w
    norm = float(np.linalg.norm(k))
    err = float(np.linalg.norm(fitted - k) / norm) if norm > 0 else 0.0
    return {"weights": W, "fitted": fitted, "rel_error": err, "n_params": S * d, "n_scales": S,
            "kernel_dim": d, "decay": m, "mode": mode, "interp": interp}


def fit_curve(kernel_1d, dims=DEFAULT_DIMS, m: float = 2.0, mode: str = "cat", interp: str = "linear",
              progress=None) -> list[dict]:
    """Relative error of the best SGConv fit against its parameter count, one row per kernel_dim d.

    Rows: {d, n_scales, n_params (S*d per kernel), rel_error}. Dimensions larger than L are skipped.
    progress: optional callable(done, total).
    """
    k = _as_target(kernel_1d)
    dims = [int(d) for d in dims if 1 <= int(d) <= k.size]
    rows = []
    for j, d in enumerate(dims):
        r = fit_sgconv(k, d, m, None, mode, interp)
        rows.append({"d": d, "n_scales": r["n_scales"], "n_params": r["n_params"], "rel_error": r["rel_error"]})
        if progress:
            progress(j + 1, len(dims))
    return rows

