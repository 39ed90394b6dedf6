"""SGConv layers: ctlllll/SGConv's ``GConv`` (gconv_standalone.py, and gconv.py inside the state-spaces pipeline).

Marker ``kernel_list.0``. Keys under the layer prefix (docs/official-layouts.md §2), C_k = C (2C when
bidirectional), S scales of d taps each:

    D                        (C, H)          -> the layer's skip term (runnable.py)
    kernel_list.{0..S-1}     (C_k, H, d)     -> kernel_list.i, unchanged
    multiplier               (1, H, 1)       -> multiplier; with a learnable decay: () (any 1-element shape)
    decay                    (H,)            -> decay; present only with a learnable decay ('learnable' is
                                                added to the mode when the key is there)
    kernel_norm              (C_k, H, 1)     -> kernel_norm; gconv.py registers (H, 1) (or (1, H, 1)) and we
                                                broadcast it over C_k
    kernel_norm_initialized  ()  bool        -> kernel_norm_initialized; False: the kernel is divided by the norm
                                                of its current weights, as the official first forward would do
    output_linear.weight     (H, C*H)        -> the layer's output linear (runnable.py)

Not in the keys: the mode ('cat'/'sum', 'nearest'/linear interpolation) and init_scale, taken from the settings,
the stored config, or the official defaults 'cat_randn' and 0. The kernel length is d * 2^(S-1+init_scale).
gconv.py's 'expand' / 'trunc' / 'hankel' modes re-shape the kernel and are refused.
"""
from __future__ import annotations

import torch

from ...kernels import Kernel, SGConvKernel
from ...kernels.sgconv import parse_mode
from .base import Layout
from .context import Ctx, l_max, load_into

_DEFAULTS = {"mode": "cat_randn", "init_scale": 0}


def _scales(ctx: Ctx, p: str):
    """-> (D (C, H), the S sub-kernels (C_k, H, d), bidirectional)."""
    D = ctx.get(p + "D", 2)
    C, H = D.shape
    w0 = ctx.get(p + "kernel_list.0", 3)
    C_k, H0, d = w0.shape
    if H0 != H:
        raise ctx.shape_err(p + "kernel_list.0", w0, f"(C_k, {H}, d) to match D {tuple(D.shape)}")
    if C_k == 2 * C:
        bidir = True
    elif C_k == C:
        bidir = False
    else:
        raise ctx.shape_err(p + "kernel_list.0", w0, f"({C} or {2 * C}, {H}, d) to match D {tuple(D.shape)}")
    ws = []
    while ctx.has(f"{p}kernel_list.{len(ws)}"):
        key = f"{p}kernel_list.{len(ws)}"
        w = ctx.get(key, 3)
        if tuple(w.shape) != tuple(w0.shape):
            raise ctx.shape_err(key, w, f"{tuple(w0.shape)} like kernel_list.0")
        ws.append(w)
    stray = [k for k in ctx.sd if k.startswith(p + "kernel_list.") and k[len(p + "kernel_list."):].isdigit()
             and int(k[len(p + "kernel_list."):]) >= len(ws)]
    if stray:
        raise ctx.err(f"key '{p}kernel_list.{len(ws)}' is missing (but '{stray[0]}' is present)")
    return D, ws, bidir


def _mode(ctx: Ctx, p: str, layout: Layout) -> tuple[str, int, dict, bool]:
    """-> (mode, init_scale, parsed mode flags, learnable decay) from settings > config > official defaults."""
    mode = ctx.settings.get("mode")
    if mode is None:
        hm = ctx.hp.get("mode")
        if isinstance(hm, str) and ("cat" in hm or "sum" in hm):
            mode = hm
    if mode is None:
        mode = _DEFAULTS["mode"]
        ctx.warn(f"SGConv: 'mode' is not stored in {ctx.source}; assumed {mode!r} (the official default: concatenated "
                 "scales, linear interpolation). Pass mode=... to override.")
    init_scale = ctx.setting("init_scale", _DEFAULTS, layout)
    try:
        init_scale = int(init_scale)
        flags = parse_mode(mode)
    except (ValueError, TypeError) as e:
        raise ctx.err(f"SGConv mode/init_scale not understood ({e})") from None
    # gconv.py's 'expand' / 'trunc' re-interpolate the kernel to l_max / L after the norm; 'hankel' replaces the
    # scales by one sub-kernel projected on a stored 'eigvecs' buffer. Refuse them rather than compute another kernel.
    bad_flags = [f for f in ("expand", "trunc", "hankel") if f in mode]
    if bad_flags or ctx.has(p + "eigvecs"):
        what = f"mode {mode!r} (flag {bad_flags[0]!r})" if bad_flags else f"key '{p}eigvecs' (the 'hankel' mode)"
        raise ctx.err(f"SGConv {what} is not supported: it re-shapes the kernel in a way we do not rebuild")
    learnable = ctx.has(p + "decay")
    if learnable and not flags["learnable"]:
        mode = mode + "_learnable"
    if flags["learnable"] and not learnable:
        raise ctx.err(f"key '{p}decay' is missing (mode {mode!r} has a learnable decay)")
    return mode, init_scale, flags, learnable


