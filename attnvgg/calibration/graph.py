"""Read-only views of an ONNX graph: who produces and consumes a tensor, which tensors are float.

The exclusion policy and the "which nodes run quantized" report both walk the graph by
structure, not by node names, because the dynamo and TorchScript exporters name nodes
differently. Everything here works on a ``onnx.ModelProto`` and never loads weights twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    import onnx

#: Ops that only move or re-label data. TensorRT propagates Q/DQ across them, so an INT8 value
#: that passes through them into a MatMul still makes that MatMul run in INT8.
SHAPE_OPS = frozenset({"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Identity"})
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
FLOAT_TYPES = frozenset({1, 10, 11, 16})  # FLOAT, FLOAT16, DOUBLE, BFLOAT16


@dataclass
class GraphIndex:
    """Producer/consumer maps and element types of one graph."""

    model: "onnx.ModelProto"
    producer: dict[str, "onnx.NodeProto"] = field(default_factory=dict)
    consumers: dict[str, list["onnx.NodeProto"]] = field(default_factory=dict)
    constants: set[str] = field(default_factory=set)       # initializers and Constant outputs
    elem_type: dict[str, int] = field(default_factory=dict)
    graph_outputs: set[str] = field(default_factory=set)

    @classmethod
    def build(cls, model: "onnx.ModelProto", infer_types: bool = False) -> "GraphIndex":
        g = model.graph
        idx = cls(model)
        for n in g.node:
            for o in n.output:
                if o:
                    idx.producer[o] = n
            for i in n.input:
                if i:
                    idx.consumers.setdefault(i, []).append(n)
            if n.op_type == "Constant":
                idx.constants.update(o for o in n.output if o)
        for init in g.initializer:
            idx.constants.add(init.name)
            idx.elem_type[init.name] = init.data_type
        vis = list(g.value_info) + list(g.input) + list(g.output)
        if infer_types:
            import onnx

            try:  # types only; a failure leaves tensors "unknown", which count as float below
                vis += list(onnx.shape_inference.infer_shapes(model, strict_mode=False).graph.value_info)
            except Exception:  # noqa: BLE001 - inference is a best effort on exotic graphs
                pass
        for vi in vis:
            if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
                idx.elem_type.setdefault(vi.name, vi.type.tensor_type.elem_type)
        for n in g.node:  # outputs whose type is fixed by the op
            if n.op_type == "DequantizeLinear":
                for o in n.output:
                    idx.elem_type.setdefault(o, 1)
            elif n.op_type in ("QuantizeLinear", "Shape", "Size"):
                for o in n.output:
                    idx.elem_type.setdefault(o, 3 if n.op_type == "QuantizeLinear" else 7)
        idx.graph_outputs = {o.name for o in g.output}
        return idx

    def nodes(self) -> Iterable["onnx.NodeProto"]:
        return self.model.graph.node

    def is_float(self, tensor: str) -> bool:
        """Float-typed (or of unknown type, which we treat as float to stay conservative)."""
        t = self.elem_type.get(tensor)
        return t is None or t in FLOAT_TYPES

    def data_inputs(self, node: "onnx.NodeProto") -> list[str]:
        """The float inputs that carry data: not empty, not non-float (shapes, axes, indices)."""
        return [i for i in node.input if i and self.is_float(i)]

    def is_dq_output(self, tensor: str) -> bool:
        p = self.producer.get(tensor)
        return p is not None and p.op_type == "DequantizeLinear"

    def walk_down(self, tensor: str, through: frozenset[str]) -> tuple[list, list]:
        """Follow ``tensor`` downstream through ops in ``through``; (passed nodes, the other consumers reached)."""
        passed, ends, stack, seen = [], [], [tensor], set()
        while stack:
            t = stack.pop()
            for c in self.consumers.get(t, []):
                if id(c) in seen:
                    continue
                seen.add(id(c))
                if c.op_type in through:
                    passed.append(c)
                    stack.extend(o for o in c.output if o)
                else:
                    ends.append(c)
        return passed, ends

    def dq_source(self, tensor: str) -> "onnx.NodeProto | None":
        """The DequantizeLinear a tensor comes from, directly or through shape-only ops; else None."""
        seen = 0
        p = self.producer.get(tensor)
        while p is not None and seen < 10_000:
            if p.op_type == "DequantizeLinear":
                return p
            if p.op_type not in SHAPE_OPS or not p.input:
                return None
            p = self.producer.get(p.input[0])
            seen += 1
        return None


