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
from attnvgg.runners.factory import PROVIDERS as RUNNER_CHOICES

RUNNER_HELP = ("cpu/cuda = ONNX Runtime's providers, openvino = OpenVINO CPU f32, "
               "openvino-bf16 = OpenVINO CPU with bf16 inference precision (where the CPU has it)")


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


def _ints(text: str | None, what: str) -> list[int] | None:
    if text is None:
        return None
    from attnvgg.errors import InputError

    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise InputError(f"{what} must be comma-separated integers, got {text!r}", f"e.g. {what} 1,8,32") from None
    if not values or any(v < 1 for v in values):
        raise InputError(f"{what} must be positive integers, got {text!r}", f"e.g. {what} 1,8,32")
    return values


# -------------------------------------------------------------------------- export

@cli.command()
@model_options
@click.option("--out", "-o", type=click.Path(dir_okay=False), default="model.onnx", show_default=True, help="Output .onnx file.")
@click.option("--exporter", type=click.Choice(["dynamo", "torchscript"]), default=None, help="torch.onnx exporter [default: dynamo].")
@click.option("--opset", type=int, default=None, help="ONNX opset [default: 20].")
@click.option("--static-batch", is_flag=True, default=False, help="Fix the batch instead of a dynamic batch axis.")
@click.option("--batch-min", type=int, default=None, help="Smallest batch the model serves [default: 1].")
@click.option("--batch-max", type=int, default=None, help="Largest batch validate proves parity at [default: 16]; the graph itself has an unbounded batch axis.")
@click.option("--dynamic-hw", is_flag=True, default=False, help="Dynamic H/W: refused unless every --hw-sizes size passes parity.")
@click.option("--hw-sizes", default=None, help="Sizes that a dynamic-H/W export must prove, e.g. 224,256.")
@click.option("--external-data", type=click.Choice(["auto", "always", "never"]), default=None,
              help="Weights in a .onnx.data file: auto = only above 2 GB.")
@handle_errors
def export(config_path, out, exporter, opset, static_batch, batch_min, batch_max, dynamic_hw, hw_sizes,
           external_data, **kw):
    """Export the PyTorch model to ONNX (input 'input', output 'logits') and print a graph summary."""
    cfg = load_cfg(config_path)
    apply_model_options(cfg, kw)
    e = cfg.export
    for key, value in (("exporter", exporter), ("opset", opset), ("batch_min", batch_min),
                       ("batch_max", batch_max), ("external_data", external_data)):
        if value is not None:
            setattr(e, key, value)
    if static_batch:
        e.dynamic_batch = False
    if dynamic_hw:
        e.dynamic_hw = True
    if hw_sizes:
        e.hw_sizes = _ints(hw_sizes, "--hw-sizes")
    from attnvgg.export.graph import GraphSummary
    from attnvgg.export.onnx import export_onnx

    res = export_onnx(cfg.model, e, out, preprocess=cfg.preprocess)
    click.echo(f"exported {res.path} in {res.seconds:.1f} s ({e.exporter}, opset {e.opset})")
    click.echo(GraphSummary(**res.summary).format())


