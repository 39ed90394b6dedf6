"""Reading our checkpoints' metadata and model card from the safetensors header alone (no tensors, no torch),
and re-scoring a card in place.

    read_card("pretrained/digits-s4d.safetensors")   # -> dict (task, family, metric, test_value, ...)
    python -m sgconv_core.cards --rescore pretrained/digits-s4.safetensors   # add test_n / test_ci to its card

Our format (`sgconv_core.checkpoints.ours`) stores JSON strings under the metadata keys "format" (= `FORMAT`),
"version", "config" and "card". The file is opened once (`sgconv_core.regular_file.open_regular`: a regular file,
checked on the open descriptor) and its header is read from that descriptor: an 8-byte little-endian length, then
that many bytes of JSON whose ``__metadata__`` is the str -> str metadata (the safetensors format).
"""
from __future__ import annotations

import json
import os
import struct

from .errors import CheckpointError
from .regular_file import descriptor_path, open_regular

FORMAT = "kernelscope"
#: The largest header read (the safetensors library's own limit: 100 MB).
HEADER_MAX_BYTES = 100_000_000


def read_header(f, size: int, source: str) -> dict:
    """The JSON header of a safetensors file, read from the start of the open binary file ``f`` of ``size``
    bytes. CheckpointError naming ``source`` when it is not a safetensors header (too short, a length beyond the
    file or over `HEADER_MAX_BYTES`, not a JSON object, metadata not str -> str)."""
    head = f.read(8)
    if len(head) < 8:
        raise CheckpointError(f"{source}: cannot read a safetensors header (the file is {size} bytes)")
    (n,) = struct.unpack("<Q", head)
    if n > min(HEADER_MAX_BYTES, size - 8):
        raise CheckpointError(f"{source}: cannot read a safetensors header (it declares {n:,} bytes; the file has "
                              f"{max(size - 8, 0):,} after the length, the limit is {HEADER_MAX_BYTES:,})")
    raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8")) if len(raw) == n else None
    except (UnicodeDecodeError, ValueError, RecursionError):
        header = None
    if not isinstance(header, dict):
        raise CheckpointError(f"{source}: cannot read a safetensors header (not a JSON object)")
    meta = header.get("__metadata__") or {}
    if not (isinstance(meta, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items())):
        raise CheckpointError(f"{source}: cannot read a safetensors header (its metadata is not str -> str)")
    return header


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata of a .safetensors file, from its header alone (no tensors are read).

    Raises CheckpointError naming the file when it cannot be read or is not a safetensors file.
    """
    source = os.fspath(path)
    f, size = open_regular(source)
    with f:
        fd_path = descriptor_path(f)
        if fd_path is None:  # no path for the open descriptor on this platform: parse the header ourselves
            try:
                return dict(read_header(f, size, source).get("__metadata__") or {})
            except OSError as e:
                raise CheckpointError(f"{source}: cannot be read ({e.strerror or e})") from None
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(fd_path, framework="np") as st:
                return dict(st.metadata() or {})
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{source}: cannot read a safetensors header ({e})") from None


def read_card(path: str | os.PathLike) -> dict:
    """The model card of one of our checkpoints (header only). CheckpointError when the file is not ours."""
    meta = read_metadata(path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{os.fspath(path)}: not a kernelscope checkpoint")
    try:
        card = json.loads(meta.get("card") or "{}")
    except ValueError as e:
        raise CheckpointError(f"{os.fspath(path)}: its model card is not JSON ({e})") from None
    if not isinstance(card, dict):
        raise CheckpointError(f"{os.fspath(path)}: its model card is not a JSON object")
    return card




# ----------------------------------------------------------------------------------------------------------
# re-scoring a card in place


#: How far a re-scored test value may be from the card's before `rescore` refuses to write.
RESCORE_TOLERANCE = 1e-6


def rewrite_metadata(path: str | os.PathLike, metadata: dict[str, str]) -> None:
    """Replace the string metadata of a .safetensors file, keeping every tensor byte as it is.

    Only the JSON header changes (padded with spaces to a multiple of 8 bytes, as safetensors writes it); the
    tensor entries' offsets are relative to the end of the header, so the data section is copied unchanged. The
    new file replaces the old one atomically (a temporary file next to it, then os.replace)."""
    from .checkpoints.ours import _write_atomic

    source = os.fspath(path)
    if not (isinstance(metadata, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())):
        raise ValueError("metadata must map str to str")
    f, size = open_regular(source)
    with f:
        header = read_header(f, size, source)
        data = f.read()
    header["__metadata__"] = dict(metadata)
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as out:
            out.write(struct.pack("<Q", len(raw)))
            out.write(raw)
            out.write(data)

    _write_atomic(source, write)


def rescore(path: str | os.PathLike, batch_size: int = 128, tolerance: float = RESCORE_TOLERANCE) -> dict:
    """Re-score one of our checkpoints on the test split of its task (rebuilt from its card) and write the test
    split's n and 95 % interval (and, for ListOps, the three baselines) into its card; returns the new card.

    Adds ``test_n``, ``test_ci``, ``test_interval`` (and ``test_baselines``) as `sgconv_core.train.make_card` writes
    them for new runs (`sgconv_core.evaluate.test_summary`), and ``rescore``: ``{"value", "device", "date",
    "tolerance"}`` (the value measured here; the interval is this machine's). Refuses (CheckpointError) unless the
    re-scored test value equals the card's ``test_value`` to ``tolerance`` (default `RESCORE_TOLERANCE`, absolute):
    the card must describe these weights. A looser ``tolerance`` is for a model whose outputs differ in the last
    float32 bits on another CPU (say so in the report). Only the metadata is rewritten (`rewrite_metadata`); the
    weights stay byte-identical."""
    from datetime import datetime, timezone

    import torch

    from .device import device_name
    from .evaluate import runnable, task_of, test_summary

    if not (isinstance(tolerance, (int, float)) and 0 <= tolerance < 1):
        raise ValueError(f"tolerance must be in [0, 1), got {tolerance!r}")

    source = os.fspath(path)
    card = read_card(source)
    if not card.get("task") or not isinstance(card.get("test_value"), (int, float)):
        raise CheckpointError(f"{source}: the model card names no task or test value, so it cannot be re-scored")
    ck = runnable(source, "it cannot be re-scored")
    task = task_of(ck)
    ck.model.eval()
    with torch.no_grad():
        summary = test_summary(ck.model, task, batch_size)
    got, want = summary.pop("test_value"), float(card["test_value"])
    if not abs(got - want) <= tolerance:
        raise CheckpointError(f"{source}: re-scored test value {got:.8g} differs from the card's {want:.8g} by more "
                              f"than {tolerance:g}; the card was not changed")
    new = {**card, **summary, "rescore": {"value": got, "device": device_name(torch.device("cpu")),
                                          "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                                          "tolerance": tolerance}}
    meta = read_metadata(source)
    meta["card"] = json.dumps(new, default=str)
    rewrite_metadata(source, meta)
    return new


def main(argv: list[str] | None = None) -> int:
    """``python -m sgconv_core.cards FILE`` prints a card as JSON; ``--rescore FILE ...`` re-scores cards in place."""
    import argparse
    import sys

    from .errors import printable

    p = argparse.ArgumentParser(prog="python -m sgconv_core.cards",
                                description="Print a checkpoint's model card, or re-score cards in place (--rescore: "
                                            "adds the test split's n and 95 % interval; weights untouched).")
    p.add_argument("files", nargs="+", help="our .safetensors checkpoints")
    p.add_argument("--rescore", action="store_true", help="re-score on the test split and rewrite only the metadata")
    p.add_argument("--tolerance", type=float, default=RESCORE_TOLERANCE,
                   help="largest accepted |re-scored - card| test value (absolute); looser only for float32 "
                        "differences between CPUs")
    a = p.parse_args(argv)
    if not 0 <= a.tolerance < 1:
        p.error(f"--tolerance must be in [0, 1), got {a.tolerance}")
    rc = 0
    for path in a.files:
        try:
            if not a.rescore:
                print(json.dumps(read_card(path), indent=1))
                continue
            c = rescore(path, tolerance=a.tolerance)
        except (CheckpointError, ValueError, OSError) as e:
            print(printable(f"error: {e}"), file=sys.stderr)
            rc = 2
            continue
        lo, hi = c["test_ci"]
        extra = "".join(f"; {k} {b['value']:.4f} [{b['ci'][0]:.4f}, {b['ci'][1]:.4f}]"
                        for k, b in (c.get("test_baselines") or {}).items())
        print(printable(f"{path}: test {c['metric']} {c['test_value']:.4g}, 95% CI [{lo:.4g}, {hi:.4g}] "
                        f"({c['test_interval']}), n = {c['test_n']:,}{extra}: card rewritten, weights unchanged"))
    return rc


__all__ = ["FORMAT", "HEADER_MAX_BYTES", "RESCORE_TOLERANCE", "read_header", "read_metadata", "read_card",
           "rewrite_metadata", "rescore"]

if __name__ == "__main__":
    raise SystemExit(main())
