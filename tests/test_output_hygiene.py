"""Issue 14: key names and card text from a file are shown as text: no terminal escape codes reach the CLI,
no spreadsheet formulas in the report's CSV files, no Markdown in the app's warnings and errors."""
from __future__ import annotations

import csv

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import sgconv_core
from sgconv_core import ModelConfig, SequenceModel

EVIL = 'layers.0.\x1b[31mred=HYPERLINK("x")**bold**'


def _evil_checkpoint(tmp_path):
    m = SequenceModel(ModelConfig(d_input=1, d_output=2, d_model=4, n_layers=1, kernel="s4d",
                                  kernel_args={"d_state": 4}))
    good = tmp_path / "good.safetensors"
    sgconv_core.save(m, good)
    with safe_open(good, "pt") as f:
        meta = f.metadata()
    t = load_file(good)
    t[EVIL] = torch.zeros(1)
    bad = tmp_path / "evil.safetensors"
    save_file(t, bad, metadata=meta)
    return bad


def test_cli_error_never_prints_escape_codes(tmp_path, capsys):
    from analysis.__main__ import main

    rc = main(["report", str(_evil_checkpoint(tmp_path)), "--out", str(tmp_path / "out"), "-q", "--no-png"])
    err = capsys.readouterr().err
    assert rc == 2 and "\x1b" not in err and "\\x1b[31m" in err, err
    assert len(err.strip().splitlines()) == 1


def test_printable():
    from sgconv_core.errors import printable

    assert printable("a\x1b[31mb\nc\u202e") == "a\\x1b[31mb\\nc\\u202e"
    assert printable("plain é") == "plain é"


def test_csv_cells_are_neutralised_numbers_stay_numbers(tmp_path):
    from analysis.report_files import _write_csv

    p = tmp_path / "t.csv"
    _write_csv(str(p), [{"name": '=HYPERLINK("x")', "a": -0.5, "b": "+1", "c": "@x", "d": "-cmd", "e": "ok", "f": -3}])
    row = next(csv.DictReader(p.open()))
    assert row == {"name": '\'=HYPERLINK("x")', "a": "-0.5", "b": "'+1", "c": "'@x", "d": "'-cmd", "e": "ok",
                   "f": "-3"}


def test_app_messages_escape_markdown():
    from app.ui import plain

    assert plain("key **bold** [x](y) `c`") == "key \\*\\*bold\\*\\* \\[x\\](y) \\`c\\`"
    assert plain("evil_zip.pt: _it_") == "evil_zip.pt: \\_it\\_"
    assert "\x1b" not in plain(EVIL)


def test_app_shows_a_crafted_key_as_text(tmp_path, monkeypatch):
    from app import state
    from app.ui import plain

    res = state.load_path(_evil_checkpoint(tmp_path))
    assert not res.ok and "**bold**" in res.error
    shown = plain(res.error)
    assert "\\*\\*bold\\*\\*" in shown and "\x1b" not in shown


# ---------------------------------------------------------------------------------------------------- normal output
ESC = "\x1b[2J\x1b[31m"  # clear screen, red
SHOWN = "\\x1b[2J\\x1b[31m"


def _good_checkpoint(path, card_extra=None):
    m = SequenceModel(ModelConfig(d_input=1, d_output=2, d_model=4, n_layers=1, kernel="s4d",
                                  kernel_args={"d_state": 4}, l_max=64))
    card = {"task": "digits", "family": "s4d", "metric": "accuracy", "test_value": 0.5, **(card_extra or {})}
    sgconv_core.save(m, path, card)
    return path


def _clean(text: str, expect_shown: int = 1) -> None:
    assert "\x1b" not in text, text
    assert text.count(SHOWN) >= expect_shown, text


def test_report_and_causality_output_lines_are_escaped(tmp_path, capsys):
    from analysis.__main__ import main

    ck = _good_checkpoint(tmp_path / f"m{ESC}.safetensors")
    assert main(["report", str(ck), "--out", str(tmp_path / f"out{ESC}"), "-q", "--no-png", "--no-html"]) == 0
    _clean(capsys.readouterr().out)
    main(["causality", str(ck), "--length", "64"])
    out = capsys.readouterr().out
    _clean(out)
    assert out.splitlines()[0].startswith(f"m{SHOWN}.safetensors at L = 64")


def test_ablation_cli_output_lines_are_escaped(tmp_path, capsys):
    from analysis.ablation.__main__ import main

    rc = main(["--preset", "quick", "--dry-run", "--quiet", "--name", f"sweep{ESC}", "--db",
               str(tmp_path / f"d{ESC}.sqlite")])
    out = capsys.readouterr().out
    assert rc == 0
    _clean(out.splitlines()[1], expect_shown=2)  # the name and the database path (line 0: what the task rewards)
    assert len(out.splitlines()) == 2 + 36  # 12 points x 3 seeds


def test_zoo_table_shows_card_text_as_text(tmp_path, capsys):
    from sgconv_core.zoo_table import main

    _good_checkpoint(tmp_path / "a.safetensors", {"device": f"cpu{ESC}", "notes": f"line1\n| injected {ESC} |",
                                                  "command": f"train{ESC}"})
    (tmp_path / "broken.safetensors").write_bytes(b"junk")
    assert main([str(tmp_path), "--commands"]) == 0
    cap = capsys.readouterr()
    _clean(cap.out, expect_shown=3)
    assert "| injected" not in [ln[:10] for ln in cap.out.splitlines()]  # the card's line break stays escaped
    assert "line1\\n| injected" in cap.out
    assert "broken.safetensors" in cap.err and "\x1b" not in cap.err


def test_bench_cli_output_lines_are_escaped(tmp_path, capsys, monkeypatch):
    import analysis.bench.cli as cli

    def fake_run(lengths, device, quick, settings=None, threads=None, progress=None):
        progress(f"S4D L=1k{ESC}: 1 ms")
        return []

    monkeypatch.setattr(cli, "run_benchmark", fake_run)
    out_json = tmp_path / f"b{ESC}.json"
    assert cli.main(["--tiny", "--device", "cpu", "--json", str(out_json)]) == 0
    cap = capsys.readouterr()
    _clean(cap.err)
    _clean(cap.out)
    assert out_json.exists()
