"""The report from FIXED result files (tests/report/conftest.py), not from a run."""

from __future__ import annotations

import re

import base64
import csv
import io
import json
from pathlib import Path

import pytest

from attnvgg.errors import InputError
from attnvgg.report import make_report, pareto_front
from tests.conftest import error_line, run_cli
from tests.report.conftest import accuracy, bench_row, write

OUT_FILES = {"report.md", "report.json", "report.csv", "report.png", "latency-vs-batch.png", "report.html"}


def md_tables(text: str) -> list[list[str]]:
    tables, current = [], []
    for ln in text.splitlines() + [""]:
        if ln.startswith("|"):
            current.append(ln)
        elif current:
            tables.append(current)
            current = []
    return tables


def md_rows(text: str, table: int = 0) -> dict[tuple[str, str, str], list[str]]:
    """Markdown table (the first: latency and accuracy; the second: parity and precision)
    -> {(runner, precision, artifact): cells}."""
    lines = md_tables(text)[table]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    out = {}
    for ln in lines[2:]:
        # cells as a Markdown renderer reads them: split on unescaped pipes, backslash escapes undone
        cells = [re.sub(r"\\(.)", r"\1", c).strip() for c in re.split(r"(?<!\\)\|", ln.strip()[1:-1])]
        assert len(cells) == len(header)
        out[(cells[0], cells[1], cells[2])] = dict(zip(header, cells))
    return out


# ----------------------------------------------------------------------------- Pareto front

def test_pareto_front_hand_made():
    pts = [(10.0, 0.80),   # 0 dominated by 1 (slower, same accuracy)
           (5.0, 0.80),    # 1 front
           (5.5, 0.795),   # 2 dominated by 1
           (3.0, 0.76),    # 3 front (fastest)
           (3.5, 0.79),    # 4 front
           (3.5, 0.79),    # 5 tie with 4: identical points do not dominate each other
           (3.5, 0.70),    # 6 same latency as 4, less accurate: dominated
           (2.0, float("nan"))]  # 7 not a point
    assert pareto_front(pts) == [3, 4, 5, 1]
    assert pareto_front([]) == []
    assert pareto_front([(1.0, 0.5)]) == [0]
    assert pareto_front([(1.0, 0.5), (1.0, 0.9)]) == [1]


# ----------------------------------------------------------------------------- the table

