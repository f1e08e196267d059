"""The attnvgg command line: one thin subcommand per stage.

Each command parses options, calls the stage function, and turns the project's errors into
one line on stderr with the error's exit code (2 bad input, 1 failed check, 3 stage error,
4 missing dependency). Heavy modules are imported inside the commands.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any, Callable

import click

from attnvgg import __version__
from attnvgg.errors import AttnvggError


def handle_errors(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AttnvggError as err:
            click.echo(f"error: {err.one_line()}", err=True)
            sys.exit(err.exit_code)
        except KeyboardInterrupt:
            click.echo("error: interrupted; artifacts already written are complete, rerun to resume", err=True)
            sys.exit(130)

    return wrapper


# -------------------------------------------------------------------------- shared options

def model_options(fn: Callable) -> Callable:
    """Options that describe the PyTorch model; they override ``[model]`` in --config."""
    opts = [
        click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
                     help="TOML config; command-line flags override it."),
        click.option("--checkpoint", default=None, help="state_dict .pt of the model (loaded with weights_only=True)."),
        click.option("--pretrained-vgg", default=None, help="torchvision-format VGG16 state_dict to start from."),
        click.option("--model", "factory", default=None, help="Bring your own model: package.module:factory."),
        click.option("--attention", default=None, help="Kinds for blocks 3,4,5 from global|se|cbam|none, e.g. global,global,global."),
        click.option("--width", type=float, default=None, help="Channel width multiplier (1.0 = VGG16)."),
        click.option("--num-classes", type=int, default=None, help="Classifier outputs."),
        click.option("--input-size", type=int, default=None, help="Static input height = width in pixels."),
        click.option("--gamma", type=float, default=None, help="Set every global-attention gamma (random-weight checks)."),
        click.option("--seed", type=int, default=None, help="Seed for random initialisation."),
        click.option("--trust-checkpoint", is_flag=True, default=None,
                     help="Allow full unpickling of the checkpoint (runs code from the file)."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def apply_model_options(cfg: Any, kw: dict) -> None:
    """Move model flags from ``kw`` into ``cfg.model`` (flags win over the file)."""
    m = cfg.model
    for key in ("checkpoint", "pretrained_vgg", "factory", "width", "num_classes", "input_size",
                "gamma", "seed", "trust_checkpoint"):
        value = kw.pop(key, None)
        if value is not None:
            setattr(m, key, value)
    attention = kw.pop("attention", None)
    if attention is not None:
        m.attention = [a.strip() for a in attention.split(",")]
        if len(m.attention) == 1:
            m.attention = m.attention * 3
    if m.factory:
        m.arch = "custom"


def load_cfg(config_path: str | None):
    from attnvgg.config import load_config

    return load_config(config_path)


# -------------------------------------------------------------------------- the group

@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="attnvgg")
def cli() -> None:
    """attnvgg: PyTorch -> ONNX -> parity -> FP16/INT8 -> TensorRT -> latency/accuracy report."""


def main() -> None:
    cli(prog_name="attnvgg")


# ------------------------------------------------------------ convert / calibrate / evaluate

def _default_out(model: str, suffix: str) -> str:
    p = Path(model)
    stem = p.name[: -len(".onnx")] if p.name.endswith(".onnx") else p.stem
    return str(p.with_name(stem + suffix))


def _onnx_input_hw(path: str) -> int:
    """The model's input height (= width), read from the graph without loading its weights."""
    from attnvgg.errors import InputError

    p = Path(path)
    if not p.is_file():
        raise InputError(f"ONNX file not found: {p}", "run attnvgg export first or fix the path")
    try:
        import onnx

        model = onnx.load(str(p), load_external_data=False)
    except Exception as exc:
        raise InputError(f"cannot read {p} as ONNX ({type(exc).__name__})", "pass a model written by attnvgg export") from exc
    from attnvgg.calibration.reader import model_input

    return model_input(model).chw[1]


def _preprocess_for(cfg: Any, hw: int) -> Any:
    """The config's preprocessing with the crop the model needs; a conflicting explicit crop is an error."""
    import dataclasses

    from attnvgg.config import PreprocessSpec
    from attnvgg.errors import InputError

    pre = dataclasses.replace(cfg.preprocess)
    if pre.crop == hw:
        return pre
    if pre.crop != PreprocessSpec().crop:
        raise InputError(f"[preprocess] crop is {pre.crop} but the model takes {hw}x{hw} inputs",
                         f"set crop = {hw} in the config or use the model exported for {pre.crop} px")
    pre.resize = max(hw, round(hw * pre.resize / pre.crop))
    pre.crop = hw
    return pre


