"""The report: every number about a checkpoint's kernels, computed once (`analyze`) and written (`write_report`).

    rep = analyze(ck, L=16384)          # a typed Report (analysis.records), no file IO; the CLI and the app call it
    write_report(rep, "out/")           # report.json, *.csv, report.html (+ PNGs when static export works)
    cmp = compare_results([rep1, rep2]) # side by side; write_compare(cmp, "out/")

`analyze` here is `analysis.measure.analyze` plus the verdict on the paper's two principles (`analysis.verdict`)
at the same L, attached as ``rep.verdict`` (a `analysis.verdict.Verdict`); `write_report` writes it to
verdict.csv, report.json ("verdict") and a section of report.html.

One module per concern; this one only gathers their public names:

- `analysis.measure`        computation: `analyze` -> Report (per-layer / per-channel records, figure data)
- `analysis.records`        the typed records (ChannelStats, LayerStats, SSMStats, Report, Comparison) and the
                            CSV / JSON rows they yield (``row()``, ``Report.to_dict()``)
- `analysis.report_files`   writing CSV, JSON, HTML (and PNG) files of a report or a comparison
- `analysis.report_figures` the plotly figures of a report or a comparison
- `analysis.compare`        comparison: kernel similarity and `compare_results`
- `analysis.verdict`        the verdict per principle, per layer (parameter growth class, decay model)
"""
from __future__ import annotations

from .compare import compare_results
from .measure import ANALYTIC_GRID, select_channels
from .measure import analyze as measure
from .records import STATIC_EXPORT_NOTE, Comparison, Report
from .report_figures import compare_figures, report_figures
from .report_files import write_compare, write_report

__all__ = ["analyze", "write_report", "compare_results", "write_compare", "report_figures", "compare_figures",
           "select_channels", "STATIC_EXPORT_NOTE", "ANALYTIC_GRID", "Report", "Comparison"]


def analyze(ck, L: int | None = None, channels=None, progress=None, verdict: bool = True, **kwargs) -> Report:
    """`analysis.measure.analyze(ck, L, channels, progress, **kwargs)` with, when ``verdict``, the model's
    `analysis.verdict.verdict` at the report's L attached as ``report.verdict`` (its kernels at L come from
    analysis.extract's cache; it also fits each decaying layer at 4L, or L/4 for the longest lengths)."""
    rep = measure(ck, L, channels=channels, progress=progress, **kwargs)
    if verdict:
        from .verdict import verdict as verdict_of

        rep.verdict = verdict_of(ck, rep.L)
    return rep
