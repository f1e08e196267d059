"""The report's outputs as text: Markdown table, CSV, the JSON document and one HTML page.

Why one column definition drives every format: the Markdown, HTML and CSV must never
disagree about which value is in which column. Missing values are "—" in Markdown/HTML, an
empty cell in CSV and null in JSON; they are never filled in.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from pathlib import Path
from typing import Any, Callable, Optional

DASH = "—"
MARK = "†"
FOOTNOTE = (f"{MARK} measured with another runner of the same file, or for PyTorch taken from the reference "
            "inside an evaluate result (report.json names which).")


def _ms(v: Optional[float]) -> str:
    if v is None:
        return DASH
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}" if v >= 0.1 else f"{v:.3f}"


def _num(v: Optional[float], fmt: str) -> str:
    return DASH if v is None else format(v, fmt)


def _artifact_name(r: dict) -> str:
    return Path(r["artifact"]).name if r["artifact"] != "pytorch" else "pytorch"


def _mark(r: dict, key: str) -> str:
    who = r.get(key)
    return MARK if who is not None and who != r["runner"] else ""


def columns(batches: list[int]) -> list[tuple[str, Callable[[dict], str]]]:
    """(header, cell text) for the Markdown and HTML tables."""
    cols: list[tuple[str, Callable[[dict], str]]] = [
        ("Runner", lambda r: r["runner"]),
        ("Precision", lambda r: (r["precision"] or DASH) + (f" ({r['flavour']})" if r["flavour"] else "")),
        ("Artifact", _artifact_name),
    ]
    for b in batches:
        def lat(r: dict, b: int = b) -> str:
            v = r["latency"].get(b)
            return DASH if not v else f"{_ms(v['p50_ms'])} / {_ms(v['p99_ms'])}"

        def thr(r: dict, b: int = b) -> str:
            v = r["latency"].get(b)
            t = v.get("throughput_ips") if v else None
            return DASH if t is None else (f"{t:.0f}" if t >= 100 else f"{t:.1f}")

        cols += [(f"b{b} p50 / p99 ms", lat), (f"b{b} img/s", thr)]
    cols += [
        ("Top-1 %", lambda r: DASH if r["top1"] is None else f"{r['top1'] * 100:.2f}{_mark(r, 'accuracy_runner')}"),
        ("Drop vs PyTorch fp32 (pts)", lambda r: _num(r["drop_points"], ".2f")),
        ("Top-1 agreement %", lambda r: DASH if r["top1_agreement"] is None
         else f"{r['top1_agreement'] * 100:.2f}{_mark(r, 'accuracy_runner')}"),
        ("Parity max abs", lambda r: DASH if r["parity_max_abs"] is None
         else f"{r['parity_max_abs']:.2e}{_mark(r, 'parity_runner')}"),
        ("Size MB", lambda r: DASH if r["size_bytes"] is None else f"{r['size_bytes'] / 1e6:.1f}"),
        ("Build / calib. s", lambda r: DASH if r["prep_seconds"] is None
         else f"{r['prep_seconds']:.1f} ({r['prep_kind']})"),
    ]
    return cols


def markdown_table(rows: list[dict], batches: list[int]) -> str:
    cols = columns(batches)
    out = ["| " + " | ".join(h for h, _ in cols) + " |",
           "|" + "|".join("---" if i < 3 else "---:" for i in range(len(cols))) + "|"]
    for r in rows:
        out.append("| " + " | ".join(f(r).replace("|", "\\|") for _, f in cols) + " |")
    return "\n".join(out)


def markdown(doc: dict) -> str:
    lines = ["# Latency vs accuracy", "", markdown_table(doc["rows"], doc["batches"]), ""]
    if any(MARK in f(r) for r in doc["rows"] for _, f in columns(doc["batches"])):
        lines += [FOOTNOTE, ""]
    if doc["baseline_top1"] is None:
        lines += ["No PyTorch fp32 top-1 in the inputs, so no drop is computed.", ""]
    if doc["plot"]["batch"] is not None:
        front = ", ".join(doc["plot"]["pareto_front"]) or DASH
        lines += [f"Pareto front at batch {doc['plot']['batch']} (p50 latency vs top-1): {front}", ""]
        lines += [cpu_front_line(doc), ""]
    if doc["skipped"]:
        lines += ["## Skipped", ""] + [f"- {s['what']}: {s['reason']}" if s["what"] else f"- {s['reason']}"
                                       for s in doc["skipped"]] + [""]
    for m in doc["machines"]:
        lines += ["## Machine", "", machine_line(m), ""]
    return "\n".join(lines)


def cpu_front_line(doc: dict) -> str:
    """The Pareto front among the CPU engines only (PyTorch eager, ONNX Runtime, OpenVINO)."""
    front = ", ".join(doc["plot"].get("cpu_pareto_front") or []) or DASH
    return f"CPU engines' Pareto front at batch {doc['plot']['batch']}: {front}"


def machine_line(m: dict) -> str:
    cpu, gpu, v = m.get("cpu") or {}, m.get("gpu"), m.get("versions") or {}
    parts = [f"CPU {cpu.get('model') or DASH} ({cpu.get('physical_cores') or DASH} physical / "
             f"{cpu.get('logical_cores') or DASH} logical cores, {cpu.get('usable_cores') or DASH} usable)",
             f"GPU {gpu.get('name')} (driver {gpu.get('driver') or DASH})" if gpu else "GPU none"]
    parts += [f"{k} {v[k]}" for k in ("python", "torch", "cuda", "onnxruntime", "openvino", "tensorrt", "attnvgg") if v.get(k)]
    parts.append(f"measured {m.get('date') or DASH}")
    return "; ".join(parts)


# ----------------------------------------------------------------------------- CSV

def flat(r: dict, batches: list[int]) -> dict[str, Any]:
    d: dict[str, Any] = {k: r[k] for k in ("label", "runner", "backend", "device", "precision", "flavour")}
    d["artifact"] = r["artifact"]
    for b in batches:
        v = r["latency"].get(b) or {}
        for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "throughput_ips", "compute_p50_ms"):
            d[f"{k}_b{b}"] = v.get(k)
    for k in ("top1", "top5", "drop_points", "top1_agreement", "mean_cosine", "accuracy_runner", "parity_max_abs",
              "parity_runner", "parity_passed", "size_bytes", "prep_seconds", "prep_kind", "threads",
              "on_pareto_front", "on_cpu_pareto_front"):
        d[k] = r[k]
    return d


def to_csv(rows: list[dict], batches: list[int]) -> str:
    buf = io.StringIO()
    flats = [flat(r, batches) for r in rows]
    header = list(flat(rows[0], batches)) if rows else []
    w = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    w.writeheader()
    for d in flats:
        w.writerow({k: ("" if v is None else v) for k, v in d.items()})
    return buf.getvalue()


# ----------------------------------------------------------------------------- HTML

_CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #ccc;padding:4px 8px}
th{background:#f2f2f2}td.n{text-align:right}tr.front td:first-child{border-left:4px solid #d1495b}
.note{color:#555;font-size:13px}img{max-width:100%}"""


