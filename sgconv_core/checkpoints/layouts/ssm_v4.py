"""state-spaces/s4 v4 S4 and S4D layers: ``S4Block(FFTConv(SSMKernelDPLR | SSMKernelDiag))``.

Read from models/s4/s4.py and src/models/sequence/{kernels/ssm.py, kernels/fftconv.py, modules/s4block.py}.
Marker ``kernel.inv_dt`` under the FFTConv prefix p (a block prefix + 'layer.'); with ``kernel.P`` the layer is
S4 (DPLR), without it S4D. The keys are already in our convention (docs/official-layouts.md §3):

    p + kernel.inv_dt    (H, 1) or (H, N')       dt = dt_transform(inv_dt)
    p + kernel.A_real    (n_ssm, N')             Re A = -real_transform(A_real)
    p + kernel.A_imag    (n_ssm, N')             Im A = -A_imag; absent with is_real (S4D-Real, real B and C)
    p + kernel.B         (1, n_ssm, N', 2)       (1, n_ssm, N') real
    p + kernel.C         (C_k, H, N', 2)         C~ for DPLR; (C_k, H, N) real
    p + kernel.P         (R, n_ssm, N', 2)       DPLR only
    p + kernel.l_kernel  ()  int64               DPLR only: the length C~ is attuned to (0: never ran)
    p + D                (C, H)                  block + output_linear.0.weight (2H, C*H): runnable.py

A v3 diag layer after convert_v3_to_v4.py keeps ``inv_A_real`` (read as A_real) and B (n_ssm, N'[, 2]) (given a
leading 1). Settings not stored: dt_transform, real_transform, imag_transform, disc (S4D; DPLR is bilinear),
bandlimit, dt_fast. Defaults: the v4 Hydra config (softplus, zoh) for a Lightning .ckpt or a state dict with its
layers under 'model.' (train.py / convert_pl_to_pt.py); the class defaults (exp, zoh) otherwise.
"""
from __future__ import annotations

from .base import FFTConvInBlock
from .context import Ctx
from .ssm import SSMLayout, SSMParams, resolve

PIPELINE_DEFAULTS = {"dt_transform": "softplus", "real_transform": "exp", "imag_transform": "none", "disc": "zoh",
                     "bandlimit": None}
CLASS_DEFAULTS = {"dt_transform": "exp", "real_transform": "exp", "imag_transform": "none", "disc": "zoh",
                  "bandlimit": None}


def _map_v4(ctx: Ctx, p: str, dplr: bool) -> SSMParams:
    q = p + "kernel."
    kp = {n: q + n for n in ("inv_dt", "A_real", "A_imag", "B", "C", "P", "l_kernel")}
    if not ctx.has(kp["A_real"]) and ctx.has(q + "inv_A_real"):
        kp["A_real"] = q + "inv_A_real"  # a v3 diag layer after convert_v3_to_v4.py, which does not rename it
    inv_dt = ctx.get(kp["inv_dt"], 2)
    A_real = ctx.get(kp["A_real"], 2)
    has_imag = ctx.has(kp["A_imag"])
    A_imag = ctx.get(kp["A_imag"], 2) if has_imag else None
    C = ctx.get(kp["C"], (3, 4))
    B = ctx.get(kp["B"], (2, 3, 4))
    real = not has_imag
    if B.dim() == (2 if real else 3):  # v3 diag B (n_ssm, N'[, 2]) kept by convert_v3_to_v4.py
        B = B.unsqueeze(0)
    if real and dplr:
        raise ctx.err(f"key '{kp['A_imag']}' is missing")
    if real and C.dim() != 3:
        raise ctx.err(f"key '{kp['A_imag']}' is missing (and '{kp['C']}' is complex, so this is not S4D-Real)")
    if not real and C.dim() != 4:
        raise ctx.shape_err(kp["C"], C, "(C_k, H, N', 2) (complex, as view_as_real)")
    is_real = ctx.settings.get("is_real")
    if is_real is not None and is_real != real:
        why = "it has no A_imag and a real C (S4D-Real)" if real else f"it holds '{kp['A_imag']}' (complex modes)"
        raise ctx.err(f"is_real={is_real} does not match the file: " + why)
    return SSMParams(kp, q, inv_dt, A_real, A_imag, B, C, real)


def defaults(ctx: Ctx, p: str) -> dict:
    """The v4 Hydra config (configs/model/layer/s4.yaml) sets dt_transform=softplus; the classes default to exp.

    A Lightning .ckpt, or its state dict as convert_pl_to_pt.py saves it (layers under 'model.'), comes from the
    training pipeline, hence from that config."""
    from_pipeline = ctx.container == "lightning" or p.startswith("model.")
    return PIPELINE_DEFAULTS if from_pipeline else CLASS_DEFAULTS


class _V4Layout(FFTConvInBlock, SSMLayout):
    marker = "kernel.inv_dt"
    has_dt_fast = True

    def map_keys(self, ctx: Ctx, p: str) -> SSMParams:
        return _map_v4(ctx, p, self.dplr)


class S4DPLRv4(_V4Layout):
    """S4: SSMKernelDPLR (kernel.P present). Settings: transforms and bandlimit; always bilinear."""

    family, title = "s4-v4", "S4 (DPLR, v4)"
    dplr = True

    def matches(self, sd: dict, prefix: str, key: str) -> bool:
        return prefix + "kernel.P" in sd

    def resolve_settings(self, ctx: Ctx, p: str, prm: SSMParams) -> dict:
        names = ("dt_transform", "real_transform", "imag_transform", "bandlimit")
        return resolve(ctx, self, defaults(ctx, p), names, prm.real)


class S4Dv4(_V4Layout):
    """S4D: SSMKernelDiag (no kernel.P), complex or real (is_real). Settings: transforms, disc, bandlimit."""

    family, title = "s4d-v4", "S4D (v4)"

    def matches(self, sd: dict, prefix: str, key: str) -> bool:
        return prefix + "kernel.P" not in sd

    def resolve_settings(self, ctx: Ctx, p: str, prm: SSMParams) -> dict:
        names = ("dt_transform", "real_transform", "imag_transform", "disc", "bandlimit")
        return resolve(ctx, self, defaults(ctx, p), names, prm.real)


ADAPTERS = (S4DPLRv4(), S4Dv4())
