"""Typed records of a report: what `analysis.measure.analyze` returns and every consumer reads.

    rep = analyze(ck, L)              # a Report
    rep.layers[0].t_median            # LayerStats: medians / IQRs over the layer's channels
    rep.layers[0].ssm.half_life       # SSMStats (S4 / S4D layers only; None otherwise)
    rep.channels[5].bandwidth         # ChannelStats: one kernel channel (c, h)
    rep.figures["layers.0"].profile   # LayerFigures: numpy data of the figures (not written to JSON)
    rep.to_dict()                     # the JSON document the CLI writes (report.json), minus nothing
    rep.layer_rows(), rep.channel_rows()   # the rows of layers.csv / channels.csv

``row()`` of each record gives exactly the columns (names, order, values) of the CSV / JSON files, so the
files the CLI writes are a function of these records and nothing else. Units: lags and ranges in taps,
frequencies in cycles/sample, gains in dB, rates in 1/tap (see ``UNITS``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields

import numpy as np

__all__ = ["ChannelStats", "SSMStats", "LayerStats", "LayerParams", "RMSProfile", "LayerFigures",
           "CheckpointInfo", "ParamsInfo", "Report", "Comparison", "UNITS", "STATIC_EXPORT_NOTE"]

#: Units of the numbers (written into report.json's meta).
UNITS = {"lag": "taps", "t": "power-law exponent (|k| ~ (lag+1)^-t)", "r": "1/tap", "range": "taps",
         "freq": "cycles/sample", "gain_db": "dB", "half_life": "taps"}
#: What static (PNG) export needs; written into every report.
STATIC_EXPORT_NOTE = ("PNG export of the figures needs kaleido and a Chromium browser: `pip install kaleido` "
                      "and Debian's chromium (`apt-get install chromium`). The HTML page works offline without them.")


def _row(record, skip=()) -> dict:
    return {f.name: getattr(record, f.name) for f in fields(record) if f.name not in skip}


@dataclass(frozen=True)
class ChannelStats:
    """Numbers of one kernel channel (c, h) of a layer: decay fits, energy ranges, frequency summary and,
    for S4 / S4D, the slowest mode of feature h and the L -> infinity peak gain."""

    layer: str
    layer_index: int
    c: int
    h: int
    direction: str  # 'forward' | 'backward'
    t: float  # power-law exponent (|k| ~ (lag+1)^-t)
    t_r2: float
    r: float  # exponential rate, 1/tap
    r_r2: float
    range50: float  # taps holding 50 / 90 / 99 % of the energy
    range90: float
    range99: float
    peak_gain: float  # max |H| (linear)
    peak_gain_db: float
    peak_freq: float  # cycles/sample
    bandwidth: float  # -3 dB band around the peak, cycles/sample
    centroid: float  # cycles/sample
    slowest_rate: float | None = None  # SSM only: 1/tap
    half_life: float | None = None  # SSM only: taps
    peak_gain_db_inf: float | None = None  # SSM only (NaN when some |pole| >= 1)

    @property
    def is_ssm(self) -> bool:
        return self.half_life is not None

    def row(self) -> dict:
        """The channels.csv row (SSM columns only for SSM layers)."""
        return _row(self, () if self.is_ssm else ("slowest_rate", "half_life", "peak_gain_db_inf"))


@dataclass(frozen=True)
class SSMStats:
    """Per-layer numbers of an S4 / S4D layer from its poles and residues."""

    n_modes: int
    slowest_rate: float  # 1/tap, over every mode of the layer
    half_life: float  # taps, of that slowest mode
    median_half_life: float  # median over features of each feature's slowest mode
    max_abs_pole: float
    unstable_modes: int  # |pole| >= 1
    analytic_vs_fft_max_abs: float  # exact transfer function vs FFT of the extracted kernel
    analytic_vs_fft_rel: float  # ... relative to the largest |FFT|
    analytic_grid_points: int
    peak_gain_db_inf_median: float | None = None  # None when some |pole| >= 1

    def row(self) -> dict:
        return _row(self, () if self.peak_gain_db_inf_median is not None else ("peak_gain_db_inf_median",))


@dataclass(frozen=True)
class LayerStats:
    """Per-layer numbers: medians / IQRs over its channels, fits of its RMS profile, parameter counts."""

    layer: str
    kind: str
    H: int
    C_k: int
    n_params: int
    n_params_formula: int | None
    profile_t: float
    profile_t_r2: float
    profile_r: float
    profile_r_r2: float
    n_channels: int
    n_zero: int  # all-zero (dead) channels
    t_median: float
    t_iqr: float
    r_median: float
    r_iqr: float
    range50_median: float
    range50_iqr: float
    range90_median: float
    range90_iqr: float
    range99_median: float
    range99_iqr: float
    t_r2_median: float
    r_r2_median: float
    peak_gain_db_median: float
    peak_freq_median: float
    bandwidth_median: float
    centroid_median: float
    ssm: SSMStats | None = None

    def row(self) -> dict:
        """The layers.csv row (SSM columns only for SSM layers)."""
        out = _row(self, ("ssm",))
        if self.ssm is not None:
            out.update(self.ssm.row())
        return out


@dataclass(frozen=True)
class LayerParams:
    """Kernel parameters of one layer: counted in the module vs the family's formula."""

    layer: str
    kind: str
    n_params: int
    n_params_formula: int | None

    @property
    def match(self) -> bool:
        return self.n_params_formula == self.n_params

    def row(self) -> dict:
        return {**_row(self), "match": self.match}


