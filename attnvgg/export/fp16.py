"""The FP16 variant: an FP16-typed ONNX graph, checked against the fp32 graph it came from.

Precision lives in the file (TensorRT 11 has no FP16 builder flag), so FP16 means float16
weights and activations in the graph. onnxconverter-common does the conversion and keeps the
graph in topological order (``onnxruntime.transformers.float16``'s output fails onnx.checker's
order check); we still sort defensively and run the full checker before anything is written.
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
from attnvgg.artifacts import atomic_path, onnx_hash, sidecar_path, write_json
from attnvgg.config import Fp16Spec, Tolerance, default_tolerances
from attnvgg.export.graph import load_onnx
from attnvgg.errors import CheckFailed, InputError, StageError, require


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
    if src.exists() and out.resolve() == src.resolve():
        raise InputError(f"--out {out} would overwrite the source model", "choose another output path")
    model = load_onnx(src)
    _check_block_ops(spec.block_ops)
    if not any(i.data_type == 1 for i in model.graph.initializer):
        raise InputError(f"{src} has no float32 weights (already fp16 or quantized?)",
                         "convert the fp32 model written by attnvgg export")
    float16 = require("onnxconverter_common.float16", "pip install onnxconverter-common")
    import onnx

    from attnvgg.calibration.graph import toposort

    block = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(spec.block_ops))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            m16 = float16.convert_float_to_float16(model, keep_io_types=spec.keep_io_types, op_block_list=block)
        except Exception as exc:
            raise StageError(f"onnxconverter-common could not convert {src} to fp16 ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0][:150] if str(exc) else ''})", "report this with the model") from exc
    clamped = sum(1 for w in caught if "truncated" in str(w.message))
    notes = []
    if clamped:
        notes.append(f"{clamped} fp32 constants were outside the fp16 range and clamped (values below 1e-7 "
                     "become 1e-7, above 65504 become 65504)")
    if toposort(m16):
        notes.append("the converted graph was not in topological order; sorted it")
    try:
        onnx.checker.check_model(m16, full_check=True)
    except Exception as exc:
        raise StageError(f"the fp16 model fails onnx.checker ({str(exc).splitlines()[0][:200]})",
                         "report this with the model; try --block-op for the op named") from exc
    for n in notes:
        log(f"note: {n}")
    sidecar = sidecar_path(out)
    with atomic_path(out) as tmp:
        onnx.save(m16, str(tmp))
        del m16
        parity = check_parity(src, tmp, tol, spec.check_samples, spec.seed) if spec.check else None
        if sidecar.exists():
            sidecar.unlink()  # never pair the new model with an old sidecar
    result = Fp16Result(out, sidecar, [op for op in block if op in spec.block_ops], spec.keep_io_types, clamped,
                        parity, round(time.perf_counter() - t0, 3), notes)
    write_json(sidecar, {
        "precision": "fp16", "source": str(src), "source_onnx_hash": onnx_hash(src), "onnx_hash": onnx_hash(out),
        "converter": f"onnxconverter-common {_version('onnxconverter_common')}",
        "block_ops": spec.block_ops, "converter_block_list": block, "keep_io_types": spec.keep_io_types,
        "clamped_values": clamped, "tolerance": tol, "parity_vs_fp32": parity, "seconds": result.seconds,
        "notes": notes,
    })
    if parity is not None and not parity["passed"]:
        raise CheckFailed(f"fp16 parity vs {src.name} failed: {'; '.join(parity['why'])} (model kept at {out}, "
                          "sidecar says passed=false)", "try --block-op Softmax --block-op ReduceMean")
    return result


def _version(module: str) -> str:
    import importlib

    return getattr(importlib.import_module(module), "__version__", "unknown")


def check_parity(ref_path: Path, fp16_path: Path, tol: Tolerance, samples: int, seed: int) -> dict:
    """fp16 vs fp32 logits on seeded random N(0, 1) inputs (normalised images have that scale)."""
    import numpy as np

    from attnvgg.runners.onnxruntime import OnnxRuntimeRunner
    from attnvgg.validate.metrics import compare, passes

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
        refs, outs = [], []
        done = 0
        while done < max(1, samples):
            x = rng.standard_normal((batch, *m.shape[1:])).astype(np.float32)
            refs.append(next(iter(ref.infer({m.name: x}).values())))
            outs.append(next(iter(cand.infer({m.name: x}).values())).astype(np.float32))
            done += batch
    r, o = np.concatenate(refs), np.concatenate(outs)
    metrics = compare(r, o, tol)
    ok, why = passes(metrics, tol)
    return {**metrics.to_dict(), "passed": ok, "why": why}
