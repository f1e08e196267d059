"""The facts around the table that make a report publishable: what was measured (header),
how (method), where (machine), with what (versions) and how to get it again (reproduce).

Why a module of its own: each fact is read from the result files the stages wrote (sidecars,
bench files, the pipeline's notes), never from the machine the report is made on, so a report
made later or elsewhere says the same. A fact not in any file is left out, not guessed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from attnvgg.report.load import Results, number

#: a row is noisy when its p99 is this many times its p50 at some batch
NOISY_SPREAD = 2.0
#: compute layers: the ops that carry the model's weights and most of its time
COMPUTE_OPS = ("Conv", "Gemm", "MatMul")


# ----------------------------------------------------------------------------- header

def _model_block(results: Results) -> tuple[Optional[dict], Optional[dict]]:
    """(model spec, the sidecar that holds it) from the export sidecars, else the run's notes."""
    for side in results.sidecars.values():
        if isinstance(side.get("model"), dict):
            return side["model"], side
    for run in results.runs:
        if isinstance(run.get("preset_model"), dict):
            return run["preset_model"], None
    return None, None


def header(results: Results) -> dict:
    """Model, attention kinds, input size, weights (trained or random), data sets and image counts."""
    model, side = _model_block(results)
    out: dict[str, Any] = {"model": None, "attention": None, "input_size": None, "width": None,
                           "num_classes": None, "parameters": None, "weights": None, "trained": None,
                           "evaluation_data": None, "evaluation_images": None,
                           "calibration_data": None, "calibration_images": None, "parity_inputs": None}
    if model:
        out.update(model=model.get("arch"), attention=model.get("attention"), input_size=model.get("input_size"),
                   width=model.get("width"), num_classes=model.get("num_classes"))
        ckpt = model.get("checkpoint") or model.get("pretrained_vgg")
        if ckpt:
            sha = (side or {}).get("checkpoint_sha256")
            out["weights"] = f"trained: {Path(str(ckpt)).name}" + (f" (sha256 {str(sha)[:12]})" if sha else "")
            out["trained"] = True
        elif model.get("factory"):
            out["weights"] = f"from factory {model['factory']}"
        else:
            gamma = model.get("gamma")
            out["weights"] = (f"random (seed {model.get('seed')}" + (f", gamma {gamma:g}" if isinstance(gamma, (int, float))
                                                                       else "") + ")")
            out["trained"] = False
    if side and isinstance(side.get("summary"), dict):
        out["parameters"] = side["summary"].get("parameters")
    evals = [a for a in results.accuracy if a.get("data_source")]
    if evals:
        out["evaluation_data"] = evals[0]["data_source"]
        out["evaluation_images"] = max((a["samples"] for a in evals if isinstance(a["samples"], int)), default=None)
    for s in results.sidecars.values():
        data = s.get("data")
        if s.get("precision") == "int8" and isinstance(data, dict):
            out["calibration_data"] = data.get("source")
            out["calibration_images"] = s.get("images") if isinstance(s.get("images"), int) else data.get("size")
            break
    return out


def header_lines(h: dict) -> list[str]:
    """The header as ``label: value`` lines (values missing from every file are left out)."""
    lines = []
    if h["model"]:
        att = ", ".join(h["attention"] or []) or "none"
        extra = [f"width {h['width']:g}" if isinstance(h["width"], (int, float)) else None,
                 f"{h['num_classes']} classes" if h["num_classes"] else None,
                 f"{h['parameters'] / 1e6:.1f} M parameters" if isinstance(h["parameters"], int) else None]
        lines.append(f"Model: {h['model']} (attention in blocks 3-5: {att}; "
                     f"{', '.join(x for x in extra if x)})")
    if h["input_size"]:
        lines.append(f"Input: {h['input_size']}x{h['input_size']} px")
    if h["weights"]:
        lines.append(f"Weights: {h['weights']}")
    if h["evaluation_data"]:
        n = f", {h['evaluation_images']} images" if h["evaluation_images"] else ""
        lines.append(f"Accuracy data: {h['evaluation_data']}{n}")
    if h["calibration_data"]:
        n = f", {h['calibration_images']} images" if h["calibration_images"] else ""
        lines.append(f"Calibration data: {h['calibration_data']}{n}")
    if h["trained"] is False:
        lines.append("Random weights: top-1 against the data set's labels means nothing here; the plot shows "
                     "top-1 agreement with PyTorch fp32 instead.")
    return lines


# ----------------------------------------------------------------------------- method

def _span(values: list) -> Optional[str]:
    vals = sorted({v for v in values if v is not None}, key=str)
    if not vals:
        return None
    if all(isinstance(v, (int, float)) for v in vals) and len(vals) > 1:
        return f"{min(vals)}-{max(vals)}"
    return ", ".join(str(v) for v in vals)


