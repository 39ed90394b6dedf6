"""What every layout adapter shares: the per-file context, the settings and their precedence, the containers.

Containers (`unwrap`), see docs/official-layouts.md §6:

- a Lightning ``.ckpt`` (v3/v4 train.py): ``{'state_dict': {...}, 'hyper_parameters': <the Hydra config>,
  'pytorch-lightning_version': ..., ...}``; the layers sit under ``model.``, the encoder / decoder under
  ``encoder.`` / ``decoder.``;
- example.py's ``{'model': state_dict, 'acc': ..., 'epoch': ...}``;
- a bare state dict (a standalone layer, convert_pl_to_pt.py's output, a .safetensors file).

Settings the weights do not hold (`Ctx.setting`) come from, in order: the ``settings`` argument (official
argument names, checked against `sgconv_core.settings`), the stored Hydra config (``hyper_parameters['model']['layer']``, flattened by
`layer_hparams`), then the detected version's default, which is reported in ``Checkpoint.warnings``
(docs/official-layouts.md §7).

Helpers used by several layouts: `channels` (C and bidirectional from the kernel channels C_k and ``D`` (C, H)),
`l_max`, `load_into` (strict load of converted tensors into one of our kernels), `natkey` and `layer_name`.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn

from ...errors import CheckpointError


def natkey(s: str):
    """Natural sort key: 'layers.10' after 'layers.2'."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", s)]


def describe(v) -> str:
    """'a tensor of shape (2, 3)' or 'a list': for messages about a value that is not what was expected."""
    if torch.is_tensor(v):
        return f"a tensor of shape {tuple(v.shape)}"
    return f"a {type(v).__name__}"


def is_interp(v) -> bool:
    """An unresolved OmegaConf interpolation such as '${model.d_model}'."""
    return isinstance(v, str) and "${" in v


class Ctx:
    """Per-file state: the state dict, source name, settings, hyper-parameters and warnings.

    sd: the state dict (str -> tensor, or the odd non-tensor outside the layers). hp: the flattened layer
    config (`layer_hparams`); hp_full: the whole stored Hydra config ({} when there is none).
    container: 'lightning' | 'example' | 'state-dict'. raw_keys: the state-dict keys, in file order.
    """

    def __init__(self, sd: dict, source: str, settings: dict, hp: dict, container: str, raw_keys: list[str]):
        self.sd, self.source, self.settings, self.hp = sd, source, settings, hp
        self.hp_full: Mapping = {}
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
        """Fetch a tensor, naming the key when it is missing, not a tensor, or of the wrong rank.

        Floating tensors other than float32/float64 (half, bfloat16) are returned as float32."""
        if key not in self.sd:
            raise self.err(f"key '{key}' is missing")
        t = self.sd[key]
        if not torch.is_tensor(t):
            raise self.err(f"key '{key}' is {describe(t)}, not a tensor")
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

    def setting(self, name: str, defaults: dict, layout, hp_names: tuple[str, ...] = ()):
        """settings > hyper_parameters > the version default (with a warning naming ``layout.title``)."""
        if name in self.settings:
            return self.settings[name]
        for hn in (name,) + hp_names:
            if hn in self.hp and self.hp[hn] is not None and not is_interp(self.hp[hn]):
                return self.hp[hn]
        default = defaults[name]
        self.warn(f"{layout.title}: '{name}' is not stored in {self.source}; assumed "
                  f"{default!r} ({layout.default_source}). Pass {name}=... to override.")
        return default


# ------------------------------------------------------------------------------------------ containers
def unwrap(obj, source: str):
    """-> (state_dict, hyper_parameters or None, container name 'lightning' | 'example' | 'state-dict')."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source}: expected a dict of tensors (a state dict or a checkpoint dict), "
                              f"found {describe(obj)}")
    if "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        hp = obj.get("hyper_parameters")
        lightning = "pytorch-lightning_version" in obj or isinstance(hp, Mapping)
        hp = hp if isinstance(hp, Mapping) else None
        return obj["state_dict"], hp, ("lightning" if lightning else "state-dict")
    if "model" in obj and isinstance(obj["model"], Mapping) and not torch.is_tensor(obj["model"]):
        return obj["model"], None, "example"
    return obj, None, "state-dict"


def layer_hparams(hp: Mapping | None, warn) -> dict:
    """The layer config from a Hydra config: hyper_parameters['model']['layer'] (+ nested kernel/mode dicts).

    A list of layers (v4 ``layer: [s4, ff]``) gives its first entry that is not 'ff' / 'mha' / 'mlp'.
    Unresolved interpolations are dropped with a warning; v3's ``real_type`` also answers ``real_transform``.
    """
    model = hp.get("model") if isinstance(hp, Mapping) else None
    layer = model.get("layer") if isinstance(model, Mapping) else None
    if isinstance(layer, (list, tuple)):
        dicts = [d for d in layer if isinstance(d, Mapping) and d.get("_name_") not in ("ff", "mha", "mlp")]
        layer = dicts[0] if dicts else None
    if not isinstance(layer, Mapping):
        return {}
    out = {k: v for k, v in layer.items() if not (isinstance(v, Mapping) and k in ("kernel", "mode", "kernel_args"))}
    for k in ("kernel_args", "kernel", "mode"):
        if isinstance(layer.get(k), Mapping):
            out.update(layer[k])
    for k, v in list(out.items()):
        if is_interp(v):
            warn(f"hyper_parameters: model.layer.{k} = {v!r} is an unresolved interpolation; ignored.")
            del out[k]
    if "real_type" in out and "real_transform" not in out:  # v3 name
        out["real_transform"] = out["real_type"]
    return out


def layer_name(prefix: str, strip_model: bool) -> str:
    """Our layer name for a kernel prefix: 'model.layers.3.layer.layer.' -> 'layers.3'; '' -> 'layer'."""
    p = prefix.rstrip(".")
    if strip_model and p.startswith("model."):
        p = p[len("model."):]
    elif p == "model":
        p = ""
    while p == "layer" or p.endswith(".layer"):
        p = p[: -len("layer")].rstrip(".")
    return p or "layer"


# ------------------------------------------------------------------------------------------ shared helpers
def load_into(kernel: nn.Module, tensors: dict[str, torch.Tensor], dtype: torch.dtype) -> nn.Module:
    """Strict-load converted tensors (our names and shapes) into a freshly built kernel; eval mode."""
    kernel = kernel.to(dtype)
    expected = kernel.state_dict()
    for k, v in expected.items():
        if k not in tensors:  # pragma: no cover - guarded by the builders
            raise KeyError(k)
        if tuple(tensors[k].shape) != tuple(v.shape):  # pragma: no cover - guarded by the builders
            raise ValueError(f"{k}: {tuple(tensors[k].shape)} vs {tuple(v.shape)}")
    kernel.load_state_dict({k: tensors[k] for k in expected}, strict=True)
    return kernel.eval()


def channels(ctx: Ctx, prefix: str, C_k: int, ck_key: str) -> tuple[int, bool]:
    """channels C and bidirectional from settings / hparams / the D shape (C_k = C, or 2C when bidirectional).

    ``D`` (C, H) keeps C when the kernel doubles its channels for two directions (docs/official-layouts.md §2.1, §3.2).
    """
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


def l_max(ctx: Ctx) -> int | None:
    """l_max from settings > the stored config, or None when neither holds a positive integer."""
    lm = ctx.settings.get("l_max", ctx.hp.get("l_max"))
    return lm if isinstance(lm, int) and not isinstance(lm, bool) and lm > 0 else None