@cli.command()
@click.argument("src", type=click.Path())
@click.option("--out", "-o", type=click.Path(dir_okay=False), default=None, help="Output file [default: SRC with .sim.onnx].")
@click.option("--check-n", type=int, default=None, help="Random input sets for onnxsim's numerical check [default: 2].")
@click.option("--force", is_flag=True, help="Run onnxsim even when the graph is already minimal.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None, help="TOML config.")
@handle_errors
def simplify(src, out, check_n, force, config_path):
    """Simplify an ONNX model with onnxsim (with its numerical check)."""
    cfg = load_cfg(config_path)
    if check_n is not None:
        cfg.simplify.check_n = check_n
    if force:
        cfg.simplify.skip_if_minimal = False
    from attnvgg.export.simplify import simplify_onnx

    src_p = Path(src)
    out_p = Path(out) if out else src_p.with_name(src_p.name[: -len(".onnx")] + ".sim.onnx" if src_p.name.endswith(".onnx") else src_p.name + ".sim.onnx")
    res = simplify_onnx(src_p, out_p, cfg.simplify)
    click.echo(f"{res.path}: {res.reason} ({res.seconds:.1f} s)")


@cli.command()
@click.argument("artifact", type=click.Path())
@model_options
@click.option("--batches", default=None, help="Batch sizes, e.g. 1,3 (the dynamic range's ends are added) [default: 1,3].")
@click.option("--samples", type=int, default=None, help="Random samples per batch size [default: 8].")
@click.option("--images", default=None, help="Also compare on these images (folder, .npy/.npz, builtin:val).")
@click.option("--provider", "--runner", "providers", multiple=True, type=click.Choice(RUNNER_CHOICES),
              help=f"Runner(s) of an ONNX file [default: cpu]; {RUNNER_HELP}.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16", "int8"]), default=None,
              help="Tolerance set to use for every runner [default: the model's, or bf16 for openvino-bf16].")
@click.option("--atol", type=float, default=None, help="Override the absolute tolerance.")
@click.option("--rtol", type=float, default=None, help="Override the relative tolerance.")
@click.option("--min-cosine", type=float, default=None, help="Override the minimum cosine similarity.")
@click.option("--min-top1", type=float, default=None, help="Override the minimum top-1 agreement (0..1).")
@click.option("--locate", is_flag=True, help="On failure, find the first diverging layer.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None, help="Write the result JSON here.")
@click.option("--junit", "junit_path", type=click.Path(dir_okay=False), default=None, help="Write JUnit XML here.")
@handle_errors
def validate(artifact, batches, samples, images, providers, precision, atol, rtol, min_cosine, min_top1, locate,
             json_path, junit_path, config_path, **kw):
    """Parity of an ONNX model (or engine) against the PyTorch reference. Exit 0 pass, 1 fail."""
    cfg = load_cfg(config_path)
    overridden = any(v is not None for v in kw.values())
    apply_model_options(cfg, kw)
    v = cfg.validate
    explicit = batches is not None
    if batches is not None:
        v.batches = _ints(batches, "--batches")
    if samples is not None:
        v.samples = samples
    if images is not None:
        v.images = images
    if providers:
        v.providers = list(providers)
    if locate:
        v.locate = True
    from attnvgg.errors import CheckFailed
    from attnvgg.validate.parity import format_table, tolerance_sets, validate_artifact
    from attnvgg.validate.reference import precision_of, preprocess_spec_for, resolve_model_spec

    model_spec = resolve_model_spec(artifact, cfg.model, overridden or config_path is not None)
    prec = precision or precision_of(artifact)
    for name in tolerance_sets(prec, v.providers, exact=precision is not None):
        tol = v.tolerances[name]
        for key, value in (("atol", atol), ("rtol", rtol), ("min_cosine", min_cosine), ("min_top1", min_top1)):
            if value is not None:
                setattr(tol, key, value)
    pre = preprocess_spec_for(artifact) or (cfg.preprocess if config_path else None)
    res = validate_artifact(artifact, model_spec, v, json_path, junit_path, precision=prec,
                            explicit_batches=explicit, preprocess=pre, exact_precision=precision is not None)
    click.echo(format_table(res))
    if not res.passed:
        where = f"; first diverging layer: {res.locate['module']}" if res.locate and res.locate.get("found") else ""
        raise CheckFailed(f"parity failed for {artifact}{where}",
                          "see the table above" + ("" if locate else "; rerun with --locate to find the first diverging layer"))


# -------------------------------------------------------------------------- build (TensorRT)

@cli.command("build", epilog="""\b
Exit codes: 0 engines built (or plan printed), 2 bad input (missing or
non-ONNX file, bad batch range, unknown preset), 3 TensorRT failed to
build, 4 TensorRT or a CUDA GPU is missing (pip install "attnvgg[gpu]").
\b
Next to each engine: ENGINE.json (TensorRT version, GPU, ONNX hash,
profiles, options; an engine whose sidecar does not match the running
TensorRT/GPU is refused on load) and ENGINE.trtexec.sh (the same build
with trtexec).""")
@click.argument("onnx", nargs=-1, required=True)
@click.option("--out", "out_dir", default="engines", show_default=True,
              help="Folder for the engines, sidecars, trtexec scripts and the timing cache.")
@click.option("--preset", default=None, help="server (batch 1/16/64, 8 GiB workspace) or edge (batch 1/1/8, 1 GiB).  [default: server]")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="TOML config; its [build] table, overridden by these flags.")
@click.option("--min-batch", "batch_min", type=int, default=None, help="Profile minimum batch (overrides the preset).")
@click.option("--opt-batch", "batch_opt", type=int, default=None, help="Profile batch TensorRT tunes for.")
@click.option("--max-batch", "batch_max", type=int, default=None, help="Profile maximum batch.")
@click.option("--workspace", "workspace_mib", type=int, default=None, help="Workspace memory pool limit in MiB.")
@click.option("--opt-level", "optimization_level", type=int, default=None, help="Builder optimization level 0..5.")
@click.option("--timing-cache", default=None, help="Timing cache file (relative to --out), reused across builds; '' disables it.")
@click.option("--hardware-compat", "hardware_compatibility", default=None,
              help="none, ampere+ or same-compute-capability (engine runs on other GPUs; may be slower).")
