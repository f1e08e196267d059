"""Latency bench: every runner x batch size, timed here and not in the runners.

Why here: a runner's ``infer`` is the thing users call; how long it takes depends on warm-up,
how many iterations, which clock and, on a GPU, whether copies are counted. Keeping that in one
place makes every backend's figures comparable. On the CPU each iteration is one
``runner.infer`` (numpy in, numpy out) on the host clock. On a GPU (``bench_cuda``) inputs live
on the device and compute time is reported apart from end-to-end time (host-to-device +
compute + device-to-host), as trtexec does.

Result file (``BENCH_FORMAT``)::
    {"format": "attnvgg.bench/1", "created": ISO-8601, "spec": BenchSpec as dict,
     "machine": machine_info(), "rows": [row...], "skipped": [{"artifact", "runner", "batch", "reason"}]}

One row per runner x batch::
    artifact ("pytorch" for the baseline), runner ("onnxruntime-cpu", "pytorch-cpu", "tensorrt", ...),
    backend, device ("cpu"|"cuda"), precision, flavour (int8 only: "tensorrt"|"cpu", else null),
    size_bytes, batch, input_shape, input_dtype, threads (null on GPU or when unknown),
    threads_source ("set"|"default"|null), warmup, iterations, seconds (timed wall time),
    timer ("host"|"cuda-events"), cuda_graphs (bool), latency_ms {mean, std, min, max, p50, p90, p99}
    (end to end), compute_ms (same keys, GPU only, else null), throughput_ips (batch / mean latency),
    notes [str]
"""

from __future__ import annotations

import datetime as _dt
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Sequence

from attnvgg.config import BenchSpec, ModelSpec
from attnvgg.machine import cpuinfo, machine_info
from attnvgg.errors import AttnvggError, InputError, MissingDependency
from attnvgg import sidecar
from attnvgg.artifacts import check_outputs, file_size, write_json
from attnvgg.models.build import torch_runner
from attnvgg.engines import bench_cuda
from attnvgg.engines.bench_cuda import cuda_ready
from attnvgg.runners.base import Runner, effective_precision
from attnvgg.runners.factory import PROVIDERS as RUNNER_PROVIDERS, open_runner, provider_device
from attnvgg.runners.tensorrt import installed_tensorrt_version, tensorrt_available

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np


BENCH_FORMAT = sidecar.format_tag("bench")
PYTORCH = "pytorch"
PROVIDERS = RUNNER_PROVIDERS   # cpu/cuda: ONNX Runtime; openvino, openvino-bf16: OpenVINO on the CPU
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")

#: a step runs one timed iteration and returns (end-to-end ms, compute ms or None)
Step = Callable[[], "tuple[float, Optional[float]]"]


# ----------------------------------------------------------------------------- spec and statistics

def check_spec(spec: BenchSpec) -> None:
    """Refuse a spec that cannot give a measurement, before anything is loaded."""
    if not spec.batches or any(not isinstance(b, int) or b < 1 for b in spec.batches):
        raise InputError(f"bench batches must be positive integers, got {spec.batches}", "e.g. --batches 1,8")
    if spec.warmup < 0 or spec.iterations < 0 or spec.min_seconds < 0:
        raise InputError(f"warmup, iterations and min-seconds must be >= 0 (got {spec.warmup}, {spec.iterations}, "
                         f"{spec.min_seconds})", "e.g. --warmup 5 --iterations 20")
    if spec.iterations == 0 and spec.min_seconds == 0:
        raise InputError("iterations and min-seconds are both 0, so nothing would be timed",
                         "give --iterations N or --min-seconds S (or both)")
    if spec.threads is not None and spec.threads < 1:
        raise InputError(f"threads must be at least 1, got {spec.threads}", "omit --threads for the library default")
    bad = [p for p in spec.providers if p not in PROVIDERS]
    if bad or not spec.providers:
        raise InputError(f"unknown bench provider(s) {bad or spec.providers}", f"use {' and/or '.join(PROVIDERS)}")


def latency_stats(samples_ms: Sequence[float]) -> dict:
    """mean, std (sample), min, max and p50/p90/p99 (linear interpolation) of per-iteration times."""
    import numpy as np

    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no samples")
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if a.size > 1 else 0.0,
            "min": float(a.min()), "max": float(a.max()),
            "p50": float(p50), "p90": float(p90), "p99": float(p99)}


