"""The FP16 variant: an FP16-typed ONNX graph, checked against the fp32 graph it came from.

Precision lives in the file (TensorRT 11 has no FP16 builder flag), so FP16 means float16
weights and activations in the graph. ModelOpt AutoCast (``modelopt.onnx.autocast.
convert_to_mixed_precision``, read in ``modelopt/onnx/autocast/convert.py``), TensorRT 11's
documented FP16 path, does the conversion: one reference run on random inputs, then every node
whose inputs/outputs exceed its data range (512) or whose initializers exceed the fp16 range
stays fp32 (with casts), as do the ``block_ops`` (its ``op_types_to_exclude``); input and output
keep their types (``keep_io_types``). onnxconverter-common remains as ``converter =
"onnxconverter-common"`` (it clamps out-of-range constants instead). Measured on the built-in
model: both give the same parity (min cosine 0.9999936, max abs 4.8e-3); AutoCast takes 0.7 s
against 0.1 s (docs/results/fp16-converters.md). We still sort defensively and run the full
checker before anything is written.
Input and output stay float32 by default so the rest of the pipeline feeds the same arrays to
every variant. On ONNX Runtime's CPU provider an fp16 graph runs with casts back to fp32, so
the parity check here catches conversion and rounding errors, not TensorRT's fp16 kernels.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from attnvgg.console import note
from attnvgg import sidecar
from attnvgg.artifacts import atomic_path, check_outputs, sidecar_path
from attnvgg.config import FP16_CONVERTERS, Fp16Spec, Tolerance, default_tolerances
from attnvgg.onnxgraph import load_onnx, toposort
from attnvgg.runners.compare import compare_runners
from attnvgg.errors import CheckFailed, InputError, StageError, first_line, require
from attnvgg.runners.onnxruntime import OnnxRuntimeRunner


@dataclass
class Fp16Result:
    output: Path
    sidecar: Path
    block_ops: list[str]
    keep_io_types: bool
    clamped_values: int                 # fp32 constants outside the fp16 range, clamped by the converter
    parity: dict | None
    seconds: float
    notes: list[str] = field(default_factory=list)
    fp32_nodes: list[str] = field(default_factory=list)   # compute nodes the converter kept in fp32


def _check_block_ops(ops: list[str]) -> None:
    import onnx

    bad = [op for op in ops if not onnx.defs.has(op)]
    if bad:
        raise InputError(f"--block-op {', '.join(bad)}: not an ONNX operator type",
                         "use op type names as in the graph, e.g. Softmax, ReduceMean (case matters)")


def convert_fp16(model_path: str | Path, out: str | Path, spec: Fp16Spec | None = None,
                 tolerance: Tolerance | None = None, log: Callable[[str], None] = note) -> Fp16Result:
    """Write the FP16 variant of ``model_path`` to ``out`` (+ ``out.json``); CheckFailed if parity fails.

    A model that fails parity is kept (with ``"passed": false`` in its sidecar) so it can be
    inspected; later stages read the sidecar.
    """
    spec = spec or Fp16Spec()
    tol = tolerance or default_tolerances()["fp16"]
    t0 = time.perf_counter()
    src, out = Path(model_path), Path(out)
    if out.suffix != ".onnx":
        raise InputError(f"output {out} must end in .onnx", "e.g. --out model.fp16.onnx")
    check_outputs([out, sidecar_path(out)], [src])
    model = load_onnx(src)
    _check_block_ops(spec.block_ops)
    if not any(i.data_type == 1 for i in model.graph.initializer):
        raise InputError(f"{src} has no float32 weights (already fp16 or quantized?)",
                         "convert the fp32 model written by attnvgg export")
    if spec.converter not in FP16_CONVERTERS:
        raise InputError(f"unknown fp16 converter {spec.converter!r}", f"use one of {', '.join(FP16_CONVERTERS)}")
    import onnx

    notes = []
    if spec.converter == "autocast":
        del model                       # AutoCast reads the file itself
        m16, block, clamped = _autocast(src, spec), list(spec.block_ops), 0
    else:
        m16, block, clamped = _onnxconverter(src, model, spec)
    if clamped:
        notes.append(f"{clamped} fp32 constants were outside the fp16 range and clamped (values below 1e-7 "
                     "become 1e-7, above 65504 become 65504)")
    if toposort(m16):
        notes.append("the converted graph was not in topological order; sorted it")
    try:
        onnx.checker.check_model(m16, full_check=True)
    except Exception as exc:
        raise StageError(f"the fp16 model fails onnx.checker ({first_line(exc)})",
                         "report this with the model; try --block-op for the op named") from exc
    for n in notes:
        log(f"note: {n}")
    side_path = sidecar_path(out)
    with atomic_path(out) as tmp:
        onnx.save(m16, str(tmp))
        del m16
        parity = check_parity(src, tmp, tol, spec.check_samples, spec.seed) if spec.check else None
        if side_path.exists():
            side_path.unlink()  # never pair the new model with an old sidecar
    fp32_nodes = _fp32_compute_nodes(out)
    result = Fp16Result(out, side_path, [op for op in block if op in spec.block_ops], spec.keep_io_types, clamped,
                        parity, round(time.perf_counter() - t0, 3), notes, fp32_nodes)
    converter = (f"modelopt AutoCast {_dist_version('nvidia-modelopt')} (convert_to_mixed_precision)"
                 if spec.converter == "autocast" else f"onnxconverter-common {_version('onnxconverter_common')}")
    sidecar.write(out, "fp16", {
        "converter": converter, "fp32_nodes": fp32_nodes,
        "block_ops": spec.block_ops, "converter_block_list": block, "keep_io_types": spec.keep_io_types,
        "clamped_values": clamped, "tolerance": tol, "parity_vs_fp32": parity, "seconds": result.seconds,
        "notes": notes,
    }, source=src)
    if parity is not None and not parity["passed"]:
        raise CheckFailed(f"fp16 parity vs {src.name} failed: {'; '.join(parity['why'])} (model kept at {out}, "
                          "sidecar says passed=false)", "try --block-op Softmax --block-op ReduceMean")
    return result


def _autocast(src: Path, spec: Fp16Spec):
    """ModelOpt AutoCast with its data-range fallback; its INFO logs kept off our streams."""
    import contextlib
    import io
    import logging

    autocast = require("modelopt.onnx.autocast", 'pip install -c constraints.txt -e ".[cpu]" (nvidia-modelopt)')
    loggers = [logging.getLogger(n) for n in ("modelopt.onnx", "modelopt.onnx.autocast")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with contextlib.redirect_stdout(io.StringIO()):
            return autocast.convert_to_mixed_precision(str(src), low_precision_type="fp16",
                                                       keep_io_types=spec.keep_io_types,
                                                       op_types_to_exclude=list(spec.block_ops) or None,
                                                       providers=["cpu"])
    except Exception as exc:
        raise StageError(f"ModelOpt AutoCast could not convert {src} to fp16 ({type(exc).__name__}: "
                         f"{first_line(exc, 150)})",
                         "report this with the model; or try --set fp16.converter=onnxconverter-common") from exc
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _onnxconverter(src: Path, model, spec: Fp16Spec):
    float16 = require("onnxconverter_common.float16", "pip install onnxconverter-common")
    block = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(spec.block_ops))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            m16 = float16.convert_float_to_float16(model, keep_io_types=spec.keep_io_types, op_block_list=block)
        except Exception as exc:
            raise StageError(f"onnxconverter-common could not convert {src} to fp16 ({type(exc).__name__}: "
                             f"{first_line(exc, 150)})", "report this with the model") from exc
    return m16, block, sum(1 for w in caught if "truncated" in str(w.message))


def _fp32_compute_nodes(path: Path) -> list[str]:
    """Conv/Gemm/MatMul/Softmax nodes whose output is float32 in the written file (kept fp32 by the converter)."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    try:
        m = onnx.shape_inference.infer_shapes(m)
    except Exception:  # noqa: BLE001 - the list is informative
        return []
    types = {v.name: v.type.tensor_type.elem_type for v in list(m.graph.value_info) + list(m.graph.output)}
    return [n.name for n in m.graph.node if n.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul", "Softmax")
            and types.get(n.output[0]) == onnx.TensorProto.FLOAT]


