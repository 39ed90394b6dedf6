"""analysis.bench on tiny sizes: the rows and the table are produced (speed is never asserted)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from analysis.bench import MODELS, Settings, format_table, parse_lengths, run_benchmark
from analysis.bench.floor import FloorCells, straightforward_kernel, straightforward_vandermonde
from analysis.bench.kernels import KernelCells
from sgconv_core.kernels import S4DKernel
from sgconv_core.kernels.ssm import vandermonde

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(H=8, min_reps=1, max_reps=1, layer_lengths=[1024], layer_l_max=1024, floor_matmul_n=128)


@pytest.fixture(scope="module")
def tiny_rows():
    return run_benchmark([256, 1024], device="cpu", quick=True, layer_on_cpu=True, **TINY)


def test_rows_and_table(tiny_rows):
    kernel = [r for r in tiny_rows if r["section"] == "kernel"]
    assert sorted((r["pass"], r["L"]) for r in kernel) == [("fwd", 256), ("fwd", 1024), ("fwd+bwd", 256), ("fwd+bwd", 1024)]
    assert all(r[m]["status"] == "ok" for r in kernel for m in MODELS)
    assert all(r["sgconv_over_s4"] is not None for r in kernel)
    assert [r["L"] for r in tiny_rows if r["section"] == "layer"] == [1024]
    json.dumps(tiny_rows)
    text = format_table(tiny_rows)
    for s in ("SGConv ms", "S4 ms", "S4D ms", "SGConv/S4", "SGConv MB", "forward+backward", "SGConv layer", "1k |"):
        assert s in text, s


def test_floor_rows_and_table(tiny_rows):
    floor = [r for r in tiny_rows if r["section"] == "floor"]
    assert sorted((r["pass"], r["L"]) for r in floor) == [("fwd", 256), ("fwd", 1024), ("fwd+bwd", 256),
                                                          ("fwd+bwd", 1024)]
    assert all(r[route]["status"] == "ok" for r in floor for route in ("ours", "straightforward"))
    assert all(r["ratio"] is not None for r in floor)
    assert all((r["ours_gflops"] is not None) == (r["pass"] == "fwd") for r in floor)
    assert floor[0]["flops"] == 8 * 1 * 8 * 32 * floor[0]["L"]  # 8 flops x C x H x N/2 x L
    mm = [r for r in tiny_rows if r["section"] == "matmul"]
    assert len(mm) == 1 and mm[0]["n"] == 128 and mm[0]["gflops"] > 0
    text = format_table(tiny_rows)
    for s in ("straight/ours", "ours GFLOP/s", "straight GFLOP/s", "plain float32 matmul (128 x 128)"):
        assert s in text, s


@pytest.mark.parametrize("disc", ["zoh", "bilinear"])
def test_straightforward_route_is_the_same_kernel(disc):
    """The benchmark's baseline computes what the kernel computes (so the ratio compares like with like)."""
    torch.manual_seed(0)
    k = S4DKernel(8, 16, channels=2, disc=disc).double()
    with torch.no_grad():
        ours, straight = k(3000), straightforward_kernel(k, 3000)
        coef, lp = k.vandermonde_terms()
        chunked = straightforward_vandermonde(coef, lp, 3000, chunk_elems=1000)  # several chunks over l
    assert (ours - straight).abs().max() <= 1e-12 * straight.abs().max()
    assert (vandermonde(coef, lp, 3000) - chunked).abs().max() <= 1e-12 * chunked.abs().max()


def test_floor_skip_rules():
    s = Settings.make(True, "cpu")  # --quick: 10 s per call at most, 30 s for the section, fwd+bwd up to 16k
    cells = FloorCells(s, "cpu", mem=None, say=lambda msg: None)
    assert cells.predict("straightforward", "fwd", 4096) is None
    cells.last[("straightforward", "fwd")] = (1024, 1.0)
    assert cells.predict("straightforward", "fwd", 4096) == pytest.approx(4 ** s.growth)
    assert "only up to 16k" in cells.skip_note("fwd+bwd", 64 * 1024, 0.0, 1.0, None)
    assert "GB budget" in cells.skip_note("fwd", 1024, 2.0, 1.0, None)
    assert "s/call > 10 s cap" in cells.skip_note("fwd", 4096, 0.0, 1.0, 11.0)
    cells.spent = 25.0
    assert "time budget" in cells.skip_note("fwd", 1024, 0.0, 1.0, 6.0)
    assert cells.skip_note("fwd", 1024, 0.0, 1.0, 4.0) is None