@click.option("--version-compatible/--no-version-compatible", default=None,
              help="Engine also runs on later TensorRT versions (carries its lean runtime).")
@click.option("--dla-core", type=int, default=None, help="Jetson DLA core (TensorRT 10.x; 11.4.1+ on AGX Orin).")
@click.option("--gpu-fallback/--no-gpu-fallback", default=None, help="With --dla-core: run layers DLA cannot on the GPU.  [default: on]")
@click.option("--tf32/--no-tf32", default=None, help="Allow TF32 for float32 layers.  [default: off for fp32 engines, on otherwise]")
@click.option("--dry-run", is_flag=True, help="Print the full plan (shapes, profiles, options, paths, trtexec line); build nothing.")
@handle_errors
def build_cmd(onnx: tuple[str, ...], out_dir: str, config_path: str | None, dry_run: bool, **kw: Any) -> None:
    """Build TensorRT engines from fp32, fp16 and int8 ONNX files.

    The precision is read from each file (Q/DQ nodes = int8, a float16 graph = fp16, else
    fp32); every engine is a strongly typed build, the same on TensorRT 10.x and 11.x.
    """
    from attnvgg.engines.build import run_build
    from attnvgg.engines.build_plan import render_plan

    cfg = load_cfg(config_path)
    for key, value in kw.items():
        if value is not None:
            setattr(cfg.build, key, value)
    result = run_build(list(onnx), cfg.build, out_dir, dry_run=dry_run)
    if dry_run:
        click.echo(render_plan(result.plan))
        return
    for ep, sc in zip(result.plan.engines, result.sidecars):
        click.echo(f"built {ep.engine} ({sc['precision']}, TensorRT {sc['tensorrt_version']}, {sc['gpu']['name']}, "
                   f"{sc['engine_bytes'] / 2**20:.1f} MiB, {sc['build_seconds']:.1f} s); "
                   f"sidecar {ep.sidecar.name}, trtexec {ep.trtexec_script.name}")


# ------------------------------------------------------------ convert / calibrate / evaluate

def _default_out(model: str, suffix: str) -> str:
    p = Path(model)
    stem = p.name[: -len(".onnx")] if p.name.endswith(".onnx") else p.stem
    return str(p.with_name(stem + suffix))


def _onnx_input_hw(path: str) -> int:
    """The model's input height (= width), read from the graph without loading its weights."""
    from attnvgg.calibration.reader import model_input
    from attnvgg.export.graph import load_onnx

    return model_input(load_onnx(path, load_external_data=False)).chw[1]


