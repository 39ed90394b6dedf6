"""Initialisations of the diagonal / DPLR state matrices (float64, numpy), following S4 and S4D.

All return the N' = N/2 modes of one conjugate half (Im A <= 0), as the official code keeps them.
"""
from __future__ import annotations

import numpy as np


def legs_transition(N: int) -> tuple[np.ndarray, np.ndarray]:
    """HiPPO-LegS (A, B): A = -T M T^-1, M[n,k] = (2n+1 if n >= k else 0) - n*delta_nk, T = diag(sqrt(2n+1)).

    Returns A (N, N) and B (N,) in float64.
    """
    q = np.arange(N, dtype=np.float64)
    col, row = np.meshgrid(q, q)
    r = 2 * q + 1
    M = -(np.where(row >= col, r, 0) - np.diag(q))
    T = np.sqrt(np.diag(2 * q + 1))
    A = T @ M @ np.linalg.inv(T)
    B = np.diag(T).copy()
    return A, B


def legs_nplr(N: int, B_clip: float = 2.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normal-plus-low-rank form of HiPPO-LegS: A = V (diag(W) - P P^*) V^*.

    A + P P^T (P = sqrt(n + 1/2)) is -1/2 I plus a skew-symmetric matrix, so its eigenvalues are
    -1/2 + i*eig(-i(AP)) (Hermitian eigh). Keeps the N/2 eigenvalues with negative imaginary part.
    Returns W (N/2,) complex, P (N/2,) = V^* P, B (N/2,) = V^* B with Im B clipped to +-B_clip.
    """
    A, B = legs_transition(N)
    P = np.sqrt(0.5 + np.arange(N))
    AP = A + np.outer(P, P)
    w_re = np.mean(np.diag(AP))
    w_im, V = np.linalg.eigh(AP * -1j)
    W = w_re + 1j * w_im
    idx = np.argsort(W.imag, kind="stable")
    W, V = W[idx][: N // 2], V[:, idx][:, : N // 2]
    Vh = V.conj().T
    B, P = Vh @ B.astype(complex), Vh @ P.astype(complex)
    if B_clip is not None:
        B = B.real + 1j * np.clip(B.imag, -B_clip, B_clip)
    return W, P, B


def diag_init(init: str, N: int) -> tuple[np.ndarray, np.ndarray]:
    """Diagonal A (N/2 modes, or N real modes for 'real') and B for S4D's inits.

    - 'lin':  A_n = -1/2 - i*pi*n                        (S4D-Lin), B = 1
    - 'inv':  A_n = -1/2 - i*(N/pi)*(N/(2n+1) - 1)       (S4D-Inv), B = 1
    - 'legs': A = diagonal part of the NPLR form of HiPPO-LegS, B = V^* B_legs   (S4D-LegS)
    - 'real': A_n = -(n+1), n < N, B = 1                  (S4D-Real; real modes)
    """
    n = np.arange(N // 2, dtype=np.float64)
    if init == "lin":
        return -0.5 - 1j * np.pi * n, np.ones(N // 2, complex)
    if init == "inv":
        return -0.5 - 1j * (N / np.pi) * (N / (1 + 2 * n) - 1), np.ones(N // 2, complex)
    if init == "legs":
        W, _, B = legs_nplr(N)
        return W, B
    if init == "real":
        return -(1.0 + np.arange(N, dtype=np.float64)), np.ones(N)
    raise ValueError(f"unknown S4D init {init!r}; choose from 'lin', 'inv', 'legs', 'real'")
