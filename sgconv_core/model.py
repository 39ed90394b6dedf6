"""The residual sequence model: encoder -> N residual convolution blocks -> norm -> pooling -> decoder.

Input: continuous (B, L, d_input) floats, or tokens (B, L) int64 ids. Output: (B, d_output) with pooling
'mean' or 'last', or (B, L, d_output) with pooling 'none'.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .kernels import Kernel, build_kernel
from .layers import ConvLayer, FeatureNorm, ResidualBlock


@dataclass
class ModelConfig:
    """Everything needed to rebuild a SequenceModel (stored in our checkpoints as JSON)."""

    d_input: int
    d_output: int
    d_model: int = 64
    n_layers: int = 2
    kernel: str = "sgconv"            # 'sgconv' | 's4' | 's4d' | 'conv'
    kernel_args: dict = field(default_factory=dict)  # per-family settings (kernel_dim, d_state, mode, ...)
    l_max: int = 1024
    channels: int = 1
    bidirectional: bool = False
    input_kind: str = "continuous"   # 'continuous' | 'tokens'
    prenorm: bool = True
    norm: str = "layer"               # 'layer' | 'scalar' | 'batch' | 'none'
    activation: str = "gelu"
    output: str = "glu"               # output linear of each layer: 'glu' | 'linear'
    dropout: float = 0.0
    pool: str = "mean"                # 'mean' | 'last' | 'none'
    final_norm: bool = True
    clip_to_l_max: bool = False       # v4 FFTConv semantics: at most l_max taps for longer inputs
    inner_activation: str | None = None  # applied before `activation` (v4 training-pipeline S4Block: FFTConv's GELU)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config fields: {sorted(unknown)}")
        return cls(**d)


def kernel_config(cfg: ModelConfig) -> dict:
    """Constructor arguments of one layer's kernel for this model config."""
    args = {"d_model": cfg.d_model, "channels": cfg.channels, "bidirectional": cfg.bidirectional, "l_max": cfg.l_max}
    args.update(cfg.kernel_args)
    return args


_ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "id": nn.Identity, "silu": nn.SiLU}


def add_inner_activation(layer: ConvLayer, name: str) -> ConvLayer:
    """Make ``layer`` apply activation ``name`` before its own one: act(inner(conv + D u)), in place.

    The v4 training pipeline's S4Block (src/models/sequence/modules/s4block.py) does this: its inner FFTConv applies
    its default GELU, then the block applies its configured activation. -> the same layer."""
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown inner activation {name!r}; choose from {sorted(_ACTIVATIONS)}")
    layer.activation = nn.Sequential(_ACTIVATIONS[name](), layer.activation)
    return layer


class SequenceModel(nn.Module):
    """Encoder, ``layers.{i}`` residual blocks (each ``.layer.kernel`` a Kernel), final ``norm``, ``decoder``."""

    def __init__(self, cfg: ModelConfig, kernels: list[Kernel] | None = None):
        super().__init__()
        self.cfg = cfg
        H = cfg.d_model
        if cfg.input_kind == "tokens":
            self.encoder = nn.Embedding(cfg.d_input, H)
        elif cfg.input_kind == "continuous":
            self.encoder = nn.Linear(cfg.d_input, H)
        else:
            raise ValueError(f"unknown input_kind {cfg.input_kind!r}")
        if kernels is None:
            kernels = [build_kernel(cfg.kernel, kernel_config(cfg)) for _ in range(cfg.n_layers)]
        blocks = []
        for i, k in enumerate(kernels):
            k.name = f"layers.{i}"
            layer = ConvLayer(k, cfg.activation, cfg.output, cfg.dropout, cfg.clip_to_l_max)
            if cfg.inner_activation:
                add_inner_activation(layer, cfg.inner_activation)
            blocks.append(ResidualBlock(layer, cfg.norm, cfg.prenorm, cfg.dropout))
        self.layers = nn.ModuleList(blocks)
        self.norm = FeatureNorm(H, cfg.norm) if (cfg.prenorm and cfg.final_norm) else nn.Identity()
        if cfg.pool not in ("mean", "last", "none"):
            raise ValueError(f"unknown pool {cfg.pool!r}")
        self.decoder = nn.Linear(H, cfg.d_output)

    @property
    def kernels(self) -> list[Kernel]:
        """The kernel module of every layer, in order."""
        return [blk.layer.kernel for blk in self.layers]

    def kernel_parameters(self) -> list[nn.Parameter]:
        """Parameters that shape the kernels (trained at a small lr without weight decay); SSM ``C`` excluded."""
        from .families import family

        out = []
        for k in self.kernels:
            for name, p in k.named_parameters():
                if not (family(k.kind).ssm and name == "C"):
                    out.append(p)
        return out

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features (B, H, L) for an encoded input (B, L, H)."""
        h = x.transpose(1, 2)
        for blk in self.layers:
            h = blk(h)
        return self.norm(h)

    def _check_input(self, x: torch.Tensor) -> None:
        if self.cfg.input_kind == "tokens":
            if x.dtype not in (torch.int64, torch.int32):
                raise ValueError(f"token input must be integer ids, got {x.dtype}")
        elif x.dim() != 3 or x.shape[-1] != self.cfg.d_input:
            raise ValueError(f"expected input (B, L, {self.cfg.d_input}), got {tuple(x.shape)}")

    def backbone_features(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, L, d_input) or tokens (B, L) -> (B, L, H): encoder, residual blocks and final norm, before pooling
        and the decoder (the official v4 ``model(encoder(x))``)."""
        self._check_input(x)
        return self.features(self.encoder(x)).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, L, d_input) or tokens (B, L) -> (B, d_output) or (B, L, d_output)."""
        self._check_input(x)
        return self.head(self.features(self.encoder(x)))

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """Pool and decode backbone features (B, H, L)."""
        if self.cfg.pool == "mean":
            h = h.mean(-1)
        elif self.cfg.pool == "last":
            h = h[..., -1]
        else:
            h = h.transpose(1, 2)
        return self.decoder(h)
