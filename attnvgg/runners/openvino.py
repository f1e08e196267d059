"""OpenVINO runner (CPU): the same ONNX files ONNX Runtime runs, in f32 or bf16.

Why a runner of its own: on x86 CPUs OpenVINO is the engine users deploy, and on a CPU with
native bf16 (AVX512_BF16, AMX) its ``INFERENCE_PRECISION_HINT=bf16`` runs the float parts of
any graph (fp32, fp16, the float parts of a Q/DQ INT8 file) about twice as fast as f32.

The precision is always set explicitly, because OpenVINO's own default depends on the CPU
(bf16 where the CPU reports BF16, so an unset hint would silently change the numbers). bf16
is granted only where ``core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")`` lists BF16;
elsewhere it is refused with one line, never run as f32 instead. The decision is the pure
function :func:`choose_precision`, so it is tested with made-up capability lists.

The model is read through OpenVINO's ONNX frontend directly (not ``Core.read_model``, which
tries every frontend on a file it cannot parse and prints their errors).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from attnvgg.errors import InputError, MissingDependency
from attnvgg.runners.base import Runner, TensorMeta, check_feeds

INSTALL = 'pip install "attnvgg[openvino]"'
DEVICE = "CPU"
#: inference precisions this runner offers; the attnvgg name of each in result files
PRECISIONS = ("f32", "bf16")
PRECISION_NAMES = {"f32": "fp32", "bf16": "bf16"}
#: the OPTIMIZATION_CAPABILITIES entry that must be present for each precision
CAPABILITY = {"f32": "FP32", "bf16": "BF16"}


def import_openvino() -> Any:
    """The openvino module, or MissingDependency with the install command."""
    try:
        import openvino
    except ImportError as exc:
        raise MissingDependency(f"openvino is not installed ({exc})", f"install it with: {INSTALL}") from exc
    return openvino


def choose_precision(requested: str, capabilities: Sequence[str]) -> str:
    """The inference precision to compile with, given the CPU's OPTIMIZATION_CAPABILITIES.

    Pure: no OpenVINO call. ``requested`` must be one of :data:`PRECISIONS`; a precision the
    CPU does not report is refused (MissingDependency: it is the hardware that is missing),
    never replaced by another one.
    """
    if requested not in PRECISIONS:
        raise InputError(f"unknown OpenVINO inference precision {requested!r}", f"use one of {', '.join(PRECISIONS)}")
    caps = {str(c).upper() for c in capabilities}
    need = CAPABILITY[requested]
    if requested != "f32" and need not in caps:
        listed = ", ".join(sorted(caps)) or "nothing"
        raise MissingDependency(
            f"this CPU has no native {requested} (OpenVINO's CPU OPTIMIZATION_CAPABILITIES: {listed})",
            "use the f32 OpenVINO runner (--provider openvino) or a CPU with AVX512_BF16/AMX",
        )
    return requested


def cpu_capabilities() -> list[str]:
    """OPTIMIZATION_CAPABILITIES of OpenVINO's CPU device (needs openvino)."""
    ov = import_openvino()
    return [str(c) for c in ov.Core().get_property(DEVICE, "OPTIMIZATION_CAPABILITIES")]


def unavailable_reason(precision: str = "f32") -> str | None:
    """Why the OpenVINO runner cannot run ``precision`` here (one line), or None if it can."""
    try:
        choose_precision(precision, cpu_capabilities())
    except MissingDependency as exc:
        return exc.one_line()
    return None


def openvino_version() -> str | None:
    """The installed openvino version, None where it does not import."""
    try:
        return str(import_openvino().__version__)
    except MissingDependency:
        return None


