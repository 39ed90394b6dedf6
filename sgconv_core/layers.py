"""Layers of the sequence model: the convolution layer around a kernel, norms, and the residual block.

Tensor layout inside the backbone is (B, H, L) ("transposed"), as in the official code.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from . import lengths
from .fftconv import conv_block, fft_conv, spans
from .kernels import Kernel


class ScalarLN(nn.Module):
    """LayerNorm over features with one scalar gain ``s`` and shift ``m`` (state-spaces' TransposedLN). x: (B, H, L)."""

    def __init__(self):
        super().__init__()
        self.m = nn.Parameter(torch.zeros(1))
        self.s = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s, m = torch.std_mean(x, dim=1, unbiased=False, keepdim=True)
        return (self.s / s) * (x - m + self.m)


class FeatureNorm(nn.Module):
    """Normalisation over the feature axis of (B, H, L): 'layer' (LayerNorm), 'scalar', 'batch' or 'none'."""

    def __init__(self, H: int, kind: str = "layer"):
        super().__init__()
        self.kind = kind
        if kind == "layer":
            self.norm = nn.LayerNorm(H)
        elif kind == "scalar":
            self.norm = ScalarLN()
        elif kind == "batch":
            self.norm = nn.BatchNorm1d(H)
        elif kind == "none":
            self.norm = nn.Identity()
        else:
            raise ValueError(f"unknown norm {kind!r}; choose from 'layer', 'scalar', 'batch', 'none'")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "layer":
            return self.norm(x.transpose(1, 2)).transpose(1, 2)
        return self.norm(x)


class ConvLayer(nn.Module):
    """kernel -> FFT conv + D skip -> GELU -> dropout -> output linear (GLU doubles it, then halves).

    x (B, H, L) -> (B, H, L). ``clip_to_l_max``: use at most l_max taps for longer inputs (v4 FFTConv).

    Two routes to the same numbers. With autograd (a parameter or x requires a gradient and grad mode is on), the
    whole kernel, the convolution (`fft_conv`, chunked over features above its budget) and each activation are
    tensors of the graph. Without autograd (``torch.no_grad()``, ``torch.inference_mode()``, or frozen weights)
    the layer goes a block of h features at a time: the block's kernel (``kernel.rows(L, i, j)`` where the
    family has it), its convolution (`conv_block`), skip term, activation and dropout are written into one
    (B, C, H, L) buffer, then the output linear (and GLU) runs a block of tokens at a time as W @ act + b in the
    (H, L) layout, writing its (B, H, L) output over that buffer when C = 1 (per-token operations: a block's
    inputs are read before its outputs are written). Its peak is the buffer plus a few block-sized temporaries (`sgconv_core.lengths.LAYER_CHUNK_BYTES`);
    the whole kernel never exists. Both routes check `sgconv_core.lengths.check_layer_size` before allocating.

    ``kernel_transform`` (None by default): a callable (C_k, H, Lk) -> (C_k, H, Lk) applied to the kernel right
    after it is built, in both routes, so the layer's normal forward runs with a changed kernel (the interventions
    of `analysis.intervene`; set it with `kernel_override`). With a transform set, the block-by-block route builds
    the whole kernel once, transforms it and slices it (a transform such as truncation needs whole rows).
    """

    #: False routes inference through the autograd-shaped path too (the benchmark's "before" rows, the tests)
    blockwise_inference = True
    #: None, or a callable (C_k, H, Lk) -> (C_k, H, Lk) applied to the kernel after it is built (both routes)
    kernel_transform = None

    def __init__(self, kernel: Kernel, activation: str = "gelu", output: str = "glu", dropout: float = 0.0,
                 clip_to_l_max: bool = False):
        super().__init__()
        self.kernel = kernel
        H, C = kernel.H, kernel.channels
        self.D = nn.Parameter(torch.randn(C, H))
        self.activation = {"gelu": nn.GELU(), "relu": nn.ReLU(), "id": nn.Identity(), "silu": nn.SiLU()}[activation]
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.output = output
        if output == "glu":
            self.output_linear = nn.Linear(C * H, 2 * H)
        elif output == "linear":
            self.output_linear = nn.Linear(C * H, H)
        elif output == "none":
            if C != 1:
                raise ValueError("output='none' needs channels=1")
            self.output_linear = None
        else:
            raise ValueError(f"unknown output {output!r}; choose from 'glu', 'linear', 'none'")
        self.clip_to_l_max = clip_to_l_max

    def kernel_length(self, L: int) -> int:
        """Taps used for an input of length L."""
        lm = self.kernel.l_max
        return min(L, lm) if (self.clip_to_l_max and lm) else L

    def needs_graph(self, x: torch.Tensor) -> bool:
        """Whether a call may build an autograd graph: grad mode is on. (Not "x or a parameter requires a gradient":
        under ``torch.func.functional_call`` / the batched ablation model, the tensors that carry the gradient are
        not this module's parameters, and the no-autograd route would silently cut them off.)"""
        return torch.is_grad_enabled()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != self.kernel.H:
            raise ValueError(f"ConvLayer expects x of shape (B, {self.kernel.H}, L); got {tuple(x.shape)}")
        B, H, L = x.shape
        graph = self.needs_graph(x)
        lengths.check_layer_size(B, self.kernel.channels, H, L, grad=graph)
        if graph or not self.blockwise_inference:
            return self._forward_whole(x)
        return self._forward_blocks(x)

    def _forward_whole(self, x: torch.Tensor) -> torch.Tensor:
        """The autograd route: (B, H, L) -> (B, H, L) through whole-length tensors."""
        B, H, L = x.shape
        k = self._transformed(self.kernel(self.kernel_length(L))).to(x.dtype)
        y = fft_conv(x, k, self.D.to(x.dtype), self.kernel.bidirectional)  # (B, C, H, L)
        y = self.dropout(self.activation(y.reshape(B, -1, L)))
        if self.output_linear is None:
            return y
        y = self.output_linear(y.transpose(1, 2))
        if self.output == "glu":
            y = F.glu(y, dim=-1)
        return y.transpose(1, 2)

    @torch.no_grad()
    def _forward_blocks(self, x: torch.Tensor) -> torch.Tensor:
        """The inference route: (B, H, L) -> (B, H, L), a block of features, then a block of tokens, at a time."""
        B, H, L = x.shape
        C, Lk, size = self.kernel.channels, self.kernel_length(L), x.element_size()
        budget = lengths.LAYER_CHUNK_BYTES
        h = max(1, min(H, budget // (B * C * ((Lk + L) // 2 + 1) * 2 * size)))  # (B, C, h, n/2+1) complex
        rows = self._kernel_rows(Lk)
        D = self.D.to(x.dtype)
        act = x.new_empty(B, C, H, L)
        for i, j in spans(H, h):
            y = conv_block(x[:, i:j], rows(i, j).to(x.dtype), D[:, i:j], self.kernel.bidirectional)
            act[:, :, i:j] = self.dropout(self.activation(y))
            del y
        act = act.view(B, C * H, L)
        if self.output_linear is None:
            return act
        out = act if C == 1 else x.new_empty(B, H, L)
        lin = self.output_linear
        t = max(1, budget // ((lin.out_features + H) * size))  # a block's (2H, t) product and (H, t) GLU
        W, bias = lin.weight.to(x.dtype), None if lin.bias is None else lin.bias.to(x.dtype).unsqueeze(1)
        for b in range(B):
            for s, e in spans(L, t):  # z = W @ act + bias: (2H, t) or (H, t), the layout of the (H, L) output
                z = W @ act[b, :, s:e] if bias is None else torch.addmm(bias, W, act[b, :, s:e])
                out[b, :, s:e] = F.glu(z, dim=0) if self.output == "glu" else z
        return out

    def _transformed(self, k: torch.Tensor) -> torch.Tensor:
        """``kernel_transform(k)`` (C_k, H, Lk) -> (C_k, H, Lk), its shape checked; k itself when none is set."""
        fn = self.kernel_transform
        if fn is None:
            return k
        out = fn(k)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(k.shape):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"kernel_transform of {self.kernel.name or 'a layer'} must return a tensor of shape "
                             f"{tuple(k.shape)}, got {got}")
        return out

    def _kernel_rows(self, Lk: int):
        """(i, j) -> the kernel's features i:j at Lk taps (C_k, j - i, Lk): ``kernel.rows`` where the family builds
        a block of features on its own (and no ``kernel_transform`` is set), else blocks of the whole kernel built
        (and transformed) once."""
        if self.kernel_transform is None and callable(getattr(self.kernel, "rows", None)):
            return lambda i, j: self.kernel.rows(Lk, i, j)
        whole = self._transformed(self.kernel(Lk))
        return lambda i, j: whole[:, i:j]


def conv_layers(model: nn.Module) -> dict[str, ConvLayer]:
    """The ConvLayers of ``model`` (itself included), keyed by their kernel's name (e.g. "layers.0"; the module
    path where the kernel has none), in model order."""
    out = {}
    for path, m in model.named_modules():
        if isinstance(m, ConvLayer):
            out[m.kernel.name or path or "layer"] = m
    return out


@contextlib.contextmanager
def kernel_override(model: nn.Module, fn, layer: str | None = None):
    """Run ``model``'s normal forward with changed kernels inside the block; the previous transforms are always
    restored (also on an error).

    fn: a callable (C_k, H, Lk) -> (C_k, H, Lk) set as `ConvLayer.kernel_transform` on every ConvLayer (or only
    the one whose kernel is named ``layer``), or a dict {layer name: callable} (one transform per layer; layers
    not in it are left as they are). Raises ValueError when the model has no ConvLayer or a named layer is not
    one of them (naming the ones it has).
    """
    layers = conv_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no convolution layer (ConvLayer) whose kernel can be changed")
    if isinstance(fn, dict):
        plan = dict(fn)
    elif layer is None:
        plan = {name: fn for name in layers}
    else:
        plan = {layer: fn}
    unknown = [n for n in plan if n not in layers]
    if unknown:
        raise ValueError(f"no layer named {unknown[0]!r}; the model's layers are {', '.join(layers)}")
    for name, f in plan.items():
        if f is not None and not callable(f):
            raise ValueError(f"the kernel transform for {name!r} is not callable ({type(f).__name__})")
    saved = {name: layers[name].__dict__.get("kernel_transform", None) for name in plan}
    try:
        for name, f in plan.items():
            object.__setattr__(layers[name], "kernel_transform", f)  # never registered as a submodule
        yield model
    finally:
        for name, f in saved.items():
            if f is None:
                layers[name].__dict__.pop("kernel_transform", None)
            else:
                object.__setattr__(layers[name], "kernel_transform", f)


class ResidualBlock(nn.Module):
    """x + dropout(layer(norm(x))) (prenorm) or norm(x + dropout(layer(x))) (postnorm). x: (B, H, L)."""

    def __init__(self, layer: ConvLayer, norm: str = "layer", prenorm: bool = True, dropout: float = 0.0):
        super().__init__()
        self.layer = layer
        self.norm = FeatureNorm(layer.kernel.H, norm)
        self.prenorm = prenorm
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.prenorm:
            return x + self.dropout(self.layer(self.norm(x)))
        return self.norm(x + self.dropout(self.layer(x)))
