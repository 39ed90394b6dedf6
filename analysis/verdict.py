"""A verdict per principle (Li et al. 2022), per model and layer: does a trained model's kernel need few
parameters (principle 1), and does it decay (principle 2)?

    v = verdict(ck)                  # at the model's training length (``ck.default_length``)
    v.layers                         # one `LayerVerdict` per layer; v.rows() -> CSV/JSON rows
    v.principle1, v.principle2       # one sentence each

Principle 1 (sub-linear parameters). A layer's kernel parameters at L = 1,024 / 16,384 / 1,048,576
(`PARAM_LENGTHS`), counted by the family's own formula (``family(kind).count_params`` with the kernel's
``count_settings()``, the count `analysis.params` uses), and a growth class read off those three counts, not
off the family's name (`growth_class`):
    constant     the three counts are equal (S4 / S4D: N modes per feature whatever L)
    linear       count(1M) / count(1k) >= 0.5 * 1024 (log-log slope >= 0.9: a free kernel, one weight per tap)
    logarithmic  the growth per doubling of L is the same, within a factor 2, over 1k..16k (4 doublings) and
                 16k..1M (6 doublings) (SGConv: d weights per scale, S = 1 + ceil(log2(L / d)) scales)
    sub-linear   grows, slower than linear, but not by a constant amount per doubling
A model is "sub-linear" when none of its layers is linear.

Principle 2 (decay). Each channel's binned RMS envelope gets both fits of `analysis.decay` (one vectorised
`batch_decay` pass): a power law |k| ~ (lag+1)^-t (log-log) and an exponential |k| ~ exp(-r (lag+1)) (log-linear),
with `VERDICT_BINS` = 16 bins (fewer, wider bins than the Decay page's 64: at L = 128..512 the 64-bin power-law
fit has only 2-3 bins with >= 8 taps and its R^2 is noise; with 16 a (lag+1)^-1.5 kernel gives t within 4 % from
L = 128 on, tests/test_verdict.py). Criterion: the model with the higher **median R^2 over the layer's
channels** wins (ties: power law); when both medians are below `R2_MIN` = 0.5 the verdict is "n/a" (white
noise gives medians <= 0.3). Power law -> median t and its IQR over channels; exponential -> median half-life
ln 2 / r in lags (tau ln 2) and its IQR (the quantiles of r mapped through ln 2 / r; a channel that does not
decay, r <= 0, counts as an infinite half-life).

Warnings instead of numbers: below `MIN_VERDICT_LENGTH` = 128 taps the verdict says "L too short to fit
(need >= 128)" (at L = 8 the 64-bin fit returned t = -0.71 for a model whose t is 2.5 at L = 1,024).
Stability in L: each layer is fitted again at 4L (at L/4 when 4L would exceed `CHECK_MAX_VALUES` kernel values
per layer, none when L/4 is too short) and a note is added when the winning model's number (median t, or
median half-life) differs by more than `CHANGE_TOL` = 25 %, or when the other model wins there (a sum of
exponentials such as an S4 kernel looks like a power law over a short range, and t then grows with L).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from sgconv_core.families import family

from .decay import MIN_FIT_LENGTH, batch_decay, median_iqr
from .extract import extract_kernels, layer_indices, layer_names  # the layer naming extract_kernels uses

__all__ = ["verdict", "METHOD", "layer_decay", "growth_class", "layer_params", "Verdict", "LayerVerdict", "DecayFit",
           "PARAM_LENGTHS", "MIN_VERDICT_LENGTH", "VERDICT_BINS", "R2_MIN", "FLOOR", "CHANGE_TOL", "CHECK_MAX_VALUES"]

#: Lengths (taps) at which principle 1 counts a layer's kernel parameters.
PARAM_LENGTHS = (1024, 16384, 1048576)
#: Shortest kernel the decay verdict fits (taps); below it the verdict is a warning.
MIN_VERDICT_LENGTH = 128
#: Log bins (power law) and linear bins (exponential) per envelope.
VERDICT_BINS = 16
#: Below this median R^2 (both fits) a layer's decay is "n/a".
R2_MIN = 0.5
#: Relative change of the winning number between L and the check length that earns a note.
CHANGE_TOL = 0.25
#: Taps below FLOOR times their channel's peak |k| are set to zero before the fits: the float64 evaluation's
#: round-off, not the kernel (an S4 mode with a half-life of 100 lags is 2^-650 of its start at lag 65,536, and the
#: fits would otherwise follow the round-off plateau there); zero bins are left out of both fits.
FLOOR = 1e-12
#: Largest C_k * H * L_check the check length may have per layer (float64: 128 MiB).
CHECK_MAX_VALUES = 1 << 24

#: How the verdict is reached, in one paragraph (shown under the verdict tables of the report and the app).
METHOD = (f"Principle 1: kernel parameters per layer at L = 1k / 16k / 1M by the family's formula; the growth class "
          f"(constant, logarithmic, sub-linear, linear) is read from those three counts. Principle 2: a power law "
          f"(lag+1)^-t and an exponential exp(-lag/tau) are fitted to each channel's RMS envelope ({VERDICT_BINS} "
          f"bins); the higher median R² over the layer's channels wins, n/a when both are below {R2_MIN}; no numbers "
          f"below L = {MIN_VERDICT_LENGTH}; half-life = tau ln 2 in lags; a note when the winning number moves by more "
          f"than {CHANGE_TOL:.0%} between L and 4L (L/4 for the longest lengths).")

POWER, EXPONENTIAL, NONE, SHORT = "power law", "exponential", "n/a", "too short"
_LN2 = math.log(2.0)


# ------------------------------------------------------------------------------------------------ principle 1
def layer_params(kernel, L: int) -> int | None:
    """Kernel parameters of one layer at length L (taps) by its family's formula; None where undefined (e.g.
    SGConv with fewer than one scale)."""
    try:
        return int(family(kernel.kind).count_params(int(L), kernel.H, kernel.C_k, **kernel.count_settings()))
    except ValueError:
        return None


def growth_class(counts, lengths=PARAM_LENGTHS) -> str:
    """How a parameter count grows with L, from counts at three increasing lengths (see the module doc):
    'constant' | 'logarithmic' | 'linear' | 'sub-linear' | 'super-linear' | 'unknown' (a count missing)."""
    n = [None if c is None else float(c) for c in counts]
    if len(n) != 3 or len(lengths) != 3:
        raise ValueError(f"growth_class needs counts at three lengths, got {len(n)} counts, {len(lengths)} lengths")
    if any(c is None or c <= 0 for c in n):
        return "unknown"
    if n[0] == n[1] == n[2]:
        return "constant"
    slope = math.log(n[2] / n[0]) / math.log(lengths[2] / lengths[0])
    if slope > 1.1:
        return "super-linear"
    if slope >= 0.9:
        return "linear"
    oct1, oct2 = math.log2(lengths[1] / lengths[0]), math.log2(lengths[2] / lengths[1])
    a, b = (n[1] - n[0]) / oct1, (n[2] - n[1]) / oct2  # growth per doubling of L
    if a > 0 and b > 0 and 0.5 <= b / a <= 2.0:
        return "logarithmic"
    return "sub-linear"


# ------------------------------------------------------------------------------------------------ principle 2
@dataclass(frozen=True)
class DecayFit:
    """The decay verdict of one layer's kernel at one length: the winning model and its numbers (NaN where
    not applicable). t: power-law exponent; half_life: lags; r2_power / r2_exp: median R^2 over channels."""

    model: str  # POWER | EXPONENTIAL | NONE | SHORT
    L: int
    t_median: float = math.nan
    t_q25: float = math.nan
    t_q75: float = math.nan
    half_life_median: float = math.nan
    half_life_q25: float = math.nan
    half_life_q75: float = math.nan
    r2_power: float = math.nan
    r2_exp: float = math.nan
    n_channels: int = 0
    t_values: np.ndarray | None = field(default=None, repr=False, compare=False)  # (n,) per valid channel
    r_values: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def value(self) -> float:
        """The winning model's number: median t (power law), median half-life (exponential), else NaN."""
        return self.t_median if self.model == POWER else self.half_life_median if self.model == EXPONENTIAL \
            else math.nan

    def text(self) -> str:
        """One cell: 'power law, t = 1.50 (IQR 1.40–1.60)', 'exponential, half-life 69.3 lags (IQR 60–80)', ..."""
        if self.model == SHORT:
            return f"L too short to fit (need >= {MIN_VERDICT_LENGTH})"
        if self.model == POWER:
            return f"power law, t = {_num(self.t_median)} (IQR {_num(self.t_q25)}–{_num(self.t_q75)})"
        if self.model == EXPONENTIAL:
            return (f"exponential, half-life {_num(self.half_life_median)} lags "
                    f"(IQR {_num(self.half_life_q25)}–{_num(self.half_life_q75)})")
        if self.n_channels == 0:
            return "n/a (every channel is zero)"
        return f"n/a (neither fits: median R² {_num(self.r2_power)} power law, {_num(self.r2_exp)} exponential)"


