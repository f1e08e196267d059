"""make_report: result files in, report folder out (report.md/.json/.csv/.png/.html).

Everything is read and rendered in memory first and the files are then moved into ``out_dir``
together, so bad input leaves no partial report and a crash never a half-written file.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Optional, Sequence

from attnvgg.artifacts import strict_json
from attnvgg.errors import InputError
from attnvgg.report.attention import find_explains, html_section, markdown_section, png_copies
from attnvgg.report.attention import summary as attention_summary
from attnvgg.report.facts import header, machine_label, method, relative, reproduce, versions
from attnvgg.report.load import PYTORCH, REPORT_FORMAT, collect
from attnvgg.report.plot import ACCURACY_AXIS, AGREEMENT_AXIS, pareto_front, plot_batches, plot_png
from attnvgg.report.render import html_page, markdown, to_csv
from attnvgg.report.table import build_rows, choose_plot_batch, plot_points
from attnvgg.artifacts import atomic_files

OUTPUTS = {"markdown": "report.md", "json": "report.json", "csv": "report.csv", "plot": "report.png",
           "batch_plot": "latency-vs-batch.png", "html": "report.html"}
PLOTS = ("plot", "batch_plot")


def split_runs(inputs: Sequence[Path]) -> list[list[Path]]:
    """One run per folder when several folders are given (``attnvgg report runA runB``: one
    machine each, typically one CI job per GPU type); a single folder with loose files, or loose
    files alone, are one run."""
    dirs = [p for p in inputs if Path(p).is_dir()]
    if len(dirs) <= 1:
        return [list(inputs)]
    files = [p for p in inputs if not Path(p).is_dir()]
    return [[d] for d in dirs] + ([files] if files else [])


def _base(inputs: Sequence[Path]) -> Path:
    """The folder paths in the report are relative to: the common parent of the inputs."""
    import os

    folders = [str(Path(p).resolve() if Path(p).is_dir() else Path(p).resolve().parent) for p in inputs]
    return Path(os.path.commonpath(folders)) if folders else Path.cwd()


def _run_part(run_inputs: list[Path], base: Path, index: int, many: bool, out_dir: Optional[Path]) -> dict:
    results = collect(run_inputs)
    rows, batches, info = build_rows(results)
    head = header(results)
    meth = method(results, rows)
    machine = results.machines[0] if results.machines else None
    name = relative(run_inputs[0], base) if many else None
    label = machine_label(machine) if machine else "machine not recorded"
    for r in rows:
        r["run"] = name
        r["machine"] = label
        r["artifact_paths"] = [p if p == PYTORCH else relative(p, base) for p in r.get("artifact_paths", [])]
        for v in r["latency"].values():
            if v.get("source"):
                v["source"] = relative(v["source"], base)
        if r["polygraphy"]:
            pg = r["polygraphy"]
            r["polygraphy"] = {**pg, "command": _relative_command(pg, base),
                               **{k: relative(pg[k], base) for k in ("inputs", "outputs") if pg.get(k)}}
        if r["trtexec_script"]:
            script = r["trtexec_script"]
            r["trtexec_href"] = relative(script, out_dir) if out_dir is not None else None
            r["trtexec_script"] = relative(script, base)
    return {"name": name, "index": index, "results": results, "rows": rows, "batches": batches,
            "baseline_top1": info["top1"], "header": head, "method": meth, "machine": machine,
            "machine_label": label, "machines": results.machines, "reproduce": reproduce(results, base),
            "versions": versions(results)}


def _relative_command(pg: dict, base: Path) -> str:
    """The polygraphy line with the model and file paths relative to the report's base folder."""
    import shlex

    cmd = pg["command"].split("   (", 1)
    args = shlex.split(cmd[0])
    out = [relative(a, base) if (i == 2 or (i > 0 and args[i - 1] in ("--load-inputs", "--load-outputs")))
           and Path(a).is_absolute() else a for i, a in enumerate(args)]
    return " ".join(shlex.quote(a) for a in out) + (f"   ({cmd[1]}" if len(cmd) > 1 else "")


