"""The attnvgg command line: one thin subcommand per stage.

Each command parses options, calls the stage function, and turns the project's errors into
one line on stderr with the error's exit code (2 bad input, 1 failed check, 3 stage error,
4 missing dependency). Heavy modules are imported inside the commands.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from attnvgg import __version__, console
from attnvgg.cli_verbosity import VerbosityGroup
from attnvgg.cli_options import int_list, config_options, handle_errors, model_flags, model_options, settings
from attnvgg.config import ONNX_RUNNERS as RUNNER_CHOICES

RUNNER_HELP = ("cpu/cuda = ONNX Runtime's providers, openvino = OpenVINO CPU f32, "
               "openvino-bf16 = OpenVINO CPU with bf16 inference precision (where the CPU has it)")


# -------------------------------------------------------------------------- the group

@click.group(cls=VerbosityGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="attnvgg")
def cli() -> None:
    """attnvgg: PyTorch -> ONNX -> parity -> FP16/INT8 -> TensorRT -> latency/accuracy report."""


def main() -> None:
    cli(prog_name="attnvgg")


# -------------------------------------------------------------------------- export

@cli.command()
@config_options
@model_options
@click.option("--out", "-o", type=click.Path(dir_okay=False), default="model.onnx", show_default=True, help="Output .onnx file.")
@click.option("--exporter", type=click.Choice(["dynamo", "torchscript"]), default=None, help="torch.onnx exporter [default: dynamo].")
@click.option("--opset", type=int, default=None, help="ONNX opset [default: 20].")
@click.option("--static-batch", is_flag=True, default=None, help="Fix the batch instead of a dynamic batch axis.")
@click.option("--batch-min", type=int, default=None, help="Smallest batch the model serves [default: 1].")
@click.option("--batch-max", type=int, default=None, help="Largest batch validate proves parity at [default: 16]; the graph itself has an unbounded batch axis.")
@click.option("--dynamic-hw", is_flag=True, default=None, help="Dynamic H/W: refused unless every --hw-sizes size passes parity.")
@click.option("--hw-sizes", default=None, help="Sizes that a dynamic-H/W export must prove, e.g. 224,256.")
@click.option("--external-data", type=click.Choice(["auto", "always", "never"]), default=None,
              help="Weights in a .onnx.data file: auto = only above 2 GB.")
@handle_errors
def export(out, **kw):
    """Export the PyTorch model to ONNX (input 'input', output 'logits') and print a graph summary.

    The model is the built-in one unless model options, --preset or --config say otherwise."""
    from attnvgg.export.graph import GraphSummary
    from attnvgg.export.onnx import export_onnx

    flags = {**model_flags(kw), **{f"export.{k}": kw.pop(k) for k in ("exporter", "opset", "batch_min", "batch_max",
                                                                        "external_data", "dynamic_hw")},
             "export.dynamic_batch": False if kw.pop("static_batch") else None,
             "export.hw_sizes": int_list(kw.pop("hw_sizes"), "--hw-sizes")}
    cfg = settings(kw, flags).cfg
    res = export_onnx(cfg.model, cfg.export, out, preprocess=cfg.preprocess)
    click.echo(f"exported {res.path} in {res.seconds:.1f} s ({cfg.export.exporter}, opset {cfg.export.opset})")
    click.echo(GraphSummary(**res.summary).format())


@cli.command()
@click.argument("src", type=click.Path())
@config_options
@click.option("--out", "-o", type=click.Path(dir_okay=False), default=None, help="Output file [default: SRC with .sim.onnx].")
@click.option("--check-n", type=int, default=None, help="Random input sets for onnxsim's numerical check [default: 2].")
@click.option("--force", is_flag=True, default=None, help="Run onnxsim even when the graph is already minimal.")
@handle_errors
def simplify(src, out, check_n, force, **kw):
    """Simplify an ONNX model with onnxsim (with its numerical check)."""
    from attnvgg.export.simplify import simplify_onnx

    cfg = settings(kw, {"simplify.check_n": check_n, "simplify.skip_if_minimal": False if force else None}).cfg
    out_p = Path(out) if out else Path(_default_out(src, ".sim.onnx"))
    res = simplify_onnx(Path(src), out_p, cfg.simplify)
    click.echo(f"{res.path}: {res.reason} ({res.seconds:.1f} s)")


@cli.command()
@click.argument("artifact", type=click.Path())
@config_options
@model_options
@click.option("--batches", default=None, help="Batch sizes, e.g. 1,3 (the dynamic range's ends are added) [default: 1,3].")
@click.option("--samples", type=int, default=None, help="Random samples per batch size [default: 8].")
@click.option("--images", default=None,
              help="Also compare on these images: folder, .npy, .npz (x/images or the input's name), Polygraphy input JSON, builtin:val.")
@click.option("--provider", "--runner", "providers", multiple=True, type=click.Choice(RUNNER_CHOICES),
              help=f"Runner(s) of an ONNX file [default: cpu]; {RUNNER_HELP}.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16", "int8"]), default=None,
              help="Tolerance set to use for every runner [default: the model's, or bf16 for openvino-bf16].")
@click.option("--atol", type=float, default=None, help="Override the absolute tolerance.")
@click.option("--rtol", type=float, default=None, help="Override the relative tolerance.")
@click.option("--min-cosine", type=float, default=None, help="Override the minimum cosine similarity.")
@click.option("--min-top1", type=float, default=None, help="Override the minimum top-1 agreement (0..1).")
@click.option("--locate", is_flag=True, default=None, help="On failure, find the first diverging layer.")
@click.option("--attention-maps", is_flag=True, default=None,
              help="Also fail unless the attention maps (Softmax, SE/CBAM gates) agree with PyTorch fp32 "
                   "within [validate.map_limits] (cosine, JS divergence).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="Write the result JSON here ('-': to stdout, the table then goes to stderr).")
@click.option("--junit", "junit_path", type=click.Path(dir_okay=False), default=None, help="Write JUnit XML here.")
@click.option("--save-inputs", default=None, type=click.Path(dir_okay=False),
              help="Save the inputs fed, in Polygraphy's JSON (polygraphy run --load-inputs).")
@click.option("--save-outputs", default=None, type=click.Path(dir_okay=False),
              help="Save PyTorch's outputs as Polygraphy RunResults JSON (polygraphy run --load-outputs).")
@handle_errors
def validate(artifact, precision, json_path, junit_path, save_inputs, save_outputs, **kw):
    """Parity of an ONNX model (or engine) against the PyTorch reference. Exit 0 pass, 1 fail."""
    from attnvgg import sidecar
    from attnvgg.pipeline import validate_command
    from attnvgg.validate.parity import format_table, tolerance_sets

    prec = precision or sidecar.precision_of(artifact)
    providers = list(kw.pop("providers"))
    tol_flags = {k: kw.pop(k) for k in ("atol", "rtol", "min_cosine", "min_top1")}
    sets = tolerance_sets(prec, providers or ["cpu"], exact=precision is not None)   # bf16 runners: the bf16 set
    flags = {**model_flags(kw), "validate.batches": int_list(kw.pop("batches"), "--batches"),
             "validate.providers": providers or None,
             **{f"validate.{k}": kw.pop(k) for k in ("samples", "images", "locate", "attention_maps")},
             **{f"validate.tolerances.{s}.{k}": v for s in sets for k, v in tol_flags.items()}}
    to_stdout = json_path == "-"

    def show(res: Any) -> None:
        if to_stdout:            # --json -: the JSON alone on stdout, the table on stderr
            from attnvgg import sidecar as _sc
            from attnvgg.artifacts import json_text

            click.echo(json_text({**_sc.result_header("parity", [res.artifact]), **res.to_dict()}), nl=False)
        table = format_table(res)
        if console.level() < console.NORMAL and res.passed:    # -q: the verdict line only
            table = next(ln for ln in table.splitlines() if ln.startswith("PASS: "))
        click.echo(table, err=to_stdout)

    validate_command(artifact, settings(kw, flags), prec, None if to_stdout else json_path, junit_path,
                     explicit_batches=bool(flags["validate.batches"]), show=show,
                     save_inputs=save_inputs, save_outputs=save_outputs, exact_precision=precision is not None)


# -------------------------------------------------------------------------- build (TensorRT)

@cli.command("build", epilog="""\b
Exit codes: 0 engines built (or plan printed), 2 bad input (missing or
non-ONNX file, bad batch range, unknown target), 3 TensorRT failed to
build, 4 TensorRT or a CUDA GPU is missing (pip install "attnvgg[gpu]").
\b
Next to each engine: ENGINE.json (TensorRT version, GPU, ONNX hash,
profiles, options; an engine whose sidecar does not match the running
TensorRT/GPU is refused on load) and ENGINE.trtexec.sh (the same build
with trtexec).""")
@click.argument("onnx", nargs=-1, required=True)
@click.option("--out", "out_dir", default="engines", show_default=True,
              help="Folder for the engines, sidecars, trtexec scripts and the timing cache.")
@click.option("--target", "--preset", "target", default=None,
              help="server (batch 1/16/64, 8 GiB workspace) or edge (batch 1/1/8, 1 GiB).  [default: server]")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="TOML config; its [build] table, overridden by these flags.")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override one option, e.g. --set build.workspace_mib=2048 (repeatable; wins over flags).")
@click.option("--batch-min", "--min-batch", "batch_min", type=int, default=None, help="Profile minimum batch (overrides the target).")
@click.option("--batch-opt", "--opt-batch", "batch_opt", type=int, default=None, help="Profile batch TensorRT tunes for.")
@click.option("--batch-max", "--max-batch", "batch_max", type=int, default=None, help="Profile maximum batch.")
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
def build_cmd(onnx: tuple[str, ...], out_dir: str, dry_run: bool, **kw: Any) -> None:
    """Build TensorRT engines from fp32, fp16 and int8 ONNX files.

    The precision is read from each file (Q/DQ nodes = int8, a float16 graph = fp16, else
    fp32); every engine is a strongly typed build, the same on TensorRT 10.x and 11.x.
    """
    from attnvgg.engines.build import run_build
    from attnvgg.engines.build_plan import render_plan

    flags = {f"build.{k}": kw.pop(k) for k in list(kw) if k not in ("config_path", "overrides")}
    cfg = settings(kw, flags).cfg
    result = run_build(list(onnx), cfg.build, out_dir, dry_run=dry_run)
    if dry_run:
        click.echo(render_plan(result.plan))
        return
    for engine, sc in result.built():
        click.echo(f"built {engine} ({sc['precision']}, TensorRT {sc['tensorrt_version']}, {sc['gpu']['name']}, "
                   f"{sc['engine_bytes'] / 2**20:.1f} MiB, {sc['build_seconds']:.1f} s); "
                   f"sidecar {engine.name}.json, trtexec {sc['trtexec_script']}")
    result.raise_for_failures()


# ------------------------------------------------------------ convert / calibrate / evaluate

MIXED_SUFFIX = ".int8-mixed.onnx"


def _default_out(model: str, suffix: str) -> str:
    p = Path(model)
    stem = p.name[: -len(".onnx")] if p.name.endswith(".onnx") else p.name
    return str(p.with_name(stem + suffix))


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False))
@config_options
@click.option("--precision", type=click.Choice(["fp16"]), required=True, help="Target precision (INT8: attnvgg calibrate).")
@click.option("--out", "-o", default=None, help="Output .onnx (default: MODEL with .fp16.onnx).")
@click.option("--block-op", "block_ops", multiple=True, help="Op type kept in fp32 (repeatable), e.g. Softmax.")
@click.option("--fp16-io", is_flag=True, default=None, help="Make the input and logits float16 too (default: float32 I/O).")
@click.option("--no-check", is_flag=True, default=None, help="Skip the parity check against the fp32 model.")
@handle_errors
def convert(model: str, precision: str, out: str | None, block_ops: tuple, fp16_io: bool | None,
            no_check: bool | None, **kw: Any) -> None:
    """Write an FP16-typed variant of MODEL.onnx and check it against MODEL (fp16 tolerance)."""
    from attnvgg.export.fp16 import convert_fp16

    cfg = settings(kw, {"fp16.block_ops": list(block_ops) or None, "fp16.keep_io_types": False if fp16_io else None,
                        "fp16.check": False if no_check else None}).cfg
    r = convert_fp16(model, out or _default_out(model, ".fp16.onnx"), cfg.fp16, tolerance=cfg.validate.tolerances["fp16"])
    check = (f"parity vs fp32: cosine {r.parity['min_cosine']:.7f}, max abs {r.parity['max_abs']:.2g}"
             if r.parity else "parity not checked")
    click.echo(f"wrote {r.output} (fp16, blocked: {', '.join(r.block_ops) or 'none'}; {check})")


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False))
@config_options
@click.option("--data", default=None,
              help="builtin:calib (default), an image folder, .npy, .npz (x/images or the input's name, e.g. {input: x}) or Polygraphy input JSON.")
@click.option("--out", "-o", default=None,
              help="Output .onnx (default: MODEL with .int8.onnx; with --max-drop .int8-mixed.onnx).")
@click.option("--method", type=click.Choice(["minmax", "entropy", "percentile"]), default=None)
@click.option("--flavour", type=click.Choice(["tensorrt", "cpu"]), default=None,
              help="tensorrt: int8 symmetric, zero point 0 (default); cpu: uint8 asymmetric activations.")
@click.option("--keep-float", "--exclude-preset", "keep_float", type=click.Choice(["attention", "attention+gates", "none"]),
              default=None, help="What stays in float (default: attention).")
@click.option("--exclude", multiple=True, help="Also keep this node (by name) in float; repeatable.")
@click.option("--batch-size", type=int, default=None, help="Images per calibration batch (bounds memory).")
@click.option("--num-images", type=int, default=None, help="Calibrate on the first N images (default: all).")
@click.option("--per-tensor", is_flag=True, default=None,
              help="One weight scale per tensor instead of per output channel (cpu flavour).")
@click.option("--high-precision", type=click.Choice(["fp16", "fp32"]), default=None,
              help="tensorrt flavour: type of the unquantized part (default fp16).")
@click.option("--percentile", type=float, default=None, help="For --method percentile (default 99.999).")
@click.option("--num-bins", type=int, default=None, help="Histogram bins for entropy/percentile.")
@click.option("--cache-dir", default=None, help="Calibration cache folder (default $ATTNVGG_CACHE_DIR/calib or ~/.cache/attnvgg/calib).")
@click.option("--no-cache", is_flag=True, default=None, help="Neither read nor write the calibration cache.")
@click.option("--check-samples", type=int, default=None,
              help="Compare this many calibration images with the fp32 model (default 0; attnvgg validate gates parity).")
@click.option("--max-drop", type=float, default=None,
              help="Top-1 budget in points vs fp32: search the fewest layer groups to keep in float that meet it.")
@click.option("--val-data", default=None, help="With --max-drop: labelled data the drop is measured on (default builtin:val).")
@click.option("--val-limit", type=int, default=None, help="With --max-drop: measure on the first N validation images.")
@click.option("--allow-float-conv", is_flag=True, default=None,
              help="With --max-drop: convolutions may be kept in float too (slower model; default: always INT8).")
@handle_errors
def calibrate(model: str, out: str | None, **kw: Any) -> None:
    """Write an INT8 Q/DQ variant of MODEL.onnx calibrated on images.

    The tensorrt flavour is placed by NVIDIA ModelOpt from attnvgg's ranges and checked against
    TensorRT's graph rules; the cpu flavour by ONNX Runtime's quantizer.

    With --max-drop, the layers kept in float are chosen to meet a top-1 budget (see --val-data).
    """
    from attnvgg.calibration.mixed import check_mixed_flags
    from attnvgg.pipeline import calibrate_command

    search = {k: kw.pop(k) for k in ("max_drop", "val_data", "val_limit", "allow_float_conv")}
    check_mixed_flags(search, keep_float=kw["keep_float"])
    exclude = list(kw.pop("exclude"))
    flags = {**{f"calibrate.{k}": kw.pop(k) for k in ("data", "method", "flavour", "keep_float", "batch_size",
                                                         "num_images", "percentile", "num_bins", "cache_dir",
                                                         "check_samples", "high_precision")},
             "calibrate.per_channel": False if kw.pop("per_tensor") else None,
             "calibrate.cache": False if kw.pop("no_cache") else None,
             **{f"mixed.{k}": v for k, v in search.items()}}
    # a search writes its own default name: it never overwrites the plain INT8 model calibrate wrote
    default = MIXED_SUFFIX if search["max_drop"] is not None else ".int8.onnx"
    click.echo(calibrate_command(model, out or _default_out(model, default), settings(kw, flags), exclude))


@cli.command()
@click.argument("artifact", required=False, type=click.Path(dir_okay=False))
@config_options
@model_options
@click.option("--data", default=None, help="Labelled data: builtin:val (default), a class-folder tree, or .npz.")
@click.option("--reference", default=None,
              help="fp32 reference: an .onnx/.engine file, or 'pytorch' (the model in ARTIFACT's sidecar, or the model options).")
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
def evaluate(artifact: str | None, reference: str | None, reference_logits: str | None, save_logits: str | None,
             out: str | None, **kw: Any) -> None:
    """Top-1/top-5 of ARTIFACT (or the PyTorch model) on labelled data; agreement with a reference."""
    from attnvgg.pipeline import evaluate_command

    flags = {**model_flags(kw), **{f"evaluate.{k}": kw.pop(k) for k in ("data", "batch_size", "limit", "provider",
                                                                          "threads", "max_top1_drop")}}
    evaluate_command(artifact, settings(kw, flags), reference, reference_logits, save_logits, out, echo=click.echo,
                     log=lambda msg: click.echo(msg, err=True))


# -------------------------------------------------------------------------- run / config

@cli.command()
@config_options
@click.option("--out", default=None, help="Run folder [default: runs/<preset>].")
@click.option("--stages", default=None, help="Comma-separated stages to run: export,simplify,fp16,calibrate,validate,evaluate,build,bench,report.")
@click.option("--force", is_flag=True, help="Rerun every selected stage even if its inputs and settings are unchanged.")
@handle_errors
def run(out, stages, force, **kw):
    """Run every stage in order and write the latency-vs-accuracy report.

    With no arguments: the built-in default (a reduced VGG16 with attention trained on the
    built-in synthetic data set). Stages whose inputs and settings have not changed are
    skipped (content hashes in RUN/manifest.json); an interrupted run resumes.
    Exit 1 if a parity check failed (the report is still written).
    """
    from attnvgg.errors import CheckFailed
    from attnvgg.pipeline import run_pipeline

    import shlex

    preset = kw["run_preset"]
    given = [("--preset", preset if preset != "default" else None), ("--config", kw.get("config_path")),
             ("--out", out), ("--stages", stages)] + [("--set", o) for o in kw.get("overrides") or ()]
    invocation = " ".join(["attnvgg run"] + [f"{k} {shlex.quote(str(v))}" for k, v in given if v]
                          + (["--force"] if force else []))
    cfg = settings(kw, {"run.out": out}).cfg
    selected = [s.strip() for s in stages.split(",") if s.strip()] if stages else None
    quiet = console.level() < console.NORMAL
    if not quiet:
        click.echo(f"attnvgg run: preset {preset}, run folder {cfg.run.out}")

    def echo(line: str) -> None:
        if quiet and "FAILED" not in line:       # -q: only failed checks, errors and the last line
            return
        click.echo(line)
        sys.stdout.flush()  # keep the progress lines in order with the stages' notes on stderr

    summary = run_pipeline(cfg, selected, force=force, echo=echo, invocation=invocation,
                           start_after_s=None if quiet else 3.0)
    click.echo(f"done in {summary['seconds']:.1f} s; report: {summary['report']}")
    if summary.get("failed"):
        raise CheckFailed(f"{len(summary['failed'])} check(s) failed: {', '.join(summary['failed'])}",
                          "see the report and the results/ folder of the run")


@cli.command("config")
@config_options
@click.option("--show", is_flag=True, help="Print the effective config (preset < file < --set) as TOML.")
@click.option("--write", "write_path", type=click.Path(dir_okay=False), default=None, help="Write the effective config to this file.")
@handle_errors
def config_cmd(show, write_path, **kw):
    """Show or write the effective configuration: every option of every stage."""
    from attnvgg.config import dumps_config, save_config

    cfg = settings(kw, {}).cfg
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
@config_options
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
@click.option("--json", "json_path", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="Write the results JSON here ('-': to stdout, the table then goes to stderr).")
@handle_errors
def bench_cmd(artifacts: tuple[str, ...], pytorch: bool, json_path: str | None, **kw: Any) -> None:
    """Latency of ONNX files, TensorRT engines and the PyTorch baseline at each batch size."""
    from attnvgg.artifacts import check_outputs
    from attnvgg.engines.bench import bench_artifacts, format_table
    from attnvgg.pipeline import reference_model

    to_stdout = json_path == "-"
    check_outputs([None if to_stdout else json_path], artifacts)
    flags = {**model_flags(kw), "bench.batches": int_list(kw.pop("batches"), "--batches"),
             "bench.providers": list(kw.pop("providers")) or None,
             **{f"bench.{k}": kw.pop(k) for k in ("threads", "iterations", "min_seconds", "warmup", "cuda_graphs")}}
    st = settings(kw, flags)
    items = list(artifacts)
    model_spec = None
    if pytorch:
        items.insert(0, "pytorch")
        onnx = [a for a in artifacts if Path(a).is_file()]
        model_spec = reference_model(onnx[0], st) if onnx else st.cfg.model
    result = bench_artifacts(items, st.cfg.bench, model_spec, None if to_stdout else json_path)
    if to_stdout:
        from attnvgg.artifacts import json_text

        click.echo(json_text(result), nl=False)
    click.echo(format_table(result), err=to_stdout)
    if json_path and not to_stdout:
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
@config_options
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
@click.option("-q", "--quiet", is_flag=True, help="No per-epoch lines (and no notes).")
@handle_errors
def train_cmd(out: str, attention: str | None, quiet: bool, **kw) -> None:
    """Train the small attention VGG on the built-in data set (seeded, reproducible).

    The [train] table of --config (a pipeline config or a model TOML) is the base; flags override it."""
    from attnvgg.data.train import train

    kinds = [a.strip() for a in attention.split(",")] if attention is not None else None
    flags = {"train.attention": kinds * 3 if kinds and len(kinds) == 1 else kinds,
             **{f"train.{k}": kw.pop(k) for k in ("epochs", "seed", "width", "input_size", "batch_size", "lr",
                                                  "gamma_init", "train_limit", "val_limit", "threads")}}
    spec = settings(kw, flags).cfg.train
    log = None if quiet else (lambda msg: click.echo(msg, err=True))
    res = train(spec, Path(out), log=log)
    click.echo(f"val top-1 {res['val_top1']:.4f} (gamma=0: {res['val_top1_gamma0']:.4f}) on "
               f"{res['val_images']} images; trained in {res['train_seconds']:.1f} s")
    click.echo(f"wrote {res['checkpoint']} and {res['config']}")


# -------------------------------------------------------------------------- study / explain

@cli.command("study")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="TOML config layered over the study preset ([study], [train], any stage).")
@click.option("--preset", default="study", show_default=True, help="The study's preset (study).")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override one option, e.g. --set study.variants=['plain','global'] (repeatable).")
@click.option("--out", default=None, help="Study folder [default: runs/study].")
@click.option("--force", is_flag=True, help="Rerun every step even if its inputs and settings are unchanged.")
@handle_errors
def study_cmd(config_path, preset, overrides, out, force):
    """What attention costs and buys: train one model per variant (plain, global, SE, CBAM,
    global on block 5), run every stage on each, count MACs, and write study.md/json/html.
    Exit 1 if any variant's parity check failed (the report is still written)."""
    from attnvgg.errors import CheckFailed
    from attnvgg.pipeline import run_study, study_config

    cfg = study_config(preset, config_path, list(overrides))
    if out:
        cfg.study.out = out
    click.echo(f"attnvgg study: variants {', '.join(cfg.study.variants)}, folder {cfg.study.out}")

    def echo(line: str) -> None:
        click.echo(line)
        sys.stdout.flush()

    summary = run_study(cfg, force=force, echo=echo)
    click.echo(f"done in {summary['seconds']:.1f} s; report: {summary['report']}")
    if summary["failed"]:
        raise CheckFailed(f"{len(summary['failed'])} check(s) failed: {', '.join(summary['failed'])}",
                          "see the study report and each variant's run folder")


@cli.command("explain")
@click.argument("artifacts", nargs=-1, required=True)
@config_options
@model_options
@click.option("--data", default=None, help="Images to explain: builtin:val (default), a folder or .npz.")
@click.option("--images", type=int, default=None, help="How many images (the first N) [default: 4].")
@click.option("--out", "out_dir", default="explain", show_default=True, help="Folder for explain.json and the PNGs.")
@handle_errors
def explain_cmd(artifacts: tuple[str, ...], out_dir: str, **kw: Any) -> None:
    """Attention maps (Softmax, SE/CBAM gates) and Grad-CAM from PyTorch, the same maps from each
    ONNX file, and their agreement with PyTorch fp32 (cosine, Jensen-Shannon); PNG overlays.
    ARTIFACTS: ONNX files of one model, optionally named: fp32=model.sim.onnx int8=model.int8.onnx."""
    from attnvgg.pipeline import explain_command

    flags = {**model_flags(kw), **{f"explain.{k}": kw.pop(k) for k in ("data", "images")}}
    r = explain_command(list(artifacts), out_dir, settings(kw, flags), log=lambda m: click.echo(m))
    click.echo(f"wrote {r.json_path} and {len(r.pngs)} PNG(s) ({r.seconds:.1f} s)")
