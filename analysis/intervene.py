"""Kernel interventions on a trained model: change its kernels, run its normal forward, re-score on held-out data.

    python -m analysis.intervene pretrained/digits-sgconv.safetensors --kind truncate --json out.json
    python -m analysis.intervene CK --kind decay --values 0 0.5 1 2 --layer layers.1 --json out.json
    python -m analysis.intervene CK --kind compress --data mydata.npz --json out.json
    r = intervene(ck, "scales")          # library: the same record as a dict

Kinds (each applied to every layer's kernel, or to one named layer's; the kernel k has shape (C_k, H, L)):

- ``truncate`` K: zero every lag >= K (K = 1 keeps lag 0 only, K = L changes nothing). Default K: 8 points on a
  log grid from 1 to L. How much of its length does the model use?
- ``decay`` t: multiply lag l by (l + 1)^-t (t = 0 changes nothing). Default t: 0, 0.25, 0.5, 1, 2, 4.
  How much more decay does it tolerate?
- ``compress`` d or N': S4 / S4D layers keep, per (channel, feature), the N' modes with the largest
  contribution |r| * sum_{l<L} |lambda|^l (a conjugate pair counts as one mode; `analysis.extract.ssm_modes`),
  default N' = 1, 2, 4, ... up to all of them; other kernels (SGConv, free) are replaced by their best SGConv fit
  with d weights per scale (least squares, 'cat' mode, multiplier 2: `analysis.fit.sgconv_design`), default
  d = 1, 2, 4, ..., 64 (d <= L). The record's ``params_per_channel`` gives the kernel parameters each point keeps
  per (channel, feature): S * d real weights, or 4 N' real numbers (a complex residue and pole per mode).
- ``scales`` i (SGConv only): remove scale i's contribution (its sub-kernel's stretched, damped piece: in 'cat'
  mode exactly the lags of its segment, [0, d), [d, 2d), [2d, 4d), ... for init_scale 0), one scale at a time.
  Default: every scale. The record's ``scale_lags`` gives each point's lag range [start, stop).

The forward is the model's own (`sgconv_core.layers.kernel_override` sets `ConvLayer.kernel_transform`), never a
re-implementation. Held-out data: the test split of the task in the model card (``n`` None), ``n`` examples
``task.sample(n, seed)`` (refused when they are not n unique examples, e.g. more than the 250 digits test images),
or a user's data file (`sgconv_core.data.load_data`, inputs and targets). Metric: accuracy with its 95 % Wilson
interval (n = examples; per-position accuracy: a bootstrap over examples), or NMSE with a seeded 95 % bootstrap
interval over examples (`sgconv_core.stats`).

Bad input (an unknown kind, a value out of range, an unknown layer, a model without a runnable forward, data that
does not fit the model) raises one ValueError / CheckpointError naming the problem before anything runs; the
command line prints it as one line and exits with code 2.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
import warnings

import numpy as np
import torch

from sgconv_core.errors import CheckpointError, printable
from sgconv_core.evaluate import metric_interval, runnable, task_of

__all__ = ["intervene", "held_out", "truncate_fn", "decay_fn", "log_grid", "ssm_compressed", "sgconv_compressed",
           "scale_contributions", "KINDS", "DEFAULT_DECAYS"]

KINDS = ("truncate", "decay", "compress", "scales")
DEFAULT_DECAYS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
#: points of the default truncation grid
TRUNCATE_POINTS = 8


# ----------------------------------------------------------------------------------------------- transforms
def truncate_fn(K: int):
    """k (C_k, H, L) -> a copy with lags >= K set to 0."""
    K = int(K)

    def fn(k: torch.Tensor) -> torch.Tensor:
        out = k.clone()
        out[..., K:] = 0
        return out
    return fn


def decay_fn(t: float):
    """k (C_k, H, L) -> k * (lag + 1)^-t (t = 0: k unchanged, value for value)."""
    t = float(t)

    def fn(k: torch.Tensor) -> torch.Tensor:
        lag = torch.arange(1, k.shape[-1] + 1, dtype=torch.float64, device=k.device)
        return k * lag.pow(-t).to(k.dtype)
    return fn


def _replace_fn(R: torch.Tensor):
    """k -> R (a precomputed (C_k, H, L) replacement kernel), in k's dtype; the shape must match."""
    def fn(k: torch.Tensor) -> torch.Tensor:
        if tuple(k.shape) != tuple(R.shape):
            raise ValueError(f"the replacement kernel has shape {tuple(R.shape)}, the layer built {tuple(k.shape)}")
        return R.to(device=k.device, dtype=k.dtype)
    return fn


