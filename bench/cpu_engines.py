"""Every CPU engine on the full-size model at 224 px, in one process: p50 latency, the ratio to
PyTorch eager fp32, and top-1 agreement with PyTorch fp32.

    python bench/cpu_engines.py [--run-dir runs/vgg16-224] [--batches 1,8] [--threads 2]
                                [--iterations 20] [--rounds 4] [--agreement-images 64] [--json out.json]

Engines: PyTorch eager fp32; ONNX Runtime CPU on model.sim.onnx (fp32), model.int8.onnx (INT8,
tensorrt flavour) and model.int8-cpu.onnx (INT8, cpu flavour); OpenVINO on the same files, f32
and bf16 (bf16 only where the CPU reports it; the INT8 files with f32 and with bf16 for their
float parts). Missing files are made first with the run's own stage functions (export,
simplify, calibrate of the vgg16-224 preset), so the figures are of attnvgg's files.

Every engine is loaded and warmed up first; the timing then runs in --rounds rounds, each
timing every engine x batch for --iterations/--rounds runs (one ``runner.infer`` each, numpy
in and out, host clock, as attnvgg bench times CPU runners; statistics by
attnvgg.engines.bench.latency_stats), so a change of load on a shared machine hits every
engine alike rather than whichever ran at that moment. One engine runs at a time. Top-1
agreement is measured on the first --agreement-images images of builtin:val preprocessed for
224 px, against PyTorch eager fp32 logits of the same images. The machine is recorded with the
load average before and after.
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


def make_artifacts(run_dir: Path, preset: str) -> Paths:
    """The preset's fp32 and both INT8 files in ``run_dir`` (made if missing)."""
    cfg = effective_config(preset, None, [f'run.out="{run_dir}"',
                                          'run.variants=["fp32", "int8-tensorrt", "int8-cpu"]'])
    paths = Paths(run_dir)
    if not all(paths.variant(v).is_file() for v in ("fp32", "int8-tensorrt", "int8-cpu")):
        print(f"making the files in {run_dir} (attnvgg run --preset {preset} --stages export,simplify,calibrate)",
              flush=True)
        run_pipeline(cfg, ["export", "simplify", "calibrate"], echo=lambda s: print(s, flush=True))
    return paths


def open_engine(e: Engine, paths: Paths, threads: int, preset: str):
    from attnvgg.runners.factory import open_runner

    cfg = effective_config(preset)
    if e.artifact == "pytorch":
        from attnvgg.models.build import torch_runner

        return torch_runner(cfg.model)
    return open_runner(paths.variant(e.artifact), provider=e.provider, threads=threads)


def agreement_inputs(n: int, preset: str) -> np.ndarray:
    from attnvgg.data import open_dataset

    cfg = effective_config(preset)
    xs = [x for x, _ in open_dataset("builtin:val", cfg.preprocess).iter_batches(8, limit=n)]
    return np.concatenate(xs)


