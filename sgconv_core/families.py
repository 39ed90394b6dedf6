"""The kernel family registry: one entry per family, everything the rest of kernelscope asks about one.

A family is a way of mapping parameters to a convolution kernel (see `sgconv_core.kernels`). Loading,
analysis, the ablations and the app ask this registry instead of testing ``kind == "sgconv"``:

    fam = family("s4d")
    fam.title                      # 'S4D' (display name)
    fam.kernel_cls(**config)       # build one (or `build_kernel(kind, config)`)
    fam.count_params(L, H, C_k, **kernel.count_settings())   # kernel parameters per layer at length L
    fam.size_key                   # 'd_state': the constructor argument that sets parameters per scale / mode
    fam.decay_knob                 # 'r': what the decay ablation turns (see `Family.decay_knob`)

To add a family: write its Kernel subclass (forward(L) -> (C_k, H, L), ``config``, ``count_params``,
``count_settings``) in ``sgconv_core/kernels/``, then add one `Family` to `FAMILIES` below. A checkpoint
layout that stores it goes in ``sgconv_core/checkpoints/layouts/``.
"""
from __future__ import annotations

from dataclasses import dataclass

from .kernels.base import Kernel
from .kernels.free import FreeKernel
from .kernels.s4 import S4Kernel
from .kernels.s4d import S4DKernel
from .kernels.sgconv import SGConvKernel


@dataclass(frozen=True)
class Family:
    """One kernel family.

    name: the ``Kernel.kind`` string stored in configs ('sgconv' | 's4' | 's4d' | 'conv').
    title: display name. kernel_cls: the Kernel subclass.
    size_key: the constructor argument that sets the kernel's parameters per scale or mode
        ('kernel_dim' for SGConv, 'd_state' for the SSMs; None for the free kernel).
    decay_knob: what the decay ablation turns: 't' (SGConv: envelope ~ (pos+1)^-t, multiplier m = 2^t per
        scale), 'r' (S4/S4D: a factor on Re A, or on dt), None (no decay knob).
    summary_keys: ``kernel.config`` keys worth showing beside the model (in this order).
    ssm: True for the state-space families (poles and residues exist).
    """

    name: str
    title: str
    kernel_cls: type[Kernel]
    size_key: str | None
    decay_knob: str | None
    summary_keys: tuple[str, ...]
    ssm: bool = False

    def count_params(self, L: int, H: int, C_k: int = 1, **settings) -> int:
        """Kernel parameters of one layer at length L (taps); settings as ``kernel.count_settings()``."""
        L, H, C_k = int(L), int(H), int(C_k)
        if L < 1 or H < 1 or C_k < 1:
            raise ValueError(f"L, H and C_k must be positive, got L={L}, H={H}, C_k={C_k}")
        return self.kernel_cls.count_params(L, H, C_k, **settings)

    def build(self, config: dict) -> Kernel:
        """A fresh kernel from its constructor settings (``kernel.config``)."""
        return self.kernel_cls(**config)


FAMILIES: dict[str, Family] = {
    f.name: f for f in (
        Family("sgconv", "SGConv", SGConvKernel, "kernel_dim", "t",
               ("kernel_dim", "n_scales", "mode")),
        Family("s4d", "S4D", S4DKernel, "d_state", "r", ("d_state", "disc", "n_ssm"), ssm=True),
        Family("s4", "S4", S4Kernel, "d_state", "r", ("d_state", "disc", "n_ssm"), ssm=True),
        Family("conv", "free kernel", FreeKernel, None, None, ()),
    )
}


def family(name: str) -> Family:
    """The registry entry for a family name (``kernel.kind``); ValueError naming the known ones otherwise."""
    try:
        return FAMILIES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown kernel family {name!r}; choose from {sorted(FAMILIES)}") from None


def title(name: str) -> str:
    """Display name of a family ('mixed' and unknown names come back as they are)."""
    return FAMILIES[name].title if name in FAMILIES else name


__all__ = ["Family", "FAMILIES", "family", "title"]
