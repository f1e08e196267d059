"""Multiply-accumulates counted from an exported ONNX graph, and the share spent in attention.

Counted ops: Conv (out C*H*W x in C/group x kh x kw), Gemm (M x N x K), MatMul (batch dims x
M x N x K). Elementwise ops, pooling and Softmax are left out (they are not MACs), as every
published VGG/attention FLOP table does. Counts are per image: a symbolic batch axis counts 1.

Attention is found by structure, not by names (the TorchScript and dynamo exporters name nodes
differently): every attention block ends in a node that combines the block's input ``x`` with
what the block computed from it: the residual ``Add`` after ``gamma * (v attn^T)`` of global
attention, the gating ``Mul`` of SE and CBAM. The block's ops are the ancestors of that node
that descend from ``x``. Their Conv/Gemm/MatMul MACs are the attention MACs.
"""

from __future__ import annotations

import os
from pathlib import Path
from dataclasses import asdict, dataclass, field
from typing import Any

from attnvgg.calibration.graph import SHAPE_OPS, GraphIndex
from attnvgg.calibration.policy import attention_sites, gate_sites
from attnvgg.config import ExportSpec, ModelSpec
from attnvgg.onnxgraph import load_onnx
from attnvgg.export.onnx import export_onnx

COUNTED_OPS = ("Conv", "Gemm", "MatMul")
_SCALE_OPS = frozenset({"Mul", "Div", "Cast"})


@dataclass
class NodeMacs:
    name: str
    op_type: str
    macs: int
    attention: bool


@dataclass
class MacCount:
    """MACs per image of one graph, total and by op type, attention apart."""

    total: int = 0
    attention: int = 0
    by_op: dict[str, int] = field(default_factory=dict)
    attention_blocks: int = 0
    uncounted: list[str] = field(default_factory=list)  # counted ops whose shapes are unknown
    nodes: list[NodeMacs] = field(default_factory=list)

    @property
    def gmac(self) -> float:
        return self.total / 1e9

    @property
    def attention_gmac(self) -> float:
        return self.attention / 1e9

    @property
    def attention_share(self) -> float:
        return self.attention / self.total if self.total else 0.0

    def to_dict(self, nodes: bool = False) -> dict:
        d = asdict(self)
        if not nodes:
            d.pop("nodes")
        d.update(gmac=self.gmac, attention_gmac=self.attention_gmac, attention_share=self.attention_share)
        return d


