"""The Principles page through AppTest: with three pretrained zoo models (one per family) it shows, per model, the
two sentences and the per-layer table that `analysis.verdict.verdict` gives for the same checkpoint and length;
?L= below the fit's minimum shows the warning instead of numbers."""
from __future__ import annotations

import pytest
from apptest import MAIN, PRE, ok

import sgconv_core
from analysis.verdict import MIN_VERDICT_LENGTH, verdict
from app.ui import plain

STEMS = ["digits-sgconv", "digits-s4d", "digits-s4"]


@pytest.fixture
def env(tmp_path, monkeypatch):
    if not all((PRE / f"{s}.safetensors").is_file() for s in STEMS):
        pytest.skip("the pretrained digits models are not in this checkout")
    monkeypatch.setenv("KERNELSCOPE_PRETRAINED", str(PRE))
    monkeypatch.setenv("KERNELSCOPE_UPLOADS", str(tmp_path / "uploads"))


def page(**params):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(MAIN, default_timeout=90)
    at.query_params["model"] = STEMS
    for k, v in params.items():
        at.query_params[k] = v
    return ok(at.switch_page("views/principles.py").run())


def test_principles_page_shows_the_verdict_of_each_model(env):
    at = page()
    assert at.title[0].value == "Principles"
    assert [h.value for h in at.subheader] == STEMS
    text = "\n".join(m.value for m in at.markdown)
    tables = at.dataframe
    assert len(tables) == len(STEMS)
    for stem, table in zip(STEMS, tables, strict=True):
        ck = sgconv_core.load(PRE / f"{stem}.safetensors")
        v = verdict(ck, ck.default_length)
        for sentence in (v.principle1, v.principle2):
            assert plain(sentence) in text, sentence
        df = table.value
        assert list(df["layer"]) == [r["layer"] for r in v.rows()]
        assert list(df["decay"]) == [r["verdict"] for r in v.rows()]
        assert list(df["growth in L"]) == [r["growth"] for r in v.rows()]
        assert list(df["params at 16k"]) == [f"{r['params_L16384']:,}" for r in v.rows()]
    assert "Principle 1: sub-linear — 2 layers, kernel params logarithmic in L" in text  # digits-sgconv
    assert "Principle 1: sub-linear — 2 layers, kernel params constant in L" in text  # the SSMs
    assert not at.error


def test_a_short_length_warns_instead_of_numbers(env):
    at = page(L="64")
    assert at.checkbox(key="v-own-L").value is False and at.number_input(key="v-L").value == 64
    for table in at.dataframe:
        assert set(table.value["decay"]) == {f"L too short to fit (need >= {MIN_VERDICT_LENGTH})"}
    text = "\n".join(m.value for m in at.markdown)
    assert text.count(plain(f"Principle 2: L = 64 too short to fit (need >= {MIN_VERDICT_LENGTH})")) == len(STEMS)
