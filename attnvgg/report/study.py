"""The study report: study.md, study.json, study.html and two plots, from ``study.json`` content.

Reads what the study's stages wrote (``attnvgg.study.collect`` gathers it); measures nothing.
Plots: top-1 against MACs per image (one point per variant, PyTorch fp32), and top-1 against
p50 latency at batch 1 (every variant x engine). The attention-map section is the run report's
(``attnvgg.report.attention``), one block per variant with attention.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Optional

from attnvgg.artifacts import atomic_files
from attnvgg.report.attention import html_section, markdown_section, png_copies

DASH = "—"
COLUMNS = ["variant", "engine / precision", "params (M)", "MMAC / image", "attention % of MACs",
           "GMAC full size @224", "attention % @224", "top-1 %", "drop vs fp32 (pts)", "top-1 agreement %",
           "p50 b1 ms", "p50 b8 ms", "parity vs PyTorch"]


def _f(v: Optional[float], fmt: str, scale: float = 1.0) -> str:
    return DASH if v is None else format(v * scale, fmt)


def table_rows(doc: dict) -> list[list[str]]:
    full = {m["variant"]: m.get("gmac_full_size") or {} for m in doc["models"]}
    out = []
    for r in doc["rows"]:
        f = full.get(r["variant"], {})
        out.append([r["variant"], r["engine"], _f(r["parameters"], ".3f", 1e-6), _f(r["gmac"], ".2f", 1e3),
                    _f(r["attention_share"], ".1f", 100), _f(f.get("gmac"), ".2f"), _f(f.get("attention_share"), ".1f", 100),
                    _f(r["top1"], ".1f", 100), _f(r["drop_points"], "+.1f") if r["key"] != "pytorch" else DASH,
                    _f(r["top1_agreement"], ".1f", 100), _f(r["p50_b1_ms"], ".2f"), _f(r["p50_b8_ms"], ".2f"),
                    _parity(r)])
    return out


def _parity(r: dict) -> str:
    p = r.get("parity")
    if p is None:
        return DASH
    if p:
        return "PASS"
    return "FAIL (" + ", ".join(f.split(":")[0] for f in r.get("parity_failed", [])) + ")"


_MARKERS = "osD^v<>Ph*X"


def _plot(points: list[tuple[float, float, str, str]], xlabel: str, title: str, logx: bool = False) -> bytes:
    """Scatter of (x, top-1 %, variant, engine key): colour = variant; with more than one engine
    key, marker = engine (legend) instead of a text label at every point, which overlap."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    fig = Figure(figsize=(8.2, 4.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    variants = list(dict.fromkeys(p[2] for p in points))
    keys = list(dict.fromkeys(p[3] for p in points))
    colours = {v: f"C{i % 10}" for i, v in enumerate(variants)}
    markers = {k: _MARKERS[i % len(_MARKERS)] for i, k in enumerate(keys)}
    for x, y, v, k in points:
        ax.scatter([x], [y], color=colours[v], marker=markers[k] if len(keys) > 1 else "o", s=30)
        if len(keys) == 1:
            ax.annotate(v, (x, y), textcoords="offset points", xytext=(5, 3), fontsize=7)
    if logx:
        from matplotlib.ticker import FormatStrFormatter

        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))     # 0.6, 1, 2 rather than 6x10^-1
        ax.xaxis.set_minor_formatter(FormatStrFormatter("%g"))
        ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.margins(x=0.08, y=0.12)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("top-1 % (built-in val)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    handles = [Line2D([], [], color=colours[v], marker="o", linestyle="", label=v) for v in variants]
    if len(keys) > 1:
        handles += [Line2D([], [], color="0.35", marker=markers[k], linestyle="", label=k) for k in keys]
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def plots(doc: dict) -> dict[str, bytes]:
    pts_gmac = [(m["gmac"]["gmac"] * 1e3, 100 * m["top1"], m["variant"], "pytorch fp32")
                for m in doc["models"] if m.get("top1") is not None]
    pts_lat = [(r["p50_b1_ms"], 100 * r["top1"], r["variant"], r.get("engine") or r["key"]) for r in doc["rows"]
               if r["p50_b1_ms"] is not None and r["top1"] is not None]
    out = {}
    if pts_gmac:
        out["study-top1-vs-gmac.png"] = _plot(pts_gmac, "MMAC per image (counted from the exported graph)",
                                              "top-1 (PyTorch fp32) vs MACs")
    if pts_lat:
        out["study-top1-vs-latency.png"] = _plot(pts_lat, "p50 latency at batch 1, ms (log scale)",
                                                 "top-1 vs latency, every variant x engine", logx=True)
    return out


def _claims_md(doc: dict) -> list[str]:
    lines = ["## Claims checked", ""]
    for c in doc["claims"]:
        lines.append(f"- **{c['claim']}**: {c['verdict']}. {c['text']}.")
    if doc.get("difficulty"):
        lines.append(f"- **data set**: {doc['difficulty']}")
    return lines + [""]


def markdown(doc: dict, png_names: dict[Path, str], plot_names: list[str]) -> str:
    lines = ["# Attention variant study", "", doc.get("intro", ""), ""]
    lines += _claims_md(doc)
    lines += ["## Variants x engines", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(r) + " |" for r in table_rows(doc)]
    lines += ["", doc.get("method", ""), ""]
    lines += [f"- {n}" for n in doc.get("notes", [])] + [""]
    for name in plot_names:
        lines.append(f"![{name}]({name})")
    lines.append("")
    explains = _explains(doc)
    lines.append(markdown_section(explains, png_names))
    return "\n".join(lines) + "\n"


def _explains(doc: dict) -> list[tuple[Path, dict]]:
    out = []
    for m in doc.get("attention_maps", []):
        p = Path(m["explain"])
        if p.is_file():
            out.append((p, json.loads(p.read_text())))
    return out


_CSS = """body{font-family:system-ui,sans-serif;margin:24px;max-width:1500px}
table{border-collapse:collapse;font-size:12px}th,td{border:1px solid #ccc;padding:3px 6px}
th{background:#f2f2f2}td.n{text-align:right}.note{color:#555;font-size:13px}img{max-width:100%}
li{margin-bottom:4px}"""


def html_page(doc: dict, plot_pngs: dict[str, bytes]) -> str:
    e = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8"><title>attnvgg attention variant study</title>',
             f"<style>{_CSS}</style></head><body>", "<h1>Attention variant study</h1>",
             f'<p class="note">{e(doc.get("intro", ""))}</p>', '<h2 id="claims">Claims checked</h2><ul>']
    for c in doc["claims"]:
        parts.append(f"<li><b>{e(c['claim'])}</b>: {e(c['verdict'])}. {e(c['text'])}.</li>")
    if doc.get("difficulty"):
        parts.append(f"<li><b>data set</b>: {e(doc['difficulty'])}</li>")
    parts.append("</ul><h2>Variants x engines</h2><table id=\"study\"><thead><tr>"
                 + "".join(f"<th>{e(c)}</th>" for c in COLUMNS) + "</tr></thead><tbody>")
    for r in table_rows(doc):
        parts.append("<tr>" + "".join(f'<td class="{"n" if i >= 2 else ""}">{e(c)}</td>' for i, c in enumerate(r)) + "</tr>")
    parts.append(f'</tbody></table><p class="note">{e(doc.get("method", ""))}</p>')
    for n in doc.get("notes", []):
        parts.append(f'<p class="note">{e(n)}</p>')
    for name, png in plot_pngs.items():
        parts.append(f'<img alt="{e(name)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">')
    parts.append(html_section(_explains(doc)))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def make_study_report(doc: dict, out_dir: Path | str) -> dict[str, Path]:
    """Write study.md/json/html, the plots and the overlay copies into ``out_dir`` together."""
    out = Path(out_dir)
    pngs = plots(doc)
    copies = png_copies(_explains(doc))
    texts = {"study.md": markdown(doc, copies, list(pngs)), "study.json": json.dumps(doc, indent=2, allow_nan=False) + "\n",
             "study.html": html_page(doc, pngs)}
    with atomic_files(out) as stage:
        for name, data in pngs.items():
            (stage / name).write_bytes(data)
        for src, name in copies.items():
            (stage / name).write_bytes(src.read_bytes())
        for name, text in texts.items():
            (stage / name).write_text(text)
    return {"markdown": out / "study.md", "json": out / "study.json", "html": out / "study.html",
            **{n: out / n for n in pngs}}