@dataclass(frozen=True)
class RMSProfile:
    """A layer's RMS kernel sqrt(mean over forward channels of k²): its binned envelope and both fits."""

    centers: np.ndarray  # taps
    values: np.ndarray
    t: float
    t_log_amplitude: float
    r: float
    r_log_amplitude: float

    def series(self, label: str) -> dict:
        """A series for `analysis.figures.decay_figure`."""
        return {"label": label, "centers": self.centers, "values": self.values,
                "power": {"t": self.t, "log_amplitude": self.t_log_amplitude},
                "exp": {"r": self.r, "log_amplitude": self.r_log_amplitude}}

    def scaled(self) -> np.ndarray | None:
        """values / max(values) (peak 1); None for an all-zero profile."""
        v = np.asarray(self.values, dtype=np.float64)
        peak = float(np.nanmax(v)) if v.size else 0.0
        return v / peak if peak > 0 else None


@dataclass(frozen=True)
class LayerFigures:
    """Numpy data of one layer's figures, for the shown channels (not written to JSON)."""

    shown: list  # [(c, h), ...]
    envelopes: list  # per shown channel: (centers, values) RMS envelope, or None (dead / non-finite)
    fits: list  # per shown channel: {"power": {t, log_amplitude}, "exp": {r, log_amplitude}}
    freq: np.ndarray  # rfft grid, cycles/sample
    mag_db: np.ndarray  # (shown, F)
    phase: np.ndarray  # (shown, F), unwrapped
    analytic_mag_db: np.ndarray | None  # SSM: exact length-L transfer function (shown, F)
    analytic_inf_mag_db: np.ndarray | None  # SSM with every |pole| < 1: L -> infinity
    poles: np.ndarray | None  # SSM: (H, M)
    energy: list  # per shown channel: {"curve", "ranges": {50, 90, 99}} or None
    profile: RMSProfile
    rms_profile: np.ndarray  # (L,)
    mean_kernel: np.ndarray  # (L,) mean over forward channels
    forward_channels: int


@dataclass(frozen=True)
class CheckpointInfo:
    summary: dict
    warnings: list
    card: dict
    layout: str
    config: dict

    def to_dict(self) -> dict:
        return _row(self)


@dataclass(frozen=True)
class ParamsInfo:
    per_layer: list  # [LayerParams]
    families: list  # scaling families (dicts of `analysis.params`)
    scaling: list  # rows of `analysis.params.scaling_table`
    mark_L: int | None

    def to_dict(self) -> dict:
        return {"per_layer": [p.row() for p in self.per_layer], "families": self.families, "scaling": self.scaling,
                "mark_L": self.mark_L}


@dataclass
class Report:
    """Every number of the report for one checkpoint at one length L (taps); see `analysis.measure.analyze`."""

    L: int
    n_bins: int
    analytic_grid_max: int
    checkpoint: CheckpointInfo
    kernels: list  # `analysis.extract.kernel_table` rows
    layers: list  # [LayerStats]
    channels: list  # [ChannelStats]
    params: ParamsInfo
    warnings: list  # analysis warnings (e.g. NaN kernels)
    figures: dict  # {layer name: LayerFigures}
    timings: dict = field(default_factory=dict)  # seconds: extract, analyze (and load, set by the CLI)
    kernel_arrays: dict | None = None  # {layer name: (C_k, H, L) float64}; None once dropped
    verdict: object | None = None  # `analysis.verdict.Verdict` at L (set by `analysis.report.analyze`), or None

    def layer_rows(self) -> list[dict]:
        return [s.row() for s in self.layers]

    def channel_rows(self) -> list[dict]:
        return [s.row() for s in self.channels]

    def meta(self) -> dict:
        return {"L": self.L, "n_fft": self.L, "n_bins": self.n_bins,
                "channels_shown": {n: [list(x) for x in a.shown] for n, a in self.figures.items()},
                "analytic_grid_max": self.analytic_grid_max, "static_export": STATIC_EXPORT_NOTE,
                "timings_s": self.timings, "units": UNITS}

    def to_dict(self) -> dict:
        """The report.json document (before NaN/inf become null): meta, checkpoint, kernels, layers, channels,
        params, analysis_warnings."""
        return {"meta": self.meta(), "checkpoint": self.checkpoint.to_dict(), "kernels": self.kernels,
                "layers": self.layer_rows(), "channels": self.channel_rows(), "params": self.params.to_dict(),
                "analysis_warnings": self.warnings,
                **({"verdict": self.verdict.to_dict()} if self.verdict is not None else {})}

    def all_warnings(self) -> list[str]:
        """The checkpoint's (assumed settings) and the analysis' warnings."""
        return list(self.checkpoint.warnings) + list(self.warnings)

    def without_kernels(self) -> Report:
        """The same report without the kernel arrays (what the app caches)."""
        return dataclasses.replace(self, kernel_arrays=None)


@dataclass
class Comparison:
    """Several reports side by side at one L; see `analysis.compare.compare_results`."""

    labels: list
    L: int
    summaries: list  # checkpoint summaries with their label
    tables: dict  # {label: layers.csv rows}
    warnings: dict  # {label: [warnings]}
    similarity: list  # rows: layer_index, what, a, b, ncc, best_lag, rel_l2, cosine
    matrices: dict  # {layer index: {"mean_kernel": (n, n), "rms_profile": (n, n)}}
    scaling: list  # parameter scaling rows of each model
    reports: list = field(default_factory=list)  # the Reports (figure data; not written)

    def to_dict(self) -> dict:
        """The compare.json document (before NaN/inf become null)."""
        return {"labels": self.labels, "L": self.L, "summaries": self.summaries, "tables": self.tables,
                "warnings": self.warnings, "similarity": self.similarity, "matrices": self.matrices,
                "scaling": self.scaling}
