"""state-spaces/s4 v3 (and v2.x) S4 / S4D layers: ``S4`` owning ``SSKernel`` -> ``SSKernelNPLR`` | ``SSKernelDiag``.

Read from src/models/sequence/ss/{s4.py, kernel.py, dplr.py} (v3.0.0 to late 2022; v2.x for its key names).
Marker ``kernel.kernel.log_dt`` under the layer prefix p; q = p + 'kernel.kernel.'. Stored -> our v4 convention
(docs/official-layouts.md §5):

    q + log_dt      (H,), later (H, 1) or (H, N')   -> inv_dt (H, 1) / (H, N'); dt = exp(log_dt) always
    NPLR (S4):
    q + inv_w_real  (n_ssm, N')   v3              -> A_real (Re w = -exp(x), or -relu(x) with real_type='relu')
    q + log_w_real  (n_ssm, N')   v2.x            -> A_real (Re w = -exp(x), no other option)
    q + w_imag      (n_ssm, N')   +Im w           -> A_imag = -w_imag
    q + B           (1, n_ssm, N', 2)             -> B
    q + P           (R, n_ssm, N', 2)             -> P
    q + C           (C_k, H, N', 2)  C~           -> C
    q + L           ()            v2.1+           -> l_kernel; v2.0 has no L: it is read from the cached
                                                     q + omega (L//2+1, 2)
    Diag (S4D):
    q + inv_A_real | log_A_real  (n_ssm, N')      -> A_real
    q + A_imag      (n_ssm, N')   +Im A           -> A_imag = -A_imag
    q + B           (n_ssm, N', 2)  no leading 1  -> B (1, n_ssm, N', 2)
    q + C           (C_k, H, N', 2)               -> C
    p + D (C, H), p + output_linear.0.weight (2H, C*H): runnable.py (the S4 layer owns them).

Settings not stored: real_transform (config name real_type), imag_transform, disc (S4D: v3 default bilinear),
bandlimit; dt_fast exists for the v3 NPLR kernel only. A 'Q' key (untied low-rank term, v2) is refused, and so is
a layer with neither NPLR nor diag keys.
"""
from __future__ import annotations

import torch

from .context import Ctx
from .ssm import SSMLayout, SSMParams, resolve

V3_DEFAULTS = {"dt_transform": "exp", "real_transform": "exp", "imag_transform": "none", "disc": "bilinear",
               "bandlimit": None}
_ALIASES = {"real_transform": ("real_type",)}


def _refuse_v4_only_settings(ctx: Ctx, q: str) -> None:
    if "dt_transform" in ctx.settings and ctx.settings["dt_transform"] != "exp":
        raise ctx.err(f"dt_transform={ctx.settings['dt_transform']!r} does not apply: v3 '{q}log_dt' is always exp")
    if ctx.settings.get("is_real"):
        raise ctx.err("is_real=True does not apply to a v3 checkpoint (complex modes)")


def _map_v3(ctx: Ctx, q: str, kp: dict) -> SSMParams:
    """log_dt -> inv_dt (H, 1) / (H, N'); +Im A -> -Im A; diag B (n_ssm, N', 2) -> (1, n_ssm, N', 2)."""
    log_dt = ctx.get(kp["inv_dt"], (1, 2))
    A_real = ctx.get(kp["A_real"], 2)
    # (H,) in v3.0 releases; later v3 code keeps (H, 1), or (H, N') with dt_tie=False
    inv_dt = log_dt.reshape(-1, 1) if log_dt.dim() == 1 else log_dt
    if inv_dt.shape[1] not in (1, A_real.shape[1]):
        raise ctx.shape_err(kp["inv_dt"], log_dt, f"({log_dt.shape[0]},), ({log_dt.shape[0]}, 1) or "
                            f"({log_dt.shape[0]}, {A_real.shape[1]})")
    A_imag = -ctx.get(kp["A_imag"], 2)  # v3 stores +Im A; v4 stores -Im A
    C = ctx.get(kp["C"], 4)
    B = ctx.get(kp["B"], (3, 4))
    if B.dim() == 3:  # v3 diag: (n_ssm, N', 2)
        B = B.unsqueeze(0)
    return SSMParams(kp, q, inv_dt, A_real, A_imag, B, C, real=False)


class _NPLR(SSMLayout):
    """v3 / v2 SSKernelNPLR: always bilinear, C stored as C~ attuned to L."""

    marker = "kernel.kernel.log_dt"
    dplr = True
    real_name = ""

    def map_keys(self, ctx: Ctx, p: str) -> SSMParams:
        q = p + "kernel.kernel."
        _refuse_v4_only_settings(ctx, q)
        if ctx.has(q + "Q"):
            raise ctx.err(f"key '{q}Q' (an untied low-rank term) is not supported")
        kp = {"inv_dt": q + "log_dt", "A_real": q + self.real_name, "A_imag": q + "w_imag", "B": q + "B", "C": q + "C",
              "P": q + "P", "l_kernel": q + "L"}
        return _map_v3(ctx, q, kp)


