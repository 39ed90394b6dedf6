"""Real-browser test of the app: `streamlit run app/main.py` driven by headless Chromium through Playwright.

Opens the documented link to the Kernels page (app/main.py's docstring) as a fresh server's first request;
loads two checkpoints from the pretrained folder (the repository's own when it holds at least two, else the tiny
fixture checkpoints) and reloads (F5); compares kernels, switches layer, visits every page, and checks that no
page shows a Python exception and that the plots hold the kernels' data. Screenshots go to test-artifacts/.
Prints the cold-start time (server start to the first kernel plot) and the layer-switch time.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from browser import no_exception, playwright_or_skip, settle, shot, wait_plots_or_exception

from analysis.bench.app_start import streamlit_server

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]

playwright_or_skip()  # skips this module without Chromium or playwright

EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth")
#: The navigation's page titles, in order (Streamlit's older folder-based navigation would list file names).
NAV_TITLES = ["Models", "Kernels", "Decay", "Frequency", "Parameters", "Principles", "Attribution", "Ablation", "Interventions"]


def _pretrained_folder(fixture_dir: Path) -> tuple[Path, list[str]]:
    """The repository's pretrained folder when it holds an SGConv and an SSM model of one task with two or more
    layers (the walk switches layer), preferring digits; else the fixture folder."""
    from sgconv_core.zoo_table import read_card

    own = REPO / "pretrained"
    files = sorted(p.name for p in own.glob("*.safetensors")) if own.is_dir() else []
    cards = {}
    for f in files:
        try:
            cards[f] = read_card(str(own / f))
        except ValueError:
            continue
    deep = [f for f, c in cards.items() if c.get("model_config", {}).get("n_layers", 0) >= 2]
    for task in ["digits"] + sorted({cards[f].get("task") for f in deep} - {"digits"}):
        sgc = [f for f in deep if cards[f].get("task") == task and cards[f].get("family") == "sgconv"]
        ssm = [f for f in deep if cards[f].get("task") == task and cards[f].get("family") in ("s4d", "s4")]
        if sgc and ssm:
            return own, [sgc[0], sorted(ssm, key=lambda f: cards[f]["family"] != "s4d")[0]]
    return fixture_dir, ["delay-sgconv.safetensors", "digits-s4d.safetensors"]


@pytest.fixture(scope="module")
def server(browser, app_models_dir, tmp_path_factory):
    """A running `streamlit run app/main.py`; yields (url, folder, two file names, start time, healthy time)."""
    folder, files = _pretrained_folder(app_models_dir)
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", KERNELSCOPE_PRETRAINED=str(folder),
               KERNELSCOPE_UPLOADS=str(tmp_path_factory.mktemp("uploads")), PYTHONUNBUFFERED="1")
    with streamlit_server("app/main.py", env, tmp_path_factory.mktemp("streamlit") / "server.log", timeout=90) as (
            url, _, t_start, t_healthy):
        yield url, folder, files, t_start, t_healthy


#: URLs opened on the module's server, in order: the cold-start test checks that it opens the first one.
OPENED: list[str] = []


def open_url(pg, url: str) -> None:
    OPENED.append(url)
    pg.goto(url)


TIMINGS: dict[str, float] = {}


def report_timings(prefix: str = ""):
    print("\n" + "\n".join(f"e2e timing: {k}: {v:.3f}" for k, v in TIMINGS.items() if k.startswith(prefix)))


# ---------------------------------------------------------------------------------------------------- helpers
def nav_titles(pg) -> list[str]:
    """The sidebar navigation's page titles (the text after each link's icon)."""
    return [t.strip().splitlines()[-1].strip() for t in pg.locator('[data-testid="stSidebarNav"] a').all_inner_texts()]


def goto(pg, title: str) -> None:
    pg.locator('[data-testid="stSidebarNav"] a').filter(has_text=title).first.click()
    settle(pg)


def selected(pg, label: str) -> str:
    """The shown value of the selectbox with this label."""
    box = pg.locator('[data-testid="stSelectbox"]').filter(has_text=label).first
    return box.locator('input[role="combobox"]').input_value().strip()


def length_box(pg) -> str | None:
    """The value in the 'Length L (taps)' box, or None when the box is not shown (each model at its l_max)."""
    box = pg.locator('[data-testid="stNumberInput"]').filter(has_text="Length L").first
    return box.locator("input").input_value() if box.count() else None


def plot_data(pg, index: int = 0) -> list[dict]:
    """name, x, y of every trace of the index-th plotly chart on the page (from the decoded _fullData)."""
    return pg.evaluate("""(i) => {
        const plots = document.querySelectorAll('.js-plotly-plot');
        if (plots.length <= i || !plots[i]._fullData) return null;
        return plots[i]._fullData.map(t => ({name: t.name, type: t.type,
            x: t.x ? Array.from(t.x) : null, y: t.y ? Array.from(t.y) : null}));
    }""", index)


def plot_title(pg, index: int = 0) -> str:
    text = pg.evaluate("""(i) => { const p = document.querySelectorAll('.js-plotly-plot')[i];
        return p && p.layout && p.layout.title ? (p.layout.title.text || '') : ''; }""", index) or ""
    return re.sub(r"<[^>]+>", "", text)  # Streamlit's theme wraps titles in <b>


def wait_plots(pg, n: int = 1, timeout: float = 60.0) -> None:
    """Wait until n titled plotly charts are drawn (the app's untitled blank first chart does not count)."""
    pg.wait_for_function("(n) => [...document.querySelectorAll('.js-plotly-plot')].filter(p => p.layout"
                         " && p.layout.title && p.layout.title.text && p.querySelector('.main-svg')).length >= n",
                         arg=n, timeout=timeout * 1000, polling="raf")


def choose(pg, label: str, option: str) -> None:
    """Pick an option of the selectbox with this label."""
    box = pg.locator('[data-testid="stSelectbox"]').filter(has_text=label).first
    box.click()
    pg.get_by_role("option", name=option, exact=True).first.click()


#: In the page: from the next user event (click, or Enter in a box) to the frame where every titled plot passes
#: `done`; the time lands in window.__ksLatency (ms). The event's own timestamp is the start, so the time the
#: test driver takes to deliver a click is left out: this is what a user waits.
_ARM = """(arg) => {
    window.__ksLatency = null;
    let t0 = null;
    const start = (e) => { if (t0 === null) t0 = e.timeStamp; };
    document.addEventListener('click', start, {capture: true, once: true});
    document.addEventListener('keydown', start, {capture: true, once: true});
    const done = (p) => arg.kind === 'title' ? (p.layout.title.text || '').includes(arg.want)
                                             : p._fullData.some(t => t.name === arg.want);
    const check = () => {
        const ps = [...document.querySelectorAll('.js-plotly-plot')].filter(p => p.layout && p.layout.title
                                                                         && p.layout.title.text && p._fullData);
        if (t0 !== null && ps.length && ps.every(done)) { window.__ksLatency = performance.now() - t0; return; }
        requestAnimationFrame(check);
    };
    requestAnimationFrame(check);
}"""


def _latency(pg, act, kind: str, want: str) -> tuple[float, float]:
    """(seconds a user waits, seconds including the driver's click) for `act()` to show `want` in every plot."""
    pg.evaluate(_ARM, {"kind": kind, "want": want})
    t0 = time.perf_counter()
    act()
    pg.wait_for_function("() => window.__ksLatency !== null", timeout=60_000, polling="raf")
    wall = time.perf_counter() - t0
    user = pg.evaluate("() => window.__ksLatency") / 1000
    settle(pg, 0.05)
    return user, wall


def timed_layer_switch(pg, option: str) -> tuple[float, float]:
    """Choose `option` in the 'Layer' dropdown: (user, wall) seconds until every plot's title shows it."""
    pg.locator('[data-testid="stSelectbox"]').filter(has_text="Layer").first.click()
    opt = pg.get_by_role("option", name=option, exact=True).first
    opt.wait_for()
    return _latency(pg, opt.click, "title", option)


def timed_channel_switch(pg, h: int) -> tuple[float, float]:
    """Enter feature h (Enter in the number box): (user, wall) seconds until every plot draws the trace 'h=<h>'."""
    box = pg.locator('[data-testid="stNumberInput"]').filter(has_text="Feature h").first.locator("input")
    box.fill(str(h))
    return _latency(pg, lambda: box.press("Enter"), "trace", f"h={h}")


# ---------------------------------------------------------------------------------------------------- cold start
def test_cold_start_link_to_kernels(server, page):
    """A fresh server whose FIRST request is a link to the Kernels page with two pretrained models and the main
    choices (layer 1, one length L = 200 for both): the page runs inside app/main.py (its navigation and sidebar,
    no exception) and its widgets and plots show the linked choices; time to the first plot, then the latency of
    switching layer and channel. Runs first (module order), while the server is cold."""
    url, folder, files, t_start, t_healthy = server
    assert not OPENED, f"this test must open the server's first page; opened before: {OPENED}"
    pg = page
    stems = [f.rsplit(".", 1)[0] for f in files]
    open_url(pg, f"{url}/kernels?model={stems[0]}&model={stems[1]}&layer=1&L=200")
    wait_plots_or_exception(pg, 2)
    no_exception(pg, "kernels from a link on a fresh server")
    wait_plots(pg, 2)
    t_plot = time.perf_counter()
    TIMINGS["cold start: server start to first kernel plot (s)"] = t_plot - t_start
    TIMINGS["  of which server start to /_stcore/health ok (s)"] = t_healthy - t_start
    TIMINGS["  of which page load to first kernel plot (s)"] = t_plot - t_healthy
    settle(pg)
    no_exception(pg, "kernels from a link")
    titles = [plot_title(pg, i) for i in range(2)]
    assert all("layers.1" in t and "L=200" in t for t in titles), titles
    assert [t.split(" ·")[0] for t in titles] == stems, titles
    assert selected(pg, "Layer") == "layers.1" and length_box(pg) == "200", (selected(pg, "Layer"), length_box(pg))
    assert len(plot_data(pg, 0)[0]["y"]) == 200  # the kernel at the linked length
    assert nav_titles(pg) == NAV_TITLES, nav_titles(pg)  # app/main.py's navigation, not a folder listing
    assert pg.locator('[data-testid="stSidebarNav"] a[aria-current="page"]').inner_text().strip().endswith("Kernels")
    assert "Runtime" in sidebar_models(pg) and all(s in sidebar_models(pg) for s in stems)
    shot(pg, "00-kernels-cold-link")

    layer = np.array([timed_layer_switch(pg, o) for o in ("layers.0", "layers.1") * 3])
    chan = np.array([timed_channel_switch(pg, h) for h in (3, 7, 1, 0, 5, 0)])
    no_exception(pg, "kernels after switching")
    for what, t in (("layer", layer), ("channel", chan)):
        TIMINGS[f"{what} switch, user event to plot, median of 6 (s)"] = float(np.median(t[:, 0]))
        TIMINGS[f"{what} switch, user event to plot, max of 6 (s)"] = float(np.max(t[:, 0]))
        TIMINGS[f"{what} switch, incl. the driver's click, median of 6 (s)"] = float(np.median(t[:, 1]))
    report_timings()
    # generous sanity bounds only (shared 2-core CI machines); the targets (5 s, 0.3 s) are reported above
    assert TIMINGS["cold start: server start to first kernel plot (s)"] < 60
    assert TIMINGS["layer switch, user event to plot, median of 6 (s)"] < 5


# ---------------------------------------------------------------------------------------------------- reload
def load_on_models_page(pg, files) -> None:
    """Pick `files` in the Models page's pretrained multiselect and press 'Load selected'."""
    ms = pg.locator('[data-testid="stMultiSelect"]').filter(has_text="Checkpoints to load").first
    for f in files:
        ms.locator("input").first.click()
        pg.get_by_role("option", name=f, exact=True).first.click()
        settle(pg, 0.5)
    pg.keyboard.press("Escape")
    pg.get_by_role("button", name="Load selected").click()
    settle(pg)
    no_exception(pg, "models after loading")
    for f in files:
        pg.get_by_text(f"Loaded {f.rsplit('.', 1)[0]}").first.wait_for()


def sidebar_models(pg) -> str:
    return pg.locator('[data-testid="stSidebarUserContent"]').inner_text()


def test_reload_keeps_the_loaded_models(server, page):
    """Two models loaded on the Models page survive a reload (F5): the URL names them, the sidebar lists them
    after the reload, and the Kernels page (also after its own reload) plots both."""
    url, folder, files, _, _ = server
    pg = page
    stems = [f.rsplit(".", 1)[0] for f in files]
    open_url(pg, url)
    settle(pg)
    load_on_models_page(pg, files)
    pg.wait_for_url(re.compile(r"model="))
    assert [f"model={s}" in pg.url for s in stems] == [True, True], pg.url

    pg.reload()
    settle(pg)
    pg.get_by_text("Loaded models (2)").first.wait_for()
    no_exception(pg, "models after reload")
    side = sidebar_models(pg)
    assert all(s in side for s in stems), side
    shot(pg, "12-models-after-reload")

    goto(pg, "Kernels")
    wait_plots(pg, 2)
    no_exception(pg, "kernels after reload")
    assert [plot_title(pg, i).split(" ·")[0] for i in range(2)] == stems
    assert "/kernels?" in pg.url and all(f"model={s}" in pg.url for s in stems), pg.url
    pg.reload()
    wait_plots_or_exception(pg, 2)
    settle(pg)
    no_exception(pg, "kernels after its own reload")
    assert [plot_title(pg, i).split(" ·")[0] for i in range(2)] == stems
    assert nav_titles(pg) == NAV_TITLES and all(s in sidebar_models(pg) for s in stems)
    shot(pg, "13-kernels-after-reload")


def test_reload_keeps_the_choices(server, page):
    """Length L and layer chosen on the Kernels page go into the URL; a reload (F5) shows them again."""
    url, folder, files, _, _ = server
    pg = page
    stem = files[0].rsplit(".", 1)[0]
    open_url(pg, f"{url}/kernels?model={stem}")
    wait_plots(pg, 1)
    settle(pg)
    pg.get_by_text("Each model at its l_max").first.click()
    settle(pg)
    box = pg.locator('[data-testid="stNumberInput"]').filter(has_text="Length L").first.locator("input")
    box.fill("300")
    box.press("Enter")
    settle(pg)
    choose(pg, "Layer", "layers.1")
    settle(pg)
    pg.wait_for_url(re.compile(r"L=300"))
    assert "layer=1" in pg.url and f"model={stem}" in pg.url, pg.url
    pg.reload()
    wait_plots_or_exception(pg, 1)
    settle(pg)
    no_exception(pg, "kernels after reload with choices")
    assert length_box(pg) == "300" and selected(pg, "Layer") == "layers.1", (length_box(pg), selected(pg, "Layer"))
    assert "layers.1" in plot_title(pg, 0) and "L=300" in plot_title(pg, 0), plot_title(pg, 0)
    assert len(plot_data(pg, 0)[0]["y"]) == 300
    shot(pg, "14-kernels-choices-after-reload")


def test_sidebar_on_a_page_that_stops_early(server, page):
    """A page that stops before drawing (no model loaded) still shows the sidebar's Runtime / Loaded-models."""
    url, *_ = server
    pg = page
    open_url(pg, f"{url}/decay")
    pg.get_by_text("load a model on the Models page").first.wait_for()
    settle(pg)
    no_exception(pg, "decay without models")
    side = sidebar_models(pg)
    assert "Runtime" in side and "Device:" in side and "Loaded models (0)" in side, side
    shot(pg, "15-decay-no-model-sidebar")


# ---------------------------------------------------------------------------------------------------- the walk
def test_long_model_names_get_short_panel_titles(server, page, tmp_path):
    """Side by side, a long file name is shortened in the panel title (nothing clipped: the drawn title fits inside
    its plot) and the full name is the subtitle; the other panel keeps its plain title."""
    url, folder, files, _, _ = server
    pg = page
    stems = [f.rsplit(".", 1)[0] for f in files]
    long_stem = "conv_bi_state_dict_from_a_very_long_experiment_name_seed_1234"
    target = tmp_path / f"{long_stem}.safetensors"
    shutil.copyfile(Path(folder) / files[1], target)
    open_url(pg, f"{url}/kernels?model={stems[0]}&path={target}")
    wait_plots_or_exception(pg, 2)
    settle(pg)
    no_exception(pg, "kernels with a long model name")
    titles = [plot_title(pg, i) for i in range(2)]
    assert titles[0].startswith(stems[0] + " ·"), titles
    assert "…" in titles[1] and len(titles[1]) < len(long_stem), titles
    subtitle = pg.evaluate("""(i) => { const p = [...document.querySelectorAll('.js-plotly-plot')]
        .filter(p => p.layout && p.layout.title && p.layout.title.text)[i];
        return p.layout.title.subtitle ? p.layout.title.subtitle.text : ''; }""", 1)
    assert long_stem in subtitle, subtitle
    fits = pg.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')]
        .filter(p => p.layout && p.layout.title && p.layout.title.text).map(p => {
            const t = p.querySelector('.gtitle'), box = p.getBoundingClientRect(), tb = t.getBoundingClientRect();
            return tb.left >= box.left - 1 && tb.right <= box.right + 1; })""")
    assert fits == [True, True], fits
    shot(pg, "16-kernels-long-name")


def test_walkthrough(server, page, app_models_dir):
    url, folder, files, t_start, _ = server
    pg = page
    timings = TIMINGS

    open_url(pg, url)
    settle(pg)
    pg.get_by_text("Start here").first.wait_for()
    no_exception(pg, "landing")
    pg.locator('[data-testid="stDataFrame"] canvas').first.wait_for()
    shot(pg, "01-models-empty")

    # pages that need a model say so instead of failing
    goto(pg, "Kernels")
    pg.get_by_text("load a model on the Models page").first.wait_for()
    no_exception(pg, "kernels without models")
    goto(pg, "Models")

    # load two checkpoints from the pretrained folder
    load_on_models_page(pg, files)
    shot(pg, "02-models-loaded")

    # kernels: the first kernel plot
    t_nav = time.perf_counter()
    goto(pg, "Kernels")
    wait_plots(pg, 2)
    t_plot = time.perf_counter()
    timings["walk: Kernels page to plot (s)"] = t_plot - t_nav
    no_exception(pg, "kernels")
    data0 = plot_data(pg, 0)
    assert data0 and len(data0[0]["y"]) > 8, data0
    assert np.all(np.isfinite(np.asarray(data0[0]["y"], dtype=float)))
    assert "layers.0" in plot_title(pg, 0)
    shot(pg, "03-kernels-side-by-side")

    # switch layer
    timings["walk: layer switch, user event to plot (s)"] = timed_layer_switch(pg, "layers.1")[0]
    no_exception(pg, "kernels layer 1")
    data1 = plot_data(pg, 0)
    assert not np.allclose(np.asarray(data1[0]["y"], dtype=float)[:8], np.asarray(data0[0]["y"], dtype=float)[:8])
    shot(pg, "04-kernels-layer1")

    # overlay on shared axes, several channels, log-log
    pg.get_by_text("Overlay on shared axes").first.click()
    settle(pg)
    pg.get_by_text("log-log (|k|)").first.click()
    settle(pg)
    no_exception(pg, "kernels overlay")
    wait_plots(pg, 1)
    names = [t["name"] for t in plot_data(pg, 0)]
    stems = [f.rsplit(".", 1)[0] for f in files]
    assert all(any(n.startswith(s) for n in names) for s in stems), names
    shot(pg, "05-kernels-overlay-loglog")

    pg.get_by_text("all (heatmap)").first.click()
    settle(pg)
    wait_plots(pg, 2)
    no_exception(pg, "kernels heatmap")
    shot(pg, "06-kernels-heatmap")

    for title, n_plots, name in (("Decay", 1, "07-decay"), ("Frequency", 2, "08-frequency"),
                                 ("Parameters", 3, "09-parameters")):
        t0 = time.perf_counter()
        goto(pg, title)
        wait_plots(pg, n_plots)
        timings[f"walk: {title} page (s)"] = time.perf_counter() - t0
        no_exception(pg, title)
        shot(pg, name)

    goto(pg, "Attribution")
    no_exception(pg, "attribution")
    t0 = time.perf_counter()
    pg.get_by_role("button", name="Run integrated gradients").click()
    settle(pg)
    wait_plots(pg, 2)
    timings["walk: attribution run (s)"] = time.perf_counter() - t0
    no_exception(pg, "attribution after run")
    pg.get_by_text("Convergence δ").first.wait_for()
    shot(pg, "10-attribution")

    # the Ablation page joins the navigation once app/views/ablation.py exists (visit only; no sweep is started)
    if pg.locator('[data-testid="stSidebarNav"] a').filter(has_text="Ablation").count():
        goto(pg, "Ablation")
        pg.get_by_role("heading", name="Ablation").first.wait_for()
        no_exception(pg, "ablation")
        shot(pg, "11-ablation")

    report_timings("walk:")


# ---------------------------------------------------------------------------------------------------- cold start bench
@pytest.mark.slow
def test_cold_start_bench_runs(app_models_dir, tmp_path):
    """``python -m analysis.bench.app_start`` once (its own process: this module's browser holds Playwright's sync
    loop): a fresh server per run, the floor app's text and the app's first kernel plot for a deep link are drawn
    (no exception on the page); prints the times and the ratio (target <= 1.5)."""
    import json

    folder, files = _pretrained_folder(app_models_dir)
    out = tmp_path / "app_start.json"
    proc = subprocess.run([sys.executable, "-m", "analysis.bench.app_start", "--repeats", "1", "--link",
                           f"/kernels?model={files[0].rsplit('.', 1)[0]}", "--pretrained", str(folder), "--json",
                           str(out)], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_WAIT_POLICY="PASSIVE"))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    print("\n" + proc.stdout)
    res = json.loads(out.read_text())
    assert not res["app"][0]["exception"]
    assert 0 < res["floor"][0]["healthy_s"] <= res["floor_median_s"] < 60
    assert 0 < res["app"][0]["healthy_s"] <= res["app_median_s"] < 120
    assert res["ratio"] == pytest.approx(res["app_median_s"] / res["floor_median_s"])
