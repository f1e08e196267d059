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
