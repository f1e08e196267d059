"""Everything about a TensorRT build that does not need TensorRT: plan, targets, profiles,
the engine sidecar and its compatibility check, the equivalent trtexec command.

Why a separate module: the decisions (which batch range, which precision, which flags,
whether an engine may be loaded here) are the part worth testing, and they can be tested on
any CPU. ``attnvgg.engines.tensorrt`` only carries them out. Nothing here imports tensorrt,
torch or onnx at module level; ``onnx`` is imported inside :func:`inspect_onnx`.

Precision is a property of the ONNX file, never a builder flag: Q/DQ nodes mean int8, a
float16-typed graph means fp16, anything else fp32 (an ``<file>.onnx.json`` sidecar with a
``precision`` key is taken too, and must agree with the graph). Every engine is a strongly
typed build, the only kind TensorRT 11 has.

The engine sidecar's compatibility check lives in ``runners.trt_compat`` (the runner applies it
on load); ``make_sidecar`` here says what goes into it.
"""

from __future__ import annotations

import datetime as _dt
import os
import shlex
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from attnvgg import sidecar
from attnvgg.calibration.trt_rules import check_graph, summary
from attnvgg.config import BUILD_TARGETS, HARDWARE_COMPATIBILITY, BuildSpec
from attnvgg.onnxgraph import dims, elem_type_name, precision_evidence
from attnvgg.errors import InputError, first_line
from attnvgg.runners.trt_compat import INSTALL_HINT, SIDECAR_FORMAT, RuntimeEnv  # noqa: F401 - re-used names

ENGINE_SUFFIX = ".engine"
TRTEXEC_SUFFIX = ".trtexec.sh"


# ----------------------------------------------------------------------------- targets

@dataclass(frozen=True)
class Target:
    batch_min: int
    batch_opt: int
    batch_max: int
    workspace_mib: int
    optimization_level: int


TARGETS: dict[str, Target] = {
    # A data-centre GPU serving batches: tune for batch 16, allow up to 64.
    "server": Target(batch_min=1, batch_opt=16, batch_max=64, workspace_mib=8192, optimization_level=3),
    # A Jetson-class device answering one request at a time, with little memory to spare. A static
    # profile (min = opt = max): DLA has no dynamic shapes, and one shape is what an edge engine runs.
    "edge": Target(batch_min=1, batch_opt=1, batch_max=1, workspace_mib=1024, optimization_level=3),
}
assert set(TARGETS) == set(BUILD_TARGETS)


# ----------------------------------------------------------------------------- ONNX facts

@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str                          # numpy dtype name
    shape: tuple[Any, ...]              # ints; a string (dim_param) or "?" where dynamic

    def as_dict(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


@dataclass(frozen=True)
class OnnxFacts:
    path: Path
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    precision: str
    precision_source: str               # why we think so, for the plan and the sidecar


def _tensor_info(value_info: Any) -> TensorInfo:
    shape = tuple(d if not isinstance(d, int) or d > 0 else "?" for d in dims(value_info))
    return TensorInfo(value_info.name, elem_type_name(value_info.type.tensor_type.elem_type), shape)


def _graph_precision(model: Any, path: Path, base: str | None = None) -> tuple[str, str]:
    """TensorRT's refusals (QOperator int8; any rule of ``calibration.trt_rules`` a Q/DQ graph breaks),
    then the precision and its evidence from ``onnxgraph.precision_evidence``.

    ``base`` is the high-precision type the file's sidecar says was asked ("fp16" adds the
    fp32-base rule), so a build refuses what ``attnvgg calibrate`` would have refused.
    """
    graph = model.graph
    nodes = list(graph.node) + [n for f in model.functions for n in f.node]
    qop = sorted({n.op_type for n in nodes if n.op_type.startswith("QLinear") or n.op_type in ("ConvInteger", "MatMulInteger")})
    if qop:
        raise InputError(
            f"{path} is int8 in QOperator format ({', '.join(qop[:3])}); TensorRT builds int8 only from Q/DQ graphs",
            "quantize in QDQ format (attnvgg calibrate writes Q/DQ)",
        )
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in nodes):
        broken = check_graph(model, base=base)
        if broken:
            raise InputError(
                f"{path} breaks a TensorRT graph rule at {broken[0].rule} {broken[0].node}: {summary(broken)}",
                "recalibrate with attnvgg calibrate --flavour tensorrt (ModelOpt's Q/DQ placement)",
            )

    return precision_evidence(model)


