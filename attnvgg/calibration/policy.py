"""Which nodes stay in float, how to make sure they do, and which nodes run quantized.

Quantizing the attention Softmax output to 8 bits wrecks the logits (cosine 0.92 vs fp32 on the
reference model), so the default policy keeps every attention path in float: the two batched
MatMuls, the Softmax, and the shape-only ops (Reshape/Transpose) between them and feeding them.
Attention is found by structure (a MatMul with two non-constant inputs that feeds a Softmax or
is fed by one), so it works for the dynamo and the TorchScript exporter alike.

Excluding nodes from ONNX Runtime's quantizer is not enough: a quantized producer (the query
conv) puts Q/DQ on its output and *every* consumer, the excluded Reshape included, then reads
the DequantizeLinear; TensorRT propagates that DQ through Reshape/Transpose into the MatMul,
which then runs in INT8. ``detach_from_qdq`` rewires protected nodes to the float tensor, and
``policy_violations`` checks the written graph, transitively through shape-only ops.

A node "runs quantized" (``quantized_nodes``) iff it is not Q/DQ itself, has at least one float
data input, and every float data input is the output of a DequantizeLinear (weights and ORT's
int32 biases included), except a float constant bias of a Conv/ConvTranspose/Gemm (input 2):
TensorRT wants the bias in float (ModelOpt's ``QuantizeBias=False``) and still runs the layer in
INT8. That is the pattern ORT fuses into integer kernels and TensorRT runs in INT8.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from attnvgg.calibration.graph import QDQ_OPS, SHAPE_OPS, GraphIndex
from attnvgg.config import KEEP_FLOAT
from attnvgg.errors import InputError

if TYPE_CHECKING:
    import onnx

#: Elementwise ops with a constant operand that may sit between q x k and the Softmax
#: (scaling by 1/sqrt(d), an additive mask).
_SCALE_OPS = frozenset({"Mul", "Div", "Add", "Sub", "Cast"})
_GATE_OPS = frozenset({"Sigmoid", "HardSigmoid"})
_ACTIVATIONS_FOLDED_INTO_Q = frozenset({"Relu", "Clip"})
_BIAS_OPS = frozenset({"Conv", "ConvTranspose", "Gemm"})


@dataclass
class Protected:
    name: str
    op_type: str
    reason: str       # "attention", "gate" or "user"


@dataclass
class ExclusionPlan:
    preset: str
    nodes: list[Protected] = field(default_factory=list)
    attention_sites: int = 0
    gate_sites: int = 0

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.nodes]

    def to_dict(self) -> dict:
        return {"preset": self.preset, "attention_sites": self.attention_sites, "gate_sites": self.gate_sites,
                "nodes": [asdict(p) for p in self.nodes]}


# ------------------------------------------------------------------------------- locating

def _is_activation_matmul(idx: GraphIndex, node: "onnx.NodeProto") -> bool:
    """A MatMul of two activations (q x k, attn x v), not a Linear layer with a weight."""
    return (node.op_type == "MatMul" and len(node.input) == 2
            and not any(i in idx.constants for i in node.input))


def _has_const_operand(idx: GraphIndex, node: "onnx.NodeProto") -> bool:
    return node.op_type == "Cast" or any(i in idx.constants for i in node.input)


def _walk_up(idx: GraphIndex, tensor: str, through: frozenset[str], scale_ok: bool) -> tuple[list, "onnx.NodeProto | None"]:
    """Follow ``tensor`` upstream through pass-through ops; return (passed nodes, first other producer)."""
    passed = []
    p = idx.producer.get(tensor)
    while p is not None:
        if p.op_type in through:
            passed.append(p)
            p = idx.producer.get(p.input[0])  # the data input; the rest are shapes/axes
            continue
        if scale_ok and p.op_type in _SCALE_OPS and _has_const_operand(idx, p):
            passed.append(p)
            data = [i for i in p.input if i and i not in idx.constants]
            if len(data) != 1:
                return passed, None
            p = idx.producer.get(data[0])
            continue
        return passed, p
    return passed, None


def _shape_chain_up(idx: GraphIndex, tensor: str) -> list:
    passed, _ = _walk_up(idx, tensor, SHAPE_OPS, scale_ok=False)
    return passed


def attention_sites(model: "onnx.ModelProto", idx: GraphIndex | None = None) -> list[list["onnx.NodeProto"]]:
    """One node list per attention block: MatMuls, Softmax, and the ops between and feeding them."""
    idx = idx or GraphIndex.build(model)
    sites = []
    for s in idx.nodes():
        if s.op_type != "Softmax":
            continue
        up_passed, m1 = _walk_up(idx, s.input[0], SHAPE_OPS, scale_ok=True)
        down_passed, ends = idx.walk_down(s.output[0], SHAPE_OPS)
        matmuls = [m for m in ([m1] if m1 is not None else []) + ends if _is_activation_matmul(idx, m)]
        if not matmuls:
            continue
        site = [s, *matmuls]
        if m1 is not None and _is_activation_matmul(idx, m1):
            site += up_passed
        if any(_is_activation_matmul(idx, e) for e in ends):
            site += [p for p in down_passed]
        for m in matmuls:
            for i in m.input:
                site += _shape_chain_up(idx, i)
        sites.append(_unique(site))
    return sites


def gate_sites(model: "onnx.ModelProto", idx: GraphIndex | None = None) -> list[list["onnx.NodeProto"]]:
    """SE/CBAM gates: a Sigmoid whose output (through shape-only ops) multiplies an activation."""
    idx = idx or GraphIndex.build(model)
    sites = []
    for g in idx.nodes():
        if g.op_type not in _GATE_OPS:
            continue
        passed, ends = idx.walk_down(g.output[0], SHAPE_OPS)
        muls = [m for m in ends if m.op_type == "Mul" and not any(i in idx.constants for i in m.input)]
        if muls:
            sites.append(_unique([g, *passed, *muls]))
    return sites


def _unique(nodes: list) -> list:
    out, seen = [], set()
    for n in nodes:
        if id(n) not in seen:
            seen.add(id(n))
            out.append(n)
    return out


def plan_exclusions(model: "onnx.ModelProto", preset: str, extra: list[str] | None = None) -> ExclusionPlan:
    """The nodes a preset keeps in float, plus explicit ``--exclude`` names (checked to exist)."""
    if preset not in KEEP_FLOAT:
        raise InputError(f"unknown --keep-float value {preset!r}", f"use one of {', '.join(KEEP_FLOAT)}")
    idx = GraphIndex.build(model)
    plan = ExclusionPlan(preset)
    seen: set[str] = set()

    def add(nodes: list, reason: str) -> None:
        for n in nodes:
            if n.name not in seen:
                seen.add(n.name)
                plan.nodes.append(Protected(n.name, n.op_type, reason))

    if preset in ("attention", "attention+gates"):
        sites = attention_sites(model, idx)
        plan.attention_sites = len(sites)
        for s in sites:
            add(s, "attention")
    if preset == "attention+gates":
        sites = gate_sites(model, idx)
        plan.gate_sites = len(sites)
        for s in sites:
            add(s, "gate")
    by_name = {n.name: n for n in idx.nodes()}
    for name in extra or []:
        if name not in by_name:
            import difflib

            close = difflib.get_close_matches(name, list(by_name), n=3)
            raise InputError(f"--exclude {name!r}: no node of that name in the model",
                             f"did you mean {', '.join(close)}" if close else
                             "list node names with: python -c \"import onnx; print([n.name for n in onnx.load('M.onnx').graph.node])\"")
        add([by_name[name]], "user")
    return plan


# -------------------------------------------------------------------- the written graph

def quantized_nodes(model: "onnx.ModelProto", idx: GraphIndex | None = None) -> list[dict]:
    """Nodes whose every float data input is a DequantizeLinear output (see module docstring)."""
    idx = idx or GraphIndex.build(model, infer_types=True)
    out = []
    for n in idx.nodes():
        if n.op_type in QDQ_OPS or n.op_type == "Constant":
            continue
        bias = n.input[2] if n.op_type in _BIAS_OPS and len(n.input) > 2 and n.input[2] in idx.constants else None
        data = [i for i in idx.data_inputs(n) if i != bias]
        if data and all(idx.is_dq_output(i) for i in data):
            out.append({"name": n.name, "op_type": n.op_type})
    return out


def policy_violations(model: "onnx.ModelProto", protected: list[str], idx: GraphIndex | None = None) -> list[str]:
    """Why protected nodes are not in float: missing, or an input traces back to a DequantizeLinear."""
    idx = idx or GraphIndex.build(model, infer_types=True)
    by_name = {n.name: n for n in idx.nodes()}
    why = []
    for name in protected:
        n = by_name.get(name)
        if n is None:
            why.append(f"{name} is missing from the quantized graph")
            continue
        for i in idx.data_inputs(n):
            dq = idx.dq_source(i)
            if dq is not None:
                why.append(f"{n.op_type} {name} reads {i} from DequantizeLinear {dq.name or dq.output[0]}")
    return why


def detach_from_qdq(model: "onnx.ModelProto", protected: list[str], source: "onnx.ModelProto") -> int:
    """Rewire protected nodes that read a DequantizeLinear output to the float tensor instead.

    For an activation Q->DQ pair the float tensor is the QuantizeLinear's input. ORT folds a
    Relu/Clip into the Q of an asymmetric (uint8) activation and deletes it; then the Q input is
    the pre-activation value, so a float copy of the activation is inserted. A DQ of a weight is
    replaced by the float initializer from ``source``. Orphaned Q/DQ nodes and initializers are
    removed. Returns the number of inputs rewired. The caller re-sorts and checks the graph.
    """
    from onnx import helper

    g = model.graph
    idx = GraphIndex.build(model)
    src_idx = GraphIndex.build(source)
    src_inits = {i.name: i for i in source.graph.initializer}
    have_inits = {i.name for i in g.initializer}
    by_name = {n.name: n for n in g.node}
    float_copies: dict[str, str] = {}
    rewired = 0
    for name in protected:
        node = by_name.get(name)
        if node is None:
            continue
        for k, t in enumerate(node.input):
            dq = idx.producer.get(t)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = idx.producer.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear":
                raw = q.input[0]
                src_prod = src_idx.producer.get(raw)
                cur_prod = idx.producer.get(raw)
                if (src_prod is not None and src_prod.op_type in _ACTIVATIONS_FOLDED_INTO_Q
                        and (cur_prod is None or cur_prod.op_type != src_prod.op_type)):
                    raw = float_copies.get(raw) or _float_activation_copy(g, src_prod, raw, src_inits, have_inits,
                                                                        float_copies, helper)
                node.input[k] = raw
                rewired += 1
            else:
                base = dq.input[0][: -len("_quantized")] if dq.input[0].endswith("_quantized") else dq.input[0]
                if base in src_inits:
                    if base not in have_inits:
                        g.initializer.append(src_inits[base])
                        have_inits.add(base)
                    node.input[k] = base
                    rewired += 1
    if rewired:
        _remove_dead_qdq(model)
    return rewired


def _float_activation_copy(g, src_node, raw: str, src_inits, have_inits, cache: dict, helper) -> str:
    out = f"{raw}_attnvgg_float"
    inputs = [raw, *src_node.input[1:]]
    for extra in src_node.input[1:]:
        if extra and extra in src_inits and extra not in have_inits:
            g.initializer.append(src_inits[extra])
            have_inits.add(extra)
    node = helper.make_node(src_node.op_type, inputs, [out], name=f"{src_node.name or src_node.op_type}_attnvgg_float")
    node.attribute.extend(src_node.attribute)
    g.node.append(node)
    cache[raw] = out
    return out


def _remove_dead_qdq(model: "onnx.ModelProto") -> None:
    g = model.graph
    outputs = {o.name for o in g.output}
    while True:
        used = {i for n in g.node for i in n.input}
        dead = [n for n in g.node if n.op_type in QDQ_OPS and not any(o in used or o in outputs for o in n.output)]
        if not dead:
            break
        for n in dead:
            g.node.remove(n)
    used = {i for n in g.node for i in n.input} | outputs
    keep = [i for i in g.initializer if i.name in used]
    if len(keep) != len(g.initializer):
        del g.initializer[:]
        g.initializer.extend(keep)
