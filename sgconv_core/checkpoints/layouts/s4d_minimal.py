"""The minimal S4D layer: state-spaces/s4 models/s4/s4d.py ``S4D`` (used by example.py, layer 's4d' in v4).

Marker ``kernel.log_dt`` with ``kernel.log_A_real`` beside it. Its own keys and conventions, mapped to v4's
(docs/official-layouts.md §4):

    kernel.log_dt      (H,)          -> inv_dt (H, 1); dt = exp(log_dt)
    kernel.log_A_real  (H, N')       -> A_real; Re A = -exp(log_A_real)
    kernel.A_imag      (H, N')       -> A_imag = -A_imag (here A = -exp(log_A_real) + i A_imag: +Im A)
    kernel.C           (H, N', 2)    -> C (1, H, N', 2); there is no B (B = 1)
    D                  (H,)          -> (1, H)                       } runnable.py
    output_linear.0.weight (2H, H, 1) a Conv1d -> (2H, H), then GLU  }

One channel, never bidirectional, and no settings: exp, exp, zoh, no bandlimit, no dt_fast (a setting that says
otherwise is refused). The official kernel uses the full input length (no l_max clipping).
"""
from __future__ import annotations

from .context import Ctx
from .ssm import SSM_SETTINGS, SSMLayout, SSMParams

FIXED = {"dt_transform": "exp", "real_transform": "exp", "imag_transform": "none", "disc": "zoh", "bandlimit": None}


class MinimalS4D(SSMLayout):
    family, title, marker = "s4d-minimal", "minimal S4D", "kernel.log_dt"
    flat_D = True

    def matches(self, sd: dict, prefix: str, key: str) -> bool:
        return prefix + "kernel.log_A_real" in sd

    def map_keys(self, ctx: Ctx, p: str) -> SSMParams:
        q = p + "kernel."
        kp = {"inv_dt": q + "log_dt", "A_real": q + "log_A_real", "A_imag": q + "A_imag", "C": q + "C"}
        for n in SSM_SETTINGS + ("is_real", "dt_fast"):
            if n in ctx.settings and ctx.settings[n] != FIXED.get(n, False):
                raise ctx.err(f"setting {n}={ctx.settings[n]!r} does not apply: the minimal S4D layer "
                              f"(models/s4/s4d.py) always uses {FIXED.get(n, False)!r}")
        log_dt = ctx.get(kp["inv_dt"], 1)
        inv_dt = log_dt.reshape(-1, 1)
        A_real = ctx.get(kp["A_real"], 2)
        A_imag = -ctx.get(kp["A_imag"], 2)  # minimal S4D: A = -exp(log_A_real) + i A_imag
        C = ctx.get(kp["C"], 3).unsqueeze(0)
        if A_real.shape[0] != inv_dt.shape[0]:
            raise ctx.shape_err(kp["A_real"], A_real, f"({inv_dt.shape[0]}, N') to match {kp['inv_dt']}")
        return SSMParams(kp, q, inv_dt, A_real, A_imag, None, C, real=False, chan=(1, False))

    def resolve_settings(self, ctx: Ctx, p: str, prm: SSMParams) -> dict:
        return dict(FIXED)


ADAPTERS = (MinimalS4D(),)