def method(results: Results, rows: list[dict]) -> dict:
    """Warm-up, iterations, threads, timer, load average before/after the benches, and whether
    the figures are noisy (a row's p99/p50 > NOISY_SPREAD, or more load than usable cores)."""
    bench = results.bench
    loads = [f["load_average"] for f in results.bench_files if f.get("load_average")]
    before = [lb["before"][0] for lb in loads if isinstance(lb.get("before"), list) and lb["before"]]
    after = [lb["after"][0] for lb in loads if isinstance(lb.get("after"), list) and lb["after"]]
    cores = next((m.get("cpu", {}).get("usable_cores") for m in results.machines if isinstance(m.get("cpu"), dict)), None)
    reasons = []
    spread_rows = [r["label"] for r in rows if any((v.get("spread") or 0) > NOISY_SPREAD for v in r["latency"].values())]
    if spread_rows:
        reasons.append(f"p99/p50 above {NOISY_SPREAD:g} for {', '.join(spread_rows)}")
    peak = max(before + after, default=None)
    if peak is not None and cores and peak > cores:
        reasons.append(f"1-minute load average up to {peak:.2f} on {cores} usable cores (other work competed)")
    mins = [f["spec"].get("min_seconds") for f in results.bench_files]
    return {
        "warmup": _span([b.get("warmup") for b in bench]),
        "iterations": _span([b.get("iterations") for b in bench]),
        "min_seconds": _span(mins),
        "threads": _span([b.get("threads") if b.get("threads") is not None else
                          ("GPU" if b.get("device") == "cuda" else "library default") for b in bench]),
        "timer": _span([b.get("timer") for b in bench]),
        "load_before": [lb.get("before") for lb in loads],
        "load_after": [lb.get("after") for lb in loads],
        "load_before_1min": (min(before), max(before)) if before else None,
        "load_after_1min": (min(after), max(after)) if after else None,
        "usable_cores": cores,
        "noisy": bool(reasons) if bench else None,
        "noisy_reasons": reasons,
        "rule": (f"noisy when a row's p99/p50 exceeds {NOISY_SPREAD:g} or the 1-minute load average before or "
                 "after a bench exceeds the usable cores"),
    }


def method_lines(m: dict) -> list[str]:
    if m["noisy"] is None:
        return ["No bench result: no latency method to state."]
    lb, la = m["load_before_1min"], m["load_after_1min"]

    def rng(t: Optional[tuple]) -> str:
        return "—" if t is None else (f"{t[0]:.2f}" if t[0] == t[1] else f"{t[0]:.2f}-{t[1]:.2f}")

    lines = [f"Warm-up {m['warmup'] or '—'} runs, then at least {m['iterations'] or '—'} timed iterations and "
             f"{m['min_seconds'] or '—'} s per runner and batch (timer: {m['timer'] or '—'}); threads: {m['threads'] or '—'}.",
             f"Load average (1 min) before the benches {rng(lb)}, after {rng(la)}"
             + (f", on {m['usable_cores']} usable cores." if m["usable_cores"] else "."),
             "Latency is end to end per batch; img/s is batch / p50 latency (an outlier cannot move it); "
             "spread is p99 / p50."]
    if m["noisy"]:
        lines.append("NOISY: " + "; ".join(m["noisy_reasons"]) + f" ({m['rule']}).")
    else:
        lines.append(f"Not noisy by the rule: {m['rule']}.")
    return lines


# ----------------------------------------------------------------------------- machine and versions

def machine_label(m: dict) -> str:
    """One short name per machine for the table's machine column: GPU and TensorRT, else CPU."""
    cpu, gpu, v = m.get("cpu") or {}, m.get("gpu"), m.get("versions") or {}
    if gpu:
        trt = v.get("tensorrt")
        return f"{gpu.get('name') or 'GPU'}" + (f", TensorRT {trt}" if trt else ", no TensorRT")
    cores = cpu.get("usable_cores") or cpu.get("logical_cores")
    return f"{cpu.get('model') or 'CPU'}" + (f" ({cores} cores)" if cores else "")


VERSION_ORDER = ("python", "attnvgg", "torch", "cuda", "onnx", "onnxruntime", "onnxruntime_gpu", "onnxsim", "onnxslim",
                 "onnxconverter_common", "polygraphy", "modelopt", "tensorrt", "openvino", "numpy", "pillow",
                 "click", "matplotlib", "tqdm")


