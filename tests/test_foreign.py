"""Official SGConv / state-spaces checkpoint layouts -> our kernels, against float64 numpy references
written from the formulas in NOTES-models.md (not from our kernel classes)."""
import math

import numpy as np
import pytest
import torch

import sgconv_core
from sgconv_core import CheckpointError

from references import up_linear, up_nearest
from sgconv_core.checkpoints.foreign import from_object
from sgconv_core.kernels.hippo import legs_nplr

TOL = 1e-8


def rel(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())


def kern(ck, i, L):
    """Kernel i at length L, computed in float64 from the (float32) stored values."""
    with torch.no_grad():
        return ck.kernels[i].double()(L).numpy()


def npc(t):
    """(..., 2) view_as_real tensor -> complex128 numpy."""
    a = t.detach().double().numpy()
    return a[..., 0] + 1j * a[..., 1]


def softplus(x):
    return np.log1p(np.exp(x))


# ---------------------------------------------------------------------------------------- references
