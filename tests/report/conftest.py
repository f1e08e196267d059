"""FIXED result files, written by hand in the formats the stages write (not from a run).

bench: attnvgg.engines.bench; accuracy: attnvgg evaluate (AccuracyResult.to_dict plus
"artifact"); parity: ParityResult.to_dict; sidecars: export / fp16 convert / calibrate;
notes: the pipeline's skipped stages.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

MACHINE = {"cpu": {"model": "AMD EPYC 9R14", "logical_cores": 2, "physical_cores": 2, "usable_cores": 2},
           "gpu": None,
           "versions": {"python": "3.11.7", "attnvgg": "0.1.0", "torch": "2.13.0+cpu", "cuda": None,
                        "onnxruntime": "1.31.1", "onnx": "1.23.2", "numpy": "2.4.6", "tensorrt": None},
           "platform": "Linux", "date": "2026-11-21T10:00:00+00:00"}


def lat(p50: float, p99: float, mean: float) -> dict:
    return {"mean": mean, "std": 0.1, "min": p50 * 0.9, "max": p99 * 1.1, "p50": p50, "p90": (p50 + p99) / 2, "p99": p99}


def bench_row(artifact, runner, precision, batch, p50, p99, mean, flavour=None, size=None, device="cpu", compute=None):
    return {"artifact": artifact, "runner": runner, "backend": runner if not runner.startswith("pytorch") else "pytorch",
            "device": device, "precision": precision, "flavour": flavour, "size_bytes": size, "batch": batch,
            "input_shape": [batch, 3, 32, 32], "input_dtype": "float32", "threads": 2, "threads_source": "default",
            "warmup": 5, "iterations": 20, "seconds": 1.0, "timer": "host", "cuda_graphs": False,
            "latency_ms": lat(p50, p99, mean), "compute_ms": compute, "throughput_ips": batch / (mean / 1000),
            "notes": []}


def accuracy(artifact, runner, top1, top5, agreement=None, cosine=None, ref_top1=0.80):
    backend = "pytorch" if runner.startswith("pytorch") else runner
    ref = None if agreement is None else {"kind": "pytorch", "name": "pytorch fp32", "top1": ref_top1, "top5": 0.97,
                                          "top1_agreement": agreement, "mean_cosine": cosine, "min_cosine": cosine}
    return {"format": "attnvgg.accuracy/1", "artifacts": {},
            "artifact": artifact, "model": runner, "runner": {"name": runner, "backend": backend},
            "data": {"source": "builtin:val"}, "images": 200, "classes": 10, "topk": 5, "top1": top1, "top5": top5,
            "reference": ref, "seconds": 1.5, "notes": []}


def parity(artifact, precision, runner, max_abs_values):
    cases = [{"runner": runner, "inputs": "random", "batch": b, "output": "logits",
              "metrics": {"max_abs": m, "max_rel": m * 10, "mean_abs": m / 10, "min_cosine": 0.9999999,
                          "top1_agreement": 1.0}, "passed": True, "reasons": [], "seconds": 0.1}
             for b, m in zip((1, 3), max_abs_values)]
    return {"format": "attnvgg.parity/1", "artifacts": {},
            "artifact": artifact, "precision": precision,
            "tolerance": {"atol": 1e-4, "rtol": 1e-3, "min_cosine": 0.99999, "min_top1": 1.0},
            "cases": cases, "passed": True, "reference": {"backend": "pytorch"}, "locate": None, "skipped": []}


def sidecar(artifact, kind, precision, **facts):
    """A sidecar as attnvgg.sidecar.write writes it (the artifact itself is not in these folders)."""
    return {"format": f"attnvgg.{kind}/1", "kind": kind, "artifact": artifact, "artifact_sha256": "0" * 64,
            "precision": precision, **facts}


def write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1))


def write_results(root: Path) -> Path:
    """A run folder: bench, five evaluate results, one parity, four sidecars, the pipeline's notes."""
    run = root / "run"
    rows = [
        bench_row("pytorch", "pytorch-cpu", "fp32", 1, 10.0, 12.0, 10.0, size=2_000_000),
        bench_row("pytorch", "pytorch-cpu", "fp32", 8, 60.0, 70.0, 64.0, size=2_000_000),
        bench_row("run/model.onnx", "onnxruntime-cpu", "fp32", 1, 5.0, 6.0, 5.0, size=2_100_000),
        bench_row("run/model.onnx", "onnxruntime-cpu", "fp32", 8, 30.0, 33.0, 32.0, size=2_100_000),
        bench_row("run/model.onnx", "onnxruntime-cuda", "fp32", 1, 4.0, 4.5, 4.0, size=2_100_000, device="cuda",
                  compute=lat(1.5, 1.7, 1.5)),
        bench_row("run/model.fp16.onnx", "onnxruntime-cpu", "fp16", 1, 5.5, 7.0, 5.5, size=1_100_000),
        bench_row("run/model.fp16.onnx", "onnxruntime-cpu", "fp16", 8, 33.0, 36.0, 34.0, size=1_100_000),
        bench_row("run/model.int8.cpu.onnx", "onnxruntime-cpu", "int8", 1, 3.0, 4.0, 3.2, flavour="cpu", size=600_000),
        bench_row("run/model.int8.cpu.onnx", "onnxruntime-cpu", "int8", 8, 20.0, 22.0, 21.0, flavour="cpu",
                  size=600_000),
        bench_row("run/model.int8.trt.onnx", "onnxruntime-cpu", "int8", 1, 3.5, 4.2, 3.6, flavour="tensorrt",
                  size=610_000),
    ]
    write(run / "bench.json", {
        "format": "attnvgg.bench/1", "created": "2026-11-21T10:00:00+00:00",
        "spec": {"warmup": 5, "iterations": 20, "min_seconds": 1.0, "batches": [1, 8], "threads": None},
        "machine": MACHINE, "rows": rows,
        "skipped": [{"artifact": "run/model.int8.trt.engine", "runner": "tensorrt", "batch": None,
                     "reason": "the tensorrt package is not installed; install it with: pip install attnvgg[gpu]"}]})
    write(run / "pytorch.accuracy.json", accuracy("pytorch", "pytorch-cpu", 0.80, 0.97))
    write(run / "model.onnx.accuracy.json", accuracy("run/model.onnx", "onnxruntime-cpu", 0.80, 0.97, 1.0, 0.9999999))
    write(run / "model.fp16.onnx.accuracy.json",
          accuracy("run/model.fp16.onnx", "onnxruntime-cpu", 0.795, 0.97, 0.995, 0.99999))
    write(run / "model.int8.cpu.onnx.accuracy.json",
          accuracy("run/model.int8.cpu.onnx", "onnxruntime-cpu", 0.76, 0.95, 0.93, 0.998))
    write(run / "model.int8.trt.onnx.accuracy.json",
          accuracy("run/model.int8.trt.onnx", "onnxruntime-cpu", 0.79, 0.96, 0.97, 0.999))
    write(run / "parity" / "model.onnx.parity.json",
          parity("run/model.onnx", "fp32", "onnxruntime-cpu", [2.5e-7, 3.0e-7]))
    write(run / "model.onnx.json", sidecar("model.onnx", "export", "fp32", stage="export", seconds=7.5,
                                           model={}, preprocess=None, export={}))
    write(run / "model.fp16.onnx.json", sidecar("model.fp16.onnx", "fp16", "fp16", source="run/model.onnx",
                                                seconds=8.2, notes=[], keep_io_types=True, block_ops=[]))
    write(run / "model.int8.cpu.onnx.json", sidecar("model.int8.cpu.onnx", "int8", "int8", quant_format="qdq",
                                                    flavour="cpu", method="minmax", calibration_s=25.0, total_s=30.0,
                                                    source="run/model.onnx", notes=["a note"], exclusion={}))
    write(run / "model.int8.trt.onnx.json", sidecar("model.int8.trt.onnx", "int8", "int8", quant_format="qdq",
                                                    flavour="tensorrt", method="minmax", calibration_s=26.5,
                                                    total_s=31.0, source="run/model.onnx", notes=[], exclusion={}))
    write(run / "pipeline.json", {"format": "attnvgg.notes/1",
                                  "skipped": {"build": "tensorrt not installed: pip install \"attnvgg[gpu]\""}})
    return run


@pytest.fixture
def results_dir(tmp_path) -> Path:
    return write_results(tmp_path)
