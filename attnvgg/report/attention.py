"""The attention-map section of a report: agreement per precision and the overlays.

Reads ``explain.json`` files (format ``attnvgg-explain/...``, written by ``attnvgg explain`` and
the run's explain stage) and the PNGs beside them; renders a Markdown and an HTML section.
The HTML embeds the PNGs (the page stays one self-contained file); the Markdown links copies
placed in the report folder.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Iterable, Optional

from attnvgg.errors import InputError
from attnvgg.report.load import find_json

EXPLAIN_PREFIX = "attnvgg-explain/"


def find_explains(inputs: Iterable[Path]) -> list[tuple[Path, dict]]:
    """Every explain.json under the inputs (folders searched recursively), in path order."""
    out = []
    for p in find_json([Path(i) for i in inputs]):
        if p.name != "explain.json":
            continue
        try:
            data = json.loads(p.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"{p} is not valid JSON ({exc})", "rerun attnvgg explain") from exc
        if isinstance(data, dict) and str(data.get("format", "")).startswith(EXPLAIN_PREFIX):
            out.append((p, data))
    return out


def _f(v: Optional[float], fmt: str = ".4f") -> str:
    return "—" if v is None else format(v, fmt)


def summary(explains: list[tuple[Path, dict]]) -> list[dict]:
    """JSON-ready rows: one per explained model x variant."""
    rows = []
    for path, doc in explains:
        for variant, a in doc.get("agreement", {}).items():
            rows.append({"source": str(path), "attention": doc.get("model", {}).get("attention"),
                         "variant": variant, "images": a.get("images"), "min_cosine": a.get("min_cosine"),
                         "mean_cosine": a.get("mean_cosine"), "js_mean": a.get("js_mean"), "js_max": a.get("js_max")})
    return rows


def _table_rows(doc: dict) -> list[list[str]]:
    rows = []
    for variant, a in doc.get("agreement", {}).items():
        rows.append([variant, _f(a.get("min_cosine")), _f(a.get("mean_cosine")), _f(a.get("js_mean")),
                     _f(a.get("js_max"))])
    return rows


HEAD = ["variant", "cosine (worst image, worst map)", "cosine (mean)", "JS mean (softmax rows)", "JS max"]
NOTE = ("Agreement of each variant's attention tensors (Softmax of global attention, SE/CBAM Sigmoid gates, "
        "read where the next op reads them, i.e. after Q/DQ when quantized) with PyTorch fp32 on the same images. "
        "JS: Jensen-Shannon divergence, base 2 (0 = identical rows, 1 = disjoint). "
        "int8-cpu-qsoftmax is the deliberately broken case: the cpu flavour with nothing kept in float (--keep-float none), so the Softmax output is quantized too.")


def _label(doc: dict) -> str:
    att = doc.get("model", {}).get("attention")
    return ",".join(att) if isinstance(att, list) else "model"


def markdown_section(explains: list[tuple[Path, dict]], png_names: dict[Path, str]) -> str:
    if not explains:
        return ""
    lines = ["## Attention maps across precisions", "", NOTE, ""]
    for path, doc in explains:
        lines += [f"### attention {_label(doc)} ({len(doc.get('images', []))} images of {doc.get('data')})", "",
                  "| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
        lines += ["| " + " | ".join(r) + " |" for r in _table_rows(doc)]
        lines.append("")
        for img in doc.get("images", []):
            src = path.parent / str(img.get("png", ""))
            if src in png_names:
                lines.append(f"![image {img.get('index')}]({png_names[src]})")
        lines.append("")
    return "\n".join(lines)


def html_section(explains: list[tuple[Path, dict]]) -> str:
    if not explains:
        return ""
    e = html.escape
    parts = ['<h2 id="attention-maps">Attention maps across precisions</h2>', f'<p class="note">{e(NOTE)}</p>']
    for path, doc in explains:
        parts.append(f"<h3>attention {e(_label(doc))} ({len(doc.get('images', []))} images of {e(str(doc.get('data')))})</h3>")
        parts.append("<table class=\"maps\"><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in HEAD) + "</tr></thead><tbody>")
        for r in _table_rows(doc):
            parts.append("<tr>" + "".join(f'<td class="{"n" if i else ""}">{e(c)}</td>' for i, c in enumerate(r)) + "</tr>")
        parts.append("</tbody></table>")
        for img in doc.get("images", []):
            src = path.parent / str(img.get("png", ""))
            if src.is_file():
                b64 = base64.b64encode(src.read_bytes()).decode("ascii")
                parts.append(f'<img alt="attention maps of image {img.get("index")} per precision, overlaid on the input" '
                             f'src="data:image/png;base64,{b64}">')
    return "\n".join(parts) + "\n"


def png_copies(explains: list[tuple[Path, dict]]) -> dict[Path, str]:
    """Source PNG -> the name its copy gets in the report folder."""
    out: dict[Path, str] = {}
    for k, (path, doc) in enumerate(explains):
        for img in doc.get("images", []):
            src = path.parent / str(img.get("png", ""))
            if src.is_file():
                out[src] = f"attention-{k}-{src.name}"
    return out
