"""The ``tensorrt`` INT8 flavour: NVIDIA ModelOpt's ONNX PTQ placing Q/DQ, fed with attnvgg's own ranges.

Why ModelOpt: it encodes TensorRT's Q/DQ placement rules (no INT32 bias DQ, Q/DQ after the ReLU of
a Conv+ReLU, the residual Add's non-fused input, MHA and GEMV exclusions, an fp16 base), which
ONNX Runtime's quantizer does not (see ``trt_rules``). Why not its calibration: on the full-size
model at 224 px it took 96.7 s and 7.2 GiB for 64 images (FIELD-NOTES), against 27.7 s and 3.7 GiB
for attnvgg's streamed, restricted pass; and it has no cache.

So attnvgg keeps what it owns (data, preprocessing, one bounded calibration pass, the range
cache, the exclusion policy) and hands ModelOpt the ranges through its documented
``calibration_cache_path``: a TensorRT calibration cache (text: a header line, then
``tensor: <big-endian float32 scale as hex>``, the format TensorRT 10's calibrators write and
``modelopt.onnx.quantization.calib_utils.import_scales_from_calib_cache`` reads). ModelOpt's
``int8.quantize`` then still runs ONNX Runtime's ``quantize_static`` over the calibration reader
it is given and afterwards overwrites every cached activation scale (``qdq_utils.replace_scale_values``);
it quantizes only nodes with a cached input. We give it a one-batch reader of seeded N(0, 1)
inputs (it also uses that batch once to read MHA/GEMV shapes), so its own pass costs one
inference, and then prove the written model uses our ranges: every activation QuantizeLinear's
scale must equal the cached scale (``check_scales``), else the stage fails.

Scale convention: TensorRT's, ``amax / 127`` with ``amax = max(|min|, |max|)`` of our range (symmetric,
zero point 0). With an fp16 base ModelOpt stores Q/DQ scales as float16, so the check compares
in float16.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attnvgg.calibration import light_twin
from attnvgg.calibration.reader import OneBatch
from attnvgg.errors import MissingDependency, StageError

#: TensorRT calibration-cache headers by our method (TensorRT 10's calibrator names).
_HEADERS = {"minmax": "MinMaxCalibration", "entropy": "EntropyCalibration2", "percentile": "MinMaxCalibration"}
CACHE_VERSION_TAG = "TRT-100000"   # TensorRT reads the header's version tag only to warn on mismatch


def scales_from_ranges(ranges: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Symmetric int8 scales (amax / 127) as float32 values; a zero range gets scale 1 (ONNX Runtime's choice)."""
    import numpy as np

    out = {}
    for name, (lo, hi) in ranges.items():
        amax = max(abs(float(lo)), abs(float(hi)))
        out[name] = float(np.float32(amax / 127.0)) if amax > 0 and np.isfinite(amax) else 1.0
    return out