def test_markdown_rows_and_values(results_dir, tmp_path):
    paths = make_report(results_dir, tmp_path / "out")
    assert {p.name for p in paths.values() if p} == OUT_FILES
    text = paths["markdown"].read_text()
    rows = md_rows(text)
    assert list(rows) == [
        ("pytorch-cpu", "fp32", "pytorch"),
        ("onnxruntime-cpu", "fp32", "model.onnx"),
        ("onnxruntime-cuda", "fp32", "model.onnx"),
        ("onnxruntime-cpu", "fp16", "model.fp16.onnx"),
        ("onnxruntime-cpu", "int8 (cpu)", "model.int8.cpu.onnx"),
        ("onnxruntime-cpu", "int8 (tensorrt)", "model.int8.trt.onnx"),
    ]
    pt = rows[("pytorch-cpu", "fp32", "pytorch")]
    assert pt["b1 p50 / p90 / p99 ms"] == "10.0 / 11.0 / 12.0" and pt["b1 img/s (p50)"] == "100"
    assert pt["b8 img/s (p50)"] == "133"                   # 8 / 60 ms p50, not 8 / 64 ms mean
    assert pt["b1 spread p99/p50"] == "1.20"
    assert pt["Top-1 %"] == "80.00" and pt["Drop vs PyTorch fp32 (pts)"] == "0.00"
    assert pt["Top-1 agreement %"] == "—" and pt["Parity vs PyTorch"] == "—" and pt["Build / calib. s"] == "—"
    fp32 = rows[("onnxruntime-cpu", "fp32", "model.onnx")]
    assert fp32["Parity vs PyTorch"] == "PASS · max abs 3.00e-07"          # the worst case of that runner
    variants = md_rows(text, table=1)
    assert ("pytorch-cpu", "fp32", "pytorch") not in variants
    v32 = variants[("onnxruntime-cpu", "fp32", "model.onnx")]
    assert v32["Parity vs PyTorch"] == "PASS · max abs 3.00e-07 · cos 1.000000 · top-1 100%"
    assert v32["Parity tolerance"] == "abs(a-ref) <= atol 0.0001 + rtol 0.001*abs(ref), cosine >= 0.99999, top-1 >= 100%"
    assert variants[("onnxruntime-cpu", "fp16", "model.fp16.onnx")]["Parity vs PyTorch"] == "—"   # not validated
    assert fp32["Top-1 agreement %"] == "100.00" and fp32["Build / calib. s"] == "7.5 (export)"
    assert fp32["Size MB"] == "2.1"
    cuda = rows[("onnxruntime-cuda", "fp32", "model.onnx")]
    assert cuda["b8 p50 / p90 / p99 ms"] == "—" and cuda["b8 img/s (p50)"] == "—"   # not benchmarked: not invented
    assert cuda["b1 GPU compute p50 ms"] == "1.50" and fp32["b1 GPU compute p50 ms"] == "—"
    assert "b8 GPU compute p50 ms" not in cuda                     # no row measured it at batch 8
    assert cuda["Top-1 %"] == "80.00†" and cuda["Parity vs PyTorch"].startswith("PASS† · max abs 3.00e-07")
    fp16 = rows[("onnxruntime-cpu", "fp16", "model.fp16.onnx")]
    assert fp16["Drop vs PyTorch fp32 (pts)"] == "0.50" and fp16["Parity vs PyTorch"] == "—"
    assert fp16["Build / calib. s"] == "8.2 (convert)"
    cpu8 = rows[("onnxruntime-cpu", "int8 (cpu)", "model.int8.cpu.onnx")]
    assert cpu8["Drop vs PyTorch fp32 (pts)"] == "4.00" and cpu8["Top-1 agreement %"] == "93.00"
    assert cpu8["Build / calib. s"] == "25.0 (calibrate)" and cpu8["Size MB"] == "0.6"
    trt8 = rows[("onnxruntime-cpu", "int8 (tensorrt)", "model.int8.trt.onnx")]
    assert trt8["Drop vs PyTorch fp32 (pts)"] == "1.00" and trt8["b1 p50 / p90 / p99 ms"] == "3.50 / 3.85 / 4.20"
    assert "† measured with another runner" in text
    assert "Pareto front at batch 1 (p50 latency vs top-1 accuracy (%)): onnxruntime-cpu int8 (cpu), " \
           "onnxruntime-cpu int8 (tensorrt), onnxruntime-cuda fp32" in text


def test_json_and_csv(results_dir, tmp_path):
    paths = make_report(results_dir, tmp_path / "out")
    doc = json.loads(paths["json"].read_text())
    assert doc["format"] == "attnvgg.report/1" and doc["batches"] == [1, 8] and doc["baseline_top1"] == 0.80
    assert doc["plot"]["batch"] == 1
    by_label = {(r["label"], r["artifact"]): r for r in doc["rows"]}
    cpu8 = by_label[("onnxruntime-cpu int8 (cpu)", "model.int8.cpu.onnx")]
    assert cpu8["drop_points"] == pytest.approx(4.0) and cpu8["top1"] == 0.76 and cpu8["on_pareto_front"]
    assert cpu8["latency"]["8"]["p50_ms"] == 20.0 and cpu8["prep_kind"] == "calibrate"
    cuda = by_label[("onnxruntime-cuda fp32", "model.onnx")]
    assert cuda["accuracy_runner"] == "onnxruntime-cpu" and cuda["latency"]["1"]["compute_p50_ms"] == 1.5
    assert "8" not in cuda["latency"]
    pt = by_label[("pytorch-cpu fp32", "pytorch")]
    assert pt["top1_agreement"] is None and not pt["on_pareto_front"]
    assert [s["what"] for s in doc["skipped"]] == ["bench run/model.int8.trt.engine on tensorrt", "build"]
    assert doc["machines"][0]["cpu"]["model"] == "AMD EPYC 9R14"

    table = list(csv.DictReader(io.StringIO(paths["csv"].read_text())))
    assert len(table) == len(doc["rows"]) == 6
    c = {(r["label"], r["artifact"]): r for r in table}
    assert float(c[("onnxruntime-cpu fp16", "model.fp16.onnx")]["drop_points"]) == pytest.approx(0.5)
    assert c[("onnxruntime-cuda fp32", "model.onnx")]["p50_ms_b8"] == ""          # missing: empty, not 0
    assert c[("pytorch-cpu fp32", "pytorch")]["parity_max_abs"] == ""
    assert float(c[("onnxruntime-cpu fp32", "model.onnx")]["parity_max_abs"]) == pytest.approx(3e-7)


