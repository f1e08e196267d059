"""The only module that imports tensorrt: availability, the process's logger, the engine runners.

Written against the TensorRT Python API that 10.x and 11.x share (python/src/infer/pyCore.cpp)
and Polygraphy 0.53.6 (``polygraphy/backend/trt/{runner,loader,util}.py``). All decisions
(profiles, flags, sidecar checks) live in ``engines.build_plan`` / ``runners.trt_compat`` and are
tested on CPU; this module only carries them out on a GPU.

* One process-wide TensorRT logger: Polygraphy's (``polygraphy.backend.trt.util.get_trt_logger``),
  which its loaders use too. TensorRT keeps the first ILogger it is given; a new one per
  Builder/Runtime could be freed while TensorRT still calls it.
* ``PolygraphyEngineRunner`` (validate, evaluate: ``infer`` on numpy arrays) wraps Polygraphy's
  ``TrtRunner`` over ``EngineFromBytes`` after our sidecar check.
* ``TensorRTRunner`` (the bench) keeps device-resident torch buffers: ``bind`` sets shapes and
  addresses once per batch and ``execute`` enqueues only ``execute_async_v3`` on the runner's
  stream, so the bench times the engine alone and can capture it in a CUDA graph. Polygraphy's
  ``TrtRunner.infer`` re-checks and re-binds every call and copies outputs, which is what a
  latency measurement must not include.

``tensorrt``, ``polygraphy`` and ``torch`` are imported inside functions, so importing this module
is cheap and works without them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from attnvgg.errors import InputError, MissingDependency, StageError, first_line
from attnvgg.runners.base import Runner, TensorMeta
from attnvgg.runners.trt_compat import INSTALL_HINT, RuntimeEnv, check_sidecar, load_sidecar, trt_capabilities
from attnvgg.artifacts import sha256_file

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch

# ----------------------------------------------------------------------------- availability

def tensorrt_available() -> tuple[bool, str]:
    """(True, what) if engines can be built and run here, else (False, why). Never raises.

    The pipeline's ``run`` uses this to skip the engine stage and say why in its report.
    """
    try:
        import importlib.util

        if importlib.util.find_spec("tensorrt") is None:
            return False, f'the tensorrt package is not installed; {INSTALL_HINT}'
        try:
            import tensorrt as trt
        except Exception as exc:  # the PyPI stub and broken installs fail in many ways
            return False, f"tensorrt does not import ({type(exc).__name__}: {first_line(exc)}); {INSTALL_HINT}"
        version = str(getattr(trt, "__version__", "unknown"))
        try:
            trt_capabilities(version)
        except MissingDependency as exc:
            return False, exc.one_line()
        try:
            import torch
        except Exception as exc:
            return False, f"torch does not import ({first_line(exc)}); the TensorRT runner uses torch CUDA tensors"
        if not torch.cuda.is_available():
            cuda = torch.version.cuda or "none: a CPU-only torch build"
            return False, (f"TensorRT {version} is installed but torch sees no CUDA GPU "
                           f"(torch {torch.__version__}, CUDA {cuda}); TensorRT needs an NVIDIA GPU and driver")
        return True, f"TensorRT {version} on {torch.cuda.get_device_name(torch.cuda.current_device())}"
    except Exception as exc:  # pragma: no cover - belt and braces: this must not raise
        return False, f"TensorRT availability check failed ({type(exc).__name__}: {first_line(exc)})"


def installed_tensorrt_version() -> Optional[str]:
    """tensorrt.__version__ if the package imports here, else None. Never raises."""
    import importlib.util

    try:
        if importlib.util.find_spec("tensorrt") is None:
            return None
        import tensorrt as trt

        return str(getattr(trt, "__version__", None))
    except Exception:  # noqa: BLE001 - the PyPI stub and broken installs fail in many ways
        return None


def require_tensorrt() -> Any:
    """The tensorrt module, or MissingDependency (exit 4) saying what is missing."""
    ok, why = tensorrt_available()
    if not ok:
        raise MissingDependency(f"cannot build or run TensorRT engines here: {why}")
    import tensorrt as trt

    return trt


def runtime_env() -> RuntimeEnv:
    """The TensorRT version and GPU an engine built or loaded now is tied to."""
    trt = require_tensorrt()
    import torch

    dev = torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(dev)
    return RuntimeEnv(str(trt.__version__), torch.cuda.get_device_name(dev), f"{major}.{minor}")


def trt_logger() -> Any:
    """The process's one TensorRT logger: Polygraphy's, shared with its loaders and TrtRunner."""
    from polygraphy.backend.trt import util as trt_util

    return trt_util.get_trt_logger()


def _runtime(trt: Any, sidecar: Optional[dict]) -> Any:
    """A TensorRT Runtime on the shared logger, set up as the engine's sidecar says."""
    runtime = trt.Runtime(trt_logger())
    options = (sidecar or {}).get("build_options") or {}
    if options.get("version_compatible"):
        # A version-compatible plan carries its lean runtime (host code): allow it, as TensorRT
        # requires, only for engines we built (sidecar checked before).
        runtime.engine_host_code_allowed = True
    if options.get("dla_core") is not None:
        runtime.DLA_core = int(options["dla_core"])   # a DLA engine runs on the core it was built for
    return runtime


