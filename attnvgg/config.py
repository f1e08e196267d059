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

ATTENTION_KINDS = ("global", "se", "cbam", "none")
PRECISIONS = ("fp32", "fp16", "int8")


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
    batch_max: int = 64
    dynamic_hw: bool = False                # refused unless every size in hw_sizes passes parity
    hw_sizes: list[int] = field(default_factory=list)
    external_data: str = "auto"             # "auto" (above 2 GB), "always", "never"


@dataclass
class SimplifySpec:
    check_n: int = 2                        # onnxsim's numerical check: random input sets
    skip_if_minimal: bool = True


@dataclass
class Tolerance:
    atol: float = 1e-4
    rtol: float = 1e-3
    min_cosine: float = 0.99999
    min_top1: float = 1.0


def default_tolerances() -> dict[str, Tolerance]:
    return {
        "fp32": Tolerance(atol=1e-4, rtol=1e-3, min_cosine=0.99999, min_top1=1.0),
        "fp16": Tolerance(atol=5e-2, rtol=5e-2, min_cosine=0.999, min_top1=0.95),
        "int8": Tolerance(atol=float("inf"), rtol=float("inf"), min_cosine=0.98, min_top1=0.8),
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
class Config:
    model: ModelSpec = field(default_factory=ModelSpec)
    preprocess: PreprocessSpec = field(default_factory=PreprocessSpec)
    export: ExportSpec = field(default_factory=ExportSpec)
    simplify: SimplifySpec = field(default_factory=SimplifySpec)
    validate: ValidateSpec = field(default_factory=ValidateSpec)
    train: TrainSpec = field(default_factory=TrainSpec)


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
    return obj


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


def load_config(path: str | Path | None = None, cls: type = Config) -> Any:
    if path is None:
        return cls()
    p = Path(path)
    if not p.is_file():
        raise InputError(f"config file not found: {p}", "pass an existing .toml file")
    try:
        data = _toml_loads(p.read_text())
    except Exception as exc:
        raise InputError(f"config file {p} is not valid TOML: {exc}", "fix the syntax") from exc
    return from_dict(cls, data)


def dumps_config(cfg: Any) -> str:
    import tomli_w

    return tomli_w.dumps(to_dict(cfg))


def save_config(cfg: Any, path: str | Path) -> Path:
    from attnvgg.artifacts import write_text

    return write_text(path, dumps_config(cfg))
