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
