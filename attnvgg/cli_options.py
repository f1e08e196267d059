"""The options every attnvgg command shares and the one way they become settings.

``config_options`` (--config, --preset, --set) and ``model_options`` are declared once here;
``settings`` layers them with a command's own flags through ``pipeline.settings`` (defaults <
preset < --config < flags < --set), so no command copies "if the flag is set, setattr".
The pipeline is imported when a command runs: ``attnvgg --help`` loads no numpy.
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable

import click

from attnvgg.config import nested
from attnvgg.errors import AttnvggError, InputError


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


MODEL_FLAGS = ("checkpoint", "pretrained_vgg", "factory", "attention", "width", "num_classes", "input_size",
               "gamma", "seed", "trust_checkpoint")


def config_options(fn: Callable) -> Callable:
    """The one config path of every command: defaults < --preset < --config < flags < --set."""
    opts = [
        click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
                     help="TOML config holding any stage's options (a model TOML works too); flags override it."),
        click.option("--preset", "run_preset", default="default", show_default=True,
                     help="default (reduced model trained on the built-in data) or vgg16-224 (full size)."),
        click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
                     help="Override one option, e.g. --set calibrate.method=entropy (repeatable; wins over flags)."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def model_options(fn: Callable) -> Callable:
    """Options that describe the PyTorch model; they override ``[model]`` in --config."""
    opts = [
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


def model_flags(kw: dict) -> dict:
    """Pop the model options from ``kw`` as ``model.KEY`` flags."""
    flags = {f"model.{k}": kw.pop(k, None) for k in MODEL_FLAGS}
    attention = flags["model.attention"]
    if attention is not None:
        kinds = [a.strip() for a in attention.split(",")]
        flags["model.attention"] = kinds * 3 if len(kinds) == 1 else kinds
    if flags["model.factory"]:
        flags["model.arch"] = "custom"
    return flags


def settings(kw: dict, flags: dict) -> Any:
    """Pop --config/--preset/--set from ``kw`` and layer them with ``flags`` (None = not given)."""
    from attnvgg.pipeline import settings as layered

    return layered(kw.pop("run_preset", "default"), kw.pop("config_path", None), kw.pop("overrides", ()), nested(flags))


def int_list(text: str | None, what: str) -> list[int] | None:
    if text is None:
        return None
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise InputError(f"{what} must be comma-separated integers, got {text!r}", f"e.g. {what} 1,8,32") from None
    if not values or any(v < 1 for v in values):
        raise InputError(f"{what} must be positive integers, got {text!r}", f"e.g. {what} 1,8,32")
    return values
