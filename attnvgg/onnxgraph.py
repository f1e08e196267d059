"""The ONNX graph helpers every layer shares: load and save, topological order, the image
input, the precision a graph computes in.

Why one module: four stages read the model input and two sort graphs; each had its own copy.
``onnx`` is imported inside the functions (``attnvgg --help`` and the report stay light).
"""

from __future__ import annotations

import heapq
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attnvgg.artifacts import atomic_files, external_data_path
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
    """numpy's name of an ONNX element type (``float32``); ONNX's own for types numpy lacks."""
    import onnx

    try:
        return onnx.helper.tensor_dtype_to_np_dtype(elem_type).name
    except Exception:  # noqa: BLE001 - e.g. bfloat16/float8 in older numpy
        return onnx.TensorProto.DataType.Name(elem_type).lower()



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


def input_shape(model: Any) -> tuple[str, list[int | str]]:
    init_names = {i.name for i in model.graph.initializer}
    graph_inputs = [i for i in model.graph.input if i.name not in init_names]
    if len(graph_inputs) != 1:
        raise InputError(f"the model has {len(graph_inputs)} inputs; attnvgg handles single-input image models",
                         "export a model with one NCHW input")
    return graph_inputs[0].name, dims(graph_inputs[0])


@dataclass
class InputShape:
    name: str
    batch: int          # -1 when dynamic
    chw: tuple[int, int, int]


def model_input(model: Any) -> InputShape:
    """The single image input of an ONNX model (batch may be dynamic, C/H/W must be static)."""
    g = model.graph
    inits = {i.name for i in g.initializer}
    inputs = [i for i in g.input if i.name not in inits]
    if len(inputs) != 1:
        raise InputError(f"the model has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); calibration "
                         "needs one image input", "export the model with one NCHW input")
    vi = inputs[0]
    shape = [d.dim_value if d.HasField("dim_value") else -1 for d in vi.type.tensor_type.shape.dim]
    if len(shape) != 4 or any(d <= 0 for d in shape[1:]):
        raise InputError(f"input {vi.name} has shape {shape}; calibration needs NCHW with static C, H, W",
                         "export with a static input size (attnvgg export --input-size N)")
    return InputShape(vi.name, shape[0] if shape[0] > 0 else -1, (shape[1], shape[2], shape[3]))


def save_onnx(model: Any, dest: str | os.PathLike, external_data: str = "auto") -> Path:
    """Write atomically; external data (``<name>.data``) when asked or when above 2 GB."""
    import onnx

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


def toposort(model: Any) -> bool:
    """Sort ``model.graph.node`` topologically in place (stable). Returns True if it reordered.

    ONNX requires nodes in topological order; ``onnx.checker`` rejects a graph that is not.
    Raises ValueError on a cycle.
    """
    g = model.graph
    nodes = list(g.node)
    available = {i.name for i in g.input} | {i.name for i in g.initializer} | {""}
    # Tensors from an outer scope (subgraphs) are not our concern: this graph has none.
    pending = list(range(len(nodes)))
    order: list[int] = []
    waiting: dict[str, list[int]] = {}
    missing = {}
    for k in pending:
        need = {i for i in nodes[k].input if i not in available}
        missing[k] = need
        for t in need:
            waiting.setdefault(t, []).append(k)
    ready = [k for k in pending if not missing[k]]
    heapq.heapify(ready)
    produced_by = {}
    for k, n in enumerate(nodes):
        for o in n.output:
            produced_by[o] = k
    while ready:
        k = heapq.heappop(ready)
        order.append(k)
        for o in nodes[k].output:
            for j in waiting.pop(o, []):
                missing[j].discard(o)
                if not missing[j]:
                    heapq.heappush(ready, j)
    if len(order) != len(nodes):
        stuck = [nodes[k].name or nodes[k].op_type for k in range(len(nodes)) if k not in set(order)]
        unknown = sorted({t for k in range(len(nodes)) if k not in set(order) for t in missing[k]
                          if t not in produced_by})
        raise ValueError(f"graph is not a DAG or uses undefined tensors {unknown[:5]}; stuck nodes {stuck[:5]}")
    if order == list(range(len(nodes))):
        return False
    sorted_nodes = [nodes[k] for k in order]
    del g.node[:]
    g.node.extend(sorted_nodes)
    return True


def ensure_node_names(model: Any, prefix: str = "attnvgg_node") -> int:
    """Give every unnamed node a unique name (exclusion lists address nodes by name)."""
    names = {n.name for n in model.graph.node if n.name}
    k = 0
    for i, n in enumerate(model.graph.node):
        if not n.name:
            name = f"{prefix}_{n.op_type}_{i}"
            while name in names:
                name += "_"
            n.name = name
            names.add(name)
            k += 1
    return k
