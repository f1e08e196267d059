"""The calibrate stage: fp32 ONNX + calibration images -> explicit Q/DQ INT8 ONNX + sidecar.

attnvgg owns the ranges: collected one batch at a time (bounded memory) by ONNX Runtime's
calibrators restricted to the tensors that may be quantized, and kept in a calibration cache.
Two quantizers place Q/DQ from those ranges:

* ``tensorrt`` flavour: NVIDIA ModelOpt's ONNX PTQ (``modelopt_ptq``), which encodes TensorRT's
  placement rules (no INT32 bias DQ, Q/DQ after Conv+ReLU, fp16 base by default), fed with our
  ranges as a TensorRT calibration cache; the written graph must pass ``trt_rules``.
* ``cpu`` flavour: ONNX Runtime's static quantizer (uint8 activations, its CPU kernels' format),
  fed through ``quantize_static(calibration_cache_path=...)``.

Both keep the exclusion policy (attention in float), verified on the written graph, and write
atomically. A cache hit and a fresh calibration quantize through the same code.
"""

from __future__ import annotations

import contextlib
import gc
import io
import logging
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from attnvgg import console, sidecar
from attnvgg.console import note
from attnvgg.artifacts import atomic_path, check_outputs, external_data_path, onnx_hash, scratch_prefix, sha256_json, sidecar_path
from attnvgg.calibration import cache as calib_cache
from attnvgg.calibration import modelopt_ptq, trt_rules
from attnvgg.calibration.graph import GraphIndex
from attnvgg.calibration.policy import (
    ExclusionPlan,
    detach_from_qdq,
    plan_exclusions,
    policy_violations,
    quantized_nodes,
)
from attnvgg.calibration.reader import Dataset, OneBatch, checked_batches
from attnvgg.config import CALIB_FLAVOURS, CALIB_METHODS, HIGH_PRECISIONS, CalibrateSpec, default_tolerances
from attnvgg.onnxgraph import InputShape, ensure_node_names, load_onnx, model_input, toposort
from attnvgg.errors import AttnvggError, InputError, StageError, first_line, require
from attnvgg.runners.compare import compare_runners
from attnvgg.runners.onnxruntime import OnnxRuntimeRunner


@dataclass
class CalibrationResult:
    output: Path
    sidecar: Path
    method: str
    flavour: str
    images: int
    batch_size: int
    cache_hit: bool
    cache_entry: str | None
    calibration_s: float          # range collection (0 on a cache hit)
    total_s: float
    excluded: list[dict] = field(default_factory=list)
    quantized: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    parity: dict | None = None
    timings: dict[str, float] = field(default_factory=dict)   # seconds per phase

    def summary_line(self) -> str:
        how = "cache hit" if self.cache_hit else f"calibrated in {self.calibration_s:.1f} s"
        check = (f"; vs fp32 on {self.parity['samples']} images: cosine {self.parity['cosine']:.4f}, "
                 f"top-1 agreement {self.parity['top1_agreement']:.0%}" if self.parity else "")
        return (f"wrote {self.output} (int8 {self.flavour}, {self.method}, {self.images} images, {how}; "
                f"{len(self.quantized)} nodes quantized, {len(self.excluded)} kept in float{check})")


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


