"""ONNX Runtime runner (CPU and CUDA execution providers)."""

from __future__ import annotations

import ast
import os
import tempfile
from pathlib import Path

import numpy as np

from attnvgg.artifacts import scratch_prefix
from attnvgg.onnxgraph import TWO_GB, input_shape, load_onnx
from attnvgg.runners.base import Runner, TensorMeta, check_feeds
from attnvgg.errors import InputError, MissingDependency, first_line

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
               "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(uint8)": "uint8",
               "tensor(int8)": "int8"}


def import_ort():
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise MissingDependency(
            "onnxruntime is not installed",
            'install it with: pip install "attnvgg[cpu]" (or "attnvgg[gpu]" for CUDA)',
        ) from exc
    return ort


class OnnxRuntimeRunner(Runner):
    def __init__(
        self,
        path: str | os.PathLike,
        provider: str = "cpu",
        threads: int | None = None,
        optimize: bool = True,
        name: str | None = None,
    ):
        if provider not in PROVIDERS:
            raise InputError(f"unknown ONNX Runtime provider {provider!r}", f"use one of {', '.join(PROVIDERS)}")
        self.backend = f"onnxruntime-{provider}"
        super().__init__(name)
        self.path = Path(path)
        self.provider = provider
        self.threads = threads
        self.optimize = optimize
        self.session = None

    def activate_impl(self) -> None:
        ort = import_ort()
        if not self.path.is_file():
            raise InputError(f"ONNX file not found: {self.path}", "run attnvgg export first or fix the path")
        wanted = PROVIDERS[self.provider]
        if wanted not in ort.get_available_providers():
            raise MissingDependency(
                f"ONNX Runtime has no {wanted} here (available: {', '.join(ort.get_available_providers())})",
                'install onnxruntime-gpu (pip install "attnvgg[gpu]") and run on a machine with a CUDA GPU',
            )
        so = ort.SessionOptions()
        so.log_severity_level = 4  # errors reach the caller as exceptions
        if self.threads:
            so.intra_op_num_threads = self.threads
            so.inter_op_num_threads = 1
        if not self.optimize:
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            self.session = ort.InferenceSession(str(self.path), so, providers=[wanted])
        except Exception as exc:
            first = first_line(exc)
            raise InputError(f"ONNX Runtime cannot load {self.path} ({first})",
                             "check it is a valid ONNX model (attnvgg export writes one)") from exc
        got = self.session.get_providers()
        if not got or got[0] != wanted:
            # ORT appends the CPU provider and falls back to it when CUDA cannot start (missing
            # cuDNN/CUDA libraries): a "cuda" row must never be a CPU time.
            self.session = None
            raise MissingDependency(
                f"ONNX Runtime fell back to {got[0] if got else 'no provider'} for {self.path.name}: "
                f"{wanted} could not start here",
                "check the CUDA and cuDNN libraries onnxruntime-gpu needs (see its install docs)",
            )

    def deactivate_impl(self) -> None:
        self.session = None

    def input_metadata(self) -> list[TensorMeta]:
        sess = self.session
        if sess is None:
            raise RuntimeError("activate the runner first")
        return [
            TensorMeta(i.name, _ORT_DTYPES.get(i.type, i.type),
                       tuple(d if isinstance(d, int) else -1 for d in i.shape))
            for i in sess.get_inputs()
        ]

    def output_names(self) -> list[str]:
        return [o.name for o in self.session.get_outputs()]

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        metas = self.input_metadata()
        check_feeds(self.path.name, metas, feeds)
        meta = {m.name: m for m in metas}
        outs = self.session.run(None, {k: np.ascontiguousarray(v, dtype=np.dtype(meta[k].dtype)) for k, v in feeds.items()})
        return dict(zip(self.output_names(), outs))

    def describe(self) -> dict:
        ort = import_ort()
        return {**super().describe(), "model": str(self.path), "provider": self.provider,
                "onnxruntime": ort.__version__, "threads": self.threads}


def run_all_outputs(path: Path, feeds: dict[str, np.ndarray] | np.ndarray
                    ) -> tuple[dict[str, np.ndarray], dict[str, tuple[str, str, str]]]:
    """Run the graph unoptimised with every node output exposed (a bare array feeds its one input).

    Returns the float tensors by name and, in node order, tensor -> (node name, op type, the
    dynamo exporter's module name scope or ""). Shared by ``--locate`` and the NaN/Inf locator.
    """
    import onnx

    model = load_onnx(path)
    if isinstance(feeds, np.ndarray):
        feeds = {input_shape(model)[0]: feeds}
    existing = {o.name for o in model.graph.output}
    producers: dict[str, tuple[str, str, str]] = {}
    for node in model.graph.node:
        scope = ""
        for prop in node.metadata_props:
            if prop.key == "pkg.torch.onnx.name_scopes":
                try:
                    parts = [p for p in ast.literal_eval(prop.value) if p]
                    scope = parts[-2] if len(parts) >= 2 else (parts[0] if parts else "")
                except Exception:
                    scope = ""
        for out in node.output:
            if out:
                producers[out] = (node.name or node.op_type, node.op_type, scope)
                if out not in existing:
                    model.graph.output.append(onnx.ValueInfoProto(name=out))
    ort = import_ort()
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    with tempfile.TemporaryDirectory(prefix=scratch_prefix("outputs")) as tmp:
        p = Path(tmp) / "all_outputs.onnx"
        onnx.save(model, str(p), save_as_external_data=model.ByteSize() >= TWO_GB - (64 << 20))
        del model
        sess = ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        values = sess.run(names, feeds)
    tensors = {n: np.asarray(v) for n, v in zip(names, values) if isinstance(v, np.ndarray) and v.dtype.kind == "f"}
    return tensors, producers
