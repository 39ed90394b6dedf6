"""What the real-browser tests share: waiting for a Streamlit run to finish, failing on an exception box,
waiting for plots, and whole-page screenshots into test-artifacts/ (the launcher is
`analysis.bench.app_start.streamlit_server`)."""
from __future__ import annotations

import os
from pathlib import Path

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"

#: True once the app's script run is over and the browser is connected.
IDLE = ('() => { const a = document.querySelector(\'[data-testid="stApp"]\');'
        ' return a && a.getAttribute("data-test-script-state") === "notRunning"'
        ' && a.getAttribute("data-test-connection-state") === "CONNECTED"; }')


def settle(pg, started: float = 1.0) -> None:
    """Wait for the script run an action triggered (if any) to finish and the app to be connected."""
    try:
        pg.wait_for_function('() => { const a = document.querySelector(\'[data-testid="stApp"]\');'
                             ' return a && a.getAttribute("data-test-script-state") !== "notRunning"; }',
                             timeout=started * 1000)
    except Exception:  # noqa: BLE001 - the run may already be over (or nothing was triggered)
        pass
    pg.wait_for_function(IDLE, timeout=90_000)
    pg.wait_for_timeout(150)  # let the last deltas render


def no_exception(pg, where: str) -> None:
    n = pg.locator('[data-testid="stException"]').count()
    assert n == 0, f"{where}: {n} exception box(es): {pg.locator('[data-testid=stException]').first.inner_text()}"


def wait_plots_or_exception(pg, n: int, timeout: float = 90.0) -> None:
    """Wait until n titled plots are drawn or the page shows an exception (which fails at once, not on a timeout)."""
    pg.wait_for_function("(n) => document.querySelector('[data-testid=\"stException\"]') || [...document"
                         ".querySelectorAll('.js-plotly-plot')].filter(p => p.layout && p.layout.title"
                         " && p.layout.title.text && p.querySelector('.main-svg')).length >= n",
                         arg=n, timeout=timeout * 1000, polling="raf")


def shot(pg, name: str) -> Path:
    """Screenshot of the whole page into test-artifacts/<name>.png: Streamlit scrolls inside its own container, so
    the viewport is made as tall as the page's content (at least 900 px) for the shot, then set back."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    size = pg.viewport_size
    height = pg.evaluate("() => { const b = document.querySelector('[data-testid=\"stMainBlockContainer\"]');"
                         " return b ? Math.ceil(b.getBoundingClientRect().height) + 120 : 0; }")
    height = max(900, min(int(height), 6000))
    if height != size["height"]:
        pg.set_viewport_size({"width": size["width"], "height": height})
        pg.wait_for_timeout(400)  # let plotly and the tables re-layout
    try:
        pg.screenshot(path=str(path))
    finally:
        pg.set_viewport_size(size)
    return path


def playwright_or_skip():
    """Playwright's ``sync_playwright``, or skip the calling test module with the reason (no Debian Chromium at
    `analysis.bench.app_start.CHROMIUM`, or no playwright package). Call at module level."""
    import pytest

    from analysis.bench.app_start import CHROMIUM

    if not os.path.exists(CHROMIUM):
        pytest.skip(f"real-browser tests need Debian's Chromium at {CHROMIUM} (apt-get install chromium)",
                    allow_module_level=True)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - depends on the environment
        pytest.skip("real-browser tests need the playwright Python package (pip install playwright)",
                    allow_module_level=True)
    return sync_playwright
