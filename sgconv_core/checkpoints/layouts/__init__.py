"""Checkpoints written by the official SGConv and state-spaces/s4 code (v2.x, v3, v4, minimal S4D, example.py).

`from_object(obj, source, settings)` takes what was read from a foreign file (a dict of tensors from a
.safetensors file, or the plain containers a torch.save file held) and returns a `Checkpoint` whose kernels are
our kernel classes, with the stored parameters converted to our (v4) conventions exactly.

One module per layout maps that layout's keys and settings into our kernels (`LAYOUTS`, in detection order):

    gconv.py        SGConv GConv (gconv_standalone.py, gconv.py)           marker 'kernel_list.0'
    ssm_v4.py       v4 S4Block/FFTConv: S4 (DPLR) and S4D (diag, real)     marker 'kernel.inv_dt'
    ssm_v3.py       v3 S4 (NPLR) and S4D (diag), v2.x S4 (NPLR)            marker 'kernel.kernel.log_dt'
    s4d_minimal.py  models/s4/s4d.py S4D (example.py)                      marker 'kernel.log_dt'
    conv_v4.py      v4 FFTConv(mode='conv'): a free kernel                 marker 'kernel.kernel'

Shared: context.py (per-file context, settings precedence, containers), ssm.py (the S4 / S4D builder all state-space
layouts use), runnable.py (the runnable layer and Lightning backbone), base.py (the adapter interface).
The official facts they rely on are in docs/official-layouts.md.

To add a layout: write one module with a `base.Layout` subclass (marker, matches, build_kernel, the runnable-layer
facts; an `ssm.SSMLayout` needs only map_keys and resolve_settings) and list its adapter in `LAYOUTS` below; put
the official facts it relies on in docs/official-layouts.md, and a float64 reference test in
tests/test_foreign.py that records under the layout's family (test_report_errors fails for a layout without one).
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from ...errors import CheckpointError
from ...settings import KNOWN_SETTINGS, validate_settings
from ..checkpoint import Checkpoint, check_finite
from . import conv_v4, gconv, s4d_minimal, ssm_v3, ssm_v4
from .base import Layout
from .context import Ctx, describe, layer_hparams, layer_name, natkey, unwrap
from .runnable import build_backbone, build_example_model, layer_module

#: Every layout, in detection order. A state-dict key belongs to the first layout whose marker it ends with (so a
#: marker must come before a shorter one it ends with, 'kernel.kernel.log_dt' before 'kernel.log_dt'); among the
#: layouts with that marker, the first whose ``matches`` is true claims the prefix.
LAYOUTS: tuple[Layout, ...] = (*gconv.ADAPTERS, *ssm_v4.ADAPTERS, *ssm_v3.ADAPTERS, *s4d_minimal.ADAPTERS,
                               *conv_v4.ADAPTERS)


def detect(sd: dict) -> list[tuple[str, Layout]]:
    """[(prefix, layout)] for every kernel layer found, in model order (natural sort of the prefixes)."""
    found: dict[str, Layout] = {}
    for key in sd:
        marker = next((lay.marker for lay in LAYOUTS if key.endswith(lay.marker)), None)
        if marker is None:
            continue
        prefix = key[: -len(marker)]
        for lay in LAYOUTS:
            if lay.marker == marker and lay.matches(sd, prefix, key):
                found.setdefault(prefix, lay)
                break
    return sorted(found.items(), key=lambda kv: natkey(kv[0]))


def _read(obj, source: str, settings: dict | None) -> tuple[Ctx, dict]:
    """-> (the per-file context, the tensors); CheckpointError for bad settings or a bad container."""
    settings = validate_settings(settings or {}, source)
    sd, hp, container = unwrap(obj, source)
    bad = [k for k in sd if not isinstance(k, str)]
    if bad:
        raise CheckpointError(f"{source}: state dict key {bad[0]!r} is not a string")
    sd = dict(sd)
    ctx = Ctx(sd, source, settings, {}, container, list(sd))
    ctx.hp_full = hp if isinstance(hp, Mapping) else {}
    ctx.hp = layer_hparams(hp, ctx.warn)
    return ctx, {k: v for k, v in sd.items() if torch.is_tensor(v)}


def _detect_layers(ctx: Ctx, tensors: dict) -> list[tuple[str, Layout]]:
    """The layers found; CheckpointError when there are none, or a layer holds a non-tensor, NaN or Inf."""
    layers = detect(ctx.sd)
    if not layers:
        raw_keys = ctx.raw_keys
        shown = ", ".join(repr(k) for k in raw_keys[:8]) + (", ..." if len(raw_keys) > 8 else "")
        raise CheckpointError(
            f"{ctx.source}: no SGConv, S4 or S4D layer recognised (container: {ctx.container}; {len(raw_keys)} key(s): "
            f"{shown or 'none'}). Expected keys such as '…kernel_list.0', '…kernel.inv_dt', "
            "'…kernel.kernel.log_dt' or '…kernel.log_dt'.")
    prefixes = [p for p, _ in layers]
    for k, v in ctx.sd.items():  # a non-tensor inside a recognised layer is an error; elsewhere it is ignored
        if not torch.is_tensor(v) and any(k.startswith(p) for p in prefixes):
            raise CheckpointError(f"{ctx.source}: key '{k}' is {describe(v)}, not a tensor")
    check_finite(tensors, ctx.source)
    return layers


def _build_model(ctx: Ctx, kernels: list, layers: list[tuple[str, Layout]], tensors: dict):
    """The runnable model where it can be rebuilt exactly (one layer, or a Lightning backbone); else None, warned."""
    model, why = None, None
    layer_keys_only = True
    if len(kernels) == 1:
        p, layout = layers[0]
        mod, why, _ = layer_module(ctx, kernels[0], p, layout)
        if mod is not None:
            block = layout.block_prefix(p)
            others = [k for k in tensors if not k.startswith(block)]
            if others:
                layer_keys_only = False
                why = f"the file holds more than one layer (e.g. '{others[0]}')"
            else:
                model = mod
    else:
        layer_keys_only = False
    if model is None and not layer_keys_only and ctx.container == "lightning" and ctx.hp_full:
        model, why2 = build_backbone(ctx, kernels, layers)
        why = why2 if model is None else None
    elif model is None and not layer_keys_only and layers[0][0].startswith("s4_layers."):
        model, why2 = build_example_model(ctx, kernels, layers)
        why = why2 if model is None else None
    if model is None:
        why = why or "its layout is not one we rebuild"
        ctx.warn(f"{ctx.source}: kernels only: the full model was not rebuilt ({why}).")
    return model


def from_object(obj, source: str, settings: dict | None = None) -> Checkpoint:
    """Recognise an official SGConv / state-spaces checkpoint object and convert it to a `Checkpoint`."""
    ctx, tensors = _read(obj, source, settings)
    layers = _detect_layers(ctx, tensors)
    strip_model = ctx.container == "lightning" or all(k.startswith(("model.", "encoder.", "decoder.")) for k in tensors)
    kernels, layer_cfgs = [], []
    for p, layout in layers:
        k, used = layout.build_kernel(ctx, p)
        k.name = layer_name(p, strip_model)
        kernels.append(k)
        layer_cfgs.append({"name": k.name, "prefix": p, "family": layout.family, "kind": k.kind, "settings": used})
    model = _build_model(ctx, kernels, layers, tensors)

    fams = [layout.family for _, layout in layers]
    tags = sorted(set(fams), key=fams.index)
    tag = tags[0] if len(tags) == 1 else "mixed"
    standalone = ctx.container == "state-dict" and len(layers) == 1 and layers[0][0] in ("", "layer.")
    layout_tag = f"{tag}-{'standalone' if standalone else ctx.container}"
    config = {"layout": layout_tag, "container": ctx.container, "settings": dict(ctx.settings), "layers": layer_cfgs}
    if ctx.hp:
        plain = (str, int, float, bool, type(None))
        config["hyper_parameters_layer"] = {k: v for k, v in ctx.hp.items() if isinstance(v, plain)}
    return Checkpoint(path=source, kernels=kernels, model=model, config=config, card={}, warnings=list(ctx.warnings),
                      layout=layout_tag)


__all__ = ["from_object", "detect", "LAYOUTS", "KNOWN_SETTINGS", "Layout"]
