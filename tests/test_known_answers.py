"""Known answers for every number `python -m analysis report` writes (issue 13).

tests/test_report.py checks the report against the same batch code that computes it, so a wrong formula
there passes. Here every number is checked against an answer worked out by hand (closed form, or the
closed-form transfer function evaluated independently) for checkpoints whose kernels are built to have that
answer, saved with `sgconv_core.save` the way users have them, and read back by the public CLI
(`analysis.__main__.main(["report", FILE, "--length", L, "--out", DIR, ...])`): the tests read the CSV / JSON
files it writes, never report internals. Each tolerance is tight enough that the number multiplied by 1.1
fails (checked by mutation, see the end of this docstring) and is loose only by the method's measured
numerical error on these clean kernels (said at each test).

Checkpoints (tmp_path, built once per module):
    powerlaw   free kernel ('conv'), L=2048, H=5: layer 0 k_h = A_h (l+1)^-p_h; layer 1 a common p with one
               all-zero channel; layer 2 power laws times cosine carriers
    exponential free kernel, L=2048, H=5: layer 0 k_h = 2^(-l/h_h) (half-life h_h taps); layer 1 common h
    design     free kernel, L=2048, H=2: piecewise-constant kernels whose binned log values are a line plus a
               pattern orthogonal to it -> known slope AND known r^2 < 1
    boxes      free kernel, L=1024, H=5: all mass in the first K taps (boxes) and a spike at lag 5
    spectra    free kernel, L=2048, H=5: layer 0 on-grid tones (exact DFT answers); layer 1 one-pole low-passes
               and resonators a^l cos(w0 l) (answers from their closed-form transfer functions)
    bidir      free kernel, bidirectional (C_k=2), L=1024, H=2: forward power laws, backward exponentials
    sg_stairs  SGConv 'cat', fixed multipliers m_h, constant sub-kernels: the staircase (t/d)^-log2(m)
    sg_learn   SGConv 'cat_randn_learnable_fixed', constant sub-kernels, multiplier 1: k = (t+1)^-decay_h
    sg_bidir   SGConv bidirectional with an explicit n_scales (parameter counts only)
    s4d        S4D, d_state=2 (one complex mode + its conjugate), H=3, hand-set dt, Re A, Im A, B=C=1
    s4d_unst   S4D with real_transform 'none' and one unstable pole (Re A > 0)
    s4         S4 (DPLR) with its HiPPO init: parameter counts and mode count only

Every number the report writes -> the test that checks it against a known answer
(CSV columns; report.json holds the same rows, `test_json_rows_equal_csv_rows` ties each JSON row to its CSV
row, so every CSV check covers the JSON copy too):

channels.csv
    layer, layer_index, c, h   identifiers (layer name / index, kernel channel, feature):
                               test_identifiers_and_direction (C-major order, names layers.i)
    direction                  label: test_identifiers_and_direction (forward c < channels, else backward)
    t                          test_power_law_exponent, test_power_law_with_carrier, test_designed_power_law_fit,
                               test_sgconv_learnable_decay_exponent, test_sgconv_staircase_matches_log2_m
    t_r2                       test_power_law_exponent (=1), test_designed_power_law_fit (closed form < 1)
    r                          test_exponential_rate, test_designed_exponential_fit, test_s4d_real_pole
    r_r2                       test_exponential_rate (=1), test_designed_exponential_fit (closed form < 1)
    range50/range90/range99    test_effective_ranges_boxes, test_effective_ranges_exponential,
                               test_s4d_real_pole
    peak_gain, peak_gain_db    test_tones_exact_dft, test_lowpass_and_resonators, test_s4d_real_pole,
                               test_s4d_complex_mode
    peak_freq                  test_tones_exact_dft, test_lowpass_and_resonators, test_s4d_complex_mode
    bandwidth                  test_tones_exact_dft (the documented on-grid definition),
                               test_lowpass_and_resonators, test_s4d_complex_mode (closed-form -3 dB band)
    centroid                   test_tones_exact_dft, test_lowpass_and_resonators
    slowest_rate, half_life    test_s4d_poles_per_feature, test_s4d_unstable
    peak_gain_db_inf           test_s4d_real_pole, test_s4d_complex_mode, test_s4d_unstable (undefined -> nan)
layers.csv
    layer, kind, H, C_k        identifiers / shape: test_layer_shapes_and_counts
    n_params, n_params_formula test_parameter_counts (hand formulas per family)
    profile_t, profile_t_r2    test_layer_profile_power_law, test_bidirectional_profile_uses_forward_only
    profile_r, profile_r_r2    test_layer_profile_exponential
    n_channels, n_zero         test_layer_shapes_and_counts
    t_median, t_iqr            test_power_law_exponent (median/IQR of the known p_h), test_layer_profile_power_law
    r_median, r_iqr            test_exponential_rate
    range50/90/99_median, _iqr test_effective_ranges_boxes
    t_r2_median, r_r2_median   test_power_law_exponent, test_exponential_rate (clean layers: 1)
    peak_gain_db_median, peak_freq_median, bandwidth_median, centroid_median   test_tones_exact_dft
    n_modes, slowest_rate, half_life, median_half_life, max_abs_pole, unstable_modes
                               test_s4d_poles_per_layer, test_s4d_unstable
    analytic_vs_fft_max_abs, analytic_vs_fft_rel
                               test_s4d_poles_per_layer: known answer 0 (the FFT of a length-L SSM kernel IS its
                               exact finite-L transfer function on the rfft grid); asserted at round-off level.
                               A x1.1 mutation of a round-off number cannot be told apart by construction.
    analytic_grid_points       test_s4d_poles_per_layer (min(L/2 + 1, 1025) at L = 2048 and 4096)
    peak_gain_db_inf_median    test_s4d_poles_per_layer, test_s4d_unstable (absent: no L -> inf response)
kernels.csv
    name, kind, H, channels, C_k, bidirectional, n_params and the settings echoed from the config
    (kernel_dim, n_scales, init_scale, mode, decay_min, decay_max, d_state, n_ssm, init, disc, dt_transform,
    dt_tie, l_max)             test_kernel_table_echoes_the_built_models
params_layers.csv
    layer, kind                identifiers; n_params, n_params_formula, match: test_parameter_counts
params_scaling.csv
    family, kind               labels; L, params, params_per_feature: test_parameter_scaling_table
report.json (beyond the rows above)
    meta.L, n_fft, n_bins, analytic_grid_max, channels_shown, units     test_json_meta_and_checkpoint
    meta.timings_s             wall-clock seconds: not a known answer (checked finite and >= 0 only)
    meta.static_export, static_export_result   text about PNG export: not a number
    checkpoint.summary (file, layout, family, layers, H, channels, bidirectional, l_max, kernel_params,
    total_params, runnable, and the family's settings), checkpoint.card / config / layout / warnings
                               test_json_meta_and_checkpoint (total_params: hand count of the model's layers)
    params.per_layer / scaling  = params_layers.csv / params_scaling.csv (test_json_rows_equal_csv_rows)
    params.families, params.mark_L                                      test_parameter_scaling_table
    analysis_warnings          text; [] for these finite checkpoints: test_json_meta_and_checkpoint
Not in the report: SGConv's reference envelope (analysis.decay.reference_envelope, drawn by the app only);
its slope -log2(m) is checked in test_reference_envelope_slope, and the report's t of an SGConv staircase
against log2(m) in test_sgconv_staircase_matches_log2_m.

Mutations (one line of the code under test at a time, the value x1.1, run, line restored): every one below
makes tests here fail.
    analysis/decay.py      _power_law_rows `-slope` (t, profile_t); _exp_rows `-slope` (r, profile_r);
                           _ranges `+ 1.0` (ranges); _line_fits r2 (both r^2); pole_decay `rates`, `half_life`;
                           median_iqr median, iqr; summarize_layer n_zero (+1)
    analysis/frequency.py  frequency_summary peak_gain, peak_gain_db, peak_freq, bandwidth, centroid
    analysis/measure.py    per-feature half_h; gain_inf_db; max_abs_pole; analytic_grid_points; the RMS profile's
                           t and r; the profile over all channels instead of the forward ones
    analysis/params.py     params_per_feature
    sgconv_core            Family.count_params (n_params_formula, scaling), Kernel.n_params (counted),
                           Checkpoint.n_params (total_params)

Findings while building these (methods' honest error on clean kernels; the tests use the tolerance the method
achieves and say so):
- bandwidth at n_fft = L cannot resolve a band narrower than ~2 rfft bins: an on-grid rectangular-window
  tone's DTFT -3 dB width is 0.886/L but the report gives 0.584/L (-34 %); a Hann-windowed tone 1.44/L vs
  1.168/L (-19 %). Wider bands follow the closed form to within the grid's scalloping: an a = 0.99 resonance
  (-3 dB band 6.5 bins) gives bandwidth +0.5 % on a bin, up to +2.5 % half a bin off it, and peak gain 0 to
  -1.1 %; an a = 0.97 one (20 bins) <= 0.3 % and -0.1 %.
- centroid sums |H|^2 over the one-sided rfft grid with the DC bin at full weight (a two-sided spectrum counts
  it half as much as the others), so low-pass centroids come out low by about P(0) / (2 sum P): -0.9 % for
  a one-pole low-pass with a = 0.9, -9 % for a = 0.99 (L = 2048). Symmetric band-pass spectra are exact.
- params_scaling.csv used to repeat an SSM model's own row as "S4D (n_ssm=H)" / "S4 DPLR (n_ssm=H)" (the
  model's n_ssm is the number H, the default family's None); fixed in `analysis.params._same_family`, and
  `test_parameter_scaling_table` now requires the row to be absent.
- the power-law fit of an SGConv staircase (fixed multiplier m, constant sub-kernels) gives t about 2.6 %
  below log2(m) at L = 4096, d = 8 (4.7 % at L = 1024): a least-squares line through a staircase over K octaves
  has slope (1 - 1/K^2) times the stair's mean slope; not a bug of the fit.
"""
from __future__ import annotations

