"""Build TensorRT engines from a plan through Polygraphy's loaders (``import tensorrt`` lives in runners/).

Polygraphy 0.53.6 (read in ``polygraphy/backend/trt/loader.py`` and ``config.py``):
``NetworkFromOnnxPath(path, strongly_typed=True)`` parses with ``parse_from_file`` (external
weights resolve) into a strongly typed network (the STRONGLY_TYPED flag on 10.x; 11.x accepts
it, deprecated, as networks are always strongly typed); ``CreateConfig`` sets profiles, memory
pools, the timing cache, the builder optimization level, hardware/version compatibility and
clears TF32 unless asked, and sets the FP16/INT8/BF16 flags only when asked, which we never do
(precision lives in the ONNX graph; TensorRT 11 has no such flags);
``EngineBytesFromNetwork(..., save_timing_cache=...)`` builds the serialized engine and merges
the timing cache under a file lock. We write the bytes ourselves rather than with ``SaveEngine``:
``SaveEngine`` takes a deserialized ``ICudaEngine`` and writes in place, and we need an atomic
write plus the SHA-256 the sidecar records.

Every TensorRT object is created with Polygraphy's one process-wide logger
(``polygraphy.backend.trt.util.get_trt_logger``): TensorRT keeps the first ILogger it is given,
so a logger per Builder/Runtime could be freed while still in use.

All decisions (profiles, arguments, refusals, sidecar) live in ``build_plan`` and are tested on
CPU as plain data (``build_plan.polygraphy_build_args``); this module only carries them out.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

from attnvgg.engines.build_plan import (BuildOptions, BuildPlan, EnginePlan, make_sidecar, polygraphy_build_args,
                                        trtexec_script)
from attnvgg import __version__, sidecar
from attnvgg.artifacts import atomic_path, onnx_hash, write_text
from attnvgg.errors import InputError, MissingDependency, StageError, first_line
from attnvgg.runners.tensorrt import require_tensorrt, runtime_env
from attnvgg.runners.trt_compat import RuntimeEnv


def config_kwargs(trt: Any, config: dict) -> dict:
    """``polygraphy_build_args(...)["config"]`` with TensorRT enums and Polygraphy Profiles in place of names."""
    from polygraphy.backend.trt import Profile

    kw = dict(config)
    if kw.get("profiles") is not None:
        profiles = []
        for shapes in kw["profiles"]:
            prof = Profile()
            for name, s in shapes.items():
                prof.add(name, min=tuple(s["min"]), opt=tuple(s["opt"]), max=tuple(s["max"]))
            profiles.append(prof)
        kw["profiles"] = profiles
    else:
        kw.pop("profiles", None)
    kw["memory_pool_limits"] = {getattr(trt.MemoryPoolType, k): v for k, v in kw["memory_pool_limits"].items()}
    kw["profiling_verbosity"] = getattr(trt.ProfilingVerbosity, kw["profiling_verbosity"])
    if "hardware_compatibility_level" in kw:
        level = getattr(trt.HardwareCompatibilityLevel, kw["hardware_compatibility_level"], None)
        if level is None:
            raise MissingDependency(f"TensorRT {trt.__version__} has no hardware compatibility level "
                                    f"{kw['hardware_compatibility_level']}", "use a newer TensorRT or --hardware-compat none")
        kw["hardware_compatibility_level"] = level
    return kw


def _dla_core_setter(core: int):
    """A PostprocessConfig function: CreateConfig(use_dla=True) always picks core 0."""

    def apply(builder: Any, network: Any, config: Any) -> None:
        cores = builder.num_DLA_cores
        if core >= cores:
            raise InputError(f"DLA core {core} does not exist (this device has {cores})",
                             f"pass 0..{cores - 1}" if cores else "drop --dla-core to build for the GPU")
        config.DLA_core = core

    return apply


def _byte_view(data: Any) -> memoryview:
    """Bytes of an IHostMemory (its buffer reports format 'f': view it as plain bytes before hashing/writing)."""
    try:
        return memoryview(data).cast("B")
    except (TypeError, ValueError):
        return memoryview(bytes(data))


def build_engine(trt: Any, ep: EnginePlan, opts: BuildOptions, env: RuntimeEnv) -> dict:
    """Parse, build (Polygraphy), write engine + trtexec script + sidecar (sidecar last)."""
    from polygraphy.backend.trt import CreateConfig, EngineBytesFromNetwork, NetworkFromOnnxPath, PostprocessConfig
    from polygraphy.exception import PolygraphyException


    args = polygraphy_build_args(ep, opts)
    cache_status = "off"
    if args["save_timing_cache"]:
        cache_status = "reused" if Path(args["save_timing_cache"]).is_file() else "created"
    network = NetworkFromOnnxPath(args["network"]["path"], strongly_typed=args["network"]["strongly_typed"])
    config: Any = CreateConfig(**config_kwargs(trt, args["config"]))
    if args["dla_core"] is not None:
        config = PostprocessConfig(config, _dla_core_setter(int(args["dla_core"])))
    t0 = time.perf_counter()
    try:
        serialized = EngineBytesFromNetwork(network, config=config, save_timing_cache=args["save_timing_cache"])()
    except PolygraphyException as exc:
        first = first_line(exc, 300)
        raise StageError(f"TensorRT could not build {ep.engine.name} from {ep.onnx}: {first}",
                         "see the [TensorRT]/Polygraphy messages above; a larger --workspace or a smaller "
                         "--batch-max may help") from exc
    seconds = time.perf_counter() - t0
    data = _byte_view(serialized)
    digest = hashlib.sha256(data).hexdigest()
    # Engine first, sidecar last: an engine without a matching sidecar is refused on load.
    with atomic_path(ep.engine) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    write_text(ep.trtexec_script, trtexec_script(ep, opts))
    os.chmod(ep.trtexec_script, 0o755)
    facts = make_sidecar(ep, opts, env, onnx_hash=onnx_hash(ep.onnx), engine_sha256=digest,
                         engine_bytes=data.nbytes, build_seconds=seconds,
                         timing_cache_status=cache_status, attnvgg_version=__version__)
    return sidecar.write(ep.engine, "engine", facts, source=ep.onnx.resolve(), precision=ep.precision).facts


def build_engines(plan: BuildPlan) -> tuple[list[dict], list[dict]]:
    """Build every engine of a plan (bad input was refused by planning).

    Returns (sidecars of the built engines, failures): one engine that fails to build is reported
    (``{"engine", "onnx", "error"}``) and the others are still built.
    """
    trt = require_tensorrt()
    env = runtime_env()
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    built, failed = [], []
    for ep in plan.engines:
        try:
            built.append(build_engine(trt, ep, plan.options, env))
        except (StageError, InputError) as exc:
            failed.append({"engine": str(ep.engine), "onnx": str(ep.onnx), "error": exc.one_line()})
    return built, failed
