"""analysis.report / figures / __main__: vectorised numbers equal the 1-D definitions; CLI files; bad files."""
import csv
import json
import math
import os
import subprocess
import sys

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

import sgconv_core
from analysis import figures as FG
from analysis.__main__ import main
from analysis.decay import batch_decay, exp_fit, power_law_fit
from analysis.extract import extract_kernels, ssm_modes
from analysis.frequency import bandwidth, frequency_response, frequency_summary, peak_gain, spectral_centroid
from analysis.report import analyze, compare_results, report_figures
from sgconv_core import Checkpoint, ModelConfig, SequenceModel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _model(kind, L=256, H=8, n_layers=2, bidir=False, **ka):
    torch.manual_seed(0)
    ka = ka or ({"kernel_dim": 16} if kind == "sgconv" else {"d_state": 16})
    cfg = ModelConfig(d_input=1, d_output=4, d_model=H, n_layers=n_layers, kernel=kind, kernel_args=ka, l_max=L,
                      bidirectional=bidir)
    return SequenceModel(cfg).eval()


def _ck(model, name="m.safetensors"):
    return Checkpoint(path=name, kernels=model.kernels, model=model, config=model.cfg.to_dict(),
                      card={"task": "test"}, warnings=["assumed something"])


def _kernels(seed=0, n=12, L=700):
    """Decaying, oscillating, noisy kernels, plus a spike, an all-zero row, a constant and a pure power law."""
    rng = np.random.default_rng(seed)
    t = np.arange(L, dtype=np.float64)
    K = (t + 1.0) ** -rng.uniform(0.3, 2.0, (n, 1)) * np.cos(rng.uniform(0, 1, (n, 1)) * t) \
        * (1 + 0.3 * rng.standard_normal((n, L)))
    K[0] = np.exp(-t / 50.0) * rng.standard_normal(L)
    K[1] = 0.0
    K[1, (3 * L) // 7] = 1.0
    K[2] = 0.0
    K[3] = 1.0
    K[4] = 3.0 * (t + 1) ** -1.5
    return K


def _reference_decay(k, n_bins=64, min_count=8):
    """The decay numbers of one kernel by their written definitions, through other code than analysis.decay
    (scipy.stats.binned_statistic, np.polyfit, np.cumsum): an independent answer for the batch code."""
    from scipy.stats import binned_statistic

    L = k.size
    out = {}
    lag = np.arange(1, L, dtype=np.float64)  # power law: geometric bins over lags 1..L-1, x = mean log(lag + 1)
    edges = np.geomspace(1.0, L - 1.0, n_bins + 1)
    ms = binned_statistic(lag, k[1:] ** 2, "mean", edges).statistic
    cnt = binned_statistic(lag, lag, "count", edges).statistic
    x = binned_statistic(lag, np.log(lag + 1), "mean", edges).statistic
    ok = (cnt > 0) & (ms > 0)
    use = ok & (cnt >= min_count) if (ok & (cnt >= min_count)).sum() >= 3 else ok
    out["t"] = -np.polyfit(x[use], 0.5 * np.log(ms[use]), 1)[0] if use.sum() >= 2 else math.nan
    lag0 = np.arange(L, dtype=np.float64)  # exponential: equal-width bins over lags 0..L-1, x = mean(lag + 1)
    edges = np.linspace(-0.5, L - 0.5, n_bins + 1)
    ms = binned_statistic(lag0, k ** 2, "mean", edges).statistic
    x = binned_statistic(lag0, lag0 + 1, "mean", edges).statistic
    use = np.isfinite(ms) & (ms > 0)
    out["r"] = -np.polyfit(x[use], 0.5 * np.log(ms[use]), 1)[0] if use.sum() >= 2 else math.nan
    frac = np.cumsum(k ** 2) / np.sum(k ** 2)
    for p in (50, 90, 99):
        out[f"range{p}"] = 1 + int(np.argmax(frac >= p / 100 * (1 - 1e-12)))
    return out


L_KNOWN = 512
POS = np.arange(1, L_KNOWN + 1.0)


def _known_kernels():
    """Kernels with answers known in closed form (rows): a power law 3 pos^-1.5, an exponential e^(-0.02 pos),
    a box of 100 ones, a cosine at 64 cycles per 512 taps."""
    return np.stack([3 * POS ** -1.5, np.exp(-0.02 * POS), (POS <= 100) * 1.0,
                     np.cos(2 * np.pi * 64 / L_KNOWN * np.arange(L_KNOWN))])


def _exp_range(p, L=L_KNOWN):
    """Taps holding p % of the energy of e^(-0.02 pos): smallest n with (1 - q^n) >= p/100 (1 - q^L)."""
    q = math.exp(-0.04)  # the energy's ratio per tap
    return math.ceil(math.log(1 - p / 100 * (1 - q ** L)) / math.log(q))


KNOWN = [  # (row, key, answer, relative tolerance): a 10 % error fails every one
    (0, "t", 1.5, 1e-3), (0, "t_r2", 1.0, 1e-6), (1, "r", 0.02, 1e-9), (1, "r_r2", 1.0, 1e-9),
    (1, "range50", _exp_range(50), 0), (1, "range90", _exp_range(90), 0), (1, "range99", _exp_range(99), 0),
    (2, "range50", 50, 0), (2, "range90", 90, 0), (2, "range99", 99, 0),
]
KNOWN_FREQ = [
    (1, "peak_gain", math.exp(-0.02) * (1 - math.exp(-0.02 * L_KNOWN)) / (1 - math.exp(-0.02)), 1e-9),
    (1, "peak_freq", 0.0, 0), (2, "peak_gain", 100.0, 1e-12), (3, "peak_gain", L_KNOWN / 2, 1e-9),
    (3, "peak_freq", 0.125, 0), (3, "centroid", 0.125, 1e-9),
    # an exact cosine on the grid: the neighbours are 0, so each band edge is (1 - 10^(-3/20)) of a bin away
    (3, "bandwidth", 2 * (1 - 10 ** (-3 / 20)) / L_KNOWN, 1e-6),
]


def test_batch_decay_known_answers():
    """batch_decay (the code of the report's per-channel numbers) against answers known in closed form."""
    b = batch_decay(_known_kernels())
    for row, key, want, rel in KNOWN:
        assert b[key][row] == pytest.approx(want, rel=rel, abs=1e-12), (row, key)


@pytest.mark.parametrize("L", [8, 9, 64, 700, 4096])
def test_batch_decay_equals_an_independent_implementation(L):
    """batch_decay on noisy oscillating kernels equals the fits written out with scipy.stats / np.polyfit."""
    K = _kernels(L=L)
    b = batch_decay(K)
    for i, k in enumerate(K):
        if not np.any(k) or np.ptp(k) == 0:  # zero row (NaN) and the constant (t = r = 0) are checked below
            continue
        ref = _reference_decay(k)
        for key, v in ref.items():
            assert b[key][i] == pytest.approx(v, rel=1e-9, abs=1e-9, nan_ok=True), (i, key)
    assert not b["valid"][2] and b["valid"][0] and math.isnan(b["t"][2])
    assert b["t"][3] == pytest.approx(0.0, abs=1e-12) and b["r"][3] == pytest.approx(0.0, abs=1e-12)
    for i, k in enumerate(K):  # the fit amplitudes the figures draw are the 1-D fits'
        if np.any(k):
            assert b["t_log_amplitude"][i] == pytest.approx(power_law_fit(k)["log_amplitude"], rel=1e-9, abs=1e-9,
                                                                nan_ok=True)
            assert b["r_log_amplitude"][i] == pytest.approx(exp_fit(k)["log_amplitude"], rel=1e-9, abs=1e-9,
                                                                nan_ok=True)


def test_batch_frequency_known_answers():
    b = frequency_summary(_known_kernels())
    for row, key, want, rel in KNOWN_FREQ:
        assert b[key][row] == pytest.approx(want, rel=rel, abs=1e-12), (row, key)


def test_batch_frequency_equals_the_1d_definitions():
    K = _kernels(L=500)
    b = frequency_summary(K, keep_rows=[0, 4])
    for i, k in enumerate(K):
        if not np.any(k):
            assert math.isnan(b["peak_gain"][i]) and math.isnan(b["bandwidth"][i])
            continue
        fr = frequency_response(k)
        g, gdb, f = peak_gain(fr["H"], fr["freq"])
        assert b["peak_gain"][i] == pytest.approx(g, rel=1e-12)
        assert b["peak_gain_db"][i] == pytest.approx(gdb, rel=1e-12, abs=1e-12)
        assert b["peak_freq"][i] == f
        assert b["bandwidth"][i] == pytest.approx(bandwidth(fr["freq"], fr["mag_db"]), rel=1e-9, abs=1e-12)
        assert b["centroid"][i] == pytest.approx(spectral_centroid(fr["freq"], fr["H"]), rel=1e-12)
    np.testing.assert_allclose(b["H_rows"][1], frequency_response(K[4])["H"], rtol=1e-12)


def test_analyze_sgconv_numbers():
    m = _model("sgconv", bidir=True)
    res = analyze(_ck(m), 256, channels=3)
    assert res.L == 256
    assert len(res.layers) == 2 and len(res.channels) == 2 * 2 * 8  # layers x C_k x H
    K = m.kernels[0]
    with torch.no_grad():
        k_all = K(256).double().numpy()
    for ch in res.channels[:16]:  # layers.0: every channel against the fits written out independently
        ref = _reference_decay(k_all[ch.c, ch.h])
        assert (ch.t, ch.r, ch.range90) == pytest.approx((ref["t"], ref["r"], ref["range90"]), rel=1e-9)
    assert {r.direction for r in res.channels} == {"forward", "backward"}
    lay = res.layers[0]
    assert lay.t_median == pytest.approx(np.median([ch.t for ch in res.channels[:16]]), rel=1e-12)
    assert lay.n_params == lay.n_params_formula == K.n_params
    assert res.params.per_layer[0].match
    assert lay.ssm is None and "half_life" not in lay.row()
    assert res.figures["layers.0"].shown == [(0, 0), (0, 4), (0, 7)]
    assert res.checkpoint.warnings == ["assumed something"]


def _free_ck(K):
    """A checkpoint of one free-kernel layer holding the kernels K (H, L) (the 'conv' family)."""
    from sgconv_core.kernels.free import FreeKernel

    k = FreeKernel(d_model=K.shape[0], l_max=K.shape[-1])
    with torch.no_grad():
        k.kernel.copy_(torch.as_tensor(K[None]))
    return Checkpoint(path="known.safetensors", kernels=[k])


def test_analyze_known_answers():
    """The report's per-channel numbers of kernels with answers known in closed form (float32 weights)."""
    res = analyze(_free_ck(_known_kernels()), L_KNOWN)
    for row, key, want, rel in KNOWN + KNOWN_FREQ:
        got = getattr(res.channels[row], key)
        assert got == pytest.approx(want, rel=max(rel, 2e-5), abs=1e-6), (row, key)


def test_analyze_s4d_ssm_numbers():
    m = _model("s4d", L=512)
    fr = []
    res = analyze(_ck(m), 512, progress=lambda f, msg: fr.append(f))
    assert fr and fr[-1] == pytest.approx(1.0) and all(b >= a for a, b in zip(fr, fr[1:], strict=False))
    ssm = res.layers[0].ssm
    assert ssm.analytic_vs_fft_rel < 1e-10  # exact transfer function = FFT of the float64 kernel
    assert ssm.n_modes == 16 and ssm.unstable_modes == 0
    assert 0 < ssm.half_life < math.inf and ssm.half_life >= ssm.median_half_life
    assert all(r.half_life <= ssm.half_life for r in res.channels if r.layer == "layers.0")
    a = res.figures["layers.0"]
    np.testing.assert_allclose(a.analytic_mag_db, a.mag_db, atol=1e-8)
    assert a.poles.shape == (8, 16)
    # half-lives against the poles' own definition: ln 2 / -ln|lambda| of each feature's slowest mode
    lam = ssm_modes(m.kernels[0])[1]
    want = math.log(2) / -np.log(np.abs(lam)).max(1)
    np.testing.assert_allclose([r.half_life for r in res.channels[:8]], want, rtol=1e-12)
    assert ssm.half_life == pytest.approx(want.max(), rel=1e-12)
    assert ssm.median_half_life == pytest.approx(np.median(want), rel=1e-12)


def test_report_figures_are_plotly():
    m = _model("s4d", n_layers=1)
    res = analyze(_ck(m), 256)
    figs = report_figures(res)
    titles = [t for t, _ in figs]
    assert titles == ["layers.0: kernels", "layers.0: channel x lag", "layers.0: decay", "layers.0: energy",
                      "layers.0: frequency response", "layers.0: phase", "layers.0: poles", "parameter scaling"]
    assert all(isinstance(f, go.Figure) for _, f in figs)
    names = [tr.name for tr in figs[4][1].data]
    assert any("analytic, length L" in n for n in names) and any("L → ∞" in n for n in names)
    a = res.figures["layers.0"]
    assert a.analytic_inf_mag_db.shape == a.analytic_mag_db.shape and np.isfinite(a.analytic_inf_mag_db).all()
    assert all(np.isfinite(r.peak_gain_db_inf) for r in res.channels)
    # the L -> infinity peak gain on the rfft grid of L = 256 against the FFT of a 256x longer kernel (whose
    # tail is below round-off) at the same frequencies: no transfer-function code involved
    K_long = extract_kernels(_ck(m), 256 * 256)["layers.0"]
    for ch in res.channels[:8]:
        H = np.fft.rfft(K_long[ch.c, ch.h])[::256]
        assert ch.peak_gain_db_inf == pytest.approx(20 * np.log10(np.abs(H).max()), rel=1e-6)


def test_figure_functions_directly():
    K = {"a": _kernels(L=300)[None]}
    f = FG.kernel_figure(K, 0, channels=[0, (0, 4)], log_x=True, log_y=True, overlay_envelope=True,
                         ideal=np.eye(1, 300, 100)[0])
    assert [t.name for t in f.data][:2] == ["h=0", "h=4"] and f.data[-1].name == "ideal"
    big = np.random.default_rng(0).standard_normal((3, 50_000))
    h = FG.heatmap_figure(big, "x", max_cols=500)
    assert np.asarray(h.data[0].z).shape == (3, 500)  # blocks of 100 taps
    idx, v = FG.decimate(big[0], 1000)
    assert len(idx) <= 1000 and big[0].max() in v and big[0].min() in v
    assert isinstance(FG.fit_curve_figure([{"d": 1, "n_params": 5, "rel_error": 0.5}]), go.Figure)
    assert isinstance(FG.similarity_figure(np.eye(2), ["x", "y"]), go.Figure)
    from analysis.attribution import Attribution, DistanceProfile

    att = Attribution(attr=np.r_[np.ones(10), np.zeros(5)], delta=0.0, f_x=1.0, f_baseline=0.0, output_kind="sequence",
                      position=9, target=0, distance_profile=DistanceProfile(np.r_[0, 1, 3], np.r_[1, 1, 1]),
                      method="IG", note="n")
    assert len(FG.attribution_figure(att, x=np.ones((15, 2))).data) == 3
    k = _kernels(L=300)[0]
    assert len(FG.energy_figure({"label": "k", "curve": np.cumsum(k**2) / np.sum(k**2),
                                 "ranges": {50: 10, 90: 40, 99: 120}}).data) == 2
    fr = frequency_response(k)
    assert len(FG.phase_figure([{"label": "k", "freq": fr["freq"], "phase": fr["phase"]}]).data) == 1


# ---------------------------------------------------------------------------------------------- CLI
@pytest.fixture
def saved(tmp_path):
    paths = {}
    for kind in ("sgconv", "s4d"):
        p = tmp_path / f"{kind}.safetensors"
        sgconv_core.save(_model(kind), p, card={"task": "unit test"})
        paths[kind] = p
    return paths


def test_report_cli_writes_csv_json_html(saved, tmp_path, capsys):
    for kind in ("sgconv", "s4d"):
        out = tmp_path / f"out_{kind}"
        assert main(["report", str(saved[kind]), "--length", "300", "--out", str(out), "--channels", "2", "-q"]) == 0
        for f in ("report.json", "report.html", "channels.csv", "layers.csv", "kernels.csv", "params_layers.csv",
                  "params_scaling.csv"):
            assert (out / f).stat().st_size > 0, f
        data = json.loads((out / "report.json").read_text())
        assert data["meta"]["L"] == 300 and "kaleido" in data["meta"]["static_export"]
        assert data["checkpoint"]["card"] == {"task": "unit test"}
        assert len(data["channels"]) == 2 * 8
        if kind == "s4d":
            assert data["layers"][0]["half_life"] > 0 and "analytic_vs_fft_rel" in data["layers"][0]
        html = (out / "report.html").read_text()
        assert html.count("plotly.js v") == 1 and html.count("window.PlotlyConfig") == 1  # plotly.js inlined once
        assert html.count("Plotly.newPlot") >= 5
        header = (out / "channels.csv").read_text().splitlines()[0]
        assert header.startswith("layer,layer_index,c,h,direction,t,t_r2,r,r_r2,range50,range90,range99")
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("stem", ["digits-sgconv", "digits-s4d"])
def test_report_cli_on_a_pretrained_checkpoint(stem, tmp_path):
    path = os.path.join(ROOT, "pretrained", f"{stem}.safetensors")
    if not os.path.exists(path):
        pytest.skip(f"{path} is not there")
    out = tmp_path / stem
    assert main(["report", path, "--out", str(out), "-q", "--no-png"]) == 0
    for f in ("report.json", "report.html", "channels.csv", "layers.csv", "kernels.csv", "params_layers.csv",
              "params_scaling.csv"):
        assert (out / f).stat().st_size > 0, f
    data = json.loads((out / "report.json").read_text())
    assert data["layers"] and all(r["t_median"] is not None and r["range99_median"] >= r["range50_median"]
                                  for r in data["layers"])
    assert all(r["match"] for r in data["params"]["per_layer"])


def test_compare_cli(saved, tmp_path):
    out = tmp_path / "cmp"
    assert main(["compare", str(saved["sgconv"]), str(saved["s4d"]), "-L", "256", "-o", str(out), "-q"]) == 0
    data = json.loads((out / "compare.json").read_text())
    assert data["labels"] == ["sgconv.safetensors", "s4d.safetensors"] and data["L"] == 256
    assert {r["what"] for r in data["similarity"]} == {"mean_kernel", "rms_profile"}
    assert len(data["similarity"]) == 2 * 2  # 2 layers x 2 measures x 1 pair
    assert (out / "compare.html").stat().st_size > 0 and (out / "compare_layers.csv").exists()


def test_compare_results_needs_one_length():
    a = analyze(_ck(_model("sgconv", n_layers=1)), 128)
    b = analyze(_ck(_model("s4d", n_layers=1)), 256)
    with pytest.raises(ValueError, match="different lengths"):
        compare_results([a, b])


def test_bad_checkpoint_exit_code_2(tmp_path, capsys):
    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(b"\x00\x01 this is not a checkpoint" * 10)
    assert main(["report", str(bad), "-q", "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "corrupt.safetensors" in err and "\n" not in err
    assert main(["report", str(tmp_path / "missing.safetensors"), "-q"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_bad_checkpoint_subprocess_has_no_traceback(tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"PK\x03\x04 truncated zip")
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", PYTHONPATH=ROOT)
    p = subprocess.run([sys.executable, "-m", "analysis", "report", str(bad), "-q"], capture_output=True, text=True,
                       cwd=tmp_path, env=env, timeout=60)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert "broken.pt" in p.stderr


def test_chunked_analysis_equals_one_pass(monkeypatch):
    import analysis.measure as M

    ck = _ck(_model("s4d", n_layers=1))
    one = analyze(ck, 256, channels=[5, 1, 6])
    monkeypatch.setattr(M, "CHUNK_ELEMENTS", 3 * 256)  # 3 rows per block
    many = analyze(ck, 256, channels=[5, 1, 6])
    assert [r.h for r in many.channels] == list(range(8))
    for a, b in zip(one.channels, many.channels, strict=True):
        assert a.row() == pytest.approx(b.row(), nan_ok=True)
    np.testing.assert_array_equal(one.figures["layers.0"].mag_db, many.figures["layers.0"].mag_db)
    with pytest.raises(ValueError, match="GiB"):
        analyze(ck, 256, max_bytes=1000)


def _free_checkpoint(K):
    """A checkpoint whose one free kernel holds exactly K (1, H, L) (no runnable model: the report needs none)."""
    from sgconv_core.kernels.free import FreeKernel

    k = FreeKernel(K.shape[1], l_max=K.shape[2])
    with torch.no_grad():
        k.kernel.copy_(torch.from_numpy(K))
    return Checkpoint(path="free.safetensors", kernels=[k])


def test_report_writes_the_verdict(tmp_path):
    """A layer of (lag+1)^-1.5 * white noise: verdict.csv, report.json and report.html carry a power law with
    t within 5 % of 1.5, and a free kernel's parameters grow linearly (1024 H, 16384 H, 1048576 H)."""
    from analysis.report import write_report

    rng = np.random.default_rng(0)
    L, H = 2048, 16
    K = ((np.arange(L) + 1.0) ** -1.5 * rng.standard_normal((H, L)))[None]
    rep = analyze(_free_checkpoint(K), L, channels=2)
    paths = write_report(rep, tmp_path, png=False)
    assert "verdict.csv" in paths
    data = json.loads((tmp_path / "report.json").read_text())
    (row,) = data["verdict"]["layers"]
    assert data["verdict"]["L"] == L and row["decay"] == "power law" and abs(row["t_median"] - 1.5) < 0.075
    assert [row[f"params_L{n}"] for n in (1024, 16384, 1048576)] == [1024 * H, 16384 * H, 1048576 * H]
    assert row["growth"] == "linear" and row["check_L"] == 4 * L
    assert data["verdict"]["principle1"].startswith("Principle 1: not sub-linear — 1 layer, kernel params linear")
    assert data["verdict"]["principle2"].startswith("Principle 2: decays as a power law, median t = 1.")
    with open(tmp_path / "verdict.csv", newline="") as f:
        csv_rows = list(csv.DictReader(f))
    assert len(csv_rows) == 1 and list(csv_rows[0])[:6] == ["layer", "kind", "params_L1024", "params_L16384",
                                                            "params_L1048576", "growth"]
    assert abs(float(csv_rows[0]["t_median"]) - 1.5) < 0.075 and csv_rows[0]["verdict"] == row["verdict"]
    page = (tmp_path / "report.html").read_text()
    assert "Verdict on the two principles" in page and data["verdict"]["principle2"] in page


def test_report_cli_writes_the_verdict_of_a_pretrained_model(tmp_path):
    """python -m analysis report on digits-sgconv: its layers decay as power laws, parameters logarithmic in L."""
    out = tmp_path / "v"
    assert main(["report", os.path.join(ROOT, "pretrained", "digits-sgconv.safetensors"), "--out", str(out), "-q",
                 "--no-png"]) == 0
    v = json.loads((out / "report.json").read_text())["verdict"]
    assert v["L"] == 1024 and v["principle1"].startswith("Principle 1: sub-linear — 2 layers, kernel params logarithmic")
    assert all(r["decay"] == "power law" and r["growth"] == "logarithmic" for r in v["layers"])
    assert (out / "verdict.csv").stat().st_size > 0
