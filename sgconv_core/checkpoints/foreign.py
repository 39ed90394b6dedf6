"""Checkpoints written by the official SGConv and state-spaces/s4 code: kept as the import path of `from_object`.

The loader lives in `sgconv_core.checkpoints.layouts` (one module per checkpoint layout); the facts about the
official code bases it relies on are in docs/official-layouts.md.
"""
from __future__ import annotations

from .layouts import KNOWN_SETTINGS, from_object

__all__ = ["from_object", "KNOWN_SETTINGS"]
