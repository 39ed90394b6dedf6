"""Command line: reports and comparisons of checkpoints' kernels, and a causality check of a model.

    python -m analysis report CHECKPOINT [--length L] [--out DIR] [--channels K]
    python -m analysis compare CK1 CK2 ... [--length L] [--out DIR] [--channels K]
    python -m analysis causality CHECKPOINT [--length L] [--positions P1,P2] [--json]

report / compare write CSV + JSON (every number) and an offline HTML page with the figures. causality prints
whether an output depends on later inputs (float64 gradients, `analysis.causality`); exit code 0 when the
model behaves as built (causal, or bidirectional and reading the future), 1 when not. A checkpoint that
cannot be read gives a one-line message on stderr and exit code 2. Progress goes to stderr.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from sgconv_core.errors import printable

EXIT_BAD_INPUT = 2
EXIT_NOT_AS_BUILT = 1


def _bar(desc: str, quiet: bool):
    """A progress callback(fraction, message) drawing a tqdm bar on stderr, and a closer."""
    if quiet:
        return None, (lambda: None)
    from tqdm import tqdm

    bar = tqdm(total=1000, desc=desc, file=sys.stderr, leave=False, bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")

    def cb(frac, message=""):
        bar.n = int(round(1000 * min(max(frac, 0.0), 1.0)))
        bar.set_postfix_str(str(message)[:60], refresh=False)
        bar.refresh()

    return cb, bar.close


def _load(path: str):
    import sgconv_core
    from sgconv_core import CheckpointError

    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such file")
    if os.path.isdir(path):
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
    try:
        return sgconv_core.load(path)
    except CheckpointError:
        raise
    except Exception as e:  # anything else a broken file makes a reader raise: still one line, exit 2
        raise CheckpointError(f"{os.path.basename(path)}: cannot be read ({type(e).__name__}: {e})") from None


def _default_out(kind: str, paths: list[str]) -> str:
    stem = os.path.splitext(os.path.basename(paths[0]))[0] or "checkpoint"
    return f"kernelscope-{kind}-{stem}" + (f"-and-{len(paths) - 1}-more" if len(paths) > 1 else "")


def _checked_out(out: str) -> str:
    """The output folder, refused (ValueError, one line) before any work when it cannot be one."""
    path = os.path.abspath(os.path.expanduser(out))
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"--out {out}: is an existing file, not a folder; give a folder path")
    parent = path
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(f"--out {out}: {parent} is a file, so the folder cannot be created")
    return out


def _channels(arg):
    if arg is None:
        return None
    parts = [p for p in arg.split(",") if p.strip()]
    if len(parts) == 1:
        return int(parts[0])
    return [int(p) for p in parts]


def cmd_report(args) -> int:
    """`report CHECKPOINT`: analyse one checkpoint and write its files; returns the exit code."""
    from .report import analyze, write_report

    out = _checked_out(args.out or _default_out("report", [args.checkpoint]))
    t0 = time.perf_counter()
    ck = _load(args.checkpoint)
    t_load = time.perf_counter() - t0
    cb, close = _bar(f"report {os.path.basename(args.checkpoint)}", args.quiet)
    try:
        res = analyze(ck, args.length, channels=_channels(args.channels), progress=cb)
        if cb:
            cb(1.0, "writing files")
        res.timings["load"] = t_load
        paths = write_report(res, out, html_page=not args.no_html, png=False if args.no_png else None)
    finally:
        close()
    total = time.perf_counter() - t0
    print(f"wrote {len(paths)} files to {printable(os.path.abspath(out))} in {total:.1f} s "
          f"(load {t_load:.1f} s, analysis {res.timings['analyze']:.1f} s)")
    for name in sorted(paths):
        print(f"  {printable(name)}")
    if res.verdict is not None:
        for line in res.verdict.sentences():
            print(printable(line))
    return 0


def cmd_compare(args) -> int:
    """`compare CK1 CK2 ...`: analyse several checkpoints at one L and write the comparison; returns the exit code."""
    from .report import analyze, compare_results, write_compare

    if len(args.checkpoints) < 2:
        print("error: compare needs at least two checkpoints", file=sys.stderr)
        return EXIT_BAD_INPUT
    out = _checked_out(args.out or _default_out("compare", args.checkpoints))
    t0 = time.perf_counter()
    cks = [_load(p) for p in args.checkpoints]
    L = args.length if args.length is not None else max(ck.default_length for ck in cks)
    results = []
    for p, ck in zip(args.checkpoints, cks, strict=True):
        cb, close = _bar(f"analyse {os.path.basename(p)}", args.quiet)
        try:
            results.append(analyze(ck, L, channels=_channels(args.channels), progress=cb, verdict=False))
        finally:
            close()
    cmp = compare_results(results, [os.path.basename(p) for p in args.checkpoints])
    paths = write_compare(cmp, out, html_page=not args.no_html)
    print(f"wrote {len(paths)} files to {printable(os.path.abspath(out))} in {time.perf_counter() - t0:.1f} s "
          f"(L = {L:,})")
    for name in sorted(paths):
        print(f"  {printable(name)}")
    return 0


def cmd_causality(args) -> int:
    """`causality CHECKPOINT`: does y[t] depend on x[t+1:]? Prints the verdict; returns the exit code."""
    from .causality import causality_check

    ck = _load(args.checkpoint)
    L = args.length if args.length is not None else ck.default_length
    positions = [int(p) for p in args.positions.split(",") if p.strip()] if args.positions else None
    res = causality_check(ck, L, d_input=args.d_input, position=positions, seed=args.seed)
    if args.json:
        print(json.dumps(res))
    else:
        print(printable(f"{os.path.basename(args.checkpoint)} at L = {L:,}, output positions {res['positions']}: "
                        f"{res['note']}"))
        print(f"  largest |dy[t]/dx[s]|: s > t {res['max_future_grad']:.3e}, s <= t {res['max_past_grad']:.3e}")
    as_built = res["ok"] if res["expected_ok"] is None else res["ok"] == res["expected_ok"]
    return 0 if as_built and res["max_past_grad"] > 0 else EXIT_NOT_AS_BUILT


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of `python -m analysis` (subcommands report, compare and causality)."""
    ap = argparse.ArgumentParser(prog="python -m analysis",
                                 description="Kernel reports (decay, frequency response, poles, parameters) of "
                                             "SGConv / S4 / S4D checkpoints, and a causality check.")
    sub = ap.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--length", "-L", type=int, default=None,
                       help="kernel length in taps (default: the model's l_max, else the length policy's "
                            "default, 1024)")
        p.add_argument("--out", "-o", default=None, help="output folder (created)")
        p.add_argument("--channels", default=None,
                       help="channels per layer in the figures: a count K (evenly spaced) or a comma list of feature indices")
        p.add_argument("--no-html", action="store_true", help="write only CSV and JSON")
        p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")

    r = sub.add_parser("report", help="analyse one checkpoint")
    r.add_argument("checkpoint")
    common(r)
    r.add_argument("--no-png", action="store_true", help="never try static PNG export (kaleido)")
    r.set_defaults(func=cmd_report)
    c = sub.add_parser("compare", help="analyse several checkpoints side by side")
    c.add_argument("checkpoints", nargs="+")
    common(c)
    c.set_defaults(func=cmd_compare)
    k = sub.add_parser("causality", help="check that a runnable model's outputs do not depend on later inputs")
    k.add_argument("checkpoint")
    k.add_argument("--length", "-L", type=int, default=None,
                   help="probe sequence length (default: the model's l_max, else the length policy's default)")
    k.add_argument("--positions", default=None, help="output positions t, a comma list (default L // 2)")
    k.add_argument("--d-input", type=int, default=None, help="input channels, where the checkpoint does not say")
    k.add_argument("--seed", type=int, default=0, help="seed of the random probe input")
    k.add_argument("--json", action="store_true", help="print the full result as JSON")
    k.set_defaults(func=cmd_causality)
    return ap


def main(argv=None) -> int:
    """Run the CLI on argv; returns 0, or 2 with a one-line error on stderr for a bad checkpoint or argument."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as e:  # CheckpointError (a ValueError), or a bad --length / --channels
        print("error: " + printable(" ".join(str(e).split())), file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as e:  # writing the output folder failed (permissions, disk full, ...)
        where = f" ({e.filename})" if e.filename else ""
        print(printable(f"error: cannot write the output{where}: {e.strerror or e}"), file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
