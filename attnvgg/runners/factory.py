"""Pick the runner for a model file: .onnx -> ONNX Runtime, .engine/.plan -> TensorRT."""

from __future__ import annotations

import os
from pathlib import Path

from attnvgg.runners.base import Runner
from attnvgg.errors import InputError
from attnvgg.runners.onnxruntime import OnnxRuntimeRunner
from attnvgg.runners.tensorrt import PolygraphyEngineRunner, TensorRTRunner

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


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
    if p.suffix == ".onnx":
        return OnnxRuntimeRunner(p, provider=provider, threads=threads)
    if p.suffix in ENGINE_SUFFIXES:
        return TensorRTRunner(p) if device_resident else PolygraphyEngineRunner(p)
    raise InputError(f"{p} is neither an ONNX model (.onnx) nor a TensorRT engine (.engine/.plan)",
                     "pass a file that attnvgg export, convert, calibrate or build wrote")
