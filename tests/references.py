"""Independent float64 re-derivations shared by the kernel and foreign-layout tests (numpy only)."""
import numpy as np


def up_linear(x, s):
    """F.interpolate(mode='linear', align_corners=False) re-derived: source u = max((j+.5)/s - .5, 0)."""
    d = x.shape[-1]
    j = np.arange(d * s)
    u = np.maximum((j + 0.5) / s - 0.5, 0.0)
    i0 = np.floor(u).astype(int)
    i1 = np.minimum(i0 + 1, d - 1)
    lam = u - i0
    return x[..., i0] * (1 - lam) + x[..., i1] * lam


def up_nearest(x, s):
    """F.interpolate(mode='nearest'): source index floor(j / s)."""
    return x[..., np.arange(x.shape[-1] * s) // s]
