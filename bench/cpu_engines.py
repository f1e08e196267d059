"""Every CPU engine on the full-size model at 224 px, in one process: p50 latency, the ratio to
PyTorch eager fp32, and top-1 agreement with PyTorch fp32.

    python bench/cpu_engines.py [--run-dir runs/vgg16-224] [--batches 1,8] [--threads 2]
                                [--iterations 20] [--agreement-images 64] [--json out.json]

Engines: PyTorch eager fp32; ONNX Runtime CPU on model.sim.onnx (fp32), model.int8.onnx (INT8,
tensorrt flavour) and model.int8-cpu.onnx (INT8, cpu flavour); OpenVINO on the same files, f32
and bf16 (bf16 only where the CPU reports it; the INT8 files with f32 and with bf16 for their
float parts). Missing files are made first with the run's own stage functions (export,
simplify, calibrate of the vgg16-224 preset), so the figures are of attnvgg's files.

Timing goes through attnvgg.engines.bench.bench_runner (warm-up, then at least --iterations
runs and --min-seconds), one engine at a time, so no two engines share the cores. Top-1
agreement is measured on the first --agreement-images images of builtin:val preprocessed for
224 px, against PyTorch eager fp32 logits of the same images. The machine is recorded,
with the load average before and after: on a shared machine compare ratios from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attnvgg.config import BenchSpec
from attnvgg.engines.bench import bench_runner
from attnvgg.machine import machine_info
from attnvgg.pipeline import Paths, effective_config, run_pipeline


@dataclass
class Engine:
    label: str          # what the table shows
    artifact: str       # "pytorch" or a file variant of Paths.variant
    provider: str       # factory provider ("cpu", "openvino", "openvino-bf16"); pytorch: "cpu"


ENGINES = [
    Engine("PyTorch eager fp32", "pytorch", "cpu"),
    Engine("ONNX Runtime fp32", "fp32", "cpu"),
    Engine("ONNX Runtime INT8 (tensorrt flavour)", "int8-tensorrt", "cpu"),
    Engine("ONNX Runtime INT8 (cpu flavour)", "int8-cpu", "cpu"),
    Engine("OpenVINO f32", "fp32", "openvino"),
    Engine("OpenVINO bf16", "fp32", "openvino-bf16"),
    Engine("OpenVINO INT8 (cpu flavour), f32", "int8-cpu", "openvino"),
    Engine("OpenVINO INT8 (cpu flavour), bf16", "int8-cpu", "openvino-bf16"),
    Engine("OpenVINO INT8 (tensorrt flavour), f32", "int8-tensorrt", "openvino"),
    Engine("OpenVINO INT8 (tensorrt flavour), bf16", "int8-tensorrt", "openvino-bf16"),
]


def make_artifacts(run_dir: Path) -> Paths:
    """The vgg16-224 preset's fp32 and both INT8 files in ``run_dir`` (made if missing)."""
    cfg = effective_config("vgg16-224", None, [f'run.out="{run_dir}"',
                                               'run.variants=["fp32", "int8-tensorrt", "int8-cpu"]'])
    paths = Paths(run_dir)
    if not all(paths.variant(v).is_file() for v in ("fp32", "int8-tensorrt", "int8-cpu")):
        print(f"making the full-size files in {run_dir} (attnvgg run --preset vgg16-224 --stages export,simplify,calibrate)",
              flush=True)
        run_pipeline(cfg, ["export", "simplify", "calibrate"], echo=lambda s: print(s, flush=True))
    return paths


def open_engine(e: Engine, paths: Paths, threads: int):
    from attnvgg.runners.factory import open_runner

    cfg = effective_config("vgg16-224")
    if e.artifact == "pytorch":
        return open_runner(None, model_spec=cfg.model)
    return open_runner(paths.variant(e.artifact), provider=e.provider, threads=threads)


def agreement_inputs(n: int) -> np.ndarray:
    from attnvgg.data import open_dataset

    cfg = effective_config("vgg16-224")
    xs = [x for x, _ in open_dataset("builtin:val", cfg.preprocess).iter_batches(8, limit=n)]
    return np.concatenate(xs)