def logits(runner, x: np.ndarray, batch: int = 8) -> np.ndarray:
    name = runner.input_metadata()[0].name
    outs = [next(iter(runner.infer({name: x[i:i + batch]}).values())) for i in range(0, len(x), batch)]
    return np.concatenate(outs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", default="runs/vgg16-224")
    ap.add_argument("--preset", default="vgg16-224", help="the run preset the files are made with (default: full size)")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=20, help="timed runs per engine x batch, over all rounds")
    ap.add_argument("--rounds", type=int, default=4,
                    help="interleave the engines: each round times every engine for iterations/rounds runs")
    ap.add_argument("--agreement-images", type=int, default=64)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]

    import torch

    from attnvgg.engines.bench import latency_stats
    from attnvgg.errors import MissingDependency
    from attnvgg.runners.openvino import unavailable_reason

    torch.set_num_threads(args.threads)
    paths = make_artifacts(Path(args.run_dir), args.preset)
    hw = effective_config(args.preset).model.input_size
    machine = machine_info()
    load0 = os.getloadavg()
    x_agree = agreement_inputs(args.agreement_images, args.preset)
    per_round = max(1, -(-args.iterations // args.rounds))
    m = effective_config(args.preset).model
    what = ("full-size VGG16WithAttention (width 1.0, 224x224, random weights, gamma 0.5)" if args.preset == "vgg16-224"
            else f"preset {args.preset} (width {m.width:g}, {hw}x{hw})")
    print(f"{what} from {paths.root}; "
          f"{args.threads} threads; warm-up {args.warmup}, then {args.rounds} rounds x {per_round} timed runs per "
          f"engine x batch, engines interleaved; top-1 agreement vs PyTorch fp32 on {len(x_agree)} builtin:val "
          f"images at {hw} px", flush=True)
    live: list[tuple[Engine, object]] = []
    results: dict[str, dict] = {}
    ref = None
    for e in ENGINES:                       # load every engine once, check it, warm it up
        why = (unavailable_reason("bf16" if e.provider == "openvino-bf16" else "f32")
               if e.provider.startswith("openvino") else None)
        runner = None if why else open_engine(e, paths, args.threads, args.preset)
        if runner is not None:
            try:
                runner.activate()
            except MissingDependency as exc:
                why = exc.one_line()
        if why:
            results[e.label] = {"engine": e.label, "skipped": why}
            print(f"  {e.label}: skipped: {why}", flush=True)
            continue
        out = logits(runner, x_agree)
        ref = out if ref is None else ref   # the first engine is PyTorch eager fp32
        desc = runner.describe()
        results[e.label] = {"engine": e.label, "artifact": desc.get("model", "pytorch"), "runner": desc.get("name"),
                            "threads": (desc.get("threads") or args.threads), "describe": desc,
                            "top1_agreement": float((out.argmax(1) == ref.argmax(1)).mean()),
                            "samples_ms": {b: [] for b in batches}}
        name = runner.input_metadata()[0].name
        for b in batches:
            x = np.random.default_rng(b).standard_normal((b, 3, hw, hw)).astype(np.float32)
            for _ in range(args.warmup):
                runner.infer({name: x})
        live.append((e, runner))
        print(f"  {e.label}: loaded; top-1 agreement {results[e.label]['top1_agreement']:.1%}", flush=True)
    for rnd in range(args.rounds):          # interleaved: load drift on a shared machine hits every engine
        for e, runner in live:
            name = runner.input_metadata()[0].name
            for b in batches:
                x = np.random.default_rng(b).standard_normal((b, 3, hw, hw)).astype(np.float32)
                feeds = {name: x}
                for _ in range(per_round):
                    t0 = time.perf_counter_ns()
                    runner.infer(feeds)
                    results[e.label]["samples_ms"][b].append((time.perf_counter_ns() - t0) / 1e6)
        print(f"  round {rnd + 1}/{args.rounds} done, load average {os.getloadavg()[0]:.2f}", flush=True)
    for _, runner in live:
        runner.deactivate()
    load1 = os.getloadavg()
    for r in results.values():
        if "samples_ms" in r:
            r["latency_ms"] = {b: latency_stats(v) for b, v in r["samples_ms"].items()}
            r["p50_ms"] = {b: r["latency_ms"][b]["p50"] for b in batches}

    rows = list(results.values())
    base = results["PyTorch eager fp32"]["p50_ms"]
    head = f"{'engine':<40} {'runner':<16} " + " ".join(f"{f'b{b} p50 ms':>11} {f'b{b} vs eager':>12}" for b in batches) \
        + f" {'top-1 agr. vs fp32':>19}"
    print()
    print(head)
    print("-" * len(head))
    for r in rows:
        if "skipped" in r:
            print(f"{r['engine']:<40} skipped: {r['skipped']}")
            continue
        cells = " ".join(f"{r['p50_ms'][b]:>11.1f} {base[b] / r['p50_ms'][b]:>11.2f}x" for b in batches)
        print(f"{r['engine']:<40} {r['runner']:<16} {cells} {r['top1_agreement']:>18.1%}")
    timed = [r for r in rows if "skipped" not in r and r["engine"] != "PyTorch eager fp32"]
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
        Path(args.json).write_text(json.dumps({"results": rows, "best": verdict, "machine": machine,
                                               "load_average": [load0, load1], "args": vars(args)}, indent=2) + "\n")
    return 0 if verdict is None or verdict["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