def _checked_engine_bytes(path: Path, check: bool) -> tuple[bytes, Optional[dict]]:
    """The engine file's bytes after the sidecar check (TensorRT version, GPU, hash); refusals are one line."""
    if not path.is_file():
        raise InputError(f"engine file not found: {path}", "build it with: attnvgg build MODEL.onnx --out DIR")
    sidecar = None
    if check:
        sidecar = load_sidecar(path)
        # Before deserializing: a foreign engine can fail in ways that are hard to read.
        check_sidecar(sidecar, runtime_env(), path, engine_sha256=sha256_file(path))
    return path.read_bytes(), sidecar


def to_numpy(t: "torch.Tensor") -> "np.ndarray":
    """A host copy as numpy; bfloat16 (no numpy dtype) is widened to float32 exactly."""
    import torch

    if t.dtype == torch.bfloat16:
        t = t.to(torch.float32)
    return t.detach().cpu().numpy()


# ----------------------------------------------------------------------------- runner

def _torch_dtype(trt: Any, dt: Any) -> "torch.dtype":
    import torch

    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.bfloat16: torch.bfloat16,
             trt.int8: torch.int8, trt.int32: torch.int32, trt.int64: torch.int64,
             trt.bool: torch.bool, trt.uint8: torch.uint8}
    if dt not in table:
        raise StageError(f"engine tensor type {dt} has no torch equivalent", "rebuild with float/int I/O")
    return table[dt]


class _EngineFile(Runner):
    """What both engine runners share: the engine path, the sidecar check, loading the bytes."""

    backend = "tensorrt"

    def __init__(self, engine_path: str | os.PathLike, name: Optional[str] = None, check: bool = True):
        super().__init__(name)
        self.path = Path(engine_path)
        self.check = check
        self.sidecar: Optional[dict] = None

    def _load(self) -> tuple[Any, bytes]:
        """(tensorrt module, engine bytes) after the file and its sidecar were checked."""
        if not self.path.is_file():
            raise InputError(f"engine file not found: {self.path}", "build it with: attnvgg build MODEL.onnx --out DIR")
        trt = require_tensorrt()
        data, self.sidecar = _checked_engine_bytes(self.path, self.check)
        return trt, data


