"""Hand-built ONNX graphs (onnx.helper), one per TensorRT graph rule they break, plus a good one.

Shared by the checker's unit tests (tests/calibration/test_trt_rules.py) and the build
refusal tests (tests/engines/trt/test_build_rules.py).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

F32, F16 = TensorProto.FLOAT, TensorProto.FLOAT16


def init(name: str, arr: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(arr, name)


def model(nodes, inits, out_type=F32, out_name="y", in_type=F32, batch=1) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", in_type, [batch, 4, 8, 8])],
                          [helper.make_tensor_value_info(out_name, out_type, [batch, 4, 8, 8])], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    return m


def good_nodes(dtype=np.float32, zp=np.int8(0)):
    """x -> Q/DQ -> Conv (DQ int8 weight, float bias) -> Relu -> Q/DQ -> Conv -> y."""
    inits = [
        init("s", np.array(0.1, dtype)), init("zp", np.array(zp)),
        init("w_q", np.ones((4, 4, 3, 3), np.int8)), init("w_s", np.full((4,), 0.01, dtype)),
        init("w_zp", np.zeros((4,), np.int8)), init("b", np.zeros((4,), dtype)),
        init("w2_q", np.ones((4, 4, 1, 1), np.int8)),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["xq"], name="q_in"),
        helper.make_node("DequantizeLinear", ["xq", "s", "zp"], ["xd"], name="dq_in"),
        helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_zp"], ["w"], name="dq_w", axis=0),
        helper.make_node("Conv", ["xd", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("QuantizeLinear", ["r", "s", "zp"], ["rq"], name="q_r"),
        helper.make_node("DequantizeLinear", ["rq", "s", "zp"], ["rd"], name="dq_r"),
        helper.make_node("DequantizeLinear", ["w2_q", "w_s", "w_zp"], ["w2"], name="dq_w2", axis=0),
        helper.make_node("Conv", ["rd", "w2", "b"], ["y"], name="conv2"),
    ]
    return nodes, inits


def int32_bias_dq(**kw) -> onnx.ModelProto:
    nodes, inits = good_nodes()
    inits += [init("b_q", np.zeros((4,), np.int32)), init("b_s", np.full((4,), 1e-3, np.float32)),
              init("b_zp", np.zeros((4,), np.int32))]
    nodes.insert(3, helper.make_node("DequantizeLinear", ["b_q", "b_s", "b_zp"], ["b_f"], name="dq_bias", axis=0))
    nodes[4] = helper.make_node("Conv", ["xd", "w", "b_f"], ["c"], name="conv", pads=[1, 1, 1, 1])
    return model(nodes, inits, **kw)


def uint8_zero_point(**kw) -> onnx.ModelProto:
    return model(*good_nodes(zp=np.uint8(128)), **kw)


def nonzero_zero_point(**kw) -> onnx.ModelProto:
    return model(*good_nodes(zp=np.int8(3)), **kw)


def conv_qdq_relu(**kw) -> onnx.ModelProto:
    nodes, inits = good_nodes()
    nodes[4:5] = [helper.make_node("QuantizeLinear", ["c", "s", "zp"], ["cq"], name="q_conv_out"),
                  helper.make_node("DequantizeLinear", ["cq", "s", "zp"], ["cd"], name="dq_conv_out"),
                  helper.make_node("Relu", ["cd"], ["r"], name="relu")]
    return model(nodes, inits, **kw)


def quantized_output(**kw) -> onnx.ModelProto:
    nodes, inits = good_nodes()
    nodes[-1] = helper.make_node("Conv", ["rd", "w2", "b"], ["c2"], name="conv2")
    nodes += [helper.make_node("QuantizeLinear", ["c2", "s", "zp"], ["c2q"], name="q_logits"),
              helper.make_node("DequantizeLinear", ["c2q", "s", "zp"], ["y"], name="dq_logits")]
    return model(nodes, inits, **kw)


def fp32_base(**kw) -> onnx.ModelProto:
    """A good fp32-base graph: breaks the fp32-base rule only when an fp16 base was asked."""
    return model(*good_nodes(), **kw)


#: rule -> (graph builder, the node or output the refusal must name)
BAD = {
    "dq-input-type": (int32_bias_dq, "dq_bias"),
    "zero-point": (nonzero_zero_point, "q_in"),
    "conv-qdq-relu": (conv_qdq_relu, "q_conv_out"),
    "quantized-output": (quantized_output, "y"),
    "fp32-base": (fp32_base, "conv"),
}
