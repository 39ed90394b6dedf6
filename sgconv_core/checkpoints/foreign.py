"""Checkpoints written by the official SGConv and state-spaces/s4 code (v2.x, v3, v4, minimal S4D, example.py).

`from_object(obj, source, settings)` takes what was read from a foreign file (a dict of tensors from a
.safetensors file, or the plain containers a torch.save file held) and returns a `Checkpoint` whose kernels
are our kernel classes, with the stored parameters converted to our (v4) conventions exactly:

- v3 ``log_dt`` (H,) -> ``inv_dt`` (H, 1) with dt_transform 'exp' (v3 always uses exp);
- v3 ``w_imag`` / ``A_imag`` and minimal-S4D ``A_imag`` hold +Im A -> negated (v4 stores -Im A);
- v3 diag ``B`` (n_ssm, N', 2) -> (1, n_ssm, N', 2); v3 ``L`` -> ``l_kernel``;
- minimal S4D: no B, C (H, N', 2) -> (1, H, N', 2), D (H,) -> (1, H), Conv1d output weight (2H, H, 1) -> (2H, H);
- SGConv gconv.py's (H, 1) ``kernel_norm`` is broadcast to (C_k, H, 1);
- ``dt_fast=True`` (v4 kernels, v3 NPLR): the stored ``inv_dt``/``log_dt`` is mapped through sinh, as the official
  forward does; v3 NPLR ``real_type='relu'`` (Re w = -relu(x), without the 1e-4 that v3 diag and v4 add) becomes
  relu(x) with real_transform 'none';
- v2.0 NPLR files have no ``L`` buffer: the attuned length is read from the cached ``omega`` buffer (L//2+1 nodes);
- the official convert_v3_to_v4.py leaves a v3 diag ``inv_A_real`` un-renamed: it is read as ``A_real``.

Settings the weights do not hold come from, in order: the `settings` argument (official names), the
stored Hydra config (``hyper_parameters['model']['layer']``), then the detected version's defaults
(v3: exp + bilinear for S4D; v4 from the Lightning pipeline -- a .ckpt, or a state dict whose layers sit under
``model.`` as train.py / convert_pl_to_pt.py write them -- softplus + zoh, the v4 Hydra config; other v4 files: exp +
zoh, the class defaults). Every assumed default is reported in ``Checkpoint.warnings``.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn

from ..errors import CheckpointError
from ..kernels import FreeKernel, Kernel, S4DKernel, S4Kernel, SGConvKernel
from ..kernels.s4d import DISCS
from ..kernels.sgconv import parse_mode
from ..kernels.ssm import TRANSFORMS
from .checkpoint import Checkpoint, check_finite

#: settings a caller may pass (official argument names).
KNOWN_SETTINGS = (
    "dt_transform", "disc", "real_transform", "imag_transform", "is_real", "bandlimit", "dt_fast",
    "mode", "init_scale", "l_max", "bidirectional",
)
SSM_SETTINGS = ("dt_transform", "real_transform", "imag_transform", "disc", "bandlimit")

# Version defaults for the settings the files do not hold.
_V4_LIGHTNING = {"dt_transform": "softplus", "real_transform": "exp", "imag_transform": "none", "disc": "zoh",
                 "bandlimit": None}
_V4_PLAIN = {"dt_transform": "exp", "real_transform": "exp", "imag_transform": "none", "disc": "zoh",
             "bandlimit": None}
_V3 = {"dt_transform": "exp", "real_transform": "exp", "imag_transform": "none", "disc": "bilinear",
       "bandlimit": None}
_SGCONV = {"mode": "cat_randn", "init_scale": 0}

_FAMILY_TITLES = {
    "sgconv": "SGConv", "s4-v4": "S4 (DPLR, v4)", "s4d-v4": "S4D (v4)", "s4-v3": "S4 (NPLR, v3)",
    "s4-v2": "S4 (NPLR, v2.x)", "s4d-v3": "S4D (v3)", "s4d-minimal": "minimal S4D", "conv-v4": "free kernel (v4 ConvKernel)",
}


# ------------------------------------------------------------------------------------------------ helpers
def _natkey(s: str):
    """Natural sort key: 'layers.10' after 'layers.2'."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", s)]


def _describe(v) -> str:
    if torch.is_tensor(v):
        return f"a tensor of shape {tuple(v.shape)}"
    return f"a {type(v).__name__}"


def _is_interp(v) -> bool:
    return isinstance(v, str) and "${" in v


class _Ctx:
    """Per-file state: the state dict, source name, settings, hyper-parameters and warnings."""

    def __init__(self, sd: dict, source: str, settings: dict, hp: dict, container: str, raw_keys: list[str]):
        self.sd, self.source, self.settings, self.hp = sd, source, settings, hp
        self.container = container
        self.raw_keys = raw_keys
        self.warnings: list[str] = []

    def err(self, msg: str) -> CheckpointError:
        return CheckpointError(f"{self.source}: {msg}")

    def warn(self, msg: str) -> None:
        if msg not in self.warnings:
            self.warnings.append(msg)

    def has(self, key: str) -> bool:
        return key in self.sd

    def get(self, key: str, ndim: int | tuple | None = None, *, floating: bool = True) -> torch.Tensor:
        """Fetch a tensor, naming the key when it is missing, not a tensor, or of the wrong rank."""
        if key not in self.sd:
            raise self.err(f"key '{key}' is missing")
        t = self.sd[key]
        if not torch.is_tensor(t):
            raise self.err(f"key '{key}' is {_describe(t)}, not a tensor")
        if floating and not t.is_floating_point():
            raise self.err(f"key '{key}' has dtype {t.dtype}; a floating-point tensor was expected")
        if ndim is not None:
            nds = (ndim,) if isinstance(ndim, int) else ndim
            if t.dim() not in nds:
                want = " or ".join(str(n) for n in nds)
                raise self.err(f"key '{key}' has shape {tuple(t.shape)}; a {want}-D tensor was expected")
        if floating and t.dtype not in (torch.float32, torch.float64):
            t = t.float()
        return t

    def shape_err(self, key: str, t: torch.Tensor, expected: str) -> CheckpointError:
        return self.err(f"key '{key}' has shape {tuple(t.shape)} but {expected} was expected")

    def setting(self, name: str, defaults: dict, family: str, hp_names: tuple[str, ...] = ()):
        """settings > hyper_parameters > the version default (with a warning)."""
        if name in self.settings:
            return self.settings[name]
        for hn in (name,) + hp_names:
            if hn in self.hp and self.hp[hn] is not None and not _is_interp(self.hp[hn]):
                return self.hp[hn]
        default = defaults[name]
        why = "the default of the state-spaces version detected from the key names"
        if family == "sgconv":
            why = "the official default"
        self.warn(f"{_FAMILY_TITLES.get(family, family)}: '{name}' is not stored in {self.source}; assumed "
                  f"{default!r} ({why}). Pass {name}=... to override.")
        return default


