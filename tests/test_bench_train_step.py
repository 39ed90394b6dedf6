"""`python -m analysis.bench.train_step`: steps timed through fit's own progress events, and its bad input.
Correctness of the step's pieces is tested elsewhere; nothing here asserts a speed."""
import pytest

from analysis.bench import train_step


def test_one_round_gives_per_model_rows(one_torch_thread):
    rows = train_step.run(["digits-sgconv"], steps=2, rounds=1, threads=1, progress=lambda m: None)
    (r,) = rows
    assert r["model"] == "digits-sgconv" and r["batch_size"] == 32 and r["n_steps"] == 2
    assert r["step_ms"] > 0 and r["default_allocator_ms"] > 0 and r["floor_ms"] > 0
    assert set(r["floor_parts_ms"]) == {"fft", "spectrum products", "matmuls", "norms and activations"}
    assert r["step_over_floor"] == pytest.approx(r["step_ms"] / r["floor_ms"])
    text = train_step.format_rows(rows)
    assert "digits-sgconv | 32 | 2 |" in text and "ops floor parts" in text


def test_step_times_are_gaps_between_fit_steps(one_torch_thread):
    cfg = train_step.train_config("digits-sgconv", train_step.WARMUP_STEPS + 3, threads=1)
    assert cfg.eval_every == cfg.steps and cfg.out is None
    res = train_step.step_times(cfg)
    assert len(res["ms"]) == 3 and all(ms > 0 for ms in res["ms"])


def test_unknown_model_is_one_line(capsys):
    assert train_step.main(["--models", "no-such-model"]) == 2
    assert "no pretrained model 'no-such-model'" in capsys.readouterr().out