def _subtract_fn(P: torch.Tensor):
    """k -> k - P (a precomputed (C_k, H, L) piece of the kernel)."""
    def fn(k: torch.Tensor) -> torch.Tensor:
        if tuple(k.shape) != tuple(P.shape):
            raise ValueError(f"the scale's piece has shape {tuple(P.shape)}, the layer built {tuple(k.shape)}")
        return k - P.to(device=k.device, dtype=k.dtype)
    return fn


def log_grid(L: int, points: int = TRUNCATE_POINTS) -> list[int]:
    """Up to ``points`` distinct integers from 1 to L (both included) on a log grid: e.g. L = 1024 ->
    [1, 3, 7, 20, 53, 141, 380, 1024]."""
    L = int(L)
    g = np.unique(np.round(np.geomspace(1, L, points)).astype(int))
    return [int(v) for v in g]


# ----------------------------------------------------------------------------------------------- compress
def _mode_units(poles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For poles (H, M): (mate (H, M) the index of each pole's conjugate (itself for a real pole),
    representative (H, M) bool, one True per conjugate pair / real pole)."""
    H, M = poles.shape
    dist = np.abs(poles[:, :, None] - np.conj(poles)[:, None, :])  # (H, M, M): |lambda_m - conj(lambda_m')|
    mate = dist.argmin(axis=-1)
    rep = np.arange(M)[None, :] <= mate
    return mate, rep


def ssm_compressed(residues: np.ndarray, poles: np.ndarray, L: int, counts) -> dict[int, torch.Tensor]:
    """S4 / S4D kernels keeping, per (channel c, feature h), the N' modes with the largest contribution.

    residues (C_k, H, M), poles (H, M) complex (`analysis.extract.ssm_modes`: K[c,h,l] = Re sum_m r lambda^l,
    conjugate pairs listed explicitly). A mode is a conjugate pair (or a real pole); its contribution is
    |r| * sum_{l<L} |lambda|^l. Returns {N': (C_k, H, L) float64 tensor} for each N' of ``counts``.
    """
    r = np.array(residues, dtype=np.complex128)  # copies: ssm_modes' arrays are read-only
    lam = np.array(poles, dtype=np.complex128)
    C, H, M = r.shape
    mate, rep = _mode_units(lam)
    a = np.abs(lam)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        geo = np.where(np.abs(1 - a) < 1e-12, float(L), (1 - a ** L) / (1 - a))  # sum_{l<L} |lambda|^l
    score = np.abs(r) * geo[None]  # (C, H, M)
    score = np.where(rep[None], score, -np.inf)
    order = np.argsort(-score, axis=-1, kind="stable")  # representatives first, largest contribution first
    lags = torch.arange(L, dtype=torch.float64)
    lam_t = torch.from_numpy(lam)
    V = torch.exp(lags.to(torch.complex128)[None, None, :] * torch.log(lam_t)[:, :, None])  # (H, M, L)
    V[lam_t == 0] = 0
    V[..., 0] = 1  # lambda^0 = 1, also for lambda = 0
    out = {}
    for n in counts:
        keep = np.zeros((C, H, M), dtype=bool)
        np.put_along_axis(keep, order[..., :int(n)], True, axis=-1)
        keep &= rep[None]
        keep |= np.take_along_axis(keep, np.broadcast_to(mate[None], keep.shape), axis=-1)  # the mates too
        rk = torch.from_numpy(np.where(keep, r, 0))
        out[int(n)] = torch.einsum("chm,hml->chl", rk, V).real.contiguous()
    return out


def n_modes(poles: np.ndarray) -> int:
    """Modes per (channel, feature) counting a conjugate pair as one: the most N' `ssm_compressed` can keep."""
    return int(_mode_units(np.asarray(poles, dtype=np.complex128))[1].sum(axis=-1).min())


def sgconv_compressed(kernel: np.ndarray, d: int) -> tuple[torch.Tensor, int]:
    """Best SGConv fit with d weights per scale of every (c, h) row of ``kernel`` (C_k, H, L): least squares on the
    design matrix `analysis.fit.sgconv_design` (L, S*d) ('cat' mode, multiplier 2, S from L and d), row by row
    the same fit as `analysis.fit.fit_sgconv`. Returns ((C_k, H, L) float64 tensor, S * d)."""
    from analysis.fit import sgconv_design

    k = np.asarray(kernel, dtype=np.float64)
    C, H, L = k.shape
    A = sgconv_design(L, int(d))
    W, *_ = np.linalg.lstsq(A, k.reshape(-1, L).T, rcond=None)
    return torch.from_numpy((A @ W).T.reshape(C, H, L).copy()), int(A.shape[1])


# ----------------------------------------------------------------------------------------------- scales
def scale_lags(kernel, L: int) -> list[tuple[int, int]]:
    """Lag range [start, stop) of each scale of an SGConv kernel, cropped to L taps ('cat': its own segment d, d,
    2d, 4d, ... long; 'sum': every scale starts at lag 0, scale i is d * 2^(i + init_scale) long)."""
    d, s0, out, start = kernel.kernel_dim, kernel.init_scale, [], 0
    for i in range(kernel.n_scales):
        if kernel.flags["combine"] == "cat":
            n = d * 2 ** (max(0, i - 1) + s0)
            out.append((min(start, L), min(start + n, L)))
            start += n
        else:
            out.append((0, min(d * 2 ** (i + s0), L)))
    return out


@torch.no_grad()
def scale_contributions(kernel, L: int) -> list[torch.Tensor]:
    """Each scale's piece of an SGConv kernel at L taps: [(C_k, H, L)] * S in the kernel's dtype, computed by the
    kernel's own code with every other scale's weights set to 0 and divided by the kernel's norm, so that
    ``kernel(L) - piece_i`` is the kernel without scale i (in 'cat' mode: exactly 0 on scale i's segment)."""
    norm = kernel.current_norm()
    out = []
    for i in range(kernel.n_scales):
        k = copy.deepcopy(kernel)
        for j, w in enumerate(k.kernel_list):
            if j != i:
                w.zero_()
        raw = k.raw_kernel(L)
        if raw.shape[-1] < L:
            raw = torch.nn.functional.pad(raw, (0, L - raw.shape[-1]))
        out.append(raw / norm)
    return out


# ----------------------------------------------------------------------------------------------- data + metric
def held_out(ck, data=None, n: int | None = None, seed: int = 1) -> dict:
    """Held-out examples for ``ck``'s runnable model: {x, y, metric, source, L, nmse_start}.

    data: a data file (`sgconv_core.data.load_data`, targets needed); else the card's task: its test split
    (n None) or ``task.sample(n, seed)``, refused unless those are n unique examples. Raises ValueError /
    CheckpointError / DataError naming the problem.
    """
    from sgconv_core.data import input_spec, load_data, task_misfit

    ck = runnable(ck, "its kernels cannot be intervened on")
    spec = input_spec(ck.model)
    if data is not None:
        d = load_data(data, spec, need_targets=True)
        return {"x": d.x, "y": d.y, "metric": d.metric, "source": os.path.basename(d.source), "L": d.L,
                "nmse_start": 0}
    if not ck.card.get("task"):
        raise CheckpointError(f"{ck.path}: the model card names no task; give a data file of inputs and targets")
    task = task_of(ck)
    why = task_misfit(spec, task.spec)
    if why:
        raise CheckpointError(f"{ck.path}: the {task.spec.name} task does not fit the model: {why}")
    if n is None:
        x, y = task.split("test")
        source = f"{task.spec.name} test split"
    else:
        if int(n) < 1:
            raise ValueError(f"n must be positive, got {n}")
        x, y = task.sample(int(n), int(seed))
        unique = len(torch.unique(x.reshape(len(x), -1), dim=0))
        if unique < len(x):
            pool = len(task.split("test")[1])
            raise ValueError(f"the {task.spec.name} task has only {pool} held-out examples; n = {n} would re-use "
                             f"some ({unique} unique); ask for n <= {pool} or leave n unset for the test split")
        source = f"{n} {task.spec.name} examples (seed {seed})"
    return {"x": x, "y": y, "metric": task.spec.metric, "source": source, "L": int(task.spec.L),
            "nmse_start": int(task.nmse_start)}


def score(pred: torch.Tensor, y: torch.Tensor, metric: str, nmse_start: int = 0, seed: int = 0) -> tuple:
    """(value, ci_low, ci_high) of outputs ``pred`` against ``y``: `sgconv_core.evaluate.metric_interval` (Wilson
    for per-example accuracy, a bootstrap over examples otherwise; NMSE pooled over t >= nmse_start). 95 %."""
    m = metric_interval(metric, pred, y, nmse_start, seed)
    return m["value"], m["ci_low"], m["ci_high"]


# ----------------------------------------------------------------------------------------------- plan
def _targets(model, layer) -> dict:
    from sgconv_core.layers import conv_layers

    layers = conv_layers(model)
    if not layers:
        raise CheckpointError(f"the model ({type(model).__name__}) has no convolution layer whose kernel can be "
                              "changed")
    if layer is None:
        return layers
    names = list(layers)
    if isinstance(layer, int) or (isinstance(layer, str) and layer.isdigit()):
        i = int(layer)
        if not 0 <= i < len(names):
            raise ValueError(f"layer {i} is out of range; the model has {len(names)} layer(s): {', '.join(names)}")
        return {names[i]: layers[names[i]]}
    if layer not in layers:
        raise ValueError(f"no layer named {layer!r}; the model's layers are {', '.join(names)}")
    return {layer: layers[layer]}


def _ints(kind: str, values, lo: int, hi: int, what: str) -> list[int]:
    out = []
    for v in values:
        if isinstance(v, bool) or not float(v).is_integer():
            raise ValueError(f"{kind}: {what} must be whole numbers, got {v!r}")
        v = int(v)
        if not lo <= v <= hi:
            raise ValueError(f"{kind}: {what} {v} is out of range; it must be in [{lo}, {hi}]")
        out.append(v)
    return out


def _check_values(values) -> list:
    if values is None:
        return None
    vals = list(values)
    if not vals:
        raise ValueError("values must not be empty")
    for v in vals:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
            raise ValueError(f"values must be finite numbers, got {v!r}")
    return vals


def _plan(kind: str, values, targets: dict, L: int):
    """(values, {value: {layer name: transform}}, extra record fields) for ``kind``; validates values first."""
    lk = {name: lay.kernel_length(L) for name, lay in targets.items()}
    if kind == "truncate":
        vals = log_grid(L) if values is None else _ints(kind, values, 1, L, "K (the first lag zeroed)")
        return vals, {K: {n: truncate_fn(K) for n in targets} for K in vals}, {}
    if kind == "decay":
        vals = list(DEFAULT_DECAYS) if values is None else [float(v) for v in values]
        for t in vals:
            if t < 0:
                raise ValueError(f"decay: t must be >= 0 (extra decay (lag+1)^-t), got {t}")
        return vals, {t: {n: decay_fn(t) for n in targets} for t in vals}, {}
    if kind == "scales":
        bad = [(n, lay.kernel.kind) for n, lay in targets.items() if lay.kernel.kind != "sgconv"]
        if bad:
            raise ValueError(f"scales: layer {bad[0][0]} has a {bad[0][1]} kernel; dropping a scale needs SGConv "
                             "kernels (pick an SGConv layer with --layer, or another kind)")
        S = min(lay.kernel.n_scales for lay in targets.values())
        vals = list(range(S)) if values is None else _ints(kind, values, 0, S - 1, "the scale index")
        pieces = {n: scale_contributions(lay.kernel, lk[n]) for n, lay in targets.items()}
        first = next(iter(targets))
        lags = scale_lags(targets[first].kernel, lk[first])
        return vals, {i: {n: _subtract_fn(pieces[n][i]) for n in targets} for i in vals}, \
            {"scale_lags": [list(lags[i]) for i in vals]}
    if kind == "compress":
        from analysis.extract import ssm_modes
        from analysis.fit import dims_for

        modes = {n: ssm_modes(lay.kernel) for n, lay in targets.items()}
        if all(m is not None for m in modes.values()):
            most = min(n_modes(m[1]) for m in modes.values())
            vals = ([2 ** i for i in range(int(math.log2(most)) + 1)] + ([most] if most & (most - 1) else [])
                    if values is None else _ints(kind, values, 1, most, "N' (modes kept)"))
            repl = {n: ssm_compressed(*modes[n], lk[n], vals) for n in targets}
            return vals, {v: {n: _replace_fn(repl[n][v]) for n in targets} for v in vals}, \
                {"compress_method": "ssm_modes", "params_per_channel": [4 * v for v in vals]}
        Lmin = min(lk.values())
        vals = dims_for(Lmin) if values is None else _ints(kind, values, 1, Lmin, "d (weights per scale)")
        with torch.no_grad():
            ks = {n: lay.kernel(lk[n]).double().numpy() for n, lay in targets.items()}
        repl, params = {}, {}
        for d in vals:
            for n in targets:
                repl[(d, n)], params[d] = sgconv_compressed(ks[n], d)
        return vals, {d: {n: _replace_fn(repl[(d, n)]) for n in targets} for d in vals}, \
            {"compress_method": "sgconv_fit", "params_per_channel": [params[d] for d in vals]}
    raise ValueError(f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")


# ----------------------------------------------------------------------------------------------- the run
@torch.no_grad()
def intervene(ck, kind: str, values=None, layer=None, data=None, n: int | None = None, seed: int = 1,
              batch_size: int = 64, progress=None) -> dict:
    """Score ``ck``'s model with each intervention of ``kind`` at each of ``values`` (module doc) applied to every
    layer, or to ``layer`` (a name such as "layers.1" or an index), on held-out data (`held_out`).

    Returns {kind, values, metric (list, aligned with values), metric_name, baseline, baseline_ci (low, high),
    ci_low, ci_high (lists), n, data, layer, seconds, ...kind-specific lists (scale_lags, params_per_channel)}.
    progress: optional callable(done, total). Everything is checked before the first forward.
    """
    t0 = time.perf_counter()
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    values = _check_values(values)
    ck = runnable(ck, "its kernels cannot be intervened on")
    model = ck.model
    targets = _targets(model, layer)
    ho = held_out(ck, data, n, seed)
    vals, plan, extra = _plan(kind, values, targets, ho["L"])

    from sgconv_core.layers import kernel_override
    from sgconv_core.train import predict

    def run(transforms=None):
        if transforms is None:
            pred = predict(model, ho["x"], batch_size)
        else:
            with kernel_override(model, transforms):
                pred = predict(model, ho["x"], batch_size)
        return score(pred, ho["y"], ho["metric"], ho["nmse_start"], seed)

    total = len(vals) + 1
    base = run()
    if progress:
        progress(1, total)
    metric, lo, hi = [], [], []
    for j, v in enumerate(vals):
        m, a, b = run(plan[v])
        metric.append(m)
        lo.append(a)
        hi.append(b)
        if progress:
            progress(j + 2, total)
    return {"kind": kind, "values": vals, "metric": metric, "metric_name": ho["metric"], "baseline": base[0],
            "baseline_ci": [base[1], base[2]], "ci_low": lo, "ci_high": hi, "n": int(len(ho["y"])),
            "data": ho["source"], "layer": None if layer is None else next(iter(targets)), "L": ho["L"],
            **extra, "seconds": time.perf_counter() - t0}


# ----------------------------------------------------------------------------------------------- CLI
def _json_safe(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    return v


def _table(r: dict) -> str:
    head = {"truncate": "K", "decay": "t", "compress": "d" if r.get("compress_method") != "ssm_modes" else "N'",
            "scales": "scale"}[r["kind"]]
    name = r["metric_name"]
    lines = [f"{r['kind']} on {r['layer'] or 'every layer'}: {name} on {r['n']} examples ({r['data']}), "
             f"95 % interval; {r['seconds']:.1f} s",
             f"{'unchanged':>12}  {r['baseline']:.4f}  [{r['baseline_ci'][0]:.4f}, {r['baseline_ci'][1]:.4f}]",
             f"{head:>12}  {name}"]
    for i, v in enumerate(r["values"]):
        extra = ""
        if "scale_lags" in r:
            extra = f"  lags {r['scale_lags'][i][0]}-{r['scale_lags'][i][1]}"
        elif "params_per_channel" in r:
            extra = f"  {r['params_per_channel'][i]} params/channel"
        lines.append(f"{v:>12g}  {r['metric'][i]:.4f}  [{r['ci_low'][i]:.4f}, {r['ci_high'][i]:.4f}]{extra}")
    return "\n".join(printable(line) for line in lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.intervene", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="a runnable checkpoint (ours: its card's task; any: with --data)")
    p.add_argument("--kind", required=True, choices=KINDS)
    p.add_argument("--values", type=float, nargs="+", help="K (truncate), t (decay), d or N' (compress), "
                                                          "scale indices (scales); default: see the module doc")
    p.add_argument("--layer", help="intervene on this layer only (a name such as layers.1, or an index)")
    p.add_argument("--data", help="score on this .npz / .npy / .pt file of inputs and targets (sgconv_core.data)")
    p.add_argument("--n", type=int, help="examples task.sample(n, seed) instead of the task's test split")
    p.add_argument("--seed", type=int, default=1, help="seed of the examples and of the bootstrap (default 1)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--json", required=True, help="write the record here")
    a = p.parse_args(argv)
    try:
        if a.n is not None and a.n < 1:
            raise ValueError(f"--n must be positive, got {a.n}")
        if a.n is not None and a.data is not None:
            raise ValueError("--n picks task examples; it cannot be used with --data")
        if a.seed < 0:
            raise ValueError(f"--seed must be >= 0, got {a.seed}")
        if not os.path.isfile(a.checkpoint):
            raise ValueError(f"{a.checkpoint}: no such file")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = intervene(a.checkpoint, a.kind, a.values, a.layer, a.data, a.n, a.seed, a.batch_size)
        out = {k: _json_safe(r[k]) for k in ("kind", "values", "metric", "metric_name", "baseline", "ci_low",
                                            "ci_high", "seconds")}
        out.update({k: _json_safe(v) for k, v in r.items() if k not in out})
        tmp = a.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(out, f, indent=1, allow_nan=False)
        os.replace(tmp, a.json)
    except (ValueError, OSError) as e:  # CheckpointError and DataError are ValueErrors
        print(f"error: {printable(e)}", file=sys.stderr)
        return 2
    print(_table(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