def check_spec(spec: CalibrateSpec) -> None:
    """Refuse calibration settings that cannot be honoured (before any data is read)."""
    if spec.method not in CALIB_METHODS:
        raise InputError(f"unknown calibration method {spec.method!r}", f"use one of {', '.join(CALIB_METHODS)}")
    if spec.flavour not in CALIB_FLAVOURS:
        raise InputError(f"unknown flavour {spec.flavour!r}", f"use one of {', '.join(CALIB_FLAVOURS)}")
    if spec.batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {spec.batch_size}", "e.g. --batch-size 8")
    if spec.num_images is not None and spec.num_images < 1:
        raise InputError(f"--num-images must be at least 1, got {spec.num_images}", "or leave it out to use every image")
    if spec.num_bins is not None and (isinstance(spec.num_bins, bool) or spec.num_bins < 2):
        raise InputError(f"--num-bins must be at least 2, got {spec.num_bins}",
                         "e.g. --num-bins 2048, or leave it out for ONNX Runtime's default")
    if spec.check_samples < 0:
        raise InputError(f"--check-samples must be >= 0, got {spec.check_samples}", "e.g. --check-samples 16, or 0")
    if not 0 < spec.percentile <= 100:
        raise InputError(f"percentile must be in (0, 100], got {spec.percentile}", "e.g. --percentile 99.999")
    if spec.high_precision is not None and spec.high_precision not in HIGH_PRECISIONS:
        raise InputError(f"unknown high precision {spec.high_precision!r}", f"use one of {', '.join(HIGH_PRECISIONS)}")
    if spec.flavour == "cpu" and spec.high_precision == "fp16":
        raise InputError("--high-precision fp16 applies to the tensorrt flavour only (the cpu flavour keeps an fp32 base "
                         "for ONNX Runtime's CPU kernels)", "drop --high-precision or use --flavour tensorrt")
    if spec.flavour == "tensorrt" and not spec.per_channel:
        raise InputError("--per-tensor applies to the cpu flavour only: ModelOpt's TensorRT PTQ uses per-channel "
                         "weight scales", "drop --per-tensor or use --flavour cpu")


def high_precision(spec: CalibrateSpec) -> str:
    """The float type of the unquantized part: fp16 for the tensorrt flavour unless asked, fp32 for cpu."""
    if spec.flavour == "cpu":
        return "fp32"
    return spec.high_precision or "fp16"


def _plan_batches(shape: InputShape, available: int, spec: CalibrateSpec, notes: list[str]) -> tuple[int, int]:
    """How many images and which batch size; documented adjustments are reported, not silent."""
    if available == 0:
        raise InputError("the calibration set has no images", "point --data at a folder or file with images")
    n = spec.num_images or available
    if n > available:
        raise InputError(f"--num-images {n} but the calibration set has only {available} images",
                         f"pass --num-images {available} or a larger set")
    batch = spec.batch_size
    if shape.batch > 0:
        if batch != shape.batch:
            notes.append(f"the model has a static batch of {shape.batch}; calibrating with batch {shape.batch} "
                         f"instead of {batch}")
            batch = shape.batch
        if n < batch:
            raise InputError(f"{n} calibration images but the model's static batch is {batch}",
                             f"give at least {batch} images or re-export with a dynamic batch")
        if n % batch:
            notes.append(f"dropping the last {n % batch} images: the model's static batch {batch} does not divide {n}")
            n -= n % batch
    elif n < batch:
        notes.append(f"only {n} calibration images, fewer than the batch size {batch}; using batch {n}")
        batch = n
    return n, batch


def _op_types() -> list[str]:
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return sorted(set(QLinearOpsRegistry) | set(QDQRegistry))


def _tensors_to_calibrate(model: Any, op_types: list[str], protected: set[str]) -> set[str]:
    """Inputs/outputs of the nodes ORT will quantize: never the attention maps of excluded nodes.

    ORT's calibrator would collect every tensor of every quantizable op type, excluded nodes
    included; at 224 px that means three 3136 x 3136 maps per image for block 3 alone.
    """
    # No type inference here (it would copy the 556 MB model): ORT's calibrator keeps only the
    # float tensors of this superset, and the superset is a deterministic cache key.
    idx = GraphIndex.build(model)
    wanted = set()
    for n in idx.nodes():
        if n.op_type in op_types and n.name not in protected:
            wanted.update(t for t in list(n.input) + list(n.output)
                          if t and t not in idx.constants and idx.is_float(t))
    return wanted