def _preprocess_for(cfg: Any, hw: int, artifact: str | None = None) -> Any:
    """The preprocessing stored with the model (its export sidecar) when there is one, so every
    stage sees the tensors export and training saw; else the config's, with the crop the model
    needs. A config whose [preprocess] contradicts the stored one is an error, not a silent pick."""
    import dataclasses

    from attnvgg.config import PreprocessSpec
    from attnvgg.errors import InputError

    stored = None
    if artifact:
        from attnvgg.validate.reference import preprocess_spec_for

        stored = preprocess_spec_for(artifact)
    if stored is not None:
        if cfg.preprocess != PreprocessSpec() and cfg.preprocess != stored:
            raise InputError(f"the config's [preprocess] differs from the one stored with {artifact} (in its .json sidecar)",
                             "drop [preprocess] from the config, or re-export the model with it")
        if stored.crop != hw:
            raise InputError(f"the preprocessing stored with {artifact} crops {stored.crop} px but the model takes {hw}",
                             "re-export the model so its sidecar matches its input")
        return stored
    pre = dataclasses.replace(cfg.preprocess)
    if pre.crop == hw:
        return pre
    if pre.crop != PreprocessSpec().crop:
        raise InputError(f"[preprocess] crop is {pre.crop} but the model takes {hw}x{hw} inputs",
                         f"set crop = {hw} in the config or use the model exported for {pre.crop} px")
    pre.resize = max(hw, round(hw * pre.resize / pre.crop))
    pre.crop = hw
    return pre


def _open_data(name: str, cfg: Any, hw: int, artifact: str | None = None) -> Any:
    from attnvgg.data import open_dataset

    return open_dataset(name, _preprocess_for(cfg, hw, artifact))


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--precision", type=click.Choice(["fp16"]), required=True, help="Target precision (INT8: attnvgg calibrate).")
@click.option("--out", "-o", default=None, help="Output .onnx (default: MODEL with .fp16.onnx).")
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
@click.option("--out", "-o", default=None, help="Output .onnx (default: MODEL with .int8.onnx).")
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
@click.option("--check-samples", type=int, default=None,
              help="Compare this many calibration images with the fp32 model (default 0; attnvgg validate gates parity).")
@click.option("--max-drop", type=float, default=None,
              help="Top-1 budget in points vs fp32: search the fewest layer groups to keep in float that meet it.")
