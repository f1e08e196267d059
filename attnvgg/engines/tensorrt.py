"""Build TensorRT engines from a plan: parse, build, write engine, trtexec script and sidecar.

The decisions (profiles, flags, precision) are made in ``build_plan`` and tested on CPU; the
TensorRT API (10.x and 11.x alike) is reached only through ``runners.tensorrt``, the one module
that imports tensorrt. This module carries a plan out on a GPU.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any, Optional

from attnvgg.engines.build_plan import BuildOptions, BuildPlan, EnginePlan, make_sidecar, trtexec_script
from attnvgg.errors import InputError, MissingDependency, StageError
from attnvgg.runners.tensorrt import _logger, require_tensorrt, runtime_env
from attnvgg.runners.trt_compat import RuntimeEnv, trt_capabilities
from attnvgg import __version__, sidecar
from attnvgg.artifacts import atomic_path, onnx_hash, write_bytes, write_text

# ----------------------------------------------------------------------------- build

def _network_flags(trt: Any) -> int:
    caps = trt_capabilities(trt.__version__)
    if caps.strongly_typed_flag:
        return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return 0


def _configure(trt: Any, builder: Any, config: Any, ep: EnginePlan, opts: BuildOptions) -> None:
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, opts.workspace_mib << 20)
    config.builder_optimization_level = opts.optimization_level
    if ep.dynamic:
        profile = builder.create_optimization_profile()
        for name, (mn, op, mx) in ep.profile.items():
            profile.set_shape(name, mn, op, mx)
        if config.add_optimization_profile(profile) < 0:
            raise StageError(f"TensorRT rejected the optimization profile for {ep.onnx}", "check the batch range")
    # TF32 is on by default in TensorRT; BuilderFlag.TF32 exists in 10.x and 11.x.
    if ep.tf32:
        config.set_flag(trt.BuilderFlag.TF32)
    else:
        config.clear_flag(trt.BuilderFlag.TF32)
    if opts.hardware_compatibility != "none":
        name = {"ampere+": "AMPERE_PLUS", "same-compute-capability": "SAME_COMPUTE_CAPABILITY"}[opts.hardware_compatibility]
        level = getattr(trt.HardwareCompatibilityLevel, name, None)
        if level is None:
            raise MissingDependency(f"TensorRT {trt.__version__} has no hardware compatibility level {opts.hardware_compatibility}",
                                    "use a newer TensorRT or --hardware-compat none")
        config.hardware_compatibility_level = level
    if opts.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if opts.dla_core is not None:
        caps = trt_capabilities(trt.__version__)
        cores = builder.num_DLA_cores
        if cores == 0:
            raise MissingDependency(f"--dla-core {opts.dla_core} asked but TensorRT {trt.__version__} sees no DLA here ({caps.dla_note})",
                                    "drop --dla-core to build for the GPU")
        if opts.dla_core >= cores:
            raise InputError(f"DLA core {opts.dla_core} does not exist (this device has {cores})", f"pass 0..{cores - 1}")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = opts.dla_core
        if opts.gpu_fallback:
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)


def _byte_view(host_memory: Any) -> memoryview:
    """Bytes of an IHostMemory. Its buffer reports format 'f' with the item size of its type
    (python/src/infer/pyFoundationalTypes.cpp), so view it as plain bytes before hashing/writing."""
    try:
        return memoryview(host_memory).cast("B")
    except (TypeError, ValueError):
        return memoryview(bytes(host_memory))


def _attach_timing_cache(config: Any, path: Optional[Path]) -> tuple[Any, bytes, str]:
    """Load the timing cache if present; one from another TensorRT/GPU is replaced, not trusted."""
    if path is None:
        return None, b"", "off"
    old = path.read_bytes() if path.is_file() else b""
    status = "reused" if old else "created"
    try:
        cache = config.create_timing_cache(old)
        ok = cache is not None and config.set_timing_cache(cache, ignore_mismatch=False)
    except Exception:
        ok = False
    if not ok:
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
        status = "replaced (it was made by another TensorRT version or GPU)"
    return cache, old, status


def _save_timing_cache(config: Any, path: Path, loaded: bytes) -> None:
    cache = config.get_timing_cache()
    if cache is None:
        return
    # Another build may have saved the file meanwhile: keep its entries too.
    if path.is_file():
        current = path.read_bytes()
        if current and current != loaded:
            try:
                cache.combine(config.create_timing_cache(current), ignore_mismatch=False)
            except Exception:
                pass
    write_bytes(path, _byte_view(cache.serialize()))


def build_engine(trt: Any, ep: EnginePlan, opts: BuildOptions, env: RuntimeEnv) -> dict:
    """Parse one ONNX file into a strongly typed network, build, write engine + trtexec + sidecar."""

    logger = _logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(ep.onnx)):
        errs = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        first = " ".join((errs[0] if errs else "no parser error recorded").split())[:300]
        raise StageError(f"TensorRT cannot parse {ep.onnx}: {first} ({len(errs)} error(s))",
                         "check the graph runs in ONNX Runtime (attnvgg validate) and that TensorRT supports its ops")
    config = builder.create_builder_config()
    _configure(trt, builder, config, ep, opts)
    cache, loaded, cache_status = _attach_timing_cache(config, opts.timing_cache)

    t0 = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - t0
    if serialized is None:
        why = logger.errors[-1][:300] if logger.errors else "no error was logged"
        raise StageError(f"TensorRT could not build {ep.engine.name} from {ep.onnx}: {why}",
                         "see the [TensorRT] messages above; a larger --workspace or a smaller --batch-max may help")
    data = _byte_view(serialized)
    digest = hashlib.sha256(data).hexdigest()
    # Engine first, sidecar last: an engine without a matching sidecar is refused on load.
    with atomic_path(ep.engine) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    write_text(ep.trtexec_script, trtexec_script(ep, opts))
    os.chmod(ep.trtexec_script, 0o755)
    if opts.timing_cache is not None:
        _save_timing_cache(config, opts.timing_cache, loaded)
    del cache
    facts = make_sidecar(ep, opts, env, onnx_hash=onnx_hash(ep.onnx), engine_sha256=digest,
                         engine_bytes=data.nbytes, build_seconds=seconds,
                         timing_cache_status=cache_status, attnvgg_version=__version__)
    return sidecar.write(ep.engine, "engine", facts, source=ep.onnx.resolve(), precision=ep.precision).facts


def build_engines(plan: BuildPlan) -> list[dict]:
    """Build every engine of a plan (after bad input was refused by planning). Returns the sidecars."""
    trt = require_tensorrt()
    env = runtime_env()
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    return [build_engine(trt, ep, plan.options, env) for ep in plan.engines]