def _first_line(exc: BaseException) -> str:
    """The line of an OpenVINO exception that says what failed (they start with source locations)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(("Exception from", "Check '"))]
    return ((useful or lines or [type(exc).__name__])[-1])[:200]


class OpenVinoRunner(Runner):
    """An ONNX file compiled for OpenVINO's CPU plugin with an explicit precision, threads and the
    latency hint (one inference at a time, as the bench and parity call it).

    A dynamic batch is compiled once per input shape it is fed, as a static shape (the CPU plugin
    picks faster kernels for static shapes: 20 % (f32) and 34 % (bf16) lower minimum latency on
    the built-in model's INT8 cpu-flavour file at batch 1, 2026-12-01); the first call at a new shape pays the compile, which the bench's
    warm-up absorbs. Batch 1 is compiled on activate, so a model OpenVINO cannot compile fails
    there.
    """

    backend = "openvino-cpu"

    def __init__(self, path: str | os.PathLike, precision: str = "f32", threads: int | None = None,
                 name: str | None = None, static_shapes: bool = True):
        if precision not in PRECISIONS:
            raise InputError(f"unknown OpenVINO inference precision {precision!r}", f"use one of {', '.join(PRECISIONS)}")
        if threads is not None and threads < 1:
            raise InputError(f"threads must be at least 1, got {threads}", "omit it for OpenVINO's default")
        super().__init__(name or f"openvino-{precision}")
        self.path = Path(path)
        self.precision = precision
        #: the precision this runner imposes on a float graph (parity picks the tolerance from it)
        self.compute_precision = None if precision == "f32" else PRECISION_NAMES[precision]
        self.threads = threads
        self.static_shapes = static_shapes
        self.device = "cpu"
        self.model: Any = None
        self._core: Any = None
        self._config: dict = {}
        self._compiled: dict[tuple, tuple[Any, Any]] = {}     # input shapes -> (compiled model, infer request)
        self._compiled_facts: dict = {}

    # -- lifecycle ----------------------------------------------------------------------
    def activate_impl(self) -> None:
        ov = import_openvino()
        import openvino.properties as props
        import openvino.properties.hint as hints
        from openvino.frontend import FrontEndManager

        if not self.path.is_file():
            raise InputError(f"ONNX file not found: {self.path}", "run attnvgg export first or fix the path")
        core = ov.Core()
        precision = choose_precision(self.precision, [str(c) for c in core.get_property(DEVICE, "OPTIMIZATION_CAPABILITIES")])
        try:
            frontend = FrontEndManager().load_by_framework("onnx")
            model = frontend.convert(frontend.load(str(self.path)))
        except Exception as exc:  # OpenVINO raises its own GeneralFailure/RuntimeError types
            raise InputError(f"OpenVINO cannot read {self.path} ({_first_line(exc)})",
                             "check it is a valid ONNX model (attnvgg export writes one)") from exc
        self._config = {hints.performance_mode: hints.PerformanceMode.LATENCY,
                        hints.inference_precision: getattr(ov.Type, precision)}
        if self.threads:
            self._config[props.inference_num_threads] = int(self.threads)
        self._core, self.model, self._compiled = core, model, {}
        first = tuple(tuple(1 if d == -1 else d for d in m.shape) for m in self.input_metadata())
        compiled, _ = self._compile(first if self.static_shapes else None)
        got = compiled.get_property(hints.inference_precision).get_type_name()
        if got != precision:  # never run another precision than the one asked for
            raise MissingDependency(f"OpenVINO compiled {self.path.name} with inference precision {got}, not {precision}",
                                    "use the f32 OpenVINO runner")
        self._compiled_facts = {
            "inference_precision": got,
            "threads": int(compiled.get_property(props.inference_num_threads)),
            "performance_hint": str(compiled.get_property(hints.performance_mode)).rsplit(".", 1)[-1],
        }

    def _compile(self, shapes: tuple | None) -> tuple[Any, Any]:
        """(compiled model, infer request) for these input shapes (None: the model as read)."""
        if shapes in self._compiled:
            return self._compiled[shapes]
        ov = import_openvino()
        model = self.model
        if shapes is not None and not all(p.get_partial_shape().is_static for p in model.inputs):
            model = model.clone()
            model.reshape({p.get_any_name(): ov.PartialShape(list(s)) for p, s in zip(model.inputs, shapes)})
        try:
            compiled = self._core.compile_model(model, DEVICE, self._config)
        except Exception as exc:
            raise InputError(f"OpenVINO cannot compile {self.path} for the CPU ({_first_line(exc)})",
                             "check the model runs on ONNX Runtime (attnvgg validate); report the operator") from exc
        self._compiled[shapes] = (compiled, compiled.create_infer_request())
        return self._compiled[shapes]

    def deactivate_impl(self) -> None:
        self._compiled = {}
        self.model = None
        self._core = None

    # -- metadata -----------------------------------------------------------------------
    def input_metadata(self) -> list[TensorMeta]:
        if self.model is None:
            raise RuntimeError("activate the runner first")
        return [TensorMeta(port.get_any_name(), str(port.get_element_type().to_dtype()),
                           tuple(-1 if d.is_dynamic else d.get_length() for d in port.get_partial_shape()))
                for port in self.model.inputs]

    def output_names(self) -> list[str]:
        if self.model is None:
            raise RuntimeError("activate the runner first")
        return [port.get_any_name() for port in self.model.outputs]

    def threads_in_use(self) -> int | None:
        """Threads the compiled model runs with (set, or OpenVINO's default for this CPU)."""
        return self._compiled_facts.get("threads")

    # -- inference ----------------------------------------------------------------------
    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        metas = self.input_metadata()
        check_feeds(self.path.name, metas, feeds)
        meta = {m.name: m for m in metas}
        inputs = {k: np.ascontiguousarray(v, dtype=np.dtype(meta[k].dtype)) for k, v in feeds.items()}
        shapes = tuple(tuple(int(d) for d in inputs[m.name].shape) for m in metas) if self.static_shapes else None
        compiled, request = self._compile(shapes)
        # share_outputs=False (the default) copies the outputs out of OpenVINO's buffers
        result = request.infer(inputs)
        return {port.get_any_name(): np.array(result[port]) for port in compiled.outputs}

    def describe(self) -> dict:
        return {**super().describe(), "model": str(self.path), "device": DEVICE, "openvino": openvino_version(),
                "precision": PRECISION_NAMES[self.precision], "inference_precision_hint": self.precision,
                "threads": self._compiled_facts.get("threads", self.threads),
                "threads_source": "set" if self.threads else "default",
                "performance_hint": self._compiled_facts.get("performance_hint", "LATENCY"),
                "static_shapes": self.static_shapes}
