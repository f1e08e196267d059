"""Pick the runner for an artifact: .onnx -> ONNX Runtime or OpenVINO, .engine/.plan -> TensorRT,
a model spec -> PyTorch.

``provider`` names the runner of an ONNX file, one vocabulary for validate, evaluate, bench and
run: ``cpu``/``cuda`` are ONNX Runtime's execution providers, ``openvino`` is OpenVINO on the CPU
in f32 and ``openvino-bf16`` OpenVINO on the CPU with bf16 inference precision (refused where the
CPU has no native bf16).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from attnvgg.runners.base import Runner
from attnvgg.errors import InputError

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
#: every runner of an ONNX file; the values of --provider
PROVIDERS = ("cpu", "cuda", "openvino", "openvino-bf16")
#: OpenVINO providers -> the runner's inference precision
OPENVINO_PROVIDERS = {"openvino": "f32", "openvino-bf16": "bf16"}


def provider_device(provider: str) -> str:
    """The device a provider runs on ("cpu" or "cuda"): where the PyTorch baseline of it runs."""
    return "cuda" if provider == "cuda" else "cpu"


def provider_compute_precision(provider: str) -> str | None:
    """The precision a provider imposes on a float graph (None: the file's own)."""
    return "bf16" if OPENVINO_PROVIDERS.get(provider) == "bf16" else None


def open_runner(
    artifact: str | os.PathLike | None,
    provider: str = "cpu",
    threads: int | None = None,
    model_spec: Any = None,
    device: str = "cpu",
) -> Runner:
    """A runner for ``artifact``; ``artifact=None`` with a ModelSpec gives the PyTorch reference."""
    if artifact is None:
        if model_spec is None:
            raise InputError("no model given", "pass an .onnx or .engine file, or model options")
        from attnvgg.runners.torch import TorchRunner
        from attnvgg.models.build import build_model

        shape = (-1, model_spec.in_channels, model_spec.input_size, model_spec.input_size)
        return TorchRunner(lambda: build_model(model_spec), input_shape=shape, device=device)
    p = Path(artifact)
    if not p.exists():
        raise InputError(f"file not found: {p}", "check the path (attnvgg export / build write these files)")
    if p.suffix == ".onnx" and provider in OPENVINO_PROVIDERS:
        from attnvgg.runners.openvino import OpenVinoRunner

        return OpenVinoRunner(p, precision=OPENVINO_PROVIDERS[provider], threads=threads)
    if p.suffix == ".onnx":
        if provider not in PROVIDERS:
            raise InputError(f"unknown runner {provider!r} for an ONNX file", f"use one of {', '.join(PROVIDERS)}")
        from attnvgg.runners.onnxruntime import OnnxRuntimeRunner

        return OnnxRuntimeRunner(p, provider=provider, threads=threads)
    if p.suffix in ENGINE_SUFFIXES:
        from attnvgg.runners.tensorrt import TensorRTRunner

        return TensorRTRunner(p)
    raise InputError(f"{p} is neither an ONNX model (.onnx) nor a TensorRT engine (.engine/.plan)",
                     "pass a file that attnvgg export, convert, calibrate or build wrote")