def _validate_settings(settings: dict, source: str) -> dict:
    settings = dict(settings or {})
    unknown = sorted(k for k in settings if k not in KNOWN_SETTINGS)
    if unknown:
        raise CheckpointError(f"{source}: unknown setting(s) {unknown}; known settings are {list(KNOWN_SETTINGS)}")
    for k in ("dt_transform", "real_transform", "imag_transform"):
        if k in settings and settings[k] not in TRANSFORMS:
            raise CheckpointError(f"{source}: setting {k}={settings[k]!r} is not one of {list(TRANSFORMS)}")
    if "disc" in settings and settings["disc"] not in DISCS:
        raise CheckpointError(f"{source}: setting disc={settings['disc']!r} is not one of {list(DISCS)}")
    if "mode" in settings:
        if not isinstance(settings["mode"], str):
            raise CheckpointError(f"{source}: setting mode={settings['mode']!r} must be a string")
    if "init_scale" in settings and (isinstance(settings["init_scale"], bool) or not isinstance(settings["init_scale"], int)):
        raise CheckpointError(f"{source}: setting init_scale={settings['init_scale']!r} must be an integer")
    if "bandlimit" in settings and settings["bandlimit"] is not None:
        b = settings["bandlimit"]
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not b > 0:
            raise CheckpointError(f"{source}: setting bandlimit={b!r} must be a positive number or None")
    for k in ("is_real", "bidirectional", "dt_fast"):
        if k in settings and not isinstance(settings[k], bool):
            raise CheckpointError(f"{source}: setting {k}={settings[k]!r} must be True or False")
    if "l_max" in settings and settings["l_max"] is not None:
        lm = settings["l_max"]
        if isinstance(lm, bool) or not isinstance(lm, int) or lm < 1:
            raise CheckpointError(f"{source}: setting l_max={lm!r} must be a positive integer")
    return settings


