"""The report's outputs as text: Markdown, CSV, the JSON document and one HTML page.

Why one column definition drives every format: the Markdown, HTML and CSV must never
disagree about which value is in which column. Missing values are "—" in Markdown/HTML, an
empty cell in CSV and null in JSON; they are never filled in. A footnote is printed only
when some cell carries its mark.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from attnvgg.report.facts import NOISY_SPREAD, header_lines, method_lines
from attnvgg.validate.parity import TOLERANCE_RULE, tolerance_text

DASH = "—"
MARK = "†"
FOOTNOTE = (f"{MARK} measured with another runner of the same file, or for PyTorch taken from the reference "
            "inside an evaluate result (report.json names which).")


_MD_SPECIAL = set("\\`*_[]<>|~&")


def md(text: Any) -> str:
    """Text from result files, safe inside Markdown: every Markdown metacharacter backslash-escaped
    (CommonMark allows it for all ASCII punctuation) and newlines folded, so a file or runner name
    like ``x|y`` or ``<img src=...>`` or ``**b**`` shows as itself and cannot break a table or
    inject markup."""
    s = " ".join(str(text).split())
    return "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in s)


@dataclass(frozen=True)
class Column:
    head: str
    cell: Callable[[dict], str]
    numeric: bool = False


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


def parity_cell(r: dict) -> str:
    if r["parity_passed"] is None and r["parity_max_abs"] is None:
        return DASH
    verdict = "PASS" if r["parity_passed"] else "FAIL"
    bits = [verdict + _mark(r, "parity_runner")]
    if r["parity_max_abs"] is not None:
        bits.append(f"max abs {r['parity_max_abs']:.2e}")
    if r.get("parity_min_cosine") is not None:
        bits.append(f"cos {r['parity_min_cosine']:.6f}")
    if r.get("parity_top1_agreement") is not None:
        bits.append(f"top-1 {r['parity_top1_agreement']:.0%}")
    if r.get("parity_info_failed"):
        n = r["parity_info_failed"]
        bits.append(f"{n} information-only case{'s' if n > 1 else ''} (random inputs) outside tolerance")
    return " · ".join(bits)


def _spread_cell(v: Optional[dict]) -> str:
    s = (v or {}).get("spread")
    return DASH if s is None else f"{s:.2f}" + (" noisy" if s > NOISY_SPREAD else "")


def columns(batches: list[int], rows: Optional[list[dict]] = None, machine: bool = False) -> list[Column]:
    """The table's columns (Markdown and HTML); the GPU compute column only where measured."""
    rows = rows or []
    cols: list[Column] = [Column("Machine", lambda r: r.get("machine") or DASH)] if machine else []
    cols += [
        Column("Runner", lambda r: r["runner"]),
        Column("Precision", lambda r: (r["precision"] or DASH) + (f" ({r['flavour']})" if r["flavour"] else "")),
        Column("Artifact", _artifact_name),
    ]
    for b in batches:
        def lat(r: dict, b: int = b) -> str:
            v = r["latency"].get(b)
            return DASH if not v else f"{_ms(v['p50_ms'])} / {_ms(v.get('p90_ms'))} / {_ms(v['p99_ms'])}"

        def thr(r: dict, b: int = b) -> str:
            v = r["latency"].get(b)
            t = v.get("throughput_ips") if v else None
            return DASH if t is None else (f"{t:.0f}" if t >= 100 else f"{t:.1f}")

        def comp(r: dict, b: int = b) -> str:
            v = r["latency"].get(b) or {}
            return _ms(v.get("compute_p50_ms"))

        cols += [Column(f"b{b} p50 / p90 / p99 ms", lat, True),
                 Column(f"b{b} spread p99/p50", lambda r, b=b: _spread_cell(r["latency"].get(b)), True),
                 Column(f"b{b} img/s (p50)", thr, True)]
        if any((r["latency"].get(b) or {}).get("compute_p50_ms") is not None for r in rows):
            cols.append(Column(f"b{b} GPU compute p50 ms", comp, True))
    cols += [
        Column("Top-1 %", lambda r: DASH if r["top1"] is None else f"{r['top1'] * 100:.2f}{_mark(r, 'accuracy_runner')}",
               True),
        Column("Drop vs PyTorch fp32 (pts)", lambda r: _num(r["drop_points"], ".2f"), True),
        Column("Top-1 agreement %", lambda r: DASH if r["top1_agreement"] is None
               else f"{r['top1_agreement'] * 100:.2f}{_mark(r, 'accuracy_runner')}", True),
        Column("Parity vs PyTorch", lambda r: parity_cell(r).split(" · cos")[0]),
        Column("Size MB", lambda r: DASH if r["size_bytes"] is None else f"{r['size_bytes'] / 1e6:.1f}", True),
        Column("Build / calib. s", lambda r: DASH if r["prep_seconds"] is None
               else f"{r['prep_seconds']:.1f} ({r['prep_kind']})", True),
    ]
    return cols