@click.option("--val-data", default=None, help="With --max-drop: labelled data the drop is measured on (default builtin:val).")
@click.option("--val-limit", type=int, default=None, help="With --max-drop: measure on the first N validation images.")
@click.option("--allow-float-conv", is_flag=True,
              help="With --max-drop: convolutions may be kept in float too (slower model; default: always INT8).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None, help="TOML config ([calibrate], [mixed], [preprocess]).")
@handle_errors
def calibrate(model: str, data: str | None, out: str | None, config_path: str | None, **kw: Any) -> None:
    """Write an INT8 Q/DQ variant of MODEL.onnx calibrated on images (ONNX Runtime quantizer).

    With --max-drop, the layers kept in float are chosen to meet a top-1 budget (see --val-data).
    """
    cfg = load_cfg(config_path)
    spec = cfg.calibrate
    for key in ("method", "flavour", "exclude_preset", "batch_size", "num_images", "percentile", "num_bins", "cache_dir",
                "check_samples"):
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
    if _mixed_options(cfg, kw):
        return _calibrate_mixed(model, out, cfg)
    dataset = _open_data(spec.data, cfg, _onnx_input_hw(model), model)
    from attnvgg.calibration.int8 import calibrate as run_calibration

    r = run_calibration(model, dataset, out or _default_out(model, ".int8.onnx"), spec)
    how = "cache hit" if r.cache_hit else f"calibrated in {r.calibration_s:.1f} s"
    check = (f"; vs fp32 on {r.parity['samples']} images: cosine {r.parity['cosine']:.4f}, "
             f"top-1 agreement {r.parity['top1_agreement']:.0%}" if r.parity else "")
    click.echo(f"wrote {r.output} (int8 {r.flavour}, {r.method}, {r.images} images, {how}; "
               f"{len(r.quantized)} nodes quantized, {len(r.excluded)} kept in float{check})")


@cli.command()
@click.argument("artifact", required=False, type=click.Path(dir_okay=False))
@model_options
@click.option("--data", default=None, help="Labelled data: builtin:val (default), a class-folder tree, or .npz.")
@click.option("--reference", default=None, help="fp32 reference: an .onnx/.engine file, or 'pytorch' (the model options).")
@click.option("--reference-logits", default=None, type=click.Path(dir_okay=False), help=".npy/.npz logits of the reference, in data order.")
@click.option("--save-logits", default=None, type=click.Path(dir_okay=False), help="Also save this model's logits (.npy or .npz).")
@click.option("--batch-size", type=int, default=None)
@click.option("--limit", type=int, default=None, help="Evaluate only the first N images.")
@click.option("--provider", "--runner", "provider", type=click.Choice(RUNNER_CHOICES), default=None,
              help=f"Runner of an ONNX file [default: cpu]; {RUNNER_HELP}.")
@click.option("--threads", type=int, default=None)
@click.option("--max-top1-drop", type=float, default=None, help="Fail (exit 1) if top-1 is more than this fraction below the reference's.")
@click.option("--out", "-o", default=None, help="Results JSON (default: ARTIFACT.accuracy.json, or accuracy.json).")
@handle_errors
def evaluate(artifact: str | None, config_path: str | None, data: str | None, reference: str | None,
             reference_logits: str | None, save_logits: str | None, out: str | None, **kw: Any) -> None:
    """Top-1/top-5 of ARTIFACT (or the PyTorch model) on labelled data; agreement with a reference."""
    import numpy as np

    from attnvgg.artifacts import write_json
    from attnvgg.runners.factory import open_runner
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
    if artifact is None and not (cfg.model.checkpoint or cfg.model.factory or config_path):
        raise InputError("no model to evaluate: no ARTIFACT and no trained weights",
                         "pass an .onnx/.engine file, or --checkpoint/--model/--config for the PyTorch model")
    runner = open_runner(artifact, provider=spec.provider, threads=spec.threads, model_spec=cfg.model)
    ref_runner = None
    if reference == "pytorch":
        ref_runner = open_runner(None, model_spec=cfg.model)
    elif reference:
        from attnvgg.runners.factory import provider_device

        # the reference stays ONNX Runtime on the same device: a bf16 reference would hide bf16's error
        ref_runner = open_runner(reference, provider=provider_device(spec.provider), threads=spec.threads)
    ref_logits = None
    if reference_logits:
        try:
            loaded = np.load(reference_logits, allow_pickle=False)
            ref_logits = loaded["logits"] if isinstance(loaded, np.lib.npyio.NpzFile) else loaded
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(f"cannot read reference logits {reference_logits} ({type(exc).__name__})",
                             "pass a .npy, or a .npz with a 'logits' array, as written by --save-logits") from exc
    with runner:
        hw = runner.input_metadata()[0].shape[-1]
        hw = hw if hw > 0 else cfg.model.input_size
        dataset = _open_data(spec.data, cfg, hw, artifact)
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
                if save_logits.endswith(".npz"):
                    np.savez(f, logits=result.logits)    # the format attnvgg run keeps
                else:
                    np.save(f, result.logits)
    acc = (f"top-1 {result.top1:.2%}, top-{result.topk} {result.top5:.2%}" if result.top1 is not None else "no labels")
    ref = (f"; vs reference: top-1 agreement {result.reference.top1_agreement:.2%}, "
           f"mean cosine {result.reference.mean_cosine:.6f}" if result.reference else "")
    click.echo(f"{acc} on {result.images} images{ref} -> {out}")
    check_budget(result, spec.max_top1_drop)


def _mixed_options(cfg: Any, kw: dict) -> bool:
    """Apply --max-drop/--val-data/--val-limit/--allow-float-conv to cfg.mixed; True when a budget search is asked for."""
    from attnvgg.errors import InputError

    mixed = cfg.mixed
    for key in ("max_drop", "val_data", "val_limit"):
        if kw.get(key) is not None:
            setattr(mixed, key, kw[key])
    if kw.get("allow_float_conv"):
        mixed.allow_float_conv = True
    if mixed.max_drop is None:
        given = [f"--{k.replace('_', '-')}" for k in ("val_data", "val_limit") if kw.get(k) is not None]
        given += ["--allow-float-conv"] if kw.get("allow_float_conv") else []
        if given:
            raise InputError(f"{' and '.join(given)} only appl{'y' if len(given) > 1 else 'ies'} to the accuracy search",
                             "add --max-drop POINTS")
        return False
    if kw.get("exclude_preset") is not None:
        raise InputError("--exclude-preset and --max-drop both given: the search decides what stays in float",
                         "drop --exclude-preset (use --exclude NODE to force a node into float)")
    return True


def _calibrate_mixed(model: str, out: str | None, cfg: Any) -> None:
    from attnvgg.calibration.mixed import calibrate_mixed, check_mixed

    spec = cfg.calibrate
    check_mixed(cfg.mixed)          # bad budgets fail before any data is read
    hw = _onnx_input_hw(model)
    calib = _open_data(spec.data, cfg, hw, model)
    val = _open_data(cfg.mixed.val_data, cfg, hw, model)

    r = calibrate_mixed(model, calib, val, out or _default_out(model, ".int8.onnx"), spec, cfg.mixed)
    s = r.search
    kept = ", ".join(r.float_groups) or "none"
    convs = ", convolutions allowed" if cfg.mixed.allow_float_conv else ""
    passes = f"{r.calibration_passes} calibration pass" + ("" if r.calibration_passes == 1 else "es")
    click.echo(f"wrote {r.output} (int8 {spec.flavour}, mixed precision: {len(r.float_groups)} of {len(r.candidates)} "
               f"groups in float{convs} [{kept}]; top-1 drop {s.final.drop:.2f} <= {s.max_drop:g} points on {r.val_images} "
               f"images; {passes}{' (cache hit)' if r.cache_hit else ''}, {r.evaluations} evaluations, "
               f"{r.seconds:.1f} s) -> {r.report}")


# -------------------------------------------------------------------------- run / config

def _run_options(fn: Callable) -> Callable:
    opts = [
        click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
                     help="TOML config holding any stage's options; layered over the preset."),
        click.option("--preset", default="default", show_default=True,
                     help="default (reduced model trained on the built-in data) or vgg16-224 (full size)."),
        click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
                     help="Override one option, e.g. --set calibrate.method=entropy (repeatable; wins over the file)."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


@cli.command()
@_run_options
@click.option("--out", default=None, help="Run folder [default: runs/<preset>].")
@click.option("--stages", default=None, help="Comma-separated stages to run: export,simplify,fp16,calibrate,validate,evaluate,build,bench,report.")
@click.option("--force", is_flag=True, help="Rerun every selected stage even if its inputs and settings are unchanged.")
@handle_errors
def run(config_path, preset, overrides, out, stages, force):
    """Run every stage in order and write the latency-vs-accuracy report.

    With no arguments: the built-in default (a reduced VGG16 with attention trained on the
    built-in synthetic data set). Stages whose inputs and settings have not changed are
    skipped (content hashes in RUN/manifest.json); an interrupted run resumes.
    Exit 1 if a parity check failed (the report is still written).
    """
    from attnvgg.errors import CheckFailed
    from attnvgg.pipeline import effective_config, run_pipeline

    cfg = effective_config(preset, config_path, overrides)
    if out:
        cfg.run.out = out
    selected = None
    if stages:
        selected = [s.strip() for s in stages.split(",") if s.strip()]
    click.echo(f"attnvgg run: preset {preset}, run folder {cfg.run.out}")
    def echo(line: str) -> None:
        click.echo(line)
        sys.stdout.flush()  # keep the progress lines in order with the stages' notes on stderr

    summary = run_pipeline(cfg, selected, force=force, echo=echo)
    click.echo(f"done in {summary['seconds']:.1f} s; report: {summary['report']}")
    if summary.get("failed"):
        raise CheckFailed(f"{len(summary['failed'])} check(s) failed: {', '.join(summary['failed'])}",
                          "see the report and the results/ folder of the run")


@cli.command("config")
@_run_options
@click.option("--show", is_flag=True, help="Print the effective config (preset < file < --set) as TOML.")
@click.option("--write", "write_path", type=click.Path(dir_okay=False), default=None, help="Write the effective config to this file.")
@handle_errors
def config_cmd(config_path, preset, overrides, show, write_path):
    """Show or write the effective configuration: every option of every stage."""
    from attnvgg.config import dumps_config, save_config
    from attnvgg.pipeline import effective_config

    cfg = effective_config(preset, config_path, overrides)
    if write_path:
        save_config(cfg, write_path)
        click.echo(f"wrote {write_path}")
    if show or not write_path:
        click.echo(dumps_config(cfg), nl=False)


# -------------------------------------------------------------------------- bench

@cli.command("bench", epilog="""\b
Each runner x batch: --warmup untimed runs, then at least --iterations
runs AND at least --min-seconds; p50/p90/p99, mean, std, min in ms and
images/s. On a GPU, compute and end-to-end (with copies) are reported apart.
Exit codes: 0 done, 2 bad input, 4 a needed library is missing. A CUDA GPU
or TensorRT that is absent skips those runners, with the reason.""")
@click.argument("artifacts", nargs=-1)
@click.option("--pytorch", is_flag=True,
              help="Add the PyTorch eager fp32 baseline (model from the options, --config, or the first file's sidecar).")
@model_options
@click.option("--batches", default=None, help="Batch sizes, e.g. 1,8  [default: 1,8].")
@click.option("--threads", type=int, default=None, help="CPU threads (ONNX Runtime intra-op, torch) [default: library default].")
@click.option("--iterations", type=int, default=None, help="Timed runs at least [default: 20]; 0 = by time only.")
@click.option("--min-seconds", type=float, default=None, help="Timed seconds at least [default: 1.0]; 0 = by count only.")
@click.option("--warmup", type=int, default=None, help="Untimed runs first [default: 5].")
@click.option("--provider", "--runner", "providers", multiple=True, type=click.Choice(RUNNER_CHOICES),
              help=f"Runner(s) of ONNX files [default: cpu]; {RUNNER_HELP}. The PyTorch baseline runs on "
                   "the device of each (cuda or cpu); engines always use the GPU.")
@click.option("--cuda-graphs/--no-cuda-graphs", default=None, help="Replay CUDA graphs (PyTorch on CUDA, TensorRT).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None, help="Write the results JSON here.")
@handle_errors
def bench_cmd(artifacts: tuple[str, ...], pytorch: bool, batches: str | None, threads: int | None,
              iterations: int | None, min_seconds: float | None, warmup: int | None, providers: tuple[str, ...],
              cuda_graphs: bool | None, json_path: str | None, config_path: str | None, **kw: Any) -> None:
    """Latency of ONNX files, TensorRT engines and the PyTorch baseline at each batch size."""
    cfg = load_cfg(config_path)
    overridden = any(v is not None for v in kw.values())
    apply_model_options(cfg, kw)
    b = cfg.bench
    if batches is not None:
        b.batches = _ints(batches, "--batches")
    for key, value in (("threads", threads), ("iterations", iterations), ("min_seconds", min_seconds),
                       ("warmup", warmup), ("cuda_graphs", cuda_graphs)):
        if value is not None:
            setattr(b, key, value)
    if providers:
        b.providers = list(providers)
    items = list(artifacts)
    model_spec = None
    if pytorch:
        items.insert(0, "pytorch")
        if overridden or config_path:
            model_spec = cfg.model
        else:
            from attnvgg.validate.reference import model_spec_for

            model_spec = next((s for s in (model_spec_for(a) for a in artifacts if Path(a).is_file()) if s), None)
    from attnvgg.engines.bench import bench_artifacts, format_table

    result = bench_artifacts(items, b, model_spec, json_path)
    click.echo(format_table(result))
    if json_path:
        click.echo(f"wrote {json_path}")


# -------------------------------------------------------------------------- report

@cli.command("report", epilog="""\b
Reads result files only (bench, evaluate and validate JSON, artifact
sidecars, the pipeline's notes with skipped stages); folders are searched
recursively. Writes report.md, report.json, report.csv, report.png and a
self-contained report.html. Exit codes: 0 written, 2 bad input (a missing
path, no result files, a malformed JSON); nothing is written then.""")
@click.argument("results", nargs=-1, required=True)
@click.option("--out", "out_dir", default="report", show_default=True, help="Folder for the report files.")
@click.option("--plot-batch", type=int, default=None,
              help="Batch whose p50 latency is plotted [default: 1 if every rated row has it, else the largest common].")
@handle_errors
def report_cmd(results: tuple[str, ...], out_dir: str, plot_batch: int | None) -> None:
    """Latency-vs-accuracy table (Markdown, CSV, JSON), Pareto plot and one HTML page."""
    from attnvgg.report import make_report

    paths = make_report([Path(r) for r in results], out_dir, plot_batch=plot_batch)
    text = Path(paths["markdown"]).read_text()   # type: ignore[arg-type]
    click.echo("\n".join(line for line in text.splitlines() if line.startswith("|")))
    click.echo("wrote " + ", ".join(str(p) for p in paths.values() if p is not None))

# -------------------------------------------------------------------------- train

@cli.command("train")
@click.option("--out", required=True, type=click.Path(),
              help="Checkpoint path (x.pt; x.toml is written beside it) or a folder (model.pt + model.toml).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="TOML whose [train] table is the base (a pipeline config or a model TOML); flags override it.")
@click.option("--epochs", type=int, default=None, help="Passes over the built-in train split (default 5).")
@click.option("--seed", type=int, default=None, help="Seed for weights, dropout and data order (default 0).")
@click.option("--width", type=float, default=None, help="Channel width multiplier (default 0.125).")
@click.option("--attention", default=None, help="Kinds for blocks 3,4,5 from global|se|cbam|none.")
@click.option("--input-size", type=int, default=None, help="Input height = width in pixels (default 64).")
@click.option("--batch-size", type=int, default=None, help="Training batch size (default 64).")
@click.option("--lr", type=float, default=None, help="Adam peak learning rate (one-cycle schedule).")
@click.option("--gamma-init", type=float, default=None, help="Initial global-attention gamma (default 1.0).")
@click.option("--train-limit", type=int, default=None, help="Use only the first N training images (0 = all).")
@click.option("--val-limit", type=int, default=None, help="Evaluate on the first N val images (0 = all).")
@click.option("--threads", type=int, default=None, help="torch threads (default 2; 0 = torch's default).")
@click.option("--quiet", is_flag=True, help="No per-epoch lines.")
@handle_errors
def train_cmd(out: str, config_path: str | None, attention: str | None, quiet: bool, **kw) -> None:
    """Train the small attention VGG on the built-in data set (seeded, reproducible)."""
    from attnvgg.data.train import load_train_spec, spec_from_overrides, train

    if attention is not None:
        kinds = [a.strip() for a in attention.split(",")]
        kw["attention"] = kinds * 3 if len(kinds) == 1 else kinds
    spec = spec_from_overrides(load_train_spec(config_path), **kw)
    log = None if quiet else (lambda msg: click.echo(msg, err=True))
    res = train(spec, Path(out), log=log)
    click.echo(f"val top-1 {res['val_top1']:.4f} (gamma=0: {res['val_top1_gamma0']:.4f}) on "
               f"{res['val_images']} images; trained in {res['train_seconds']:.1f} s")
    click.echo(f"wrote {res['checkpoint']} and {res['config']}")