def build_document(inputs: Sequence[Path], plot_batch: Optional[int] = None,
                   out_dir: Optional[Path] = None) -> tuple[dict, dict[str, Optional[bytes]]]:
    """The report as a JSON-ready dict, and the PNG bytes of its plots ("plot": latency vs
    accuracy, "batch_plot": latency vs batch; None when nothing can be plotted)."""
    runs = split_runs(inputs)
    base = _base(inputs)
    many = len(runs) > 1
    parts = [_run_part(r, base, i, many, out_dir) for i, r in enumerate(runs)]
    where = ", ".join(str(p) for p in inputs)
    empty = [p for p in parts if not p["results"].has_results]
    if empty:
        what = where if not many else ", ".join(str(runs[p["index"]][0]) for p in empty)
        raise InputError(f"no result files (bench, evaluate or parity JSON) in {what}",
                         "run attnvgg bench --json / evaluate / validate --json first, or point at the run folder")
    rows = [r for p in parts for r in p["rows"]]
    batches = sorted({b for p in parts for b in p["batches"]})
    if plot_batch is not None and plot_batch not in batches:
        raise InputError(f"--plot-batch {plot_batch} was not benchmarked (batches: {batches or 'none'})",
                         f"pick one of {batches}" if batches else "bench first")
    random_weights = any(p["header"]["trained"] is False for p in parts)
    metric = "top1_agreement" if random_weights else "top1"
    if random_weights:
        for r in rows:
            if r["artifact"] == PYTORCH and r["top1_agreement"] is None:
                r["top1_agreement"] = 1.0          # the reference agrees with itself
                r["accuracy_runner"] = r["accuracy_runner"] or r["runner"]
    batch = choose_plot_batch(rows, batches, plot_batch, metric)
    idx, left_out = plot_points(rows, batch, metric)
    points = [(rows[i]["latency"][batch]["p50_ms"], rows[i][metric]) for i in idx]
    labels = [_plot_label(rows[i], many) for i in idx]
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
    axis = AGREEMENT_AXIS if random_weights else ACCURACY_AXIS
    pngs: dict[str, Optional[bytes]] = {
        "plot": plot_png(points, labels, front, batch, axis) if points else None,
        "batch_plot": plot_batches(rows, many) if any(len(r["latency"]) for r in rows) else None}
    why_none = None if points else (f"no row has both a latency at batch {batch} and a "
                                    f"{'top-1 agreement' if random_weights else 'top-1 accuracy'}")
    doc = {
        "format": REPORT_FORMAT,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "units": {"latency": "ms", "throughput": "images/s (batch / p50)", "top1": "fraction",
                  "drop_points": "percentage points", "size_bytes": "bytes", "prep_seconds": "s",
                  "spread": "p99 / p50"},
        "base": base.name,           # paths in the report are relative to this folder
        "batches": batches,
        "baseline_top1": parts[0]["baseline_top1"] if not many else None,
        "random_weights": random_weights,
        "plot": {"batch": batch, "metric": metric, "y_label": axis["label"],
                 "pareto_front": [labels[k] for k in front],
                 "cpu_pareto_front": [labels[k] for k in sorted(cpu_front, key=lambda k: (points[k][0], k))],
                 "left_out": left_out, "why_none": why_none},
        "runs": [{k: p[k] for k in ("name", "header", "method", "machine", "machine_label", "reproduce", "versions",
                                    "baseline_top1")} for p in parts],
        "rows": rows,
        "skipped": [{**s, "source": relative(s["source"], base)} if s.get("source") else s
                    for p in parts for s in p["results"].skipped],
        "machines": [m for p in parts for m in p["machines"]],
        "sources": [relative(s, base) for p in parts for s in p["results"].sources],
        "ignored": [relative(s, base) for p in parts for s in p["results"].ignored],
    }
    return doc, pngs


def _plot_label(r: dict, many: bool) -> str:
    """Short point labels: the run folder names the machine (the table has its full name)."""
    return f"{r['label']} [{r['run']}]" if many else r["label"]


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
    doc, pngs = build_document(ins, plot_batch, out)
    explains = find_explains(ins)
    copies = png_copies(explains)
    doc["attention_maps"] = attention_summary(explains)
    texts = {"markdown": markdown(doc) + markdown_section(explains, copies),
             "json": json.dumps(strict_json(doc), indent=2, allow_nan=False) + "\n",
             "csv": to_csv(doc["rows"], doc["batches"]),
             "html": html_page(doc, pngs, out).replace("</body></html>", html_section(explains) + "</body></html>")}
    with atomic_files(out) as stage:
        for key, text in texts.items():
            (stage / OUTPUTS[key]).write_text(text)
        for key in PLOTS:
            if pngs[key] is not None:
                (stage / OUTPUTS[key]).write_bytes(pngs[key])  # type: ignore[arg-type]
        for src, name in copies.items():
            (stage / name).write_bytes(src.read_bytes())
    for key in PLOTS:
        stale = out / OUTPUTS[key]
        if pngs[key] is None and stale.exists():
            stale.unlink()   # never leave an old plot beside a new report
    return {k: (out / name if (k not in PLOTS or pngs[k] is not None) else None) for k, name in OUTPUTS.items()}
