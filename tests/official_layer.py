"""A state dict in the official SGConv repository's single-layer layout (gconv.py's keys: kernel_list.{i},
multiplier, kernel_norm, kernel_norm_initialized, D, output_linear.0), shared by the data and browser tests."""
from __future__ import annotations

import torch


def sgconv_layer_state(H: int = 8, n_scales: int = 4, kernel_dim: int = 8, seed: int = 0) -> dict:
    """Random weights of one official GConv layer with H features (C = 1, 'cat' mode); ``torch.save`` it to get
    the file a user of the official code would have."""
    g = torch.Generator().manual_seed(seed)
    sd = {"D": torch.randn(1, H, generator=g), "multiplier": torch.linspace(1.5, 2.5, H).view(1, H, 1),
          "kernel_norm": torch.rand(1, H, 1, generator=g) + 1, "kernel_norm_initialized": torch.tensor(True),
          "output_linear.0.weight": torch.randn(2 * H, H, generator=g) / H,
          "output_linear.0.bias": torch.randn(2 * H, generator=g)}
    for i in range(n_scales):
        sd[f"kernel_list.{i}"] = torch.randn(1, H, kernel_dim, generator=g)
    return sd
