"""The graph summary export and simplify print and record (nodes, ops, I/O, parameters, size)."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from attnvgg.artifacts import external_data_path, file_size
from attnvgg.onnxgraph import detect_precision, dims, elem_type_name, load_onnx


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


def summarize(path: str | os.PathLike, model: Any | None = None) -> GraphSummary:
    import numpy as np

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

