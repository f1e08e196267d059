"""Layer groups: the units the mixed-precision search keeps in float or quantizes, as TensorRT fuses them.

Toggling single ONNX nodes would measure boundaries TensorRT never builds (a Conv in INT8 whose
ReLU runs in float), so nodes are grouped the way TensorRT fuses them:

* ``conv``: Conv (+ bias Add) + ReLU (+ MaxPool when it is the ReLU's only consumer);
* ``fc``: Gemm, or MatMul with a constant weight (+ bias Add), + ReLU;
* ``attention``: each attention block's float path: the MatMul-Softmax-MatMul site that the
  ``attention`` preset protects, plus the block's output path (reshape, gamma scale, residual Add);
* ``gate``: each SE/CBAM gate: the whole branch from the gated tensor to the gating Mul
  (pooling, FC/1x1 convs, Sigmoid); CBAM's chained channel and spatial gates form one group;
* ``other``: the remaining ops, one group per connected run (e.g. the adaptive average pool).

Attention and gate groups are found by structure (``policy.attention_sites``/``gate_sites``), so
the dynamo and TorchScript exporters' graphs group alike. Groups never overlap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from attnvgg.calibration.graph import QDQ_OPS, SHAPE_OPS, GraphIndex
from attnvgg.calibration.policy import _SCALE_OPS, attention_sites, gate_sites

if TYPE_CHECKING:
    import onnx

GROUP_KINDS = ("conv", "fc", "attention", "gate", "other")
_ACTS = frozenset({"Relu", "Clip", "LeakyRelu"})


@dataclass
class LayerGroup:
    id: str                      # "conv:features.0", "attention:node_softmax", ...
    kind: str                    # one of GROUP_KINDS
    nodes: list[str] = field(default_factory=list)   # node names, graph order
    ops: list[str] = field(default_factory=list)     # their op types

    def to_dict(self) -> dict:
        return {"id": self.id, "kind": self.kind, "nodes": list(self.nodes), "ops": list(self.ops)}


def _weight_name(idx: GraphIndex, node: "onnx.NodeProto") -> str:
    """``features.0`` for a Conv reading ``features.0.weight``; else the node name."""
    for i in node.input[1:2]:
        if i in idx.constants and not i.startswith("onnx::"):
            return i[: -len(".weight")] if i.endswith(".weight") else i
    return node.name


def _sole_consumer(idx: GraphIndex, tensor: str) -> "onnx.NodeProto | None":
    cs = idx.consumers.get(tensor, [])
    return cs[0] if len(cs) == 1 and tensor not in idx.graph_outputs else None


def _const_bias_add(idx: GraphIndex, node: "onnx.NodeProto | None") -> bool:
    return node is not None and node.op_type == "Add" and any(i in idx.constants for i in node.input)


def _follow(idx: GraphIndex, head: "onnx.NodeProto", pool: bool) -> list:
    """head (+ constant bias Add) (+ activation) (+ MaxPool), each the sole consumer of the previous."""
    chain = [head]
    nxt = _sole_consumer(idx, head.output[0])
    if _const_bias_add(idx, nxt):
        chain.append(nxt)
        nxt = _sole_consumer(idx, nxt.output[0])
    if nxt is not None and nxt.op_type in _ACTS:
        chain.append(nxt)
        nxt = _sole_consumer(idx, nxt.output[0])
        if pool and nxt is not None and nxt.op_type == "MaxPool":
            chain.append(nxt)
    return chain


def _attention_tail(idx: GraphIndex, site: list) -> list:
    """The block's output path after attn x V: shape ops, a constant scale (gamma), the residual Add."""
    names = {id(n) for n in site}
    last = [n for n in site if n.op_type == "MatMul"
            and not any(id(c) in names for c in idx.consumers.get(n.output[0], []))]
    if len(last) != 1:
        return []
    tail, t = [], last[0].output[0]
    while True:
        c = _sole_consumer(idx, t)
        if c is None:
            return tail
        if c.op_type in SHAPE_OPS:
            tail.append(c)
        elif c.op_type in _SCALE_OPS and sum(i in idx.constants for i in c.input if i) == 1:
            tail.append(c)
        elif c.op_type == "Add" and not any(i in idx.constants for i in c.input):
            tail.append(c)       # the residual: gamma * out + x
            return tail
        else:
            return tail
        t = c.output[0]


def _ancestors_within(idx: GraphIndex, start: "onnx.NodeProto", inside: set[int]) -> list:
    out, stack, seen = [], [start], set()
    while stack:
        n = stack.pop()
        for i in n.input:
            p = idx.producer.get(i)
            if p is not None and id(p) in inside and id(p) not in seen:
                seen.add(id(p))
                out.append(p)
                stack.append(p)
    return out