def _open_data(name: str, cfg: Any, hw: int) -> Any:
    from attnvgg.data import open_dataset

    return open_dataset(name, _preprocess_for(cfg, hw))


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--precision", type=click.Choice(["fp16"]), required=True, help="Target precision (INT8: attnvgg calibrate).")
@click.option("--out", default=None, help="Output .onnx (default: MODEL with .fp16.onnx).")
@click.option("--block-op", "block_ops", multiple=True, help="Op type kept in fp32 (repeatable), e.g. Softmax.")
@click.option("--fp16-io", is_flag=True, help="Make the input and logits float16 too (default: float32 I/O).")
@click.option("--no-check", is_flag=True, help="Skip the parity check against the fp32 model.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None, help="TOML config ([fp16]).")
@handle_errors
def convert(model: str, precision: str, out: str | None, block_ops: tuple, fp16_io: bool, no_check: bool,
            config_path: str | None) -> None:
    """Write an FP16-typed variant of MODEL.onnx and check it against MODEL (fp16 tolerance)."""
    cfg = load_cfg(config_path)
    spec = cfg.fp16
    if block_ops:
        spec.block_ops = list(block_ops)
    if fp16_io:
        spec.keep_io_types = False
    if no_check:
        spec.check = False
    from attnvgg.export.fp16 import convert_fp16

    r = convert_fp16(model, out or _default_out(model, ".fp16.onnx"), spec, tolerance=cfg.validate.tolerances["fp16"])
    check = (f"parity vs fp32: cosine {r.parity['min_cosine']:.7f}, max abs {r.parity['max_abs']:.2g}"
             if r.parity else "parity not checked")
    click.echo(f"wrote {r.output} (fp16, blocked: {', '.join(r.block_ops) or 'none'}; {check})")


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--data", default=None, help="builtin:calib (default), an image folder, or a .npz/.npy file.")
@click.option("--out", default=None, help="Output .onnx (default: MODEL with .int8.onnx).")
@click.option("--method", type=click.Choice(["minmax", "entropy", "percentile"]), default=None)
@click.option("--flavour", type=click.Choice(["tensorrt", "cpu"]), default=None,
              help="tensorrt: int8 symmetric, zero point 0 (default); cpu: uint8 asymmetric activations.")
@click.option("--exclude-preset", type=click.Choice(["attention", "attention+gates", "none"]), default=None,
              help="What stays in float (default: attention).")
@click.option("--exclude", multiple=True, help="Also keep this node (by name) in float; repeatable.")
@click.option("--batch-size", type=int, default=None, help="Images per calibration batch (bounds memory).")
@click.option("--num-images", type=int, default=None, help="Calibrate on the first N images (default: all).")
@click.option("--per-tensor", is_flag=True, help="One weight scale per tensor instead of per output channel.")
@click.option("--percentile", type=float, default=None, help="For --method percentile (default 99.999).")
@click.option("--num-bins", type=int, default=None, help="Histogram bins for entropy/percentile.")
@click.option("--cache-dir", default=None, help="Calibration cache folder (default $ATTNVGG_CACHE_DIR/calib or ~/.cache/attnvgg/calib).")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the calibration cache.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None, help="TOML config ([calibrate], [preprocess]).")
@handle_errors
def calibrate(model: str, data: str | None, out: str | None, config_path: str | None, **kw: Any) -> None:
    """Write an INT8 Q/DQ variant of MODEL.onnx calibrated on images (ONNX Runtime quantizer)."""
    cfg = load_cfg(config_path)
    spec = cfg.calibrate
    for key in ("method", "flavour", "exclude_preset", "batch_size", "num_images", "percentile", "num_bins", "cache_dir"):
        if kw.get(key) is not None:
            setattr(spec, key, kw[key])
    if kw["exclude"]:
        spec.exclude = list(spec.exclude) + list(kw["exclude"])
    if kw["per_tensor"]:
        spec.per_channel = False
    if kw["no_cache"]:
        spec.cache = False
    if data:
        spec.data = data
    dataset = _open_data(spec.data, cfg, _onnx_input_hw(model))
    from attnvgg.calibration.int8 import calibrate as run_calibration

    r = run_calibration(model, dataset, out or _default_out(model, ".int8.onnx"), spec)
    how = "cache hit" if r.cache_hit else f"calibrated in {r.calibration_s:.1f} s"
    click.echo(f"wrote {r.output} (int8 {r.flavour}, {r.method}, {r.images} images, {how}; "
               f"{len(r.quantized)} nodes quantized, {len(r.excluded)} kept in float)")