def _dist_version(dist: str) -> str:
    from importlib.metadata import version

    try:
        return version(dist)
    except Exception:  # noqa: BLE001
        return "unknown"


def _version(module: str) -> str:
    import importlib

    return getattr(importlib.import_module(module), "__version__", "unknown")


def check_parity(ref_path: Path, fp16_path: Path, tol: Tolerance, samples: int, seed: int) -> dict:
    """fp16 vs fp32 logits on seeded random N(0, 1) inputs (normalised images have that scale)."""
    import numpy as np

    with OnnxRuntimeRunner(ref_path, name="fp32") as ref, OnnxRuntimeRunner(fp16_path, name="fp16") as cand:
        meta = ref.input_metadata()
        if len(meta) != 1:
            raise InputError(f"{ref_path} has {len(meta)} inputs; the fp16 check feeds one image input",
                             "export the model with one input, or pass --no-check")
        m = meta[0]
        if any(d == -1 for d in m.shape[1:]):
            raise InputError(f"input {m.name} has dynamic dimensions {m.shape}; the check needs static C/H/W",
                             "export with a static input size, or pass --no-check")
        batch = m.shape[0] if m.shape[0] > 0 else max(1, samples)
        rng = np.random.default_rng(seed)
        inputs = [rng.standard_normal((batch, *m.shape[1:])).astype(np.float32)
                  for _ in range(-(-max(1, samples) // batch))]
        return compare_runners(ref, cand, inputs, tol)