import csv
import json
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from scipy import integrate, optimize

import sgconv_core
from analysis.__main__ import main as cli_main
from sgconv_core import ModelConfig, SequenceModel

LN2 = math.log(2.0)
#: the report's band edge: exactly 3 dB below the peak (10^(-3/20) = 0.70795, not half power 0.70711)
THR = 10.0 ** (-3.0 / 20.0)
#: the parameter-scaling lengths of the report (analysis.params.DEFAULT_LENGTHS): 2^10 .. 2^20
SCALING_LENGTHS = [2 ** p for p in range(10, 21)]
D_IN, D_OUT = 1, 2

# ------------------------------------------------------------------------------------------------ kernels
L_PL = 2048
PL_P = [0.5, 1.0, 1.5, 2.0, 2.5]
PL_A = [1.0, 3.0, 0.5, 2.0, 1.0]
PL_COMMON_P = 1.25
PL_COMMON_A = [1.0, 2.0, 3.0, 4.0, 0.0]  # the last channel is all zeros (a dead channel)
PL_CARRIER = [(0.5, 1.0), (1.0, 2.5), (2.0, 0.3), (1.0, 0.3), (1.5, 1.7)]  # (p, omega rad/tap)

L_EXP = 2048
EXP_HALF = [45.0, 71.0, 101.0, 151.0, 229.0]  # half-lives in taps: k = 2^(-l/h), rate ln2/h per tap
EXP_COMMON_HALF = 80.0
EXP_COMMON_A = [1.0, 0.5, 2.0, 4.0, 0.25]

L_DESIGN = 2048
DESIGN_R, DESIGN_DELTA = 0.004, 1.9  # exponential design: slope -R per tap, pattern amplitude delta
DESIGN_P, DESIGN_PL_DELTA = 1.2, 0.35  # power-law design

L_BOX = 1024
BOX_K = [10, 37, 100, 255]  # boxes of K ones; channel 4 is a spike at lag 5
SPIKE_AT = 5

L_SP = 2048
TONES = [  # layer 0: (kind, bin) on-grid tones
    ("cos", 205), ("hann", 512), ("two", (41, 410)), ("dc", 0), ("sin", 1000)]
RESP = [  # layer 1: ("lp", a) one-pole low-pass a^l; ("res", a, f0) resonator a^l cos(2 pi f0 l)
    ("lp", 0.9), ("res", 0.97, 0.1), ("res", 0.99, 0.2), ("lp", 0.97), ("res", 0.95, 0.25)]

L_BIDIR = 1024
BIDIR_FWD_P, BIDIR_FWD_A = 1.0, [1.0, 2.0]
BIDIR_BWD_HALF = 50.0

# SGConv
SG_STAIRS = {"L": 4096, "H": 3, "d": 8, "m": (1.5, 3.0)}  # multiplier linspace(1.5, 3, 3) = 1.5, 2.25, 3
SG_LEARN = {"L": 2048, "H": 3, "d": 16, "decay": (0.5, 1.0, 2.0), "n_layers": 2}
SG_BIDIR = {"L": 1024, "H": 2, "d": 8, "n_scales": 4}

# S4D: per feature dt, alpha = -Re A, beta = -Im A (zoh: lambda = exp(dt A)); B = C = 1
S4D = {"L": 2048, "dt": (0.05, 0.02, 0.004), "alpha": (0.5, 0.5, 1.0), "beta": (0.0, 2 * math.pi * 0.1 / 0.02, 0.0)}
S4D_UNST = {"L": 512, "dt": (0.01, 0.01), "A_real": (-0.002, 0.5)}  # real_transform 'none': Re A = -A_real
S4 = {"L": 512, "H": 4, "N": 8}  # S4 (DPLR, HiPPO-LegS init): parameter counts, number of modes


def f32(x):
    """x as the float32 the checkpoint stores (the known answers use the stored values)."""
    return np.asarray(x, dtype=np.float32).astype(np.float64)


def powerlaw(L, p, A=1.0):
    return A * (np.arange(L) + 1.0) ** -p


def halving(L, h, A=1.0):
    return A * 2.0 ** (-np.arange(L) / h)


def _design_exp(L):
    """Constant on each of the 64 equal-width bins of 32 taps; log value y_b = -R x_b + delta c_b with x_b the
    bin's mean position and c = (+1, -1, -1, +1, ...): c is orthogonal to 1 and to x, so the least-squares line
    through (x_b, y_b) has slope exactly -R and r^2 = R^2 Sxx / (R^2 Sxx + delta^2 sum c^2)."""
    w = L // 64
    b = np.arange(64)
    x = w * b + (w + 1) / 2.0  # mean of lag + 1 over the bin
    c = np.tile([1.0, -1.0, -1.0, 1.0], 16)
    y = -DESIGN_R * x + DESIGN_DELTA * c
    k = np.exp(np.repeat(y, w))
    sxx = float(((x - x.mean()) ** 2).sum())
    r2 = DESIGN_R ** 2 * sxx / (DESIGN_R ** 2 * sxx + DESIGN_DELTA ** 2 * float((c * c).sum()))
    return k, r2


