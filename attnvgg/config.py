"""Dataclasses for every stage's spec, and TOML load/save.

A spec is plain data: every field has a default, unknown keys are refused with the section
and key named, and types are checked on load so a typo in a config file is caught before a
stage runs for minutes.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from attnvgg.errors import InputError
from attnvgg.artifacts import write_text

ATTENTION_KINDS = ("global", "se", "cbam", "none")
PRECISIONS = ("fp32", "fp16", "int8")
#: the runners of an ONNX file (--provider/--runner, [validate] providers, [bench] providers,
#: [evaluate] provider): cpu/cuda = ONNX Runtime's execution providers, openvino = OpenVINO on
#: the CPU in f32, openvino-bf16 = OpenVINO on the CPU with bf16 inference precision
ONNX_RUNNERS = ("cpu", "cuda", "openvino", "openvino-bf16")


@dataclass
class ModelSpec:
    """Which network to build and with which weights."""

    arch: str = "vgg16_attention"          # or "custom" with ``factory``
    attention: list[str] = field(default_factory=lambda: ["global", "global", "global"])
    width: float = 1.0                      # channel multiplier; < 1 gives the tiny test models
    num_classes: int = 1000
    input_size: int = 224                   # static H = W of the exported graph
    in_channels: int = 3
    checkpoint: Optional[str] = None        # state_dict (.pt), loaded with weights_only=True
    pretrained_vgg: Optional[str] = None    # torchvision-format VGG16 state_dict to start from
    factory: Optional[str] = None           # "package.module:function" returning an nn.Module
    trust_checkpoint: bool = False          # opt-in to full unpickling of a checkpoint
    seed: int = 0                           # random init when no checkpoint is given
    gamma: Optional[float] = None           # set every attention gamma (random-weight checks)


@dataclass
class PreprocessSpec:
    """How images become the NCHW float32 tensor the model sees; stored with the model."""

    resize: int = 256
    crop: int = 224
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    interpolation: str = "bilinear"


@dataclass
class ExportSpec:
    exporter: str = "dynamo"                # "dynamo" or "torchscript"
    opset: int = 20
    dynamic_batch: bool = True
    batch_min: int = 1
    batch_max: int = 16                     # largest batch parity is proven at (TensorRT profiles: [build])
    dynamic_hw: bool = False                # refused unless every size in hw_sizes passes parity
    hw_sizes: list[int] = field(default_factory=list)
    external_data: str = "auto"             # "auto" (above 2 GB), "always", "never"


@dataclass
class SimplifySpec:
    check_n: int = 2                        # onnxsim's numerical check: random input sets
    skip_if_minimal: bool = True


RANDOM_INPUT_ROLES = ("gate", "info")


@dataclass
class Tolerance:
    """Per-precision parity limits.

    ``random_inputs`` says what the random-input cases are for: ``gate`` (they must pass) or
    ``info`` (measured, shown and written, but the verdict rests on the image cases). INT8 uses
    ``info``: its ranges are calibrated on images, and standard-normal noise lies outside that
    distribution (activations beyond the calibrated ranges clip), so a random-input miss says
    nothing about the model on the data it serves, while an image miss does. Where no images
    are given, the random cases gate whatever this says (a verdict must rest on something).
    """

    atol: float = 1e-4
    rtol: float = 1e-3
    min_cosine: float = 0.99999
    min_top1: float = 1.0
    random_inputs: str = "gate"


def default_tolerances() -> dict[str, Tolerance]:
    return {
        "fp32": Tolerance(atol=1e-4, rtol=1e-3, min_cosine=0.99999, min_top1=1.0),
        "fp16": Tolerance(atol=5e-2, rtol=5e-2, min_cosine=0.999, min_top1=0.95),
        "int8": Tolerance(atol=float("inf"), rtol=float("inf"), min_cosine=0.98, min_top1=0.8, random_inputs="info"),
        # OpenVINO with INFERENCE_PRECISION_HINT=bf16 (8 mantissa bits) on an fp32/fp16 file, vs
        # PyTorch fp32. Measured 2026-12-01 (openvino 2026.4.1, this Zen 5 CPU), worst cases:
        # - built-in model, 1000 val images: max abs 0.115 (|logits| up to 16.6), min cosine
        #   0.99996, top-1 agreement 100 %;
        # - built-in model, 1024 standard-normal inputs as 64 cases of 16 (what validate feeds):
        #   max abs 0.158, worst-sample cosine 0.946 (mean 0.9987), worst case top-1 agreement
        #   81.25 % (3 of 16 flipped; mean 96.5 %);
        # - tiny test models (width 1/16, 32 px, every attention kind): max abs <= 4.4e-5,
        #   cosine >= 0.99973, top-1 >= 97.9 %;
        # - full-size model at 224 (random weights, gamma 0.5), 16 standard-normal inputs: max abs
        #   6.2e-3, cosine >= 0.99994, top-1 87.5 % (1 of 8 near-tie logits flipped).
        # Margins: atol 3.2x the worst max abs, 1 - cosine 1.85x the worst, top-1 one more flip
        # in 16 than the worst case seen. Random inputs to a trained model give small, near-tie
        # logits, hence the loose cosine/top-1; on images bf16 is far closer (first line).
        "bf16": Tolerance(atol=0.5, rtol=0.05, min_cosine=0.9, min_top1=0.75),
    }


@dataclass
class MapLimits:
    """The least agreement attention maps must keep with PyTorch fp32 (``validate --attention-maps``).

    Measured on the built-in checkpoint (4 val images, worst attention block): the default INT8
    models keep cosine >= 0.998 and mean JS <= 0.0005 (tensorrt flavour by ModelOpt: 0.9979 /
    0.00044; cpu flavour 0.9990 / 0.00022); the cpu flavour with the Softmax quantized too
    (--keep-float none) falls to cosine 0.9888 and mean JS 0.0046 in block 3. The int8 limits
    sit between the two.
    """

    min_cosine: float = 0.995   # worst image, every attention tensor
    max_js: float = 0.002       # mean Jensen-Shannon divergence (base 2) of the Softmax rows


def default_map_limits() -> dict[str, MapLimits]:
    return {
        "fp32": MapLimits(min_cosine=0.9999, max_js=1e-4),
        "fp16": MapLimits(min_cosine=0.999, max_js=1e-3),
        "int8": MapLimits(min_cosine=0.995, max_js=0.002),
    }


@dataclass
class ValidateSpec:
    batches: list[int] = field(default_factory=lambda: [1, 3])   # the dynamic range ends are added
    samples: int = 8                        # random input sets per batch size (capped by images)
    images: Optional[str] = None            # image folder or .npy/.npz of inputs
    providers: list[str] = field(default_factory=lambda: ["cpu"])  # "cpu", "cuda"
    seed: int = 0
    tolerances: dict[str, Tolerance] = field(default_factory=default_tolerances)
    locate: bool = False
    attention_maps: bool = False            # also gate on attention-map agreement (map_limits)
    map_images: int = 4                     # images (from ``images``, else random inputs) the maps are compared on
    map_limits: dict[str, MapLimits] = field(default_factory=default_map_limits)


BUILD_TARGETS = ("server", "edge")
HARDWARE_COMPATIBILITY = ("none", "ampere+", "same-compute-capability")


@dataclass
class BuildSpec:
    """TensorRT engine build options. ``None`` means: take it from the target.

    Precision is not here: it is read from each ONNX file (strongly typed builds).
    The targets (``attnvgg.engines.build_plan.TARGETS``): server = batch 1/16/64,
    8 GiB workspace; edge = batch 1/1/8, 1 GiB workspace.
    """

    target: str = "server"                  # "server" or "edge" (config key "preset" before issue 10)
    batch_min: Optional[int] = None         # optimization profile, batch axis
    batch_opt: Optional[int] = None
    batch_max: Optional[int] = None
    workspace_mib: Optional[int] = None     # MemoryPoolType.WORKSPACE limit
    optimization_level: Optional[int] = None  # builder optimization level 0..5 (TensorRT default 3)
    tf32: Optional[bool] = None             # None: off for fp32 engines, TensorRT default (on) otherwise
    timing_cache: str = "timing.cache"      # relative to the output folder; "" disables it
    hardware_compatibility: str = "none"    # "none", "ampere+", "same-compute-capability"
    version_compatible: bool = False        # engine runs on later TensorRT versions (lean runtime inside)
    dla_core: Optional[int] = None          # Jetson DLA core; TensorRT 10.x (11.4.1+ on AGX Orin)
    gpu_fallback: bool = True               # with a DLA core: layers DLA cannot run go to the GPU


# ---------------------------------------------------------------- fp16 / int8 / accuracy
FP16_CONVERTERS = ("autocast", "onnxconverter-common")
CALIB_METHODS = ("minmax", "entropy", "percentile")
CALIB_FLAVOURS = ("tensorrt", "cpu")
HIGH_PRECISIONS = ("fp16", "fp32")
KEEP_FLOAT = ("attention", "attention+gates", "none")


@dataclass
class Fp16Spec:
    """``attnvgg convert --precision fp16``: an FP16-typed graph with fp32 input/output by default.

    The converter is ModelOpt AutoCast (``modelopt.onnx.autocast.convert_to_mixed_precision``): it
    keeps in fp32 the nodes whose values (one reference run on random inputs) exceed its data range,
    and ``block_ops`` (its ``op_types_to_exclude``). ``converter = "onnxconverter-common"`` is the
    previous converter (``block_ops`` on top of its list of ops without fp16 kernels).
    Measured on ORT CPU, blocking Softmax/ReduceMean changed nothing (CPU casts fp16 ops back to
    fp32), so none is blocked by default; ``--block-op Softmax`` is there for TensorRT runs.
    """

    block_ops: list[str] = field(default_factory=list)
    converter: str = "autocast"             # ModelOpt AutoCast (data-range fallback), or "onnxconverter-common"
    keep_io_types: bool = True              # --fp16-io turns it off (float16 input and logits)
    check: bool = True                      # parity against the fp32 ONNX with the fp16 tolerance
    check_samples: int = 4                  # random inputs in the parity check
    seed: int = 0


@dataclass
class CalibrateSpec:
    """``attnvgg calibrate``: explicit Q/DQ INT8 from calibration data.

    The ``tensorrt`` flavour is placed by NVIDIA ModelOpt's ONNX PTQ from attnvgg's ranges
    (``calibration.modelopt_ptq``); the ``cpu`` flavour by ONNX Runtime's quantizer.
    """

    data: str = "builtin:calib"             # builtin:calib, an image folder, or a .npz/.npy file
    method: str = "minmax"                  # minmax | entropy | percentile
    flavour: str = "tensorrt"               # tensorrt: int8 symmetric (zero point 0); cpu: uint8 activations
    keep_float: str = "attention"           # attention | attention+gates | none (was "exclude_preset")
    exclude: list[str] = field(default_factory=list)   # extra node names kept in float
    batch_size: int = 4                     # images per calibration batch: peak RSS 2.1 GiB at 224 px (3.5 at 8)
    num_images: Optional[int] = None        # None = every image in the set
    per_channel: bool = True                # per-output-channel weight scales
    percentile: float = 99.999              # for method = percentile
    num_bins: Optional[int] = None          # histogram bins (None = ONNX Runtime's default per method)
    cache: bool = True                      # reuse tensor ranges from an earlier identical calibration
    cache_dir: Optional[str] = None         # default $ATTNVGG_CACHE_DIR/calib or ~/.cache/attnvgg/calib
    check_samples: int = 0                  # >0: compare that many calibration images against fp32 (~10 s at 224)
    high_precision: Optional[str] = None    # tensorrt flavour: the unquantized part's type, fp16 (default) or fp32


@dataclass
class EvaluateSpec:
    """``attnvgg evaluate``: top-1/top-5 on labelled data, agreement with an fp32 reference."""

    data: str = "builtin:val"
    batch_size: int = 16
    limit: Optional[int] = None             # evaluate only the first N images
    provider: str = "cpu"
    threads: Optional[int] = None
    max_top1_drop: Optional[float] = None   # fail (exit 1) if top-1 drops more than this vs the reference


RUN_STAGES = ("export", "simplify", "fp16", "calibrate", "validate", "evaluate", "explain", "build", "bench",
              "report")
# openvino-*: OpenVINO on the CPU running model.sim.onnx in f32 / bf16 and model.int8-cpu.onnx
# (bf16 for its float parts where the CPU has bf16); skipped with the reason where it cannot run.
RUN_VARIANTS = ("fp32", "fp16", "int8-tensorrt", "int8-cpu", "openvino-fp32", "openvino-bf16", "openvino-int8")


@dataclass
class RunSpec:
    """``attnvgg run``: which stages and variants, and where the run folder is."""

    out: str = "runs/default"
    stages: list[str] = field(default_factory=lambda: list(RUN_STAGES))
    variants: list[str] = field(default_factory=lambda: list(RUN_VARIANTS))
    pytorch_baseline: bool = True           # PyTorch eager fp32 rows in accuracy and bench


@dataclass
class BenchSpec:
    """Latency bench settings (``attnvgg bench``; ``attnvgg.engines.bench``).

    Each runner x batch is timed for at least ``iterations`` runs AND at least ``min_seconds``
    (``iterations = 0``: by time only; ``min_seconds = 0``: by count only), after ``warmup``
    untimed runs. ``threads`` sets ONNX Runtime's intra-op threads and torch.set_num_threads
    for the PyTorch baseline (None: each library's default). ``providers`` picks the devices
    for ONNX files and the PyTorch baseline ("cpu", "cuda"); engines always run on the GPU.
    """

    warmup: int = 5
    iterations: int = 20
    min_seconds: float = 1.0
    batches: list[int] = field(default_factory=lambda: [1, 8])
    threads: Optional[int] = None
    cuda_graphs: bool = False               # PyTorch on CUDA and TensorRT: replay a captured CUDA graph
    providers: list[str] = field(default_factory=lambda: ["cpu"])
    seed: int = 0                           # random inputs

@dataclass
class ExplainSpec:
    """Attention maps across precisions (``attnvgg explain``; the run's explain stage)."""

    data: str = "builtin:val"               # images the maps are drawn for (the first ``images``)
    images: int = 4
    quantized_softmax: bool = True          # also compare an INT8 model with the Softmax quantized (the broken case)


STUDY_VARIANTS = ("plain", "global", "se", "cbam", "global-b5")


@dataclass
class StudySpec:
    """``attnvgg study``: one model per attention variant, trained with the [train] recipe, then the run."""

    out: str = "runs/study"
    variants: list[str] = field(default_factory=lambda: list(STUDY_VARIANTS))
    reuse_builtin: bool = True              # the shipped checkpoint stands for "global" when its recipe matches
    full_size_gmac: bool = True             # also count GMAC of the full-size models (width 1.0) at full_size_input
    full_size_input: int = 224


# ---------------------------------------------------------------------------- data / train

@dataclass
class TrainSpec:
    """How ``attnvgg train`` fits the small model on the built-in data set.

    Stored in the model TOML beside the checkpoint, so the checkpoint can be regenerated.
    """

    epochs: int = 5
    seed: int = 0
    batch_size: int = 64
    lr: float = 1e-3                        # Adam peak, one-cycle cosine schedule
    weight_decay: float = 0.0
    width: float = 0.125
    attention: list[str] = field(default_factory=lambda: ["global", "global", "global"])
    input_size: int = 64                    # the built-in images are 64x64
    gamma_init: float = 1.0                 # attention carries signal from step 1 and stays in use
    train_limit: int = 0                    # 0: the whole train split; > 0: its first N images
    val_limit: int = 0                      # 0: the whole val split
    threads: int = 2                        # torch threads; fixed for reproducible sums


@dataclass
class MixedSpec:
    """``attnvgg calibrate --max-drop``: keep the fewest layer groups in float that meet a top-1 budget.

    The drop is in top-1 percentage points against the fp32 model on the validation subset
    (top-1 disagreement with fp32 when the set has no labels). ``None``: no search.
    """

    max_drop: Optional[float] = None        # e.g. 0.5 = half a top-1 point
    val_data: str = "builtin:val"           # labelled data the drop is measured on
    val_limit: Optional[int] = None         # the first N validation images (None = all)
    val_batch_size: int = 16
    # Let convolution groups be kept in float too (ranked like the rest). Off by default: a float
    # convolution gives up most of the INT8 speed-up, so the default limit is "everything but the
    # convolutions in float" and a budget beyond it fails instead.
    allow_float_conv: bool = False


@dataclass
class Config:
    model: ModelSpec = field(default_factory=ModelSpec)
    preprocess: PreprocessSpec = field(default_factory=PreprocessSpec)
    export: ExportSpec = field(default_factory=ExportSpec)
    simplify: SimplifySpec = field(default_factory=SimplifySpec)
    validate: ValidateSpec = field(default_factory=ValidateSpec)
    run: RunSpec = field(default_factory=RunSpec)
    build: BuildSpec = field(default_factory=BuildSpec)
    fp16: Fp16Spec = field(default_factory=Fp16Spec)
    calibrate: CalibrateSpec = field(default_factory=CalibrateSpec)
    evaluate: EvaluateSpec = field(default_factory=EvaluateSpec)
    bench: BenchSpec = field(default_factory=BenchSpec)
    mixed: MixedSpec = field(default_factory=MixedSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    explain: ExplainSpec = field(default_factory=ExplainSpec)
    study: StudySpec = field(default_factory=StudySpec)


# ---------------------------------------------------------------------------- load / save

def _check_type(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin is typing.Union:
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check_type(value, inner[0], where)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise InputError(f"config {where}: expected a table, got {type(value).__name__}")
        return from_dict(tp, value, where)
    if origin is list:
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise InputError(f"config {where}: expected a list, got {value!r}")
        return [_check_type(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise InputError(f"config {where}: expected a table, got {value!r}")
        return {str(k): _check_type(v, args[1], f"{where}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"config {where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"config {where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise InputError(f"config {where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise InputError(f"config {where}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type, data: dict, where: str = "") -> Any:
    """Build dataclass ``cls`` from a dict, refusing unknown keys and wrong types."""
    data = _renamed(cls, data)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        sect = where or "top level"
        raise InputError(
            f"config {sect}: unknown key(s) {', '.join(unknown)}",
            f"valid keys are {', '.join(sorted(names))}",
        )
    kwargs = {}
    for key, value in data.items():
        kwargs[key] = _check_type(value, hints[key], f"{where}.{key}" if where else key)
    obj = cls(**kwargs)
    if cls is ValidateSpec:
        # A partial [validate.tolerances] table overrides only the precisions it names.
        merged = default_tolerances()
        merged.update(obj.tolerances)
        obj.tolerances = merged
        limits = default_map_limits()
        limits.update(obj.map_limits)
        obj.map_limits = limits
    return obj


#: config keys renamed so that "preset" means one thing (the run preset): old spellings still load
RENAMED = {"BuildSpec": {"preset": "target"}, "CalibrateSpec": {"exclude_preset": "keep_float"}}


def _renamed(cls: type, data: dict) -> dict:
    old = RENAMED.get(cls.__name__, {})
    if not any(k in data for k in old):
        return data
    out = dict(data)
    for was, now in old.items():
        if was in out:
            value = out.pop(was)
            out.setdefault(now, value)
    return out


def apply_dict(obj: Any, data: dict, where: str = "") -> Any:
    """Layer ``data`` over an existing dataclass (a preset): only the keys given change."""
    data = _renamed(type(obj), data)
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise InputError(f"config {where or 'top level'}: unknown key(s) {', '.join(unknown)}",
                         f"valid keys are {', '.join(sorted(names))}")
    for key, value in data.items():
        here = f"{where}.{key}" if where else key
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current) and isinstance(value, dict):
            apply_dict(current, value, here)
        elif key in ("tolerances", "map_limits") and isinstance(value, dict):
            kind = Tolerance if key == "tolerances" else MapLimits
            for prec, tol in value.items():
                if prec in current and isinstance(tol, dict):
                    apply_dict(current[prec], tol, f"{here}.{prec}")
                else:
                    current[prec] = _check_type(tol, kind, f"{here}.{prec}")
        else:
            setattr(obj, key, _check_type(value, hints[key], here))
    return obj


@dataclass
class Settings:
    """The effective config and which keys the user gave (config file, flags, --set), per section.

    ``given`` lets a stage tell "the user asked for this model" from "the preset's default", e.g.
    to take the model spec and preprocessing stored with an artifact unless the user gave them."""

    cfg: Config
    given: dict[str, set[str]] = field(default_factory=dict)

    def gave(self, section: str, besides: tuple[str, ...] = ()) -> bool:
        return bool(self.given.get(section, set()) - set(besides))


def layer(cfg: Config, layers: list[dict]) -> Settings:
    """Apply ``layers`` in order over ``cfg`` (each through ``apply_dict``: unknown keys and wrong
    types refused) and record which sections and keys they set."""
    given: dict[str, set[str]] = {}
    for data in layers:
        apply_dict(cfg, data)
        for section, table in data.items():
            keys = set(table) if isinstance(table, dict) else {section}
            given.setdefault(section, set()).update(keys)
    return Settings(cfg, given)


def read_config_file(path: str | Path) -> dict:
    """A --config file as a layer. A model TOML (``attnvgg train`` writes one beside each checkpoint,
    e.g. attnvgg/assets/builtin.toml) is a valid config: its ``[result]`` table (what training
    measured) is facts, not settings, and is left out; a relative checkpoint path is taken relative
    to the file when it is not found relative to the working directory."""
    data = read_toml(path)
    data.pop("result", None)
    model = data.get("model")
    if isinstance(model, dict):
        for key in ("checkpoint", "pretrained_vgg"):
            value = model.get(key)
            if isinstance(value, str) and not Path(value).is_absolute() and not Path(value).exists():
                beside = Path(path).parent / value
                if beside.exists():
                    model[key] = str(beside)
    return data


def nested(flags: dict[str, Any]) -> dict:
    """``{"export.opset": 17, "model.width": None}`` -> ``{"export": {"opset": 17}}`` (None = not given)."""
    out: dict = {}
    for dotted, value in flags.items():
        if value is None:
            continue
        cur = out
        keys = dotted.split(".")
        for k in keys[:-1]:
            cur = cur.setdefault(k, {})
        cur[keys[-1]] = value
    return out


def parse_override(text: str) -> dict:
    """``section.key=value`` (value in TOML syntax, bare words taken as strings) -> nested dict."""
    if "=" not in text:
        raise InputError(f"--set {text!r} is not of the form section.key=value", "e.g. --set bench.batches=[1,8]")
    path, raw = text.split("=", 1)
    keys = [k.strip() for k in path.split(".") if k.strip()]
    if not keys:
        raise InputError(f"--set {text!r} names no key", "e.g. --set calibrate.method=entropy")
    try:
        value = _toml_loads(f"v = {raw.strip()}")["v"]
    except Exception:
        value = raw.strip()
    out: dict = {}
    cur = out
    for k in keys[:-1]:
        cur = cur.setdefault(k, {})
    cur[keys[-1]] = value
    return out


def to_dict(obj: Any) -> dict:
    """Dataclass to a TOML-friendly dict (None values dropped: TOML has no null)."""

    def clean(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items() if x is not None}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    return clean(dataclasses.asdict(obj))


def _toml_loads(text: str) -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    return tomllib.loads(text)


def read_toml(path: str | Path) -> dict:
    """A TOML file as a dict, with one-line errors for a missing file or bad syntax."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"config file not found: {p}", "pass an existing .toml file")
    try:
        return _toml_loads(p.read_text())
    except Exception as exc:
        raise InputError(f"config file {p} is not valid TOML: {exc}", "fix the syntax") from exc


def load_config(path: str | Path | None = None, cls: type = Config) -> Any:
    if path is None:
        return cls()
    return from_dict(cls, read_toml(path))


def dumps_config(cfg: Any) -> str:
    import tomli_w

    return tomli_w.dumps(to_dict(cfg))


def save_config(cfg: Any, path: str | Path) -> Path:
    return write_text(path, dumps_config(cfg))