def measure(step: Step, spec: BenchSpec) -> tuple[list[float], list[float] | None, float]:
    """Warm up, then time until both ``iterations`` and ``min_seconds`` are reached."""
    for _ in range(spec.warmup):
        step()
    e2e: list[float] = []
    compute: list[float] = []
    t0 = time.perf_counter()
    while True:
        total, comp = step()
        e2e.append(total)
        if comp is not None:
            compute.append(comp)
        if len(e2e) >= spec.iterations and time.perf_counter() - t0 >= spec.min_seconds:
            break
    return e2e, (compute or None), time.perf_counter() - t0


# ----------------------------------------------------------------------------- one runner

def _device_of(runner: "Runner") -> str:
    if runner.backend == "tensorrt" or runner.backend.endswith("-cuda"):
        return "cuda"
    return str(getattr(runner, "device", "cpu")).split(":")[0]


def _host_step(runner: "Runner", name: str, x: "np.ndarray") -> Step:
    feeds = {name: x}

    def step() -> tuple[float, None]:
        t0 = time.perf_counter_ns()
        runner.infer(feeds)
        return (time.perf_counter_ns() - t0) / 1e6, None

    return step


def _set_threads(runner: "Runner", spec: BenchSpec) -> tuple[Optional[int], Optional[str], Callable[[], None]]:
    """Apply ``spec.threads`` to a CPU runner; returns (threads, source, restore)."""
    if runner.backend == PYTORCH:
        import torch

        old = torch.get_num_threads()
        if spec.threads:
            torch.set_num_threads(spec.threads)
        return torch.get_num_threads(), ("set" if spec.threads else "default"), lambda: torch.set_num_threads(old)
    if runner.backend.startswith(("onnxruntime", "openvino")):
        if spec.threads and getattr(runner, "threads", None) != spec.threads:
            if runner.is_active:
                raise InputError(f"runner {runner.name} is already active with {runner.threads} threads, "
                                 f"but the bench asks for {spec.threads}", "pass an inactive runner to bench_runner")
            runner.threads = spec.threads
        threads = getattr(runner, "threads", None)
        if threads:
            return threads, "set", lambda: None
        # ONNX Runtime's default intra-op pool has one thread per physical core; OpenVINO says
        # what it chose once compiled (bench_runner asks it then).
        return cpuinfo()[1] or os.cpu_count(), "default", lambda: None
    return None, None, lambda: None


def bench_runner(
    runner: "Runner",
    batch_sizes: Sequence[int],
    spec: BenchSpec,
    input_shape_chw: Sequence[int],
    row_meta: Optional[dict] = None,
    skipped: Optional[list] = None,
) -> list[dict]:
    """Time ``runner`` at each batch size; one row per batch (see the module docstring).

    The runner is activated here if it is not already (and deactivated again). A batch the
    runner cannot take (a static batch, outside an engine's profile) is appended to ``skipped``
    with the reason, instead of failing the whole bench.
    """
    import numpy as np

    check_spec(spec)
    row_meta = dict(row_meta or {})
    skipped = skipped if skipped is not None else []
    device = _device_of(runner)
    threads, threads_source, restore = (None, None, lambda: None) if device == "cuda" else _set_threads(runner, spec)
    activated = not runner.is_active
    rows: list[dict] = []
    try:
        runner.activate()
        in_use = getattr(runner, "threads_in_use", None)
        if threads_source == "default" and in_use is not None and in_use():
            threads = in_use()
        meta = runner.input_metadata()[0]
        static = meta.shape[0] if meta.shape and meta.shape[0] > 0 else None
        dtype = meta.dtype if meta.dtype in ("float32", "float16") else "float32"
        for b in batch_sizes:
            where = {"artifact": row_meta.get("artifact"), "runner": runner.name, "batch": b}
            if static is not None and b != static:
                skipped.append({**where, "reason": f"the model has a static batch of {static}"})
                continue
            shape = (b, *[int(d) for d in input_shape_chw])
            x = np.random.default_rng(spec.seed + b).standard_normal(shape).astype(dtype)
            notes: list[str] = []
            try:
                if device == "cuda":
                    step, timer, graphs, notes = bench_cuda.make_step(runner, meta.name, x, spec)
                else:
                    step, timer, graphs = _host_step(runner, meta.name, x), "host", False
                    if spec.cuda_graphs:
                        notes.append("CUDA graphs apply to GPU runners only")
                e2e, compute, seconds = measure(step, spec)
            except AttnvggError as exc:
                skipped.append({**where, "reason": exc.one_line()})
                continue
            lat = latency_stats(e2e)
            rows.append({
                "artifact": row_meta.get("artifact"), "runner": runner.name, "backend": runner.backend,
                "device": device, "precision": _row_precision(row_meta.get("precision"), runner),
                "flavour": row_meta.get("flavour"),
                "size_bytes": row_meta.get("size_bytes"), "batch": b, "input_shape": list(shape),
                "input_dtype": dtype, "threads": threads, "threads_source": threads_source,
                "warmup": spec.warmup, "iterations": len(e2e), "seconds": round(seconds, 4), "timer": timer,
                "cuda_graphs": graphs, "latency_ms": lat,
                "compute_ms": latency_stats(compute) if compute else None,
                "throughput_ips": b / (lat["mean"] / 1000.0) if lat["mean"] > 0 else None,
                "throughput_p50_ips": b / (lat["p50"] / 1000.0) if lat["p50"] > 0 else None,
                "notes": notes,
            })
            if runner.backend == PYTORCH and row_meta.get("size_bytes") is None:
                row_meta["size_bytes"] = rows[-1]["size_bytes"] = _torch_model_bytes(runner)
    finally:
        restore()
        if activated:
            runner.deactivate()
    return rows