def _shapes(model: Any) -> dict[str, list[int]]:
    """Static shapes of every tensor; symbolic or unknown dims become 1 (the batch axis)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception:  # noqa: BLE001 - exotic graphs: fall back to what the file records
        inferred = model
    g = inferred.graph
    out: dict[str, list[int]] = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        tt = vi.type.tensor_type
        if tt.HasField("shape"):
            out[vi.name] = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in tt.shape.dim]
    for init in model.graph.initializer:
        out[init.name] = list(init.dims)
    return out


def _prod(xs: list[int]) -> int:
    p = 1
    for x in xs:
        p *= int(x)
    return p


def node_macs(node: Any, shapes: dict[str, list[int]]) -> int | None:
    """MACs of one Conv/Gemm/MatMul node per image, or None when a shape is unknown."""
    if node.op_type == "Conv":
        w, y = shapes.get(node.input[1]), shapes.get(node.output[0])
        if not w or not y or len(y) < 3:
            return None
        # y: N, Cout, *spatial; w: Cout, Cin/group, *kernel -> every output value costs Cin/group * k MACs
        return _prod(y[1:]) * _prod(w[1:])
    if node.op_type == "Gemm":
        a, y = shapes.get(node.input[0]), shapes.get(node.output[0])
        if not a or not y or len(a) != 2 or len(y) != 2:
            return None
        trans_a = next((att.i for att in node.attribute if att.name == "transA"), 0)
        k = a[0] if trans_a else a[1]
        return y[1] * k   # M (the batch) counts 1
    if node.op_type == "MatMul":
        a, b, y = shapes.get(node.input[0]), shapes.get(node.input[1]), shapes.get(node.output[0])
        if not a or not b or not y:
            return None
        k = a[-1]
        if len(y) <= 2:        # (M, K) x (K, N): M is the batch of a Linear layer
            return y[-1] * k
        return _prod(y[1:]) * k   # leading axis: the batch
    return None


def _ancestors(idx: GraphIndex, start: Any, stop: str) -> set[int]:
    """ids of nodes upstream of ``start`` (itself included) that descend from tensor ``stop``."""
    from_stop = _descendants(idx, stop)
    seen: set[int] = set()
    stack = [start]
    while stack:
        n = stack.pop()
        if id(n) in seen or id(n) not in from_stop:
            continue
        seen.add(id(n))
        for i in n.input:
            p = idx.producer.get(i)
            if p is not None:
                stack.append(p)
    return seen


def _descendants(idx: GraphIndex, tensor: str) -> set[int]:
    seen: set[int] = set()
    stack = list(idx.consumers.get(tensor, []))
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        for o in n.output:
            stack.extend(idx.consumers.get(o, []))
    return seen


def _upstream_tensors(idx: GraphIndex, node: Any) -> set[str]:
    seen_nodes: set[int] = set()
    tensors: set[str] = set()
    stack = [node]
    while stack:
        n = stack.pop()
        if id(n) in seen_nodes:
            continue
        seen_nodes.add(id(n))
        for i in n.input:
            if i and i not in idx.constants:
                tensors.add(i)
                p = idx.producer.get(i)
                if p is not None:
                    stack.append(p)
    return tensors


def _combine_node(idx: GraphIndex, last: Any, ops: frozenset[str]) -> tuple[Any, str] | None:
    """Walk down from ``last`` (through shape ops and constant scales) to the node that merges
    it with the block input: returns (that node, the block input tensor)."""
    node, tensor = last, last.output[0]
    for _ in range(16):
        consumers = idx.consumers.get(tensor, [])
        if len(consumers) != 1:
            return None
        c = consumers[0]
        others = [i for i in c.input if i and i != tensor and i not in idx.constants]
        if c.op_type in ops and len(others) == 1 and others[0] in _upstream_tensors(idx, node):
            return c, others[0]
        if c.op_type in SHAPE_OPS or (c.op_type in _SCALE_OPS and not others):
            node, tensor = c, c.output[0]
            continue
        return None
    return None


def attention_blocks(model: Any, idx: GraphIndex | None = None) -> list[set[int]]:
    """Node-id sets, one per attention block (global, SE gate, CBAM channel / spatial gate)."""
    idx = idx or GraphIndex.build(model)
    blocks: list[set[int]] = []
    for site in attention_sites(model, idx):
        matmuls = [n for n in site if n.op_type == "MatMul"]
        last = next((m for m in matmuls if not any(c.op_type == "Softmax" for c in _consumers_through_shape(idx, m))), None)
        hit = _combine_node(idx, last, frozenset({"Add"})) if last is not None else None
        if hit:
            blocks.append(_ancestors(idx, hit[0], hit[1]))
    for site in gate_sites(model, idx):
        gate = site[0]
        gate_outputs = {o for n in site if n.op_type != "Mul" for o in n.output}
        upstream = _upstream_tensors(idx, gate)
        for mul in (n for n in site if n.op_type == "Mul"):
            others = [i for i in mul.input if i and i not in gate_outputs and i not in idx.constants]
            if len(others) == 1 and others[0] in upstream:
                blocks.append(_ancestors(idx, mul, others[0]))
    return blocks


def _consumers_through_shape(idx: GraphIndex, node: Any) -> list[Any]:
    out, stack = [], [node.output[0]]
    while stack:
        for c in idx.consumers.get(stack.pop(), []):
            if c.op_type in SHAPE_OPS:
                stack.append(c.output[0])
            else:
                out.append(c)
    return out


def count_macs(model_or_path: Any) -> MacCount:
    """Count a graph (``onnx.ModelProto`` or a path; weights are not needed, only shapes)."""
    if isinstance(model_or_path, (str, os.PathLike)):
        model = load_onnx(model_or_path, load_external_data=False)
    else:
        model = model_or_path
    shapes = _shapes(model)
    idx = GraphIndex.build(model)
    blocks = attention_blocks(model, idx)
    in_attention = set().union(*blocks) if blocks else set()
    res = MacCount(attention_blocks=len(blocks))
    for n in model.graph.node:
        if n.op_type not in COUNTED_OPS:
            continue
        macs = node_macs(n, shapes)
        if macs is None:
            res.uncounted.append(n.name or n.op_type)
            continue
        att = id(n) in in_attention
        res.total += macs
        res.by_op[n.op_type] = res.by_op.get(n.op_type, 0) + macs
        if att:
            res.attention += macs
        res.nodes.append(NodeMacs(n.name, n.op_type, macs, att))
    return res


def count_full_size(attention: list[str], input_size: int = 224, num_classes: int = 1000) -> MacCount:
    """MACs of the full-size model (width 1.0) with this attention, counted from a real export.

    The export (random weights: MACs do not depend on them) goes to a temporary folder and is
    deleted; it takes ~10 s and ~2.5 GiB at 224 px, so the study caches the count.
    """
    import tempfile

    spec = ModelSpec(attention=list(attention), width=1.0, num_classes=num_classes, input_size=input_size, gamma=0.5)
    with tempfile.TemporaryDirectory(prefix="attnvgg-gmac-") as tmp:
        path = Path(tmp) / "full.onnx"
        export_onnx(spec, ExportSpec(batch_max=1, external_data="always"), path)
        return count_macs(path)
