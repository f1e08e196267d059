"""Build the PyTorch model a spec describes: architecture, weights and gamma."""

from __future__ import annotations

import importlib
from typing import Any

from attnvgg.config import ATTENTION_KINDS, ModelSpec
from attnvgg.errors import InputError
from attnvgg.runners.torch import TorchRunner


def _factory(spec: str):
    if ":" not in spec:
        raise InputError(f"--model {spec!r} is not of the form package.module:factory",
                         "e.g. --model mypkg.nets:build_model")
    mod_name, fn_name = spec.split(":", 1)
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as exc:
        raise InputError(f"cannot import module {mod_name!r} for --model ({exc})",
                         "make sure it is on PYTHONPATH") from exc
    fn = getattr(mod, fn_name, None)
    if fn is None or not callable(fn):
        raise InputError(f"module {mod_name!r} has no callable {fn_name!r}", "name a function that returns an nn.Module")
    return fn


def build_model(spec: ModelSpec, verbose: bool = False) -> Any:
    """Return the model in eval mode, on CPU, with the spec's weights loaded."""
    import torch
    from torch import nn

    from attnvgg.models.checkpoint import import_torchvision_vgg16, load_into, load_state_dict
    from attnvgg.models.vgg import VGG16WithAttention

    torch.manual_seed(spec.seed)
    if spec.factory:
        model = _factory(spec.factory)()
        if not isinstance(model, nn.Module):
            raise InputError(f"--model {spec.factory} returned {type(model).__name__}, not an nn.Module",
                             "return a torch.nn.Module from the factory")
    elif spec.arch == "vgg16_attention":
        bad = [k for k in spec.attention if k not in ATTENTION_KINDS]
        if bad or len(spec.attention) != 3:
            raise InputError(f"attention must be three of {', '.join(ATTENTION_KINDS)}, got {spec.attention}",
                             "e.g. --attention global,global,global")
        if spec.width <= 0:
            raise InputError(f"width must be positive, got {spec.width}", "e.g. --width 1.0")
        model = VGG16WithAttention(spec.num_classes, spec.attention, spec.width, spec.in_channels)
    else:
        raise InputError(f"unknown model arch {spec.arch!r}", "use vgg16_attention, or --model package.module:factory")

    if spec.pretrained_vgg:
        report = import_torchvision_vgg16(model, load_state_dict(spec.pretrained_vgg, spec.trust_checkpoint))
        if verbose:
            print(f"imported {len(report['loaded'])} tensors from {spec.pretrained_vgg}; "
                  f"left new: {', '.join(report['new']) or 'none'}")
    if spec.checkpoint:
        load_into(model, load_state_dict(spec.checkpoint, spec.trust_checkpoint), spec.checkpoint)
    if spec.gamma is not None:
        set_gamma(model, spec.gamma)
    model.eval()
    return model


def set_gamma(model: Any, value: float) -> int:
    """Set every GlobalAttention gamma; returns how many were set."""
    import torch

    from attnvgg.models.attention import GlobalAttention

    n = 0
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, GlobalAttention):
                m.gamma.fill_(value)
                n += 1
    return n


def torch_runner(spec: ModelSpec, device: str = "cpu") -> Any:
    """The PyTorch model a spec describes as a runner (built on activate), for parity, accuracy and
    bench. Here, not in ``runners.factory``: the runner layer sits below the models."""
    shape = (-1, spec.in_channels, spec.input_size, spec.input_size)
    return TorchRunner(lambda: build_model(spec), input_shape=shape, device=device)