def _stage_source(src: Path, model: Any, tmp: Path, renamed: bool, copy: bool = False) -> Path:
    """A path ORT may read and write beside (it writes ``<name>-inferred.onnx`` next to its input).

    A symlink to the source, or, when nodes had to be named for the exclusion list, a copy with
    those names (the quantizer addresses nodes by name). ``copy``: a real copy of the ``.onnx``
    file (external data stays linked): ModelOpt runs ``onnx.shape_inference.infer_shapes_path`` on
    its input in place, which through a symlink would rewrite the user's source model.
    """
    import onnx

    if renamed:
        dest = tmp / "source.onnx"
        onnx.save(model, str(dest))
        return dest
    dest = tmp / src.name
    if copy:
        import shutil

        shutil.copyfile(src, dest)
    else:
        dest.symlink_to(src.resolve())
    data = external_data_path(src)
    if data.exists():
        (tmp / data.name).symlink_to(data.resolve())
    # other external-data layouts are referenced relative to the model's folder
    for init in model.graph.initializer:
        for entry in init.external_data:
            if entry.key == "location" and not (tmp / entry.value).exists():
                (tmp / entry.value).symlink_to((src.parent / entry.value).resolve())
    return dest


def _collect_ranges(path: Path, spec: CalibrateSpec, shape: InputShape, batches, wanted: set[str],
                    op_types: list[str], tmp: Path) -> dict[str, tuple[float, float]]:
    import numpy as np
    from onnxruntime.quantization import calibrate as C

    base = {"minmax": C.MinMaxCalibrater, "entropy": C.EntropyCalibrater,
            "percentile": C.PercentileCalibrater}[spec.method]

    class Restricted(base):  # type: ignore[misc, valid-type]
        def select_tensors_to_calibrate(self, model):  # noqa: ANN001 - ORT's signature
            tensors, value_infos = super().select_tensors_to_calibrate(model)
            return tensors & wanted, value_infos

        def create_inference_session(self):
            # ORT's calibrators run the augmented graph with every graph optimisation off. Each
            # calibrated tensor is read by the ReduceMin/ReduceMax pair augment_graph adds, so no
            # optimisation can remove it; with them on (fusions, NCHWc convolutions) the ranges are
            # the same to 1e-6 relative (measured: 75 tensors, full-size model at 224 px, 64 images,
            # max relative difference 9.0e-7) and the pass is 24 % faster (19.5 s -> 14.8 s).
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
            self.infer_session = onnxruntime.InferenceSession(
                self.augmented_model_path, sess_options=options, providers=self.execution_providers)

    kwargs: dict[str, Any] = {}
    if spec.method == "entropy":   # create_calibrator's defaults, so cached and fresh runs agree with ORT
        kwargs = {"num_bins": spec.num_bins or 128, "num_quantized_bins": 128}
    elif spec.method == "percentile":
        kwargs = {"num_bins": spec.num_bins or 2048, "percentile": spec.percentile, "symmetric": True}
    cal = Restricted(path, op_types_to_calibrate=op_types,
                     augmented_model_path=str(tmp / "augmented.onnx"), **kwargs)
    cal.augment_graph()
    cal.create_inference_session()
    # The calibrator keeps the augmented ModelProto (all weights, 556 MB at full size) but only
    # uses the session from here on; dropping it lowers the peak by that much.
    cal.model = None
    gc.collect()
    with contextlib.redirect_stdout(io.StringIO()):  # the histogram collector prints per call
        for x in batches:
            cal.collect_data(OneBatch({shape.name: x}))
        data = cal.compute_data()
    ranges = {}
    for name, td in data.items():
        lo, hi = td.range_value
        ranges[name] = (float(np.min(lo)), float(np.max(hi)))
    del cal, data
    gc.collect()
    return ranges


def _ort_cache_file(ranges: dict[str, tuple[float, float]], method: str, dest: Path) -> Any:
    import numpy as np
    from onnxruntime.quantization import CalibrationMethod, TensorData, TensorsData, save_tensors_data

    enum = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[method]
    data = {k: TensorData(lowest=np.array(lo, dtype=np.float32), highest=np.array(hi, dtype=np.float32))
            for k, (lo, hi) in ranges.items()}
    save_tensors_data(TensorsData(enum, data), dest)
    return enum


