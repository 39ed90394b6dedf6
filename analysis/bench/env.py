"""What the numbers depend on: OpenMP's wait policy (set here, before torch loads), torch's import time, and the
device, CPU, RAM and load average of this run (the ``section="env"`` row).

``OMP_WAIT_POLICY=PASSIVE`` must be set before torch is imported: OpenMP reads it when torch loads, and with other
processes busy, spinning OpenMP threads make small FFT convs 10-100x slower. The package imports this module
before anything else, so importing ``analysis.bench`` first sets it (unless it is already set).
"""
from __future__ import annotations

import os
import sys

#: OpenMP reads OMP_WAIT_POLICY when torch loads: it only takes effect if set before the first torch import.
OMP_EFFECTIVE = "OMP_WAIT_POLICY" in os.environ or "torch" not in sys.modules
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import platform  # noqa: E402
import time  # noqa: E402

_T_IMPORT = time.perf_counter()
import torch  # noqa: E402

#: Seconds ``import torch`` took here (about 0 when something imported torch before this package).
IMPORT_TORCH_S = time.perf_counter() - _T_IMPORT

from sgconv_core.device import cpu_model  # noqa: E402

from .memory import meminfo_gb  # noqa: E402
from .spec import GB  # noqa: E402


def loadavg() -> list[float] | None:
    """The 1/5/15-minute load averages, rounded (None where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _omp_wait_policy() -> str | None:
    policy = os.environ.get("OMP_WAIT_POLICY")
    return policy if OMP_EFFECTIVE else f"{policy} (set after torch was imported: not in effect)"


def environment(device: str) -> dict:
    """Device name, torch version, threads, load average: what the numbers depend on."""
    env = {
        "section": "env",
        "device": device,
        "device_name": torch.cuda.get_device_name() if device == "cuda" else cpu_model(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "omp_wait_policy": _omp_wait_policy(),
        "ram_total_gb": meminfo_gb("MemTotal"),
        "load_start": loadavg(),
        "import_torch_s": IMPORT_TORCH_S,
    }
    if device == "cuda":
        free, total = torch.cuda.mem_get_info()
        env["gpu_total_gb"] = total / GB
        env["gpu_free_gb"] = free / GB
    return env
