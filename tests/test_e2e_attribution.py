"""Real-browser test: a foreign (official) whole model and one official layer through the Attribution page with the
user's own data file. `streamlit run app/main.py` on a free port, headless Chromium through Playwright (the
fixtures and helpers follow tests/test_e2e.py). Screenshots go to test-artifacts/.

- The genuine state-spaces v4 Lightning SGConv checkpoint (tests/data/sgconv-lightning, continuous input of
  d_input = 2, one output per sequence), opened by link: no task of ours fits, the page says so; the fixture
  input and output uploaded as a .npz; integrated gradients drawn, equal to `analysis.attribution.attribute` on
  the same example, with no exception.
- One official SGConv layer ((B, H, L) -> (B, H, L)): no task fits (one sentence), a (B, H, L) file given by path,
  attribution drawn; a file of the wrong shape gives one error naming the expected shape.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from browser import no_exception, playwright_or_skip, settle, shot, wait_plots_or_exception
from official_layer import sgconv_layer_state

from analysis.bench.app_start import streamlit_server

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
FIX = REPO / "tests" / "data" / "sgconv-lightning"

playwright_or_skip()  # skips this module without Chromium or playwright

H_LAYER = 8


def _official_layer(path: Path) -> None:
    """One official SGConv layer (gconv.py's keys: kernel_list, multiplier, kernel_norm, D, output_linear.0)."""
    torch.save(sgconv_layer_state(H_LAYER), path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """(pretrained folder with the official checkpoint and one layer, the data folder)."""
    folder = tmp_path_factory.mktemp("pretrained")
    shutil.copy(FIX / "gconv_pipeline_last.ckpt", folder / "gconv_pipeline_last.ckpt")
    _official_layer(folder / "gconv_layer.pt")
    data = tmp_path_factory.mktemp("data")
    np.savez(data / "adding_examples.npz", x=np.load(FIX / "gconv_pipeline_input_B2_L1024_D2.npy"),
             y=np.load(FIX / "gconv_pipeline_output.npy"))
    np.save(data / "layer_features.npy",
            np.random.default_rng(0).standard_normal((2, H_LAYER, 256)).astype(np.float32))
    np.save(data / "wrong.npy", np.zeros((2, 256, 1), np.float32))
    return folder, data


@pytest.fixture(scope="module")
def server(files, tmp_path_factory):
    folder, _ = files
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", KERNELSCOPE_PRETRAINED=str(folder),
               KERNELSCOPE_UPLOADS=str(tmp_path_factory.mktemp("uploads")), PYTHONUNBUFFERED="1")
    with streamlit_server("app/main.py", env, tmp_path_factory.mktemp("streamlit") / "server.log") as (url, *_):
        yield url


# ---------------------------------------------------------------------------------------------------- helpers
def plot_trace(pg, title_part: str, name: str) -> list[float] | None:
    """The y values of the trace `name` in the plot whose title contains `title_part`."""
    return pg.evaluate("""([tp, name]) => {
        for (const p of document.querySelectorAll('.js-plotly-plot')) {
            const t = p.layout && p.layout.title ? (p.layout.title.text || '') : '';
            if (!t.includes(tp) || !p._fullData) continue;
            for (const tr of p._fullData) if (tr.name === name) return Array.from(tr.y);
        }
        return null; }""", [title_part, name])


def selectbox_options(pg, label: str) -> list[str]:
    box = pg.locator('[data-testid="stSelectbox"]').filter(has_text=label).first
    box.click()
    opts = [t.strip() for t in pg.get_by_role("option").all_inner_texts()]
    pg.keyboard.press("Escape")
    return opts


def run_attribution(pg) -> None:
    pg.get_by_role("button", name="Run integrated gradients").click()
    settle(pg)
    wait_plots_or_exception(pg, 2, timeout=120)
    no_exception(pg, "attribution after run")
    pg.get_by_text("Convergence δ").first.wait_for()


# ---------------------------------------------------------------------------------------------------- tests
def test_foreign_whole_model_with_uploaded_data(server, page, files):
    from analysis.attribution import attribute
    from sgconv_core import load

    folder, data = files
    pg = page
    pg.goto(f"{server}/attribution?model=gconv_pipeline_last")
    settle(pg)
    no_exception(pg, "attribution page with the official model")
    pg.get_by_text("takes (B, L, 2) float (continuous input, d_input = 2)").first.wait_for()
    pg.get_by_text("No task of ours fits gconv").first.wait_for()
    assert selectbox_options(pg, "Examples from") == ["Data file (yours)"]
    pg.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files(
        str(data / "adding_examples.npz"))
    settle(pg, 3.0)
    pg.get_by_text("adding_examples.npz: 2 example(s), inputs 'x' (2, 1024, 2), targets 'y' (2, 1) (nmse)"
                   ).first.wait_for()
    no_exception(pg, "after the upload")
    pg.locator('[data-testid="stNumberInput"]').filter(has_text="Example").first.locator("input").fill("1")
    pg.keyboard.press("Enter")
    settle(pg)
    run_attribution(pg)
    got = plot_trace(pg, "example 1 of adding_examples.npz", "attribution")
    assert got is not None and len(got) == 1024
    ck = load(folder / "gconv_pipeline_last.ckpt")
    want = attribute(ck, torch.from_numpy(np.load(FIX / "gconv_pipeline_input_B2_L1024_D2.npy")[1]), target=0,
                     n_steps=32, internal_batch_size=10)
    np.testing.assert_allclose(got, want.attr, rtol=1e-4, atol=1e-6 * np.abs(want.attr).max())
    target = float(np.load(FIX / "gconv_pipeline_output.npy")[1, 0])
    pg.get_by_text(f"Target of this example: {target:.4g}").first.wait_for()
    shot(pg, "20-attribution-official-model-own-data")


def test_one_official_layer_with_data_by_path(server, page, files):
    _, data = files
    pg = page
    pg.goto(f"{server}/attribution?model=gconv_layer")
    settle(pg)
    no_exception(pg, "attribution page with one layer")
    pg.get_by_text("a single layer takes features (B, 8, L) float").first.wait_for()
    box = pg.get_by_label("…or its path on this machine")
    box.fill(str(data / "wrong.npy"))
    box.press("Enter")
    settle(pg)
    pg.get_by_text("has shape (2, 256, 1) float32; the layer takes (B, 8, L) float").first.wait_for()
    no_exception(pg, "a data file of the wrong shape")
    box.fill(str(data / "layer_features.npy"))
    box.press("Enter")
    settle(pg)
    pg.get_by_text("layer_features.npy: 2 example(s), inputs '(the array)' (2, 8, 256), no targets").first.wait_for()
    run_attribution(pg)
    got = plot_trace(pg, "example 0 of layer_features.npy", "attribution")
    assert got is not None and len(got) == 256
    a = np.abs(np.asarray(got, dtype=float))
    assert a[:255].max() > 0  # the last position's output (default) reads the whole causal past
    shot(pg, "21-attribution-official-layer")