def logits(runner, x: np.ndarray, batch: int = 8) -> np.ndarray:
    name = runner.input_metadata()[0].name
    outs = [next(iter(runner.infer({name: x[i:i + batch]}).values())) for i in range(0, len(x), batch)]
    return np.concatenate(outs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", default="runs/vgg16-224")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--min-seconds", type=float, default=0.0)
    ap.add_argument("--agreement-images", type=int, default=64)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]

    import torch

    from attnvgg.errors import MissingDependency
    from attnvgg.runners.openvino import unavailable_reason

    torch.set_num_threads(args.threads)
    paths = make_artifacts(Path(args.run_dir))
    spec = BenchSpec(warmup=args.warmup, iterations=args.iterations, min_seconds=args.min_seconds,
                     batches=batches, threads=args.threads)
    machine = machine_info()
    load0 = os.getloadavg()
    x_agree = agreement_inputs(args.agreement_images)
    print(f"full-size VGG16WithAttention (width 1.0, 224x224, random weights, gamma 0.5) from {paths.root}; "
          f"{args.threads} threads; warm-up {spec.warmup}, {spec.iterations} timed runs per engine x batch; "
          f"top-1 agreement vs PyTorch fp32 on {len(x_agree)} builtin:val images at 224 px", flush=True)
    results: list[dict] = []
    ref = None
    for e in ENGINES:
        why = unavailable_reason("bf16" if e.provider == "openvino-bf16" else "f32") if e.provider.startswith("openvino") else None
        if why:
            results.append({"engine": e.label, "skipped": why})
            print(f"  {e.label}: skipped: {why}", flush=True)
            continue
        runner = open_engine(e, paths, args.threads)
        t0 = time.perf_counter()
        try:
            runner.activate()
        except MissingDependency as exc:
            results.append({"engine": e.label, "skipped": exc.one_line()})
            print(f"  {e.label}: skipped: {exc.one_line()}", flush=True)
            continue
        try:
            out = logits(runner, x_agree)
            if ref is None:
                ref = out               # the first engine is PyTorch eager fp32
            agree = float((out.argmax(1) == ref.argmax(1)).mean())
            rows = bench_runner(runner, batches, spec, (3, 224, 224), row_meta={"artifact": e.artifact})
            desc = runner.describe()
        finally:
            runner.deactivate()
        p50 = {r["batch"]: r["latency_ms"]["p50"] for r in rows}
        results.append({"engine": e.label, "artifact": str(paths.variant(e.artifact)) if e.artifact != "pytorch" else "pytorch",
                        "runner": desc.get("name"), "threads": rows[0]["threads"] if rows else None,
                        "p50_ms": p50, "top1_agreement": agree, "describe": desc,
                        "seconds": round(time.perf_counter() - t0, 1)})
        print(f"  {e.label}: " + ", ".join(f"b{b} {v:.1f} ms" for b, v in p50.items())
              + f"; agreement {agree:.1%} ({time.perf_counter() - t0:.0f} s)", flush=True)
    load1 = os.getloadavg()

    base = next(r for r in results if r["engine"] == "PyTorch eager fp32")["p50_ms"]
    head = f"{'engine':<40} {'runner':<16} " + " ".join(f"{f'b{b} p50 ms':>11} {f'b{b} vs eager':>12}" for b in batches) \
        + f" {'top-1 agr. vs fp32':>19}"
    print()
    print(head)
    print("-" * len(head))
    for r in results:
        if "skipped" in r:
            print(f"{r['engine']:<40} skipped: {r['skipped']}")
            continue
        cells = " ".join(f"{r['p50_ms'][b]:>11.1f} {base[b] / r['p50_ms'][b]:>11.2f}x" for b in batches)
        print(f"{r['engine']:<40} {r['runner']:<16} {cells} {r['top1_agreement']:>18.1%}")
    timed = [r for r in results if "skipped" not in r and r["engine"] != "PyTorch eager fp32"]
    verdict = None
    if timed:
        b0 = batches[0]
        best = min(timed, key=lambda r: r["p50_ms"][b0])
        ratio = base[b0] / best["p50_ms"][b0]
        verdict = {"engine": best["engine"], "batch": b0, "speedup": ratio, "top1_agreement": best["top1_agreement"],
                   "target": 4.5, "passed": ratio >= 4.5}
        print(f"\nbest CPU engine at batch {b0}: {best['engine']} ({best['runner']}), {best['p50_ms'][b0]:.1f} ms, "
              f"{ratio:.2f}x faster than PyTorch eager fp32 ({base[b0]:.1f} ms); top-1 agreement with fp32 "
              f"{best['top1_agreement']:.1%} on {len(x_agree)} images; target >= 4.5x: {'PASS' if ratio >= 4.5 else 'FAIL'}")
    cpu, v = machine["cpu"], machine["versions"]
    print(f"machine: {cpu['model']} ({cpu['usable_cores']} usable cores); load average {load0[0]:.2f} before, "
          f"{load1[0]:.2f} after; torch {v['torch']}, onnxruntime {v['onnxruntime']}, openvino {v['openvino']}; "
          f"{machine['date']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "best": verdict, "machine": machine,
                                               "load_average": [load0, load1], "args": vars(args)}, indent=2) + "\n")
    return 0 if verdict is None or verdict["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
