"""The long-layer table: one bidirectional SGConv layer (``ConvLayer`` around ``SGConvKernel``: d_model 256,
kernel_dim 32, l_max 1M, GLU output), batch 1, at L = 64k / 256k / 1M, each cell in a fresh child process, so
that its peak RSS (above the input and the weights) sees nothing an earlier cell left in the heap.

    python -m analysis.bench.long_layer --lengths 64k,256k,1M [--rounds 2] [--calls 2] [--json rows.json]

Inference ('infer', under ``torch.no_grad``) is measured 'before' (``ConvLayer.blockwise_inference = False``: the
whole-length route) and 'after' (the blockwise route), interleaved, with the ratios after / before of the median
time per call and of the peak; 'fwd' and 'fwd+bwd' (autograd, one route) up to ``--grad-max-L``.
"""
from __future__ import annotations

import torch

from sgconv_core.kernels import SGConvKernel
from sgconv_core.layers import ConvLayer

from .memory import peak_of_call, run_in_child
from .spec import GB, fmt_L
from .timing import zero_grads

#: What a child cell runs: 'infer' (forward under torch.no_grad), 'fwd' (forward with autograd, the graph freed
#: with the output), 'fwd+bwd' (forward, backward of the sum).
CHILD_PASSES = ("infer", "fwd", "fwd+bwd")
#: 'before': ``ConvLayer.blockwise_inference = False`` (inference through the whole-length route, as before the
#: blockwise route existed); 'after': the layer as it is. With autograd both take the same (whole-length) route.
ROUTES = ("before", "after")


def child_cell(L: int, pass_: str, route: str, H: int = 256, kernel_dim: int = 32, l_max: int = 1 << 20,
               calls: int = 2) -> dict:
    """In this process: build the bidirectional SGConv layer and a (1, H, L) input, then ``calls`` calls of
    ``pass_``. Returns {'L', 'pass', 'route', 'times_s', 'peak_bytes'}: the peak RSS above the RSS after the input
    and weights exist (and one call at L = 1024 has loaded the FFT and BLAS code), over the first call."""
    if pass_ not in CHILD_PASSES or route not in ROUTES:
        raise ValueError(f"pass {pass_!r} / route {route!r}: choose from {CHILD_PASSES} / {ROUTES}")
    torch.manual_seed(0)
    layer = ConvLayer(SGConvKernel(H, l_max, bidirectional=True, kernel_dim=kernel_dim))
    layer.blockwise_inference = route == "after"
    x = torch.randn(1, H, L)

    def call():
        if pass_ == "infer":
            with torch.no_grad():
                layer(x)
        elif pass_ == "fwd":
            layer(x)
        else:
            layer(x).sum().backward()
            zero_grads(layer)

    with torch.no_grad():
        layer(x[..., :1024])
    times, cpus, peak = [], [], None
    for c in range(calls):
        dt, p, dc = peak_of_call(call)
        times.append(dt)
        cpus.append(dc)
        peak = p if c == 0 else peak
    return {"L": L, "pass": pass_, "route": route, "times_s": times, "cpu_s": cpus, "peak_bytes": peak}


def layer_memory_rows(lengths: list[int], passes=CHILD_PASSES, rounds: int = 1, calls: int = 2,
                      grad_max_L: int = 256 * 1024, say=print, **kw) -> list[dict]:
    """Every (L, pass, route) cell in a fresh child process, 'before' and 'after' interleaved, ``rounds`` times;
    autograd passes only up to ``grad_max_L`` and only 'after' (their route is the same). One dict per child."""
    rows = []
    for L in lengths:
        for _ in range(rounds):
            for p in passes:
                if p != "infer" and L > grad_max_L:
                    continue
                for route in (ROUTES if p == "infer" else ("after",)):
                    args = ["--child", str(L), p, route] + [f"--{k.replace('_', '-')}={v}" for k, v in kw.items()]
                    r = run_in_child("analysis.bench.long_layer:main", args + [f"--calls={calls}"])
                    say(f"L={fmt_L(L)} {p} {route}: {', '.join(f'{t:.2f}' for t in r['times_s'])} s, "
                        f"cpu {', '.join(f'{t:.2f}' for t in r['cpu_s'])} s, peak {r['peak_bytes'] / GB:.2f} GB")
                    rows.append(r)
    return rows


def format_memory_rows(rows: list[dict]) -> str:
    """One line per (L, pass, route): n calls, median wall seconds per call, ns per token, median CPU seconds
    (user + system), the peak GB above input and weights, and for inference the ratios after / before of the
    wall time, the CPU time and the peak."""
    import statistics
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["L"], r["pass"], r["route"]), []).append(r)

    def stats(rs):
        return (statistics.median([t for r in rs for t in r["times_s"]]),
                statistics.median([t for r in rs for t in r["cpu_s"]]), max(r["peak_bytes"] for r in rs))

    out = [f"{'L':>6} {'pass':8} {'route':7} {'n':>3} {'s/call':>8} {'ns/token':>9} {'cpu s':>7} {'peak GB':>8} "
           f"{'t ratio':>8} {'cpu ratio':>9} {'mem ratio':>9}"]
    for (L, p, route), rs in groups.items():
        t, c, m = stats(rs)
        line = (f"{fmt_L(L):>6} {p:8} {route:7} {sum(len(r['times_s']) for r in rs):>3} {t:8.2f} {t / L * 1e9:9.0f} "
                f"{c:7.2f} {m / GB:8.2f}")
        if route == "after" and (L, p, "before") in groups:
            tb, cb, mb = stats(groups[(L, p, "before")])
            line += f" {t / tb:8.2f} {c / cb:9.2f} {m / mb:9.2f}"
        out.append(line)
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    """``python -m analysis.bench.long_layer --lengths 64k,256k,1M [--rounds 2] [--calls 2]``: the long-layer table
    (one child process per cell); ``--child L PASS ROUTE`` runs one cell and prints it as JSON."""
    import argparse
    import json

    from .spec import parse_lengths
    ap = argparse.ArgumentParser(prog="python -m analysis.bench.long_layer", description=main.__doc__)
    ap.add_argument("--lengths", type=parse_lengths, default=[64 * 1024, 256 * 1024, 1 << 20])
    ap.add_argument("--passes", default=",".join(CHILD_PASSES))
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--calls", type=int, default=2)
    ap.add_argument("--H", type=int, default=256)
    ap.add_argument("--kernel-dim", type=int, default=32)
    ap.add_argument("--l-max", type=int, default=1 << 20)
    ap.add_argument("--grad-max-L", type=parse_lengths, default=[256 * 1024])
    ap.add_argument("--child", nargs=3, metavar=("L", "PASS", "ROUTE"))
    ap.add_argument("--json", help="also write the rows to this file")
    a = ap.parse_args(argv)
    shape = {"H": a.H, "kernel_dim": a.kernel_dim, "l_max": a.l_max}
    if a.child:
        print(json.dumps(child_cell(int(a.child[0]), a.child[1], a.child[2], calls=a.calls, **shape)))
        return
    rows = layer_memory_rows(a.lengths, tuple(a.passes.split(",")), a.rounds, a.calls, a.grad_max_L[0], **shape)
    print(format_memory_rows(rows))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
