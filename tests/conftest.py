"""Shared fixtures: the app tests' (tests/test_app*.py, tests/test_e2e*.py) and one for training tests.

- ``app_models_dir``: a folder of tiny kernelscope checkpoints (SGConv on the delay task, S4D and S4 on digits;
  d_model 8, 2 layers, l_max 256), built once per session with ``sgconv_core.save``.
- ``app_env``: points the app's pretrained folder at those checkpoints and its upload folder at a tmp dir.
- ``browser`` (one headless Chromium per test module, `analysis.bench.app_start`'s path and flags) and ``page``
  (a fresh browser context, i.e. a new Streamlit session, per test) for the real-browser tests.
- ``one_torch_thread``: torch on one thread for the test (tiny training runs are faster so on 2 shared cores).
- an autouse fixture that clears Streamlit's process-global caches (and analysis.extract's) around every app
  test, so AppTest instances never see each other's cached objects. Other test modules are left alone.
"""
from __future__ import annotations

import pytest

APP_MODULE_PREFIXES = ("test_app", "test_e2e")

#: (file stem, family, kernel args, task, task params): what ``app_models_dir`` holds.
APP_FIXTURE_MODELS = (
    ("delay-sgconv", "sgconv", {"kernel_dim": 16}, "delay", {"L": 256, "lag": 64, "n_train": 32, "n_val": 16,
                                                              "n_test": 16}),
    ("digits-s4d", "s4d", {"d_state": 16}, "digits", {"L": 256, "n_train": 64, "n_val": 20, "n_test": 20}),
    ("digits-s4", "s4", {"d_state": 16}, "digits", {"L": 256, "n_train": 64, "n_val": 20, "n_test": 20}),
)


def _is_app_test(request) -> bool:
    name = getattr(request.module, "__name__", "").rsplit(".", 1)[-1]
    return name.startswith(APP_MODULE_PREFIXES)


@pytest.fixture(autouse=True)
def _clear_app_caches(request):
    """Clear st.cache_data / st.cache_resource / analysis.extract's cache before and after each app test."""
    if not _is_app_test(request):
        yield
        return

    def clear():
        import streamlit as st

        st.cache_data.clear()
        st.cache_resource.clear()
        try:
            from analysis.extract import clear_cache
        except ImportError:
            return
        clear_cache()

    clear()
    yield
    clear()


@pytest.fixture(scope="session")
def app_models_dir(tmp_path_factory):
    """A folder with tiny SGConv / S4D / S4 kernelscope checkpoints and their model cards."""
    import torch

    import sgconv_core
    from sgconv_core import ModelConfig, SequenceModel

    out = tmp_path_factory.mktemp("app-pretrained")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        for stem, family, kargs, task, tparams in APP_FIXTURE_MODELS:
            seq = task == "delay"
            cfg = ModelConfig(d_input=1, d_output=1 if seq else 10, d_model=8, n_layers=2, kernel=family,
                              kernel_args=dict(kargs), l_max=256, pool="none" if seq else "mean")
            card = {"name": stem, "task": task, "task_params": dict(tparams), "task_seed": 0, "family": family,
                    "metric": "nmse" if seq else "accuracy", "test_value": 0.5, "notes": "app test fixture"}
            sgconv_core.save(SequenceModel(cfg), out / f"{stem}.safetensors", card)
    return out


@pytest.fixture
def app_env(app_models_dir, tmp_path, monkeypatch):
    """Environment for an app test: pretrained folder = the fixture checkpoints, uploads into tmp."""
    monkeypatch.setenv("KERNELSCOPE_PRETRAINED", str(app_models_dir))
    monkeypatch.setenv("KERNELSCOPE_UPLOADS", str(tmp_path / "uploads"))
    return app_models_dir


@pytest.fixture
def one_torch_thread():
    """torch.set_num_threads(1) for the test, restored after it."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (tests/browser.py's `playwright_or_skip`), launched before a module's server so that a
    cold start measured there does not include the browser's."""
    from browser import playwright_or_skip

    from analysis.bench.app_start import CHROMIUM, LAUNCH_ARGS

    with playwright_or_skip()() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A fresh browser context (a new Streamlit session) per test."""
    context = browser.new_context(viewport={"width": 1400, "height": 1600})
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    yield pg
    context.close()
