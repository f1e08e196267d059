"""OpenVINO rows in the report beside ONNX Runtime's, and the Pareto front of the CPU engines
alone (FIXED result files in the stages' formats, tests/report/conftest.py)."""

from __future__ import annotations

import json

from attnvgg.report import make_report
from tests.report.conftest import MACHINE, accuracy, bench_row, write, write_results
from tests.report.test_report import md_rows


def _with_openvino(tmp_path):
    run = write_results(tmp_path)
    rows = [
        bench_row("run/model.onnx", "openvino-f32", "fp32", 1, 4.8, 5.5, 4.9, size=2_100_000),
        bench_row("run/model.onnx", "openvino-bf16", "bf16", 1, 2.5, 3.0, 2.6, size=2_100_000),
        bench_row("run/model.onnx", "openvino-bf16", "bf16", 8, 15.0, 16.0, 15.5, size=2_100_000),
        bench_row("run/model.int8.cpu.onnx", "openvino-bf16", "int8", 1, 1.9, 2.2, 2.0, flavour="cpu", size=600_000),
    ]
    for r in rows:
        r["backend"] = "openvino-cpu"
    write(run / "bench-openvino.json", {"format": "attnvgg.bench/1", "created": "2026-12-01T10:00:00+00:00",
                                        "spec": {}, "machine": MACHINE, "rows": rows, "skipped": []})
    write(run / "acc-ov-f32.json", accuracy("run/model.onnx", "openvino-f32", 0.80, 0.97, 1.0, 0.9999999))
    write(run / "acc-ov-bf16.json", accuracy("run/model.onnx", "openvino-bf16", 0.79, 0.97, 0.99, 0.9999))
    write(run / "acc-ov-int8.json", accuracy("run/model.int8.cpu.onnx", "openvino-bf16", 0.765, 0.95, 0.94, 0.998))
    return run


def _has(cells: dict, start: str) -> bool:
    """A latency cell ("p50 / ... ms") starting with ``start``: whatever the other columns are."""
    return any(str(c).startswith(start) for c in cells.values())


def test_openvino_rows_beside_onnxruntime_with_the_same_columns(tmp_path):
    paths = make_report(_with_openvino(tmp_path), tmp_path / "out")
    text = paths["markdown"].read_text()
    rows = md_rows(text)
    ort = rows[("onnxruntime-cpu", "fp32", "model.onnx")]
    ov = rows[("openvino-f32", "fp32", "model.onnx")]
    assert list(ov) == list(ort) and _has(ov, "4.80 / ") and "80.00" in ov.values()
    bf16 = rows[("openvino-bf16", "bf16", "model.onnx")]
    assert _has(bf16, "2.50 / ") and "79.00" in bf16.values()
    int8 = rows[("openvino-bf16", "int8 (cpu)", "model.int8.cpu.onnx")]
    assert _has(int8, "1.90 / ") and "76.50" in int8.values()
    doc = json.loads(paths["json"].read_text())
    by = {(r["runner"], r["artifact"], r["precision"]): r for r in doc["rows"]}
    r = by[("openvino-bf16", "model.onnx", "bf16")]
    assert r["latency"]["1"]["p50_ms"] == 2.5 and r["top1"] == 0.79 and abs(r["drop_points"] - 1.0) < 1e-9
    assert r["top1_agreement"] == 0.99 and r["accuracy_runner"] == "openvino-bf16"
    # ORT and OpenVINO rows of the same file sit next to each other
    order = [(x["runner"], x["artifact"]) for x in doc["rows"]]
    i = order.index(("onnxruntime-cpu", "model.onnx"))
    assert ("openvino-f32", "model.onnx") in order[i:i + 3]


def test_cpu_pareto_front_leaves_out_gpu_rows(tmp_path):
    paths = make_report(_with_openvino(tmp_path), tmp_path / "out")
    doc = json.loads(paths["json"].read_text())
    # CPU points (p50 ms, top-1): pytorch 10/.80, ORT fp32 5/.80, fp16 5.5/.795, int8 cpu 3/.76, int8 trt
    # 3.5/.79; OpenVINO f32 4.8/.80, bf16 2.5/.79, int8 1.9/.765 -> the front is OpenVINO's three
    assert doc["plot"]["cpu_pareto_front"] == ["openvino-bf16 int8 (cpu)", "openvino-bf16 bf16", "openvino-f32 fp32"]
    assert "onnxruntime-cuda fp32" in doc["plot"]["pareto_front"]        # on the overall front ...
    cuda = next(r for r in doc["rows"] if r["runner"] == "onnxruntime-cuda")
    assert cuda["on_pareto_front"] and not cuda["on_cpu_pareto_front"]  # ... never on the CPU one
    line = "CPU engines' Pareto front at batch 1: openvino-bf16 int8 (cpu), openvino-bf16 bf16, openvino-f32 fp32"
    assert line in paths["markdown"].read_text()
    assert line.replace("'", "&#x27;") in paths["html"].read_text()
    assert "on_cpu_pareto_front" in paths["csv"].read_text().splitlines()[0]