def variant_columns(machine: bool = False) -> list[Column]:
    """The second table: per row, parity with its tolerance and the per-layer precision."""
    cols: list[Column] = [Column("Machine", lambda r: r.get("machine") or DASH)] if machine else []
    return cols + [
        Column("Runner", lambda r: r["runner"]),
        Column("Precision", lambda r: (r["precision"] or DASH) + (f" ({r['flavour']})" if r["flavour"] else "")),
        Column("Artifact", _artifact_name),
        Column("Parity vs PyTorch", parity_cell),
        Column("Parity tolerance", lambda r: tolerance_text(r["parity_tolerance"]) if r.get("parity_tolerance") else DASH),
        Column("Layers (Conv, Gemm, MatMul)", lambda r: (r.get("precision_summary") or {}).get("text") or DASH),
    ]


def _table_columns(doc: dict) -> list[Column]:
    return columns(doc["batches"], doc["rows"], machine=len(doc["runs"]) > 1)


def _variant_rows(doc: dict) -> list[dict]:
    return [r for r in doc["rows"] if r["artifact"] != "pytorch"]


def _marked(doc: dict, cols: list[Column]) -> bool:
    return any(MARK in c.cell(r) for r in doc["rows"] for c in cols + variant_columns())


def markdown_table(rows: list[dict], cols: list[Column]) -> str:
    out = ["| " + " | ".join(c.head for c in cols) + " |",
           "|" + "|".join("---:" if c.numeric else "---" for c in cols) + "|"]
    for r in rows:
        out.append("| " + " | ".join(md(c.cell(r)) for c in cols) + " |")
    return "\n".join(out)


def checks(doc: dict) -> list[dict]:
    """Per row, the lines a Polygraphy or trtexec user reruns: ``polygraphy run`` on the saved
    validate files, and the engine's trtexec script."""
    out = []
    for r in doc["rows"]:
        pg = (r.get("polygraphy") or {}).get("command")
        if pg or r.get("trtexec_script"):
            out.append({"label": r["label"], "machine": r.get("machine"), "artifact": _artifact_name(r),
                        "polygraphy": pg, "trtexec_script": r.get("trtexec_script"),
                        "trtexec_href": r.get("trtexec_href")})
    # one line per artifact and machine (a CPU and a CUDA row of one file share their files)
    seen, uniq = set(), []
    for c in out:
        key = (c["machine"], c["artifact"], c["polygraphy"], c["trtexec_script"])
        if key not in seen:
            seen.add(key)
            uniq.append(c)
    return uniq


def reproduce_lines(rep: Optional[dict]) -> list[str]:
    if not rep:
        return ["Reproduce: unknown (no run record, the notes.json attnvgg run writes, in the inputs)"]
    commit = rep.get("git_commit")
    code = f"attnvgg {rep.get('attnvgg') or DASH}" + (
        f", git commit {commit[:12]}" + (" with local changes" if rep.get("git_dirty") else "") if commit
        else ", not from a git checkout")
    lines = [f"Reproduce: `{rep['command']}` (config sha256 {str(rep.get('config_sha256') or DASH)[:16]}; {code})"]
    if rep.get("invocation"):
        lines.append(f"As run: `{rep['invocation']}`")
    return lines


def versions_line(v: dict) -> str:
    return ", ".join(f"{k} {val}" for k, val in v.items()) or DASH


def cpu_front_line(doc: dict) -> str:
    """The Pareto front among the CPU engines only (PyTorch eager, ONNX Runtime, OpenVINO)."""
    front = ", ".join(doc["plot"].get("cpu_pareto_front") or []) or DASH
    return f"CPU engines' Pareto front at batch {doc['plot']['batch']}: {front}"