def _design_powerlaw(L, n_bins=64, min_count=8):
    """Constant on each geometric bin of lags 1..L-1 (the fit's documented bins: edges geomspace(1, L-1, 65),
    right edge in the last bin; bins of >= 8 taps are fitted); log value y_b = -P x_b + delta c_b over the
    fitted bins with x_b = mean log(lag + 1) and c orthogonal to 1 and x there -> t = P exactly and
    r^2 = P^2 Sxx / (P^2 Sxx + delta^2 sum c^2)."""
    lag = np.arange(1, L, dtype=np.float64)
    edges = np.geomspace(1.0, L - 1.0, n_bins + 1)
    bn = np.searchsorted(edges, lag, side="right")
    bn[lag == edges[-1]] -= 1
    ids = np.unique(bn)
    cnt = np.array([(bn == i).sum() for i in ids])
    x = np.array([np.log(lag[bn == i] + 1.0).mean() for i in ids])
    keep = cnt >= min_count
    assert keep.sum() >= 10
    xs = x[keep]
    c0 = np.tile([1.0, -1.0, -1.0, 1.0], keep.sum() // 4 + 1)[:keep.sum()]
    Q, _ = np.linalg.qr(np.stack([np.ones_like(xs), xs], 1))
    c = c0 - Q @ (Q.T @ c0)
    y = -DESIGN_P * x
    y[keep] += DESIGN_PL_DELTA * c
    k = np.empty(L)
    k[0] = 1.0
    k[1:] = np.exp(y[np.searchsorted(ids, bn)])
    sxx = float(((xs - xs.mean()) ** 2).sum())
    r2 = DESIGN_P ** 2 * sxx / (DESIGN_P ** 2 * sxx + DESIGN_PL_DELTA ** 2 * float((c * c).sum()))
    return k, r2


def _tone(L, kind, b):
    l = np.arange(L)
    if kind == "cos":
        return np.cos(2 * np.pi * b * l / L)
    if kind == "sin":
        return np.sin(2 * np.pi * b * l / L)
    if kind == "hann":
        return (0.5 - 0.5 * np.cos(2 * np.pi * l / L)) * np.cos(2 * np.pi * b * l / L)
    if kind == "two":
        return 2.0 * np.cos(2 * np.pi * b[0] * l / L) + np.cos(2 * np.pi * b[1] * l / L)
    if kind == "dc":
        return np.ones(L)
    raise ValueError(kind)


def _resp_kernel(L, spec):
    l = np.arange(L)
    if spec[0] == "lp":
        return spec[1] ** l
    return spec[1] ** l * np.cos(2 * np.pi * spec[2] * l)


# ------------------------------------------------------------------------------------------------ building
def _free_model(layers, bidirectional=False):
    """A SequenceModel of free kernels whose stored tensors are `layers` [(C_k, H, L) arrays]."""
    C_k, H, L = np.asarray(layers[0]).shape
    cfg = ModelConfig(d_input=D_IN, d_output=D_OUT, d_model=H, n_layers=len(layers), kernel="conv", l_max=L,
                      bidirectional=bidirectional)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = SequenceModel(cfg)
    with torch.no_grad():
        for kmod, K in zip(model.kernels, layers):
            kmod.kernel.copy_(torch.as_tensor(np.asarray(K), dtype=torch.float32))
    return model


def _sgconv_model(L, H, d, n_layers=1, bidirectional=False, **ka):
    cfg = ModelConfig(d_input=D_IN, d_output=D_OUT, d_model=H, n_layers=n_layers, kernel="sgconv", l_max=L,
                      kernel_args={"kernel_dim": d, **ka}, bidirectional=bidirectional)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return SequenceModel(cfg)


def _const_subkernels(model, decay=None):
    with torch.no_grad():
        for k in model.kernels:
            for w in k.kernel_list:
                w.fill_(1.0)
            if decay is not None:
                k.decay.copy_(torch.tensor(decay, dtype=torch.float32))
            k.freeze_norm()


def _s4d_model(L, H, **ka):
    cfg = ModelConfig(d_input=D_IN, d_output=D_OUT, d_model=H, n_layers=1, kernel="s4d", l_max=L,
                      kernel_args={"d_state": 2, **ka})
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = SequenceModel(cfg)
    return model


def _set_s4d(model, inv_dt, A_real, A_imag):
    k = model.kernels[0]
    H = k.H
    with torch.no_grad():
        k.inv_dt.copy_(torch.tensor(inv_dt, dtype=torch.float32).view(H, 1))
        k.A_real.copy_(torch.tensor(A_real, dtype=torch.float32).view(H, 1))
        k.A_imag.copy_(torch.tensor(A_imag, dtype=torch.float32).view(H, 1))
        k.B.zero_()
        k.B[..., 0] = 1.0
        k.C.zero_()
        k.C[..., 0] = 1.0


def _build_all(root):
    """{name: (path, L, model)} of every checkpoint of this module, saved with sgconv_core.save."""
    out = {}

    def save(name, model, L):
        path = root / f"{name}.safetensors"
        sgconv_core.save(model, path, card={"name": name, "notes": "known-answer test checkpoint", "L": L})
        out[name] = (path, L, model)

    L = L_PL
    lay0 = np.stack([powerlaw(L, p, A) for p, A in zip(PL_P, PL_A)])[None]
    lay1 = np.stack([powerlaw(L, PL_COMMON_P, A) for A in PL_COMMON_A])[None]
    lay2 = np.stack([powerlaw(L, p) * np.cos(w * np.arange(L)) for p, w in PL_CARRIER])[None]
    save("powerlaw", _free_model([lay0, lay1, lay2]), L)

    L = L_EXP
    lay0 = np.stack([halving(L, h) for h in EXP_HALF])[None]
    lay1 = np.stack([halving(L, EXP_COMMON_HALF, A) for A in EXP_COMMON_A])[None]
    save("exponential", _free_model([lay0, lay1]), L)

    L = L_DESIGN
    save("design", _free_model([np.stack([_design_exp(L)[0], _design_powerlaw(L)[0]])[None]]), L)

    L = L_BOX
    rows = []
    for K in BOX_K:
        k = np.zeros(L)
        k[:K] = 1.0
        rows.append(k)
    spike = np.zeros(L)
    spike[SPIKE_AT] = 1.0
    rows.append(spike)
    save("boxes", _free_model([np.stack(rows)[None]]), L)

    L = L_SP
    lay0 = np.stack([_tone(L, kind, b) for kind, b in TONES])[None]
    lay1 = np.stack([_resp_kernel(L, s) for s in RESP])[None]
    save("spectra", _free_model([lay0, lay1]), L)

    L = L_BIDIR
    fwd = np.stack([powerlaw(L, BIDIR_FWD_P, A) for A in BIDIR_FWD_A])
    bwd = np.stack([halving(L, BIDIR_BWD_HALF, 3.0), halving(L, BIDIR_BWD_HALF / 2)])
    save("bidir", _free_model([np.stack([fwd, bwd])], bidirectional=True), L)

    s = SG_STAIRS
    m = _sgconv_model(s["L"], s["H"], s["d"], decay_min=s["m"][0], decay_max=s["m"][1])
    _const_subkernels(m)
    save("sg_stairs", m, s["L"])

    s = SG_LEARN
    m = _sgconv_model(s["L"], s["H"], s["d"], n_layers=s["n_layers"], mode="cat_randn_learnable_fixed",
                      decay_min=0.5, decay_max=2.0)
    _const_subkernels(m, decay=s["decay"])
    save("sg_learn", m, s["L"])

    s = SG_BIDIR
    save("sg_bidir", _sgconv_model(s["L"], s["H"], s["d"], bidirectional=True, n_scales=s["n_scales"]), s["L"])

    s = S4D
    m = _s4d_model(s["L"], 3)
    _set_s4d(m, np.log(s["dt"]), np.log(s["alpha"]), s["beta"])
    save("s4d", m, s["L"])

    s = S4D_UNST
    m = _s4d_model(s["L"], 2, real_transform="none")
    _set_s4d(m, np.log(s["dt"]), s["A_real"], (0.0, 0.0))
    save("s4d_unst", m, s["L"])

    s = S4
    cfg = ModelConfig(d_input=D_IN, d_output=D_OUT, d_model=s["H"], n_layers=1, kernel="s4", l_max=s["L"],
                      kernel_args={"d_state": s["N"]})
    with torch.random.fork_rng():
        torch.manual_seed(0)
        save("s4", SequenceModel(cfg), s["L"])
    return out


# ------------------------------------------------------------------------------------------------ reading
def _cell(s: str):
    if s == "":
        return None
    if s in ("True", "False"):
        return s == "True"
    try:
        return int(s)
    except ValueError:
        pass
    try:
        return float(s)
    except ValueError:
        return s


def _read_csv(path):
    with open(path, newline="") as f:
        return [{k: _cell(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _run_cli(path, L, out):
    """The public path: the CLI's report command writes CSV + JSON into `out`; read them back."""
    rc = cli_main(["report", str(path), "--length", str(L), "--out", str(out), "--quiet", "--no-html", "--no-png"])
    assert rc == 0, f"report CLI exit code {rc} for {path}"
    rep = {name: _read_csv(out / f"{name}.csv") for name in
           ("channels", "layers", "kernels", "params_layers", "params_scaling")}
    with open(out / "report.json") as f:
        rep["json"] = json.load(f)
    return rep


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return _build_all(tmp_path_factory.mktemp("known-answer-checkpoints"))


@pytest.fixture(scope="module")
def reports(built, tmp_path_factory):
    root = tmp_path_factory.mktemp("known-answer-reports")
    out = {name: _run_cli(path, L, root / name) for name, (path, L, _) in built.items()}
    out["s4d@4096"] = _run_cli(built["s4d"][0], 4096, root / "s4d-4096")
    return out


def ch(rep, li, h, c=0):
    rows = [r for r in rep["channels"] if r["layer_index"] == li and r["h"] == h and r["c"] == c]
    assert len(rows) == 1, (li, h, c, len(rows))
    return rows[0]


def close(got, want, rel=None, abs=None, what=""):
    """Assert got == want within rel (relative) or abs; the message says by how much it is off."""
    assert got is not None and isinstance(got, (int, float)), f"{what}: got {got!r}, want {want}"
    err = abs_err = math.fabs(got - want)
    tol = (rel * math.fabs(want) if rel is not None else 0.0) + (abs if abs is not None else 0.0)
    rel_err = abs_err / math.fabs(want) if want else math.inf
    assert err <= tol, f"{what}: got {got!r}, known answer {want!r} (off by {abs_err:.3g}, rel {rel_err:.3g}; tol {tol:.3g})"


def med_iqr(values):
    """Median and IQR of an odd number n = 4j + 1 of known values: the sorted values at ranks n/2, n/4, 3n/4
    (no interpolation happens at those ranks)."""
    v = sorted(values)
    n = len(v)
    assert (n - 1) % 4 == 0
    return v[(n - 1) // 2], v[3 * (n - 1) // 4] - v[(n - 1) // 4]


# ------------------------------------------------------------------------------------------------ decay
def test_power_law_exponent(reports):
    """k_h = A_h (l+1)^-p_h -> t = p_h, log-log r^2 = 1. Tolerance rel 1e-3: the binned-RMS fit is biased by
    < 3e-5 relative on exact power laws (measured, L = 256 .. 4096); x1.1 is 100x outside."""
    rep = reports["powerlaw"]
    for h, p in enumerate(PL_P):
        row = ch(rep, 0, h)
        close(row["t"], p, rel=1e-3, what=f"t of (l+1)^-{p}")
        close(row["t_r2"], 1.0, abs=1e-4, what=f"t_r2 of (l+1)^-{p}")
    lay = rep["layers"][0]
    med, iqr = med_iqr(PL_P)
    close(lay["t_median"], med, rel=1e-3, what="t_median")
    close(lay["t_iqr"], iqr, rel=1e-3, what="t_iqr")
    close(lay["t_r2_median"], 1.0, abs=1e-4, what="t_r2_median")


def test_power_law_with_carrier(reports):
    """(l+1)^-p cos(w l): the binned RMS removes the carrier, t = p. Measured error on these kernels up to
    0.8 % (-1.7 % for p = 0.5, w = 0.3, not used); tolerance rel 2 %."""
    rep = reports["powerlaw"]
    for h, (p, w) in enumerate(PL_CARRIER):
        close(ch(rep, 2, h)["t"], p, rel=0.02, what=f"t of (l+1)^-{p} cos({w} l)")


def test_layer_profile_power_law(reports):
    """Channels A_h (l+1)^-p with one all-zero channel: the RMS profile sqrt(mean_h k^2) is rms(A) (l+1)^-p, so
    profile_t = p (r^2 = 1); the zero channel has no numbers (nan) and the medians skip it."""
    rep = reports["powerlaw"]
    lay = rep["layers"][1]
    close(lay["profile_t"], PL_COMMON_P, rel=1e-3, what="profile_t")
    close(lay["profile_t_r2"], 1.0, abs=1e-4, what="profile_t_r2")
    close(lay["t_median"], PL_COMMON_P, rel=1e-3, what="t_median (zero channel skipped)")
    close(lay["t_iqr"], 0.0, abs=1e-4, what="t_iqr of equal exponents")
    dead = ch(rep, 1, 4)
    for key in ("t", "t_r2", "r", "r_r2", "range50", "range90", "range99", "peak_gain", "peak_gain_db",
                "peak_freq", "bandwidth", "centroid"):
        assert isinstance(dead[key], float) and math.isnan(dead[key]), (key, dead[key])


def test_designed_power_law_fit(reports):
    """A kernel constant on each fitting bin with log values P x + (pattern orthogonal to 1, x): t = P exactly,
    t_r2 = closed form (about 0.85 here). Tolerances: t rel 1e-4, r^2 abs 1e-4 (float32 storage only)."""
    _, r2 = _design_powerlaw(L_DESIGN)
    assert 0.5 < r2 < 0.95
    row = ch(reports["design"], 0, 1)
    close(row["t"], DESIGN_P, rel=1e-4, what="t of the designed power law")
    close(row["t_r2"], r2, abs=1e-4, what="t_r2 of the designed power law")


def test_exponential_rate(reports):
    """k = 2^(-l/h): the exponential fit gives r = ln2 / h per tap (exact for the binned RMS of an
    exponential), r^2 = 1. Tolerance rel 1e-4 (measured error < 1e-6)."""
    rep = reports["exponential"]
    rates = [LN2 / h for h in EXP_HALF]
    for h, r in enumerate(rates):
        row = ch(rep, 0, h)
        close(row["r"], r, rel=1e-4, what=f"r of 2^(-l/{EXP_HALF[h]})")
        close(row["r_r2"], 1.0, abs=1e-6, what="r_r2 of an exponential")
    lay = rep["layers"][0]
    med, iqr = med_iqr(rates)
    close(lay["r_median"], med, rel=1e-4, what="r_median")
    close(lay["r_iqr"], iqr, rel=1e-4, what="r_iqr")
    close(lay["r_r2_median"], 1.0, abs=1e-6, what="r_r2_median")


def test_layer_profile_exponential(reports):
    """Channels A_h 2^(-l/h): profile_r = ln2 / h, r^2 = 1 (rel 1e-4)."""
    lay = reports["exponential"]["layers"][1]
    close(lay["profile_r"], LN2 / EXP_COMMON_HALF, rel=1e-4, what="profile_r")
    close(lay["profile_r_r2"], 1.0, abs=1e-6, what="profile_r_r2")


def test_designed_exponential_fit(reports):
    """Constant on the 64 equal-width bins, log values -R x + delta (+1, -1, -1, +1, ...): r = R exactly and
    r_r2 = closed form (about 0.61). Tolerances: r rel 1e-4, r^2 abs 1e-4."""
    _, r2 = _design_exp(L_DESIGN)
    assert 0.5 < r2 < 0.7
    row = ch(reports["design"], 0, 0)
    close(row["r"], DESIGN_R, rel=1e-4, what="r of the designed kernel")
    close(row["r_r2"], r2, abs=1e-4, what="r_r2 of the designed kernel")


def _range_box(K, pct):
    return math.ceil(Fraction(pct, 100) * K)  # E(n) = n / K: the first n with n / K >= pct %


def test_effective_ranges_boxes(reports):
    """All the energy in the first K taps (a box of ones): range_p = ceil(p K) exactly ("at least p"), and a spike
    at lag 5 gives 6 for every p. Exact equality (integers)."""
    rep = reports["boxes"]
    want = {pct: [_range_box(K, pct) for K in BOX_K] + [SPIKE_AT + 1] for pct in (50, 90, 99)}
    assert want[50][:3] == [5, 19, 50] and want[99][3] == 253  # the hand values of the comment below
    for pct in (50, 90, 99):
        for h, w in enumerate(want[pct]):
            assert ch(rep, 0, h)[f"range{pct}"] == w, (pct, h, ch(rep, 0, h)[f"range{pct}"], w)
        med, iqr = med_iqr(want[pct])
        lay = rep["layers"][0]
        assert lay[f"range{pct}_median"] == med, (pct, lay[f"range{pct}_median"], med)
        assert lay[f"range{pct}_iqr"] == iqr, (pct, lay[f"range{pct}_iqr"], iqr)


def _range_exp(a, L, pct):
    """First n with sum_{l<n} a^(2l) >= p sum_{l<L} a^(2l): a^(2n) <= 1 - p (1 - a^(2L))."""
    x = math.log(1.0 - pct / 100 * (1.0 - a ** (2 * L))) / (2.0 * math.log(a))
    assert 0.02 < x - math.floor(x) < 0.98, "test design: keep the answer away from an integer boundary"
    return math.ceil(x)


def test_effective_ranges_exponential(reports):
    """k = 2^(-l/h): range_p = ceil(ln(1 - p (1 - a^(2L))) / (2 ln a)), a = 2^(-1/h) (about h/2, 1.66 h, 3.32 h).
    Exact equality."""
    rep = reports["exponential"]
    for h, hl in enumerate(EXP_HALF):
        for pct in (50, 90, 99):
            want = _range_exp(2.0 ** (-1.0 / hl), L_EXP, pct)
            assert ch(rep, 0, h)[f"range{pct}"] == want, (hl, pct, ch(rep, 0, h)[f"range{pct}"], want)


# ------------------------------------------------------------------------------------------------ frequency
def test_tones_exact_dft(reports):
    """On-grid tones have exact DFTs: cos at bin b -> |H| = L/2 at f = b/L and 0 elsewhere; Hann-windowed cos ->
    L/4 at b, L/8 at b +- 1; 2 cos(b1) + cos(b2) -> L at b1, L/2 at b2, centroid (4 f1 + f2) / 5; a constant ->
    L at f = 0. bandwidth: the report's documented definition on the rfft grid (edges interpolated linearly in
    amplitude to the neighbour bins): 2 (1 - THR) / L for a lone bin, 2 (1 - THR) / (1 - 1/2) / L for the
    Hann tone, (1 - THR) / L for DC (band stops at f = 0). Tolerances: gains, frequencies, centroids rel 1e-6,
    dB abs 1e-6, bandwidth rel 1e-4 (float32 storage noise only)."""
    L = L_SP
    rep = reports["spectra"]
    want = {  # h: (peak_gain, peak_freq, bandwidth, centroid)
        0: (L / 2, 205 / L, 2 * (1 - THR) / L, 205 / L),
        1: (L / 4, 512 / L, 2 * (1 - THR) / 0.5 / L, 512 / L),
        2: (L, 41 / L, 2 * (1 - THR) / L, (4 * 41 + 410) / (5 * L)),
        3: (L, 0.0, (1 - THR) / L, 0.0),
        4: (L / 2, 1000 / L, 2 * (1 - THR) / L, 1000 / L),
    }
    for h, (g, f, bw, cen) in want.items():
        row = ch(rep, 0, h)
        close(row["peak_gain"], g, rel=1e-6, what=f"peak_gain tone {h}")
        close(row["peak_gain_db"], 20 * math.log10(g), abs=1e-6, what=f"peak_gain_db tone {h}")
        close(row["peak_freq"], f, rel=1e-6, abs=1e-12, what=f"peak_freq tone {h}")
        close(row["bandwidth"], bw, rel=1e-4, what=f"bandwidth tone {h}")
        close(row["centroid"], cen, rel=1e-6, abs=1e-9, what=f"centroid tone {h}")
    lay = rep["layers"][0]
    close(lay["peak_gain_db_median"], med_iqr([20 * math.log10(v[0]) for v in want.values()])[0], abs=1e-6,
          what="peak_gain_db_median")
    close(lay["peak_freq_median"], med_iqr([v[1] for v in want.values()])[0], rel=1e-6, what="peak_freq_median")
    close(lay["bandwidth_median"], med_iqr([v[2] for v in want.values()])[0], rel=1e-4, what="bandwidth_median")
    close(lay["centroid_median"], med_iqr([v[3] for v in want.values()])[0], rel=1e-6, what="centroid_median")


def _H_resonator(a, f0):
    """Transfer function of a^l cos(w0 l), l >= 0: (1/2) sum_+- 1 / (1 - a e^{i(+-w0 - w)})."""
    w0 = 2 * math.pi * f0
    return lambda w: 0.5 / (1 - a * np.exp(1j * (w0 - w))) + 0.5 / (1 - a * np.exp(-1j * (w0 + w)))


def _closed_form_mag(spec):
    """|H(w)| of a RESP kernel from its transfer function (L -> inf; a^L < 1e-9 here)."""
    if spec[0] == "lp":
        a = spec[1]
        return lambda w: float(abs(1.0 / (1.0 - a * np.exp(-1j * w))))
    H = _H_resonator(spec[1], spec[2])
    return lambda w: float(abs(H(w)))


def _peak(mag, w_guess, span):
    """(w, |H|) at the maximum of a closed-form |H| near w_guess."""
    res = optimize.minimize_scalar(lambda w: -mag(w), bounds=(w_guess - span, w_guess + span), method="bounded",
                                   options={"xatol": 1e-12})
    return float(res.x), mag(float(res.x))


def _centroid(mag, w_peak):
    """Power-weighted mean frequency over [0, 1/2] cycles/sample of a closed-form |H|, by quadrature."""
    pts = [w_peak] if w_peak > 0 else None
    num = integrate.quad(lambda w: w * mag(w) ** 2, 0, math.pi, points=pts, limit=500)[0]
    den = integrate.quad(lambda w: mag(w) ** 2, 0, math.pi, points=pts, limit=500)[0]
    return num / den / (2 * math.pi)


def _band(Hmag, w_peak, g_peak):
    """-3 dB band edges of a closed-form |H| around its peak, by root finding (clipped to [0, pi])."""
    f = lambda w: Hmag(w) - THR * g_peak  # noqa: E731
    lo = 0.0 if f(0.0) >= 0 else optimize.brentq(f, 0.0, w_peak, xtol=1e-14)
    hi = math.pi if f(math.pi) >= 0 else optimize.brentq(f, w_peak, math.pi, xtol=1e-14)
    return lo, hi


def _grid_band(mag):
    """The report's documented bandwidth on an rfft grid of L/2 + 1 points (cycles/sample), by hand: the run of
    bins around the (first) maximum with |H| >= 10^(-3/20) max; each edge moved linearly in amplitude from the
    last bin inside towards the first bin outside to where |H| = threshold; a run reaching the grid's end stops
    there."""
    mag = np.asarray(mag, dtype=np.float64)
    n = mag.size
    df = 0.5 / (n - 1)
    p = int(mag.argmax())
    thr = THR * mag[p]
    lo = p
    while lo > 0 and mag[lo - 1] >= thr:
        lo -= 1
    hi = p
    while hi < n - 1 and mag[hi + 1] >= thr:
        hi += 1
    f_lo = lo * df if lo == 0 else (lo - (mag[lo] - thr) / (mag[lo] - mag[lo - 1])) * df
    f_hi = hi * df if hi == n - 1 else (hi + (mag[hi] - thr) / (mag[hi] - mag[hi + 1])) * df
    return f_hi - f_lo


def test_lowpass_and_resonators(reports):
    """One-pole low-pass a^l: peak |H(0)| = 1/(1-a) at f = 0, -3 dB edge cos w = (1 + a^2 - 10^0.3 (1-a)^2) / (2a).
    Resonator a^l cos(w0 l): peak, -3 dB band and centroid of the closed-form |H(w)| (optimiser, root finder,
    quadrature; no FFT).
    Exact part: on the rfft grid w_k = 2 pi k / L the response of the length-L kernel is the finite geometric
    sum (1/2) sum_+- (1 - (a e^{i(+-w0 - w)})^L) / (1 - a e^{i(+-w0 - w)}): peak_gain and peak_freq equal its
    grid maximum (rel 1e-6, dB abs 1e-6).
    Continuous part (the grid samples the response every 1/L): peak gain rel 1.5 % (the grid misses an off-grid
    resonance peak: -0.72 % for a = 0.99 at f0 = 0.2 = bin 409.6, up to ~1.1 % at half a bin), peak frequency
    within one bin 1/L (<= 0.5 % of f0 here), bandwidth rel 3 % (the band is measured 3 dB below the grid's
    peak, which an off-grid resonance lowers: measured +0.5 % on-grid up to +2.5 % at half a bin offset for the
    6.5-bin-wide a = 0.99 band, <= 0.3 % for a = 0.97; here +1.7 %), centroid of the band-passes rel 0.5 %
    (measured 3e-5), centroid of the a = 0.9 low-pass rel 2 % (measured -0.9 %: the DC bin's full weight, see
    the module docstring). The bandwidth is also checked exactly (rel 1e-6) against the documented definition
    applied by hand to the exact grid response (`_grid_band`)."""
    L = L_SP
    rep = reports["spectra"]
    for h, spec in enumerate(RESP):
        row = ch(rep, 1, h)
        a = spec[1]
        mag = _closed_form_mag(spec)
        if spec[0] == "lp":
            w_peak, g = 0.0, 1.0 / (1.0 - a)
            wc = math.acos((1 + a * a - 10 ** 0.3 * (1 - a) ** 2) / (2 * a))
            lo, hi = 0.0, wc
            close(_band(mag, 0.0, g)[1], wc, rel=1e-9, what="closed-form cutoff (self-check)")
        else:
            w_peak, g = _peak(mag, 2 * math.pi * spec[2], 0.3)
            lo, hi = _band(mag, w_peak, g)
        wk = 2 * np.pi * np.arange(L // 2 + 1) / L
        poles = [a + 0j] if spec[0] == "lp" else [a * np.exp(2j * np.pi * spec[2]), a * np.exp(-2j * np.pi * spec[2])]
        wt = 1.0 if spec[0] == "lp" else 0.5
        Hgrid = np.abs(sum(wt * (1 - (p * np.exp(-1j * wk)) ** L) / (1 - p * np.exp(-1j * wk)) for p in poles))
        i = int(Hgrid.argmax())
        close(row["peak_gain"], float(Hgrid[i]), rel=1e-6, what=f"peak_gain {spec} (grid, exact)")
        close(row["peak_gain_db"], 20 * math.log10(Hgrid[i]), abs=1e-6, what=f"peak_gain_db {spec} (grid, exact)")
        close(row["peak_freq"], i / L, rel=1e-9, abs=1e-12, what=f"peak_freq {spec} (grid, exact)")
        close(row["peak_gain"], g, rel=0.015, what=f"peak_gain {spec} vs the continuous peak")
        close(row["peak_gain_db"], 20 * math.log10(g), abs=0.15, what=f"peak_gain_db {spec} vs the continuous peak")
        close(row["peak_freq"], w_peak / (2 * math.pi), abs=1.0 / L, what=f"peak_freq {spec}")
        close(row["bandwidth"], _grid_band(Hgrid), rel=1e-6, what=f"bandwidth {spec} (grid, definition)")
        close(row["bandwidth"], (hi - lo) / (2 * math.pi), rel=0.03, what=f"bandwidth {spec}")
        cen = _centroid(mag, w_peak)
        if spec[0] == "res":
            close(row["centroid"], cen, rel=0.005, what=f"centroid {spec}")
        elif a == 0.9:
            close(row["centroid"], cen, rel=0.02, what=f"centroid {spec} (DC-weight bias ~ -0.9 %)")


# ------------------------------------------------------------------------------------------------ SSM
def _s4d_truth():
    """Stored (float32) dt, A and the zoh poles / residues of each feature, by hand: lambda = exp(dt A),
    residue (lambda - 1) / A (B = C = 1), conjugate pair for the kernel 2 Re(r lambda^l)."""
    s = S4D
    dt = np.exp(f32(np.log(s["dt"])))
    alpha = np.exp(f32(np.log(s["alpha"])))
    beta = f32(s["beta"])
    A = -alpha - 1j * beta
    lam = np.exp(dt * A)
    res = (lam - 1.0) / A
    return dt, alpha, beta, lam, res


def _H_modes(res, lam, w, L=None):
    """Exact transfer of 2 Re(r lambda^l): sum over the pair {r, conj r} x {lambda, conj lambda} of
    r (1 - lambda^L) / (1 - lambda e^{-iw}) (L None: infinite length)."""
    z = np.exp(-1j * np.asarray(w))
    out = 0
    for r, lm in ((res, lam), (np.conj(res), np.conj(lam))):
        out = out + r * (1.0 if L is None else 1.0 - lm ** L) / (1.0 - lm * z)
    return out


def test_s4d_poles_per_feature(reports):
    """slowest_rate = -ln|lambda| = dt alpha, half_life = ln2 / (dt alpha) per feature. Tolerance rel 1e-6."""
    dt, alpha, *_ = _s4d_truth()
    rep = reports["s4d"]
    for h in range(3):
        row = ch(rep, 0, h)
        close(row["slowest_rate"], dt[h] * alpha[h], rel=1e-6, what=f"slowest_rate h={h}")
        close(row["half_life"], LN2 / (dt[h] * alpha[h]), rel=1e-6, what=f"half_life h={h}")


@pytest.mark.parametrize("L", [2048, 4096])
def test_s4d_poles_per_layer(reports, L):
    """Layer: n_modes = 2 (one complex mode and its conjugate), slowest rate / half-life of the slowest pole of
    all features, median of the per-feature half-lives, max |lambda|, no unstable modes, the rfft grid size
    min(L/2 + 1, 1025), the FFT of the kernel equal to the exact transfer function (known answer 0; round-off
    bound 1e-9 of the peak), and the median over channels of the L -> inf peak gain on that grid (closed form).
    Tolerances rel 1e-6."""
    dt, alpha, beta, lam, res = _s4d_truth()
    lay = reports["s4d" if L == 2048 else "s4d@4096"]["layers"][0]
    rates = dt * alpha
    assert lay["n_modes"] == 2
    close(lay["slowest_rate"], rates.min(), rel=1e-6, what="layer slowest_rate")
    close(lay["half_life"], LN2 / rates.min(), rel=1e-6, what="layer half_life")
    close(lay["median_half_life"], float(np.median(LN2 / rates)), rel=1e-6, what="median_half_life")
    close(lay["max_abs_pole"], float(np.abs(lam).max()), rel=1e-9, what="max_abs_pole")
    assert lay["unstable_modes"] == 0
    F = L // 2 + 1
    assert lay["analytic_grid_points"] == min(F, 1025)
    assert 0 <= lay["analytic_vs_fft_rel"] < 1e-9 and 0 <= lay["analytic_vs_fft_max_abs"] < 1e-9 * L
    w = 2 * np.pi * np.arange(0, F, (F - 1) // (min(F, 1025) - 1)) / L  # every bin, or every 2nd at L = 4096
    gains = [20 * math.log10(np.abs(_H_modes(res[h], lam[h], w)).max()) for h in range(3)]
    close(lay["peak_gain_db_inf_median"], float(np.median(gains)), rel=1e-6, what="peak_gain_db_inf_median")


def test_s4d_real_pole(reports):
    """Feature 0 has a real pole lambda = e^{-dt alpha}: kernel 2 (1 - lambda)/alpha lambda^l, so the
    exponential rate r = dt alpha (rel 1e-4), energy ranges in closed form (exact), peak at f = 0 with gain
    2 (1 - lambda^L) / alpha (rel 1e-6) and L -> inf gain 2 / alpha (dB abs 1e-6)."""
    dt, alpha, beta, lam, res = _s4d_truth()
    L = S4D["L"]
    row = ch(reports["s4d"], 0, 0)
    a = float(lam[0].real)
    close(row["r"], dt[0] * alpha[0], rel=1e-4, what="r of the real pole")
    for pct in (50, 90, 99):
        assert row[f"range{pct}"] == _range_exp(a, L, pct), (pct, row[f"range{pct}"])
    close(row["peak_freq"], 0.0, abs=1e-12, what="peak_freq of the real pole")
    close(row["peak_gain"], 2 * (1 - a ** L) / alpha[0], rel=1e-6, what="peak_gain of the real pole")
    close(row["peak_gain_db"], 20 * math.log10(2 * (1 - a ** L) / alpha[0]), abs=1e-6, what="peak_gain_db real pole")
    close(row["peak_gain_db_inf"], 20 * math.log10(2 / alpha[0]), abs=1e-6, what="peak_gain_db_inf real pole")


def test_s4d_complex_mode(reports):
    """Feature 1: lambda = e^{dt(-alpha - i beta)} with dt beta = 0.2 pi, a resonance near 0.1 cycles/sample.
    The finite-L response on the rfft grid is exactly sum r (1 - lambda^L) / (1 - lambda e^{-iw}) (hand formula):
    peak_gain / its frequency equal its grid maximum (rel 1e-6); the L -> inf peak gain is the grid maximum of
    sum r / (1 - lambda e^{-iw}) (dB abs 1e-6) and within 0.05 dB of the continuous maximum; peak_freq within a
    bin of the continuous resonance; bandwidth exactly the documented definition on that grid response (rel
    1e-6) and within 3 % of the continuous closed form's -3 dB band (6.5 bins wide, resonance 0.2 bin off the
    grid: see test_lowpass_and_resonators for the grid's error)."""
    dt, alpha, beta, lam, res = _s4d_truth()
    L = S4D["L"]
    row = ch(reports["s4d"], 0, 1)
    w = 2 * np.pi * np.arange(L // 2 + 1) / L
    HL = np.abs(_H_modes(res[1], lam[1], w, L))
    i = int(HL.argmax())
    close(row["peak_gain"], float(HL[i]), rel=1e-6, what="peak_gain complex mode")
    close(row["peak_gain_db"], 20 * math.log10(HL[i]), abs=1e-6, what="peak_gain_db complex mode")
    close(row["peak_freq"], i / L, rel=1e-9, what="peak_freq complex mode")
    Hinf = lambda x: float(np.abs(_H_modes(res[1], lam[1], x)))  # noqa: E731
    close(row["peak_gain_db_inf"], 20 * math.log10(np.abs(_H_modes(res[1], lam[1], w)).max()), abs=1e-6,
          what="peak_gain_db_inf complex mode (grid)")
    w_peak, g = _peak(Hinf, float(dt[1] * beta[1]), 0.2)
    close(row["peak_gain_db_inf"], 20 * math.log10(g), abs=0.05, what="peak_gain_db_inf vs continuous max")
    close(row["peak_freq"], w_peak / (2 * math.pi), abs=1.0 / L, what="peak_freq vs the resonance")
    close(row["peak_freq"], 0.1, abs=1.0 / L, what="peak_freq vs dt beta / 2 pi")
    lo, hi = _band(Hinf, w_peak, g)
    close(row["bandwidth"], _grid_band(HL), rel=1e-6, what="bandwidth complex mode (grid, definition)")
    close(row["bandwidth"], (hi - lo) / (2 * math.pi), rel=0.03, what="bandwidth complex mode")


def test_s4d_unstable(reports):
    """real_transform 'none' with A_real = -0.002 for feature 0: Re A = +0.002, |lambda| = e^{dt 0.002} > 1 for
    both modes of the pair -> unstable_modes = 2, max |lambda| = e^{2e-5}, slowest rate -2e-5 (negative),
    half-lives inf (layer and feature 0), the L -> inf response undefined (nan, no median column)."""
    s = S4D_UNST
    dt = np.exp(f32(np.log(s["dt"])))
    re_a = -f32(s["A_real"])
    rep = reports["s4d_unst"]
    lay = rep["layers"][0]
    assert lay["unstable_modes"] == 2
    close(lay["max_abs_pole"], math.exp(dt[0] * re_a[0]), rel=1e-9, what="max_abs_pole unstable")
    close(lay["slowest_rate"], -dt[0] * re_a[0], rel=1e-6, what="slowest_rate unstable")
    assert lay["half_life"] == math.inf and lay["median_half_life"] == math.inf
    assert lay.get("peak_gain_db_inf_median") is None
    r0, r1 = ch(rep, 0, 0), ch(rep, 0, 1)
    assert r0["half_life"] == math.inf
    close(r0["slowest_rate"], -dt[0] * re_a[0], rel=1e-6, what="slowest_rate unstable feature")
    close(r1["half_life"], LN2 / (dt[1] * -re_a[1]), rel=1e-6, what="half_life stable feature")
    assert math.isnan(r0["peak_gain_db_inf"]) and math.isnan(r1["peak_gain_db_inf"])
    jl = rep["json"]["layers"][0]
    assert jl["half_life"] is None and jl["median_half_life"] is None  # inf -> null in JSON


# ------------------------------------------------------------------------------------------------ SGConv
def test_sgconv_learnable_decay_exponent(reports):
    """'cat_randn_learnable_fixed' with constant sub-kernels and multiplier 1: k[t] = (t+1)^-decay_h / norm, an
    exact power law -> t = decay_h (rel 1e-3), r^2 = 1, in both layers."""
    rep = reports["sg_learn"]
    for li in range(SG_LEARN["n_layers"]):
        for h, p in enumerate(SG_LEARN["decay"]):
            row = ch(rep, li, h)
            close(row["t"], p, rel=1e-3, what=f"SGConv learnable decay t layer {li} h={h}")
            close(row["t_r2"], 1.0, abs=1e-4, what="SGConv learnable decay t_r2")


def test_sgconv_staircase_matches_log2_m(reports):
    """Fixed multiplier m, constant sub-kernels: the kernel is the staircase m^-j on [d 2^(j-1), d 2^j), whose
    envelope is (t/d)^-log2(m) (SGConv's reference envelope). Measured t = log2(m) (1 - 0.026) at L = 4096,
    d = 8 (a line through a staircase over K octaves has slope (1 - 1/K^2) of the stair's). Tolerance: t in
    [0.95, 1.01] x log2(m) -- x1.1 gives 1.07, x0.9 gives 0.88."""
    rep = reports["sg_stairs"]
    m = np.linspace(*SG_STAIRS["m"], SG_STAIRS["H"])
    for h in range(SG_STAIRS["H"]):
        want = math.log2(m[h])
        t = ch(rep, 0, h)["t"]
        assert 0.95 * want <= t <= 1.01 * want, (h, m[h], t, want)


def test_reference_envelope_slope():
    """analysis.decay.reference_envelope (the app's SGConv overlay; not a report number): flat up to d, then
    slope -log2(m) in log-log. Tolerance rel 1e-9."""
    from analysis.decay import reference_envelope

    d, m = 8, 3.0
    c = np.array([1.0, 4.0, 8.0, 16.0, 64.0, 1024.0])
    _, curve = reference_envelope(np.ones_like(c), c, d, m)
    assert curve[0] == pytest.approx(curve[2], rel=1e-12)
    slope = math.log(curve[-1] / curve[3]) / math.log(c[-1] / c[3])
    close(slope, -math.log2(m), rel=1e-9, what="reference envelope slope")


# ------------------------------------------------------------------------------------------------ params
def _sg_count(L, d, H, C_k, learn=False):
    """SGConv: S C_k H d (+ H for a learnable decay), S = 1 + log2(L / d) for powers of two L >= d."""
    S = 1 + int(round(math.log2(L / d)))
    return S * C_k * H * d + (H if learn else 0)


def _s4d_count(N, H, C_k, n):
    return H + C_k * H * N + 2 * n * N  # dt (tied) + C + (A, B) per SSM copy


def _s4_count(N, H, C_k, n, R=1):
    return H + C_k * H * N + n * N * (2 + R)  # dt + C + (A, B, P) per copy (DPLR rank R)


def _model_total(H, kernel_per_layer, C=1):
    """All parameters of the SequenceModel: encoder Linear(1, H); per layer the kernel, D (C H), GLU output
    Linear(C H, 2H), LayerNorm(H); final LayerNorm(H); decoder Linear(H, 2)."""
    per = [k + C * H + (C * H * 2 * H + 2 * H) + 2 * H for k in kernel_per_layer]
    return (D_IN * H + H) + sum(per) + 2 * H + (H * D_OUT + D_OUT)


#: name -> (kind, H, C_k, kernel parameters per layer by hand)
EXPECTED_COUNTS = {
    "powerlaw": ("conv", 5, 1, [1 * 5 * L_PL] * 3),
    "exponential": ("conv", 5, 1, [1 * 5 * L_EXP] * 2),
    "boxes": ("conv", 5, 1, [5 * L_BOX]),
    "bidir": ("conv", 2, 2, [2 * 2 * L_BIDIR]),
    "sg_stairs": ("sgconv", 3, 1, [10 * 1 * 3 * 8]),  # S = 1 + log2(4096 / 8) = 10
    "sg_learn": ("sgconv", 3, 1, [8 * 1 * 3 * 16 + 3] * 2),  # S = 1 + log2(2048 / 16) = 8, + H decays
    "sg_bidir": ("sgconv", 2, 2, [4 * 2 * 2 * 8]),  # the explicit n_scales = 4
    "s4d": ("s4d", 3, 1, [3 + 1 * 3 * 2 + 2 * 3 * 2]),  # 21: dt 3, C 3x2, A (re, im) 3x2, B 3x2
    "s4d_unst": ("s4d", 2, 1, [2 + 2 * 2 + 2 * 2 * 2]),
    "s4": ("s4", 4, 1, [4 + 1 * 4 * 8 + 4 * 8 * (2 + 1)]),  # 132: dt, C, and A, B, P (rank 1) per copy
}


def test_parameter_counts(reports):
    """n_params (counted) and n_params_formula per layer equal the hand counts; params_layers.csv says so too."""
    for name, (kind, _H, _C_k, counts) in EXPECTED_COUNTS.items():
        rep = reports[name]
        assert [r["n_params"] for r in rep["layers"]] == counts, name
        assert [r["n_params_formula"] for r in rep["layers"]] == counts, name
        assert [(r["layer"], r["kind"], r["n_params"], r["n_params_formula"], r["match"]) for r in
                rep["params_layers"]] == [(f"layers.{i}", kind, n, n, True) for i, n in enumerate(counts)], name


def test_layer_shapes_and_counts(reports):
    """layer, kind, H, C_k, n_channels = C_k H and n_zero (the one dead channel of powerlaw layer 1)."""
    for name, (kind, H, C_k, _counts) in EXPECTED_COUNTS.items():
        for i, lay in enumerate(reports[name]["layers"]):
            assert (lay["layer"], lay["kind"], lay["H"], lay["C_k"], lay["n_channels"]) == \
                   (f"layers.{i}", kind, H, C_k, C_k * H), name
            assert lay["n_zero"] == (1 if (name, i) == ("powerlaw", 1) else 0), (name, i, lay["n_zero"])


def _expected_scaling(name):
    """(H, {family label: params(L)}, optional labels) for the scaling plot of a checkpoint: its own layer-0
    family first, then the default comparison families (analysis.params.default_families) at its H and C_k (SGConv d / SSM N from the model, else 32 / 64),
    without the default row that is its own family (for an SSM model with n_ssm = H, the default
    "(n_ssm=H)" row of its own family: it would draw the same curve twice)."""
    if name == "powerlaw":
        H, C_k, d, N, own = 5, 1, 32, 64, ("this model (conv)", lambda L: 1 * 5 * L)
    elif name == "sg_learn":
        H, C_k, d, N, own = 3, 1, 16, 64, ("this model (sgconv)", lambda L: _sg_count(L, 16, 3, 1, learn=True))
    elif name == "sg_bidir":
        H, C_k, d, N, own = 2, 2, 8, 64, ("this model (sgconv)", lambda L: _sg_count(L, 8, 2, 2))
    elif name == "s4d":
        H, C_k, d, N, own = 3, 1, 32, 2, ("this model (s4d)", lambda L: _s4d_count(2, 3, 1, 3))
    elif name == "s4":
        H, C_k, d, N, own = 4, 1, 32, 8, ("this model (s4)", lambda L: _s4_count(8, 4, 1, 4))
    else:
        raise KeyError(name)
    fams = {own[0]: own[1],
            f"SGConv (d={d})": lambda L: _sg_count(L, d, H, C_k),
            "S4 DPLR (n_ssm=H)": lambda L: _s4_count(N, H, C_k, H),
            "S4 DPLR (n_ssm=1)": lambda L: _s4_count(N, H, C_k, 1),
            "S4D (n_ssm=H)": lambda L: _s4d_count(N, H, C_k, H),
            "S4D (n_ssm=1)": lambda L: _s4d_count(N, H, C_k, 1),
            "free kernel": lambda L: C_k * H * L}
    skip = {"this model (conv)": "free kernel", "this model (sgconv)": f"SGConv (d={d})"}.get(own[0])
    optional = {"this model (s4d)": "S4D (n_ssm=H)", "this model (s4)": "S4 DPLR (n_ssm=H)"}.get(own[0])
    return H, {k: v for k, v in fams.items() if k not in (skip, optional)}, set()


@pytest.mark.parametrize("name", ["powerlaw", "sg_learn", "sg_bidir", "s4d", "s4"])
def test_parameter_scaling_table(reports, name):
    """params_scaling.csv: every family's count at L = 2^10 .. 2^20 from the hand formulas (exact), and
    params_per_feature = params / H; report.json's params.mark_L = l_max and its own family's settings."""
    H, fams, optional = _expected_scaling(name)
    rows = reports[name]["params_scaling"]
    got = {(r["family"], r["L"]): (r["params"], r["params_per_feature"]) for r in rows}
    labels = {r["family"] for r in rows}
    assert set(fams) <= labels <= set(fams) | optional, (name, sorted(labels))
    assert rows[0]["family"].startswith("this model"), name
    assert len(got) == len(rows) == len(labels) * len(SCALING_LENGTHS), name
    own_fn = next(fn for label, fn in fams.items() if label.startswith("this model"))
    for label in labels:
        fn = fams.get(label, own_fn)  # an optional row repeats the model's own family
        for L in SCALING_LENGTHS:
            n = fn(L)
            assert got[(label, L)][0] == n, (name, label, L, got[(label, L)], n)
            close(got[(label, L)][1], n / H, rel=1e-12, what=f"params_per_feature {label} L={L}")
    params = reports[name]["json"]["params"]
    assert params["mark_L"] == {"powerlaw": L_PL, "sg_learn": SG_LEARN["L"], "sg_bidir": SG_BIDIR["L"],
                                "s4d": S4D["L"], "s4": S4["L"]}[name]
    own = params["families"][0]
    assert own["label"].startswith("this model") and own["H"] == H
    if name == "sg_learn":
        assert (own["d"], own["learnable_decay"], own["init_scale"]) == (16, True, 0)
    if name == "s4d":
        assert (own["N"], own["n_ssm"]) == (2, 3)
    if name == "s4":
        assert (own["N"], own["n_ssm"], own["rank"]) == (8, 4, 1)
    assert reports["s4"]["layers"][0]["n_modes"] == S4["N"]  # N/2 complex modes and their conjugates


# ------------------------------------------------------------------------------------------------ tables, JSON
def test_identifiers_and_direction(reports):
    """Channel rows in C-major order (c, then h) per layer, named layers.i; c < channels is 'forward'."""
    for name, (_kind, H, C_k, counts) in EXPECTED_COUNTS.items():
        rows = reports[name]["channels"]
        want = [(f"layers.{i}", i, c, h) for i in range(len(counts)) for c in range(C_k) for h in range(H)]
        assert [(r["layer"], r["layer_index"], r["c"], r["h"]) for r in rows] == want, name
        n_fwd = 1  # channels = 1 in every model here; bidirectional doubles C_k
        assert all(r["direction"] == ("forward" if r["c"] < n_fwd else "backward") for r in rows), name
    assert {r["direction"] for r in reports["bidir"]["channels"]} == {"forward", "backward"}


def test_bidirectional_profile_uses_forward_only(reports):
    """Bidirectional: forward kernels A_h (l+1)^-1, backward ones exponentials. The layer RMS profile is over
    the forward direction only -> profile_t = 1 (rel 1e-3); the backward channels' own rates are ln2 / h."""
    rep = reports["bidir"]
    lay = rep["layers"][0]
    close(lay["profile_t"], BIDIR_FWD_P, rel=1e-3, what="bidirectional profile_t")
    close(lay["profile_t_r2"], 1.0, abs=1e-4, what="bidirectional profile_t_r2")
    close(ch(rep, 0, 0, c=1)["r"], LN2 / BIDIR_BWD_HALF, rel=1e-4, what="backward r")
    close(ch(rep, 0, 1, c=1)["r"], 2 * LN2 / BIDIR_BWD_HALF, rel=1e-4, what="backward r")
    for h in range(2):
        close(ch(rep, 0, h, c=0)["t"], BIDIR_FWD_P, rel=1e-3, what="forward t")


def test_kernel_table_echoes_the_built_models(reports, built):
    """kernels.csv: one row per layer with name, kind, H, channels, C_k, bidirectional, n_params and the
    settings the model was built with."""
    for name, (kind, H, C_k, counts) in EXPECTED_COUNTS.items():
        model = built[name][2]
        rows = reports[name]["kernels"]
        assert len(rows) == len(counts)
        for i, (row, n) in enumerate(zip(rows, counts)):
            assert (row["name"], row["kind"], row["H"], row["channels"], row["C_k"], row["bidirectional"],
                    row["n_params"]) == (f"layers.{i}", kind, H, 1, C_k, C_k == 2, n), (name, i)
            cfg = model.kernels[i].config
            for key in ("kernel_dim", "n_scales", "init_scale", "mode", "decay_min", "decay_max", "d_state",
                        "n_ssm", "init", "disc", "dt_transform", "dt_tie", "l_max"):
                if key in cfg:
                    assert row[key] == cfg[key], (name, key, row[key], cfg[key])
    assert reports["sg_bidir"]["kernels"][0]["n_scales"] == 4
    assert reports["sg_bidir"]["kernels"][0]["kernel_dim"] == 8


def _same(a, b):
    """A CSV cell equals its JSON value (nan / inf are null in JSON; lists / dicts are JSON text in CSV)."""
    if isinstance(a, float) and not math.isfinite(a):
        return b is None
    if isinstance(a, str) and isinstance(b, (list, dict)):
        return json.loads(a) == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return a == b or math.isclose(a, b, rel_tol=1e-15)
    return a == b


def test_json_rows_equal_csv_rows(reports):
    """report.json's channels / layers / kernels / params rows hold the same values as the CSV files, so every
    known-answer check on a CSV column covers its JSON copy."""
    pairs = (("channels", ("channels",)), ("layers", ("layers",)), ("kernels", ("kernels",)),
             ("params_layers", ("params", "per_layer")), ("params_scaling", ("params", "scaling")))
    for name, rep in reports.items():
        for csv_name, path in pairs:
            js = rep["json"]
            for p in path:
                js = js[p]
            assert len(js) == len(rep[csv_name]), (name, csv_name)
            for crow, jrow in zip(rep[csv_name], js):
                for key, v in crow.items():
                    if v is None:
                        assert jrow.get(key) is None, (name, csv_name, key)
                        continue
                    assert _same(v, jrow[key]), (name, csv_name, key, v, jrow[key])


def test_json_meta_and_checkpoint(reports, built):
    """meta: L and n_fft = the --length asked for, n_bins 64, the rfft-comparison limit 1025, the shown channels
    (4 evenly spaced features of c = 0: 0, 1, 3, 4 of 5), units; checkpoint: the summary by hand (layers, H,
    kernel parameters summed, all parameters of the model counted by hand), the card and config we saved."""
    for name, (_path, L, model) in built.items():
        js = reports[name]["json"]
        kind, H, C_k, counts = EXPECTED_COUNTS.get(name, (None, None, None, None))
        meta = js["meta"]
        assert (meta["L"], meta["n_fft"], meta["n_bins"], meta["analytic_grid_max"]) == (L, L, 64, 1025), name
        assert all(v is None or (math.isfinite(v) and v >= 0) for v in meta["timings_s"].values())
        assert meta["units"]["t"].startswith("power-law exponent") and meta["units"]["r"] == "1/tap"
        assert js["checkpoint"]["card"] == {"name": name, "notes": "known-answer test checkpoint", "L": L}
        assert js["checkpoint"]["config"] == json.loads(json.dumps(model.cfg.to_dict()))
        assert js["checkpoint"]["layout"] == "kernelscope" and js["checkpoint"]["warnings"] == []
        assert js["analysis_warnings"] == []
        if counts is None:
            continue
        s = js["checkpoint"]["summary"]
        assert str(s["file"]).endswith(f"{name}.safetensors")
        assert (s["layout"], s["family"], s["layers"], s["H"], s["channels"], s["bidirectional"], s["l_max"],
                s["runnable"]) == ("kernelscope", kind, len(counts), H, 1, C_k == 2, L, True), name
        assert s["kernel_params"] == sum(counts), name
        assert s["total_params"] == _model_total(H, counts), (name, s["total_params"], _model_total(H, counts))
    shown = reports["powerlaw"]["json"]["meta"]["channels_shown"]
    assert shown == {f"layers.{i}": [[0, 0], [0, 1], [0, 3], [0, 4]] for i in range(3)}
    s = reports["sg_learn"]["json"]["checkpoint"]["summary"]
    assert (s["kernel_dim"], s["n_scales"], s["mode"]) == (16, 8, "cat_randn_learnable_fixed")
    s = reports["s4d"]["json"]["checkpoint"]["summary"]
    assert (s["d_state"], s["disc"], s["n_ssm"]) == (2, "zoh", 3)
