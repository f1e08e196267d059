"""The latency bench on a tiny ONNX export and the tiny PyTorch model (few iterations).

Timing values are not asserted (2 shared cores); their structure is: the keys, percentile
order, throughput = batch / mean, the thread count, skipped runners with reasons.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from attnvgg import sidecar
from attnvgg.errors import InputError
from attnvgg.config import BenchSpec, ModelSpec
from attnvgg.engines import bench
from attnvgg.models.build import build_model
from tests.conftest import error_line, run_cli

TINY = ModelSpec(width=1 / 16, input_size=32, num_classes=10, attention=["global"] * 3, gamma=0.5)
FAST = dict(warmup=1, iterations=4, min_seconds=0.0)
ROW_KEYS = {"artifact", "runner", "backend", "device", "precision", "flavour", "size_bytes", "batch", "input_shape",
            "input_dtype", "threads", "threads_source", "warmup", "iterations", "seconds", "timer", "cuda_graphs",
            "latency_ms", "compute_ms", "throughput_ips", "throughput_p50_ips", "notes"}
STAT_KEYS = {"mean", "std", "min", "max", "p50", "p90", "p99"}


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    """torch.onnx.export of VGG16WithAttention(10, width=1/16) at 32x32 with a dynamic batch."""
    import warnings

    from torch.export import Dim

    from attnvgg.models.vgg import VGG16WithAttention

    path = tmp_path_factory.mktemp("bench") / "tiny.onnx"
    torch.manual_seed(0)
    model = VGG16WithAttention(10, width=1 / 16).eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(2, 3, 32, 32),), str(path), dynamo=True, input_names=["input"],
                          output_names=["logits"], dynamic_shapes=({0: Dim("batch", min=1, max=16)},),
                          external_data=False, verbose=False)
    return path


def _check_row(row: dict, batch: int) -> None:
    assert set(row) == ROW_KEYS
    assert row["batch"] == batch and row["input_shape"][0] == batch
    lat = row["latency_ms"]
    assert set(lat) == STAT_KEYS
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert lat["min"] <= lat["mean"] <= lat["max"]
    assert row["throughput_ips"] == pytest.approx(batch / (lat["mean"] / 1000.0))
    assert row["throughput_p50_ips"] == pytest.approx(batch / (lat["p50"] / 1000.0))
    assert row["iterations"] >= FAST["iterations"]


def test_latency_stats_known_values():
    s = bench.latency_stats([5.0, 1.0, 3.0, 2.0, 4.0])
    assert s["p50"] == 3.0 and s["min"] == 1.0 and s["max"] == 5.0 and s["mean"] == 3.0
    assert s["p90"] == pytest.approx(4.6) and s["p99"] == pytest.approx(4.96)
    assert s["std"] == pytest.approx(np.std([1, 2, 3, 4, 5], ddof=1))
    assert bench.latency_stats([2.0])["std"] == 0.0


def test_measure_by_count_and_by_time():
    calls = []

    def step():
        calls.append(1)
        return 0.5, None

    e2e, comp, _ = bench.measure(step, BenchSpec(warmup=3, iterations=7, min_seconds=0.0))
    assert len(e2e) == 7 and len(calls) == 10 and comp is None   # warm-up runs are not timed

    e2e, _, seconds = bench.measure(step, BenchSpec(warmup=0, iterations=0, min_seconds=0.05))
    assert seconds >= 0.05 and len(e2e) >= 1


def test_bench_onnx_and_pytorch(tiny_onnx, tmp_path):
    out = tmp_path / "bench.json"
    threads_before = torch.get_num_threads()
    spec = BenchSpec(batches=[1, 4], threads=1, **FAST)
    res = bench.bench_artifacts(["pytorch", str(tiny_onnx)], spec, model_spec_for_pytorch=TINY, out_json=out)
    assert torch.get_num_threads() == threads_before          # restored after the PyTorch baseline
    assert json.loads(out.read_text()) == json.loads(json.dumps(res))
    assert res["format"] == bench.BENCH_FORMAT and res["skipped"] == []
    load = res["load_average"]                      # the machine's load around the bench, for the report
    assert len(load["before"]) == 3 and len(load["after"]) == 3 and all(v >= 0 for v in load["after"])
    assert res["spec"]["threads"] == 1 and res["spec"]["batches"] == [1, 4]
    rows = res["rows"]
    assert [(r["runner"], r["batch"]) for r in rows] == [("pytorch-cpu", 1), ("pytorch-cpu", 4),
                                                         ("onnxruntime-cpu", 1), ("onnxruntime-cpu", 4)]
    for r in rows:
        _check_row(r, r["batch"])
        assert r["threads"] == 1 and r["threads_source"] == "set"
        assert r["device"] == "cpu" and r["timer"] == "host" and r["compute_ms"] is None
        assert r["precision"] == "fp32" and r["flavour"] is None
    torch_rows = [r for r in rows if r["backend"] == "pytorch"]
    assert all(r["artifact"] == "pytorch" for r in torch_rows)
    n_params = sum(p.numel() for p in build_model(TINY).parameters())
    assert torch_rows[0]["size_bytes"] >= 4 * n_params
    assert rows[2]["size_bytes"] == tiny_onnx.stat().st_size
    m = res["machine"]
    assert m["cpu"]["logical_cores"] >= 1 and m["versions"]["torch"] == torch.__version__
    assert m["versions"]["onnxruntime"] and "date" in m and "gpu" in m


def test_ort_default_threads_recorded(tiny_onnx):
    rows = bench.bench_artifacts([str(tiny_onnx)], BenchSpec(batches=[2], **FAST))["rows"]
    assert rows[0]["threads_source"] == "default" and rows[0]["threads"] >= 1


def test_bench_runner_direct(tiny_onnx):
    from attnvgg.runners.onnxruntime import OnnxRuntimeRunner

    runner = OnnxRuntimeRunner(tiny_onnx)
    rows = bench.bench_runner(runner, [3], BenchSpec(threads=2, **FAST), (3, 32, 32), row_meta={"artifact": "x"})
    assert runner.threads == 2 and not runner.is_active          # applied before activation; released after
    _check_row(rows[0], 3)
    assert rows[0]["artifact"] == "x" and rows[0]["threads"] == 2


def _helper_onnx(path: Path, precision: str, batch) -> Path:
    from tests.engines.trt.conftest import make_onnx

    return make_onnx(path, precision=precision, batch=batch, hw=8)


def test_static_batch_skipped_and_precision_from_graph(tmp_path):
    static = _helper_onnx(tmp_path / "static.onnx", "fp32", 2)
    res = bench.bench_artifacts([str(static)], BenchSpec(batches=[1, 2], **FAST))
    assert [r["batch"] for r in res["rows"]] == [2]
    (skip,) = res["skipped"]
    assert skip["batch"] == 1 and "static batch of 2" in skip["reason"]
    for precision in ("fp16", "int8"):
        p = _helper_onnx(tmp_path / f"m.{precision}.onnx", precision, "batch")
        (row,) = bench.bench_artifacts([str(p)], BenchSpec(batches=[1], **FAST))["rows"]
        assert row["precision"] == precision


def test_flavour_from_sidecar(tmp_path):
    p = _helper_onnx(tmp_path / "m.int8.onnx", "int8", "batch")
    sidecar.write(p, "int8", {"flavour": "cpu", "method": "minmax", "exclusion": {}})
    (row,) = bench.bench_artifacts([str(p)], BenchSpec(batches=[1], **FAST))["rows"]
    assert (row["precision"], row["flavour"]) == ("int8", "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
def test_cuda_runners_skipped_with_reason(tiny_onnx):
    res = bench.bench_artifacts(["pytorch", str(tiny_onnx)], BenchSpec(batches=[1], providers=["cpu", "cuda"], **FAST),
                                model_spec_for_pytorch=TINY)
    assert {r["runner"] for r in res["rows"]} == {"pytorch-cpu", "onnxruntime-cpu"}
    reasons = {s["runner"]: s["reason"] for s in res["skipped"]}
    assert "no CUDA GPU" in reasons["pytorch-cuda"]
    assert "CUDAExecutionProvider" in reasons["onnxruntime-cuda"]


def test_engine_without_tensorrt_skipped(tmp_path):
    from attnvgg.runners.tensorrt import tensorrt_available

    ok, _ = tensorrt_available()
    if ok:
        pytest.skip("TensorRT and a GPU are present: the engine would be run, not skipped")
    eng = tmp_path / "m.engine"
    eng.write_bytes(b"not an engine")
    res = bench.bench_artifacts([str(eng)], BenchSpec(batches=[1], **FAST))
    assert res["rows"] == []
    (skip,) = res["skipped"]
    assert skip["runner"] == "tensorrt" and skip["reason"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_pytorch_compute_and_end_to_end(tmp_path):
    spec = BenchSpec(batches=[1, 4], providers=["cuda"], cuda_graphs=True, **FAST)
    res = bench.bench_artifacts(["pytorch"], spec, model_spec_for_pytorch=TINY)
    for r in res["rows"]:
        _check_row(r, r["batch"])
        assert r["device"] == "cuda" and r["timer"] == "cuda-events"
        assert r["compute_ms"]["p50"] <= r["latency_ms"]["p50"]
    assert res["machine"]["gpu"]["name"]


# ----------------------------------------------------------------------------- CLI

TINY_ARGS = ["--width", "0.0625", "--input-size", "32", "--num-classes", "10", "--gamma", "0.5"]


def test_cli_bench_table_and_json(tiny_onnx, tmp_path):
    out = tmp_path / "b.json"
    res = run_cli(["bench", str(tiny_onnx), "--pytorch", *TINY_ARGS, "--batches", "1,2", "--threads", "1",
                   "--iterations", "3", "--min-seconds", "0", "--warmup", "1", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "pytorch-cpu" in res.output and "onnxruntime-cpu" in res.output and "p99 ms" in res.output
    data = json.loads(out.read_text())
    assert len(data["rows"]) == 4 and all(r["threads"] == 1 for r in data["rows"])
    assert all(r["iterations"] == 3 for r in data["rows"])


def test_pytorch_baseline_needs_a_model_spec():
    # on the command line the built-in model is the default (as for every command); the API still refuses
    with pytest.raises(InputError, match="model spec"):
        bench.bench_artifacts(["pytorch"], BenchSpec(batches=[1], **FAST), None)


@pytest.mark.parametrize("args, words", [
    (["bench"], "nothing to bench"),
    (["bench", "missing.onnx"], "not found"),
    (["bench", "{onnx}", "--iterations", "0", "--min-seconds", "0"], "nothing would be timed"),
    (["bench", "{onnx}", "--batches", "0,2"], "positive"),
    (["bench", "{onnx}", "--batches", "a"], "integers"),
    (["bench", "{onnx}", "--threads", "0"], "threads"),
    (["bench", "{txt}"], "neither an ONNX"),
])
def test_cli_bench_bad_inputs(tiny_onnx, tmp_path, args, words):
    txt = tmp_path / "model.txt"
    txt.write_text("x")
    out = tmp_path / "b.json"
    args = [a.format(onnx=tiny_onnx, txt=txt) for a in args] + ["--json", str(out)]
    res = run_cli(args, cwd=tmp_path)
    assert res.exit_code == 2, res.output
    assert words in error_line(res)
    assert not out.exists()