def inspect_onnx(path: str | os.PathLike) -> OnnxFacts:
    """Read inputs, outputs and precision of an ONNX file without loading external weights."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"ONNX file not found: {p}", "check the path (attnvgg export, convert and calibrate write these)")
    if not p.is_file():
        raise InputError(f"{p} is not a file", "pass an .onnx file")
    import onnx

    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as exc:
        first = first_line(exc, 160)
        raise InputError(f"{p} is not an ONNX model ({first})", "pass an .onnx file written by attnvgg export, convert or calibrate") from exc
    if model.ir_version <= 0 or not model.graph.node:
        raise InputError(f"{p} is not an ONNX model (no graph nodes)", "pass an .onnx file written by attnvgg export, convert or calibrate")
    init_names = {i.name for i in model.graph.initializer}
    inputs = tuple(_tensor_info(v) for v in model.graph.input if v.name not in init_names)
    outputs = tuple(_tensor_info(v) for v in model.graph.output)
    if not inputs:
        raise InputError(f"{p} has no graph inputs", "export the model with an input tensor")
    for t in inputs:
        if not t.shape:
            raise InputError(f"{p}: input {t.name} has no shape", "export with a fixed NCHW input shape")
        if not all(isinstance(d, int) for d in t.shape[1:]):
            raise InputError(
                f"{p}: input {t.name} has dynamic non-batch axes {list(t.shape)}; only the batch axis may be dynamic",
                "export with a static height and width (--input-size)",
            )

    side = sidecar.read(p)          # validated and hash-checked; its precision is one of PRECISIONS
    base = side.get("high_precision") if side is not None and side.precision == "int8" else None
    graph_precision, evidence = _graph_precision(model, p, base if base in ("fp16", "fp32") else None)
    precision, source = graph_precision, evidence
    if side is not None:
        if side.precision != graph_precision:
            raise InputError(
                f"{p}: sidecar {side.path.name} says {side.precision} but the graph is {graph_precision} ({evidence})",
                "regenerate the file with attnvgg convert/calibrate, or fix the sidecar",
            )
        source = f"sidecar {side.path.name}; {evidence}"
    return OnnxFacts(p, inputs, outputs, precision, source)


# ----------------------------------------------------------------------------- options and plan

@dataclass(frozen=True)
class BuildOptions:
    """A BuildSpec with the target applied and every value checked."""

    target: str
    batch_min: int
    batch_opt: int
    batch_max: int
    explicit_batch: bool            # the user set a batch value (not just the target)
    workspace_mib: int
    optimization_level: int
    tf32: Optional[bool]            # None: off for fp32, on (TensorRT default) for fp16/int8
    timing_cache: Optional[Path]
    hardware_compatibility: str
    version_compatible: bool
    dla_core: Optional[int]
    gpu_fallback: bool
    overridden: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        d = asdict(self)
        d["timing_cache"] = str(self.timing_cache) if self.timing_cache else None
        d["overridden"] = list(self.overridden)
        return d


def resolve_options(spec: BuildSpec, out_dir: str | os.PathLike) -> BuildOptions:
    """Apply the target under the explicit values and refuse what cannot be built."""
    if spec.target not in TARGETS:
        raise InputError(f"unknown build target {spec.target!r}", f"use one of {', '.join(TARGETS)}")
    pre = TARGETS[spec.target]
    overridden = []

    def pick(name: str) -> Any:
        value = getattr(spec, name)
        if value is None:
            return getattr(pre, name)
        overridden.append(name)
        return value

    bmin, bopt, bmax = pick("batch_min"), pick("batch_opt"), pick("batch_max")
    workspace, level = pick("workspace_mib"), pick("optimization_level")
    for name, v in (("batch_min", bmin), ("batch_opt", bopt), ("batch_max", bmax)):
        if v < 1:
            raise InputError(f"{name} is {v}; batch sizes must be at least 1", "pass a positive batch size")
    if bmin > bopt:
        raise InputError(f"min batch {bmin} is larger than opt batch {bopt}", "use min <= opt <= max (e.g. 1, 16, 64)")
    if bopt > bmax:
        raise InputError(f"opt batch {bopt} is larger than max batch {bmax}", "use min <= opt <= max (e.g. 1, 16, 64)")
    if workspace < 1:
        raise InputError(f"workspace is {workspace} MiB", "pass a positive workspace size in MiB")
    if not 0 <= level <= 5:
        raise InputError(f"builder optimization level {level} is outside 0..5", "pass 0 (fast build) to 5 (slow, thorough); 3 is TensorRT's default")
    if spec.hardware_compatibility not in HARDWARE_COMPATIBILITY:
        raise InputError(f"unknown hardware compatibility {spec.hardware_compatibility!r}",
                         f"use one of {', '.join(HARDWARE_COMPATIBILITY)}")
    if spec.dla_core is not None and spec.dla_core < 0:
        raise InputError(f"DLA core {spec.dla_core} is negative", "pass 0 or 1 (Jetson AGX Orin has two DLA cores)")
    if spec.dla_core is not None and not bmin == bopt == bmax:
        raise InputError(f"--dla-core with batch {bmin}/{bopt}/{bmax}: DLA has no dynamic shapes",
                         f"use one batch size (e.g. --min-batch {bopt} --max-batch {bopt}, or --preset edge)")
    cache = None
    if spec.timing_cache:
        cache = Path(spec.timing_cache)
        if not cache.is_absolute():
            cache = Path(out_dir) / cache
    return BuildOptions(
        target=spec.target, batch_min=bmin, batch_opt=bopt, batch_max=bmax,
        explicit_batch=any(n.startswith("batch_") for n in overridden),
        workspace_mib=workspace, optimization_level=level, tf32=spec.tf32, timing_cache=cache,
        hardware_compatibility=spec.hardware_compatibility, version_compatible=spec.version_compatible,
        dla_core=spec.dla_core, gpu_fallback=spec.gpu_fallback, overridden=tuple(overridden),
    )


Shape = tuple[int, ...]


@dataclass(frozen=True)
class EnginePlan:
    onnx: Path
    engine: Path
    sidecar: Path
    trtexec_script: Path
    precision: str
    precision_source: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    profile: dict[str, tuple[Shape, Shape, Shape]]   # input -> (min, opt, max)
    dynamic: bool                                    # any input has a dynamic axis: add a profile
    tf32: bool
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return {
            "onnx": str(self.onnx), "engine": str(self.engine), "sidecar": str(self.sidecar),
            "trtexec_script": str(self.trtexec_script), "precision": self.precision,
            "precision_source": self.precision_source,
            "inputs": [t.as_dict() for t in self.inputs], "outputs": [t.as_dict() for t in self.outputs],
            "profiles": [{k: {"min": list(v[0]), "opt": list(v[1]), "max": list(v[2])} for k, v in self.profile.items()}],
            "dynamic": self.dynamic, "tf32": self.tf32, "notes": list(self.notes),
        }


@dataclass(frozen=True)
class BuildPlan:
    out_dir: Path
    options: BuildOptions
    engines: tuple[EnginePlan, ...]

    def as_dict(self) -> dict:
        return {"out_dir": str(self.out_dir), "options": self.options.as_dict(),
                "engines": [e.as_dict() for e in self.engines]}


def engine_path_for(onnx: Path, precision: str, out_dir: Path) -> Path:
    """``model.fp16.onnx`` -> ``OUT/model.fp16.engine``; ``model.sim.onnx`` -> ``OUT/model.sim.fp32.engine``."""
    stem = onnx.name[: -len(".onnx")] if onnx.name.endswith(".onnx") else onnx.name
    if precision not in stem.split("."):
        stem = f"{stem}.{precision}"
    return out_dir / f"{stem}{ENGINE_SUFFIX}"


def trtexec_script_path(engine: Path) -> Path:
    return engine.with_name(engine.name + TRTEXEC_SUFFIX)


def _profile(facts: OnnxFacts, opts: BuildOptions) -> tuple[dict, bool, list[str]]:
    prof: dict[str, tuple[Shape, Shape, Shape]] = {}
    notes: list[str] = []
    dynamic = False
    for t in facts.inputs:
        rest = tuple(int(d) for d in t.shape[1:])
        if isinstance(t.shape[0], int):
            n = t.shape[0]
            if opts.explicit_batch and (opts.batch_min, opts.batch_opt, opts.batch_max) != (n, n, n):
                raise InputError(
                    f"{facts.path}: input {t.name} has a static batch of {n} but batch {opts.batch_min}/{opts.batch_opt}/{opts.batch_max} was asked",
                    f"re-export with a dynamic batch, or ask for batch {n}",
                )
            notes.append(f"input {t.name} has a static batch of {n}: the profile is fixed at {n}")
            shapes = ((n, *rest),) * 3
        else:
            dynamic = True
            shapes = ((opts.batch_min, *rest), (opts.batch_opt, *rest), (opts.batch_max, *rest))
        prof[t.name] = shapes  # type: ignore[assignment]
    return prof, dynamic, notes


def plan_build(onnx_paths: Sequence[str | os.PathLike], spec: BuildSpec, out_dir: str | os.PathLike) -> BuildPlan:
    """Check every input and option and say exactly what would be built; builds nothing."""
    if not onnx_paths:
        raise InputError("no ONNX file given", "pass one or more .onnx files (fp32, fp16, int8)")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"output folder {out} is a file", "pass a folder with --out")
    opts = resolve_options(spec, out)
    engines: list[EnginePlan] = []
    seen: dict[Path, Path] = {}
    for raw in onnx_paths:
        facts = inspect_onnx(raw)
        engine = engine_path_for(facts.path, facts.precision, out)
        if engine in seen:
            raise InputError(f"{seen[engine]} and {facts.path} would both write {engine}",
                             "rename one file or build them into different --out folders")
        seen[engine] = facts.path
        prof, dynamic, notes = _profile(facts, opts)
        tf32 = opts.tf32 if opts.tf32 is not None else facts.precision != "fp32"
        engines.append(EnginePlan(
            onnx=facts.path, engine=engine, sidecar=engine.with_name(engine.name + ".json"),
            trtexec_script=trtexec_script_path(engine), precision=facts.precision,
            precision_source=facts.precision_source, inputs=facts.inputs, outputs=facts.outputs,
            profile=prof, dynamic=dynamic, tf32=tf32, notes=tuple(notes),
        ))
    return BuildPlan(out, opts, tuple(engines))


# ----------------------------------------------------------------------------- trtexec

def _dims(shape: Shape) -> str:
    return "x".join(str(d) for d in shape)


def trtexec_engine_path(engine: Path) -> Path:
    """Where the trtexec script saves its engine: never the engine attnvgg built, whose sidecar hashes it."""
    stem = engine.name[: -len(ENGINE_SUFFIX)] if engine.name.endswith(ENGINE_SUFFIX) else engine.name
    return engine.with_name(f"{stem}.trtexec{ENGINE_SUFFIX}")


def trtexec_args(ep: EnginePlan, opts: BuildOptions, base: Optional[Path] = None) -> list[str]:
    """The trtexec arguments that build the same engine and profile it at the opt batch; paths relative to ``base``.

    The engine goes to ``trtexec_engine_path`` (the one attnvgg built stays what its sidecar
    hashes); per-layer information and a per-layer profile are exported beside it
    (``--profilingVerbosity=detailed --exportLayerInfo --exportProfile``), and ``--shapes`` runs the
    benchmarked batch (the profile's opt shapes).
    """

    def rel(p: Path) -> str:
        return os.path.relpath(p, base) if base is not None else str(p)

    out = trtexec_engine_path(ep.engine)
    args = ["trtexec", f"--onnx={rel(ep.onnx)}", f"--saveEngine={rel(out)}", "--stronglyTyped"]
    if ep.dynamic:
        for i, key in enumerate(("--minShapes", "--optShapes", "--maxShapes")):
            args.append(f"{key}=" + ",".join(f"{name}:{_dims(s[i])}" for name, s in ep.profile.items()))
        args.append("--shapes=" + ",".join(f"{name}:{_dims(s[1])}" for name, s in ep.profile.items()))
    args += ["--profilingVerbosity=detailed", f"--exportLayerInfo={rel(out.with_name(out.name + '.layers.json'))}",
             f"--exportProfile={rel(out.with_name(out.name + '.profile.json'))}"]
    args.append(f"--memPoolSize=workspace:{opts.workspace_mib}M")
    args.append(f"--builderOptimizationLevel={opts.optimization_level}")
    if opts.timing_cache:
        args.append(f"--timingCacheFile={rel(opts.timing_cache)}")
    if not ep.tf32:
        args.append("--noTF32")
    if opts.hardware_compatibility == "ampere+":
        args.append("--hardwareCompatibilityLevel=ampere+")
    elif opts.hardware_compatibility == "same-compute-capability":
        args.append("--hardwareCompatibilityLevel=sameComputeCapability")
    if opts.version_compatible:
        args.append("--versionCompatible")
    if opts.dla_core is not None:
        args.append(f"--useDLACore={opts.dla_core}")
        if opts.gpu_fallback:
            args.append("--allowGPUFallback")
    return args


def trtexec_line(ep: EnginePlan, opts: BuildOptions, base: Optional[Path] = None) -> str:
    return " ".join(shlex.quote(a) for a in trtexec_args(ep, opts, base))


def trtexec_command(ep: EnginePlan, opts: BuildOptions) -> str:
    """The command the engine's ``.trtexec.sh`` runs, as one line: the same arguments, paths
    relative to the engine's folder, run from there (what the dry run prints)."""
    return f"cd {shlex.quote(str(ep.engine.parent))} && {trtexec_line(ep, opts, base=ep.engine.parent)}"


def trtexec_script(ep: EnginePlan, opts: BuildOptions) -> str:
    """A shell script, run from anywhere, that rebuilds this engine with trtexec."""
    base = ep.engine.parent
    args = trtexec_args(ep, opts, base=base)
    body = " \\\n  ".join(shlex.quote(a) for a in args)
    return (
        "#!/usr/bin/env bash\n"
        f"# Rebuilds {ep.engine.name} with trtexec, as `attnvgg build` did ({ep.precision}, target {opts.target}),\n"
        f"# into {trtexec_engine_path(ep.engine).name} (the attnvgg engine stays what its sidecar hashes),\n"
        "# with per-layer info and a per-layer profile at the benchmarked (opt) batch.\n"
        "# TensorRT 11's pip wheels ship no trtexec: use the TensorRT tar/deb/container.\n"
        "# Precision comes from the ONNX graph (strongly typed build): no --fp16/--int8.\n"
        "# --stronglyTyped is required on TensorRT 10.x and a no-op on 11.x. trtexec then\n"
        "# benchmarks the engine at --shapes; add --skipInference to only build.\n"
        "set -euo pipefail\n"
        'cd "$(dirname "$0")"\n'
        f"{body} \"$@\"\n"
    )


# ----------------------------------------------------------------------------- Polygraphy

#: CreateConfig arguments attnvgg never passes: TensorRT 11 has no precision builder flags and no
#: implicit-INT8 calibrators (Polygraphy 0.53.6 sets those flags only when asked: config.py).
FORBIDDEN_CONFIG_ARGS = ("fp16", "int8", "bf16", "fp8", "calibrator", "precision_constraints")
_HW_LEVELS = {"ampere+": "AMPERE_PLUS", "same-compute-capability": "SAME_COMPUTE_CAPABILITY"}


def polygraphy_build_args(ep: EnginePlan, opts: BuildOptions) -> dict:
    """What ``engines.tensorrt`` hands Polygraphy's loaders for one engine, as plain data.

    ``network``: ``NetworkFromOnnxPath(path, strongly_typed=True)``. ``config``: ``CreateConfig``
    keyword arguments, TensorRT enum members by name (``engines.tensorrt`` maps them). ``dla_core``
    is set by a ``PostprocessConfig`` (CreateConfig's ``use_dla`` always picks core 0).
    ``save_timing_cache``: ``EngineBytesFromNetwork``'s, the same file ``load_timing_cache`` reads.
    """
    config: dict[str, Any] = {
        "profiles": ([{name: {"min": list(mn), "opt": list(op), "max": list(mx)}
                       for name, (mn, op, mx) in ep.profile.items()}] if ep.dynamic else None),
        "memory_pool_limits": {"WORKSPACE": opts.workspace_mib << 20},
        "tf32": ep.tf32,
        "builder_optimization_level": opts.optimization_level,
        "profiling_verbosity": "DETAILED",
    }
    if opts.timing_cache:
        config["load_timing_cache"] = str(opts.timing_cache)
    if opts.hardware_compatibility != "none":
        config["hardware_compatibility_level"] = _HW_LEVELS[opts.hardware_compatibility]
    if opts.version_compatible:
        config["version_compatible"] = True
    if opts.dla_core is not None:
        config["use_dla"] = True
        config["allow_gpu_fallback"] = opts.gpu_fallback
    return {"network": {"path": str(ep.onnx), "strongly_typed": True}, "config": config,
            "dla_core": opts.dla_core, "save_timing_cache": str(opts.timing_cache) if opts.timing_cache else None}


# ----------------------------------------------------------------------------- dry-run text

def render_plan(plan: BuildPlan) -> str:
    o = plan.options
    set_ = set(o.overridden)

    def src(name: str) -> str:
        return "set" if name in set_ else f"target {o.target}"

    lines = [
        f"build plan: {len(plan.engines)} engine(s) into {plan.out_dir} (dry run: nothing built, TensorRT not imported)",
        f"target: {o.target}",
        f"batch: min {o.batch_min} / opt {o.batch_opt} / max {o.batch_max} "
        f"({'set' if o.explicit_batch else 'target ' + o.target})",
        f"workspace: {o.workspace_mib} MiB ({src('workspace_mib')})",
        f"builder optimization level: {o.optimization_level} ({src('optimization_level')})",
        "timing cache: " + (f"{o.timing_cache} ({'reused' if o.timing_cache.is_file() else 'created'})"
                            if o.timing_cache else "off"),
        f"hardware compatibility: {o.hardware_compatibility}",
        f"version compatible: {'yes' if o.version_compatible else 'no'}",
        "DLA: " + (f"core {o.dla_core}, GPU fallback {'on' if o.gpu_fallback else 'off'}" if o.dla_core is not None else "off (GPU)"),
        "network: strongly typed (precision from each ONNX file; no FP16/INT8 builder flags)",
    ]
    for i, e in enumerate(plan.engines, 1):
        lines.append(f"engine {i}/{len(plan.engines)}: {e.engine}")
        lines.append(f"  onnx: {e.onnx}")
        lines.append(f"  precision: {e.precision} ({e.precision_source})")
        for t in e.inputs:
            lines.append(f"  input: {t.name} {t.dtype} [{', '.join(str(d) for d in t.shape)}]")
        for t in e.outputs:
            lines.append(f"  output: {t.name} {t.dtype} [{', '.join(str(d) for d in t.shape)}]")
        for name, (mn, op, mx) in e.profile.items():
            lines.append(f"  profile {name}: min {_dims(mn)}  opt {_dims(op)}  max {_dims(mx)}"
                         + ("" if e.dynamic else " (static, no profile needed)"))
        tf32_why = "set" if o.tf32 is not None else ("default off for fp32" if e.precision == "fp32" else "TensorRT default for " + e.precision)
        lines.append(f"  tf32: {'on' if e.tf32 else 'off'} ({tf32_why})")
        for n in e.notes:
            lines.append(f"  note: {n}")
        lines.append(f"  sidecar: {e.sidecar}")
        lines.append(f"  trtexec script: {e.trtexec_script}")
        lines.append(f"  trtexec: {trtexec_command(e, o)}")
    return "\n".join(lines)


def make_sidecar(ep: EnginePlan, opts: BuildOptions, env: RuntimeEnv, *, onnx_hash: str,
                 engine_sha256: str, engine_bytes: int, build_seconds: float,
                 timing_cache_status: str = "", attnvgg_version: str = "") -> dict:
    d = ep.as_dict()
    return {
        "format": SIDECAR_FORMAT,
        "engine": ep.engine.name,
        "engine_sha256": engine_sha256,
        "engine_bytes": engine_bytes,
        "onnx": str(ep.onnx),
        "source": str(ep.onnx.resolve()),      # the sidecar chain validate follows to the model spec
        "onnx_hash": onnx_hash,
        "precision": ep.precision,
        "precision_source": ep.precision_source,
        "tensorrt_version": env.tensorrt_version,
        "gpu": {"name": env.gpu_name, "compute_capability": env.compute_capability},
        "inputs": d["inputs"],
        "outputs": d["outputs"],
        "profiles": d["profiles"],
        "build_options": {**opts.as_dict(), "tf32": ep.tf32, "strongly_typed": True},
        "build_seconds": round(build_seconds, 3),
        "built_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "timing_cache": timing_cache_status,
        "trtexec_script": ep.trtexec_script.name,
        "attnvgg_version": attnvgg_version,
    }
