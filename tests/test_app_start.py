"""Cold start of the app (app/main.py, app/store/runtime.py, analysis/bench/app_start.py), without a browser:

- ``streamlit run app/main.py`` serves the st.App that app/main.py defines (Streamlit finds it in the source), and
  importing app/main.py as that module (what the server does once, at start) starts the warm-up and draws nothing;
- the warm-up never imports while a script run is active, and a script run never starts while it imports (a
  module half-imported by another thread broke plotly: "partially initialized module 'pandas'");
- the st.App's lifespan opens a browser exactly when ``streamlit run`` would;
- the bench's result table and its ``--before`` baseline.

The browser cold start itself: tests/test_e2e.py (test_cold_start_link_to_kernels, test_cold_start_bench_runs).
"""
from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from analysis.bench import app_start
from app.store import runtime

REPO = Path(__file__).resolve().parents[1]
MAIN = REPO / "app" / "main.py"


# ---------------------------------------------------------------------------------------------------- the st.App
def test_streamlit_run_finds_the_app():
    from streamlit.web.server.app_discovery import discover_asgi_app

    found = discover_asgi_app(MAIN)
    assert found.is_asgi_app and found.import_string == "main:app", found


def test_server_import_of_main_starts_the_warm_up_and_draws_nothing():
    """What `streamlit run app/main.py` does at server start: app/ first on sys.path, ``import main``."""
    code = (
        "import sys, threading; sys.path.insert(0, sys.argv[1]); import main\n"
        "import streamlit as st\n"
        "assert isinstance(main.app, st.App), type(main.app)\n"
        "print(main.app.script_path)\n"
        "print(sorted(t.name for t in threading.enumerate() if t.name.startswith('kernelscope')))\n"
        "print(hasattr(main, 'page'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(REPO / "app")], capture_output=True, text=True,
                         timeout=120, cwd=str(REPO / "app"))
    assert out.returncode == 0, out.stderr[-3000:]
    script, threads, page = out.stdout.split("\n")[:3]
    assert Path(script).resolve() == MAIN.resolve()
    assert threads == "['kernelscope-warm-up']"  # started by the import, before any session
    assert page == "False"  # the frame (navigation, pages) runs only as a session's script
    assert "Traceback" not in out.stderr


def test_first_run_prefetches_plotly_and_removes_it(app_env):
    """A session's first run (AppTest runs app/main.py as __main__) of a Kernels link: the page's one titled plot,
    and the blank plotly chart sent first (`runtime.prefetch_plotly`) is gone at the end; a rerun sends none."""
    from apptest import MAIN, charts, ok
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(MAIN, default_timeout=60)
    at.query_params["model"] = ["delay-sgconv"]
    ok(at.switch_page("views/kernels.py").run())
    figs = charts(at)
    assert len(figs) == 1 and "delay-sgconv" in figs[0]["layout"]["title"]["text"], [f["layout"] for f in figs]
    assert at.session_state["ks_plotly_prefetched"]
    ok(at.run())
    assert len(charts(at)) == 1


# ---------------------------------------------------------------------------------------------------- imports vs runs
@pytest.fixture
def fresh_turn(monkeypatch):
    """runtime's run/import exclusion with fresh state, and `_import` replaced by a recorder that blocks until
    released: [(event, name, time)]."""
    monkeypatch.setattr(runtime, "_turn", threading.Condition())
    monkeypatch.setattr(runtime, "_active_runs", 0)
    monkeypatch.setattr(runtime, "_importing", False)
    log, release = [], threading.Event()

    def fake_import(names):
        log.append(("import start", tuple(names), time.perf_counter()))
        release.wait(10)
        log.append(("import end", tuple(names), time.perf_counter()))

    monkeypatch.setattr(runtime, "_import", fake_import)
    return log, release


def test_warm_up_waits_for_an_active_script_run(fresh_turn):
    log, release = fresh_turn
    release.set()
    worker = threading.Thread(target=runtime._import_group, args=(("x",), 10.0))
    with runtime.script_run():
        worker.start()
        time.sleep(0.3)
        assert log == []  # not while the run is active
        t_run_end = time.perf_counter()
    worker.join(10)
    assert [e[0] for e in log] == ["import start", "import end"]
    assert log[0][2] >= t_run_end


def test_script_run_waits_for_an_import_in_progress(fresh_turn):
    log, release = fresh_turn
    worker = threading.Thread(target=runtime._import_group, args=(("x",), 10.0))
    worker.start()
    while not log:
        time.sleep(0.01)
    entered = []

    def run():
        with runtime.script_run():
            entered.append(time.perf_counter())

    runner = threading.Thread(target=run)
    runner.start()
    time.sleep(0.3)
    assert entered == []  # waits while the warm-up imports
    release.set()
    runner.join(10)
    worker.join(10)
    assert len(entered) == 1 and entered[0] >= log[1][2]
    assert runtime._active_runs == 0 and not runtime._importing