# ------------------------------------------------------------------------------------------ containers
def _unwrap(obj, source: str):
    """-> (state_dict, hyper_parameters or None, container name)."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source}: expected a dict of tensors (a state dict or a checkpoint dict), "
                              f"found {_describe(obj)}")
    if "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        hp = obj.get("hyper_parameters")
        lightning = "pytorch-lightning_version" in obj or isinstance(hp, Mapping)
        return obj["state_dict"], (hp if isinstance(hp, Mapping) else None), ("lightning" if lightning else "state-dict")
    if "model" in obj and isinstance(obj["model"], Mapping) and not torch.is_tensor(obj["model"]):
        return obj["model"], None, "example"
    return obj, None, "state-dict"


def _layer_hparams(hp: Mapping | None, warn) -> dict:
    """The layer config from a Hydra config: hyper_parameters['model']['layer'] (+ nested kernel/mode dicts)."""
    if not isinstance(hp, Mapping):
        return {}
    model = hp.get("model")
    if not isinstance(model, Mapping):
        return {}
    layer = model.get("layer")
    if isinstance(layer, (list, tuple)):
        dicts = [d for d in layer if isinstance(d, Mapping) and d.get("_name_") not in ("ff", "mha", "mlp")]
        layer = dicts[0] if dicts else None
    if not isinstance(layer, Mapping):
        return {}
    out = {}
    for k, v in layer.items():
        if isinstance(v, Mapping) and k in ("kernel", "mode", "kernel_args"):
            continue
        out[k] = v
    for k in ("kernel_args", "kernel", "mode"):
        if isinstance(layer.get(k), Mapping):
            out.update(layer[k])
    for k, v in list(out.items()):
        if _is_interp(v):
            warn(f"hyper_parameters: model.layer.{k} = {v!r} is an unresolved interpolation; ignored.")
            del out[k]
    if "real_type" in out and "real_transform" not in out:  # v3 name
        out["real_transform"] = out["real_type"]
    return out


# ------------------------------------------------------------------------------------------ detection
def _detect(sd: dict) -> list[tuple[str, str]]:
    """[(prefix, family)] for every kernel layer found, in model order."""
    found: dict[str, str] = {}
    for key in sd:
        if key.endswith("kernel_list.0"):
            found.setdefault(key[: -len("kernel_list.0")], "sgconv")
        elif key.endswith("kernel.inv_dt"):
            p = key[: -len("kernel.inv_dt")]
            found.setdefault(p, "s4-v4" if p + "kernel.P" in sd else "s4d-v4")
        elif key.endswith("kernel.kernel.log_dt"):
            p = key[: -len("kernel.kernel.log_dt")]
            q = p + "kernel.kernel."
            if q + "inv_w_real" in sd or q + "log_w_real" in sd:
                found.setdefault(p, "s4-v3" if q + "inv_w_real" in sd else "s4-v2")
            elif q + "inv_A_real" in sd or q + "log_A_real" in sd:
                found.setdefault(p, "s4d-v3")
            else:
                found.setdefault(p, "v3-unknown")
        elif key.endswith("kernel.log_dt"):
            p = key[: -len("kernel.log_dt")]
            if p + "kernel.log_A_real" in sd:
                found.setdefault(p, "s4d-minimal")
        elif key.endswith("kernel.kernel"):
            p = key[: -len("kernel.kernel")]
            t = sd[key]
            others = [k for k in sd if k.startswith(p + "kernel.") and k != key]
            if torch.is_tensor(t) and t.dim() == 3 and not others:
                found.setdefault(p, "conv-v4")
    return sorted(found.items(), key=lambda kv: _natkey(kv[0]))


def _layer_name(prefix: str, strip_model: bool) -> str:
    p = prefix.rstrip(".")
    if strip_model and p.startswith("model."):
        p = p[len("model."):]
    elif p == "model":
        p = ""
    while p == "layer" or p.endswith(".layer"):
        p = p[: -len("layer")].rstrip(".")
    return p or "layer"


# ------------------------------------------------------------------------------------------ kernels
def _load_into(kernel: nn.Module, tensors: dict[str, torch.Tensor], dtype: torch.dtype) -> nn.Module:
    kernel = kernel.to(dtype)
    expected = kernel.state_dict()
    for k, v in expected.items():
        if k not in tensors:  # pragma: no cover - guarded by the builders
            raise KeyError(k)
        if tuple(tensors[k].shape) != tuple(v.shape):  # pragma: no cover - guarded by the builders
            raise ValueError(f"{k}: {tuple(tensors[k].shape)} vs {tuple(v.shape)}")
    kernel.load_state_dict({k: tensors[k] for k in expected}, strict=True)
    return kernel.eval()


def _channels(ctx: _Ctx, prefix: str, C_k: int, ck_key: str) -> tuple[int, bool]:
    """channels C and bidirectional from settings / hparams / the D shape (C_k = C or 2C)."""
    bidir = ctx.settings.get("bidirectional", ctx.hp.get("bidirectional"))
    if not isinstance(bidir, bool):
        bidir = None
    D_key = prefix + "D"
    if bidir is None and ctx.has(D_key) and torch.is_tensor(ctx.sd[D_key]) and ctx.sd[D_key].dim() == 2:
        C = ctx.sd[D_key].shape[0]
        if C_k == 2 * C:
            bidir = True
        elif C_k == C:
            bidir = False
    if bidir is None:
        bidir = False
        ctx.warn(f"{ctx.source}: could not tell whether layer '{prefix.rstrip('.')}' is bidirectional; assumed not.")
    if bidir and C_k % 2:
        raise ctx.err(f"key '{ck_key}' has {C_k} kernel channels, which cannot be split into two directions")
    return (C_k // 2 if bidir else C_k), bidir


def _l_max(ctx: _Ctx):
    lm = ctx.settings.get("l_max", ctx.hp.get("l_max"))
    return lm if isinstance(lm, int) and not isinstance(lm, bool) and lm > 0 else None


def _build_sgconv(ctx: _Ctx, p: str) -> tuple[Kernel, dict]:
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
    S = len(ws)

    mode = ctx.settings.get("mode")
    if mode is None:
        hm = ctx.hp.get("mode")
        if isinstance(hm, str) and ("cat" in hm or "sum" in hm):
            mode = hm
    if mode is None:
        mode = _SGCONV["mode"]
        ctx.warn(f"SGConv: 'mode' is not stored in {ctx.source}; assumed {mode!r} (the official default: concatenated "
                 "scales, linear interpolation). Pass mode=... to override.")
    init_scale = ctx.setting("init_scale", _SGCONV, "sgconv")
    try:
        init_scale = int(init_scale)
        flags = parse_mode(mode)
    except (ValueError, TypeError) as e:
        raise ctx.err(f"SGConv mode/init_scale not understood ({e})") from None
    # The full-code gconv.py (ctlllll/SGConv src/models/sequence/gconv.py) has extra mode flags that change the
    # kernel: 'expand' / 'trunc' re-interpolate it to l_max / L after the norm, 'hankel' replaces the scales by one
    # sub-kernel projected on a stored ``eigvecs`` buffer. Refuse them rather than compute a different kernel.
    bad_flags = [f for f in ("expand", "trunc", "hankel") if f in mode]
    if bad_flags or ctx.has(p + "eigvecs"):
        what = f"mode {mode!r} (flag {bad_flags[0]!r})" if bad_flags else f"key '{p}eigvecs' (the 'hankel' mode)"
        raise ctx.err(f"SGConv {what} is not supported: it re-shapes the kernel in a way we do not rebuild")
    learnable = ctx.has(p + "decay")
    if learnable and not flags["learnable"]:
        mode = mode + "_learnable"
    if flags["learnable"] and not learnable:
        raise ctx.err(f"key '{p}decay' is missing (mode {mode!r} has a learnable decay)")

    tensors = {f"kernel_list.{i}": w for i, w in enumerate(ws)}
    mult = ctx.get(p + "multiplier", (0, 1, 3))
    if learnable:
        if mult.numel() != 1:
            raise ctx.shape_err(p + "multiplier", mult, "a scalar (learnable decay mode)")
        tensors["multiplier"] = mult.reshape(())
        decay = ctx.get(p + "decay", 1)
        if decay.shape[0] != H:
            raise ctx.shape_err(p + "decay", decay, f"({H},)")
        tensors["decay"] = decay
    else:
        if mult.dim() != 3 or mult.shape[0] != 1 or mult.shape[1] != H or mult.shape[2] != 1:
            raise ctx.shape_err(p + "multiplier", mult, f"(1, {H}, 1)")
        tensors["multiplier"] = mult
    norm = ctx.get(p + "kernel_norm", (2, 3))
    if tuple(norm.shape) == (H, 1):  # gconv.py registers (H, 1); broadcast over the kernel channels
        norm = norm.unsqueeze(0).expand(C_k, H, 1)
    elif tuple(norm.shape) == (1, H, 1):
        norm = norm.expand(C_k, H, 1)
    elif tuple(norm.shape) != (C_k, H, 1):
        raise ctx.shape_err(p + "kernel_norm", norm, f"({C_k}, {H}, 1) or ({H}, 1)")
    tensors["kernel_norm"] = norm.contiguous().clone()
    init_t = ctx.get(p + "kernel_norm_initialized", None, floating=False)
    if init_t.numel() != 1:
        raise ctx.shape_err(p + "kernel_norm_initialized", init_t, "a scalar bool")
    initialised = bool(init_t.reshape(()).item())
    tensors["kernel_norm_initialized"] = torch.tensor(initialised)
    if initialised and not (torch.as_tensor(norm) > 0).all():
        raise ctx.err(f"key '{p}kernel_norm' holds a zero or negative norm")
    if not initialised:
        ctx.warn(f"{ctx.source}: layer '{p.rstrip('.') or 'layer'}' has kernel_norm_initialized = False (it never ran a "
                 "forward): the kernel is divided by the norm of its current weights, as the official first forward "
                 "would do.")
    dtype = w0.dtype
    L_raw = d * 2 ** (S - 1 + init_scale)
    if L_raw < 1 or S < 1:
        raise ctx.err(f"SGConv with {S} scales and init_scale={init_scale} has no kernel")
    l_max = _l_max(ctx) or L_raw
    with torch.random.fork_rng():
        k = SGConvKernel(d_model=H, l_max=l_max, channels=C, bidirectional=bidir, kernel_dim=d, n_scales=S,
                         init_scale=init_scale, mode=mode, init_norm=False)
    if learnable:
        k.decay.requires_grad_(not flags["fixed"])
    k = _load_into(k, tensors, dtype)
    return k, {"mode": mode, "init_scale": init_scale}


def _ssm_settings(ctx: _Ctx, family: str, defaults: dict, names: tuple[str, ...]) -> dict:
    out = {}
    for n in names:
        out[n] = ctx.setting(n, defaults, family, ("real_type",) if (n == "real_transform" and family in ("s4-v3", "s4-v2", "s4d-v3")) else ())
    for n in ("dt_transform", "real_transform", "imag_transform"):
        if n in out and out[n] not in TRANSFORMS:
            raise ctx.err(f"{n}={out[n]!r} (from the stored config) is not one of {list(TRANSFORMS)}")
    if "disc" in out and out["disc"] not in DISCS:
        raise ctx.err(f"disc={out['disc']!r} (from the stored config) is not one of {list(DISCS)}")
    return out


def _dt_fast(ctx: _Ctx, family: str) -> bool:
    """dt_fast (settings > stored config > False): the official forward uses sinh(inv_dt) in place of inv_dt.

    It exists in v4 (SSMKernelDiag / DPLR) and in the v3 NPLR kernel only (v3 SSKernel never passes it to the
    diag kernel; v2 and the minimal S4D have no such option).
    """
    applies = family in ("s4-v4", "s4d-v4", "s4-v3")
    if "dt_fast" in ctx.settings:
        if ctx.settings["dt_fast"] and not applies:
            raise ctx.err(f"setting dt_fast=True does not apply to {_FAMILY_TITLES.get(family, family)}")
        return bool(ctx.settings["dt_fast"]) and applies
    v = ctx.hp.get("dt_fast")
    return applies and isinstance(v, bool) and v


def _check_ssm_shapes(ctx, p, kp, inv_dt, A_real, A_imag, B, C, real: bool):
    """Cross-check the v4-convention tensors; returns (H, n_ssm, M, C_k)."""
    n_ssm, M = A_real.shape
    H = inv_dt.shape[0]
    if inv_dt.shape[1] not in (1, M):
        raise ctx.shape_err(kp["inv_dt"], ctx.sd[kp["inv_dt"]], f"({H},) / ({H}, 1) or ({H}, {M})")
    if A_imag is not None and tuple(A_imag.shape) != (n_ssm, M):
        raise ctx.shape_err(kp["A_imag"], ctx.sd[kp["A_imag"]], f"({n_ssm}, {M}) like {kp['A_real']}")
    if H % n_ssm:
        raise ctx.err(f"key '{kp['A_real']}' has {n_ssm} SSM copies, which does not divide d_model={H}")
    want_C = (C.shape[0], H, M) if real else (C.shape[0], H, M, 2)
    if tuple(C.shape) != want_C:
        raise ctx.shape_err(kp["C"], ctx.sd[kp["C"]], f"{want_C}")
    if B is not None:
        want_B = (1, n_ssm, M) if real else (1, n_ssm, M, 2)
        if tuple(B.shape) != want_B:
            raise ctx.shape_err(kp["B"], ctx.sd[kp["B"]], f"{want_B}")
    return H, n_ssm, M, C.shape[0]


def _build_ssm(ctx: _Ctx, p: str, family: str) -> tuple[Kernel, dict]:
    if family in ("s4-v4", "s4d-v4"):
        q = p + "kernel."
        # The v4 Hydra config (configs/model/layer/s4.yaml) sets dt_transform=softplus; the classes default to exp.
        # A Lightning .ckpt, or its state dict as convert_pl_to_pt.py saves it (layers under 'model.'), comes from
        # the training pipeline, hence from that config.
        from_pipeline = ctx.container == "lightning" or p.startswith("model.")
        defaults = _V4_LIGHTNING if from_pipeline else _V4_PLAIN
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
        if real and family == "s4-v4":
            raise ctx.err(f"key '{kp['A_imag']}' is missing")
        if real and C.dim() != 3:
            raise ctx.err(f"key '{kp['A_imag']}' is missing (and '{kp['C']}' is complex, so this is not S4D-Real)")
        if not real and C.dim() != 4:
            raise ctx.shape_err(kp["C"], C, "(C_k, H, N', 2) (complex, as view_as_real)")
        is_real = ctx.settings.get("is_real")
        if is_real is not None and is_real != real:
            raise ctx.err(f"is_real={is_real} does not match the file: "
                          + ("it has no A_imag and a real C (S4D-Real)" if real else f"it holds '{kp['A_imag']}' (complex modes)"))
    elif family in ("s4-v3", "s4-v2", "s4d-v3"):
        q = p + "kernel.kernel."
        defaults = _V3
        if "dt_transform" in ctx.settings and ctx.settings["dt_transform"] != "exp":
            raise ctx.err(f"dt_transform={ctx.settings['dt_transform']!r} does not apply: v3 '{q}log_dt' is always exp")
        if ctx.settings.get("is_real"):
            raise ctx.err("is_real=True does not apply to a v3 checkpoint (complex modes)")
        if family == "s4d-v3":
            re_name = "inv_A_real" if ctx.has(q + "inv_A_real") else "log_A_real"
            kp = {"inv_dt": q + "log_dt", "A_real": q + re_name, "A_imag": q + "A_imag", "B": q + "B", "C": q + "C"}
        else:
            re_name = "inv_w_real" if ctx.has(q + "inv_w_real") else "log_w_real"
            if ctx.has(q + "Q"):
                raise ctx.err(f"key '{q}Q' (an untied low-rank term) is not supported")
            kp = {"inv_dt": q + "log_dt", "A_real": q + re_name, "A_imag": q + "w_imag", "B": q + "B", "C": q + "C",
                  "P": q + "P", "l_kernel": q + "L"}
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
        real = False
    elif family == "s4d-minimal":
        q = p + "kernel."
        kp = {"inv_dt": q + "log_dt", "A_real": q + "log_A_real", "A_imag": q + "A_imag", "C": q + "C"}
        defaults = {"dt_transform": "exp", "real_transform": "exp", "imag_transform": "none", "disc": "zoh",
                    "bandlimit": None}
        for n in SSM_SETTINGS + ("is_real", "dt_fast"):
            if n in ctx.settings and ctx.settings[n] != defaults.get(n, False):
                raise ctx.err(f"setting {n}={ctx.settings[n]!r} does not apply: the minimal S4D layer "
                              f"(models/s4/s4d.py) always uses {defaults.get(n, False)!r}")
        log_dt = ctx.get(kp["inv_dt"], 1)
        inv_dt = log_dt.reshape(-1, 1)
        A_real = ctx.get(kp["A_real"], 2)
        A_imag = -ctx.get(kp["A_imag"], 2)  # minimal S4D: A = -exp(log_A_real) + i A_imag
        C3 = ctx.get(kp["C"], 3)
        C, B, real = C3.unsqueeze(0), None, False
        if A_real.shape[0] != inv_dt.shape[0]:
            raise ctx.shape_err(kp["A_real"], A_real, f"({inv_dt.shape[0]}, N') to match {kp['inv_dt']}")
    else:
        raise ctx.err(f"layer '{p.rstrip('.')}' has v3-style key '{p}kernel.kernel.log_dt' but neither "
                      "inv_w_real/log_w_real nor inv_A_real")

    H, n_ssm, M, C_k = _check_ssm_shapes(ctx, p, kp, inv_dt, A_real, A_imag, B, C, real)
    dtype = C.dtype
    dt_fast = _dt_fast(ctx, family)
    if dt_fast:  # official: dt = dt_transform(sinh(inv_dt))
        inv_dt = torch.sinh(inv_dt)
    if family == "s4d-minimal":
        sset = dict(defaults)
        channels, bidir = 1, False
    else:
        # bandlimit: S4D (v3, v4) and S4 DPLR (v4 inherits SSMKernelDiag._get_params; v3 SSKernelNPLR has its own)
        names = ("dt_transform", "real_transform", "imag_transform") + (("disc",) if family in ("s4d-v4", "s4d-v3") else ()) \
            + (("bandlimit",) if family != "s4-v2" else ())
        if real:
            names = tuple(n for n in names if n != "imag_transform")
        if family in ("s4-v3", "s4-v2", "s4d-v3"):
            names = tuple(n for n in names if n != "dt_transform")
        if family == "s4-v2":  # v2 NPLR: w = -exp(log_w_real) + i w_imag, no real_type option
            if ctx.settings.get("real_transform", "exp") != "exp":
                raise ctx.err(f"real_transform={ctx.settings['real_transform']!r} does not apply: v2 "
                              f"'{kp['A_real']}' is always exp")
            if ctx.settings.get("bandlimit") is not None:
                raise ctx.err("bandlimit does not apply to a v2 NPLR kernel")
            names = tuple(n for n in names if n != "real_transform")
        sset = _ssm_settings(ctx, family, defaults, names)
        if family in ("s4-v3", "s4-v2", "s4d-v3"):
            sset["dt_transform"] = "exp"
        if family == "s4-v2":
            sset["real_transform"] = "exp"
            sset["bandlimit"] = None
        if real:
            sset["imag_transform"] = "none"
        if family == "s4-v3" and sset["real_transform"] == "relu":
            # v3 SSKernelNPLR._w: Re w = -relu(inv_w_real) (v3 diag and v4 subtract a further 1e-4): store
            # relu(x) under the identity transform, which gives exactly -relu(x)
            A_real = torch.relu(A_real)
        channels, bidir = _channels(ctx, p, C_k, kp["C"])
    tensors = {"inv_dt": inv_dt, "A_real": A_real, "C": C}
    if not real:
        tensors["A_imag"] = A_imag
    if B is not None:
        tensors["B"] = B
    v3_relu = family == "s4-v3" and sset["real_transform"] == "relu"  # A_real already holds relu(x)
    if sset.get("bandlimit") is not None:
        try:
            sset["bandlimit"] = float(sset["bandlimit"])
        except (TypeError, ValueError):
            raise ctx.err(f"bandlimit={sset['bandlimit']!r} is not a number") from None
    common = dict(d_model=H, channels=channels, bidirectional=bidir, l_max=None, n_ssm=n_ssm,
                  dt_tie=inv_dt.shape[1] == 1,
                  dt_transform=sset["dt_transform"], real_transform="none" if v3_relu else sset["real_transform"],
                  imag_transform=sset["imag_transform"], bandlimit=sset.get("bandlimit"))
    l_max = _l_max(ctx)
    if family in ("s4-v4", "s4-v3", "s4-v2"):
        P = ctx.get(kp["P"], 4)
        if P.shape[1:] != (n_ssm, M, 2):
            raise ctx.shape_err(kp["P"], P, f"(R, {n_ssm}, {M}, 2)")
        if family == "s4-v2" and not ctx.has(kp["l_kernel"]) and ctx.has(q + "omega"):
            # v2.0 kept L as a Python int (C~ attuned to it at construction) and cached the L//2+1 FFT nodes
            # as the buffer 'omega' (view_as_real, (L//2+1, 2))
            om = ctx.get(q + "omega", 2)
            if om.shape[-1] != 2 or om.shape[0] < 2:
                raise ctx.shape_err(q + "omega", om, "(L//2+1, 2)")
            lk = 2 * (om.shape[0] - 1)
            ctx.warn(f"{ctx.source}: layer '{p.rstrip('.')}' (v2.0) has no '{kp['l_kernel']}'; its C~ length "
                     f"L = {lk} was read from '{q}omega' ({om.shape[0]} FFT nodes; an odd L would be {lk + 1}).")
        else:
            lk = ctx.get(kp["l_kernel"], None, floating=False)
            if lk.numel() != 1 or lk.is_floating_point() or lk.is_complex():
                raise ctx.shape_err(kp["l_kernel"], lk, "an integer scalar")
            lk = int(lk.reshape(()).item())
        if lk < 0 or lk > (1 << 24):
            raise ctx.err(f"key '{kp['l_kernel']}' = {lk} is not a usable kernel length")
        if "disc" in ctx.settings and ctx.settings["disc"] != "bilinear":
            ctx.warn(f"disc={ctx.settings['disc']!r} ignored: S4 (DPLR) kernels are always bilinear.")
        tensors["P"] = P
        tensors["l_kernel"] = torch.tensor(lk, dtype=torch.int64)
        with torch.random.fork_rng():
            k = S4Kernel(d_state=2 * M, rank=P.shape[0], **common)
        k = _load_into(k, tensors, dtype)
        k.l_max = l_max if l_max else (lk or None)
        sset = {n: sset[n] for n in ("dt_transform", "real_transform", "imag_transform", "bandlimit") if n in sset}
        sset["disc"] = "bilinear"
    else:
        with torch.random.fork_rng():
            k = S4DKernel(d_state=M if real else 2 * M, init="real" if real else "lin", disc=sset.get("disc", "zoh"),
                          has_B=B is not None, **common)
        k = _load_into(k, tensors, dtype)
        k.l_max = l_max
        sset["is_real"] = real
    if family in ("s4-v4", "s4d-v4", "s4-v3"):
        sset["dt_fast"] = dt_fast
    return k, sset


def _build_conv(ctx: _Ctx, p: str) -> tuple[Kernel, dict]:
    key = p + "kernel.kernel"
    w = ctx.get(key, 3)
    C_k, H, L = w.shape
    channels, bidir = _channels(ctx, p, C_k, key)
    with torch.random.fork_rng():
        k = FreeKernel(d_model=H, l_max=L, channels=channels, bidirectional=bidir)
    return _load_into(k, {"kernel": w}, w.dtype), {}


# ------------------------------------------------------------------------------------------ layers/models
def _layer_module(ctx: _Ctx, kernel: Kernel, p: str, family: str):
    """A ConvLayer (B,H,L)->(B,H,L) reproducing the official layer around kernel prefix p, or (None, why)."""
    from ..layers import ConvLayer

    H, C = kernel.H, kernel.channels
    if family in ("s4-v4", "s4d-v4", "conv-v4"):  # FFTConv at p, S4Block around it
        block = p[: -len("layer.")] if p.endswith("layer.") else None
        if block is None or not any(k.startswith(block + "output_linear.") for k in ctx.sd):
            return None, "the FFTConv layer has no S4Block output linear around it", None
        for extra in ("input_linear.", "input_gate.", "output_gate."):
            if any(k.startswith(block + extra) for k in ctx.sd):
                return None, f"the S4Block has '{extra[:-1]}' (bottleneck/gate), which we do not rebuild", None
        lin_prefix, clip = block + "output_linear.", True
        if ctx.hp.get("swap_channels") and C > 1:
            return None, "swap_channels=True", None
        act = ctx.hp.get("activation", "gelu")
        fa = ctx.hp.get("final_act", "glu")
    else:  # v3 S4, GConv and minimal S4D own D and output_linear at p
        # The v3 S4 layer (src/models/sequence/ss/s4.py) asks its kernel for min(L, l_max) taps, as v4 FFTConv
        # does; v2's S4, GConv and the minimal S4D always use the full input length.
        block, lin_prefix, clip = p, p + "output_linear.", family in ("s4-v3", "s4d-v3")
        for extra in ("input_linear.", "input_gate.", "output_gate."):
            if any(k.startswith(p + extra) for k in ctx.sd):
                return None, f"the layer has '{extra[:-1]}' (bottleneck/gate), which we do not rebuild", None
        act = ctx.hp.get("activation", "gelu")
        fa = ctx.hp.get("postact", "glu" if family != "sgconv" else None)
        if family == "sgconv" and any(k.startswith(p + "norm.") for k in ctx.sd):
            return None, "the GConv layer has a norm before its output linear (ln=True)", None
    if act not in ("gelu", "relu", "id", "silu", None):
        return None, f"activation {act!r} is not supported", None
    act = act or "id"
    D = ctx.get(p + "D", (1, 2))
    if family == "s4d-minimal":
        D = D.reshape(1, -1)
    if tuple(D.shape) != (C, H):
        return None, f"'{p}D' has shape {tuple(D.shape)}, not ({C}, {H})", None
    if any(k.endswith(("weight_g", "weight_v")) and k.startswith(lin_prefix) for k in ctx.sd):
        return None, "the output linear uses weight norm", None
    if lin_prefix + "0.weight" in ctx.sd:
        wkey, bkey = lin_prefix + "0.weight", lin_prefix + "0.bias"
    elif lin_prefix + "weight" in ctx.sd:
        wkey, bkey = lin_prefix + "weight", lin_prefix + "bias"
    else:
        return None, f"no '{lin_prefix}weight' (a linear=True or final_act=None layer is not rebuilt)", None
    W = ctx.get(wkey, (2, 3))
    if W.dim() == 3:
        if W.shape[-1] != 1:
            return None, f"'{wkey}' is a convolution of width {W.shape[-1]}", None
        W = W[..., 0]
    b = ctx.get(bkey, (1, 2)).reshape(-1) if ctx.has(bkey) else torch.zeros(W.shape[0], dtype=W.dtype)
    if W.shape[1] != C * H or b.shape[0] != W.shape[0]:
        return None, f"'{wkey}' has shape {tuple(W.shape)}, not (·, {C * H})", None
    if W.shape[0] == 2 * H:
        output = "glu"
    elif W.shape[0] == H and (fa in (None, "id", "identity", "linear") or family == "sgconv"):
        output = "linear"
    else:
        return None, f"output linear {tuple(W.shape)} with final activation {fa!r} is not supported", None
    with torch.random.fork_rng():
        layer = ConvLayer(kernel, act, output, 0.0, clip_to_l_max=clip and kernel.l_max is not None)
    layer = layer.to(next(kernel.parameters()).dtype)
    with torch.no_grad():
        layer.D.copy_(D)
        layer.output_linear.weight.copy_(W)
        layer.output_linear.bias.copy_(b)
    used = {p + "D", wkey, bkey}
    if family in ("s4-v4", "s4d-v4", "conv-v4", "s4-v3", "s4d-v3") and kernel.l_max is None:
        ctx.warn(f"{ctx.source}: l_max is unknown, so the rebuilt layer uses the full kernel for every input length; "
                 "the official layer (v4 FFTConv, v3 S4) clips the kernel at l_max for longer inputs. "
                 "Pass l_max=... to match.")
    if family == "conv-v4":
        ctx.warn(f"{ctx.source}: for inputs shorter than l_max the official FFTConv wraps the free kernel's taps beyond "
                 "L circularly; the rebuilt layer crops them.")
    return layer.eval(), None, used


def _build_backbone(ctx: _Ctx, kernels, layers) -> tuple[nn.Module | None, str | None]:
    """Rebuild the v3/v4 SequenceModel + encoder/decoder of a Lightning checkpoint from its Hydra config."""
    from ..model import ModelConfig, SequenceModel

    hp = ctx.hp_full
    model_cfg = hp.get("model") if isinstance(hp, Mapping) else None
    if not isinstance(model_cfg, Mapping):
        return None, "the checkpoint holds no model config"
    if model_cfg.get("_name_", "model") != "model":
        return None, f"backbone {model_cfg.get('_name_')!r} is not the plain SequenceModel"
    n = len(kernels)
    v4 = ("s4-v4", "s4d-v4", "conv-v4")
    if not all(pref == f"model.layers.{i}.layer." + ("layer." if fam in v4 else "") for i, (pref, fam) in enumerate(layers)):
        return None, "the layers are not model.layers.{i}.layer"
    if model_cfg.get("n_layers") not in (None, n) or model_cfg.get("bidirectional"):
        return None, "the model config does not match the layers found (or model.bidirectional)"
    if model_cfg.get("residual", "R") not in ("R", None) or model_cfg.get("pool") not in (None, {}):
        return None, "residual/pool options other than the default"
    prenorm = bool(model_cfg.get("prenorm", True))
    norm_cfg = model_cfg.get("norm", "layer")
    norm_name = norm_cfg.get("_name_") if isinstance(norm_cfg, Mapping) else norm_cfg
    sd = ctx.sd
    if ctx.has("model.layers.0.norm.norm.running_mean"):
        return None, "batch norm in the residual blocks"
    if ctx.has("model.layers.0.norm.norm.weight"):
        norm = "layer"
        if norm_name not in (None, "layer"):
            return None, f"norm {norm_name!r}"
    elif ctx.has("model.layers.0.norm.norm.m"):
        norm = "scalar"
    else:
        return None, "the residual blocks' norm is neither LayerNorm nor scalar TransposedLN"
    final_norm = any(k.startswith("model.norm.") for k in sd)
    if final_norm != prenorm:
        return None, "final norm keys do not match prenorm"
    # encoder
    enc_keys = [k for k in sd if k.startswith("encoder.")]
    if set(enc_keys) - {"encoder.0.weight", "encoder.0.bias"} or "encoder.0.weight" not in sd:
        return None, f"encoder {sorted(enc_keys)[:4]} is not a single linear or embedding"
    H = kernels[0].H
    We = ctx.get("encoder.0.weight", 2)
    if "encoder.0.bias" in sd:
        input_kind, d_input = "continuous", We.shape[1]
        if We.shape[0] != H:
            return None, "encoder shape"
    else:
        input_kind, d_input = "tokens", We.shape[0]
        if We.shape[1] != H:
            return None, "encoder shape"
    dec_keys = [k for k in sd if k.startswith("decoder.")]
    if set(dec_keys) != {"decoder.0.output_transform.weight", "decoder.0.output_transform.bias"}:
        return None, f"decoder {sorted(dec_keys)[:4]} is not a single SequenceDecoder linear"
    dec_cfg = hp.get("decoder")
    mode = dec_cfg.get("mode", "last") if isinstance(dec_cfg, Mapping) else "last"
    if dec_cfg is not None and not isinstance(dec_cfg, (Mapping, str)):
        return None, "decoder config"
    pool = {"pool": "mean", "last": "last"}.get(mode)
    if pool is None:
        return None, f"decoder mode {mode!r}"
    Wd = ctx.get("decoder.0.output_transform.weight", 2)
    layer_mods = []
    for k, (pref, fam) in zip(kernels, layers):
        mod, why, _ = _layer_module(ctx, k, pref, fam)
        if mod is None:
            return None, why
        layer_mods.append(mod)
    outputs = {m.output for m in layer_mods}
    acts = {type(m.activation) for m in layer_mods}
    clips = {m.clip_to_l_max for m in layer_mods}
    if len(outputs) != 1 or len(acts) != 1 or len(clips) != 1:
        return None, "the layers differ in activation / output linear"
    act = {nn.GELU: "gelu", nn.ReLU: "relu", nn.Identity: "id", nn.SiLU: "silu"}[acts.pop()]
    fam = kernels[0].kind if len({k.kind for k in kernels}) == 1 else "mixed"
    if fam == "mixed":
        return None, "mixed kernel families"
    cfg = ModelConfig(d_input=d_input, d_output=Wd.shape[0], d_model=H, n_layers=n, kernel=fam,
                      kernel_args={}, l_max=kernels[0].l_max or 1, channels=kernels[0].channels,
                      bidirectional=kernels[0].bidirectional, input_kind=input_kind, prenorm=prenorm, norm=norm,
                      activation=act, output=outputs.pop(), dropout=0.0, pool=pool, final_norm=final_norm,
                      clip_to_l_max=clips.pop())
    with torch.random.fork_rng():
        model = SequenceModel(cfg, kernels=list(kernels))
    dtype = We.dtype
    model = model.to(dtype)
    own = model.state_dict()
    new = {}
    for key in own:
        if key.startswith("layers.") and ".layer.kernel." in key:
            new[key] = own[key]
            continue
        if key.startswith("encoder."):
            src = "encoder.0." + key[len("encoder."):]
        elif key.startswith("decoder."):
            src = "decoder.0.output_transform." + key[len("decoder."):]
        elif key.startswith("layers.") and ".layer." in key:
            i, rest = key[len("layers."):].split(".layer.", 1)
            new[key] = layer_mods[int(i)].state_dict()[rest]
            continue
        else:
            src = "model." + key
        if src not in sd:
            return None, f"key '{src}' is missing for the backbone"
        t = ctx.get(src, None, floating=own[key].is_floating_point())
        if tuple(t.shape) != tuple(own[key].shape):
            return None, f"key '{src}' has shape {tuple(t.shape)}, not {tuple(own[key].shape)}"
        new[key] = t
    model.load_state_dict(new, strict=True)
    for k, m in zip(kernels, model.kernels):
        m.name = k.name
    ctx.warn(f"{ctx.source}: the decoder's output length (dataset.l_output) is not stored; the rebuilt model gives one "
             f"output per sequence (decoder mode {mode!r}, l_output=0 as for classification).")
    return model.eval(), None


# ------------------------------------------------------------------------------------------ entry point
def from_object(obj, source: str, settings: dict | None = None) -> Checkpoint:
    """Recognise an official SGConv / state-spaces checkpoint object and convert it to a `Checkpoint`."""
    settings = _validate_settings(settings or {}, source)
    sd, hp, container = _unwrap(obj, source)
    bad = [k for k in sd if not isinstance(k, str)]
    if bad:
        raise CheckpointError(f"{source}: state dict key {bad[0]!r} is not a string")
    sd = dict(sd)
    raw_keys = list(sd)
    tensors = {k: v for k, v in sd.items() if torch.is_tensor(v)}
    ctx = _Ctx(sd, source, settings, {}, container, raw_keys)
    ctx.hp_full = hp if isinstance(hp, Mapping) else {}
    ctx.hp = _layer_hparams(hp, ctx.warn)
    layers = _detect(sd)
    if not layers:
        shown = ", ".join(repr(k) for k in raw_keys[:8]) + (", ..." if len(raw_keys) > 8 else "")
        raise CheckpointError(
            f"{source}: no SGConv, S4 or S4D layer recognised (container: {container}; {len(raw_keys)} key(s): "
            f"{shown or 'none'}). Expected keys such as '…kernel_list.0', '…kernel.inv_dt', "
            "'…kernel.kernel.log_dt' or '…kernel.log_dt'.")
    layer_prefixes = [p for p, _ in layers]
    for k, v in sd.items():  # a non-tensor inside a recognised layer is an error; elsewhere it is ignored
        if not torch.is_tensor(v) and any(k.startswith(p) for p in layer_prefixes):
            raise CheckpointError(f"{source}: key '{k}' is {_describe(v)}, not a tensor")
    check_finite(tensors, source)

    strip_model = container == "lightning" or all(k.startswith(("model.", "encoder.", "decoder.")) for k in tensors)
    kernels, fams, layer_cfgs = [], [], []
    for p, fam in layers:
        if fam == "sgconv":
            k, used = _build_sgconv(ctx, p)
        elif fam == "conv-v4":
            k, used = _build_conv(ctx, p)
        else:
            k, used = _build_ssm(ctx, p, fam)
        k.name = _layer_name(p, strip_model)
        kernels.append(k)
        fams.append(fam)
        layer_cfgs.append({"name": k.name, "prefix": p, "family": fam, "kind": k.kind, "settings": used})

    # the model, where it can be rebuilt exactly
    model, why = None, None
    layer_keys_only = True
    if len(kernels) == 1:
        p, fam = layers[0]
        mod, why, used = _layer_module(ctx, kernels[0], p, fam)
        if mod is not None:
            block = p[: -len("layer.")] if (fam in ("s4-v4", "s4d-v4", "conv-v4") and p.endswith("layer.")) else p
            others = [k for k in tensors if not k.startswith(block)]
            if others:
                layer_keys_only = False
                why = f"the file holds more than one layer (e.g. '{others[0]}')"
            else:
                model = mod
    else:
        layer_keys_only = False
    if model is None and not layer_keys_only and container == "lightning" and ctx.hp_full:
        model, why2 = _build_backbone(ctx, kernels, layers)
        why = why2 if model is None else None
    if model is None:
        ctx.warn(f"{source}: kernels only: the full model was not rebuilt ({why or 'its layout is not one we rebuild'}).")

    tags = sorted(set(fams), key=fams.index)
    tag = tags[0] if len(tags) == 1 else "mixed"
    if container == "state-dict" and len(layers) == 1 and layers[0][0] in ("", "layer."):
        container_tag = "standalone"
    else:
        container_tag = container
    layout = f"{tag}-{container_tag}"
    config = {"layout": layout, "container": container, "settings": dict(settings), "layers": layer_cfgs}
    if ctx.hp:
        config["hyper_parameters_layer"] = {k: v for k, v in ctx.hp.items() if isinstance(v, (str, int, float, bool, type(None)))}
    return Checkpoint(path=source, kernels=kernels, model=model, config=config, card={}, warnings=list(ctx.warnings),
                      layout=layout)


__all__ = ["from_object", "KNOWN_SETTINGS"]