def _row_precision(file_precision: Optional[str], runner: "Runner") -> Optional[str]:
    """The precision the row ran at: the file's, or the coarser one the runner computes in
    (OpenVINO bf16 on an fp32 file is a bf16 row)."""
    return effective_precision(file_precision, runner.compute_precision) if file_precision else file_precision


def _torch_model_bytes(runner: "Runner") -> Optional[int]:
    model = getattr(runner, "model", None)
    if model is None:
        return None
    tensors = list(model.parameters()) + list(model.buffers())
    return int(sum(t.numel() * t.element_size() for t in tensors))


# ----------------------------------------------------------------------------- artifacts

def artifact_meta(path: Path) -> dict:
    """precision, flavour (int8) and size of an ONNX file or engine, from its sidecar chain.

    The sidecar's word wins (export, convert, calibrate and build write one); an ONNX file
    without one has its precision read from the graph; an engine without one stays None.
    """
    chain = sidecar.lineage(path)
    precision = chain[0].precision if chain else (sidecar.precision_of(path) if path.suffix == ".onnx" else None)
    flavour = next((str(s.get("flavour")) for s in chain if s.get("flavour")), None) if precision == "int8" else None
    return {"artifact": str(path), "precision": precision, "flavour": flavour,
            "size_bytes": file_size(path)}


def _check_artifacts(artifacts: Sequence[str], model_spec: Optional[ModelSpec]) -> None:
    if not artifacts:
        raise InputError("nothing to bench", "pass .onnx or .engine files and/or the PyTorch baseline (--pytorch)")
    for a in artifacts:
        if a == PYTORCH:
            if model_spec is None:
                raise InputError("the PyTorch baseline needs the model spec",
                                 "pass model options (--width/--input-size/--checkpoint ...) or --config")
            continue
        p = Path(a)
        if not p.is_file():
            raise InputError(f"file not found: {p}", "check the path (attnvgg export / calibrate / build write these)")
        if p.suffix != ".onnx" and p.suffix not in ENGINE_SUFFIXES:
            raise InputError(f"{p} is neither an ONNX model (.onnx) nor a TensorRT engine (.engine/.plan)",
                             "pass a file that attnvgg export, convert, calibrate or build wrote")


def _input_chw(runner: "Runner", artifact: Path, model_spec: Optional[ModelSpec]) -> tuple[int, int, int]:
    dims = list(runner.input_metadata()[0].shape)[1:]
    if len(dims) == 3 and all(d > 0 for d in dims):
        return tuple(dims)  # type: ignore[return-value]
    ms = sidecar.model_spec(artifact) or model_spec
    if ms is None:
        raise InputError(f"{artifact} has dynamic input dims {dims} and no sidecar says its input size",
                         "pass model options (--input-size) or bench a file attnvgg export wrote")
    return ms.in_channels, ms.input_size, ms.input_size


def _runners_for(artifact: str, spec: BenchSpec, model_spec: Optional[ModelSpec],
                 skip: Callable[[str, str], None]) -> list[tuple["Runner", dict]]:
    """(runner, row meta) for each device the artifact is benched on; unavailable ones go to ``skip``."""

    out: list[tuple[Runner, dict]] = []
    if artifact == PYTORCH:
        devices = list(dict.fromkeys(provider_device(p) for p in spec.providers))
        for provider in devices:
            if provider == "cuda":
                ok, why = cuda_ready()
                if not ok:
                    skip("pytorch-cuda", why)
                    continue
            runner = torch_runner(model_spec, device=provider)
            out.append((runner, {"artifact": PYTORCH, "precision": "fp32", "flavour": None, "size_bytes": None}))
        return out
    path = Path(artifact)
    meta = artifact_meta(path)
    if path.suffix in ENGINE_SUFFIXES:
        ok, why = tensorrt_available()
        if not ok:
            skip("tensorrt", why)
            return out
        return [(open_runner(path, device_resident=True), meta)]
    for provider in spec.providers:
        out.append((open_runner(path, provider=provider, threads=spec.threads), meta))
    return out