def _decay(ctx: Ctx, p: str, H: int, learnable: bool) -> dict:
    """multiplier (1, H, 1), or a scalar multiplier and decay (H,) with a learnable decay."""
    mult = ctx.get(p + "multiplier", (0, 1, 3))
    if not learnable:
        if mult.dim() != 3 or mult.shape[0] != 1 or mult.shape[1] != H or mult.shape[2] != 1:
            raise ctx.shape_err(p + "multiplier", mult, f"(1, {H}, 1)")
        return {"multiplier": mult}
    if mult.numel() != 1:
        raise ctx.shape_err(p + "multiplier", mult, "a scalar (learnable decay mode)")
    decay = ctx.get(p + "decay", 1)
    if decay.shape[0] != H:
        raise ctx.shape_err(p + "decay", decay, f"({H},)")
    return {"multiplier": mult.reshape(()), "decay": decay}


def _norm(ctx: Ctx, p: str, C_k: int, H: int) -> dict:
    """kernel_norm (C_k, H, 1) (gconv.py's (H, 1) broadcast) and kernel_norm_initialized ()."""
    norm = ctx.get(p + "kernel_norm", (2, 3))
    if tuple(norm.shape) == (H, 1):  # gconv.py registers (H, 1); broadcast over the kernel channels
        norm = norm.unsqueeze(0).expand(C_k, H, 1)
    elif tuple(norm.shape) == (1, H, 1):
        norm = norm.expand(C_k, H, 1)
    elif tuple(norm.shape) != (C_k, H, 1):
        raise ctx.shape_err(p + "kernel_norm", norm, f"({C_k}, {H}, 1) or ({H}, 1)")
    init_t = ctx.get(p + "kernel_norm_initialized", None, floating=False)
    if init_t.numel() != 1:
        raise ctx.shape_err(p + "kernel_norm_initialized", init_t, "a scalar bool")
    initialised = bool(init_t.reshape(()).item())
    if initialised and not (torch.as_tensor(norm) > 0).all():
        raise ctx.err(f"key '{p}kernel_norm' holds a zero or negative norm")
    if not initialised:
        name = p.rstrip(".") or "layer"
        ctx.warn(f"{ctx.source}: layer '{name}' has kernel_norm_initialized = False (it never ran a "
                 "forward): the kernel is divided by the norm of its current weights, as the official first forward "
                 "would do.")
    return {"kernel_norm": norm.contiguous().clone(), "kernel_norm_initialized": torch.tensor(initialised)}


class GConvLayout(Layout):
    family, title, marker = "sgconv", "SGConv", "kernel_list.0"
    default_source = "the official default"
    postact_default = None
    linear_output_any_postact = True

    def build_kernel(self, ctx: Ctx, p: str) -> tuple[Kernel, dict]:
        D, ws, bidir = _scales(ctx, p)
        C, H = D.shape
        C_k, _, d = ws[0].shape
        S = len(ws)
        mode, init_scale, flags, learnable = _mode(ctx, p, self)
        tensors = {f"kernel_list.{i}": w for i, w in enumerate(ws)}
        tensors.update(_decay(ctx, p, H, learnable))
        tensors.update(_norm(ctx, p, C_k, H))
        L_raw = d * 2 ** (S - 1 + init_scale)
        if L_raw < 1 or S < 1:
            raise ctx.err(f"SGConv with {S} scales and init_scale={init_scale} has no kernel")
        with torch.random.fork_rng():
            k = SGConvKernel(d_model=H, l_max=l_max(ctx) or L_raw, channels=C, bidirectional=bidir, kernel_dim=d,
                             n_scales=S, init_scale=init_scale, mode=mode, init_norm=False)
        if learnable:
            k.decay.requires_grad_(not flags["fixed"])
        k = load_into(k, tensors, ws[0].dtype)
        return k, {"mode": mode, "init_scale": init_scale}

    def refuse_layer(self, ctx: Ctx, p: str, kernel: Kernel) -> str | None:
        if any(k.startswith(p + "norm.") for k in ctx.sd):
            return "the GConv layer has a norm before its output linear (ln=True)"
        return None


ADAPTERS = (GConvLayout(),)
