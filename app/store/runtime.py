"""Where models run: the device, torch's thread count, and the warm-up thread that imports the heavy modules.

torch is imported inside each function, never at module import. No cache: `warm_up` runs once per process.
"""
from __future__ import annotations

import threading

_warmed = False


def device_label() -> str:
    """The accelerator in use: the CUDA device name, or 'CPU'."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.cuda.current_device())
    return "CPU"


def compute_device():
    """torch.device used to run models (attribution): CUDA when there is one."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _import_heavy() -> None:
    try:
        import analysis.decay  # noqa: F401  (scipy.stats)
        import analysis.extract  # noqa: F401  (torch)
        import analysis.figures  # noqa: F401  (plotly)
        import analysis.frequency  # noqa: F401
        import analysis.measure  # noqa: F401
        import sgconv_core  # noqa: F401
    except Exception:  # noqa: BLE001 - a warm-up only; the pages import (and report) for themselves
        pass


def warm_up() -> None:
    """Import the heavy modules the analysis pages need (torch, scipy.stats, plotly) in a background thread,
    once per process, so the first visit to a plotting page does not wait for them."""
    global _warmed
    if _warmed:
        return
    _warmed = True
    threading.Thread(target=_import_heavy, name="kernelscope-warm-up", daemon=True).start()
