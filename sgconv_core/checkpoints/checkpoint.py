"""The `Checkpoint` object every loader returns."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import CheckpointError
from ..families import FAMILIES
from ..kernels import Kernel
from ..lengths import default_length


@dataclass
class Checkpoint:
    """What was recovered from one file.

    kernels: kernel modules in model order (``.name`` like "layers.0", ``.kind``, ``.n_params``, ``.config``;
    ``kernels[i](L)`` -> (C_k, H, L)). model: a runnable nn.Module, or None where only kernels were recovered.
    config: the model / layer settings used. card: our model card (empty for foreign files).
    warnings: every setting that was assumed rather than read from the file. layout: the detected layout.
    """

    path: str
    kernels: list[Kernel]
    model: nn.Module | None = None
    config: dict = field(default_factory=dict)
    card: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    layout: str = "kernelscope"

    # -- model-level facts (ask these, not ``kernels[0]``) -------------------------------------------------
    @property
    def families(self) -> list[str]:
        """The kernel families of the layers, each once, in layer order (see `sgconv_core.families`)."""
        return list(dict.fromkeys(k.kind for k in self.kernels))

    @property
    def family(self) -> str:
        """'sgconv' | 's4' | 's4d' | 'conv', or 'mixed' if the layers differ."""
        fams = self.families
        return fams[0] if len(fams) == 1 else "mixed"

    @property
    def d_model(self) -> int:
        """H: features per layer (the widest layer's, should they differ)."""
        return max(k.H for k in self.kernels)

    @property
    def kernel_channels(self) -> int:
        """C_k: kernel channels per feature (channels, doubled when bidirectional), the most of any layer."""
        return max(k.C_k for k in self.kernels)

    @property
    def l_max(self) -> int | None:
        """The length the model was built / trained for (taps), or None where the file does not say."""
        known = [k.l_max for k in self.kernels if k.l_max]
        return max(known) if known else None

    @property
    def default_length(self) -> int:
        """The length to show its kernels at: ``l_max``, else the length policy's default."""
        return default_length(self.l_max)

    @property
    def n_kernel_params(self) -> int:
        """Kernel parameters summed over layers."""
        return sum(k.n_params for k in self.kernels)

    @property
    def n_params(self) -> int:
        """All parameters of the runnable model (kernel parameters alone when there is no model)."""
        if self.model is None:
            return self.n_kernel_params
        return sum(p.numel() for p in self.model.parameters())

    def summary(self) -> dict:
        """A flat description for display: layout, family, layers, H, C, state size / kernel_dim, parameters."""
        k0 = self.kernels[0]
        out = {
            "file": self.path, "layout": self.layout, "family": self.family, "layers": len(self.kernels),
            "H": k0.H, "channels": k0.channels, "bidirectional": k0.bidirectional, "l_max": k0.l_max,
            "kernel_params": self.n_kernel_params, "total_params": self.n_params,
            "runnable": self.model is not None,
        }
        cfg = k0.config
        keys = [key for f in self.families if f in FAMILIES for key in FAMILIES[f].summary_keys]
        for key in dict.fromkeys(keys):
            if key in cfg:
                out[key] = cfg[key]
        return out


def check_finite(tensors: dict[str, torch.Tensor], source: str) -> None:
    """Raise CheckpointError naming the first tensor holding NaN or Inf."""
    for key, t in tensors.items():
        if torch.is_tensor(t) and (t.is_floating_point() or t.is_complex()) and not torch.isfinite(t).all():
            bad = int((~torch.isfinite(t)).sum())
            raise CheckpointError(f"{source}: key '{key}' holds {bad} NaN/Inf value(s) of {t.numel()}")