def machine_line(m: dict) -> str:
    cpu, gpu = m.get("cpu") or {}, m.get("gpu")
    parts = [f"CPU {cpu.get('model') or DASH} ({cpu.get('physical_cores') or DASH} physical / "
             f"{cpu.get('logical_cores') or DASH} logical cores, {cpu.get('usable_cores') or DASH} usable)",
             (f"GPU {gpu.get('name')} (compute capability {gpu.get('compute_capability') or DASH}, driver "
              f"{gpu.get('driver') or DASH})") if gpu else "GPU none"]
    if m.get("platform"):
        parts.append(str(m["platform"]))
    parts.append(f"measured {m.get('date') or DASH}")
    return "; ".join(parts)


def _run_title(run: dict, many: bool) -> str:
    return f"{run['name']} — {run['machine_label']}" if many else run["machine_label"]


def markdown(doc: dict) -> str:
    cols = _table_columns(doc)
    many = len(doc["runs"]) > 1
    lines = ["# Latency vs accuracy", ""]
    for run in doc["runs"]:
        if many:
            lines += [f"## Run {_run_title(run, True)}", ""]
        lines += [f"- {ln}" for ln in header_lines(run["header"])]
        lines += [f"- Method: {ln}" for ln in method_lines(run["method"])]
        lines += [f"- {ln}" for ln in reproduce_lines(run["reproduce"])] + [""]
    lines += [markdown_table(doc["rows"], cols), ""]
    if _marked(doc, cols):
        lines += [FOOTNOTE, ""]
    if _variant_rows(doc):
        lines += ["## Parity and precision per variant", "",
                  markdown_table(_variant_rows(doc), variant_columns(many)), "",
                  md(f"Parity tolerance {TOLERANCE_RULE}."), ""]
    if doc["baseline_top1"] is None and not many:
        lines += ["No PyTorch fp32 top-1 in the inputs, so no drop is computed.", ""]
    if doc["plot"]["batch"] is not None:
        front = ", ".join(md(x) for x in doc["plot"]["pareto_front"]) or DASH
        lines += [f"Pareto front at batch {doc['plot']['batch']} (p50 latency vs {doc['plot']['y_label']}): {front}", ""]
        lines += [cpu_front_line(doc), ""]
    chk = checks(doc)
    if chk:
        lines += ["## Check and rebuild", ""]
        for c in chk:
            who = f"{c['artifact']}" + (f" @ {c['machine']}" if many else "")
            if c["polygraphy"]:
                lines.append(f"- {who}: `{c['polygraphy']}`")
            if c["trtexec_script"]:
                lines.append(f"- {who}: trtexec `{c['trtexec_script']}`")
        lines.append("")
    if doc["skipped"]:
        lines += ["## Skipped", ""] + [f"- {md(s['what'])}: {md(s['reason'])}" if s["what"] else f"- {md(s['reason'])}"
                                       for s in doc["skipped"]] + [""]
    lines += ["## Machines and versions", ""]
    for run in doc["runs"]:
        title = _run_title(run, many) + ": " if many else ""
        lines.append(f"- {title}" + (machine_line(run["machine"]) if run["machine"] else "no bench result, no machine"))
        lines.append(f"  - versions: {versions_line(run['versions'])}")
    lines += ["", "## Sources", ""] + [f"- {md(s)}" for s in doc["sources"]] + [""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CSV

def flat(r: dict, batches: list[int]) -> dict[str, Any]:
    d: dict[str, Any] = {k: r.get(k) for k in ("run", "machine", "label", "runner", "backend", "device", "precision",
                                               "flavour")}
    d["artifact"] = r["artifact"]
    for b in batches:
        v = r["latency"].get(b) or {}
        for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "spread", "throughput_ips", "throughput_mean_ips",
                  "compute_p50_ms"):
            d[f"{k}_b{b}"] = v.get(k)
    for k in ("top1", "top5", "drop_points", "top1_agreement", "mean_cosine", "accuracy_runner", "parity_max_abs",
              "parity_runner", "parity_passed", "parity_min_cosine", "parity_top1_agreement", "size_bytes",
              "prep_seconds", "prep_kind", "threads", "on_pareto_front", "on_cpu_pareto_front"):
        d[k] = r.get(k)
    tol = r.get("parity_tolerance")
    d["parity_tolerance"] = tolerance_text(tol) if tol else None
    d["layers"] = (r.get("precision_summary") or {}).get("text")
    d["polygraphy"] = (r.get("polygraphy") or {}).get("command")
    d["trtexec_script"] = r.get("trtexec_script")
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

_CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1700px}
table{border-collapse:collapse;font-size:12px}th,td{border:1px solid #ccc;padding:3px 6px;vertical-align:top}
th{background:#f2f2f2}td.n{text-align:right;white-space:nowrap}tr.front td:first-child{border-left:4px solid #d1495b}
.note{color:#555;font-size:13px}img{max-width:100%}dl.facts{display:grid;grid-template-columns:max-content auto;
gap:2px 12px;font-size:14px}dl.facts dt{font-weight:600}dl.facts dd{margin:0}code{font-size:12px;background:#f6f6f6;
padding:1px 3px;word-break:break-all}.noisy{color:#b00020;font-weight:600}.fail{color:#b00020;font-weight:600}
.plots{display:flex;flex-wrap:wrap;gap:16px}.plots img{max-width:780px}.wide{overflow-x:auto}
#variants td{max-width:460px}td.m{white-space:nowrap}"""


def _facts_html(run: dict) -> str:
    e = html.escape
    items = []
    for ln in header_lines(run["header"]):
        k, _, v = ln.partition(": ")
        items.append((k, v))
    meth = method_lines(run["method"])
    items.append(("Method", " ".join(meth[:-1]) if len(meth) > 1 else meth[0]))
    if len(meth) > 1:
        items.append(("Noise", meth[-1]))
    for ln in reproduce_lines(run["reproduce"]):
        k, _, v = ln.partition(": ")
        items.append((k, v))
    out = ['<dl class="facts">']
    for k, v in items:
        cls = ' class="noisy"' if v.startswith("NOISY") else ""
        text = e(v)
        # `command` spans become <code>
        parts = text.split("`")
        text = "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))
        out.append(f"<dt>{e(k)}</dt><dd{cls}>{text}</dd>")
    out.append("</dl>")
    return "".join(out)


def _link(path: str, href: Optional[str]) -> str:
    """A link (relative to the report's folder) to a file named relative to the base folder."""
    e = html.escape
    return f'<a href="{e(href)}"><code>{e(path)}</code></a>' if href else f"<code>{e(path)}</code>"


def _html_rows(rows: list[dict], cols: list[Column]) -> list[str]:
    e = html.escape
    body = []
    for r in rows:
        cells = []
        for c in cols:
            text = c.cell(r)
            cls = "n" if c.numeric else ("fail" if c.head.startswith("Parity vs") and text.startswith("FAIL") else
                                         "m" if c.head == "Machine" else "")
            cells.append(f'<td class="{cls}">{e(text)}</td>')
        body.append(f'<tr class="{"front" if r["on_pareto_front"] else ""}">{"".join(cells)}</tr>')
    return body


def html_page(doc: dict, pngs: dict[str, Optional[bytes]] | Optional[bytes], out_dir: Optional[Path] = None) -> str:
    e = html.escape
    if not isinstance(pngs, dict):
        pngs = {"plot": pngs, "batch_plot": None}
    many = len(doc["runs"]) > 1
    cols = _table_columns(doc)
    head = "".join(f"<th>{e(c.head)}</th>" for c in cols)
    body = _html_rows(doc["rows"], cols)
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>attnvgg latency vs accuracy</title>", f"<style>{_CSS}</style></head><body>",
             "<h1>Latency vs accuracy</h1>", f'<p class="note">Generated {e(doc["created"])} from '
             f'{len(doc["sources"])} result file(s)' + (f' of {len(doc["runs"])} runs' if many else "") + ".</p>"]
    for run in doc["runs"]:
        if many:
            parts.append(f"<h2>Run {e(_run_title(run, True))}</h2>")
        parts.append(_facts_html(run))
    parts.append('<div class="plots">')
    if pngs.get("plot") is not None:
        b64 = base64.b64encode(pngs["plot"]).decode("ascii")  # type: ignore[arg-type]
        parts.append(f'<img id="pareto" alt="p50 latency at batch {doc["plot"]["batch"]} against '
                     f'{e(doc["plot"]["y_label"])}, Pareto front marked" src="data:image/png;base64,{b64}">')
    else:
        parts.append(f'<p class="note">No latency-vs-accuracy plot: {e(doc["plot"]["why_none"] or "")}</p>')
    if pngs.get("batch_plot") is not None:
        b64 = base64.b64encode(pngs["batch_plot"]).decode("ascii")  # type: ignore[arg-type]
        parts.append(f'<img id="batches" alt="p50 latency per image against batch size" '
                     f'src="data:image/png;base64,{b64}">')
    parts.append("</div>")
    if doc["plot"]["batch"] is not None:
        parts.append(f'<p class="note" id="cpu-front">{e(cpu_front_line(doc))}</p>')
    if doc["random_weights"]:
        parts.append('<p class="note">Random weights: the first plot shows top-1 agreement with PyTorch fp32, not '
                     'accuracy (the data set\'s labels do not apply to this model).</p>')
    if doc["plot"]["left_out"] and pngs.get("plot") is not None:
        parts.append('<p class="note">Not plotted: ' + e("; ".join(doc["plot"]["left_out"])) + "</p>")
    notes = [f"Latency: end to end per batch, p50 / p90 / p99; img/s = batch / p50; spread = p99 / p50 "
             f"(\"noisy\" above {NOISY_SPREAD:g}). Rows on the Pareto front at batch {doc['plot']['batch']} are "
             "marked on the left.", f"Parity tolerance {TOLERANCE_RULE}."]
    if _marked(doc, cols):
        notes.append(FOOTNOTE)
    parts += [f'<div class="wide"><table id="results"><thead><tr>{head}</tr></thead><tbody>', *body,
              "</tbody></table></div>", *[f'<p class="note">{e(n)}</p>' for n in notes[:1] + notes[2:]]]
    if _variant_rows(doc):
        vcols = variant_columns(many)
        vhead = "".join(f"<th>{e(c.head)}</th>" for c in vcols)
        parts += ["<h2>Parity and precision per variant</h2>",
                  f'<div class="wide"><table id="variants"><thead><tr>{vhead}</tr></thead><tbody>',
                  *_html_rows(_variant_rows(doc), vcols), "</tbody></table></div>", f'<p class="note">{e(notes[1])}</p>']
    if doc["baseline_top1"] is None and not many:
        parts.append('<p class="note">No PyTorch fp32 top-1 in the inputs, so no drop is computed.</p>')
    chk = checks(doc)
    if chk:
        parts.append('<h2>Check and rebuild</h2><ul id="checks">')
        for c in chk:
            who = e(c["artifact"] + (f" @ {c['machine']}" if many else ""))
            if c["polygraphy"]:
                parts.append(f"<li><b>{who}</b>: <code>{e(c['polygraphy'])}</code> (from the folder {e(doc['base'])}/)</li>")
            if c["trtexec_script"]:
                parts.append(f"<li><b>{who}</b>: trtexec {_link(c['trtexec_script'], c['trtexec_href'])}</li>")
        parts.append("</ul>")
    parts.append('<h2>Skipped stages and runners</h2>')
    if doc["skipped"]:
        parts.append('<ul id="skipped">' + "".join(
            f"<li><b>{e(s['what'])}</b>: {e(s['reason'])}</li>" if s["what"] else f"<li>{e(s['reason'])}</li>"
            for s in doc["skipped"]) + "</ul>")
    else:
        parts.append('<p class="note">None.</p>')
    parts.append("<h2>Machines and versions</h2>")
    for run in doc["runs"]:
        title = f"<b>{e(_run_title(run, True))}</b>: " if many else ""
        mline = machine_line(run["machine"]) if run["machine"] else "No bench result, so no machine was recorded."
        parts.append(f'<p class="machine">{title}{e(mline)}</p>')
        parts.append(f'<p class="note versions">Versions: {e(versions_line(run["versions"]))}</p>')
    parts.append(f'<h2>Sources</h2><p class="note">Paths relative to the folder {e(doc["base"])}/.</p><ul class="note">'
                 + "".join(f"<li>{e(s)}</li>" for s in doc["sources"]) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
