"""Which input positions does one output depend on? Integrated Gradients (captum) over a whole sequence.

    res = attribute(ck_or_model, x, target=None, position=None)   # an Attribution
    res.attr                          # (L,) attribution per input position (units of the attributed output)
    res.distance_profile              # DistanceProfile: mean |attr| against distance from the output position
    res.total, res.f_x - res.f_baseline, res.delta   # completeness: total = f_x - f_baseline + delta
    res.envelope_series(layer_profiles)              # beside each layer's kernel RMS envelope (decay_figure)

- What the model takes comes from `sgconv_core.data.input_spec` (one home for it); an example that does not fit
  (wrong width, NaN, a token outside the vocabulary) is a ValueError naming expected and given shapes, raised
  before anything runs.
- Continuous input (B, L, d_input): ``IntegratedGradients`` on the input; the baseline defaults to zeros.
- One layer (a ConvLayer, e.g. a single official layer: (B, H, L) -> (B, H, L)): the example is (H, L); the
  output is a sequence output whose channels are the layer's H channels (``target`` = output channel h at
  ``position``); attributions are summed over the H input channels.
- Token input (B, L) int64 into an ``nn.Embedding`` encoder: ``LayerIntegratedGradients`` on
  ``model.encoder`` (the path runs between the embeddings of the baseline tokens, default pad id 0, and
  of the input tokens); attributions are per embedding dimension and summed here.
- Attributions are summed over input channels / embedding dims, giving one number per position.
  Completeness: sum(attr) = f(x) - f(baseline) + delta, with captum's convergence ``delta``
  (captum defines delta = sum(attr) - (f(x) - f(baseline))).
- Which output: sequence outputs (pool 'none', (B, L, d_out)): output channel ``target`` (default 0) at
  ``position`` (default L-1). Class outputs (pool 'mean'/'last', (B, d_out)): the logit of class
  ``target`` (default the predicted class); such an output has no position of its own, so the distance
  profile is measured from ``position`` (default the last position, L-1, where a causal model has read
  the whole sequence).

Runs with gradients on (never under ``torch.inference_mode``), the model in eval mode (restored after).
Nothing writes an Attribution to a file, so it has no ``to_dict``; ``table`` gives the page's CSV columns.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

__all__ = ["Attribution", "DistanceProfile", "attribute", "distance_profile", "envelope_comparison",
           "get_model", "input_per_position"]


class DistanceProfile(NamedTuple):
    """Mean |attribution| against distance from the output position; unpacks as ``centers, values``."""

    centers: np.ndarray  # (n,) float64, taps: mean distance |j - position| of the positions in each bin
    values: np.ndarray  # (n,) float64, mean |attr| of those positions (units of the attributed output)


@dataclass(frozen=True)
class Attribution:
    """Integrated-Gradients attribution of one output of a model to every input position of one example;
    see `attribute`. Attributions and f values are in the units of the attributed output (a logit for class
    outputs, the output channel's value for sequence outputs); positions and distances in taps."""

    attr: np.ndarray  # (L,) float64: attribution per input position, summed over input channels / embedding dims
    delta: float  # captum's convergence delta = sum(attr) - (f_x - f_baseline); small means enough steps
    f_x: float  # the attributed output at the input
    f_baseline: float  # ... at the baseline
    output_kind: str  # 'sequence' (output channel `target` at `position`) | 'class' (logit of class `target`)
    position: int  # output position (sequence outputs) or reference point of the distance profile (class)
    target: int  # output channel (sequence outputs) or class (class outputs)
    distance_profile: DistanceProfile  # binned mean |attr| against distance |j - position|
    method: str  # 'IntegratedGradients' | 'LayerIntegratedGradients(encoder)'
    note: str  # which output was attributed, in words

    @property
    def L(self) -> int:
        """Sequence length (taps)."""
        return int(self.attr.size)

    @property
    def total(self) -> float:
        """Sum of the attributions (= f_x - f_baseline + delta)."""
        return float(np.sum(self.attr))

    def table(self, x=None) -> dict:
        """Columns of the attribution table: position (L,), attribution (L,) and, given the input x (L,) or
        (L, d), input (L,) summed over channels."""
        cols = {"position": np.arange(self.L), "attribution": self.attr}
        if x is not None:
            cols["input"] = input_per_position(x)
        return cols

    def envelope_series(self, layer_profiles: dict) -> list[dict]:
        """The distance profile beside each layer's kernel RMS envelope, each scaled to peak 1 (see
        `envelope_comparison`)."""
        return envelope_comparison(self.distance_profile, layer_profiles)


def input_per_position(x) -> np.ndarray:
    """An input (L,) or (L, d, ...) as one float64 number per position (summed over the other axes)."""
    xv = np.asarray(x, dtype=np.float64)
    return xv.reshape(xv.shape[0], -1).sum(-1) if xv.ndim > 1 else xv


def get_model(ck_or_model) -> nn.Module:
    """The runnable nn.Module of a Checkpoint (``.model``), or the module itself."""
    if isinstance(ck_or_model, nn.Module):
        return ck_or_model
    model = getattr(ck_or_model, "model", None)
    if model is None:
        path = getattr(ck_or_model, "path", "checkpoint")
        raise ValueError(f"{path}: holds kernels only (no runnable model), so attribution is not available")
    return model


def distance_profile(attr, position: int, n_bins: int = 32) -> DistanceProfile:
    """Mean |attr| against distance |j - position| (taps), over log-spaced distance bins.

    Distance 0 is its own point; distances 1..max go into ``n_bins`` geometric bins (empty ones dropped).
    Returns a DistanceProfile (centers (n,), values (n,)): centers = mean distance of the positions in each bin.
    """
    a = np.abs(np.asarray(attr, dtype=np.float64).reshape(-1))
    L = a.size
    position = int(position)
    if not 0 <= position < L:
        raise ValueError(f"position {position} is outside 0..{L - 1}")
    dist = np.abs(np.arange(L) - position).astype(np.float64)
    dmax = dist.max()
    centers, values = [0.0], [float(a[position])]
    if dmax >= 1:
        edges = np.geomspace(1.0, dmax + 1.0, int(n_bins) + 1)
        idx = np.clip(np.searchsorted(edges, dist, side="right") - 1, 0, int(n_bins) - 1)
        far = dist >= 1
        cnt = np.bincount(idx[far], minlength=n_bins)
        s_a = np.bincount(idx[far], weights=a[far], minlength=n_bins)
        s_d = np.bincount(idx[far], weights=dist[far], minlength=n_bins)
        keep = cnt > 0
        centers += list(s_d[keep] / cnt[keep])
        values += list(s_a[keep] / cnt[keep])
    return DistanceProfile(np.asarray(centers), np.asarray(values))


def envelope_comparison(profile, layer_profiles: dict) -> list[dict]:
    """Series for `analysis.figures.decay_figure`: the distance profile of an attribution (a DistanceProfile or
    (centers, values)) and
    each layer's kernel RMS profile ({layer name: `analysis.records.RMSProfile`}), each scaled to peak 1
    (layers whose profile is all zero are left out)."""
    centers, values = (np.asarray(a, dtype=np.float64) for a in profile)
    series = [{"label": "mean |attribution| by distance", "centers": centers,
               "values": values / max(float(np.nanmax(values)), 1e-300)}]
    for name, prof in layer_profiles.items():
        scaled = prof.scaled()
        if scaled is not None:
            series.append({"label": f"kernel RMS envelope {name}", "centers": np.asarray(prof.centers),
                           "values": scaled})
    return series


class _ChannelsLast(nn.Module):
    """One layer (B, H, L) -> (B, H, L) seen as a sequence model (B, L, H) -> (B, L, H)."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x.transpose(1, 2)).transpose(1, 2)


def _spec(model):
    """The model's `sgconv_core.data.InputSpec`, or None for a module it does not know (then the dtype decides)."""
    from sgconv_core.data import DataError, input_spec

    try:
        return input_spec(model)
    except DataError:
        return None


def _one_example(model, x, baseline) -> tuple[nn.Module, torch.Tensor, torch.Tensor, str]:
    """(the module to run, x as a batch of one, the baseline of the same shape, input kind 'tokens' |
    'continuous'). One layer is run channels-last: x (1, H, L) becomes (1, L, H)."""
    from sgconv_core.data import check_input

    spec = _spec(model)
    x = torch.as_tensor(x)
    if spec is None:
        kind = "tokens" if not torch.is_floating_point(x) else "continuous"
        if kind == "tokens":
            x = (x.unsqueeze(0) if x.dim() == 1 else x).long()
        else:
            x = (x.unsqueeze(0) if x.dim() == 2 else x).to(next(model.parameters()).dtype)
    else:
        kind = "tokens" if spec.kind == "tokens" else "continuous"
        one = 1 if spec.kind == "tokens" else 2  # dims of one example: (L,) tokens, (L, d) or (H, L) floats
        if x.dim() == one:
            x = x.unsqueeze(0)
        x = check_input(x, spec, "the example")
    if x.shape[0] != 1:
        raise ValueError(f"attribute() takes one example, got a batch of {x.shape[0]}")
    if spec is not None and spec.kind == "layer":
        model, x = _ChannelsLast(model), x.transpose(1, 2)
    base = torch.zeros_like(x) if baseline is None else torch.as_tensor(baseline, dtype=x.dtype).reshape(x.shape)
    return model, x, base, kind


def _which_output(out: torch.Tensor, L: int, target, position) -> tuple[bool, int, int, str]:
    """(sequence output?, position, target, note) of the output to attribute, from the model's output ``out``."""
    seq = out.dim() == 3
    pos = L - 1 if position is None else int(position)
    if seq:
        if not 0 <= pos < L:
            raise ValueError(f"position {pos} is outside 0..{L - 1}")
        tgt = 0 if target is None else int(target)
        note = f"output channel {tgt} at position {pos}"
    else:
        tgt = int(out[0].argmax()) if target is None else int(target)
        what = "the model's one output per sequence" if out.shape[-1] == 1 else f"class {tgt} logit"
        note = (f"{what} (a pooled output has no position; distances are measured from "
                f"position {pos}{' = L-1, the last position' if pos == L - 1 else ''})")
    n_out = out.shape[-1]
    if not 0 <= tgt < n_out:
        raise ValueError(f"target {tgt} is outside 0..{n_out - 1}")
    return seq, pos, tgt, note


def _integrated_gradients(model, x, base, kind: str, seq: bool, pos: int, tgt: int, n_steps: int,
                          internal_batch_size, method: str, progress):
    """captum's (Layer)IntegratedGradients of output (pos, tgt): (attr, delta, f(x), f(baseline), method label)."""
    from captum.attr import IntegratedGradients, LayerIntegratedGradients

    calls = {"n": 0}
    total = math.ceil(n_steps / (internal_batch_size or n_steps)) + 1  # + the forward pass for the delta

    def forward(inp):
        y = model(inp)
        if seq:
            y = y[:, pos, :]
        calls["n"] += 1
        if progress:
            progress(min(calls["n"], total), total)
        return y

    if kind == "tokens":
        if not isinstance(getattr(model, "encoder", None), nn.Embedding):
            raise ValueError("token input needs an nn.Embedding at model.encoder")
        ig, label = LayerIntegratedGradients(forward, model.encoder), "LayerIntegratedGradients(encoder)"
    else:
        ig, label = IntegratedGradients(forward), "IntegratedGradients"
    with torch.enable_grad():
        attr, delta = ig.attribute(x, baselines=base, target=tgt, n_steps=n_steps, method=method,
                                   internal_batch_size=internal_batch_size, return_convergence_delta=True)
    with torch.no_grad():
        f_x = forward(x)[0, tgt].item()
        f_b = forward(base)[0, tgt].item()
    return attr, delta, f_x, f_b, label


def attribute(ck_or_model, x, target: int | None = None, position: int | None = None, n_steps: int = 50,
              internal_batch_size: int | None = 10, baseline=None, progress=None, method: str = "gausslegendre",
              n_bins: int = 32) -> Attribution:
    """Integrated-Gradients attribution of one output to every input position of one example.

    Args:
        ck_or_model: a Checkpoint with a runnable model, or a SequenceModel-like module, or one layer.
        x: one example: continuous (L, d_input) / (1, L, d_input) floats, tokens (L,) / (1, L) ints, or for
            one layer (H, L) / (1, H, L) floats.
        target: output channel (sequence outputs; default 0) or class (class outputs; default predicted).
        position: output position for sequence outputs (default L-1); for class outputs only the reference
            point of the distance profile (default L-1).
        n_steps, internal_batch_size, method: passed to captum.
        baseline: same shape as x; default zeros (continuous) or pad id 0 everywhere (tokens).
        progress: optional callable(done, total) called after each forward batch.
        n_bins: geometric distance bins of the distance profile.
    Returns an Attribution (attr (L,), delta, f_x, f_baseline, output_kind, position, target,
        distance_profile, method, note).
    """
    model, x, base, kind = _one_example(get_model(ck_or_model), x, baseline)
    L = x.shape[1]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
        seq, pos, tgt, note = _which_output(out, L, target, position)
        attr, delta, f_x, f_b, label = _integrated_gradients(model, x, base, kind, seq, pos, tgt, n_steps,
                                                             internal_batch_size, method, progress)
    finally:
        model.train(was_training)

    a = attr.detach().double().reshape(1, L, -1).sum(-1)[0].cpu().numpy()
    return Attribution(attr=a, delta=float(delta.detach().reshape(-1)[0]), f_x=f_x, f_baseline=f_b,
                       output_kind="sequence" if seq else "class", position=pos, target=tgt,
                       distance_profile=distance_profile(a, pos, n_bins), method=label, note=note)
