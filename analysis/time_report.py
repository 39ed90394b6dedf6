"""How long the report takes: `analyze` + `write_report` for a synthetic model, per kernel family.

    python -m analysis.time_report [--families sgconv,s4d,s4] [--layers 4] [--hidden 128] [--length 16384]

Builds an untrained SequenceModel (the timing does not depend on the weights), saves it with
`sgconv_core.save`, then times, in this process: load, `analyze` (extraction, decay and frequency fits,
poles, parameter counts) and `write_report` (CSV, JSON, HTML with plotly figures; PNG only when kaleido
works). Attribution is not part of the report. Prints one line per family, seconds.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def time_report(family: str, n_layers: int = 4, H: int = 128, L: int = 16384, png: bool | None = False) -> dict:
    """Seconds spent in load, analyze and write_report (and their total) for one synthetic checkpoint.

    family: 'sgconv' | 's4d' | 's4'; n_layers, H (d_model); L: kernel length in taps (also l_max).
    """
    import torch

    import sgconv_core
    from sgconv_core import ModelConfig, SequenceModel

    from .extract import clear_cache
    from .report import analyze, write_report

    torch.manual_seed(0)
    ka = {"kernel_dim": 32} if family == "sgconv" else {"d_state": 64}
    cfg = ModelConfig(d_input=1, d_output=10, d_model=H, n_layers=n_layers, kernel=family, kernel_args=ka, l_max=L)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"{family}.safetensors")
        sgconv_core.save(SequenceModel(cfg), path)
        clear_cache()
        t0 = time.perf_counter()
        ck = sgconv_core.load(path)
        t1 = time.perf_counter()
        res = analyze(ck, L)
        t2 = time.perf_counter()
        write_report(res, os.path.join(tmp, "out"), png=png)
        t3 = time.perf_counter()
    return {"family": family, "layers": n_layers, "H": H, "L": L, "load_s": t1 - t0, "analyze_s": t2 - t1,
            "extract_s": res["meta"]["timings_s"]["extract"], "write_s": t3 - t2, "total_s": t3 - t0}


def main(argv=None) -> int:
    """`python -m analysis.time_report`: print the report time per family; returns 0."""
    ap = argparse.ArgumentParser(prog="python -m analysis.time_report", description=__doc__.split("\n\n")[0])
    ap.add_argument("--families", default="sgconv,s4d,s4")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--length", type=int, default=16384)
    a = ap.parse_args(argv)
    for fam in a.families.split(","):
        r = time_report(fam.strip(), a.layers, a.hidden, a.length)
        print(f"{r['family']:>6}: {r['layers']} layers, H={r['H']}, L={r['L']}: total {r['total_s']:.2f} s "
              f"(load {r['load_s']:.2f}, analyze {r['analyze_s']:.2f} [extract {r['extract_s']:.2f}], "
              f"write {r['write_s']:.2f})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