def test_cpu_skips_the_layer_and_over_budget_cells():
    rows = run_benchmark([256], device="cpu", quick=True, mem_budget_gb=1e-6, **TINY)
    kernel = [r for r in rows if r["section"] == "kernel"]
    assert all(r[m]["status"] == "skipped" for r in kernel for m in MODELS)
    floor = [r for r in rows if r["section"] == "floor"]
    assert floor and all(r[route]["status"] == "skipped" for r in floor for route in ("ours", "straightforward"))
    text = format_table(rows)
    assert "skipped: est." in text and "GPU only" in text


def test_parse_lengths():
    assert parse_lengths("1k, 4k,1M,300") == [1024, 4096, 1 << 20, 300]
    with pytest.raises(ValueError):
        parse_lengths("0")


def test_skip_rules():
    s = Settings.make(True, "cpu")  # --quick: 4 s per call at most, 25 s for all cells, fwd+bwd up to 16k
    cells = KernelCells(s, "cpu", mem=None, say=lambda msg: None)
    assert cells.predict("fwd", 4096, "s4") is None  # nothing measured yet
    cells.last[("s4", "fwd")] = (1024, 1.0)
    assert cells.predict("fwd", 4096, "s4") == pytest.approx(4 ** s.growth)
    cells.done[("fwd", 1024, "s4d")] = {"ms": 2000.0}
    assert cells.predict("fwd+bwd", 1024, "s4d") == pytest.approx(3.0)  # at least 1.5x the forward
    assert "only up to 16k" in cells.skip_note("fwd+bwd", 64 * 1024, 0.0, 1.0, None)
    assert "GB budget" in cells.skip_note("fwd", 1024, 2.0, 1.0, None)
    assert "s/call > 4 s cap" in cells.skip_note("fwd", 4096, 0.0, 1.0, 4 ** s.growth)
    cells.spent = 24.5
    assert "time budget" in cells.skip_note("fwd", 1024, 0.0, 1.0, 0.5)
    assert cells.skip_note("fwd", 1024, 0.0, 1.0, None) is None


def test_cli_tiny(tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "analysis.bench", "--tiny", "--device", "cpu", "--json", str(out)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "SGConv/S4" in p.stdout and "straight/ours" in p.stdout
    assert json.loads(out.read_text())["rows"][0]["settings"]["H"] == 8


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_tiny_on_cuda():
    rows = run_benchmark([256, 1024], device="cuda", quick=True, **TINY)
    assert all(r[m]["status"] == "ok" for r in rows if r["section"] in ("kernel",) for m in MODELS)
    assert all(r["fwd+bwd"]["status"] == "ok" for r in rows if r["section"] == "layer")
    assert "alloc MB (abs)" in format_table(rows)


def test_layer_lengths_flags_run_the_layer_on_cpu_forward_only():
    from analysis.bench.cli import _lengths_and_settings, _parser
    from sgconv_core import fftconv
    a = _parser().parse_args(["--layer-lengths", "1M,256k", "--layer-fwd-only", "--fft-chunk-mb", "0"])
    _, s = _lengths_and_settings(a, "cpu")
    assert s.layer_on_cpu and s.layer_lengths == [1 << 20, 1 << 18] and s.layer_passes == ("fwd",)
    assert s.fft_chunk_bytes == 0
    before = fftconv.FFT_CHUNK_BYTES
    kw = {**TINY, "layer_lengths": [512, 1024], "floor": False}
    for budget, mb in ((1, 1 / (1 << 20)), (0, None)):  # one channel per chunk; never chunk
        rows = run_benchmark([256], device="cpu", quick=True, layer_on_cpu=True, layer_passes=("fwd",),
                             fft_chunk_bytes=budget, **kw)
        layer = [r for r in rows if r["section"] == "layer"]
        assert [r["L"] for r in layer] == [512, 1024] and all(r["fft_chunk_mb"] == mb for r in layer)
        assert all(r["fwd"]["status"] == "ok" and r["fwd+bwd"]["status"] == "skipped" for r in layer)
        assert "forward only" in format_table(rows)
    assert fftconv.FFT_CHUNK_BYTES == before  # restored after the layer rows
