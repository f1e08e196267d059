"""make_report: result files in, report folder out (report.md/.json/.csv/.png/.html).

Everything is read and rendered in memory first and the files are then moved into ``out_dir``
together, so bad input leaves no partial report and a crash never a half-written file.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Optional, Sequence

from attnvgg.errors import InputError
from attnvgg.report.load import REPORT_FORMAT, collect
from attnvgg.report.plot import pareto_front, plot_png
from attnvgg.report.render import html_page, markdown, to_csv
from attnvgg.report.table import build_rows, choose_plot_batch, plot_points
from attnvgg.artifacts import atomic_files

OUTPUTS = {"markdown": "report.md", "json": "report.json", "csv": "report.csv", "plot": "report.png",
           "html": "report.html"}


def build_document(inputs: Sequence[Path], plot_batch: Optional[int] = None) -> tuple[dict, Optional[bytes]]:
    """The report as a JSON-ready dict, and the plot's PNG bytes (None when nothing can be plotted)."""
    results = collect(inputs)
    where = ", ".join(str(p) for p in inputs)
    if not results.has_results:
        raise InputError(f"no result files (bench, evaluate or parity JSON) in {where}",
                         "run attnvgg bench --json / evaluate / validate --json first, or point at the run folder")
    rows, batches, base = build_rows(results)
    if plot_batch is not None and plot_batch not in batches:
        raise InputError(f"--plot-batch {plot_batch} was not benchmarked (batches: {batches or 'none'})",
                         f"pick one of {batches}" if batches else "bench first")
    batch = choose_plot_batch(rows, batches, plot_batch)
    idx, left_out = plot_points(rows, batch)
    points = [(rows[i]["latency"][batch]["p50_ms"], rows[i]["top1"]) for i in idx]
    labels = [rows[i]["label"] for i in idx]
    dupes = {lb for lb in labels if labels.count(lb) > 1}
    labels = [f"{lb} [{Path(rows[i]['artifact']).name}]" if lb in dupes else lb for lb, i in zip(labels, idx)]
    front = pareto_front(points)
    for k in front:
        rows[idx[k]]["on_pareto_front"] = True
    # the front among CPU engines alone (PyTorch eager, ONNX Runtime, OpenVINO): what a CPU deployment picks from
    on_cpu = [k for k, i in enumerate(idx) if rows[i]["device"] == "cpu"]
    cpu_front = [on_cpu[j] for j in pareto_front([points[k] for k in on_cpu])]
    for k in cpu_front:
        rows[idx[k]]["on_cpu_pareto_front"] = True
    png = plot_png(points, labels, front, batch) if points else None
    why_none = None if points else ("no row has both a latency at batch %s and a top-1 accuracy" % batch)
    doc = {
        "format": REPORT_FORMAT,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "units": {"latency": "ms", "throughput": "images/s", "top1": "fraction", "drop_points": "percentage points",
                  "size_bytes": "bytes", "prep_seconds": "s"},
        "batches": batches,
        "baseline_top1": base["top1"],
        "plot": {"batch": batch, "pareto_front": [labels[k] for k in front],
                 "cpu_pareto_front": [labels[k] for k in sorted(cpu_front, key=lambda k: (points[k][0], k))],
                 "left_out": left_out,
                 "why_none": why_none},
        "rows": rows,
        "skipped": results.skipped,
        "machines": results.machines,
        "sources": results.sources,
        "ignored": results.ignored,
    }
    return doc, png


def make_report(inputs: Sequence[Path] | Path | str, out_dir: Path | str,
                plot_batch: Optional[int] = None) -> dict[str, Optional[Path]]:
    """Write the report into ``out_dir``; returns {"markdown", "json", "csv", "plot", "html"} -> path
    (``plot`` is None when no row has both a latency and a top-1)."""

    ins = [Path(inputs)] if isinstance(inputs, (str, Path)) else [Path(p) for p in inputs]
    if not ins:
        raise InputError("no results given", "pass the run folder or result JSON files")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"report output {out} is a file", "pass a folder with --out")
    doc, png = build_document(ins, plot_batch)
    texts = {"markdown": markdown(doc), "json": json.dumps(doc, indent=2) + "\n",
             "csv": to_csv(doc["rows"], doc["batches"]), "html": html_page(doc, png)}
    with atomic_files(out) as stage:
        for key, text in texts.items():
            (stage / OUTPUTS[key]).write_text(text)
        if png is not None:
            (stage / OUTPUTS["plot"]).write_bytes(png)
    stale = out / OUTPUTS["plot"]
    if png is None and stale.exists():
        stale.unlink()   # never leave an old plot beside a new report
    return {k: (out / name if (k != "plot" or png is not None) else None) for k, name in OUTPUTS.items()}
