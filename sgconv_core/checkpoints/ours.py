"""Our checkpoint format: one .safetensors file holding the SequenceModel state dict, with the model
config and the model card as JSON in its metadata (keys "format", "version", "config", "card")."""
from __future__ import annotations

import json
import os

import torch
from safetensors.torch import save_file

from ..cards import FORMAT
from ..errors import CheckpointError
from ..model import ModelConfig, SequenceModel
from .checkpoint import Checkpoint, check_finite

VERSION = "1"


def save(model: SequenceModel, path: str | os.PathLike, card: dict | None = None) -> None:
    """Write `model` (a SequenceModel) and its `card` to `path` (.safetensors); bitwise round trip with `load`."""
    if not isinstance(model, SequenceModel):
        raise TypeError(f"save() takes a SequenceModel, got {type(model).__name__}")
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "version": VERSION, "config": json.dumps(model.cfg.to_dict()),
            "card": json.dumps(card or {}, default=str)}
    tmp = f"{os.fspath(path)}.tmp"
    save_file(tensors, tmp, metadata=meta)
    os.replace(tmp, path)  # never leave a half-written checkpoint behind


def from_safetensors(tensors: dict[str, torch.Tensor], meta: dict[str, str], source: str) -> Checkpoint:
    """Rebuild a Checkpoint from our format's tensors and metadata."""
    try:
        cfg = ModelConfig.from_dict(json.loads(meta["config"]))
        card = json.loads(meta.get("card") or "{}")
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{source}: the kernelscope metadata is unreadable ({e})") from e
    check_finite(tensors, source)
    try:
        with torch.random.fork_rng():
            model = SequenceModel(cfg)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{source}: cannot build the model its config describes ({e})") from e
    load_state(model, tensors, source)
    model.eval()
    return Checkpoint(path=source, kernels=model.kernels, model=model, config=cfg.to_dict(), card=card, layout=FORMAT)


def load_state(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Strictly load `tensors` into `model`, naming the first missing, unexpected or mis-shaped key."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in tensors]
    extra = [k for k in tensors if k not in expected]
    if missing:
        raise CheckpointError(f"{source}: key '{missing[0]}' is missing ({len(missing)} missing in all)")
    if extra:
        raise CheckpointError(f"{source}: unexpected key '{extra[0]}' ({len(extra)} unexpected in all)")
    for k, v in expected.items():
        if tuple(tensors[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{source}: key '{k}' has shape {tuple(tensors[k].shape)} but {tuple(v.shape)} was expected")
    model.load_state_dict({k: tensors[k] for k in expected}, strict=True)