class S4NPLRv3(_NPLR):
    """v3 S4 (inv_w_real). real_type 'relu' gives Re w = -relu(x), without the 1e-4 v3 diag and v4 subtract."""

    family, title = "s4-v3", "S4 (NPLR, v3)"
    real_name = "inv_w_real"
    has_dt_fast = True
    clips_at_l_max = True

    def matches(self, sd: dict, prefix: str, key: str) -> bool:
        return prefix + "kernel.kernel.inv_w_real" in sd

    def resolve_settings(self, ctx: Ctx, p: str, prm: SSMParams) -> dict:
        names = ("real_transform", "imag_transform", "bandlimit")
        sset = resolve(ctx, self, V3_DEFAULTS, names, fixed={"dt_transform": "exp"}, hp_aliases=_ALIASES)
        if sset["real_transform"] == "relu":
            # store relu(x) under the identity transform, which gives exactly -relu(x)
            prm.A_real, prm.kernel_real_transform = torch.relu(prm.A_real), "none"
        return sset


class S4NPLRv2(_NPLR):
    """v2.x S4 (log_w_real): w = -exp(log_w_real) + i w_imag, no real_type, bandlimit or dt_fast option."""

    family, title = "s4-v2", "S4 (NPLR, v2.x)"
    real_name = "log_w_real"

    def matches(self, sd: dict, prefix: str, key: str) -> bool:
        q = prefix + "kernel.kernel."
        return q + "log_w_real" in sd and q + "inv_w_real" not in sd

    def resolve_settings(self, ctx: Ctx, p: str, prm: SSMParams) -> dict:
        if ctx.settings.get("real_transform", "exp") != "exp":
            raise ctx.err(f"real_transform={ctx.settings['real_transform']!r} does not apply: v2 "
                          f"'{prm.keys['A_real']}' is always exp")
        if ctx.settings.get("bandlimit") is not None:
            raise ctx.err("bandlimit does not apply to a v2 NPLR kernel")
        fixed = {"dt_transform": "exp", "real_transform": "exp", "bandlimit": None}
        return resolve(ctx, self, V3_DEFAULTS, ("imag_transform",), fixed=fixed)

    def read_l_kernel(self, ctx: Ctx, p: str, prm: SSMParams) -> int:
        """v2.0 kept L as a Python int and cached the L//2+1 FFT nodes as the buffer 'omega' (L//2+1, 2)."""
        q = prm.kernel_prefix
        if ctx.has(prm.keys["l_kernel"]) or not ctx.has(q + "omega"):
            return super().read_l_kernel(ctx, p, prm)
        om = ctx.get(q + "omega", 2)
        if om.shape[-1] != 2 or om.shape[0] < 2:
            raise ctx.shape_err(q + "omega", om, "(L//2+1, 2)")
        lk = 2 * (om.shape[0] - 1)
        ctx.warn(f"{ctx.source}: layer '{p.rstrip('.')}' (v2.0) has no '{prm.keys['l_kernel']}'; its C~ length "
                 f"L = {lk} was read from '{q}omega' ({om.shape[0]} FFT nodes; an odd L would be {lk + 1}).")
        return lk


class S4Dv3(SSMLayout):
    """v3 S4D (SSKernelDiag): disc defaults to bilinear; v3 SSKernel never passes dt_fast to it."""

    family, title, marker = "s4d-v3", "S4D (v3)", "kernel.kernel.log_dt"
    clips_at_l_max = True

    def matches(self, sd: dict, prefix: str, key: str) -> bool:
        """Any v3 layer that is not NPLR; one without inv_A_real / log_A_real either is refused by map_keys."""
        q = prefix + "kernel.kernel."
        return q + "inv_w_real" not in sd and q + "log_w_real" not in sd

    def map_keys(self, ctx: Ctx, p: str) -> SSMParams:
        q = p + "kernel.kernel."
        if not ctx.has(q + "inv_A_real") and not ctx.has(q + "log_A_real"):
            raise ctx.err(f"layer '{p.rstrip('.')}' has v3-style key '{p}kernel.kernel.log_dt' but neither "
                          "inv_w_real/log_w_real nor inv_A_real")
        _refuse_v4_only_settings(ctx, q)
        re_name = "inv_A_real" if ctx.has(q + "inv_A_real") else "log_A_real"
        kp = {"inv_dt": q + "log_dt", "A_real": q + re_name, "A_imag": q + "A_imag", "B": q + "B", "C": q + "C"}
        return _map_v3(ctx, q, kp)

    def resolve_settings(self, ctx: Ctx, p: str, prm: SSMParams) -> dict:
        names = ("real_transform", "imag_transform", "disc", "bandlimit")
        return resolve(ctx, self, V3_DEFAULTS, names, fixed={"dt_transform": "exp"}, hp_aliases=_ALIASES)


ADAPTERS = (S4NPLRv3(), S4NPLRv2(), S4Dv3())
