"""TensorRT's documented graph rules for an explicitly quantized (Q/DQ) or FP16 ONNX file, checked on CPU.

No machine here runs TensorRT, so the rules a TensorRT build would reject (or silently run
slowly) are checked on the ONNX graph before anything is written or built. One checker, two
callers: ``attnvgg calibrate`` (tensorrt flavour: a violation is a StageError and no file is
written) and ``attnvgg build`` / ``build --dry-run`` (a violation refuses the file, naming the node).

The rules and where they come from:

* ``dq-input-type``: IDequantizeLayer takes INT8, FP8, INT4 or FP4 input only (``include/NvInfer.h``
  in TensorRT release/10.13 and 11.1); the ONNX parser has no INT32 case, which is what ONNX
  Runtime's ``QuantizeBias=True`` writes for every Conv/Gemm bias (NVIDIA/TensorRT#4542, #3360,
  onnx/onnx-tensorrt#850). The same holds for QuantizeLinear's output type.
* ``zero-point``: TensorRT quantization is symmetric: a zero point must be absent or all zeros, of
  the quantized type (int8, not uint8).
* ``conv-qdq-relu``: a Q/DQ pair between a Conv/Gemm (and its constant bias Add) and the ReLU
  directly after it splits TensorRT's Conv+ReLU fusion (explicit-quantization guide, Q/DQ
  placement): quantize after the ReLU.
* ``quantized-output``: a graph output produced by QuantizeLinear/DequantizeLinear (or of an
  integer type): the logits leave the engine in float.
* ``fp32-base``: with an fp16 base asked for, a Conv/ConvTranspose/Gemm/MatMul that computes in
  float32 (in a strongly typed network it keeps its ONNX type and runs fp32/TF32).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from attnvgg.calibration.graph import GraphIndex

if TYPE_CHECKING:
    import onnx

#: ONNX TensorProto element types TensorRT's Q/DQ layers take as quantized data.
#: INT8 = 3, FLOAT8E4M3FN = 17, INT4 = 22, FLOAT4E2M1 = 23.
TRT_QUANT_TYPES = {3: "int8", 17: "float8e4m3fn", 22: "int4", 23: "float4e2m1"}
_TYPE_NAMES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 10: "float16",
               11: "double", 16: "bfloat16", 17: "float8e4m3fn", 18: "float8e4m3fnuz", 19: "float8e5m2",
               20: "float8e5m2fnuz", 21: "uint4", 22: "int4", 23: "float4e2m1"}
_COMPUTE_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
_LINEAR_OPS = frozenset({"Conv", "Gemm", "ConvTranspose", "MatMul"})
RULES = ("dq-input-type", "zero-point", "conv-qdq-relu", "quantized-output", "fp32-base")


@dataclass(frozen=True)
class Violation:
    rule: str           # one of RULES
    node: str           # the node (or graph output) that breaks it
    message: str        # one line: what is wrong, naming node and tensor

    def __str__(self) -> str:
        return self.message


def _type_name(t: int | None) -> str:
    return _TYPE_NAMES.get(t or 0, f"type {t}") if t else "unknown type"


def _node_label(n: "onnx.NodeProto") -> str:
    return f"{n.op_type} {n.name or n.output[0]}"


def _zero_point_values(idx: GraphIndex, tensor: str) -> Any:
    """The zero-point array if it is a (loaded) initializer or Constant, else None."""
    from onnx import numpy_helper

    for init in idx.model.graph.initializer:
        if init.name == tensor:
            if init.data_location == 1:  # EXTERNAL: not loaded; its type was still checked
                return None
            return numpy_helper.to_array(init)
    p = idx.producer.get(tensor)
    if p is not None and p.op_type == "Constant":
        for a in p.attribute:
            if a.name == "value":
                return numpy_helper.to_array(a.t)
    return None


def _qdq_rules(idx: GraphIndex) -> list[Violation]:
    out: list[Violation] = []
    for n in idx.nodes():
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if n.op_type == "DequantizeLinear":
            q = idx.producer.get(n.input[0])
            t = _q_output_type(idx, q) if q is not None and q.op_type == "QuantizeLinear" else idx.elem_type.get(n.input[0])
            if t not in TRT_QUANT_TYPES:
                out.append(Violation("dq-input-type", n.name or n.output[0],
                                     f"{_node_label(n)} reads {_type_name(t)} tensor {n.input[0]}; TensorRT dequantizes "
                                     "only int8/fp8/int4/fp4 (an int32 bias DQ is ONNX Runtime's QuantizeBias)"))
        zp = n.input[2] if len(n.input) > 2 and n.input[2] else None
        if n.op_type == "QuantizeLinear":
            t = _q_output_type(idx, n)
            if t not in TRT_QUANT_TYPES:
                out.append(Violation("dq-input-type", n.name or n.output[0],
                                     f"{_node_label(n)} quantizes {n.input[0]} to {_type_name(t)}; TensorRT quantizes "
                                     "only to int8/fp8/int4/fp4"))
        if zp is None:
            continue
        zt = idx.elem_type.get(zp)
        if zt not in TRT_QUANT_TYPES:
            out.append(Violation("zero-point", n.name or n.output[0],
                                 f"{_node_label(n)} has a {_type_name(zt)} zero point {zp}; TensorRT needs int8 "
                                 "(symmetric) with zero point 0"))
            continue
        values = _zero_point_values(idx, zp)
        if values is not None and values.astype("float64").any():
            out.append(Violation("zero-point", n.name or n.output[0],
                                 f"{_node_label(n)} has a non-zero zero point {zp}; TensorRT quantization is "
                                 "symmetric (zero point 0)"))
    return out


def _q_output_type(idx: GraphIndex, q: "onnx.NodeProto") -> int | None:
    """QuantizeLinear's output type: the zero point's; without one, output_dtype (opset 21), else uint8."""
    zp = q.input[2] if len(q.input) > 2 and q.input[2] else None
    if zp:
        return idx.elem_type.get(zp)
    return _output_type_attr(q) or 2


def _output_type_attr(n: "onnx.NodeProto") -> int | None:
    for a in n.attribute:
        if a.name == "output_dtype" and a.i:
            return int(a.i)
    return None


def _conv_qdq_relu(idx: GraphIndex) -> list[Violation]:
    """Conv/Gemm (-> constant bias Add) -> QuantizeLinear -> DequantizeLinear -> Relu."""
    out: list[Violation] = []
    for r in idx.nodes():
        if r.op_type != "Relu" or not r.input:
            continue
        dq = idx.producer.get(r.input[0])
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        q = idx.producer.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear":
            continue
        p = idx.producer.get(q.input[0])
        if p is not None and p.op_type == "Add" and any(i in idx.constants for i in p.input):
            p = next((idx.producer.get(i) for i in p.input if i not in idx.constants and idx.producer.get(i)), None)
        if p is not None and p.op_type in _LINEAR_OPS and (p.op_type != "MatMul" or any(i in idx.constants for i in p.input)):
            out.append(Violation("conv-qdq-relu", q.name or q.output[0],
                                 f"Q/DQ pair {q.name or q.output[0]} sits between {_node_label(p)} and Relu {r.name or r.output[0]}; "
                                 "it splits TensorRT's Conv+ReLU fusion (quantize the ReLU's output instead)"))
    return out


def _quantized_outputs(idx: GraphIndex) -> list[Violation]:
    out: list[Violation] = []
    for o in idx.model.graph.output:
        p = idx.producer.get(o.name)
        t = idx.elem_type.get(o.name)
        if (p is not None and p.op_type in ("QuantizeLinear", "DequantizeLinear")) or (t is not None and t not in (1, 10, 11, 16)):
            what = f"is produced by {_node_label(p)}" if p is not None and p.op_type in ("QuantizeLinear", "DequantizeLinear") \
                else f"is {_type_name(t)}"
            out.append(Violation("quantized-output", o.name,
                                 f"graph output {o.name} {what}; the engine's outputs must be float (leave the logits "
                                 "unquantized)"))
    return out


def _fp32_base(idx: GraphIndex) -> list[Violation]:
    out: list[Violation] = []
    for n in idx.nodes():
        if n.op_type not in _COMPUTE_OPS or not n.output:
            continue
        if idx.elem_type.get(n.output[0]) == 1:
            out.append(Violation("fp32-base", n.name or n.output[0],
                                 f"{_node_label(n)} computes in float32 but an fp16 base was asked; in a strongly "
                                 "typed engine it runs fp32/TF32"))
    return out


def check_graph(model: "onnx.ModelProto", base: str | None = None, idx: GraphIndex | None = None) -> list[Violation]:
    """Every TensorRT rule ``model`` breaks (empty when it passes).

    ``base`` is the float type asked for the unquantized part ("fp16" adds the ``fp32-base`` rule;
    "fp32" or None does not).
    """
    idx = idx or GraphIndex.build(model, infer_types=True)
    found = _qdq_rules(idx) + _conv_qdq_relu(idx) + _quantized_outputs(idx)
    if base == "fp16":
        found += _fp32_base(idx)
    return found


def summary(violations: list[Violation]) -> str:
    """The first violation, and how many more, for a one-line error."""
    if not violations:
        return "no TensorRT rule broken"
    more = f" (and {len(violations) - 1} more: {', '.join(sorted({v.rule for v in violations}))})" if len(violations) > 1 else ""
    return f"{violations[0].message}{more}"


def graph_facts(model: "onnx.ModelProto", idx: GraphIndex | None = None) -> dict:
    """What the acceptance quotes about a tensorrt-flavour file: DQ input types, base type, Conv->Q/DQ->Relu pairs."""
    idx = idx or GraphIndex.build(model, infer_types=True)
    dq_types: dict[str, int] = {}
    for n in idx.nodes():
        if n.op_type == "DequantizeLinear":
            name = _type_name(idx.elem_type.get(n.input[0]))
            dq_types[name] = dq_types.get(name, 0) + 1
    compute: dict[str, int] = {}
    for n in idx.nodes():
        if n.op_type in _COMPUTE_OPS and n.output:
            name = _type_name(idx.elem_type.get(n.output[0]))
            compute[name] = compute.get(name, 0) + 1
    return {"dq_input_types": dict(sorted(dq_types.items())), "compute_types": dict(sorted(compute.items())),
            "int32_dq": dq_types.get("int32", 0), "conv_qdq_relu": len(_conv_qdq_relu(idx)),
            "quantized_outputs": len(_quantized_outputs(idx))}
