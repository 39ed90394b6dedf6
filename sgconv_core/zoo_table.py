"""The table of pretrained models, generated from their model cards so it cannot drift.

    python -m sgconv_core.zoo_table [pretrained/] [--commands] [--json]

Prints a Markdown table (name, task, family, metric, test value with its 95 % interval and n, trivial baseline,
kernel / total parameters, file size, device, training time, steps) of every .safetensors checkpoint of ours in the
folder, then the ListOps models beside their three baselines on the same test split; ``--commands``
adds the exact command that trained each, and the notes of any model that missed its target; ``--write``
puts that table into the folder's README.md between its markers (tests check that it is current).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys

from .cards import read_card
from .errors import printable

#: The zoo's targets on the test split: (metric, comparison, threshold, families it applies to).
#: SGConv has no delay target: with a small kernel_dim its resolution at lag tau is ~tau/d taps, so it is
#: expected to do worse there (a finding to report, not a target). ListOps must also be measurably above its
#: one-level baseline (`ABOVE_BASELINE`): the lower end of the model's 95 % interval above the upper end of the
#: baseline's, on the same test split.
TARGETS = {
    "digits": ("accuracy", ">=", 0.95, ("sgconv", "s4", "s4d")),
    "delay": ("nmse", "<=", 0.05, ("s4", "s4d")),
    "listops": ("accuracy", ">=", 0.35, ("sgconv", "s4", "s4d")),
}
#: Per task, the baseline (a key of the card's ``test_baselines``) a model's interval must clear.
ABOVE_BASELINE = {"listops": "one_level"}


def target_met(card: dict) -> bool | None:
    """Whether a card's test value meets the zoo target for its task and family (None: no target).

    ListOps also needs the card's ``test_ci`` and ``test_baselines`` (cards written before them: False)."""
    t = TARGETS.get(card.get("task"))
    v = card.get("test_value")
    if t is None or v is None or card.get("family") not in t[3]:
        return None
    _, op, thr, _ = t
    ok = v >= thr if op == ">=" else v <= thr
    name = ABOVE_BASELINE.get(card.get("task"))
    if ok and name:
        b = (card.get("test_baselines") or {}).get(name)
        ci = card.get("test_ci")
        ok = bool(b and ci and ci[0] > b["ci"][1])
    return ok


def rows(folder: str) -> list[dict]:
    out = []
    for path in sorted(glob.glob(os.path.join(folder, "*.safetensors"))):
        try:
            card = read_card(path)
        except Exception as e:  # a foreign or broken file: list it, do not crash
            print(printable(f"warning: {path}: {e}"), file=sys.stderr)
            continue
        out.append({"file": os.path.basename(path), "size_bytes": os.path.getsize(path), "card": card})
    return out


def _num(metric: str, v: float) -> str:
    return f"{100 * v:.1f}" if metric == "accuracy" else f"{v:.4f}"


def format_metric(metric: str, v: float) -> str:
    """One metric value as shown in tables: accuracy in % ("37.2 %"), NMSE as is ("0.0115")."""
    return _num(metric, v) + (" %" if metric == "accuracy" else "")


def format_test_value(card: dict) -> str:
    """``value [low, high] (n)``: the test value, its 95 % interval and the number of test examples
    (accuracy in %; cards without an interval show the value alone)."""
    v, m = card.get("test_value"), card.get("metric")
    if v is None:
        return "?"
    unit = " %" if m == "accuracy" else ""
    ci, n = card.get("test_ci"), card.get("test_n")
    if not ci or n is None:
        return _num(m, v) + unit
    return f"{_num(m, v)} [{_num(m, ci[0])}, {_num(m, ci[1])}]{unit} ({n:,})"


def _fmt_baseline(card: dict) -> str:
    v = card.get("baseline")
    if v is None:
        return "?"
    return f"{100 * v:.1f} %" if card.get("metric") == "accuracy" else f"{v:.2f}"


