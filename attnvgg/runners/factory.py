"""Pick the runner for an artifact: .onnx -> ONNX Runtime, .engine/.plan -> TensorRT, a model spec -> PyTorch."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from attnvgg.runners.base import Runner
from attnvgg.errors import InputError

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def open_runner(
    artifact: str | os.PathLike | None,
    provider: str = "cpu",
    threads: int | None = None,
    model_spec: Any = None,
    device: str = "cpu",
    device_resident: bool = False,
) -> Runner:
    """A runner for ``artifact``; ``artifact=None`` with a ModelSpec gives the PyTorch reference.

    An engine runs through Polygraphy's TrtRunner (``PolygraphyEngineRunner``) unless
    ``device_resident``: the bench's ``TensorRTRunner`` binds device buffers once and times only
    ``execute_async_v3``.
    """
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
    if p.suffix == ".onnx":
        from attnvgg.runners.onnxruntime import OnnxRuntimeRunner

        return OnnxRuntimeRunner(p, provider=provider, threads=threads)
    if p.suffix in ENGINE_SUFFIXES:
        from attnvgg.runners.tensorrt import PolygraphyEngineRunner, TensorRTRunner

        return TensorRTRunner(p) if device_resident else PolygraphyEngineRunner(p)
    raise InputError(f"{p} is neither an ONNX model (.onnx) nor a TensorRT engine (.engine/.plan)",
                     "pass a file that attnvgg export, convert, calibrate or build wrote")
