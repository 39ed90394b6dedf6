"""Writing a report or a comparison to files: CSV and JSON (every number; NaN/inf as null in JSON), an offline
HTML page with the plotly figures, and PNGs when kaleido and a browser work.

    write_report(rep, "out/")   # report.json, channels.csv, layers.csv, kernels.csv, params_*.csv, report.html
                                # (+ verdict.csv and a "verdict" entry when the report carries one)
    write_compare(cmp, "out/")  # compare.json, compare_*.csv, compare.html
"""
from __future__ import annotations

import csv
import html
import json
import math
import os

import numpy as np

from .records import STATIC_EXPORT_NOTE, Comparison, Report
from .report_figures import compare_figures, report_figures

__all__ = ["write_report", "write_compare"]


# ----------------------------------------------------------------------------------------------- values
def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        v = float(x)
        return v if math.isfinite(v) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, complex):
        return [x.real, x.imag]
    if x is None or isinstance(x, (str, int, bool)):
        return x
    return str(x)


def _scalar(x):
    """JSON/CSV-friendly scalar."""
    if isinstance(x, (np.floating, float)):
        return float(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def _csv_value(v):
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return repr(v) if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))
    if isinstance(v, (list, tuple, dict)):
        return _neutral(json.dumps(_jsonable(v)))
    v = _scalar(v)
    return _neutral(v) if isinstance(v, str) else v


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _neutral(text: str) -> str:
    """A text cell a spreadsheet will not run as a formula: one starting with = + - @ (or tab / CR) gets a
    leading apostrophe. Only text cells: numbers (also negative ones) are written as numbers."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def _keys(rows: list[dict]) -> list[str]:
    """Every key of the rows, in order of first appearance."""
    keys: list[str] = []
    for r in rows:
        for k in r:
            if k not in keys:
                keys.append(k)
    return keys


def _write_csv(path: str, rows: list[dict]) -> None:
    keys = _keys(rows)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: _csv_value(r.get(k)) for k in keys})


def _write_json(path: str, data: dict) -> None:
    with open(path, "w") as f:
        json.dump(data, f, indent=1, allow_nan=False)


# ----------------------------------------------------------------------------------------------- HTML
def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if not math.isfinite(v):
            return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
        return f"{v:.4g}"
    if isinstance(v, (dict, list)):
        return html.escape(json.dumps(_jsonable(v))[:200])
    return html.escape(str(v))


def _html_table(rows: list[dict], keys: list[str] | None = None) -> str:
    if not rows:
        return "<p><em>none</em></p>"
    keys = _keys(rows) if keys is None else keys
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in keys)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(k, ''))}</td>" for k in keys) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """body{font-family:system-ui,sans-serif;margin:1.5em;max-width:1400px}
table{border-collapse:collapse;font-size:12px;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}
th{background:#f3f3f3}h2{margin-top:1.6em;border-bottom:1px solid #ddd}.warn{color:#a33}.scroll{overflow-x:auto}
.note{color:#555;font-size:13px}"""

#: Columns of the layer table on the HTML pages (the CSV has them all).
_LAYER_KEYS = ["layer", "kind", "H", "C_k", "n_params", "n_params_formula", "profile_t", "profile_t_r2",
               "profile_r", "t_median", "t_iqr", "r_median", "range50_median", "range90_median",
               "range99_median", "peak_gain_db_median", "peak_gain_db_inf_median", "bandwidth_median",
               "centroid_median", "half_life", "median_half_life", "analytic_vs_fft_rel"]


def _layer_table(rows: list[dict]) -> str:
    return _html_table(rows, [k for k in _LAYER_KEYS if any(k in r for r in rows)])


def _warning_list(warnings) -> str:
    return "<ul>" + "".join(f"<li class='warn'>{html.escape(w)}</li>" for w in warnings) + "</ul>"


def _figures_html(figs) -> str:
    parts = []
    for i, (title, fig) in enumerate(figs):
        parts.append(f"<h3>{html.escape(title)}</h3>")
        parts.append(fig.to_html(full_html=False, include_plotlyjs=(i == 0)))
    return "\n".join(parts)


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>{body}</body></html>")


#: Columns of the verdict table on the HTML page (verdict.csv has them all).
_VERDICT_KEYS = ["layer", "kind", "params_L1024", "params_L16384", "params_L1048576", "growth", "verdict", "r2_power",
                 "r2_exp", "note"]


def _verdict_section(v) -> str:
    """The 'Verdict' section: the two sentences and the per-layer table of an `analysis.verdict.Verdict`."""
    from .verdict import METHOD

    sentences = "".join(f"<p>{html.escape(s)}</p>" for s in v.sentences())
    return ("<h2>Verdict on the two principles</h2>" + sentences + "<div class='scroll'>"
            + _html_table(v.rows(), _VERDICT_KEYS) + "</div><p class='note'>" + html.escape(METHOD) + "</p>")


def _report_body(rep: Report, data: dict, figs) -> str:
    s = rep.checkpoint.summary
    body = [f"<h1>kernelscope report: {html.escape(str(s.get('file', '')))}</h1>",
            f"<p class='note'>kernel length L = {rep.L:,} taps; analysis {rep.timings['analyze']:.2f} s. Numbers: "
            f"report.json and the CSV files next to this page. {html.escape(STATIC_EXPORT_NOTE)}</p>",
            "<h2>Checkpoint</h2>", _html_table([s])]
    warns = rep.all_warnings()
    if warns:
        body.append("<h2>Warnings</h2>" + _warning_list(warns))
    if rep.checkpoint.card:
        body.append("<h2>Model card</h2><pre>" + html.escape(json.dumps(_jsonable(rep.checkpoint.card), indent=1))
                    + "</pre>")
    if rep.verdict is not None:
        body.append(_verdict_section(rep.verdict))
    body += ["<h2>Layers</h2><div class='scroll'>", _layer_table(data["layers"]), "</div>",
             "<h2>Kernels</h2>", _html_table(rep.kernels),
             "<h2>Parameters</h2>", _html_table(data["params"]["per_layer"]),
             "<h2>Figures</h2>", _figures_html(figs)]
    return "\n".join(body)


# ----------------------------------------------------------------------------------------------- PNG
def _kaleido_available() -> bool:
    try:
        import kaleido  # noqa: F401
        return True
    except Exception:
        return False


def _export_png(figs, out_dir: str) -> dict:
    """Try static export with kaleido; returns {status, files, error}."""
    if not _kaleido_available():
        return {"status": "skipped: kaleido is not installed", "files": [], "how": STATIC_EXPORT_NOTE}
    files = []
    png_dir = os.path.join(out_dir, "png")
    try:
        os.makedirs(png_dir, exist_ok=True)
        for i, (title, fig) in enumerate(figs):
            path = os.path.join(png_dir, f"{i:02d}_" + "".join(ch if ch.isalnum() else "_" for ch in title) + ".png")
            fig.write_image(path)
            files.append(path)
        return {"status": "ok", "files": files}
    except Exception as e:  # kaleido without a browser, or any export failure
        return {"status": f"failed: {type(e).__name__}: {str(e)[:300]}", "files": files, "how": STATIC_EXPORT_NOTE}


# ----------------------------------------------------------------------------------------------- writers
def write_report(result: Report, out_dir, html_page: bool = True, png: bool | None = None, progress=None) -> dict:
    """Write a `Report`: report.json (every number; NaN/inf as null), channels.csv, layers.csv, kernels.csv,
    params_layers.csv, params_scaling.csv, report.html (offline, plotly.js inlined once) and, when kaleido + a
    browser work, png/*.png (png=None: try when kaleido is importable; False: never). A report carrying a verdict
    (``result.verdict``, set by `analysis.report.analyze`) also gets verdict.csv (one row per layer), a "verdict"
    entry in report.json (L, the two sentences, the rows) and a section of report.html.
    Returns {name: path} of the files written."""
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    data = result.to_dict()
    tables = [("channels", data["channels"]), ("layers", data["layers"]), ("kernels", data["kernels"]),
              ("params_layers", data["params"]["per_layer"]), ("params_scaling", data["params"]["scaling"])]
    if "verdict" in data:
        tables.append(("verdict", data["verdict"]["layers"]))
    paths = {}
    for name, rows in tables:
        paths[name + ".csv"] = p = os.path.join(out_dir, f"{name}.csv")
        _write_csv(p, rows)
    figs = None
    export = {"status": "not attempted", "how": STATIC_EXPORT_NOTE}
    if html_page or png:
        figs = report_figures(result)
        if progress:
            progress("figures built")
    if png is not False and figs is not None:
        export = _export_png(figs, out_dir) if (png or _kaleido_available()) else {
            "status": "skipped: kaleido is not installed", "how": STATIC_EXPORT_NOTE}
    doc = _jsonable(data)
    doc["meta"]["static_export_result"] = _jsonable(export)
    paths["report.json"] = p = os.path.join(out_dir, "report.json")
    _write_json(p, doc)
    if html_page:
        paths["report.html"] = p = os.path.join(out_dir, "report.html")
        with open(p, "w") as f:
            f.write(_page(f"kernelscope: {result.checkpoint.summary.get('file', '')}", _report_body(result, data, figs)))
    for f in export.get("files", []):
        paths[os.path.relpath(f, out_dir)] = f
    return paths


def write_compare(cmp: Comparison, out_dir, html_page: bool = True) -> dict:
    """Write a `Comparison`: compare.json, compare_layers.csv, compare_similarity.csv, compare_summary.csv and
    compare.html. Returns {name: path}."""
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    paths = {}
    layer_rows = [{"checkpoint": lab, **row} for lab, rows in cmp.tables.items() for row in rows]
    for name, rows in (("compare_layers", layer_rows), ("compare_similarity", cmp.similarity),
                       ("compare_summary", cmp.summaries)):
        paths[name + ".csv"] = p = os.path.join(out_dir, f"{name}.csv")
        _write_csv(p, rows)
    doc = _jsonable(cmp.to_dict())
    doc["static_export"] = STATIC_EXPORT_NOTE
    paths["compare.json"] = p = os.path.join(out_dir, "compare.json")
    _write_json(p, doc)
    if html_page:
        body = [f"<h1>kernelscope comparison ({len(cmp.labels)} checkpoints, L = {cmp.L:,})</h1>",
                "<h2>Checkpoints</h2><div class='scroll'>", _html_table(cmp.summaries), "</div>"]
        for lab, rows in cmp.tables.items():
            body += [f"<h2>{html.escape(lab)}</h2><div class='scroll'>", _layer_table(rows), "</div>"]
            if cmp.warnings.get(lab):
                body.append(_warning_list(cmp.warnings[lab]))
        body += ["<h2>Similarity per layer</h2>", _html_table(cmp.similarity),
                 "<h2>Figures</h2>", _figures_html(compare_figures(cmp))]
        paths["compare.html"] = p = os.path.join(out_dir, "compare.html")
        with open(p, "w") as f:
            f.write(_page("kernelscope comparison", "\n".join(body)))
    return paths
