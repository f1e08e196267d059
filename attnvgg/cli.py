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
    from attnvgg.engines.build_plan import render_plan, run_build

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
