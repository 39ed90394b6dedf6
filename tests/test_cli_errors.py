"""Issue 14: bad databases and arguments give a one-line ``error: ...`` and exit code 2 from every CLI, never a
traceback; a killed sweep reads as 'interrupted', not 'running' forever."""
from __future__ import annotations

import os
import socket
import sqlite3

import pytest
import torch

import sgconv_core
from sgconv_core import ModelConfig, SequenceModel

QUICK = ["--preset", "quick", "--dry-run", "--quiet"]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "m.safetensors"
    with torch.random.fork_rng():
        torch.manual_seed(0)
        cfg = ModelConfig(d_input=1, d_output=10, d_model=8, n_layers=1, kernel="s4d", kernel_args={"d_state": 4},
                          l_max=256)
        sgconv_core.save(SequenceModel(cfg), path, {"task": "digits", "task_params": {}, "task_seed": 0,
                                                    "family": "s4d", "metric": "accuracy", "test_value": 0.5})
    return path


def one_line_error(capsys, rc, expect: str, code: int = 2) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == code, err
    assert err and err[-1].startswith(("error:", "python -m")) and "error: " in err[-1], err
    assert "Traceback" not in "\n".join(err)
    assert expect in err[-1], err
    return err[-1]


def run_argparse(main, argv):
    """rc of a main() that may exit through argparse's p.error (SystemExit(2))."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


# ---------------------------------------------------------------------------------------------- ablation store
def test_ablation_damaged_database(tmp_path, capsys):
    from analysis.ablation.__main__ import main

    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database" * 200)
    one_line_error(capsys, main(QUICK + ["--db", str(bad)]), "is not an ablation database")


def test_ablation_uncreatable_database(tmp_path, capsys):
    from analysis.ablation.__main__ import main

    (tmp_path / "afile").write_text("x")
    one_line_error(capsys, main(QUICK + ["--db", str(tmp_path / "afile" / "db.sqlite")]), "db: cannot create")


def test_ablation_read_only_database(tmp_path, capsys, monkeypatch):
    from analysis.ablation import store as store_mod
    from analysis.ablation.__main__ import main

    db = tmp_path / "ro.sqlite"
    store_mod.Store(db)
    real = sqlite3.connect

    def read_only(path, *a, **k):  # what a file without write permission gives (root ignores chmod)
        return real(f"file:{path}?mode=ro", *a, uri=True, **k)

    monkeypatch.setattr(store_mod.sqlite3, "connect", read_only)
    one_line_error(capsys, main(QUICK + ["--db", str(db)]), "is read-only")


def test_ablation_bad_threads(tmp_path, capsys):
    from analysis.ablation.__main__ import main

    one_line_error(capsys, main(QUICK + ["--db", str(tmp_path / "db.sqlite"), "--threads", "-1"]), "threads")


def test_killed_sweep_reads_as_interrupted(tmp_path):
    from analysis.ablation.store import Store

    st = Store(tmp_path / "db.sqlite")
    dead = 2**22 + 12345  # above the usual pid_max: no such process
    while True:
        try:
            os.kill(dead, 0)
            dead += 1
        except ProcessLookupError:
            break
        except OSError:
            dead += 1
    here = socket.gethostname()
    st.put_sweep("dead", "killed sweep", {}, 3, "running", "cpu", pid=dead, host=here)
    st.put_sweep("alive", "live sweep", {}, 3, "running", "cpu")  # this process
    st.put_sweep("elsewhere", "other host", {}, 3, "running", "cpu", pid=dead, host=here + "-other")
    st.put_sweep("finished", "done sweep", {}, 3, "done", "cpu", pid=dead, host=here)
    status = {r["key"]: r["status"] for r in st.sweeps()}
    assert status == {"dead": "interrupted", "alive": "running", "elsewhere": "running", "finished": "done"}
    row = next(r for r in st.sweeps() if r["key"] == "alive")
    assert row["pid"] == os.getpid() and row["host"] == here


def test_old_database_gains_the_pid_columns(tmp_path):
    from analysis.ablation.store import Store

    db = tmp_path / "old.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE sweeps (key TEXT PRIMARY KEY, name TEXT, spec TEXT, n_runs INTEGER, status TEXT, "
                "device TEXT, created_at TEXT, updated_at TEXT)")
    con.execute("INSERT INTO sweeps VALUES ('k', 'n', '{}', 1, 'running', 'cpu', 'a', 'b')")
    con.commit()
    con.close()
    st = Store(db)
    assert st.sweeps()[0]["status"] == "running"  # no pid recorded: cannot tell, left as it was
    st.put_sweep("k", "n", {}, 1, "done")
    assert st.sweeps()[0]["status"] == "done"


# ---------------------------------------------------------------------------------------------- evaluate
@pytest.mark.parametrize("argv,expect", [(["--threads", "-1"], "--threads must be positive"),
                                         (["--n", str(10**9)], "--n must be at most"),
                                         (["--n", "251"], "re-sampling, not new images"),
                                         (["--batch-size", "0"], "--batch-size must be positive")])
def test_evaluate_bad_arguments(model_path, capsys, argv, expect):
    from sgconv_core.evaluate import main

    one_line_error(capsys, run_argparse(main, [str(model_path), *argv]), expect)


# ---------------------------------------------------------------------------------------------- train
@pytest.mark.parametrize("argv,expect", [
    (["--family", "s4d", "--d-state", str(10**6)], "d_state must be at most"),
    (["--family", "s4d", "--kernel-arg", f"d_state={10**6}"], "d_state must be at most"),
    (["--family", "sgconv", "--kernel-dim", str(10**6)], "kernel_dim must be at most"),
    (["--threads", "-1"], "threads must be positive"),
])
def test_train_bad_arguments(capsys, argv, expect):
    from sgconv_core.train import main

    one_line_error(capsys, run_argparse(main, ["--steps", "1", "--quiet", *argv]), expect)


def test_train_bad_out(tmp_path, capsys):
    from sgconv_core.train import main

    (tmp_path / "afile").write_text("x")
    one_line_error(capsys, run_argparse(main, ["--steps", "1", "--quiet", "--out", str(tmp_path)]), "is a folder")
    one_line_error(capsys, run_argparse(main, ["--steps", "1", "--quiet", "--out",
                                               str(tmp_path / "afile" / "m.safetensors")]), "is not a folder")


# ---------------------------------------------------------------------------------------------- analysis report
def test_report_out_is_an_existing_file(model_path, tmp_path, capsys):
    from analysis.__main__ import main

    f = tmp_path / "afile"
    f.write_text("x")
    one_line_error(capsys, main(["report", str(model_path), "--out", str(f), "-q", "--no-png"]), "existing file")
    one_line_error(capsys, main(["report", str(model_path), "--out", str(f / "sub"), "-q", "--no-png"]),
                   "cannot be created")
    one_line_error(capsys, main(["compare", str(model_path), str(model_path), "--out", str(f), "-q"]),
                   "existing file")
    assert f.read_text() == "x"


# ---------------------------------------------------------------------------------------------- --checkpoint-dir
def test_ablation_checkpoint_dir_an_existing_file(tmp_path, capsys):
    """--checkpoint-dir (only the ablation CLI has it) naming an existing file is refused before anything runs."""
    from analysis.ablation.__main__ import main

    f = tmp_path / "afile"
    f.write_text("x")
    line = one_line_error(capsys, main(QUICK + ["--db", str(tmp_path / "d.sqlite"), "--checkpoint-dir", str(f)]),
                          "is an existing file, not a folder")
    assert line.startswith("error: --checkpoint-dir") and f.read_text() == "x"
    assert not (tmp_path / "d.sqlite").exists()  # refused before the database was created
    assert main(QUICK + ["--db", str(tmp_path / "d.sqlite"), "--checkpoint-dir", str(tmp_path / "new")]) == 0