def write_calibration_cache(scales: dict[str, float], method: str, path: Path) -> Path:
    """TensorRT's calibration-cache text format: ``TRT-<version>-<Calibrator>`` then ``name: hex``."""
    bad = [n for n in scales if ": " in n or "\n" in n]
    if bad:
        raise StageError(f"tensor name {bad[0]!r} cannot be written to a TensorRT calibration cache",
                         "rename the tensor (': ' and newlines are the cache's separators)")
    lines = [f"{CACHE_VERSION_TAG}-{_HEADERS[method]}"]
    lines += [f"{name}: {struct.pack('!f', scale).hex()}" for name, scale in sorted(scales.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def read_calibration_cache(path: Path) -> dict[str, float]:
    """Our reader of the same format (ModelOpt's adds ``_scale`` to every name)."""
    out = {}
    for k, line in enumerate(Path(path).read_text().splitlines()):
        if k == 0 or not line:
            continue
        name, hexval = line.rsplit(": ", 1)
        out[name] = struct.unpack("!f", bytes.fromhex(hexval))[0]
    return out


class ProbeReader(OneBatch):
    """An ONNX Runtime CalibrationDataReader with one seeded N(0, 1) batch (normalised images have that scale).

    ModelOpt reads its first batch for shapes (MHA head size / sequence, GEMV detection) and runs
    ORT's calibrator over it; the resulting scales are replaced by ours, so its values do not matter,
    and no calibration image is read twice (a cache hit reads none).
    """

    def __init__(self, name: str, shape: tuple[int, ...], seed: int = 0):
        import numpy as np

        super().__init__({name: np.random.default_rng(seed).standard_normal(shape).astype(np.float32)})


@dataclass
class PtqInfo:
    """What the sidecar records about a ModelOpt run."""

    modelopt: str
    high_precision: str
    cache_entries: int
    scales_checked: int
    nodes_to_exclude: int
    light_twin: str = "off"

    def to_dict(self) -> dict:
        return {"quantizer": f"nvidia-modelopt {self.modelopt} (modelopt.onnx.quantization.quantize)",
                "high_precision": self.high_precision, "calibration_cache_entries": self.cache_entries,
                "activation_scales_from_attnvgg_ranges": self.scales_checked,
                "nodes_to_exclude": self.nodes_to_exclude, "light_twin": self.light_twin}


def exclusion_patterns(names: list[str]) -> list[str]:
    """ModelOpt matches ``nodes_to_exclude`` with ``re.match`` (a prefix regex): anchor and escape each name."""
    return [f"{re.escape(n)}$" for n in names]


def _modelopt_version() -> str:
    from importlib.metadata import version

    try:
        return version("nvidia-modelopt")
    except Exception:  # noqa: BLE001 - metadata is informative only
        return "unknown"


@contextlib.contextmanager
def _captured_logs():
    """ModelOpt logs to stdout (its handler is created per call on ``sys.stdout``); keep our streams clean."""
    buf = io.StringIO()
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)   # ORT's quantizer warns through the root logger
    # ModelOpt's own handler writes to the (redirected) stdout; its records must not also reach a
    # root handler some other library configured in this process (a study's second model printed
    # "ERROR:modelopt.onnx:Failed to get GPU count: NVML Shared Library Not Found" on stderr)
    mo_logger = logging.getLogger("modelopt")
    propagate = mo_logger.propagate
    mo_logger.propagate = False
    try:
        with contextlib.redirect_stdout(buf):
            yield buf
    finally:
        logging.disable(previous)
        mo_logger.propagate = propagate


@contextlib.contextmanager
def ort_state_preserved():
    """Undo ModelOpt's process-wide changes to ONNX Runtime's quantization package on exit.

    ``modelopt.onnx.quantization.ort_utils.configure_ort`` deletes op types (Relu, Softmax,
    Reshape, ...) from ORT's ``QDQRegistry``/``QLinearOpsRegistry`` and ``ort_patching.patch_ort_modules``
    replaces calibrator and quantizer methods, for the rest of the process. Left alone, that would
    change our own range collection (its cache key names the calibrated tensors) and the cpu
    flavour built by ORT's quantizer in the same ``attnvgg run``. So the registries and the class
    and module attributes it touches are saved before and put back after.
    """
    from onnxruntime.quantization import base_quantizer, calibrate, qdq_quantizer, registry

    classes = [calibrate.CalibraterBase, calibrate.MinMaxCalibrater, calibrate.HistogramCalibrater,
               calibrate.HistogramCollector, calibrate.EntropyCalibrater, calibrate.PercentileCalibrater,
               calibrate.DistributionCalibrater, qdq_quantizer.QDQQuantizer, base_quantizer.BaseQuantizer]
    saved_classes = [(cls, dict(vars(cls))) for cls in classes]
    registries = [registry.QDQRegistry, registry.QLinearOpsRegistry, registry.IntegerOpsRegistry]
    saved_registries = [dict(r) for r in registries]
    saved_module = {k: v for k, v in vars(calibrate).items() if callable(v)}
    try:
        yield
    finally:
        for cls, before in saved_classes:
            now = dict(vars(cls))
            for name, value in before.items():
                if now.get(name) is not value:
                    setattr(cls, name, value)
            for name in now.keys() - before.keys():
                delattr(cls, name)
        for reg, before in zip(registries, saved_registries):
            reg.clear()
            reg.update(before)
        for name, value in saved_module.items():
            if getattr(calibrate, name, None) is not value:
                setattr(calibrate, name, value)


def quantize(work_src: Path, tmp: Path, ranges: dict[str, tuple[float, float]], method: str,
             exclude: list[str], input_name: str, probe_shape: tuple[int, ...], high_precision: str,
             external_data: bool = False, attention_excluded: bool = False,
             light: bool = True, source: Any = None) -> tuple[Any, PtqInfo]:
    """Q/DQ model of ``work_src`` by ModelOpt with our ranges; (ModelProto, info). Raises StageError.

    ``attention_excluded``: our policy already keeps every attention MatMul in float, so ModelOpt's
    own MHA analysis (``disable_mha_qdq=False`` runs one probe inference to read head sizes and
    sequence lengths, then may only exclude the same MatMuls) is skipped with ``disable_mha_qdq``:
    same graph, one inference session fewer (-27 % of ModelOpt's time at width 0.5, 224 px).

    ``light``: ModelOpt quantizes ``light_twin``'s copy with the classifier's hidden widths cut and
    the full weights are put back (ModelOpt's time and memory follow the model's bytes); where the
    twin's answer does not carry over (a cut Gemm came back quantized) the full model is quantized.
    """
    import onnx

    try:
        from modelopt.onnx.quantization import quantize as mo_quantize
    except ImportError as exc:  # the cpu extra installs it; a partial install names what is missing
        raise MissingDependency(f"NVIDIA ModelOpt's ONNX quantizer cannot be imported ({exc})",
                                'pip install -c constraints.txt -e ".[cpu]" (nvidia-modelopt and its ONNX helpers)') from exc
    scales = scales_from_ranges(ranges)
    cache = write_calibration_cache(scales, method, tmp / "calibration.cache")
    out = tmp / "modelopt.onnx"
    call = dict(cache=cache, exclude=exclude, input_name=input_name, probe_shape=probe_shape,
                high_precision=high_precision, attention_excluded=attention_excluded)
    twin_note = "off" if not light else "not used: no Gemm -> Gemm chain to cut"
    model = None
    if light:
        source = source if source is not None else onnx.load(str(work_src))
        twin, cuts = light_twin.make_twin(source)
        if cuts:
            twin_path = tmp / "twin.onnx"
            onnx.save(twin, str(twin_path))
            del twin
            _run_modelopt(mo_quantize, twin_path, out, external_data=False, **call)
            model = light_twin.restore(onnx.load(str(out)), source, cuts)
            twin_note = (f"{len(cuts)} Gemm chain(s) cut to {light_twin.HIDDEN} wide for ModelOpt, full weights restored"
                         if model is not None else
                         "ModelOpt quantized a cut Gemm: the full model was quantized instead")
            out.unlink()
            twin_path.unlink()
    if model is None:
        _run_modelopt(mo_quantize, Path(work_src), out, external_data=external_data, **call)
        model = onnx.load(str(out))
    problems, checked = check_scales(model, scales)
    if problems:
        raise StageError(f"the ModelOpt model does not use attnvgg's ranges: {problems[0]}"
                         + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
                         "report this with the model and the ModelOpt version")
    return model, PtqInfo(_modelopt_version(), high_precision, len(scales), checked, len(exclude), twin_note)


def _run_modelopt(mo_quantize: Any, src: Path, out: Path, *, cache: Path, exclude: list[str], input_name: str,
                  probe_shape: tuple[int, ...], high_precision: str, attention_excluded: bool,
                  external_data: bool) -> None:
    """One ``modelopt.onnx.quantization.quantize`` call writing ``out``; its logs kept off our streams."""
    with _captured_logs() as buf, ort_state_preserved():
        try:
            mo_quantize(
                str(src), quantize_mode="int8", calibration_data_reader=ProbeReader(input_name, probe_shape),
                calibration_cache_path=str(cache), calibration_method="max", calibration_eps=["cpu"],
                nodes_to_exclude=exclusion_patterns(exclude), high_precision_dtype=high_precision,
                disable_mha_qdq=attention_excluded,
                use_external_data_format=external_data, output_path=str(out), log_level="WARNING")
        except Exception as exc:
            tail = [ln for ln in buf.getvalue().splitlines() if " - ERROR - " in ln][-1:]
            raise StageError(f"ModelOpt could not quantize the model ({type(exc).__name__}: "
                             f"{(str(exc).splitlines() or [''])[0][:200]}){' ' + tail[0][:160] if tail else ''}",
                             "check the model with attnvgg validate; try --exclude-preset or --flavour cpu") from exc
    if not out.is_file():
        raise StageError("ModelOpt wrote no model (it skips a graph that already has Q/DQ nodes)",
                         "calibrate the fp32 model written by attnvgg export/simplify")


def check_scales(model: Any, scales: dict[str, float]) -> tuple[list[str], int]:
    """Every activation QuantizeLinear's scale equals our cached scale (compared in the scale's own dtype).

    Returns (problems, number of activation scales checked). A QuantizeLinear on a tensor we have
    no range for, or with another value, is a problem: its scale came from ModelOpt's own pass.
    """
    import numpy as np
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    constants = {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    producers = {o: n for n in model.graph.node for o in n.output}
    problems, checked = [], 0
    for n in model.graph.node:
        if n.op_type != "QuantizeLinear":
            continue
        x = n.input[0]
        if x in inits or x in constants:
            continue          # a weight: ModelOpt's per-channel weight scales are its own, by design
        src = x
        p = producers.get(src)
        while p is not None and p.op_type == "Cast" and src not in scales:  # fp16 base: Q reads a Cast of our tensor
            src = p.input[0]
            p = producers.get(src)
        if src not in scales:
            problems.append(f"QuantizeLinear {n.name or n.output[0]} quantizes {x}, which attnvgg did not calibrate")
            continue
        init = inits.get(n.input[1])
        if init is None:
            problems.append(f"QuantizeLinear {n.name or n.output[0]} has no constant scale")
            continue
        got = numpy_helper.to_array(init)
        want = np.asarray(scales[src], dtype=np.float32).astype(got.dtype)
        if got.size != 1 or not np.array_equal(got.reshape(()), want):
            problems.append(f"QuantizeLinear {n.name or n.output[0]} on {x} has scale {got.reshape(-1)[:1]} "
                            f"instead of {want} (amax/127 of attnvgg's range)")
            continue
        checked += 1
    return problems, checked
