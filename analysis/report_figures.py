"""Figures of a report and of a comparison: (section title, plotly Figure) pairs in page order, built with
`analysis.figures` from a `Report` / `Comparison` (`analysis.records`)."""
from __future__ import annotations

import numpy as np
from scipy import fft as sfft

from .records import Comparison, LayerFigures, Report

__all__ = ["report_figures", "compare_figures"]


def _label(c: int, h: int, C_k: int, bidirectional: bool = False) -> str:
    from .figures import channel_label

    return channel_label(c, h, C_k, bidirectional)


def _decay_series(a: LayerFigures, C_k: int, bidirectional: bool = False) -> list[dict]:
    series = [{"label": _label(c, h, C_k, bidirectional), "centers": env[0], "values": env[1], **fit}
              for (c, h), env, fit in zip(a.shown, a.envelopes, a.fits, strict=True) if env is not None]
    return series + [a.profile.series("layer RMS profile")]


def _frequency_series(a: LayerFigures, labels: list[str]) -> list[dict]:
    out = []
    for i, lab in enumerate(labels):
        s = {"label": lab, "freq": a.freq, "mag_db": a.mag_db[i]}
        for key in ("analytic_mag_db", "analytic_inf_mag_db"):
            if getattr(a, key) is not None:
                s[key] = getattr(a, key)[i]
        out.append(s)
    return out


def _layer_figures(name: str, a: LayerFigures, kernels: dict, L: int, max_heatmap_rows: int,
                   bidirectional: bool = False) -> list:
    from . import figures as FG

    K = kernels[name]
    C_k, H, _ = K.shape
    rows = K[0] if H <= max_heatmap_rows else K[0, np.linspace(0, H - 1, max_heatmap_rows).astype(int)]
    labels = [_label(c, h, C_k, bidirectional) for c, h in a.shown]
    first = "forward channel" if bidirectional else "channel c=0"
    figs = [(f"{name}: kernels", FG.kernel_figure(kernels, name, a.shown, title=f"{name}: kernel taps, L={L:,}",
                                                  bidirectional=bidirectional)),
            (f"{name}: channel x lag", FG.heatmap_figure(rows, f"{name}: {first}, feature x lag")),
            (f"{name}: decay", FG.decay_figure(_decay_series(a, C_k, bidirectional),
                                               f"{name}: RMS envelope with power-law and exponential fits", L=L))]
    eser = [{"label": lab, **e} for lab, e in zip(labels, a.energy, strict=True) if e is not None]
    if eser:
        figs.append((f"{name}: energy", FG.energy_figure(eser, f"{name}: cumulative energy vs lag "
                                                               f"(markers: 50/90/99 % ranges)")))
    exact = " vs exact transfer function" if a.analytic_mag_db is not None else ""
    figs.append((f"{name}: frequency response", FG.frequency_figure(_frequency_series(a, labels),
                                                                    f"{name}: |H| (rfft, n_fft = L){exact}")))
    figs.append((f"{name}: phase", FG.phase_figure(
        [{"label": lab, "freq": a.freq, "phase": a.phase[i]} for i, lab in enumerate(labels)],
        f"{name}: phase of the DFT (unwrapped)")))
    if a.poles is not None:
        figs.append((f"{name}: poles", FG.pole_figure({name: a.poles}, f"{name}: poles (all features)")))
    return figs


def report_figures(result: Report, max_heatmap_rows: int = 256) -> list[tuple[str, object]]:
    """(section title, plotly Figure) for a `Report` (with its kernel arrays), in page order."""
    from . import figures as FG

    figs = []
    bidi = {str(k.get("name")): bool(k.get("bidirectional")) for k in result.kernels or []}
    for name, a in result.figures.items():
        figs += _layer_figures(name, a, result.kernel_arrays, result.L, max_heatmap_rows, bidi.get(name, False))
    figs.append(("parameter scaling", FG.scaling_figure(result.params.scaling, mark_L=result.params.mark_L)))
    return figs


def compare_figures(cmp: Comparison) -> list[tuple[str, object]]:
    """(title, Figure) for a `Comparison`: overlaid layer envelopes, mean-kernel spectra, similarity heatmaps
    per layer, and the parameter scaling of each checkpoint."""
    from . import figures as FG

    figs = []
    for li in range(min(len(r.layers) for r in cmp.reports)):
        series, fser = [], []
        for lab, r in zip(cmp.labels, cmp.reports, strict=True):
            name, a = list(r.figures.items())[li]
            series.append(a.profile.series(f"{lab} [{name}]"))
            mk = a.mean_kernel
            Hm = sfft.rfft(mk, workers=2)
            with np.errstate(divide="ignore"):
                fser.append({"label": f"{lab} [{name}]", "freq": sfft.rfftfreq(mk.size),
                             "mag_db": 20 * np.log10(np.abs(Hm))})
        figs.append((f"layer {li}: decay (RMS profile)",
                     FG.decay_figure(series, f"layer {li}: RMS profile envelopes and fits", L=cmp.L)))
        figs.append((f"layer {li}: mean kernel spectrum",
                     FG.frequency_figure(fser, f"layer {li}: |H| of the mean kernel")))
        for what in ("mean_kernel", "rms_profile"):
            words = what.replace("_", " ")
            figs.append((f"layer {li}: similarity of {words}s",
                         FG.similarity_figure(cmp.matrices[li][what], cmp.labels, f"layer {li}: ncc of the {words}s")))
    figs.append(("parameter scaling", FG.scaling_figure(cmp.scaling)))
    return figs
