"""Which torch device to run on, and its name for people (model cards, progress lines, benchmark tables).

    resolve_device("auto")    # cuda when torch sees one, else cpu
    resolve_device("cuda:1")  # ValueError when there is no second GPU
    device_name(resolve_device("cpu"))  # 'AMD EPYC 7B13 (2 cores)'
"""
from __future__ import annotations

import os
import platform

import torch


def resolve_device(name: str | torch.device | None = "auto", *, allow_index: bool = True) -> torch.device:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' -> a torch.device; ValueError for anything this machine cannot run.

    None or '' means 'auto'; case and surrounding spaces are ignored. allow_index=False refuses 'cuda:N' (for callers
    that run on the current CUDA device only).
    """
    text = str(name or "auto").strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    kind, _, index = text.partition(":")
    if kind != "cuda" or (index and not index.isdigit()) or (index and not allow_index):
        allowed = "'auto', 'cpu', 'cuda' or 'cuda:N'" if allow_index else "'auto', 'cpu' or 'cuda'"
        raise ValueError(f"unknown device {name!r}; use {allowed}")
    if not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but torch sees no CUDA device")
    if index and int(index) >= torch.cuda.device_count():
        raise ValueError(f"device {name!r} asked for, but torch sees {torch.cuda.device_count()} CUDA device(s)")
    return torch.device(text)


def device_name(device: torch.device) -> str:
    """'NVIDIA H100 80GB HBM3' or the CPU model, e.g. 'AMD EPYC 7B13 (2 cores)'."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model() or 'cpu'} ({os.cpu_count()} cores)"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or what `platform` knows; '' when nothing does)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
