"""The report: every number about a checkpoint's kernels, computed once (`analyze`) and written (`write_report`).

    rep = analyze(ck, L=16384)          # a typed Report (analysis.records), no file IO; the CLI and the app call it
    write_report(rep, "out/")           # report.json, *.csv, report.html (+ PNGs when static export works)
    cmp = compare_results([rep1, rep2]) # side by side; write_compare(cmp, "out/")

One module per concern; this one only gathers their public names:

- `analysis.measure`        computation: `analyze` -> Report (per-layer / per-channel records, figure data)
- `analysis.records`        the typed records (ChannelStats, LayerStats, SSMStats, Report, Comparison) and the
                            CSV / JSON rows they yield (``row()``, ``Report.to_dict()``)
- `analysis.report_files`   writing CSV, JSON, HTML (and PNG) files of a report or a comparison
- `analysis.report_figures` the plotly figures of a report or a comparison
- `analysis.compare`        comparison: kernel similarity and `compare_results`
"""
from __future__ import annotations

from .compare import compare_results
from .measure import ANALYTIC_GRID, analyze, select_channels
from .records import STATIC_EXPORT_NOTE, Comparison, Report
from .report_figures import compare_figures, report_figures
from .report_files import write_compare, write_report

__all__ = ["analyze", "write_report", "compare_results", "write_compare", "report_figures", "compare_figures",
           "select_channels", "STATIC_EXPORT_NOTE", "ANALYTIC_GRID", "Report", "Comparison"]