def versions(results: Results) -> dict[str, Any]:
    """Every library version recorded by the benches (and the export sidecar's torch/onnx)."""
    out: dict[str, Any] = {}
    for m in results.machines:
        for k, v in (m.get("versions") or {}).items():
            if k != "onnxruntime_providers" and v is not None:
                out.setdefault(k, v)
    for s in results.sidecars.values():
        for k in ("torch", "onnx"):
            if isinstance(s.get(k), str):
                out.setdefault(k, s[k])
        conv = s.get("converter")
        if isinstance(conv, str) and " " in conv:
            name, ver = conv.split(" ", 1)
            out.setdefault(name.replace("-", "_"), ver)
    order = {k: i for i, k in enumerate(VERSION_ORDER)}
    return dict(sorted(out.items(), key=lambda kv: (order.get(kv[0], 99), kv[0])))


# ----------------------------------------------------------------------------- reproduce

def reproduce(results: Results, base: Optional[Path]) -> Optional[dict]:
    """The pipeline's run record, with paths relative to the report's base folder."""
    if not results.runs:
        return None
    run = results.runs[-1]
    src_dir = Path(run["source"]).parent
    config = src_dir / str(run.get("config") or "config.toml")
    rel = relative(config, base)
    code = {k: run.get(k) for k in ("attnvgg", "git_commit", "git_dirty")}
    return {"invocation": run.get("invocation"), "command": f"attnvgg run --config {rel}",
            "config": rel, "config_sha256": run.get("config_sha256"), **code}


def relative(path: str | os.PathLike, base: Optional[Path]) -> str:
    """``path`` relative to ``base`` when it lies under it (or next to it), else its name."""
    p = Path(path)
    if base is None:
        return p.name
    try:
        return os.path.relpath(p.resolve(), base.resolve())
    except ValueError:
        return p.name


# ----------------------------------------------------------------------------- precision summary

def _compute_counts(chain: list[dict]) -> dict[str, int]:
    for s in chain:
        ops = (s.get("summary") or {}).get("op_counts") if isinstance(s.get("summary"), dict) else None
        if isinstance(ops, dict):
            return {op: int(ops.get(op, 0)) for op in COMPUTE_OPS if isinstance(ops.get(op, 0), int)}
    return {}


def precision_summary(precision: Optional[str], chain: list[dict]) -> Optional[dict]:
    """How many compute layers (Conv, Gemm, MatMul) run int8 / fp16 / fp32, and which attention
    parts stay float, from the sidecars' quantized and excluded node lists."""
    counts = _compute_counts(chain)
    total = sum(counts.values())
    if precision == "fp32":
        return {"int8": 0, "fp16": 0, "fp32": total or None, "float_attention": [], "float_dtype": "fp32",
                "text": f"all {total} compute layers fp32" if total else "fp32"}
    side = chain[0] if chain else {}
    if precision == "fp16":
        blocked = [str(b) for b in side.get("block_ops") or []]
        fp32 = sum(n for op, n in counts.items() if op in blocked)
        io = "; fp32 inputs/outputs" if side.get("keep_io_types") else ""
        return {"int8": 0, "fp16": (total - fp32) if total else None, "fp32": fp32, "float_attention": [],
                "float_dtype": "fp16",
                "text": (f"{total - fp32} of {total} compute layers fp16, {fp32} fp32" if total else "fp16")
                + (f" (blocked: {', '.join(blocked)})" if blocked else "") + io}
    if precision != "int8":
        return None
    quantized = side.get("quantized_nodes")
    excluded = (side.get("exclusion") or {}).get("nodes") if isinstance(side.get("exclusion"), dict) else None
    if not isinstance(quantized, list):
        return None
    int8 = sum(1 for q in quantized if isinstance(q, dict) and q.get("op_type") in COMPUTE_OPS)
    hp = side.get("high_precision")        # the tensorrt flavour (ModelOpt): what is not int8 runs in
    float_dtype = str(hp) if hp in ("fp16", "fp32", "bf16") else "fp32"
    attention: dict[str, int] = {}
    for n in excluded or []:
        if isinstance(n, dict) and str(n.get("reason", "")).startswith("attention"):
            attention[str(n.get("op_type"))] = attention.get(str(n.get("op_type")), 0) + 1
    att = [f"{op} x{n}" for op, n in sorted(attention.items())]
    rest = (total - int8) if total else None
    text = (f"{int8} of {total} compute layers int8, {rest} {float_dtype}" if total else f"{int8} compute layers int8")
    if att:
        text += f"; attention kept {float_dtype}: {', '.join(att)}"
    return {"int8": int8, "fp16": rest if float_dtype == "fp16" else 0, "fp32": rest if float_dtype == "fp32" else 0,
            "float_attention": att, "float_dtype": float_dtype, "text": text}


def spread(v: dict) -> Optional[float]:
    p50, p99 = number(v.get("p50_ms")), number(v.get("p99_ms"))
    return p99 / p50 if p50 and p99 is not None and p50 > 0 else None
