"""Each kernel family against an independent float64 reference written from the formulas (numpy only)."""
import math

import numpy as np
import pytest
import torch

from sgconv_core.kernels import FreeKernel, S4DKernel, S4Kernel, SGConvKernel
from sgconv_core.kernels.base import MAX_LENGTH
from sgconv_core import CheckpointError

from references import up_linear, up_nearest


# ---------------------------------------------------------------------------------------------- SGConv