@cli.command()
@click.argument("artifact", required=False, type=click.Path(dir_okay=False))
@model_options
@click.option("--data", default=None, help="Labelled data: builtin:val (default), a class-folder tree, or .npz.")
@click.option("--reference", default=None, help="fp32 reference: an .onnx/.engine file, or 'pytorch' (the model options).")
@click.option("--reference-logits", default=None, type=click.Path(dir_okay=False), help=".npy logits of the reference, in data order.")
@click.option("--save-logits", default=None, type=click.Path(dir_okay=False), help="Also save this model's logits (.npy).")
@click.option("--batch-size", type=int, default=None)
@click.option("--limit", type=int, default=None, help="Evaluate only the first N images.")
@click.option("--provider", type=click.Choice(["cpu", "cuda"]), default=None, help="ONNX Runtime provider.")
@click.option("--threads", type=int, default=None)
@click.option("--max-top1-drop", type=float, default=None, help="Fail (exit 1) if top-1 is more than this fraction below the reference's.")
@click.option("--out", default=None, help="Results JSON (default: ARTIFACT.accuracy.json, or accuracy.json).")
@handle_errors
def evaluate(artifact: str | None, config_path: str | None, data: str | None, reference: str | None,
             reference_logits: str | None, save_logits: str | None, out: str | None, **kw: Any) -> None:
    """Top-1/top-5 of ARTIFACT (or the PyTorch model) on labelled data; agreement with a reference."""
    import numpy as np

    from attnvgg.artifacts import write_json
    from attnvgg.engines.factory import open_runner
    from attnvgg.errors import InputError

    cfg = load_cfg(config_path)
    spec = cfg.evaluate
    for key in ("batch_size", "limit", "provider", "threads", "max_top1_drop"):
        if kw.get(key) is not None:
            setattr(spec, key, kw.pop(key))
        else:
            kw.pop(key, None)
    apply_model_options(cfg, kw)
    if data:
        spec.data = data
    if reference and reference_logits:
        raise InputError("both --reference and --reference-logits were given", "pass only one")
    runner = open_runner(artifact, provider=spec.provider, threads=spec.threads, model_spec=cfg.model)
    ref_runner = None
    if reference == "pytorch":
        ref_runner = open_runner(None, model_spec=cfg.model)
    elif reference:
        ref_runner = open_runner(reference, provider=spec.provider, threads=spec.threads)
    ref_logits = None
    if reference_logits:
        try:
            ref_logits = np.load(reference_logits, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read reference logits {reference_logits} ({type(exc).__name__})",
                             "pass a .npy file written by attnvgg evaluate --save-logits") from exc
    with runner:
        hw = runner.input_metadata()[0].shape[-1]
        hw = hw if hw > 0 else cfg.model.input_size
        dataset = _open_data(spec.data, cfg, hw)
        from attnvgg.validate.accuracy import check_budget, evaluate as run_evaluation

        result = run_evaluation(runner, dataset, spec, reference=ref_runner, reference_logits=ref_logits,
                                reference_name=reference or reference_logits or "reference",
                                keep_logits=bool(save_logits))
    out = out or (artifact + ".accuracy.json" if artifact else "accuracy.json")
    write_json(out, {"artifact": artifact or "pytorch", **result.to_dict()})
    if save_logits:
        from attnvgg.artifacts import atomic_path

        with atomic_path(save_logits) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, result.logits)
    acc = (f"top-1 {result.top1:.2%}, top-{result.topk} {result.top5:.2%}" if result.top1 is not None else "no labels")
    ref = (f"; vs reference: top-1 agreement {result.reference.top1_agreement:.2%}, "
           f"mean cosine {result.reference.mean_cosine:.6f}" if result.reference else "")
    click.echo(f"{acc} on {result.images} images{ref} -> {out}")
    check_budget(result, spec.max_top1_drop)
