"""Kernel parameter counts per family (the paper's principle 1: sub-linear parameters in L).

Formulas (NOTES-models §3; H = d_model, C_k = kernel channels (doubled when bidirectional), L taps):
    sgconv:  S * C_k * H * d          S = 1 + ceil(log2(L / d)) - init_scale   (+ H with a learnable decay)
    s4:      H + C_k*H*N + n_ssm*N*(2 + R)                                       (DPLR, rank R)
    s4d:     H + C_k*H*N + 2*n_ssm*N                                             (- n_ssm*N without B)
    conv:    C_k * H * L                                                          (free kernel)
dt is H values when tied (the default), H*N/2 untied. n_ssm None means H (one SSM per feature).
SGConv is O(log L), S4 / S4D are independent of L, the free kernel is linear in L.
"""
from __future__ import annotations

__all__ = ["param_count", "sgconv_scales", "scaling_table", "default_families", "families_from_checkpoint",
           "DEFAULT_LENGTHS"]

#: Lengths of the NOTES §3 table plus the powers of 4 in between (1k .. 1M).
DEFAULT_LENGTHS = tuple(2 ** p for p in range(10, 21))


def sgconv_scales(L: int, d: int, init_scale: int = 0) -> int:
    """S = 1 + ceil(log2(L/d)) - init_scale, in exact integer arithmetic (smallest c with d*2^c >= L)."""
    L, d = int(L), int(d)
    if L < 1 or d < 1:
        raise ValueError(f"L and kernel_dim must be positive, got L={L}, d={d}")
    if L <= d:  # ceil(log2(L/d)) = -max{k >= 0 : L * 2^k <= d}
        c = 0
        while L * 2 ** (1 - c) <= d:
            c -= 1
    else:  # ceil(log2(L/d)) = min{c >= 1 : d * 2^c >= L}
        c = 0
        while d * 2 ** c < L:
            c += 1
    return 1 + c - int(init_scale)


def param_count(kind: str, L: int, H: int, C_k: int = 1, d: int = 64, N: int = 64, n_ssm: int | None = None,
                rank: int = 1, *, init_scale: int = 0, learnable_decay: bool = False, dt_tie: bool = True,
                has_B: bool = True) -> int:
    """Kernel parameters of one layer of family ``kind`` ('sgconv' | 's4' | 's4d' | 'conv') at length L.

    H: features; C_k: kernel channels (channels x 2 if bidirectional); d: SGConv kernel_dim;
    N: SSM state size d_state (N/2 complex modes); n_ssm: SSM copies (None = H); rank: DPLR rank R.
    Raises ValueError where the family is undefined (e.g. SGConv with fewer than one scale).
    """
    L, H, C_k, N = int(L), int(H), int(C_k), int(N)
    if L < 1 or H < 1 or C_k < 1:
        raise ValueError(f"L, H and C_k must be positive, got L={L}, H={H}, C_k={C_k}")
    if kind == "sgconv":
        S = sgconv_scales(L, d, init_scale)
        if S < 1:
            raise ValueError(f"SGConv with L={L}, kernel_dim={d}, init_scale={init_scale} has {S} scales; need >= 1")
        return S * C_k * H * int(d) + (H if learnable_decay else 0)
    if kind in ("s4", "s4d"):
        n = H if n_ssm is None else int(n_ssm)
        if n < 1 or H % n:
            raise ValueError(f"n_ssm={n} must be a positive divisor of H={H}")
        dt = H if dt_tie else H * (N // 2)
        if kind == "s4":
            return dt + C_k * H * N + n * N * (2 + int(rank))
        return dt + C_k * H * N + (2 if has_B else 1) * n * N
    if kind == "conv":
        return C_k * H * L
    raise ValueError(f"unknown kernel kind {kind!r}; choose from 'sgconv', 's4', 's4d', 'conv'")


def default_families(H: int = 256, C_k: int = 1, d: int = 32, N: int = 64) -> list[dict]:
    """The NOTES §3 comparison: SGConv (d), S4 DPLR and S4D with n_ssm = H and 1, and the free kernel."""
    return [
        {"label": f"SGConv (d={d})", "kind": "sgconv", "H": H, "C_k": C_k, "d": d},
        {"label": "S4 DPLR (n_ssm=H)", "kind": "s4", "H": H, "C_k": C_k, "N": N, "n_ssm": None},
        {"label": "S4 DPLR (n_ssm=1)", "kind": "s4", "H": H, "C_k": C_k, "N": N, "n_ssm": 1},
        {"label": "S4D (n_ssm=H)", "kind": "s4d", "H": H, "C_k": C_k, "N": N, "n_ssm": None},
        {"label": "S4D (n_ssm=1)", "kind": "s4d", "H": H, "C_k": C_k, "N": N, "n_ssm": 1},
        {"label": "free kernel", "kind": "conv", "H": H, "C_k": C_k},
    ]


def _family_args(kernel) -> dict:
    cfg = kernel.config
    out = {"kind": kernel.kind, "H": kernel.H, "C_k": kernel.C_k}
    if kernel.kind == "sgconv":
        out.update(d=cfg["kernel_dim"], init_scale=cfg.get("init_scale", 0),
                   learnable_decay=getattr(kernel, "decay", None) is not None)
    elif kernel.kind in ("s4", "s4d"):
        out.update(N=cfg["d_state"], n_ssm=cfg.get("n_ssm"), dt_tie=cfg.get("dt_tie", True),
                   has_B=cfg.get("has_B", True))
        if kernel.kind == "s4":
            out["rank"] = cfg.get("rank", 1)
    return out


def families_from_checkpoint(ck) -> list[dict]:
    """Scaling families for a checkpoint: its own first layer's family and settings ("this model"), then
    the other families at the same H and C_k (SGConv d and SSM N taken from the model where it has them,
    else 32 and 64)."""
    k = ck.kernels[0] if hasattr(ck, "kernels") else ck
    own = _family_args(k)
    own["label"] = f"this model ({k.kind})"
    d = own.get("d", 32)
    N = own.get("N", 64)
    rows = [own]
    for fam in default_families(k.H, k.C_k, d, N):
        if fam["kind"] == own["kind"] and fam.get("n_ssm", "x") == own.get("n_ssm", "x"):
            continue
        rows.append(fam)
    return rows


def scaling_table(lengths=DEFAULT_LENGTHS, families: list[dict] | None = None, **defaults) -> list[dict]:
    """Kernel parameters per layer against length, for the sub-linear scaling plot.

    lengths: taps; families: list of dicts with ``label``, ``kind`` and any `param_count` keyword
    (H, C_k, d, N, n_ssm, rank, init_scale, learnable_decay, dt_tie, has_B); default `default_families`
    built from ``defaults`` (H, C_k, d, N). Returns long-format rows
    {family (label), kind, L, params, params_per_feature (params / H)}; ``params`` is None where the
    family is undefined at that length (SGConv with L < d / 2^init_scale).
    """
    fams = families if families is not None else default_families(**defaults)
    rows = []
    for fam in fams:
        args = {k: v for k, v in fam.items() if k not in ("label", "kind")}
        H = int(args.pop("H", 256))
        C_k = int(args.pop("C_k", 1))
        for L in lengths:
            try:
                n = param_count(fam["kind"], int(L), H, C_k, **args)
            except ValueError:
                n = None
            rows.append({"family": fam.get("label", fam["kind"]), "kind": fam["kind"], "L": int(L), "params": n,
                         "params_per_feature": None if n is None else n / H})
    return rows
