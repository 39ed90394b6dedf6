"""Numerical causality check of a long-convolution model: does y[t] depend on any later input x[t+1:]?

For a causal model dy[t]/dx[s] = 0 for every s > t (safari #47). We run a float64 deep copy of the model
(so FFT round-off sits at ~1e-16 instead of ~1e-7), take the gradient of the backbone features at
position t with respect to the encoded input, and compare the largest future gradient with the largest
past one. Bidirectional models depend on the future by design: they report ok=False, which is expected.

The backbone (``model.features``: residual convolution blocks and norms, all per-position except the
convolutions) is what is checked: a pooled head (mean over positions) mixes every position on purpose.
For a module without ``features``/``encoder`` the model output itself must be (B, L, d_out).
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

__all__ = ["causality_check", "REL_TOL"]

#: Future / past gradient ratio below which a model counts as causal (float64 round-off is ~1e-16).
REL_TOL = 1e-10


def _model(m) -> nn.Module:
    if isinstance(m, nn.Module):
        return m
    model = getattr(m, "model", None)
    if model is None:
        raise ValueError(f"{getattr(m, 'path', 'checkpoint')}: holds kernels only (no runnable model) to check")
    return model


def causality_check(model, L: int, d_input: int | None = None, position=None, tokens: bool | None = None,
                    seed: int = 0, rel_tol: float = REL_TOL) -> dict:
    """Largest |d y[t] / d x[s]| over s > t, for one or more output positions t.

    Args:
        model: a SequenceModel (or a Checkpoint with one); any module mapping (B, L, d) -> (B, L, d_out)
            also works (then the output itself is checked).
        L: sequence length (taps) of the random probe input.
        d_input: input channels of a continuous-input model (default: ``model.cfg.d_input``).
        position: t, an int or a list of ints (default L // 2).
        tokens: True for token input (default: from ``model.cfg.input_kind``); the gradient is then taken
            with respect to the embeddings, which is where a token model's input becomes continuous.
        seed: probe input seed. rel_tol: ok when max_future_grad <= rel_tol * max_past_grad.
    The probe is a random projection of the features at t. ok needs a non-zero past gradient.
    Returns dict(max_future_grad, max_past_grad, ratio (future / past), ok (bool), positions (list),
        per_position (list of dicts), bidirectional (bool or None), expected_ok (bool or None), note).
    """
    model = _model(model)
    L = int(L)
    positions = _positions(position, L)
    cfg = getattr(model, "cfg", None)
    if tokens is None:
        tokens = getattr(cfg, "input_kind", "continuous") == "tokens"
    m64 = copy.deepcopy(model).double().eval()
    for p in m64.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(int(seed))
    e, out = _probe(m64, L, tokens, d_input if d_input is not None else getattr(cfg, "d_input", None), gen)
    # a random projection of the output features: a plain sum can vanish identically (a LayerNorm's outputs
    # sum to its bias whatever the input)
    v = torch.randn(out.shape[-1], generator=gen, dtype=out.dtype)
    per = []
    for i, p in enumerate(positions):
        (g,) = torch.autograd.grad((out[0, p] * v).sum(), e, retain_graph=i < len(positions) - 1)
        g = g[0].abs().amax(-1)  # (L,) largest gradient over channels per input position
        fut = float(g[p + 1:].max()) if p + 1 < L else 0.0
        per.append({"position": p, "max_future_grad": fut, "max_past_grad": float(g[: p + 1].max())})
    fut = max(r["max_future_grad"] for r in per)
    past = max(r["max_past_grad"] for r in per)
    ratio = fut / past if past > 0 else (0.0 if fut == 0 else float("inf"))
    ok = past > 0 and ratio <= rel_tol
    kernels = getattr(model, "kernels", None)
    bidir = any(getattr(k, "bidirectional", False) for k in kernels) if kernels else None
    return {"max_future_grad": fut, "max_past_grad": past, "ratio": ratio, "ok": bool(ok), "positions": positions,
            "per_position": per, "bidirectional": bidir, "expected_ok": None if bidir is None else not bidir,
            "note": _note(fut, past, ratio, ok, bidir)}


def _positions(position, L: int) -> list[int]:
    if L < 2:
        raise ValueError(f"L must be >= 2 to have a future, got {L}")
    positions = [L // 2] if position is None else ([int(position)] if np.ndim(position) == 0 else
                                                   [int(p) for p in position])
    for p in positions:
        if not 0 <= p < L:
            raise ValueError(f"position {p} is outside 0..{L - 1}")
    return positions


def _probe(m64: nn.Module, L: int, tokens: bool, d_input, gen) -> tuple[torch.Tensor, torch.Tensor]:
    """(the continuous input e the gradient is taken against, requiring grad; the output features (1, L, H))
    of a random probe through a float64 model: its backbone where it has one, else its output."""
    if hasattr(m64, "features") and hasattr(m64, "encoder"):
        if tokens:
            ids = torch.randint(1, max(2, m64.encoder.num_embeddings), (1, L), generator=gen)
            with torch.no_grad():
                e = m64.encoder(ids)
        else:
            if d_input is None:
                raise ValueError("d_input is needed for a continuous-input model without a cfg")
            xin = torch.randn(1, L, int(d_input), generator=gen, dtype=torch.float64)
            with torch.no_grad():
                e = m64.encoder(xin)
        e = e.detach().requires_grad_(True)
        return e, m64.features(e).transpose(1, 2)  # (1, L, H)
    d = int(d_input) if d_input is not None else 1
    e = torch.randn(1, L, d, generator=gen, dtype=torch.float64).requires_grad_(True)
    out = m64(e)
    if out.dim() != 3 or out.shape[1] != L:
        raise ValueError(f"the model output must be (B, L, d_out) to check causality, got {tuple(out.shape)}")
    return e, out


def _note(fut: float, past: float, ratio: float, ok: bool, bidir) -> str:
    if past == 0 and fut == 0:
        return "inconclusive: no gradient reached the output (a dead model?)"
    if ok:
        return f"causal: the largest future gradient is {ratio:.1e} of the largest past one (float64)"
    if bidir:
        return "not causal, as expected: the model is bidirectional (it reads later inputs by design)"
    return f"not causal: y[t] depends on later inputs (future/past gradient ratio {ratio:.1e})"