def _num(v: float) -> str:
    if v is None or not math.isfinite(v):
        return "∞" if v == math.inf else "–"
    a = abs(v)
    return f"{v:,.0f}" if a >= 1000 else f"{v:.3g}" if a >= 10 else f"{v:.2f}"


def _half_lives(r: np.ndarray) -> dict:
    """median / q25 / q75 of ln2 / r over channels, from the quantiles of r (ln2 / r is decreasing in r > 0;
    r <= 0, no decay, maps to an infinite half-life)."""
    q = median_iqr(r)

    def hl(x):
        return _LN2 / x if x > 0 else math.inf

    return {"median": hl(q["median"]), "q25": hl(q["q75"]), "q75": hl(q["q25"])}


def layer_decay(K, n_bins: int = VERDICT_BINS) -> DecayFit:
    """The decay verdict of one layer's kernel K (C_k, H, L) or (n, L) (see the module doc for the criterion).

    Every channel gets both fits of `analysis.decay.batch_decay`; all-zero / non-finite channels are left out.
    L < MIN_VERDICT_LENGTH gives model SHORT and no numbers."""
    K = np.asarray(K)
    if K.ndim not in (2, 3):
        raise ValueError(f"K must be (C_k, H, L) or (n, L), got shape {K.shape}")
    L = int(K.shape[-1])
    if L < max(MIN_VERDICT_LENGTH, MIN_FIT_LENGTH):
        return DecayFit(SHORT, L)
    K2 = np.asarray(K, dtype=np.float64).reshape(-1, L)
    with np.errstate(invalid="ignore"):
        peak = np.abs(K2).max(1, keepdims=True)
        K2 = np.where(np.abs(K2) >= FLOOR * peak, K2, 0.0)  # round-off below the floor: not the kernel's tail
    b = batch_decay(K2, n_bins=n_bins)
    valid = b["valid"]
    if not valid.any():
        return DecayFit(NONE, L)
    t, r = b["t"][valid & np.isfinite(b["t"])], b["r"][valid & np.isfinite(b["r"])]  # (a fit needs 2 non-zero bins)
    r2p, r2e = (median_iqr(b[key][valid])["median"] for key in ("t_r2", "r_r2"))
    best = max((x for x in (r2p, r2e) if math.isfinite(x)), default=-math.inf)
    model = NONE if best < R2_MIN else POWER if best == r2p else EXPONENTIAL
    qt, qh = median_iqr(t), _half_lives(r) if r.size else {"median": math.nan, "q25": math.nan, "q75": math.nan}
    return DecayFit(model, L, qt["median"], qt["q25"], qt["q75"], qh["median"], qh["q25"], qh["q75"], r2p, r2e,
                    int(valid.sum()), t, r)