def test_html_has_plot_table_skips_and_machine(results_dir, tmp_path):
    paths = make_report(results_dir, tmp_path / "out")
    page = paths["html"].read_text()
    b64 = page.split('src="data:image/png;base64,', 1)[1].split('"', 1)[0]
    png = base64.b64decode(b64)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png == paths["plot"].read_bytes()
    results = page.split('<table id="results">', 1)[1].split("</table>", 1)[0]
    assert results.count("<tr class=") == 6
    variants = page.split('<table id="variants">', 1)[1].split("</table>", 1)[0]
    assert variants.count("<tr class=") == 5                          # every row but PyTorch
    assert "<td class=\"n\">25.0 (calibrate)</td>" in page
    assert "tensorrt not installed: pip install &quot;attnvgg[gpu]&quot;" in page     # the pipeline's skipped build
    assert "the tensorrt package is not installed" in page                          # the bench's skipped runner
    assert "AMD EPYC 9R14" in page and "onnxruntime 1.31.1" in page
    assert "http://" not in page and "https://" not in page                          # self-contained


def test_report_ignores_its_own_output_and_unknown_json(results_dir):
    out = results_dir / "report"
    make_report(results_dir, out)
    (results_dir / "config.json").write_text(json.dumps({"something": "else"}))
    doc = json.loads(make_report(results_dir, out)["json"].read_text())
    assert "report/report.json" in doc["ignored"] and "config.json" in doc["ignored"]        # relative to the run
    assert len(doc["rows"]) == 6


def test_explicit_files_and_no_bench(tmp_path):
    """Accuracy only: a table with no latency, no plot (and the page says why)."""
    a = tmp_path / "a.json"
    write(a, accuracy("m.int8.onnx", "onnxruntime-cpu", 0.7, 0.9, 0.9, 0.99))
    paths = make_report([a], tmp_path / "out")
    assert paths["plot"] is None and not (tmp_path / "out" / "report.png").exists()
    rows = md_rows(paths["markdown"].read_text())
    assert list(rows) == [("pytorch", "fp32", "pytorch"), ("onnxruntime-cpu", "—", "m.int8.onnx")]
    base, row = rows.values()
    assert base["Top-1 %"] == "80.00†" and not any("ms" in k for k in base)   # no bench: no latency columns
    assert row["Top-1 %"] == "70.00" and row["Drop vs PyTorch fp32 (pts)"] == "10.00"
    assert row["Precision"] == "—" and row["Size MB"] == "—"                  # no sidecar, no file: unknown
    assert "No latency-vs-accuracy plot" in paths["html"].read_text()


def test_paths_spelled_differently_are_merged(tmp_path):
    """The bench named ./runs/x/m.onnx, evaluate an absolute path: one row."""
    run = tmp_path / "runs" / "x"
    write(run / "bench.json", {"format": "attnvgg.bench/1", "machine": {}, "rows": [
        bench_row("runs/x/m.onnx", "onnxruntime-cpu", "fp32", 1, 2.0, 3.0, 2.0)], "skipped": []})
    write(run / "acc.json", accuracy(str(run / "m.onnx"), "onnxruntime-cpu", 0.5, 0.9))
    doc = json.loads(make_report(run, tmp_path / "out")["json"].read_text())
    (row,) = doc["rows"]
    assert row["top1"] == 0.5 and row["latency"]["1"]["p50_ms"] == 2.0 and row["on_pareto_front"]


def test_percent_accuracies_are_read_as_percent(tmp_path):
    write(tmp_path / "a.json", {"format": "attnvgg.accuracy/1", "artifact": "m.onnx", "runner": "onnxruntime-cpu",
                                "top1": 71.5, "top5": 90,
                                "top1_agreement": 0.99, "samples": 100})
    doc = json.loads(make_report(tmp_path, tmp_path / "out")["json"].read_text())
    assert doc["rows"][0]["top1"] == pytest.approx(0.715) and doc["rows"][0]["top5"] == pytest.approx(0.9)


# ----------------------------------------------------------------------------- bad input

