"""A light twin of a model for ModelOpt: the classifier's hidden widths cut, restored after.

Why: ModelOpt's ONNX PTQ works on in-memory protobufs and serialises, sizes and shape-infers
the whole model dozens of times (measured on the full-size model at 224 px: 105 full
serialisations, 10 ``ByteSize`` calls, 8 shape inferences; 69.5 s of 98 s, 6.1 GiB peak).
Its cost follows the bytes, and 89 % of the full-size model's bytes are the classifier's
three Gemms (25088x4096, 4096x4096, 4096x1000), which it then leaves unquantized: at the
probe's batch 1 they are GEMV (``find_nodes_from_matmul_to_exclude``), so all ModelOpt does
to them is the fp16 cast of their weights.

So ModelOpt quantizes a twin in which each chain ``Gemm -> (Relu|Identity)* -> Gemm`` has its
hidden width cut to ``HIDDEN`` (the first Gemm's output rows, the second Gemm's input
columns; real values, the first ``HIDDEN`` of them). Every node, name, op, attribute, input
and output shape of the graph outside those hidden tensors stays as it was, so every decision
ModelOpt makes elsewhere is made on the same facts. ``restore`` then puts the full weights back
in the dtype ModelOpt chose for the twin's (autocast's fp16 rule: clamp to the fp16 range,
tiny values to its smallest subnormal) and the full widths in the shape records.

It refuses (returns None, and the caller quantizes the full model instead) when a cut Gemm
came back quantized or its weight is no longer a plain initializer: then the twin's answer
does not carry over. ``tests/calibration/test_light_twin.py`` proves the restored model equal
to ModelOpt's own output on the full graph (nodes, initializers, bytes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from attnvgg.calibration.graph import GraphIndex

#: the twin's hidden width: >= 16 and a multiple of 8, so ModelOpt's small-GEMM rule (K or N < 16)
#: never applies to a twin where it would not apply to the original
HIDDEN = 16
_PASS = frozenset({"Relu", "Identity"})


@dataclass
class Cut:
    """One shortened chain: the two Gemms, their weight/bias initializer names, the hidden tensors."""

    first: str                       # node names
    second: str
    width: int = 0                   # the hidden width before the cut
    weights: list[str] = field(default_factory=list)    # initializer names whose full values are restored
    hidden: list[str] = field(default_factory=list)     # tensors whose width was cut


def _attr(node: Any, name: str, default: int) -> int:
    for a in node.attribute:
        if a.name == name:
            return int(a.i)
    return default


def find_cuts(model: Any) -> list[Cut]:
    """Gemm -> (Relu|Identity)* -> Gemm chains whose hidden width is worth cutting (> HIDDEN)."""
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    consumers = GraphIndex.build(model).consumers
    outputs = {o.name for o in g.output}
    names = [n.name for n in g.node]
    if not all(names) or len(set(names)) != len(names):
        return []               # the cuts are found again by node name after ModelOpt: names must be unique
    firsts: set[str] = set()
    seconds: set[str] = set()
    cuts = []
    for n in g.node:      # a Gemm may end one chain and start the next (25088 -> 4096 -> 4096 -> 1000)
        if n.op_type != "Gemm" or len(n.input) < 2 or n.input[1] not in inits or n.name in firsts:
            continue
        w = inits[n.input[1]]
        if len(w.dims) != 2 or _attr(n, "transA", 0):
            continue
        hidden_dim = w.dims[0] if _attr(n, "transB", 0) else w.dims[1]
        if hidden_dim <= HIDDEN:
            continue
        bias = inits.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        if len(n.input) > 2 and n.input[2] and (bias is None or list(bias.dims) != [hidden_dim]):
            continue            # a bias we cannot cut with the rows (broadcast shape, or computed)
        chain, t = [n.output[0]], n.output[0]
        nxt = None
        while t not in outputs:
            cs = consumers.get(t, [])
            if len(cs) != 1:
                break
            c = cs[0]
            if c.op_type in _PASS and len(c.output) == 1:
                t = c.output[0]
                chain.append(t)
                continue
            nxt = c
            break
        if (nxt is None or nxt.op_type != "Gemm" or len(nxt.input) < 2 or nxt.input[0] != t
                or nxt.input[1] not in inits or _attr(nxt, "transA", 0) or t in outputs or nxt.name in seconds):
            continue
        w2 = inits[nxt.input[1]]
        if len(w2.dims) != 2 or (w2.dims[1] if _attr(nxt, "transB", 0) else w2.dims[0]) != hidden_dim:
            continue
        shared = [x for x in (n.input[1], *(n.input[2:3] if bias is not None else ()), nxt.input[1])
                  if len(consumers.get(x, [])) != 1]
        if shared:
            continue            # a weight read by another node too: cutting it would change that node
        cuts.append(Cut(n.name, nxt.name, int(hidden_dim), [n.input[1], *([n.input[2]] if bias is not None else []), nxt.input[1]], chain))
        firsts.add(n.name)
        seconds.add(nxt.name)
    return cuts


def make_twin(model: Any) -> tuple[Any, list[Cut]]:
    """A copy of ``model`` with every chain of ``find_cuts`` cut to ``HIDDEN`` wide; (twin, cuts).

    The copy shares nothing with ``model``; only the cut initializers are rewritten (their first
    ``HIDDEN`` rows / columns), and the shape records of those and of the hidden tensors follow.
    """
    import onnx
    from onnx import numpy_helper

    cuts = find_cuts(model)
    twin = onnx.ModelProto()
    twin.CopyFrom(model)
    if not cuts:
        return twin, cuts
    nodes = {n.name: n for n in twin.graph.node}
    inits = {i.name: i for i in twin.graph.initializer}
    for cut in cuts:
        first, second = nodes[cut.first], nodes[cut.second]
        w1 = numpy_helper.to_array(inits[first.input[1]])
        w1 = w1[:HIDDEN] if _attr(first, "transB", 0) else w1[:, :HIDDEN]
        inits[first.input[1]].CopyFrom(numpy_helper.from_array(w1.copy(), first.input[1]))
        if len(first.input) > 2 and first.input[2]:
            b = numpy_helper.to_array(inits[first.input[2]])[:HIDDEN]
            inits[first.input[2]].CopyFrom(numpy_helper.from_array(b.copy(), first.input[2]))
        w2 = numpy_helper.to_array(inits[second.input[1]])
        w2 = w2[:, :HIDDEN] if _attr(second, "transB", 0) else w2[:HIDDEN]
        inits[second.input[1]].CopyFrom(numpy_helper.from_array(w2.copy(), second.input[1]))
    _set_shapes(twin, {i.name: list(i.dims) for i in twin.graph.initializer if i.name in _weights(cuts)},
                {t: HIDDEN for c in cuts for t in c.hidden})
    return twin, cuts


def _weights(cuts: list[Cut]) -> set[str]:
    return {w for c in cuts for w in c.weights}


def _set_shapes(model: Any, dims: dict[str, list[int]], last: dict[str, int]) -> None:
    """Make the shape records (value_info, graph inputs) of the cut tensors say their present width."""
    for vi in [*model.graph.value_info, *model.graph.input]:
        if not vi.type.HasField("tensor_type"):
            continue
        shape = vi.type.tensor_type.shape.dim
        if vi.name in dims and len(shape) == len(dims[vi.name]):
            for d, v in zip(shape, dims[vi.name]):
                d.dim_value = v
        elif vi.name in last and shape and shape[-1].HasField("dim_value"):
            shape[-1].dim_value = last[vi.name]


def _fp16_like_autocast(x: Any) -> Any:
    """ModelOpt AutoCast's float16 initializer rule (``_convert_initializer_data``): values beyond the
    range clamped to it, non-zero values below its smallest subnormal replaced by +smallest
    subnormal, then the cast. Same result, fewer passes over 100 M+ weights: cast first, then fix
    only where the cast overflowed or came out at or below the smallest subnormal (on the bits:
    numpy's float16 arithmetic is slow)."""
    import numpy as np

    info = np.finfo(np.float16)
    with np.errstate(over="ignore"):
        y = x.astype(np.float16)
    mag = y.view(np.uint16) & np.uint16(0x7FFF)
    if (mag >= np.uint16(0x7C00)).any():          # inf / nan: the cast overflowed
        y = np.clip(x, -info.max, info.max).astype(np.float16)
        mag = y.view(np.uint16) & np.uint16(0x7FFF)
    small = np.flatnonzero(mag <= np.uint16(1))   # 0 or the smallest subnormal
    if small.size:
        xs = x.reshape(-1)[small]
        lift = small[(xs != 0.0) & (np.abs(xs) < info.smallest_subnormal)]
        y.reshape(-1)[lift] = info.smallest_subnormal
    return y


def restore(quantized_twin: Any, original: Any, cuts: list[Cut]) -> Any | None:
    """The twin's quantized graph with the original's full weights; None where the twin's answer does not carry over.

    Each cut weight must still be a plain float initializer read directly by its Gemm (no
    DequantizeLinear, no Cast: ModelOpt left the Gemm unquantized); its full value is written in
    the dtype ModelOpt gave the twin's (float32, or float16 by AutoCast's rule).
    """
    import numpy as np
    from onnx import TensorProto, numpy_helper

    if not cuts:
        return quantized_twin
    nodes = {n.name: n for n in quantized_twin.graph.node}
    inits = {i.name: i for i in quantized_twin.graph.initializer}
    full = {i.name: i for i in original.graph.initializer}
    original_nodes = {n.name: n for n in original.graph.node}
    types = {TensorProto.FLOAT: np.float32, TensorProto.FLOAT16: np.float16}
    for cut in cuts:
        for node_name in (cut.first, cut.second):
            node, before = nodes.get(node_name), original_nodes[node_name]
            if node is None or node.op_type != "Gemm":
                return None
            for k in range(1, len(before.input)):
                name = node.input[k] if k < len(node.input) else ""
                if before.input[k] not in cut.weights:
                    continue
                init = inits.get(name)
                if init is None or init.data_type not in types:
                    return None       # quantized (DQ output), cast at run time, or renamed: not a plain weight
                value = numpy_helper.to_array(full[before.input[k]])
                dtype = types[init.data_type]
                value = value.astype(np.float32) if dtype is np.float32 else _fp16_like_autocast(value)
                init.CopyFrom(numpy_helper.from_array(value, name))
    _set_shapes(quantized_twin, {name: list(full[name].dims) for name in _weights(cuts)},
                {t: c.width for c in cuts for t in _hidden_now(quantized_twin, c)})
    # shape records of tensors no node makes any more (AutoCast leaves those of the Casts it
    # removed, e.g. ``linear_1_cast_to_fp16``) would keep the twin's width: drop them
    live = {o for n in quantized_twin.graph.node for o in n.output}
    live |= {i.name for i in quantized_twin.graph.input} | {i.name for i in quantized_twin.graph.initializer}
    kept = [vi for vi in quantized_twin.graph.value_info if vi.name in live]
    del quantized_twin.graph.value_info[:]
    quantized_twin.graph.value_info.extend(kept)
    return quantized_twin


def _hidden_now(model: Any, cut: Cut) -> list[str]:
    """The hidden tensors of ``cut`` in a graph ModelOpt rewrote: the first Gemm's output and every
    tensor from it through pass-through ops and the Casts AutoCast inserted, up to the second Gemm."""
    first = next(n for n in model.graph.node if n.name == cut.first)
    passed, _ = GraphIndex.build(model).walk_down(first.output[0], _PASS | {"Cast"})
    return [first.output[0], *(o for n in passed for o in n.output)]