def html_page(doc: dict, png: Optional[bytes]) -> str:
    e = html.escape
    cols = columns(doc["batches"])
    head = "".join(f"<th>{e(h)}</th>" for h, _ in cols)
    body = []
    for r in doc["rows"]:
        cells = "".join(f'<td class="{"n" if i >= 3 else ""}">{e(f(r))}</td>' for i, (_, f) in enumerate(cols))
        body.append(f'<tr class="{"front" if r["on_pareto_front"] else ""}">{cells}</tr>')
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>attnvgg latency vs accuracy</title>", f"<style>{_CSS}</style></head><body>",
             "<h1>Latency vs accuracy</h1>", f'<p class="note">Generated {e(doc["created"])} from '
             f'{len(doc["sources"])} result file(s).</p>']
    if png is not None:
        b64 = base64.b64encode(png).decode("ascii")
        parts.append(f'<img alt="p50 latency at batch {doc["plot"]["batch"]} against top-1 accuracy, '
                     f'Pareto front marked" src="data:image/png;base64,{b64}">')
    else:
        parts.append(f'<p class="note">No plot: {e(doc["plot"]["why_none"] or "")}</p>')
    if doc["plot"]["batch"] is not None:
        parts.append(f'<p class="note" id="cpu-front">{e(cpu_front_line(doc))}</p>')
    if doc["plot"]["left_out"] and png is not None:
        parts.append('<p class="note">Not plotted: ' + e("; ".join(doc["plot"]["left_out"])) + "</p>")
    parts += [f'<table id="results"><thead><tr>{head}</tr></thead><tbody>', *body, "</tbody></table>",
              f'<p class="note">Latency: end to end per batch (p50 / p99). Rows on the Pareto front at batch '
              f'{doc["plot"]["batch"]} are marked on the left. {e(FOOTNOTE)}</p>']
    if doc["baseline_top1"] is None:
        parts.append('<p class="note">No PyTorch fp32 top-1 in the inputs, so no drop is computed.</p>')
    parts.append('<h2>Skipped stages and runners</h2>')
    if doc["skipped"]:
        parts.append('<ul id="skipped">' + "".join(
            f"<li><b>{e(s['what'])}</b>: {e(s['reason'])}</li>" if s["what"] else f"<li>{e(s['reason'])}</li>"
            for s in doc["skipped"]) + "</ul>")
    else:
        parts.append('<p class="note">None.</p>')
    parts.append("<h2>Machine and versions</h2>")
    if doc["machines"]:
        parts += [f'<p class="machine">{e(machine_line(m))}</p>' for m in doc["machines"]]
    else:
        parts.append('<p class="note">No bench result, so no machine was recorded.</p>')
    parts.append('<h2>Sources</h2><ul class="note">' + "".join(f"<li>{e(s)}</li>" for s in doc["sources"]) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
