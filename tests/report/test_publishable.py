"""The publishable report: header, method, reproduce line, per-row parity and precision,
plots, versions, relative paths; and the merge of several machines' run folders."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from attnvgg.report import make_report
from attnvgg.report.facts import precision_summary
from attnvgg.report.plot import MIN_Y_SPAN, y_limits
from tests.conftest import run_cli
from tests.report.conftest import MACHINE, accuracy, bench_row, sidecar, write, write_results
from tests.report.test_report import md_rows

GPU_MACHINE = {**copy.deepcopy(MACHINE),
               "cpu": {"model": "AMD EPYC 7763", "logical_cores": 32, "physical_cores": 16, "usable_cores": 32},
               "gpu": {"name": "NVIDIA L4", "compute_capability": "8.9", "driver": "580.65", "count": 1}}
GPU_MACHINE["versions"] = {**MACHINE["versions"], "tensorrt": "10.13.0", "cuda": "12.8"}

EXPORT_SIDECAR = {
    **sidecar("model.onnx", "export", "fp32", preprocess=None, export={}), "stage": "export", "seconds": 7.5,
    "model": {"arch": "vgg16_attention", "attention": ["global", "se", "cbam"], "width": 0.125, "num_classes": 10,
              "input_size": 32, "in_channels": 3, "checkpoint": "/home/someone/ckpt/builtin.pt", "seed": 0,
              "gamma": None, "factory": None},
    "checkpoint_sha256": "a2b395773fa8c8bd656eece20681b4918d34e49551e61cfd81c124dea0f6b0b2",
    "torch": "2.13.0+cpu", "onnx": "1.23.2",
    "summary": {"op_counts": {"Conv": 13, "Gemm": 3, "MatMul": 2, "Softmax": 1, "Relu": 13}, "parameters": 2115699}}
INT8_SIDECAR = {
    **sidecar("model.int8.cpu.onnx", "int8", "int8"), "quant_format": "qdq", "flavour": "cpu", "method": "minmax",
    "calibration_s": 25.0,
    "source": "run/model.onnx", "images": 256, "data": {"source": "builtin:calib", "size": 256},
    "quantized_nodes": [{"name": f"c{i}", "op_type": "Conv"} for i in range(13)]
    + [{"name": f"g{i}", "op_type": "Gemm"} for i in range(3)] + [{"name": "r", "op_type": "Relu"}],
    "exclusion": {"preset": "attention", "nodes": [
        {"name": "sm", "op_type": "Softmax", "reason": "attention"},
        {"name": "mm0", "op_type": "MatMul", "reason": "attention"},
        {"name": "mm1", "op_type": "MatMul", "reason": "attention"}]}}


def full_run(root: Path, machine: dict = MACHINE, load=((0.4, 0.5, 0.6), (1.1, 0.8, 0.7))) -> Path:
    """The fixture run folder plus what `attnvgg run` adds: model sidecar, run record, load average."""
    run = write_results(root)
    write(run / "model.onnx.json", EXPORT_SIDECAR)
    write(run / "model.int8.cpu.onnx.json", INT8_SIDECAR)
    bench = json.loads((run / "bench.json").read_text())
    bench["machine"] = machine
    bench["load_average"] = {"before": list(load[0]), "after": list(load[1])}
    write(run / "bench.json", bench)
    (run / "config.toml").write_text("[model]\n")
    write(run / "notes.json", {"format": "attnvgg.notes/1", "skipped": {}, "preset_model": EXPORT_SIDECAR["model"],
                               "run": {"invocation": "attnvgg run --preset default", "config": "config.toml",
                                       "config_sha256": "c0ffee" * 10, "attnvgg": "0.1.0",
                                       "git_commit": "0123456789abcdef0123", "git_dirty": False}})
    parity = json.loads((run / "parity" / "model.onnx.parity.json").read_text())
    parity["polygraphy"] = {"command": f"polygraphy run {run}/model.onnx --onnxrt --load-inputs {run}/in.json "
                                       f"--load-outputs {run}/out.json --atol 0.0001 --rtol 0.001"}
    write(run / "parity" / "model.onnx.parity.json", parity)
    return run


def test_header_method_reproduce_versions(tmp_path):
    run = full_run(tmp_path)
    paths = make_report(run, tmp_path / "out")
    md = paths["markdown"].read_text()
    assert "Model: vgg16_attention (attention in blocks 3-5: global, se, cbam; width 0.125, 10 classes, 2.1 M parameters)" in md
    assert "Input: 32x32 px" in md and "Weights: trained: builtin.pt (sha256 a2b395773fa8)" in md
    assert "Accuracy data: builtin:val, 200 images" in md and "Calibration data: builtin:calib, 256 images" in md
    assert "Warm-up 5 runs, then at least 20 timed iterations and 1.0 s" in md
    assert "Load average (1 min) before the benches 0.40, after 1.10, on 2 usable cores." in md
    assert "Not noisy by the rule" in md                   # spreads <= 2 and load under the cores
    assert "Reproduce: `attnvgg run --config config.toml` (config sha256 c0ffeec0ffeec0ff; attnvgg 0.1.0, " \
           "git commit 0123456789ab)" in md
    assert "As run: `attnvgg run --preset default`" in md
    # the polygraphy line and sources are relative to the run folder, no machine's absolute paths
    assert "`polygraphy run model.onnx --onnxrt --load-inputs in.json --load-outputs out.json" in md
    assert str(tmp_path) not in md and str(tmp_path) not in paths["html"].read_text()
    assert str(tmp_path) not in paths["json"].read_text().replace(f'"polygraphy run {run}', "")
    assert "- parity/model.onnx.parity.json" in md
    doc = json.loads(paths["json"].read_text())
    v = doc["runs"][0]["versions"]
    assert v["onnx"] == "1.23.2" and v["onnxruntime"] == "1.31.1" and v["torch"] == "2.13.0+cpu"
    assert "versions: python 3.11.7, attnvgg 0.1.0, torch 2.13.0+cpu" in md


def test_noisy_flag_from_spread_and_from_load(tmp_path):
    run = full_run(tmp_path / "a", load=((3.5, 2, 1), (4.0, 2, 1)))          # 2 usable cores
    md = make_report(run, tmp_path / "oa")["markdown"].read_text()
    assert "NOISY: 1-minute load average up to 4.00 on 2 usable cores" in md
    run = full_run(tmp_path / "b")
    bench = json.loads((run / "bench.json").read_text())
    bench["rows"][0]["latency_ms"].update(p50=9.51, p99=437.0)                # the loaded re-run
    write(run / "bench.json", bench)
    doc = json.loads(make_report(run, tmp_path / "ob")["json"].read_text())
    assert doc["runs"][0]["method"]["noisy"] is True
    assert "p99/p50 above 2 for pytorch-cpu fp32" in doc["runs"][0]["method"]["noisy_reasons"][0]
    pt = md_rows((tmp_path / "ob" / "report.md").read_text())[("pytorch-cpu", "fp32", "pytorch")]
    assert pt["b1 spread p99/p50"] == "45.95 noisy" and pt["b1 img/s (p50)"] == "105"   # 1 / 9.51 ms, not the mean


def test_per_layer_precision_summary():
    chain = [INT8_SIDECAR, EXPORT_SIDECAR]
    s = precision_summary("int8", chain)
    assert (s["int8"], s["fp32"], s["fp16"]) == (16, 2, 0)
    assert s["text"] == "16 of 18 compute layers int8, 2 fp32; attention kept fp32: MatMul x2, Softmax x1"
    fp16 = precision_summary("fp16", [sidecar("m.fp16.onnx", "fp16", "fp16", block_ops=["MatMul"], keep_io_types=True),
                                      EXPORT_SIDECAR])
    assert fp16["text"] == "16 of 18 compute layers fp16, 2 fp32 (blocked: MatMul); fp32 inputs/outputs"
    assert precision_summary("fp32", [EXPORT_SIDECAR])["text"] == "all 18 compute layers fp32"
    assert precision_summary("int8", [{"precision": "int8"}]) is None          # no node lists: not guessed
    trt = precision_summary("int8", [{**INT8_SIDECAR, "high_precision": "fp16"}, EXPORT_SIDECAR])
    assert trt["text"] == "16 of 18 compute layers int8, 2 fp16; attention kept fp16: MatMul x2, Softmax x1"
    assert (trt["fp16"], trt["fp32"]) == (2, 0)


def test_report_rows_carry_the_precision_summary_and_parity_verdict(tmp_path):
    run = full_run(tmp_path)
    parity = json.loads((run / "parity" / "model.onnx.parity.json").read_text())
    parity["cases"][1].update(passed=False, reasons=["max abs 0.3 exceeds ..."])
    parity["passed"] = False
    write(run / "parity" / "model.onnx.parity.json", parity)
    paths = make_report(run, tmp_path / "out")
    variants = md_rows(paths["markdown"].read_text(), table=1)
    assert variants[("onnxruntime-cpu", "fp32", "model.onnx")]["Parity vs PyTorch"].startswith("FAIL · max abs")
    assert variants[("onnxruntime-cpu", "int8 (cpu)", "model.int8.cpu.onnx")]["Layers (Conv, Gemm, MatMul)"] == \
        "16 of 18 compute layers int8, 2 fp32; attention kept fp32: MatMul x2, Softmax x1"
    assert 'class="fail">FAIL' in paths["html"].read_text()


def test_footnote_only_with_its_mark(tmp_path):
    run = tmp_path / "r"
    write(run / "bench.json", {"format": "attnvgg.bench/1", "machine": MACHINE, "spec": {}, "rows": [
        bench_row("r/m.onnx", "onnxruntime-cpu", "fp32", 1, 2.0, 3.0, 2.0)], "skipped": []})
    write(run / "acc.json", accuracy("r/m.onnx", "onnxruntime-cpu", 0.5, 0.9))
    paths = make_report(run, tmp_path / "out")
    assert "†" not in paths["markdown"].read_text() and "†" not in paths["html"].read_text()
    paths = make_report(full_run(tmp_path / "f"), tmp_path / "out2")             # the CUDA row borrows: marked
    assert "† measured with another runner" in paths["html"].read_text()


def test_y_axis_is_never_zoomed_to_a_point():
    lo, hi = y_limits([88.4, 89.4])
    assert hi - lo >= MIN_Y_SPAN and lo <= 80.4 and hi <= 100.5       # a 1-point drop is a tenth of the height
    lo, hi = y_limits([0.0, 0.0])
    assert lo >= -0.5 and hi - lo >= MIN_Y_SPAN


def test_random_weights_plot_agreement_labelled(tmp_path):
    run = full_run(tmp_path)
    side = json.loads((run / "model.onnx.json").read_text())
    side["model"].update(checkpoint=None, gamma=0.5)
    write(run / "model.onnx.json", side)
    paths = make_report(run, tmp_path / "out")
    doc = json.loads(paths["json"].read_text())
    assert doc["random_weights"] and doc["plot"]["metric"] == "top1_agreement"
    assert doc["plot"]["y_label"] == "top-1 agreement with PyTorch fp32 (%)"
    md = paths["markdown"].read_text()
    assert "Weights: random (seed 0, gamma 0.5)" in md
    assert "top-1 against the data set's labels means nothing here" in md
    assert "Random weights: the first plot shows top-1 agreement" in paths["html"].read_text()


def test_latency_vs_batch_plot(tmp_path):
    paths = make_report(full_run(tmp_path), tmp_path / "out")
    png = paths["batch_plot"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert 'id="batches"' in paths["html"].read_text()


def test_trtexec_script_is_linked(tmp_path):
    run = full_run(tmp_path)
    write(run / "engines" / "model.fp16.engine.json",
          sidecar("model.fp16.engine", "engine", "fp16", tensorrt_version="10.13.0", gpu={"name": "NVIDIA L4"},
                  build_options={}, profiles={}, source=str(run / "model.fp16.onnx"), engine_bytes=5,
                  build_seconds=30.0, trtexec_script="model.fp16.engine.trtexec.sh"))
    bench = json.loads((run / "bench.json").read_text())
    bench["rows"].append(bench_row(str(run / "engines" / "model.fp16.engine"), "tensorrt", "fp16", 1, 1.0, 1.1, 1.0,
                                   device="cuda", compute=None))
    write(run / "bench.json", bench)
    paths = make_report(run, tmp_path / "out")
    page = paths["html"].read_text()
    assert '<a href="../run/engines/model.fp16.engine.trtexec.sh"><code>engines/model.fp16.engine.trtexec.sh</code></a>' in page
    assert "trtexec `engines/model.fp16.engine.trtexec.sh`" in paths["markdown"].read_text()


# ----------------------------------------------------------------------------- merge

def test_report_merges_two_machines_run_folders(tmp_path):
    run_a = full_run(tmp_path / "cpu-job")
    run_b = full_run(tmp_path / "l4-job", machine=GPU_MACHINE, load=((0.2, 0.2, 0.2), (0.9, 0.5, 0.3)))
    res = run_cli(["report", str(run_a), str(run_b), "--out", str(tmp_path / "merged")])
    assert res.exit_code == 0, res.output
    out = tmp_path / "merged"
    doc = json.loads((out / "report.json").read_text())
    assert [r["name"] for r in doc["runs"]] == ["cpu-job/run", "l4-job/run"]
    labels = [r["machine_label"] for r in doc["runs"]]
    assert labels == ["AMD EPYC 9R14 (2 cores)", "NVIDIA L4, TensorRT 10.13.0"]
    assert len(doc["rows"]) == 12 and {r["machine"] for r in doc["rows"]} == set(labels)
    md = (out / "report.md").read_text()
    rows = [ln for ln in md.splitlines() if ln.startswith("| ")]
    assert rows[0].startswith("| Machine | Runner |")
    assert sum(ln.startswith("| NVIDIA L4, TensorRT 10.13.0 |") for ln in rows) >= 6
    # each machine keeps its own method block and machine line
    assert "## Run cpu-job/run — AMD EPYC 9R14 (2 cores)" in md and "## Run l4-job/run — NVIDIA L4, TensorRT 10.13.0" in md
    assert "before the benches 0.40, after 1.10, on 2 usable cores" in md
    assert "before the benches 0.20, after 0.90, on 32 usable cores" in md
    assert "GPU NVIDIA L4 (compute capability 8.9, driver 580.65)" in md
    page = (out / "report.html").read_text()
    assert page.count('<dl class="facts">') == 2 and "NVIDIA L4, TensorRT 10.13.0" in page
    assert "- cpu-job/run/bench.json" in md                      # sources relative to the common folder
    # drops are against each run's own PyTorch baseline
    assert all(r["drop_points"] == pytest.approx(0.0) for r in doc["rows"] if r["artifact"] == "pytorch")


def test_merge_refuses_a_folder_without_results(tmp_path):
    run_a = full_run(tmp_path / "a")
    (tmp_path / "empty").mkdir()
    res = run_cli(["report", str(run_a), str(tmp_path / "empty"), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2 and "no result files" in res.output and str(tmp_path / "empty") in res.output
    assert not (tmp_path / "out").exists()