def test_script_run_gives_up_waiting_after_its_timeout(fresh_turn):
    log, release = fresh_turn
    worker = threading.Thread(target=runtime._import_group, args=(("x",), 10.0))
    worker.start()
    while not log:
        time.sleep(0.01)
    t0 = time.perf_counter()
    with runtime.script_run(wait_s=0.2):
        waited = time.perf_counter() - t0
    release.set()
    worker.join(10)
    assert 0.15 < waited < 2.0


def test_import_all_order_and_gates(monkeypatch):
    """BASICS, then FIRST at once; PAGES only once the runtime is ready; LATER only LATER_DELAY_S after the first
    page."""
    monkeypatch.setattr(runtime, "_turn", threading.Condition())
    monkeypatch.setattr(runtime, "_active_runs", 0)
    monkeypatch.setattr(runtime, "_importing", False)
    for ev in ("_basics", "_runtime_ready", "_first_page"):
        monkeypatch.setattr(runtime, ev, threading.Event())
    done = []
    monkeypatch.setattr(runtime, "_import", lambda names: done.append(tuple(names)))
    worker = threading.Thread(target=runtime._import_all, args=(("b",), ("f",), ("p",), ("l",), 10.0))
    worker.start()
    time.sleep(0.3)
    assert done == [("b",), ("f",)] and runtime._basics.is_set()
    runtime._runtime_ready.set()
    time.sleep(0.3)
    assert done == [("b",), ("f",), ("p",)]
    monkeypatch.setattr(runtime, "LATER_DELAY_S", 0.5)
    runtime.first_page_done()
    time.sleep(0.25)
    assert done == [("b",), ("f",), ("p",)]
    worker.join(10)
    assert done == [("b",), ("f",), ("p",), ("l",)]


def test_real_warm_up_modules_exist():
    import importlib.util

    for name in (*runtime.BASICS, *runtime.FIRST, *runtime.PAGES, *runtime.LATER):
        assert importlib.util.find_spec(name) is not None, name


# ---------------------------------------------------------------------------------------------------- lifespan
@pytest.mark.parametrize("headless", [True, False])
def test_lifespan_opens_a_browser_unless_headless(monkeypatch, headless):
    from streamlit import cli_util, config

    opened = []
    monkeypatch.setattr(cli_util, "open_browser", opened.append)
    real = config.get_option
    monkeypatch.setattr(config, "get_option", lambda key: headless if key == "server.headless" else real(key))
    monkeypatch.setattr(runtime, "_runtime_ready", threading.Event())

    async def enter():
        async with runtime.serving(None):
            return runtime._runtime_ready.is_set()

    assert asyncio.run(enter())
    assert opened == ([] if headless else [opened[0]])
    if not headless:
        assert opened[0].startswith("http://") and opened[0].rstrip("/").endswith(str(real("server.port")))


# ---------------------------------------------------------------------------------------------------- the bench
def _run(total, healthy=0.5, exception=False):
    return {"total_s": total, "healthy_s": healthy, "exception": exception}


def test_bench_table_with_a_baseline():
    res = {"link": "/kernels?model=m", "repeats": 2, "floor": [_run(1.0), _run(2.0)],
           "app": [_run(3.0), _run(2.0, exception=True)], "floor_median_s": 1.5, "app_median_s": 2.5,
           "ratio": 2.5 / 1.5, "before_root": "/tmp/b", "before": [_run(4.0), _run(6.0)], "before_median_s": 5.0,
           "before_ratio": 5.0 / 1.5}
    text = app_start.format_result(res)
    lines = text.splitlines()
    assert "before (s)" in lines[1]
    assert lines[2].split() == ["1", "1.00", "3.00", "0.50", "4.00"]
    assert lines[3].split()[:5] == ["2", "2.00", "2.00", "0.50", "6.00"] and "exception" in lines[3]
    assert "ratio 1.67" in lines[4] and "before (/tmp/b): median 5.00 s, ratio 3.33" in lines[5]
    del res["before"]
    assert "before" not in app_start.format_result(res)


def test_bench_refuses_a_before_without_the_app(tmp_path, capsys):
    with pytest.raises(ValueError, match="no app/main.py"):
        app_start.measure(1, before=tmp_path)
    with pytest.raises(SystemExit):
        app_start.main(["--before", str(tmp_path)])
    assert "no app/main.py" in capsys.readouterr().err