class TensorRTRunner(_EngineFile):
    """Runs a TensorRT engine on torch CUDA tensors.

    ``infer`` takes and returns numpy arrays (the common runner interface; copies included).
    ``infer_device`` takes and returns CUDA tensors and ``stream`` is the CUDA stream the engine
    runs on, so a bench can time compute (events on ``stream`` around ``infer_device``) apart
    from end to end (``infer``). Loading refuses an engine whose sidecar names another
    TensorRT version or GPU (see ``build_plan.check_sidecar``); ``check=False`` skips that,
    for engines built elsewhere by trtexec.
    """

    def __init__(self, engine_path: str | os.PathLike, name: Optional[str] = None, check: bool = True):
        super().__init__(engine_path, name, check)
        self.engine: Any = None
        self.context: Any = None
        self._stream: Any = None
        self._trt: Any = None
        self._inputs: list[str] = []
        self._outputs: list[str] = []
        self._dtypes: dict[str, Any] = {}

    # -- lifecycle -------------------------------------------------------------------------
    def activate_impl(self) -> None:
        trt, data = self._load()
        import torch

        runtime = _runtime(trt, self.sidecar)
        engine = runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise StageError(f"TensorRT could not load {self.path}",
                             "rebuild it here with: attnvgg build MODEL.onnx --out " + str(self.path.parent))
        self._trt, self._runtime, self.engine = trt, runtime, engine
        self.context = engine.create_execution_context()
        if self.context is None:
            raise StageError(f"TensorRT could not create an execution context for {self.path}",
                             "free GPU memory or use an engine with a smaller max batch")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self._inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self._dtypes = {n: _torch_dtype(trt, engine.get_tensor_dtype(n)) for n in names}
        # A dedicated stream: enqueueing on the legacy default stream makes TensorRT synchronize.
        self._stream = torch.cuda.Stream()

    def deactivate_impl(self) -> None:
        self.context = None
        self.engine = None
        self._runtime = None
        self._stream = None

    # -- metadata ---------------------------------------------------------------------------
    @property
    def stream(self) -> "torch.cuda.Stream":
        if self._stream is None:
            raise RuntimeError("activate the runner first")
        return self._stream

    def input_metadata(self) -> list[TensorMeta]:
        if self.engine is None:
            raise RuntimeError("activate the runner first")
        out = []
        for n in self._inputs:
            dtype = str(self._dtypes[n]).replace("torch.", "")
            out.append(TensorMeta(n, dtype, tuple(int(d) for d in self.engine.get_tensor_shape(n))))
        return out

    def output_names(self) -> list[str]:
        if self.engine is None:
            raise RuntimeError("activate the runner first")
        return list(self._outputs)

    def profile_shapes(self) -> dict[str, tuple[tuple[int, ...], ...]]:
        """Input name -> (min, opt, max) shapes of optimization profile 0."""
        return {n: tuple(tuple(int(d) for d in s) for s in self.engine.get_tensor_profile_shape(n, 0))
                for n in self._inputs}

    # -- inference --------------------------------------------------------------------------
    def infer_device(self, feeds: dict[str, "torch.Tensor"]) -> dict[str, "torch.Tensor"]:
        """Run on CUDA tensors; outputs are CUDA tensors usable on the current stream."""
        import torch

        if not self.is_active:
            raise RuntimeError(f"runner {self.name} used before activate(); use it in a with block")
        missing = sorted(set(self._inputs) - set(feeds))
        unknown = sorted(set(feeds) - set(self._inputs))
        if missing or unknown:
            raise InputError(f"{self.path.name} takes inputs {self._inputs}; got {sorted(feeds)}",
                             "name the inputs as the model does")
        ctx, stream = self.context, self._stream
        stream.wait_stream(torch.cuda.current_stream())
        keep = []
        for name in self._inputs:
            t = feeds[name]
            if not t.is_cuda or t.dtype != self._dtypes[name]:
                raise InputError(f"input {name} is a {t.dtype} tensor on {t.device}; the engine takes {self._dtypes[name]} on CUDA",
                                 "convert it, or use infer() with numpy arrays")
            t = t.contiguous()
            if not ctx.set_input_shape(name, tuple(t.shape)):
                rng = self.profile_shapes().get(name)
                raise InputError(f"input {name} shape {tuple(t.shape)} is outside the engine's profile (min, opt, max) {rng}",
                                 "feed a batch inside the range or rebuild with --batch-min/--batch-max")
            ctx.set_tensor_address(name, t.data_ptr())
            keep.append(t)
        outputs: dict[str, torch.Tensor] = {}
        with torch.cuda.stream(stream):
            for name in self._outputs:
                shape = tuple(int(d) for d in ctx.get_tensor_shape(name))
                if any(d < 0 for d in shape):
                    raise StageError(f"output {name} has unresolved shape {shape}", "set every input shape")
                out = torch.empty(shape, dtype=self._dtypes[name], device="cuda")
                ctx.set_tensor_address(name, out.data_ptr())
                outputs[name] = out
        if not ctx.execute_async_v3(stream.cuda_stream):
            raise StageError(f"TensorRT execution failed for {self.path.name}", "see the [TensorRT] messages above")
        for t in keep:
            t.record_stream(stream)   # the inputs' memory stays ours until the engine is done
        torch.cuda.current_stream().wait_stream(stream)
        return outputs

    def bind(self, feeds: dict[str, "torch.Tensor"]) -> dict[str, "torch.Tensor"]:
        """Set input shapes and every tensor address once for this batch; returns the output buffers.

        After ``bind``, ``execute`` runs the engine on the same buffers with nothing but
        ``execute_async_v3``: what the bench times and what a CUDA graph captures.
        """
        outs = self.infer_device(feeds)     # sets shapes and addresses, allocates outputs, runs once
        self._bound = (feeds, outs)
        return outs

    def execute(self) -> None:
        """Enqueue the bound engine on ``self.stream`` (no shape, address or allocation work)."""
        if getattr(self, "_bound", None) is None:
            raise RuntimeError("call bind() before execute()")
        if not self.context.execute_async_v3(self._stream.cuda_stream):
            raise StageError(f"TensorRT execution failed for {self.path.name}", "see the [TensorRT] messages above")

    def infer_impl(self, feeds: dict[str, "np.ndarray"]) -> dict[str, "np.ndarray"]:
        import numpy as np
        import torch

        device_feeds = {}
        for name, arr in feeds.items():
            want = self._dtypes.get(name)
            t = torch.from_numpy(np.ascontiguousarray(arr))
            if want is not None and t.dtype != want:
                if not (t.dtype.is_floating_point and want.is_floating_point):
                    raise InputError(f"input {name} is {t.dtype}; the engine takes {want}", "feed the model's input type")
                t = t.to(want)  # float32 feed into an fp16-I/O engine: the same cast ONNX Runtime's runner does
            device_feeds[name] = t.to("cuda", non_blocking=False)
        outs = self.infer_device(device_feeds)
        return {k: to_numpy(v) for k, v in outs.items()}

    def describe(self) -> dict:
        d = {**super().describe(), "engine": str(self.path)}
        if self.sidecar:
            d.update({k: self.sidecar.get(k) for k in ("precision", "tensorrt_version", "gpu", "profiles", "onnx_hash")})
        return d