def markdown(folder: str, commands: bool = False) -> str:
    rs = rows(folder)
    lines = [
        "| name | task | family | layers x H | metric | test value [95 % CI] (n) | baseline | target met | kernel params | "
        "total params | file size | device | threads | training time | steps |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rs:
        c, mc = r["card"], r["card"].get("model_config", {})
        met = target_met(c)
        lines.append(
            f"| {os.path.splitext(r['file'])[0]} | {c.get('task', '?')} | {c.get('family', '?')} | "
            f"{mc.get('n_layers', '?')} x {mc.get('d_model', '?')} | {c.get('metric', '?')} | {format_test_value(c)} | "
            f"{_fmt_baseline(c)} | {'-' if met is None else ('yes' if met else '**no**')} | "
            f"{c.get('kernel_params', 0):,} | {c.get('total_params', 0):,} | {r['size_bytes'] / 1024:.0f} KiB | "
            f"{c.get('device', '?')} | {c.get('threads', '-')} | {c.get('wall_time_s', 0):.0f} s | "
            f"{c.get('steps', '?')}{' (stopped: ' + c['stopped'] + ')' if c.get('stopped') else ''} |"
        )
    total = sum(r["size_bytes"] for r in rs)
    lines.append("")
    lines.append(f"{len(rs)} models, {total / 2**20:.2f} MiB in all, "
                 f"{sum(r['card'].get('wall_time_s', 0) for r in rs) / 60:.1f} min of training.")
    lines += baselines_table(rs)
    if commands:
        lines += ["", "### Commands", ""]
        for r in rs:
            c = r["card"]
            lines += [f"`{os.path.splitext(r['file'])[0]}`:", "", "```", c.get("command", "?"), "```", ""]
        notes = [(r["file"], r["card"]) for r in rs if r["card"].get("notes")]
        if notes:
            lines += ["### Notes from the cards", ""]
            for f, c in notes:
                lines.append(f"- `{os.path.splitext(f)[0]}`: {c['notes']}")
    return "\n".join(printable(line) for line in lines)  # card text is shown as text: one line each, no escapes


_BASELINE_NAMES = {"majority": "majority class", "operator_lookup": "top-operator lookup", "one_level": "one-level"}


def baselines_table(rs: list[dict]) -> list[str]:
    """Markdown lines: each card with ``test_baselines`` (ListOps) beside its baselines on the same test split,
    ``value [95 % CI] (n)``, accuracy in %. Empty when no card has baselines."""
    with_b = [r for r in rs if r["card"].get("test_baselines")]
    if not with_b:
        return []
    names = list(_BASELINE_NAMES)
    out = ["", "### Baselines on the same test split", "",
           "| name | model | " + " | ".join(_BASELINE_NAMES[k] for k in names) + " |",
           "|---|---|" + "---|" * len(names)]
    for r in with_b:
        c, b = r["card"], r["card"]["test_baselines"]
        cells = [format_test_value({"metric": c.get("metric"), "test_value": b[k]["value"], "test_ci": b[k]["ci"],
                             "test_n": b[k]["n"]}) if k in b else "?" for k in names]
        out.append(f"| {os.path.splitext(r['file'])[0]} | {format_test_value(c)} | " + " | ".join(cells) + " |")
    return out


BEGIN, END = "<!-- zoo-table:begin (python -m sgconv_core.zoo_table --write) -->", "<!-- zoo-table:end -->"


def write_readme(folder: str) -> str:
    """Replace the table between the BEGIN / END markers of ``folder``/README.md with a fresh one; returns the path."""
    path = os.path.join(folder, "README.md")
    with open(path) as f:
        text = f.read()
    if BEGIN not in text or END not in text:
        raise ValueError(f"{path}: no {BEGIN!r} ... {END!r} markers to write the table between")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with open(path, "w") as f:
        f.write(head + BEGIN + "\n" + markdown(folder, commands=True) + "\n" + END + tail)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sgconv_core.zoo_table", description=__doc__.split("\n\n")[0])
    p.add_argument("folder", nargs="?", default="pretrained")
    p.add_argument("--commands", action="store_true", help="also list the training command and notes of each model")
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead")
    p.add_argument("--write", action="store_true", help="rewrite the table (with commands) inside FOLDER/README.md")
    a = p.parse_args(argv)
    if not os.path.isdir(a.folder):
        p.error(f"{a.folder}: no such folder")
    if a.write:
        print(printable(f"wrote {write_readme(a.folder)}"))
    elif a.json:
        print(json.dumps(rows(a.folder), indent=1))
    else:
        print(markdown(a.folder, a.commands))
    return 0


if __name__ == "__main__":
    sys.exit(main())