def _check_length(L: int, values_per_tap: int) -> int | None:
    """The second length of the stability check: 4L, or L/4 when 4L is over CHECK_MAX_VALUES, or None."""
    if 4 * L * values_per_tap <= CHECK_MAX_VALUES:
        return 4 * L
    return L // 4 if L // 4 >= MIN_VERDICT_LENGTH else None


def _change_note(at: DecayFit, check: DecayFit | None) -> str:
    """'' or a note saying how the decay verdict changes between at.L and check.L."""
    if check is None or at.model in (SHORT, NONE) or check.model == SHORT:
        return ""
    if check.model != at.model:
        return f"at L = {check.L:,} the verdict is {check.text()}"
    what = "t" if at.model == POWER else "half-life"
    note = _changed(what, at.value, check.value, at.L, check.L)
    if at.model == EXPONENTIAL and not note:  # the power-law exponent of an exponential grows with L
        t_note = _changed("t", at.t_median, check.t_median, at.L, check.L)
        note = f"not a power law: its {t_note}" if t_note else ""
    return note


def _changed(what: str, a: float, b: float, La: int, Lb: int) -> str:
    if not (math.isfinite(a) and math.isfinite(b)) or abs(b - a) <= CHANGE_TOL * abs(a):
        return ""
    return f"{what} changes with L: {_num(a)} at L = {La:,}, {_num(b)} at L = {Lb:,} (more than {CHANGE_TOL:.0%} apart)"


# ------------------------------------------------------------------------------------------------ the verdict
@dataclass(frozen=True)
class LayerVerdict:
    """Both principles for one layer: params (counts at PARAM_LENGTHS, None where undefined), growth class,
    the decay fit at L, the check fit (or None) and the note."""

    layer: str
    kind: str
    params: tuple
    growth: str
    decay: DecayFit
    check: DecayFit | None
    note: str

    def row(self) -> dict:
        """A flat row for tables, CSV and JSON (NaN where not applicable)."""
        d = {k: v for k, v in asdict(self.decay).items() if k not in ("t_values", "r_values")}
        out = {"layer": self.layer, "kind": self.kind}
        out.update({f"params_L{L}": n for L, n in zip(PARAM_LENGTHS, self.params, strict=True)})
        out.update({"growth": self.growth, "decay": d.pop("model"), "verdict": self.decay.text(), **d})
        out["check_L"] = self.check.L if self.check is not None else None
        out["check_verdict"] = self.check.text() if self.check is not None else None
        out["note"] = self.note
        return out