def bench_artifacts(
    artifacts: Sequence[str],
    spec: BenchSpec,
    model_spec_for_pytorch: Optional[ModelSpec] = None,
    out_json: Optional[str | os.PathLike] = None,
) -> dict:
    """Bench every artifact ("pytorch" = the eager fp32 baseline) on every provider and batch.

    Bad input (a missing file, a bad spec) is refused before anything is timed. A device or
    library that is absent (no CUDA GPU, no TensorRT, no ONNX Runtime CUDA provider) skips
    that runner with the reason in ``skipped``; the result is written atomically to
    ``out_json`` when given.
    """
    check_spec(spec)
    artifacts = [str(a) for a in artifacts]
    check_outputs([out_json], artifacts)
    _check_artifacts(artifacts, model_spec_for_pytorch)
    rows: list[dict] = []
    skipped: list[dict] = []
    load_before = load_average()
    for artifact in artifacts:
        def skip(runner_name: str, reason: str, _a: str = artifact) -> None:
            skipped.append({"artifact": _a, "runner": runner_name, "batch": None, "reason": reason})

        for runner, meta in _runners_for(artifact, spec, model_spec_for_pytorch, skip):
            try:
                runner.activate()
            except MissingDependency as exc:
                if runner.backend.endswith("-cuda") or runner.backend == "tensorrt":
                    skip(runner.name, exc.one_line())
                    continue
                raise
            try:
                if artifact == PYTORCH:
                    ms = model_spec_for_pytorch
                    chw = (ms.in_channels, ms.input_size, ms.input_size)
                else:
                    chw = _input_chw(runner, Path(artifact), model_spec_for_pytorch)
                rows += bench_runner(runner, spec.batches, spec, chw, row_meta=meta, skipped=skipped)
            finally:
                runner.deactivate()
    result = {**sidecar.result_header("bench", artifacts),
              "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "spec": asdict(spec), "machine": machine_info(installed_tensorrt_version()), "rows": rows, "skipped": skipped,
              "load_average": {"before": load_before, "after": load_average()}}
    if out_json:
        write_json(out_json, result)
    return result


def load_average() -> Optional[list[float]]:
    """1, 5 and 15 minute load averages (None where the OS has none): the report's word on
    whether the machine was busy while it was timed."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


# ----------------------------------------------------------------------------- table

def format_table(result: dict) -> str:
    """A fixed-width table of a bench result, for the terminal."""
    head = (f"{'artifact':<28} {'runner':<17} {'prec':<13} {'batch':>5} {'thr':>4} {'iters':>6} "
            f"{'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} {'mean ms':>9} {'std':>8} {'img/s':>9} {'compute p50':>11}")
    lines = [head, "-" * len(head)]
    for r in result["rows"]:
        lat, comp = r["latency_ms"], r.get("compute_ms")
        prec = (r["precision"] or "?") + (f" ({r['flavour']})" if r.get("flavour") else "")
        name = Path(r["artifact"]).name if r["artifact"] != PYTORCH else PYTORCH
        lines.append(f"{name[-28:]:<28} {r['runner']:<17} {prec:<13} {r['batch']:>5} {r['threads'] or '-':>4} "
                     f"{r['iterations']:>6} {lat['p50']:>9.3f} {lat['p90']:>9.3f} {lat['p99']:>9.3f} "
                     f"{lat['mean']:>9.3f} {lat['std']:>8.3f} {r['throughput_ips']:>9.1f} "
                     f"{('%.3f' % comp['p50']) if comp else '-':>11}")
    for s in result.get("skipped", []):
        b = f" batch {s['batch']}" if s.get("batch") else ""
        lines.append(f"skipped: {s['artifact']} on {s['runner']}{b}: {s['reason']}")
    m = result.get("machine") or {}
    cpu, v = m.get("cpu") or {}, m.get("versions") or {}
    gpu = m.get("gpu")
    lines.append(f"machine: {cpu.get('model')} ({cpu.get('usable_cores')} usable cores); "
                 f"GPU: {gpu['name'] + ' driver ' + str(gpu.get('driver')) if gpu else 'none'}; "
                 f"torch {v.get('torch')}, onnxruntime {v.get('onnxruntime')}, openvino {v.get('openvino') or 'n/a'}, "
                 f"tensorrt {v.get('tensorrt') or 'n/a'}")
    return "\n".join(lines)