def _descendants(idx: GraphIndex, tensor: str) -> set[int]:
    seen: set[int] = set()
    stack = [tensor]
    while stack:
        for c in idx.consumers.get(stack.pop(), []):
            if id(c) not in seen:
                seen.add(id(c))
                stack.extend(o for o in c.output if o)
    return seen


def _gate_branch(idx: GraphIndex, site: list) -> tuple[list, str | None]:
    """(all nodes of one gate, the gated tensor): from the gated tensor up to the gating Mul."""
    sig, muls = site[0], [n for n in site if n.op_type == "Mul"]
    gate_out = {o for n in site[:-len(muls)] for o in n.output} if muls else set()
    gated = None
    for m in muls:
        others = [i for i in m.input if i and i not in gate_out]
        if len(others) == 1:
            gated = others[0]
    if gated is None:
        return list(site), None
    inside = _descendants(idx, gated)
    return list(site) + _ancestors_within(idx, sig, inside), gated


def layer_groups(model: "onnx.ModelProto", idx: GraphIndex | None = None) -> list[LayerGroup]:
    """Every non-constant node of ``model`` in exactly one group; groups in graph order."""
    idx = idx or GraphIndex.build(model)
    order = {id(n): k for k, n in enumerate(idx.nodes())}
    owner: dict[int, int] = {}
    raw: list[tuple[str, str, list]] = []     # (kind, id, nodes)

    def claim(kind: str, gid: str, nodes: list) -> int | None:
        nodes = [n for n in nodes if id(n) not in owner and n.op_type != "Constant" and n.op_type not in QDQ_OPS]
        if not nodes:
            return None
        raw.append((kind, gid, nodes))
        for n in nodes:
            owner[id(n)] = len(raw) - 1
        return len(raw) - 1

    for site in attention_sites(model, idx):
        soft = next(n for n in site if n.op_type == "Softmax")
        claim("attention", f"attention:{soft.name}", site + _attention_tail(idx, site))
    for site in gate_sites(model, idx):
        nodes, gated = _gate_branch(idx, site)
        prev = idx.producer.get(gated) if gated else None
        k = owner.get(id(prev)) if prev is not None else None
        if k is not None and raw[k][0] == "gate":     # CBAM: the spatial gate gates the channel gate's output
            extra = [n for n in nodes if id(n) not in owner and n.op_type != "Constant"]
            raw[k][2].extend(extra)
            for n in extra:
                owner[id(n)] = k
        else:
            claim("gate", f"gate:{site[0].name}", nodes)
    for n in idx.nodes():
        if id(n) in owner:
            continue
        if n.op_type == "Conv":
            claim("conv", f"conv:{_weight_name(idx, n)}", _follow(idx, n, pool=True))
        elif n.op_type == "Gemm" or (n.op_type == "MatMul" and any(i in idx.constants for i in n.input)):
            claim("fc", f"fc:{_weight_name(idx, n)}", _follow(idx, n, pool=False))
    # the rest: one group per connected run of unclaimed nodes
    for n in idx.nodes():
        if id(n) in owner or n.op_type == "Constant" or n.op_type in QDQ_OPS:
            continue
        stack = [n]
        k = claim("other", f"other:{n.name}", [n])
        while stack:
            cur = stack.pop()
            nbrs = [idx.producer.get(i) for i in cur.input] + [c for o in cur.output for c in idx.consumers.get(o, [])]
            for m in nbrs:
                if m is not None and id(m) not in owner and m.op_type != "Constant" and m.op_type not in QDQ_OPS:
                    owner[id(m)] = k
                    raw[k][2].append(m)
                    stack.append(m)
    raw.sort(key=lambda r: min(order[id(x)] for x in r[2]))
    groups = []
    for kind, gid, nodes in raw:
        nodes = sorted(nodes, key=lambda x: order[id(x)])
        groups.append(LayerGroup(gid, kind, [x.name for x in nodes], [x.op_type for x in nodes]))
    _dedupe_ids(groups)
    return groups


def _dedupe_ids(groups: list[LayerGroup]) -> None:
    """Two convs sharing one weight (CBAM's MLP on avg and max) would share an id: number them."""
    seen: dict[str, int] = {}
    for g in groups:
        if g.id in seen:
            seen[g.id] += 1
            g.id = f"{g.id}#{seen[g.id]}"
        else:
            seen[g.id] = 1


def float_closure(idx: GraphIndex, names: list[str]) -> list[str]:
    """``names`` plus the shape-only ops feeding them: TensorRT would carry INT8 through those ops
    into a node meant to stay float (``policy.policy_violations`` checks the same chains)."""
    out, seen = list(names), set(names)
    by_name = {n.name: n for n in idx.nodes()}
    for name in names:
        n = by_name.get(name)
        if n is None:
            continue
        for i in n.input:
            p = idx.producer.get(i)
            while p is not None and p.op_type in SHAPE_OPS:
                if p.name not in seen:
                    seen.add(p.name)
                    out.append(p.name)
                p = idx.producer.get(p.input[0]) if p.input else None
    return out