def _setup_bad(kind: str, tmp_path: Path) -> Path:
    if kind == "missing":
        return tmp_path / "nope"
    d = tmp_path / "res"
    d.mkdir()
    if kind == "unrelated":
        (d / "config.json").write_text('{"a": 1}')
        (d / "notes.txt").write_text("hello")
    if kind == "malformed":
        write(d / "bench.json", {"format": "attnvgg.bench/1", "machine": {}, "rows": [
            bench_row("m.onnx", "onnxruntime-cpu", "fp32", 1, 2.0, 3.0, 2.0)], "skipped": []})
        (d / "acc.json").write_text('{"top1": 0.5, ')
    return d


@pytest.mark.parametrize("kind, words", [("missing", "not found"), ("empty", "no result files"),
                                         ("unrelated", "no result files"), ("malformed", "not valid JSON")])
def test_bad_inputs_exit_2_and_no_report(tmp_path, kind, words):
    src = _setup_bad(kind, tmp_path)
    out = tmp_path / "out"
    res = run_cli(["report", str(src), "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert words in error_line(res)
    assert not out.exists() or not any(out.iterdir())
    with pytest.raises(InputError):
        make_report(src, out)


def test_bad_plot_batch(results_dir, tmp_path):
    res = run_cli(["report", str(results_dir), "--out", str(tmp_path / "out"), "--plot-batch", "4"])
    assert res.exit_code == 2 and "--plot-batch 4" in error_line(res)
    assert not (tmp_path / "out").exists()


def test_cli_report_prints_table(results_dir, tmp_path):
    res = run_cli(["report", str(results_dir), "--out", str(tmp_path / "out"), "--plot-batch", "8"])
    assert res.exit_code == 0, res.output
    assert "| onnxruntime-cpu | int8 (cpu) | model.int8.cpu.onnx |" in res.output
    doc = json.loads((tmp_path / "out" / "report.json").read_text())
    assert doc["plot"]["batch"] == 8
    # at batch 8 the CUDA and int8 (tensorrt) rows have no latency: not plotted, and said so
    assert len(doc["plot"]["left_out"]) == 2


def test_calibration_time_says_when_ranges_came_from_the_cache():
    from attnvgg.report.table import _prep

    assert _prep([{"precision": "int8", "calibration_s": 12.5, "cache": {"hit": False}}]) == (12.5, "calibrate")
    assert _prep([{"precision": "int8", "calibration_s": 0.0, "cache": {"hit": True}}]) == (0.0, "calibrate, cached ranges")


def test_information_only_parity_cases_never_decide_the_verdict(tmp_path):
    """INT8 is gated on image inputs: a failing random-input case (gated: false) leaves PASS, as
    validate's exit code does, and the cell says it is there; a failing gated case is FAIL."""
    from tests.report.conftest import parity

    run = tmp_path / "run"
    p = parity("m.int8.onnx", "int8", "onnxruntime-cpu", [0.2, 0.3])
    p["tolerance"] = {"atol": None, "rtol": None, "min_cosine": 0.98, "min_top1": 0.8, "random_inputs": "info"}
    p["cases"][0]["metrics"].update(max_abs=0.9, min_cosine=0.4)
    p["cases"][0].update(passed=False, gated=False, reasons=["cosine 0.4 < 0.98"])
    p["cases"][1]["inputs"] = "builtin:val"
    write(run / "parity.json", p)
    write(run / "acc.json", accuracy("m.int8.onnx", "onnxruntime-cpu", 0.7, 0.9, 0.9, 0.99))
    rows = md_rows(make_report(run, tmp_path / "out")["markdown"].read_text(), table=1)
    (cell,) = rows.values()
    assert cell["Parity vs PyTorch"].startswith("PASS · max abs 3.00e-01")            # the gated case's figures
    assert "1 information-only case (random inputs) outside tolerance" in cell["Parity vs PyTorch"]
    assert cell["Parity tolerance"].startswith("cosine >= 0.98, top-1 >= 80%, gated on image inputs")
    p["cases"][1].update(passed=False, reasons=["cosine 0.9 < 0.98"])
    p["passed"] = False
    write(run / "parity.json", p)
    rows = md_rows(make_report(run, tmp_path / "out2")["markdown"].read_text(), table=1)
    (cell,) = rows.values()
    assert cell["Parity vs PyTorch"].startswith("FAIL")
