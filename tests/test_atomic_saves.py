"""Issue 14: checkpoint saves are atomic through a uniquely named temporary file, so concurrent saves to one
path all succeed, the final file is one whole checkpoint, and no temporary file is left behind."""
from __future__ import annotations

import multiprocessing as mp
import os
import stat
import threading

import pytest
import torch

import sgconv_core
from sgconv_core.model import ModelConfig, SequenceModel


def _model(seed: int) -> SequenceModel:
    torch.manual_seed(seed)
    return SequenceModel(ModelConfig(d_input=1, d_output=2, d_model=4, n_layers=1, kernel="s4d",
                                     kernel_args={"d_state": 4}))


def _save_many(path: str, seed: int, n: int, m: SequenceModel | None = None) -> None:
    m = m if m is not None else _model(seed)
    for i in range(n):
        sgconv_core.save(m, path, card={"writer": seed, "i": i})


def test_concurrent_thread_saves_to_one_path_all_succeed(tmp_path):
    path = tmp_path / "m.safetensors"
    errors: list[BaseException] = []
    models = [_model(s) for s in range(8)]  # built here: torch's global seed is not per thread

    def run(seed):
        try:
            _save_many(str(path), seed, 15, models[seed])
        except BaseException as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    ck = sgconv_core.load(path)
    assert ck.card["i"] == 14 and ck.card["writer"] in range(8)
    ref = models[ck.card["writer"]].state_dict()
    assert all(torch.equal(v, ck.model.state_dict()[k]) for k, v in ref.items())
    assert sorted(os.listdir(tmp_path)) == ["m.safetensors"]


@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="needs fork")
def test_concurrent_process_saves_to_one_path_all_succeed(tmp_path):
    path = str(tmp_path / "m.safetensors")
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_save_many, args=(path, s, 10)) for s in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert sgconv_core.load(path).card["i"] == 9
    assert sorted(os.listdir(tmp_path)) == ["m.safetensors"]


def test_failed_save_leaves_no_temporary_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    from sgconv_core.checkpoints import ours

    path = tmp_path / "m.safetensors"
    sgconv_core.save(_model(0), path, card={"v": 1})

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ours, "save_file", boom)
    with pytest.raises(OSError):
        sgconv_core.save(_model(1), path, card={"v": 2})
    assert sorted(os.listdir(tmp_path)) == ["m.safetensors"]
    assert sgconv_core.load(path).card == {"v": 1}


def test_saved_file_has_the_usual_mode(tmp_path):
    path = tmp_path / "m.safetensors"
    sgconv_core.save(_model(0), path)
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~mask