class PolygraphyEngineRunner(_EngineFile):
    """An engine run through Polygraphy's ``TrtRunner`` (validate, evaluate): numpy in, numpy out.

    The sidecar check and the Runtime set-up (shared logger, version-compatible host code, DLA
    core) are ours; deserializing (``EngineFromBytes``), binding and copying are Polygraphy's.
    Inputs go in as host torch tensors so outputs come back as torch tensors, which keeps
    bfloat16 outputs (no numpy dtype) convertible (``to_numpy``).
    """

    def __init__(self, engine_path: str | os.PathLike, name: Optional[str] = None, check: bool = True):
        super().__init__(engine_path, name, check)
        self._runner: Any = None

    def activate_impl(self) -> None:
        trt, data = self._load()
        from polygraphy.backend.trt import EngineFromBytes, TrtRunner
        from polygraphy.exception import PolygraphyException

        runner = TrtRunner(EngineFromBytes(data, runtime=_runtime(trt, self.sidecar)), name=self.name)
        try:
            runner.activate()
        except PolygraphyException as exc:
            raise StageError(f"TensorRT could not load {self.path} ({first_line(exc)})",
                             "rebuild it here with: attnvgg build MODEL.onnx --out " + str(self.path.parent)) from exc
        self._runner = runner

    def deactivate_impl(self) -> None:
        if self._runner is not None:
            self._runner.deactivate()
        self._runner = None

    def input_metadata(self) -> list[TensorMeta]:
        if self._runner is None:
            raise RuntimeError("activate the runner first")
        out = []
        for name, meta in self._runner.get_input_metadata().items():
            dims = tuple(int(d) if isinstance(d, int) and d >= 0 else -1 for d in meta.shape)
            out.append(TensorMeta(name, str(meta.dtype), dims))
        return out

    def infer_impl(self, feeds: dict[str, "np.ndarray"]) -> dict[str, "np.ndarray"]:
        import numpy as np
        import torch
        from polygraphy.exception import PolygraphyException

        feed = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in feeds.items()}
        try:
            outs = self._runner.infer(feed)
        except PolygraphyException as exc:
            raise InputError(f"TensorRT refused the input for {self.path.name} ({first_line(exc)})",
                             "feed a batch inside the engine's profile, with the model's input names and types") from exc
        return {k: to_numpy(v) if isinstance(v, torch.Tensor) else np.asarray(v) for k, v in outs.items()}

    def describe(self) -> dict:
        d = {**super().describe(), "engine": str(self.path), "via": "polygraphy TrtRunner"}
        if self.sidecar:
            d.update({k: self.sidecar.get(k) for k in ("precision", "tensorrt_version", "gpu", "profiles", "onnx_hash")})
        return d
