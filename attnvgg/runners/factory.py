"""Pick the runner for a model file: .onnx -> ONNX Runtime or OpenVINO, .engine/.plan -> TensorRT.

``provider`` names the runner of an ONNX file, one vocabulary for validate, evaluate, bench and
run (``config.ONNX_RUNNERS``): ``cpu``/``cuda`` are ONNX Runtime's execution providers,
``openvino`` is OpenVINO on the CPU in f32 and ``openvino-bf16`` OpenVINO on the CPU with bf16
inference precision (refused where the CPU has no native bf16).
"""

from __future__ import annotations

import os
from pathlib import Path

from attnvgg.config import ONNX_RUNNERS
from attnvgg.errors import InputError
from attnvgg.runners.base import Runner
from attnvgg.runners.onnxruntime import OnnxRuntimeRunner
from attnvgg.runners.openvino import OpenVinoRunner
from attnvgg.runners.tensorrt import PolygraphyEngineRunner, TensorRTRunner

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
#: every runner of an ONNX file; the values of --provider (config owns the list)
PROVIDERS = ONNX_RUNNERS
#: OpenVINO providers -> the runner's inference precision
OPENVINO_PROVIDERS = {"openvino": "f32", "openvino-bf16": "bf16"}


def provider_device(provider: str) -> str:
    """The device a provider runs on ("cpu" or "cuda"): where the PyTorch baseline of it runs."""
    return "cuda" if provider == "cuda" else "cpu"


def provider_compute_precision(provider: str) -> str | None:
    """The precision a provider imposes on a float graph (None: the file's own)."""
    return "bf16" if OPENVINO_PROVIDERS.get(provider) == "bf16" else None


def open_runner(
    artifact: str | os.PathLike,
    provider: str = "cpu",
    threads: int | None = None,
    device_resident: bool = False,
) -> Runner:
    """A runner for a model file. The PyTorch model is ``models.build.torch_runner`` (models sit
    above the runners, so the factory does not build networks).

    An engine runs through Polygraphy's TrtRunner (``PolygraphyEngineRunner``) unless
    ``device_resident``: the bench's ``TensorRTRunner`` binds device buffers once and times only
    ``execute_async_v3``.
    """
    if artifact is None:
        raise InputError("no model file given", "pass an .onnx or .engine file")
    p = Path(artifact)
    if not p.exists():
        raise InputError(f"file not found: {p}", "check the path (attnvgg export / build write these files)")
    if p.suffix == ".onnx" and provider in OPENVINO_PROVIDERS:
        return OpenVinoRunner(p, precision=OPENVINO_PROVIDERS[provider], threads=threads)
    if p.suffix == ".onnx":
        if provider not in PROVIDERS:
            raise InputError(f"unknown ONNX Runtime provider or runner {provider!r} for an ONNX file",
                             f"use one of {', '.join(PROVIDERS)}")
        return OnnxRuntimeRunner(p, provider=provider, threads=threads)
    if p.suffix in ENGINE_SUFFIXES:
        return TensorRTRunner(p) if device_resident else PolygraphyEngineRunner(p)
    raise InputError(f"{p} is neither an ONNX model (.onnx) nor a TensorRT engine (.engine/.plan)",
                     "pass a file that attnvgg export, convert, calibrate or build wrote")
