"""Facts about an ONNX graph read from the file: summary, precision, input shape."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from attnvgg.errors import InputError

TWO_GB = 2 * 1024**3


def load_onnx(path: str | os.PathLike, load_external_data: bool = True) -> Any:
    """onnx.load with a one-line error for a missing or non-ONNX file."""
    import onnx

    p = Path(path)
    if not p.is_file():
        raise InputError(f"ONNX file not found: {p}", "check the path, or run attnvgg export first")
    try:
        model = onnx.load(str(p), load_external_data=load_external_data)
    except Exception as exc:
        raise InputError(f"{p} is not a readable ONNX model ({type(exc).__name__})",
                         "pass a .onnx file written by attnvgg export or torch.onnx.export") from exc
    if not model.graph.node:
        raise InputError(f"{p} is not an ONNX model (no graph nodes)", "pass a .onnx file written by attnvgg export")
    return model


def dims(value_info: Any) -> list[int | str]:
    out: list[int | str] = []
    for d in value_info.type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        else:
            out.append(d.dim_param or "?")
    return out


def elem_type_name(elem_type: int) -> str:
    import onnx

    return onnx.helper.tensor_dtype_to_np_dtype(elem_type).name


@dataclass
class GraphSummary:
    nodes: int
    op_counts: dict[str, int]
    inputs: dict[str, dict]
    outputs: dict[str, dict]
    parameters: int
    initializers: int
    file_size: int
    opset: int
    precision: str
    external_data: bool = False
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def format(self) -> str:
        ops = ", ".join(f"{k} {v}" for k, v in sorted(self.op_counts.items(), key=lambda kv: (-kv[1], kv[0])))
        io = "; ".join(f"{n} {d['dtype']}{d['shape']}" for n, d in {**self.inputs, **self.outputs}.items())
        return (f"{self.nodes} nodes ({ops})\n"
                f"io: {io}\n"
                f"parameters: {self.parameters:,}  file: {self.file_size / 1e6:.1f} MB"
                f"{' (+external data)' if self.external_data else ''}  opset {self.opset}  precision {self.precision}")


def precision_evidence(model: Any) -> tuple[str, str]:
    """(precision, why) read from the graph, local functions included: int8 if it has Q/DQ (or
    QOperator) nodes, fp16 if it computes in float16, else fp32."""
    import onnx

    graph = model.graph
    nodes = list(graph.node) + [n for f in model.functions for n in f.node]
    qdq = sum(1 for n in nodes if n.op_type in ("QuantizeLinear", "DequantizeLinear"))
    if qdq:
        return "int8", f"graph: {qdq} QuantizeLinear/DequantizeLinear nodes"
    qop = sum(1 for n in nodes if n.op_type.startswith("QLinear") or n.op_type in ("ConvInteger", "MatMulInteger"))
    if qop:
        return "int8", f"graph: {qop} QOperator int8 nodes"
    f16 = onnx.TensorProto.FLOAT16
    n_init = sum(1 for i in graph.initializer if i.data_type == f16)
    n_cast = sum(1 for n in nodes if n.op_type == "Cast" and any(a.name == "to" and a.i == f16 for a in n.attribute))
    n_vals = sum(1 for v in list(graph.input) + list(graph.output) + list(graph.value_info)
                 if v.type.tensor_type.elem_type == f16)
    if n_init or n_cast or n_vals:
        return "fp16", f"graph: {n_init} float16 initializers, {n_cast} Casts to float16, {n_vals} float16 tensors"
    return "fp32", "graph: no Q/DQ nodes, no float16 tensors"


def detect_precision(model: Any) -> str:
    return precision_evidence(model)[0]


def summarize(path: str | os.PathLike, model: Any | None = None) -> GraphSummary:
    import numpy as np

    from attnvgg.artifacts import external_data_path, file_size

    p = Path(path)
    if model is None:
        model = load_onnx(p, load_external_data=False)
    params = 0
    for init in model.graph.initializer:
        params += int(np.prod(init.dims)) if len(init.dims) else 1
    init_names = {i.name for i in model.graph.initializer}
    inputs = {i.name: {"shape": dims(i), "dtype": elem_type_name(i.type.tensor_type.elem_type)}
              for i in model.graph.input if i.name not in init_names}
    outputs = {o.name: {"shape": dims(o), "dtype": elem_type_name(o.type.tensor_type.elem_type)}
               for o in model.graph.output}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return GraphSummary(
        nodes=len(model.graph.node),
        op_counts=dict(Counter(n.op_type for n in model.graph.node)),
        inputs=inputs,
        outputs=outputs,
        parameters=params,
        initializers=len(model.graph.initializer),
        file_size=file_size(p),
        opset=opset,
        precision=detect_precision(model),
        external_data=external_data_path(p).exists(),
    )


def input_shape(model: Any) -> tuple[str, list[int | str]]:
    init_names = {i.name for i in model.graph.initializer}
    graph_inputs = [i for i in model.graph.input if i.name not in init_names]
    if len(graph_inputs) != 1:
        raise InputError(f"the model has {len(graph_inputs)} inputs; attnvgg handles single-input image models",
                         "export a model with one NCHW input")
    return graph_inputs[0].name, dims(graph_inputs[0])


def save_onnx(model: Any, dest: str | os.PathLike, external_data: str = "auto") -> Path:
    """Write atomically; external data (``<name>.data``) when asked or when above 2 GB."""
    import onnx

    from attnvgg.artifacts import atomic_files, external_data_path

    dest = Path(dest)
    size = model.ByteSize() if external_data == "auto" else 0
    use_ext = external_data == "always" or (external_data == "auto" and size >= TWO_GB - (64 << 20))
    with atomic_files(dest.parent) as stage:
        if use_ext:
            onnx.save_model(model, str(stage / dest.name), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=external_data_path(dest).name, size_threshold=1024)
            # the .onnx is written after the data, so it is moved in last
            os.utime(stage / dest.name)
        else:
            onnx.save_model(model, str(stage / dest.name))
    stale = external_data_path(dest)
    if not use_ext and stale.exists():
        stale.unlink()
    return dest