@dataclass(frozen=True)
class Verdict:
    """The verdict of one model at length L: per layer records and one sentence per principle."""

    L: int
    layers: list
    principle1: str
    principle2: str

    def rows(self) -> list[dict]:
        return [lv.row() for lv in self.layers]

    def sentences(self) -> list[str]:
        return [self.principle1, self.principle2]

    def to_dict(self) -> dict:
        return {"L": self.L, "principle1": self.principle1, "principle2": self.principle2, "layers": self.rows()}


def _short_L(L: int) -> str:
    return f"{L // 1048576}M" if L % 1048576 == 0 else f"{L // 1024}k" if L % 1024 == 0 else f"{L:,}"


def _sentence1(layers: list) -> str:
    n = len(layers)
    classes = sorted({lv.growth for lv in layers})
    sub = not any(c in ("linear", "super-linear") for c in classes)
    unknown = "unknown" in classes
    head = "unknown" if unknown and all(c in ("unknown",) for c in classes) else "sub-linear" if sub \
        else "not sub-linear"
    cls = classes[0] if len(classes) == 1 else "mixed (" + ", ".join(classes) + ")"
    totals = []
    for i, L in enumerate(PARAM_LENGTHS):
        got = [lv.params[i] for lv in layers]
        totals.append(f"{sum(got):,} at {_short_L(L)}" if all(g is not None for g in got) else f"– at {_short_L(L)}")
    return (f"Principle 1: {head} — {n} layer{'s' if n != 1 else ''}, kernel params {cls} in L "
            f"({' → '.join(totals)})")


def _sentence2(layers: list, L: int) -> str:
    n = len(layers)
    if all(lv.decay.model == SHORT for lv in layers):
        return f"Principle 2: L = {L:,} too short to fit (need >= {MIN_VERDICT_LENGTH})"
    parts = []
    for model in (POWER, EXPONENTIAL, NONE, SHORT):
        group = [lv for lv in layers if lv.decay.model == model]
        if not group:
            continue
        k = f"in {len(group)} of {n} layer{'s' if n != 1 else ''}"
        if model == POWER:
            q = median_iqr(np.concatenate([lv.decay.t_values for lv in group]))
            verb = "decays" if q["median"] > 0 else "grows"
            parts.append(f"{verb} as a power law, median t = {_num(q['median'])} "
                         f"(IQR {_num(q['q25'])}–{_num(q['q75'])}) {k}")
        elif model == EXPONENTIAL:
            q = _half_lives(np.concatenate([lv.decay.r_values for lv in group]))
            verb = "decays" if q["median"] < math.inf else "grows"
            parts.append(f"{verb} exponentially, median half-life {_num(q['median'])} lags "
                         f"(IQR {_num(q['q25'])}–{_num(q['q75'])}) {k}")
        elif model == NONE:
            parts.append(f"neither model fits (median R² < {R2_MIN}) {k}")
        else:
            parts.append(f"too short to fit {k}")
    noted = sum(bool(lv.note) and not lv.note.startswith("not a power law") for lv in layers)
    tail = f"; the fit changes with L in {noted} of {n} layer{'s' if n != 1 else ''} (see notes)" if noted else ""
    return "Principle 2: " + "; ".join(parts) + tail


def verdict(ck, L: int | None = None, layers=None, check: bool = True) -> Verdict:
    """Both principles for each layer of a checkpoint (see the module doc).

    ck: a Checkpoint (anything with ``.kernels``); L: taps (default ``ck.default_length``, the training length);
    layers: None (all) or indices / names as `analysis.extract.extract_kernels` takes them; check: also fit at
    the check length (4L or L/4) and add the notes. Raises ValueError (CheckpointError) for a bad length or layer.
    """
    L = int(ck.default_length if L is None else L)
    if L < 1:
        raise ValueError(f"L must be a positive number of taps, got {L}")
    all_names = layer_names(ck.kernels)
    idx = layer_indices(layers, all_names)  # ValueError naming the layers for one the model does not have
    names = [all_names[i] for i in idx]
    fit_L = L >= MIN_VERDICT_LENGTH
    Ks = extract_kernels(ck, L, layers=idx) if fit_L else {nm: None for nm in names}
    out = []
    for i, name in zip(idx, names, strict=True):
        k = ck.kernels[i]
        counts = tuple(layer_params(k, n) for n in PARAM_LENGTHS)
        dec = layer_decay(Ks[name]) if fit_L else DecayFit(SHORT, L)
        chk = None
        if check and fit_L and dec.model in (POWER, EXPONENTIAL):
            L2 = _check_length(L, k.C_k * k.H)
            if L2 is not None:
                chk = layer_decay(extract_kernels(ck, L2, layers=[i])[name])
        out.append(LayerVerdict(name, k.kind, counts, growth_class(counts), dec, chk, _change_note(dec, chk)))
    return Verdict(L, out, _sentence1(out), _sentence2(out, L))

