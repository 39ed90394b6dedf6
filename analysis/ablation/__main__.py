"""Command line: ``python -m analysis.ablation [--preset NAME] [grid options] [--db PATH]``.

Presets (`spec.PRESETS`): delay-local, delay-far, digits, quick, default; the CLI prints what the preset's task
rewards. Runs (or resumes) a sweep, printing one line per finished run and a progress line with the ETA, then
one line per grid point with the mean ± sd over its seeds (n); Ctrl-C stops it, keeping every finished run (run
the same command again to resume). Exit code 2 for a bad grid.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sqlite3
import sys
import threading
import time

from sgconv_core.errors import printable

EXIT_BAD_INPUT = 2


def _fmt_s(s) -> str:
    if s is None:
        return "?"
    s = int(round(s))
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def build_parser() -> argparse.ArgumentParser:
    from .spec import DECAY_MODES, PRESETS

    p = argparse.ArgumentParser(prog="python -m analysis.ablation",
                                description="Live ablation of SGConv/S4/S4D decay rate and kernel parameter count.")
    p.add_argument("--preset", choices=list(PRESETS),
                   help="start from a preset: " + "; ".join(f"{k}: {v.label}" for k, v in PRESETS.items()))
    p.add_argument("--task", help="digits | delay | listops (default digits)")
    p.add_argument("--task-param", action="append", metavar="K=V", help="task parameter, e.g. L=256 (repeatable)")
    p.add_argument("--family", help="sgconv | s4d | s4 (default sgconv)")
    p.add_argument("--decays", type=float, nargs="*", help="SGConv t values (S4/S4D: real-part factors r)")
    p.add_argument("--decay-modes", nargs="+", choices=list(DECAY_MODES),
                   help="default: fixed (SGConv m = 2^t); frozen: SGConv's (lag+1)^-t, not trained; learnable: "
                        "(lag+1)^-t, trained (S4/S4D fixed: A_real and dt frozen)")
    p.add_argument("--sizes", type=int, nargs="*", help="SGConv kernel_dim / S4, S4D d_state values")
    p.add_argument("--base-decay", type=float)
    p.add_argument("--base-size", type=int)
    p.add_argument("--ssm-knob", choices=["real", "dt"])
    p.add_argument("--seeds", type=int, nargs="+")
    p.add_argument("--steps", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--d-model", type=int)
    p.add_argument("--n-layers", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--eval-every", type=int)
    p.add_argument("--name", help="a name for the sweep (shown in the app)")
    p.add_argument("--db", help="SQLite file (default $KERNELSCOPE_DB or ~/.kernelscope/ablations.sqlite)")
    p.add_argument("--checkpoint-dir", help="where run checkpoints go (default: next to the database)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    p.add_argument("--threads", type=int, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--batched", choices=["auto", "yes", "no"], default="auto",
                   help="train the grid as one batched model (auto: on CUDA only)")
    p.add_argument("--max-batch", type=int, help="at most this many runs per batched model")
    p.add_argument("--executor", default="inprocess", choices=["inprocess", "ray"])
    p.add_argument("--dry-run", action="store_true", help="validate and list the runs (done / to train), then exit")
    p.add_argument("--json", action="store_true", help="print the results as JSON at the end")
    p.add_argument("--quiet", action="store_true", help="no per-step progress line")
    return p


def spec_from_args(a, parser):
    from sgconv_core.train import key_values

    from .spec import PRESETS, SweepSpec, preset

    own = PRESETS[a.preset].task if a.preset else None
    if own and a.task and a.task != own:
        raise ValueError(f"--task {a.task}: preset {a.preset!r} is made for the {own} task; use --preset quick "
                         f"--task {a.task} for a small grid on it")
    spec = preset(a.preset, a.family or "sgconv", a.task) if a.preset else SweepSpec(
        task=a.task or "digits", family=a.family or "sgconv")
    if a.task_param:
        spec.task_params = {**spec.task_params, **key_values(a.task_param, parser, "--task-param")}
    for name in ("decays", "decay_modes", "sizes", "seeds"):
        v = getattr(a, name)
        if v is not None:
            setattr(spec, name, tuple(v))
    for name in ("base_decay", "base_size", "ssm_knob", "steps", "batch_size", "d_model", "n_layers", "lr",
                 "eval_every", "name"):
        v = getattr(a, name)
        if v is not None:
            setattr(spec, name, v)
    return spec


class ConsoleProgress:
    """The sweep's progress callback for a terminal: one line per finished run (stdout), a live step line
    with overall steps and ETA (stderr, at most once a second unless ``quiet``)."""

    def __init__(self, n_todo: int, work_total: int, quiet: bool = False):
        self.n_todo, self.work_total, self.quiet = n_todo, work_total, quiet
        self.finished, self.last, self.t0 = 0, 0.0, time.time()
        self.step_of: dict = {}

    def __call__(self, ev: dict) -> None:
        if ev.get("event") == "run_done":
            self._run_done(ev)
        elif ev.get("event") == "step":
            self._step(ev)

    def _run_done(self, ev: dict) -> None:
        self.finished += 1
        m = ev["test_metric"]
        mv = f"{m:.4f}" if isinstance(m, float) and m == m else "n/a"
        line = (f"[{self.finished}/{self.n_todo}] {ev['status']:6s} {ev['label']}: test {ev['metric']} {mv} "
                f"({ev['wall_time_s']:.1f}s) -> {ev['checkpoint']}")
        if ev.get("error"):
            line += f" ({ev['error']})"
        print("\r" + printable(line) + " " * 10, flush=True)

    def _step(self, ev: dict) -> None:
        for k in ev.get("losses", {}):
            self.step_of[k] = ev["step"]
        now = time.time()
        if self.quiet or now - self.last <= 1.0:
            return
        self.last = now
        work = sum(self.step_of.values())
        el = now - self.t0
        eta = el / work * (self.work_total - work) if work else None
        ls = " ".join(f"{v:.3f}" for v in list(ev.get("losses", {}).values())[:4])
        sys.stderr.write(f"\r  step {ev['step']}/{ev['steps']} loss {ls} | overall {work}/{self.work_total} "
                         f"steps, {_fmt_s(el)} elapsed, ETA {_fmt_s(eta)}   ")
        sys.stderr.flush()


@contextlib.contextmanager
def ctrl_c_cancels(stop: threading.Event):
    """First Ctrl-C sets ``stop`` (the sweep ends after the current step, finished runs are kept); a second
    one aborts at once. Only in the main thread (signal handlers cannot be set elsewhere)."""
    def on_sigint(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print("\ncancelling (finished runs are kept; Ctrl-C again to abort now)", file=sys.stderr, flush=True)

    old = signal.signal(signal.SIGINT, on_sigint) if threading.current_thread() is threading.main_thread() else None
    try:
        yield
    finally:
        if old is not None:
            signal.signal(signal.SIGINT, old)


def summary_lines(spec, rows) -> list[str]:
    """One line per grid point: its decay, mode and size, mean ± sd (sample, ddof = 1) over n seeds, in the
    metric's display unit (`metric_column`: accuracy in %, NMSE as is) — the numbers the app's table and plot show."""
    from .figures import point_stats
    from .spec import DECAY_NAME, SIZE_NAME

    pts = point_stats(spec, rows)
    if not pts:
        return []
    fam = spec.family
    head = f"mean ± sd over seeds ({pts[0]['metric']}{' in ' + pts[0]['unit'] if pts[0]['unit'] else ''}):"
    out = [head]
    for p in pts:
        out.append(f"  {DECAY_NAME.get(fam, 'decay')}={p['decay']:g} ({p['decay_mode']}) {SIZE_NAME.get(fam, 'size')}="
                   f"{p['size']}: {p['mean']:.4g} ± {p['sd']:.2g} (n = {p['n']})")
    return out


def print_results(res, as_json: bool) -> None:
    """The sweep's summary line, one line per run, one per grid point (mean ± sd over its seeds), and
    (``as_json``) the rows as JSON."""
    print(f"\n{res.status}: trained {len(res.trained)}, skipped {len(res.skipped)} (already done), failed "
          f"{len(res.failed)} in {res.wall_time_s:.1f}s on {res.device}")
    for r in sorted(res.rows, key=lambda r: (r["decay_mode"], r["decay"], r["size"], r["seed"])):
        tm = r["test_metric"]
        print(printable(f"  {r['family']} decay={r['decay']:g} ({r['decay_mode']}) size={r['size']} seed={r['seed']}: "
                        f"{r['metric']} {tm if tm is None else round(tm, 4)}  [{r['checkpoint']}]"))
    for line in summary_lines(res.spec, res.rows):
        print(printable(line))
    if as_json:
        print(json.dumps([{k: r[k] for k in ("key", "family", "decay", "decay_mode", "size", "seed", "metric",
                                             "test_metric", "val_metric", "kernel_params", "checkpoint",
                                             "wall_time_s", "device")} for r in res.rows]))


def _checked(a, parser):
    """(spec, store) from the arguments; ValueError naming the bad one."""
    from .store import Store

    spec = spec_from_args(a, parser).check()
    if a.max_batch is not None and a.max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {a.max_batch}")
    if a.threads is not None and a.threads < 1:
        raise ValueError(f"threads must be >= 1, got {a.threads}")
    _check_checkpoint_dir(a.checkpoint_dir)
    return spec, Store(a.db)


def _check_checkpoint_dir(path) -> None:
    """ValueError (one line) when --checkpoint-dir names something that exists and is not a folder."""
    if path is None:
        return
    if "\x00" in str(path):
        raise ValueError("--checkpoint-dir: the path holds a NUL character")
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"--checkpoint-dir {path} is an existing file, not a folder; give a folder for the run "
                         "checkpoints (it is created if missing)")


def main(argv=None) -> int:
    from .runner import run_sweep

    parser = build_parser()
    a = parser.parse_args(argv)
    try:
        spec, store = _checked(a, parser)
    except ValueError as e:
        print(f"error: {printable(e)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    runs = spec.expand(check=False)
    done = store.done_keys(r.key() for r in runs)
    if a.preset:
        from .spec import preset_sentence

        print(printable(f"preset {a.preset}: {preset_sentence(a.preset, spec.task)}"), flush=True)
    print(printable(f"sweep '{spec.name or spec.task + ' ' + spec.family}': {len(runs)} runs, {len(done)} already "
                    f"done | db {store.path}"), flush=True)
    if a.dry_run:
        for r in runs:
            print(printable(f"  {'done' if r.key() in done else 'todo'}  {r.key()}  {r.label()}"))
        return 0
    stop = threading.Event()
    progress = ConsoleProgress(len(runs) - len(done), sum(r.steps for r in runs if r.key() not in done), a.quiet)
    batched = {"auto": "auto", "yes": True, "no": False}[a.batched]
    try:
        with ctrl_c_cancels(stop):
            res = run_sweep(spec, db=store, checkpoint_dir=a.checkpoint_dir, executor=a.executor, batched=batched,
                            max_batch=a.max_batch, device=a.device, threads=a.threads, progress=progress,
                            should_stop=stop.is_set)
    except ValueError as e:
        print(f"error: {printable(e)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (sqlite3.Error, OSError) as e:  # the database or checkpoint folder failed mid-sweep
        print(f"error: {type(e).__name__}: {printable(e)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print_results(res, a.json)
    return 0 if res.status == "done" else 130


if __name__ == "__main__":
    sys.exit(main())
