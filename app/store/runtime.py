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


#: What every model page needs before its first plot (torch, the loader, the kernel extraction), imported first;
#: then, once the first page has run (`first_page_done`), what the other pages add (scipy through
#: analysis.frequency, plotly figures, the report's measures).
FIRST = ("torch", "sgconv_core", "sgconv_core.checkpoints", "analysis.extract")
LATER = ("analysis.decay", "analysis.figures", "analysis.frequency", "analysis.measure")
_first_page = threading.Event()


def _import_all(first=FIRST, later=LATER, wait_s: float = 60.0) -> None:
    import importlib

    for name in first:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a warm-up only; the pages import (and report) for themselves
            pass
    # the later modules would compete with the first page's own work for the one interpreter lock
    _first_page.wait(wait_s)
    for name in later:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - as above
            pass


def warm_up() -> None:
    """Import the heavy modules in a background thread, once per process: first what every model page needs
    (torch, sgconv_core, analysis.extract), then, after the first page ran (`first_page_done`), the rest (scipy,
    the report). app/main.py calls it first thing, so torch loads while the app's own modules import."""
    global _warmed
    if _warmed:
        return
    _warmed = True
    threading.Thread(target=_import_all, name="kernelscope-warm-up", daemon=True).start()


def first_page_done() -> None:
    """A page has run: the warm-up thread may import the modules only the other pages need."""
    _first_page.set()
