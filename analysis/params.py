"""Kernel parameter counts per family (the paper's principle 1: sub-linear parameters in L).

Formulas (docs/official-layouts.md §8; H = d_model, C_k = kernel channels (doubled when bidirectional), L taps):
    sgconv:  S * C_k * H * d          S = 1 + ceil(log2(L / d)) - init_scale   (+ H with a learnable decay)
    s4:      H + C_k*H*N + n_ssm*N*(2 + R)                                       (DPLR, rank R)
    s4d:     H + C_k*H*N + 2*n_ssm*N                                             (- n_ssm*N without B)
    conv:    C_k * H * L                                                          (free kernel)
dt is H values when tied (the default), H*N/2 untied. n_ssm None means H (one SSM per feature).
SGConv is O(log L), S4 / S4D are independent of L, the free kernel is linear in L.
"""
from __future__ import annotations

from sgconv_core.families import family
from sgconv_core.kernels.sgconv import n_scales_for

__all__ = ["param_count", "sgconv_scales", "scaling_table", "default_families", "families_from_checkpoint",
           "DEFAULT_LENGTHS", "TABLE_LENGTHS", "model_families", "scaling_lengths", "scaling_pivot"]

#: Lengths of the docs/official-layouts.md §8 table plus the powers of 4 in between (1k .. 1M).
DEFAULT_LENGTHS = tuple(2 ** p for p in range(10, 21))
#: Lengths of the parameter table (beside the models' own l_max).
TABLE_LENGTHS = (1024, 16384, 262144, 1048576)


def sgconv_scales(L: int, d: int, init_scale: int = 0) -> int:
    """S = 1 + ceil(log2(L/d)) - init_scale, in exact integer arithmetic (smallest c with d*2^c >= L)."""
    return n_scales_for(L, d, init_scale)


def param_count(kind: str, L: int, H: int, C_k: int = 1, d: int = 64, N: int = 64, n_ssm: int | None = None,
                rank: int = 1, *, init_scale: int = 0, learnable_decay: bool = False, dt_tie: bool = True,
                has_B: bool = True) -> int:
    """Kernel parameters of one layer of family ``kind`` ('sgconv' | 's4' | 's4d' | 'conv') at length L.

    H: features; C_k: kernel channels (channels x 2 if bidirectional); d: SGConv kernel_dim;
    N: SSM state size d_state (N/2 complex modes); n_ssm: SSM copies (None = H); rank: DPLR rank R.
    The formula is the family's own (``Kernel.count_params``, through `sgconv_core.families`).
    Raises ValueError where the family is undefined (e.g. SGConv with fewer than one scale).
    """
    fam = family(kind)
    if fam.size_key == "kernel_dim":
        settings = {"kernel_dim": d, "init_scale": init_scale, "learnable_decay": learnable_decay}
    elif fam.ssm:
        settings = {"d_state": N, "n_ssm": n_ssm, "dt_tie": dt_tie, "has_B": has_B, "rank": rank}
    else:
        settings = {}
    return fam.count_params(L, H, C_k, **settings)


def default_families(H: int = 256, C_k: int = 1, d: int = 32, N: int = 64) -> list[dict]:
    """The docs/official-layouts.md §8 comparison: SGConv (d), S4 DPLR and S4D (n_ssm = H and 1), free kernel."""
    return [
        {"label": f"SGConv (d={d})", "kind": "sgconv", "H": H, "C_k": C_k, "d": d},
        {"label": "S4 DPLR (n_ssm=H)", "kind": "s4", "H": H, "C_k": C_k, "N": N, "n_ssm": None},
        {"label": "S4 DPLR (n_ssm=1)", "kind": "s4", "H": H, "C_k": C_k, "N": N, "n_ssm": 1},
        {"label": "S4D (n_ssm=H)", "kind": "s4d", "H": H, "C_k": C_k, "N": N, "n_ssm": None},
        {"label": "S4D (n_ssm=1)", "kind": "s4d", "H": H, "C_k": C_k, "N": N, "n_ssm": 1},
        {"label": "free kernel", "kind": "conv", "H": H, "C_k": C_k},
    ]


#: ``count_settings()`` keys -> `param_count` keyword names.
_COUNT_ARG = {"kernel_dim": "d", "d_state": "N"}


def _family_args(kernel) -> dict:
    out = {"kind": kernel.kind, "H": kernel.H, "C_k": kernel.C_k}
    out.update({_COUNT_ARG.get(k, k): v for k, v in kernel.count_settings().items()})
    return out


def _same_family(a: dict, b: dict) -> bool:
    """Same kind and the same number of SSM copies (n_ssm None means one per feature, i.e. H)."""
    def copies(f: dict):
        n = f.get("n_ssm", "x")
        return f.get("H") if n is None else n

    return a["kind"] == b["kind"] and copies(a) == copies(b)


def families_from_checkpoint(ck) -> list[dict]:
    """Scaling families for a checkpoint: its own first layer's family and settings ("this model"), then
    the other families at the same H and C_k (SGConv d and SSM N taken from the model where it has them,
    else 32 and 64)."""
    k = ck.kernels[0] if hasattr(ck, "kernels") else ck  # the first layer's settings stand for the model
    own = _family_args(k)
    own["label"] = f"this model ({k.kind})"
    d = own.get("d", 32)
    N = own.get("N", 64)
    return [own] + [fam for fam in default_families(k.H, k.C_k, d, N) if not _same_family(fam, own)]


def model_families(cks: dict, others: bool = True) -> list[dict]:
    """Scaling families of several checkpoints ({name: Checkpoint}): each model's own family labelled
    "<name> (<kind>)" and, with ``others``, the comparison families (`default_families`) at the first model's
    H and C_k, except those a model already is."""
    own = []
    for name, ck in cks.items():
        fam = dict(families_from_checkpoint(ck)[0])
        fam["label"] = f"{name} ({fam['kind']})"
        own.append(fam)
    if not others or not cks:
        return own
    first = next(iter(cks.values()))
    return own + [f for f in default_families(first.d_model, first.kernel_channels)
                  if not any(_same_family(f, o) for o in own)]


def scaling_lengths(cks: dict) -> list[int]:
    """`DEFAULT_LENGTHS` and the models' own l_max (taps), sorted."""
    return sorted(set(DEFAULT_LENGTHS) | {int(ck.l_max) for ck in cks.values() if ck.l_max})


def scaling_pivot(rows: list[dict], lengths) -> list[dict]:
    """`scaling_table` rows as one row per family: {"family": label, "L=1,024": params, ...} for the given
    lengths (those the rows hold); None where the family is undefined; lengths no family is defined at and
    families defined at none of them are left out."""
    lengths = sorted({int(L) for L in lengths} & {r["L"] for r in rows})
    lengths = [L for L in lengths if any(r["L"] == L and r["params"] is not None for r in rows)]
    table: dict[str, dict] = {}
    for r in rows:
        if r["L"] in lengths:
            table.setdefault(r["family"], {"family": r["family"]})[f"L={r['L']:,}"] = r["params"]
    return [row for row in table.values() if any(v is not None for k, v in row.items() if k != "family")]


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
