"""Section 2: one SGConv layer (``ConvLayer`` around ``SGConvKernel``: d_model 256, kernel_dim 32, bidirectional,
l_max = 1M, GLU output), batch 1, forward (autograd on, as in training) and forward+backward.

On a GPU at L = 1M, next to the official code's reference (~8 GB allocated / ~22 GB reserved for the forward
alone, `OFFICIAL_LAYER_REF`); also at 64k and 256k without --quick. GPU only: on a CPU one row says it was
skipped, unless ``Settings.layer_on_cpu`` (``--layer-lengths``, e.g. 262k,1M with ``--layer-fwd-only``; the tests
run it tiny). ``fft_chunk_bytes`` sets fft_conv's chunk budget for these rows (0: never chunk, the old peak), so
one run can compare chunked and unchunked; each row records it as ``fft_chunk_mb``.
"""
from __future__ import annotations

import contextlib
import time

import torch

from sgconv_core import fftconv
from sgconv_core.kernels import SGConvKernel
from sgconv_core.layers import ConvLayer

from .memory import estimate_layer_bytes
from .spec import GB, MB, PASSES, Settings, fmt_L, fmt_num
from .timing import run_cell, skipped, zero_grads


def layer_rows(s: Settings, device: str, mem, say) -> list[dict]:
    """The bidirectional SGConv layer, forward and forward+backward at each of ``layer_lengths`` (1M; 64k, 256k, 1M
    without --quick) on a GPU. On a CPU one row saying it was skipped (unless ``layer_on_cpu``, for the tests)."""
    if device != "cuda" and not s.layer_on_cpu:
        note = f"skipped: the SGConv layer benchmark (L={fmt_L(max(s.layer_lengths))}) runs on a GPU only"
        say(note)
        return [{"section": "layer", "L": max(s.layer_lengths), "device": device, "H": s.H, "l_max": s.layer_l_max,
                 "fwd": skipped(note), "fwd+bwd": skipped(note), "note": note}]
    torch.manual_seed(0)
    t0 = time.perf_counter()
    kern = SGConvKernel(s.H, s.layer_l_max, channels=s.channels, bidirectional=True, kernel_dim=s.kernel_dim)
    layer = ConvLayer(kern).to(device)
    build_ms = (time.perf_counter() - t0) * 1e3
    n_params = sum(p.numel() for p in layer.parameters())
    rows = []
    budget = _chunk_budget(s)
    for L in s.layer_lengths:
        row = {"section": "layer", "L": L, "device": device, "H": s.H, "l_max": s.layer_l_max,
               "n_scales": kern.n_scales, "n_params": n_params, "input_mb": s.H * L * 4 / MB, "build_ms": build_ms,
               "fft_chunk_mb": None if budget is None else budget / MB}
        with _fft_budget(budget):
            row.update(_layer_cells(layer, L, s, device, mem, say))
        rows.append(row)
    return rows


def _chunk_budget(s: Settings) -> int | None:
    """fft_conv's chunk budget in bytes for the layer rows (0 asks for none: one chunk however large)."""
    if s.fft_chunk_bytes is None:
        return fftconv.FFT_CHUNK_BYTES
    return int(s.fft_chunk_bytes) or None


@contextlib.contextmanager
def _fft_budget(budget: int | None):
    """fft_conv's module budget set to ``budget`` (None: never chunk) for the duration, then restored."""
    old = fftconv.FFT_CHUNK_BYTES
    fftconv.FFT_CHUNK_BYTES = budget if budget is not None else 1 << 62
    try:
        yield
    finally:
        fftconv.FFT_CHUNK_BYTES = old


def _estimate(mode: str, L: int, s: Settings) -> float:
    """Peak extra bytes of one layer call: the measured unchunked estimate, less the spectra chunking avoids, but
    not below what the rest of the layer holds (kernel, activations, autograd: ~30 B per H*L forward, measured
    on a CPU at 256k and 1M, 1.97 / 7.2 GB; ~40 B for forward+backward, a guess not yet measured)."""
    est = estimate_layer_bytes(mode, L, s.H)
    spectrum = s.H * (L + 1) * 8.0  # one (1, 1, H, n/2+1) complex64 spectrum at n = 2L
    budget = fftconv.FFT_CHUNK_BYTES
    if spectrum > budget:  # chunked: ~4 spectrum-sized buffers (u_f, k_f, product, irfft out) become 4 budgets
        est -= 4 * (spectrum - budget)
    return max(est, (30.0 if mode == "fwd" else 40.0) * s.H * L)


def _layer_cells(layer, L: int, s: Settings, device: str, mem, say) -> dict:
    """{'fwd': cell, 'fwd+bwd': cell} at length L (both skipped, with a 'note', when over the memory limit)."""
    est = {m: _estimate(m, L, s) for m in PASSES}
    limit = mem.limit_bytes(s.mem_budget_gb)
    todo = [m for m in PASSES if m in s.layer_passes]
    if not todo or max(est[m] for m in todo) > limit:
        note = (f"skipped: est. {max(est[m] for m in todo) / GB:.1f} GB > {limit / GB:.1f} GB" if todo
                else "skipped: no layer pass asked for")
        return {"fwd": skipped(note, est["fwd"]), "fwd+bwd": skipped(note, est["fwd+bwd"]), "note": note}
    x = torch.randn(1, s.H, L, device=device)  # freed when this returns
    say(f"layer L={fmt_L(L)}: running ...")
    cells = {}
    for m, fn in zip(PASSES, _layer_fns(layer, x)):
        if m not in todo:
            cells[m] = skipped("skipped: forward only (--layer-fwd-only)", est[m])
            continue
        cells[m] = run_cell(fn, device, mem, s)
        cells[m]["est_mb"] = est[m] / MB
    say(f"layer L={fmt_L(L)}: fwd {fmt_num(cells['fwd'].get('ms'))} ms, "
        f"fwd+bwd {fmt_num(cells['fwd+bwd'].get('ms'))} ms")
    return cells


def _layer_fns(layer, x: torch.Tensor) -> tuple:
    """The two calls to time, in `PASSES` order: forward with autograd on, as in training (the graph is freed with
    the output), and forward+backward (gradients dropped after each call)."""

    def fwd():
        return layer(x)

    def fwd_bwd():
        layer(x).sum().backward()
        zero_grads(layer)

    return fwd, fwd_bwd
