"""PyTorch -> ONNX with the dynamo exporter (default) or the TorchScript exporter.

Input ``input``, output ``logits``, dynamic batch, static H/W. ``AdaptiveAvgPool2d((7, 7))``
makes a dynamic-H/W export silently wrong (the dynamo exporter reports success, yet the graph
only runs at 224-255 px), so dynamic H/W is refused unless every declared size passes parity.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from attnvgg import sidecar
from attnvgg.artifacts import check_outputs, sha256_file, sidecar_path
from attnvgg.config import ExportSpec, ModelSpec, PreprocessSpec, Tolerance
from attnvgg.data.preprocess import fit_to_input
from attnvgg.errors import CheckFailed, InputError, StageError, first_line
from attnvgg.export.graph import summarize
from attnvgg.models.build import build_model
from attnvgg.onnxgraph import load_onnx, save_onnx
from attnvgg.runners.compare import compare_runners
from attnvgg.runners.torch import TorchRunner
from attnvgg.runners.onnxruntime import OnnxRuntimeRunner

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
EXPORTERS = ("dynamo", "torchscript")


@dataclass
class ExportResult:
    path: Path
    seconds: float
    summary: dict
    sidecar: dict


def check_spec(spec: ExportSpec, model: ModelSpec) -> None:
    if spec.exporter not in EXPORTERS:
        raise InputError(f"unknown exporter {spec.exporter!r}", f"use one of {', '.join(EXPORTERS)}")
    if spec.external_data not in ("auto", "always", "never"):
        raise InputError(f"external_data must be auto, always or never, got {spec.external_data!r}", "fix the option")
    if not 1 <= spec.batch_min <= spec.batch_max:
        raise InputError(f"batch range {spec.batch_min}..{spec.batch_max} is empty or below 1",
                         "use 1 <= batch_min <= batch_max")
    if model.input_size < 32:
        raise InputError(f"input size {model.input_size} is below 32 px: VGG16's five 2x2 pools need at least 32",
                         "use --input-size 32 or more")
    if spec.dynamic_hw and not spec.hw_sizes:
        raise InputError(
            "dynamic height/width was asked for without the sizes to prove it: AdaptiveAvgPool2d((7, 7)) makes such "
            "exports silently wrong at most sizes",
            "list every size you will feed with --hw-sizes 224,256 (each must pass parity), or keep H/W static",
        )


@contextlib.contextmanager
def _quiet():
    """The exporters print progress, warnings and (TorchScript, from C++) whole IR graphs on
    failure. Send file descriptors 1 and 2 to a scratch file so our own lines stay readable."""
    import tempfile

    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch._dynamo", "torch.export", "onnxscript")]
    old = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    with tempfile.TemporaryFile(mode="w+") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                    contextlib.redirect_stderr(io.StringIO()):
                warnings.simplefilter("ignore")
                yield sink
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            for lg, lvl in zip(loggers, old):
                lg.setLevel(lvl)


def _wants_external_data(model: Any, spec: ExportSpec) -> bool:
    if spec.external_data != "auto":
        return spec.external_data == "always"
    weight_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return weight_bytes >= 1900 * 1024**2  # protobuf's 2 GB limit, with room for the graph


def _torch_export(model: Any, x: Any, path: Path, spec: ExportSpec) -> None:
    import torch

    dynamic = spec.dynamic_batch or spec.dynamic_hw
    if spec.exporter == "dynamo":
        shapes = None
        if dynamic:
            from torch.export import Dim

            axes: dict[int, Any] = {}
            if spec.dynamic_batch:
                axes[0] = Dim("batch", min=1, max=max(spec.batch_max, 2))
            if spec.dynamic_hw:
                axes[2] = Dim("height", min=32, max=4096)
                axes[3] = Dim("width", min=32, max=4096)
            shapes = (axes,)
        torch.onnx.export(model, (x,), str(path), dynamo=True, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          opset_version=spec.opset, dynamic_shapes=shapes,
                          external_data=_wants_external_data(model, spec), verbose=False)
    else:
        axes_in: dict[int, str] = {}
        if spec.dynamic_batch:
            axes_in[0] = "batch"
        if spec.dynamic_hw:
            axes_in.update({2: "height", 3: "width"})
        dyn = {INPUT_NAME: axes_in, OUTPUT_NAME: {0: "batch"} if spec.dynamic_batch else {}} if dynamic else None
        torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          opset_version=spec.opset, dynamic_axes=dyn, do_constant_folding=True)


def export_onnx(
    model_spec: ModelSpec,
    spec: ExportSpec,
    out: str | os.PathLike,
    preprocess: PreprocessSpec | None = None,
    model: Any = None,
) -> ExportResult:
    """Export the model a spec describes to ``out`` (atomically), with a sidecar JSON."""
    import tempfile

    import onnx
    import torch

    check_spec(spec, model_spec)
    out = Path(out)
    if out.suffix != ".onnx":
        raise InputError(f"output {out} does not end in .onnx", "name the output file model.onnx or similar")
    check_outputs([out, sidecar_path(out)], [model_spec.checkpoint, model_spec.pretrained_vgg])
    if model is None:
        model = build_model(model_spec)
    model.eval()
    batch = 2 if spec.dynamic_batch else spec.batch_min
    size = model_spec.input_size
    x = torch.randn(batch, model_spec.in_channels, size, size)
    try:
        with torch.no_grad():
            model(x)
    except Exception as exc:
        raise InputError(f"the model does not run on a {tuple(x.shape)} input ({first_line(exc, 160)})",
                         "check --input-size and the model's expected input channels") from exc

    t0 = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".export-", dir=out.parent) as tmp:
        raw = Path(tmp) / out.name
        try:
            with _quiet(), torch.no_grad():
                _torch_export(model, x, raw, spec)
        except Exception as exc:
            msg = first_line(exc)
            hint = ("try --exporter torchscript" if spec.exporter == "dynamo" else "try --exporter dynamo")
            raise StageError(f"{spec.exporter} export failed: {msg}", hint) from exc
        try:
            onnx.checker.check_model(str(raw), full_check=False)
        except Exception as exc:
            raise StageError(f"the exported graph fails onnx.checker ({first_line(exc, 160)})",
                             "report it with the model; try the other exporter") from exc
        seconds = time.perf_counter() - t0
        if spec.dynamic_hw:
            _prove_dynamic_hw(model, raw, model_spec, spec)
        raw_data = raw.with_name(raw.name + ".data")
        if spec.external_data == "always" and not raw_data.exists():
            save_onnx(load_onnx(raw), out, external_data="always")
        else:
            # The exporter's files are complete and checked: rename them in, data first.
            stale = out.with_name(out.name + ".data")
            if raw_data.exists():
                os.replace(raw_data, stale)
            elif stale.exists():
                stale.unlink()
            os.replace(raw, out)
    summary = summarize(out)
    facts = {
        "stage": "export",
        "model": asdict(model_spec),
        "preprocess": asdict(fit_to_input(preprocess or PreprocessSpec(), size)),
        "export": asdict(spec),
        "input": {"name": INPUT_NAME, "shape": summary.inputs[INPUT_NAME]["shape"] if INPUT_NAME in summary.inputs else None},
        "batch_range": [spec.batch_min, spec.batch_max] if spec.dynamic_batch else [batch, batch],
        "checkpoint_sha256": sha256_file(model_spec.checkpoint) if model_spec.checkpoint else None,
        "seconds": round(seconds, 3),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "summary": summary.to_dict(),
    }
    side = sidecar.write(out, "export", facts)
    return ExportResult(out, seconds, summary.to_dict(), side.facts)


def _prove_dynamic_hw(model: Any, path: Path, model_spec: ModelSpec, spec: ExportSpec) -> None:
    """Run the dynamic-H/W graph at every declared size against PyTorch; refuse on any failure."""
    import numpy as np

    tol = Tolerance()
    failures = []
    for s in spec.hw_sizes:
        x = np.random.default_rng(0).standard_normal((1, model_spec.in_channels, s, s)).astype(np.float32)
        try:
            r = compare_runners(TorchRunner(model, input_shape=(-1, model_spec.in_channels, -1, -1)),
                                OnnxRuntimeRunner(path), [x], tol)
        except Exception as exc:
            text = str(exc)
            text = text.split("Status Message:", 1)[1] if "Status Message:" in text else text
            failures.append(f"{s}px: does not run ({first_line(RuntimeError(text), 100)})")
            continue
        if not r["passed"]:
            failures.append(f"{s}px: {r['why'][0]}")
    if failures:
        raise CheckFailed(f"dynamic H/W export is wrong at {'; '.join(failures)}",
                          "keep H/W static (one export per input size); no file was written")
