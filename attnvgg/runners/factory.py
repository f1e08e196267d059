"""Pick the runner for a model file: .onnx -> ONNX Runtime, .engine/.plan -> TensorRT."""

from __future__ import annotations

import os
from pathlib import Path

from attnvgg.runners.base import Runner
from attnvgg.errors import InputError
from attnvgg.runners.onnxruntime import OnnxRuntimeRunner
from attnvgg.runners.tensorrt import TensorRTRunner

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def open_runner(
    artifact: str | os.PathLike,
    provider: str = "cpu",
    threads: int | None = None,
) -> Runner:
    """A runner for a model file. The PyTorch model is ``models.build.torch_runner`` (models sit
    above the runners, so the factory does not build networks)."""
    if artifact is None:
        raise InputError("no model file given", "pass an .onnx or .engine file")
    p = Path(artifact)
    if not p.exists():
        raise InputError(f"file not found: {p}", "check the path (attnvgg export / build write these files)")
    if p.suffix == ".onnx":
        return OnnxRuntimeRunner(p, provider=provider, threads=threads)
    if p.suffix in ENGINE_SUFFIXES:
        return TensorRTRunner(p)
    raise InputError(f"{p} is neither an ONNX model (.onnx) nor a TensorRT engine (.engine/.plan)",
                     "pass a file that attnvgg export, convert, calibrate or build wrote")