@contextlib.contextmanager
def _quiet_ort_logging():
    """ORT's quantizer warns through the root logger ("consider pre-processing"); keep stderr clean."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def _check_out(src: Path, out: Path) -> None:
    if out.suffix != ".onnx":
        raise InputError(f"output {out} must end in .onnx", "e.g. --out model.int8.onnx")
    check_outputs([out, sidecar_path(out)], [src])


class RangeSession:
    """A source model staged for ORT's quantizer together with its tensor ranges.

    One calibration pass (or a cache hit) yields ranges from which any number of Q/DQ variants
    are built: ``calibrate`` builds one, the mixed-precision search (``calibration.mixed``) one per
    candidate exclusion set, so the search never recalibrates. Use as a context manager: the
    staged source lives in a temporary folder until the session closes.

    Order of use: construct (validates, loads ``self.model`` for planning), ``collect(protected)``
    (ranges of every tensor a node outside ``protected`` may quantize; frees ``self.model``),
    then ``build(plan)`` any number of times and ``write(...)`` once per output.
    """

    def __init__(self, model_path: str | Path, dataset: Dataset, spec: CalibrateSpec,
                 log: Callable[[str], None] = note, progress: bool = True):
        check_spec(spec)
        self.t_start = time.perf_counter()
        self.timings: dict[str, float] = {}     # seconds per phase, summed over repeated phases
        self._last = self.t_start
        self.spec = spec
        self.dataset = dataset
        self.log = log
        self.progress = progress
        self.notes: list[str] = []
        self.src = Path(model_path)
        self.model: Any = load_onnx(self.src)
        require("onnxruntime", 'pip install "attnvgg[cpu]"')
        self.shape = model_input(self.model)
        try:
            available = len(dataset)
        except TypeError as exc:  # pragma: no cover - every Dataset has a length
            raise InputError("the calibration set has no length", "pass a Dataset from attnvgg.data") from exc
        adjustments: list[str] = []
        self.n_images, self.batch = _plan_batches(self.shape, available, spec, adjustments)
        for msg in adjustments:
            self.note(msg)
        self.renamed = ensure_node_names(self.model) > 0
        self._tmp: tempfile.TemporaryDirectory | None = None
        self.work_src: Path | None = None
        self.ranges: dict[str, tuple[float, float]] | None = None
        self.key: calib_cache.CacheKey | None = None
        self.found: calib_cache.Lookup | None = None
        self.calibration_s = 0.0
        self.passes = 0          # calibration passes this session ran (0 on a cache hit, else 1)
        self.ptq: modelopt_ptq.PtqInfo | None = None      # the last ModelOpt run (tensorrt flavour)
        self.trt_facts: dict | None = None                # trt_rules.graph_facts of the last tensorrt build
        self._external: bool | None = None

    def mark(self, phase: str) -> None:
        """Charge the time since the previous mark to ``phase``."""
        now = time.perf_counter()
        self.timings[phase] = round(self.timings.get(phase, 0.0) + now - self._last, 3)
        self._last = now

    def note(self, msg: str) -> None:
        self.notes.append(msg)
        self.log(f"note: {msg}")

    def __enter__(self) -> "RangeSession":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    @property
    def tmp(self) -> Path:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix=scratch_prefix("calib"))
        return Path(self._tmp.name)

    @property
    def cache_hit(self) -> bool:
        return self.found is not None and self.found.ranges is not None

    def collect(self, protected: set[str]) -> dict[str, tuple[float, float]]:
        """Ranges of every tensor a node outside ``protected`` may quantize: from the cache, else one pass."""
        import onnxruntime

        spec, src = self.spec, self.src
        op_types = _op_types()
        wanted = _tensors_to_calibrate(self.model, op_types, protected)
        settings: dict[str, Any] = {"num_images": self.n_images}
        if spec.method != "minmax":
            settings.update(batch_size=self.batch, num_bins=spec.num_bins)
        if spec.method == "percentile":
            settings["percentile"] = spec.percentile
        self.mark("load_and_plan")
        self.key = key = calib_cache.CacheKey(
            model_path=str(src.resolve()), model_hash=onnx_hash(src), data_hash=self.dataset.content_hash(),
            method=spec.method, settings=settings, tensors_hash=sha256_json(sorted(wanted)),
            onnxruntime=onnxruntime.__version__)
        cache_dir = Path(spec.cache_dir).expanduser() if spec.cache_dir else calib_cache.default_cache_dir()
        self.found = found = calib_cache.lookup(cache_dir, key) if spec.cache else None
        self.mark("hash_and_cache_lookup")
        if found and found.note:
            if found.bad:
                self.notes.append(found.note)
                self.log(f"warning: {found.note}")
            else:
                self.note(found.note)
        self.work_src = _stage_source(src, self.model, self.tmp, self.renamed, copy=spec.flavour == "tensorrt")
        self.model = None  # ORT loads its own copies; the source graph is reloaded for the policy step
        gc.collect()
        if found is not None and found.ranges is not None:
            self.ranges = found.ranges
            self.log(f"calibration cache hit: {found.path}")
            self.mark("calibration")
            return self.ranges
        t0 = time.perf_counter()
        batches = checked_batches(self.dataset, self.shape, self.batch, self.n_images)
        if self.progress:
            batches = console.progress(batches, -(-self.n_images // self.batch), f"calibrate ({spec.method})")
        try:
            with _quiet_ort_logging():
                ranges = _collect_ranges(self.work_src, spec, self.shape, batches, wanted, op_types, self.tmp)
        except InputError:
            raise
        except Exception as exc:
            raise StageError(f"calibration failed in ONNX Runtime ({type(exc).__name__}: "
                             f"{first_line(exc)})",
                             "check the model runs with attnvgg validate") from exc
        self.calibration_s = time.perf_counter() - t0
        self.passes += 1
        problem = calib_cache.range_problem(ranges)
        if spec.cache and problem:
            self.note(f"not caching these ranges ({problem})")
        elif spec.cache:
            try:
                calib_cache.store(cache_dir / key.slot(), key, ranges, self.calibration_s, self.dataset.describe())
            except (AttnvggError, OSError) as exc:   # the cache is optional: never fail the calibration for it
                why = exc.one_line() if isinstance(exc, AttnvggError) else (exc.strerror or type(exc).__name__)
                self.log(f"warning: cannot write the calibration cache in {cache_dir} ({why}); "
                         "continuing without caching (pass --cache-dir DIR or --no-cache)")
        self.ranges = ranges
        self.mark("calibration")
        return ranges

    def _external_data(self) -> bool:
        if self._external is None:
            self._external = _has_external_data(self.work_src)
        return self._external

    def build(self, plan: ExclusionPlan, check: bool = True) -> tuple[Any, int, list[dict]]:
        """(Q/DQ model, inputs rewired to float, quantized nodes) for one exclusion plan, from the ranges.

        The policy (``plan`` in float, verified on the written graph) and, for the tensorrt flavour,
        TensorRT's graph rules (``trt_rules``) are always enforced; ``check`` adds onnx.checker's
        full check, which the search skips for candidates it only evaluates.
        """
        import onnx

        if self.ranges is None or self.work_src is None:
            raise RuntimeError("RangeSession.collect() must run before build()")
        if self.spec.flavour == "tensorrt":
            # parsed once (0.9 s at full size): the light twin and the rewiring read it, and it
            # tells whether the weights are external
            source = onnx.load(str(self.work_src), load_external_data=False)
            if self._external is None:
                self._external = any(i.data_location == onnx.TensorProto.EXTERNAL for i in source.graph.initializer)
            if self._external:
                from onnx.external_data_helper import load_external_data_for_model

                load_external_data_for_model(source, str(Path(self.work_src).parent))
            quantized_model, self.ptq = modelopt_ptq.quantize(
                self.work_src, self.tmp, self.ranges, self.spec.method, plan.names, self.shape.name,
                (self.shape.batch if self.shape.batch > 0 else 1, *self.shape.chw), high_precision(self.spec),
                external_data=self._external_data(), attention_excluded=plan.preset in ("attention", "attention+gates"),
                source=source)
            rewired = 0
            if plan.names and policy_violations(quantized_model, plan.names):
                # ModelOpt shares one Q/DQ among a tensor's consumers (DedicatedQDQPair=False), so an
                # excluded node next to a quantized one (the residual Add reading the block input the
                # query/key/value convs quantize) reads the DequantizeLinear: rewire it to the tensor.
                rewired = detach_from_qdq(quantized_model, plan.names, source)
            del source
        else:
            quantized_model = _quantize(self.work_src, self.tmp, self.ranges, self.spec, plan.names)
            if plan.names:
                source = onnx.load(str(self.work_src))
                rewired = detach_from_qdq(quantized_model, plan.names, source)
                del source
            else:
                rewired = 0
        self.mark("quantize")
        toposort(quantized_model)
        idx = GraphIndex.build(quantized_model, infer_types=True)
        violations = policy_violations(quantized_model, plan.names, idx)
        if violations:
            raise StageError(f"exclusion policy {plan.preset!r} violated: {violations[0]}"
                             + (f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""),
                             "report this with the model; try --keep-float none to see the raw quantization")
        if self.spec.flavour == "tensorrt":
            broken = trt_rules.check_graph(quantized_model, base=high_precision(self.spec), idx=idx)
            if broken:
                raise StageError(f"the tensorrt-flavour model breaks a TensorRT graph rule: {trt_rules.summary(broken)}",
                                 "report this with the model; no file was written")
            self.trt_facts = trt_rules.graph_facts(quantized_model, idx)
        qnodes = quantized_nodes(quantized_model, idx)
        self.mark("policy")
        if check:
            try:
                onnx.checker.check_model(quantized_model, full_check=True)
            except Exception as exc:
                raise StageError(f"the quantized model fails onnx.checker ({first_line(exc)})",
                                 "report this with the model") from exc
            self.mark("checker")
        return quantized_model, rewired, qnodes

    def write(self, quantized_model: Any, plan: ExclusionPlan, rewired: int, qnodes: list[dict], out: Path,
              extra_sidecar: dict | None = None) -> CalibrationResult:
        """Save the model atomically, check it against fp32 on calibration images, write its sidecar."""
        import onnx
        import onnxruntime

        spec, src, key = self.spec, self.src, self.key
        side_path = sidecar_path(out)
        with atomic_path(out) as tmp_out:
            onnx.save(quantized_model, str(tmp_out))
            del quantized_model
            self.mark("save")
            parity = _quick_parity(src, tmp_out, self.dataset, self.shape, spec.check_samples, self.batch)
            self.mark("parity")
            if side_path.exists():
                side_path.unlink()  # never pair the new model with an old sidecar
        total_s = time.perf_counter() - self.t_start
        if parity and not parity.get("passed", True):
            self.note(f"INT8 vs fp32 on {parity['samples']} calibration images: cosine {parity['cosine']:.4f}, "
                      f"top-1 agreement {parity['top1_agreement']:.0%} (below the int8 tolerance; attnvgg validate gates this)")
        found = self.found
        result = CalibrationResult(
            output=out, sidecar=side_path, method=spec.method, flavour=spec.flavour, images=self.n_images,
            batch_size=self.batch, cache_hit=self.cache_hit, cache_entry=str(found.path) if found is not None else None,
            calibration_s=round(self.calibration_s, 3), total_s=round(total_s, 3),
            excluded=[asdict(p) for p in plan.nodes], quantized=qnodes, notes=list(self.notes), parity=parity,
            timings=dict(self.timings))
        sidecar.write(out, "int8", {
            "quant_format": "qdq", "flavour": spec.flavour, "method": spec.method,
            "data": self.dataset.describe(), "data_hash": key.data_hash, "images": self.n_images,
            "batch_size": self.batch,
            "activation_type": "int8" if spec.flavour == "tensorrt" else "uint8", "weight_type": "int8",
            "symmetric_activations": spec.flavour == "tensorrt", "per_channel": spec.per_channel,
            "high_precision": high_precision(spec),
            "quantizer": (self.ptq.to_dict() if spec.flavour == "tensorrt" and self.ptq else
                          {"quantizer": f"onnxruntime {onnxruntime.__version__} (quantize_static)"}),
            "tensorrt_rules": ({"checked": list(trt_rules.RULES), "passed": True, **(self.trt_facts or {})}
                               if spec.flavour == "tensorrt" else None),
            "exclusion": {**plan.to_dict(), "rewired_inputs": rewired},
            "quantized_nodes": qnodes, "quantized_by_op": _count(qnodes),
            "calibration_s": result.calibration_s, "total_s": result.total_s, "timings_s": dict(self.timings),
            "cache": {"hit": result.cache_hit, "entry": result.cache_entry},
            "parity_vs_fp32": parity, "notes": list(self.notes), "onnxruntime": onnxruntime.__version__,
            **(extra_sidecar or {}),
        }, source=src)
        return result


def calibrate(
    model_path: str | Path,
    dataset: Dataset,
    out: str | Path,
    spec: CalibrateSpec | None = None,
    log: Callable[[str], None] = note,
    progress: bool = True,
) -> CalibrationResult:
    """Write an INT8 Q/DQ model of ``model_path`` to ``out`` and its sidecar ``out.json``."""
    spec = spec or CalibrateSpec()
    check_spec(spec)
    out = Path(out)
    _check_out(Path(model_path), out)
    with RangeSession(model_path, dataset, spec, log, progress) as session:
        plan = plan_exclusions(session.model, spec.keep_float, spec.exclude)
        if spec.keep_float != "none" and plan.attention_sites == 0:
            session.note("no attention block (MatMul-Softmax-MatMul) found; nothing kept in float by the preset")
        session.collect(set(plan.names))
        quantized_model, rewired, qnodes = session.build(plan)
        return session.write(quantized_model, plan, rewired, qnodes, out)


def _has_external_data(path: Path) -> bool:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    return any(i.data_location == onnx.TensorProto.EXTERNAL for i in m.graph.initializer)


def _count(nodes: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for n in nodes:
        out[n["op_type"]] = out.get(n["op_type"], 0) + 1
    return dict(sorted(out.items()))


def _quantize(work_src: Path, tmp: Path, ranges: dict, spec: CalibrateSpec, exclude: list[str]) -> Any:
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    method = _ort_cache_file(ranges, spec.method, tmp / "ranges.json")
    trt = spec.flavour == "tensorrt"
    extra = {"ActivationSymmetric": trt, "WeightSymmetric": True}
    q_path = tmp / "quantized.onnx"
    try:
        with _quiet_ort_logging():
            quantize_static(
                str(work_src), str(q_path), calibration_data_reader=None,
                quant_format=QuantFormat.QDQ, per_channel=spec.per_channel, reduce_range=False,
                activation_type=QuantType.QInt8 if trt else QuantType.QUInt8, weight_type=QuantType.QInt8,
                nodes_to_exclude=list(exclude), calibrate_method=method, extra_options=extra,
                calibration_cache_path=str(tmp / "ranges.json"))
    except Exception as exc:
        raise StageError(f"ONNX Runtime could not quantize the model ({type(exc).__name__}: "
                         f"{first_line(exc)})",
                         "check the model with attnvgg validate; try --keep-float or --exclude") from exc
    return onnx.load(str(q_path))


def _quick_parity(src: Path, quantized: Path, dataset: Dataset, shape: InputShape, samples: int,
                  batch: int) -> dict | None:
    """INT8 vs fp32 logits on the first calibration images: a cheap early warning, not the gate."""
    if samples <= 0:
        return None
    n = batch if shape.batch > 0 else samples
    try:
        x = next(iter(checked_batches(dataset, shape, n, n)))
    except (StopIteration, InputError):
        return None
    try:
        r = compare_runners(OnnxRuntimeRunner(src, name="fp32"), OnnxRuntimeRunner(quantized, name="int8"), [x],
                            default_tolerances()["int8"])
    except Exception as exc:
        raise StageError(f"ONNX Runtime cannot run the quantized model ({first_line(exc)})",
                         "report this with the model") from exc
    return {k: r[k] for k in ("samples", "cosine", "min_cosine", "top1_agreement", "max_abs", "passed", "why")}
