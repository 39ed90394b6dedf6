"""Our checkpoint format: one .safetensors file holding the SequenceModel state dict, with the model
config and the model card as JSON in its metadata (keys "format", "version", "config", "card")."""
from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile

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
    _write_atomic(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    """The process's umask (read once: os.umask can only be read by setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_atomic(path: str | os.PathLike, write) -> None:
    """Call ``write(tmp)`` on a uniquely named temporary file next to ``path``, then os.replace it onto ``path``.

    Never leaves a half-written checkpoint behind; two processes saving to one path never share a temporary
    file (the last replace wins, each one whole); the temporary file is removed if anything fails."""
    path = os.fspath(path)
    folder, base = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{base}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file 0600; give it the mode open() would have
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


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
