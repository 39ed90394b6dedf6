"""The builder every state-space layout shares: v4-convention tensors + settings -> `S4Kernel` / `S4DKernel`.

A state-space layout (ssm_v4.py, ssm_v3.py, s4d_minimal.py) subclasses `SSMLayout` and writes two methods:
``map_keys`` reads its keys into an `SSMParams` in the v4 convention, and ``resolve_settings`` says which settings
the weights do not hold and which the version fixes. `SSMLayout.build_kernel` does the rest, the same way for all:

    dt     = dt_transform(inv_dt)        (sinh(inv_dt) in place of inv_dt when dt_fast applies)
    A      = -real_transform(A_real) - i * imag_transform(A_imag)      (v4: A_imag holds -Im A)
    S4D:   K[c, h, l] = 2 Re sum_n C[c,h,n] B[n] coef_n lambda_n^l     (disc: zoh | bilinear)
    S4:    DPLR A - P P^*, bilinear, C stored as C~ = C (I - dA^l_kernel)

v4-convention shapes (M = N' = d_state/2 complex modes, or N real modes for S4D-Real; C_k kernel channels):

    inv_dt  (H, 1), or (H, M) when dt is not tied
    A_real  (n_ssm, M)              A_imag (n_ssm, M), absent for S4D-Real
    B       (1, n_ssm, M, 2)        (1, n_ssm, M) real; absent for the minimal S4D (B = 1)
    C       (C_k, H, M, 2)          (C_k, H, M) real
    P       (R, n_ssm, M, 2)        DPLR only, with l_kernel () int64 (the length C~ is attuned to)

Facts (why dt_fast, bandlimit and relu apply where they do) are in docs/official-layouts.md §3.1 and §5.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ...kernels import Kernel, S4DKernel, S4Kernel
from ...kernels.s4d import DISCS
from ...kernels.ssm import TRANSFORMS
from .base import Layout
from .context import Ctx, channels, l_max, load_into

SSM_SETTINGS = ("dt_transform", "real_transform", "imag_transform", "disc", "bandlimit")


@dataclass
class SSMParams:
    """One SSM layer's tensors in the v4 convention (shapes in the module docstring).

    keys: our name ('inv_dt', 'A_real', 'A_imag', 'B', 'C', and for DPLR 'P', 'l_kernel') -> the stored key, for
    messages. kernel_prefix: where the kernel's keys live. A_imag None: S4D-Real; B None: no B (minimal S4D).
    chan: (C, bidirectional) when the layout fixes it, else read by `context.channels`.
    kernel_real_transform: the real_transform given to our kernel when A_real was already transformed (v3 relu).
    """

    keys: dict
    kernel_prefix: str
    inv_dt: torch.Tensor
    A_real: torch.Tensor
    A_imag: torch.Tensor | None
    B: torch.Tensor | None
    C: torch.Tensor
    real: bool = False
    chan: tuple[int, bool] | None = None
    kernel_real_transform: str | None = None

    def shape_err(self, ctx: Ctx, name: str, expected: str):
        return ctx.shape_err(self.keys[name], ctx.sd[self.keys[name]], expected)


def check_shapes(ctx: Ctx, prm: SSMParams) -> tuple[int, int, int, int]:
    """Cross-check the v4-convention tensors; returns (H, n_ssm, M, C_k)."""
    n_ssm, M = prm.A_real.shape
    H = prm.inv_dt.shape[0]
    if prm.inv_dt.shape[1] not in (1, M):
        raise prm.shape_err(ctx, "inv_dt", f"({H},) / ({H}, 1) or ({H}, {M})")
    if prm.A_imag is not None and tuple(prm.A_imag.shape) != (n_ssm, M):
        raise prm.shape_err(ctx, "A_imag", f"({n_ssm}, {M}) like {prm.keys['A_real']}")
    if H % n_ssm:
        raise ctx.err(f"key '{prm.keys['A_real']}' has {n_ssm} SSM copies, which does not divide d_model={H}")
    C = prm.C
    want_C = (C.shape[0], H, M) if prm.real else (C.shape[0], H, M, 2)
    if tuple(C.shape) != want_C:
        raise prm.shape_err(ctx, "C", f"{want_C}")
    if prm.B is not None:
        want_B = (1, n_ssm, M) if prm.real else (1, n_ssm, M, 2)
        if tuple(prm.B.shape) != want_B:
            raise prm.shape_err(ctx, "B", f"{want_B}")
    return H, n_ssm, M, C.shape[0]


def resolve(ctx: Ctx, layout: Layout, defaults: dict, names: tuple[str, ...], real: bool = False,
            fixed: dict | None = None, hp_aliases: dict | None = None) -> dict:
    """The settings ``names`` (settings > stored config > ``defaults``, warned), then the version's ``fixed`` ones.

    imag_transform is not asked for (and is 'none') when ``real`` (S4D-Real has no A_imag). hp_aliases: other
    config names per setting (v3 'real_type'). A value read from the config must still be a known choice.
    """
    out = {}
    for n in names:
        if not (real and n == "imag_transform"):
            out[n] = ctx.setting(n, defaults, layout, (hp_aliases or {}).get(n, ()))
    for n in ("dt_transform", "real_transform", "imag_transform"):
        if n in out and out[n] not in TRANSFORMS:
            raise ctx.err(f"{n}={out[n]!r} (from the stored config) is not one of {list(TRANSFORMS)}")
    if "disc" in out and out["disc"] not in DISCS:
        raise ctx.err(f"disc={out['disc']!r} (from the stored config) is not one of {list(DISCS)}")
    out.update(fixed or {})
    if real:
        out["imag_transform"] = "none"
    return out


class SSMLayout(Layout):
    """A state-space layout. dplr: S4 (DPLR/NPLR) rather than S4D. has_dt_fast: the official kernel has dt_fast."""

    dplr: bool = False
    has_dt_fast: bool = False

    def map_keys(self, ctx: Ctx, p: str) -> SSMParams:
        """Read the layer's keys at prefix p into the v4 convention (errors name the stored key)."""
        raise NotImplementedError

    def resolve_settings(self, ctx: Ctx, p: str, prm: SSMParams) -> dict:
        """The settings the weights do not hold: dt/real/imag transforms, disc (S4D), bandlimit."""
        raise NotImplementedError

    def read_l_kernel(self, ctx: Ctx, p: str, prm: SSMParams) -> int:
        """DPLR: the length C~ is attuned to, from the 'l_kernel' key (an integer scalar)."""
        key = prm.keys["l_kernel"]
        lk = ctx.get(key, None, floating=False)
        if lk.numel() != 1 or lk.is_floating_point() or lk.is_complex():
            raise ctx.shape_err(key, lk, "an integer scalar")
        return int(lk.reshape(()).item())

    def dt_fast(self, ctx: Ctx) -> bool:
        """dt_fast (settings > stored config > False): the official forward uses sinh(inv_dt) in place of inv_dt."""
        if "dt_fast" in ctx.settings:
            if ctx.settings["dt_fast"] and not self.has_dt_fast:
                raise ctx.err(f"setting dt_fast=True does not apply to {self.title}")
            return bool(ctx.settings["dt_fast"]) and self.has_dt_fast
        v = ctx.hp.get("dt_fast")
        return self.has_dt_fast and isinstance(v, bool) and v

    def build_kernel(self, ctx: Ctx, p: str) -> tuple[Kernel, dict]:
        prm = self.map_keys(ctx, p)
        H, n_ssm, M, C_k = check_shapes(ctx, prm)
        dtype = prm.C.dtype
        dt_fast = self.dt_fast(ctx)
        if dt_fast:  # official: dt = dt_transform(sinh(inv_dt))
            prm.inv_dt = torch.sinh(prm.inv_dt)
        sset = self.resolve_settings(ctx, p, prm)
        chan, bidir = prm.chan or channels(ctx, p, C_k, prm.keys["C"])
        if sset.get("bandlimit") is not None:
            try:
                sset["bandlimit"] = float(sset["bandlimit"])
            except (TypeError, ValueError):
                raise ctx.err(f"bandlimit={sset['bandlimit']!r} is not a number") from None
        common = dict(d_model=H, channels=chan, bidirectional=bidir, l_max=None, n_ssm=n_ssm,
                      dt_tie=prm.inv_dt.shape[1] == 1, dt_transform=sset["dt_transform"],
                      real_transform=prm.kernel_real_transform or sset["real_transform"],
                      imag_transform=sset["imag_transform"], bandlimit=sset.get("bandlimit"))
        build = self._build_dplr if self.dplr else self._build_diag
        k, sset = build(ctx, p, prm, common, sset, dtype)
        if self.has_dt_fast:
            sset["dt_fast"] = dt_fast
        return k, sset

    @staticmethod
    def _tensors(prm: SSMParams) -> dict:
        out = {"inv_dt": prm.inv_dt, "A_real": prm.A_real, "C": prm.C}
        if not prm.real:
            out["A_imag"] = prm.A_imag
        if prm.B is not None:
            out["B"] = prm.B
        return out

    def _build_diag(self, ctx: Ctx, p: str, prm: SSMParams, common: dict, sset: dict, dtype) -> tuple[Kernel, dict]:
        M = prm.A_real.shape[1]
        with torch.random.fork_rng():
            k = S4DKernel(d_state=M if prm.real else 2 * M, init="real" if prm.real else "lin",
                          disc=sset.get("disc", "zoh"), has_B=prm.B is not None, **common)
        k = load_into(k, self._tensors(prm), dtype)
        k.l_max = l_max(ctx)
        sset["is_real"] = prm.real
        return k, sset

    def _build_dplr(self, ctx: Ctx, p: str, prm: SSMParams, common: dict, sset: dict, dtype) -> tuple[Kernel, dict]:
        n_ssm, M = prm.A_real.shape
        lm = l_max(ctx)
        P = ctx.get(prm.keys["P"], 4)
        if P.shape[1:] != (n_ssm, M, 2):
            raise ctx.shape_err(prm.keys["P"], P, f"(R, {n_ssm}, {M}, 2)")
        lk = self.read_l_kernel(ctx, p, prm)
        if lk < 0 or lk > (1 << 24):
            raise ctx.err(f"key '{prm.keys['l_kernel']}' = {lk} is not a usable kernel length")
        if "disc" in ctx.settings and ctx.settings["disc"] != "bilinear":
            ctx.warn(f"disc={ctx.settings['disc']!r} ignored: S4 (DPLR) kernels are always bilinear.")
        tensors = dict(self._tensors(prm), P=P, l_kernel=torch.tensor(lk, dtype=torch.int64))
        with torch.random.fork_rng():
            k = S4Kernel(d_state=2 * M, rank=P.shape[0], **common)
        k = load_into(k, tensors, dtype)
        k.l_max = lm if lm else (lk or None)
        sset = {n: sset[n] for n in ("dt_transform", "real_transform", "imag_transform", "bandlimit") if n in sset}
        sset["disc"] = "bilinear"
        return k, sset
