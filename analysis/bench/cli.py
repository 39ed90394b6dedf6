"""Speed and memory of SGConv, S4 and S4D kernels, and of one SGConv layer at long lengths.

    python -m analysis.bench [--quick] [--device auto|cpu|cuda] [--lengths 1k,4k,...] [--threads N] [--json OUT]
    python -m analysis.bench --no-floor --lengths 1k --layer-lengths 262k,1M --layer-fwd-only [--fft-chunk-mb 0]

Prints the table (`format_table`); progress lines go to stderr; --json writes every number.
"""
from __future__ import annotations

import argparse
import json
import sys

from sgconv_core.device import resolve_device
from sgconv_core.errors import printable

from .run import run_benchmark
from .spec import Settings, parse_lengths
from .table import format_table


def main(argv=None) -> int:
    """`python -m analysis.bench`: run the benchmark and print its table (and --json); returns 0."""
    p = _parser()
    a = p.parse_args(argv)
    try:
        device = resolve_device(a.device, allow_index=False).type
    except ValueError as e:
        p.error(str(e))
    lengths, s = _lengths_and_settings(a, device)
    rows = run_benchmark(lengths, device, a.quick or a.tiny, settings=s, threads=a.threads, progress=_say)
    print(_lines(format_table(rows)), flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"rows": rows}, f, indent=1, default=str)
        print(f"\nwrote {printable(a.json)}")
    return 0


def _say(msg: str) -> None:
    print(_lines(msg), file=sys.stderr, flush=True)


def _lines(text: str) -> str:
    """``text`` safe for a terminal, line by line (control characters escaped, its line breaks kept)."""
    return "\n".join(printable(line) for line in str(text).split("\n"))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m analysis.bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="lengths 1k-64k, fewer repeats, fwd+bwd up to 16k, layer at 1M only (GPU): < 1 min on a CPU")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--lengths", type=parse_lengths, default=None, help="comma list, e.g. 1k,4k,16k,64k,256k,1M")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--json", default=None, metavar="OUT", help="write every number to this JSON file")
    p.add_argument("--hidden", type=int, default=None, help="d_model H (default 256)")
    p.add_argument("--d-state", type=int, default=None, help="N (default 64)")
    p.add_argument("--kernel-dim", type=int, default=None, help="SGConv kernel_dim (default 32)")
    p.add_argument("--mem-gb", type=float, default=None, help="CPU memory budget per cell (default 8)")
    p.add_argument("--budget-s", type=float, default=None, help="time budget for the kernel cells")
    p.add_argument("--no-layer", action="store_true", help="skip the layer benchmark")
    p.add_argument("--layer-lengths", type=parse_lengths, default=None,
                   help="lengths for the layer section, e.g. 262k,1M; on a CPU this runs the layer there")
    p.add_argument("--layer-fwd-only", action="store_true", help="the layer section times the forward pass only")
    p.add_argument("--fft-chunk-mb", type=float, default=None,
                   help="fft_conv's chunk budget for the layer in MB (default FFT_CHUNK_BYTES; 0: never chunk)")
    p.add_argument("--no-floor", action="store_true",
                   help="skip the S4D floor section (ours vs the straightforward route, and a plain matmul)")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # H=8, L=256,1024, 1 repeat (tests)
    return p


def _lengths_and_settings(a: argparse.Namespace, device: str) -> tuple[list[int] | None, Settings]:
    """The lengths asked for (None: the defaults) and the Settings from the flags (--tiny: the tests' sizes)."""
    ov = {"H": a.hidden, "d_state": a.d_state, "kernel_dim": a.kernel_dim, "mem_budget_gb": a.mem_gb,
          "budget_s": a.budget_s}
    lengths = a.lengths
    if a.tiny:
        lengths = lengths or [256, 1024]
        ov.update({"H": ov["H"] or 8, "min_reps": 1, "max_reps": 1, "layer_lengths": [1024], "layer_l_max": 1024,
                   "layer_on_cpu": True, "floor_matmul_n": 256})
    if a.no_layer:
        ov["layer"] = False
    if a.layer_lengths:
        ov.update({"layer_lengths": a.layer_lengths, "layer_on_cpu": True})
    if a.layer_fwd_only:
        ov["layer_passes"] = ("fwd",)
    if a.fft_chunk_mb is not None:
        ov["fft_chunk_bytes"] = int(a.fft_chunk_mb * (1 << 20))
    if a.no_floor:
        ov["floor"] = False
    return lengths, Settings.make(a.quick or a.tiny, device, **ov)
