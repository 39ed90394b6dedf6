r"""Cold start of the app against an empty Streamlit app's floor, measured in the same run.

    python -m analysis.bench.app_start [--repeats 3] [--link "/kernels?model=digits-sgconv"] [--json OUT]
                                       [--before /path/to/another/checkout]

For each repeat (interleaved: floor, app, floor, app, ...) a fresh ``streamlit run`` is launched from the
repository root with the same command and flags:

- **floor**: a one-line script (``st.write("hi")``); time from the launch to the text drawn in the page;
- **app**: ``app/main.py``; time from the launch to the first titled kernel plot drawn for the deep link
  (default ``/kernels?model=digits-sgconv``, a fresh server's FIRST request);
- **before** (with ``--before ROOT``): the same for ``app/main.py`` of another checkout (``git worktree add
  /tmp/before HEAD~1``), launched from that root, interleaved with the two above, so that a change is compared
  with its baseline under the same machine load.

Both are opened in one headless Chromium (``/usr/bin/chromium`` through Playwright, launched once before the
first server, so no time includes the browser's start), a new browser context per server. Printed: each time,
the medians, and the ratio of the medians (app / floor). Nothing is asserted here; the target (issue 11) is
ratio <= 1.5.

Needs the ``streamlit`` console script of this environment, Playwright and Chromium; imports neither torch nor
the app (both run in the launched server).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage"]
DEFAULT_LINK = "/kernels?model=digits-sgconv"
FLOOR_TEXT = "hi"
#: JavaScript predicates, true once the page shows what is timed.
_FLOOR_DRAWN = ("(t) => [...document.querySelectorAll('[data-testid=\"stMarkdownContainer\"]')]"
                ".some(e => e.innerText.trim() === t)")
_PLOT_DRAWN = ("() => document.querySelector('[data-testid=\"stException\"]') || [...document"
               ".querySelectorAll('.js-plotly-plot')].some(p => p.layout && p.layout.title && p.layout.title.text"
               " && p.querySelector('.main-svg'))")


def streamlit_command() -> list[str]:
    """The README's command: this environment's ``streamlit`` console script, which (unlike ``python -m
    streamlit``) does not put the working directory on sys.path, so a page that runs without app/main.py cannot
    import ``app`` by luck; else ``python -P -m streamlit`` (the same, on Python >= 3.11)."""
    script = Path(sys.executable).with_name("streamlit")
    if script.exists():
        return [str(script)]
    return [sys.executable, *(["-P"] if sys.version_info >= (3, 11) else []), "-m", "streamlit"]


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def streamlit_server(script: str = "app/main.py", env: dict | None = None, log_path: Path | None = None,
                     cwd: Path = REPO, timeout: float = 120.0):
    """``streamlit run script`` (the README's console script, headless, a free port, no file watcher) from ``cwd``.

    Yields (url, process, t_launch, t_healthy) (``time.perf_counter`` seconds) once ``/_stcore/health`` answers
    "ok"; stops the server afterwards. RuntimeError (with the log's tail) if it exits or is not healthy within
    ``timeout``. The one launcher of the cold-start bench and the browser tests."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = Path(log_path or Path(tempfile.gettempdir()) / f"streamlit_{port}.log")
    cmd = [*streamlit_command(), "run", script, "--server.headless=true", "--server.address=127.0.0.1",
           f"--server.port={port}", "--browser.gatherUsageStats=false", "--server.fileWatcherType=none"]
    with open(log_path, "wb") as log:
        t_launch = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=dict(os.environ if env is None else env), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _wait_healthy(url, proc, timeout, log_path)
            yield url, proc, t_launch, time.perf_counter()
        finally:
            _stop(proc)


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode} before it was healthy:\n"
                               f"{log_path.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"streamlit was not healthy after {timeout:.0f} s:\n{log_path.read_text(errors='replace')[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)


def time_one(browser, script: str, path: str, predicate: str, arg=None, env: dict | None = None,
             log_dir: Path | None = None, cwd: Path = REPO) -> dict:
    """Launch ``streamlit run script`` from ``cwd``, open ``path`` as its first request, wait for ``predicate``.

    Returns {'total_s': launch to drawn, 'healthy_s': launch to /_stcore/health ok, 'exception': bool}."""
    log = Path(log_dir or tempfile.gettempdir()) / f"app_start_{os.getpid()}.log"
    with streamlit_server(script, env, log, cwd=Path(cwd)) as (url, _, t0, t_healthy):
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        try:
            page = context.new_page()
            page.goto(url + path)
            page.wait_for_function(predicate, arg=arg, timeout=180_000, polling="raf")
            t_drawn = time.perf_counter()
            exception = page.locator('[data-testid="stException"]').count() > 0
        finally:
            context.close()
    return {"total_s": t_drawn - t0, "healthy_s": t_healthy - t0, "exception": exception}


def check_before(root: str | Path) -> None:
    """ValueError unless ``root`` holds app/main.py (the checkout ``--before`` times)."""
    if not (Path(root) / "app" / "main.py").is_file():
        raise ValueError(f"--before {root}: no app/main.py there (give the root of another checkout)")


def measure(repeats: int = 3, link: str = DEFAULT_LINK, pretrained: str | None = None,
            before: str | Path | None = None) -> dict:
    """Interleaved floor / app (/ before: app/main.py of the checkout at ``before``) cold starts; returns the times,
    their medians and the ratios of the medians to the floor's."""
    if before is not None:
        check_before(before)
    from playwright.sync_api import sync_playwright

    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", PYTHONUNBUFFERED="1")
    if pretrained:
        env["KERNELSCOPE_PRETRAINED"] = str(pretrained)
    floor_runs, app_runs, before_runs = [], [], []
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        floor_script = Path(tmp) / "floor_app.py"
        floor_script.write_text(f"import streamlit as st\n\nst.write({FLOOR_TEXT!r})\n")
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        try:
            for _ in range(repeats):
                floor_runs.append(time_one(browser, str(floor_script), "/", _FLOOR_DRAWN, FLOOR_TEXT, env, Path(tmp)))
                app_runs.append(time_one(browser, "app/main.py", link, _PLOT_DRAWN, None, env, Path(tmp)))
                if before is not None:
                    before_runs.append(time_one(browser, "app/main.py", link, _PLOT_DRAWN, None, env, Path(tmp),
                                                cwd=Path(before)))
        finally:
            browser.close()
    floor = statistics.median(r["total_s"] for r in floor_runs)
    app = statistics.median(r["total_s"] for r in app_runs)
    res = {"link": link, "repeats": repeats, "floor": floor_runs, "app": app_runs, "floor_median_s": floor,
           "app_median_s": app, "ratio": app / floor}
    if before is not None:
        b = statistics.median(r["total_s"] for r in before_runs)
        res.update(before_root=str(before), before=before_runs, before_median_s=b, before_ratio=b / floor)
    return res


def format_result(res: dict) -> str:
    before = res.get("before")
    lines = [f"cold start, launch to first drawn content, {res['repeats']} interleaved repeats",
             f"{'run':>4}  {'floor (s)':>10}  {'app (s)':>10}  {'app healthy (s)':>16}"
             + (f"  {'before (s)':>10}" if before else "")]
    for i, (f, a) in enumerate(zip(res["floor"], res["app"], strict=True)):
        bad = a["exception"] or (before and before[i]["exception"])
        lines.append(f"{i + 1:>4}  {f['total_s']:>10.2f}  {a['total_s']:>10.2f}  {a['healthy_s']:>16.2f}"
                     + (f"  {before[i]['total_s']:>10.2f}" if before else "")
                     + ("  (a page showed an exception)" if bad else ""))
    lines.append(f"median floor {res['floor_median_s']:.2f} s, app {res['app_median_s']:.2f} s ({res['link']}), "
                 f"ratio {res['ratio']:.2f} (target <= 1.5)")
    if before:
        lines.append(f"before ({res['before_root']}): median {res['before_median_s']:.2f} s, "
                     f"ratio {res['before_ratio']:.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m analysis.bench.app_start", description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="interleaved floor/app pairs (default 3)")
    ap.add_argument("--link", default=DEFAULT_LINK, help=f"the page opened first (default {DEFAULT_LINK})")
    ap.add_argument("--pretrained", default=None, help="folder of pretrained checkpoints (default: the app's)")
    ap.add_argument("--json", default=None, help="also write the result as JSON to this file")
    ap.add_argument("--before", default=None, metavar="ROOT",
                    help="also time app/main.py of the checkout at ROOT (e.g. a git worktree of the previous "
                         "commit), interleaved, as the baseline of a change")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    if args.before:
        try:
            check_before(args.before)
        except ValueError as e:
            ap.error(str(e))
    if not os.path.exists(CHROMIUM):
        print(f"needs Chromium at {CHROMIUM}", file=sys.stderr)
        return 2
    res = measure(args.repeats, args.link, args.pretrained, args.before)
    print(format_result(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
