"""The TensorRT graph-rule checker: one hand-built bad graph per refusal, and a good graph that passes."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from attnvgg.calibration.trt_rules import check_graph, graph_facts, summary
from tests.trt_graphs import BAD, F16, F32
from tests.trt_graphs import good_nodes as _good_nodes
from tests.trt_graphs import init as _init
from tests.trt_graphs import model as _model


def test_good_graph_passes():
    nodes, inits = _good_nodes()
    m = _model(nodes, inits)
    onnx.checker.check_model(m, full_check=True)
    assert check_graph(m, base="fp32") == []
    assert graph_facts(m)["int32_dq"] == 0


def test_int32_bias_dq_is_refused():
    nodes, inits = _good_nodes()
    inits += [_init("b_q", np.zeros((4,), np.int32)), _init("b_s", np.full((4,), 1e-3, np.float32)),
              _init("b_zp", np.zeros((4,), np.int32))]
    nodes.insert(3, helper.make_node("DequantizeLinear", ["b_q", "b_s", "b_zp"], ["b_f"], name="dq_bias", axis=0))
    nodes[4] = helper.make_node("Conv", ["xd", "w", "b_f"], ["c"], name="conv", pads=[1, 1, 1, 1])
    m = _model(nodes, inits)
    onnx.checker.check_model(m, full_check=True)
    v = check_graph(m)
    rules = {x.rule for x in v}
    assert "dq-input-type" in rules
    dq = [x for x in v if x.rule == "dq-input-type"][0]
    assert dq.node == "dq_bias" and "int32" in dq.message and "b_q" in dq.message
    assert graph_facts(m)["int32_dq"] == 1


def test_uint8_zero_point_is_refused():
    nodes, inits = _good_nodes(zp=np.uint8(128))
    m = _model(nodes, inits)
    onnx.checker.check_model(m, full_check=True)
    v = check_graph(m)
    assert any(x.rule == "zero-point" and x.node == "q_in" and "uint8" in x.message for x in v)
    # the DQ reading uint8 data is named too
    assert any(x.rule == "dq-input-type" and x.node == "dq_in" for x in v)


def test_nonzero_int8_zero_point_is_refused():
    nodes, inits = _good_nodes(zp=np.int8(3))
    m = _model(nodes, inits)
    v = check_graph(m)
    assert [x.rule for x in v if x.node == "q_in"] == ["zero-point"]
    assert "non-zero zero point zp" in [x for x in v if x.node == "q_in"][0].message


def test_qdq_between_conv_and_relu_is_refused():
    nodes, inits = _good_nodes()
    nodes[4:5] = [helper.make_node("QuantizeLinear", ["c", "s", "zp"], ["cq"], name="q_conv_out"),
                  helper.make_node("DequantizeLinear", ["cq", "s", "zp"], ["cd"], name="dq_conv_out"),
                  helper.make_node("Relu", ["cd"], ["r"], name="relu")]
    m = _model(nodes, inits)
    onnx.checker.check_model(m, full_check=True)
    v = check_graph(m)
    assert [x.rule for x in v] == ["conv-qdq-relu"]
    assert v[0].node == "q_conv_out" and "Conv conv" in v[0].message and "Relu relu" in v[0].message


def test_qdq_after_conv_bias_add_before_relu_is_refused():
    """Conv -> Add(constant bias) -> Q -> DQ -> Relu (the TorchScript-style bias split)."""
    nodes, inits = _good_nodes()
    inits.append(_init("bias4", np.zeros((1, 4, 1, 1), np.float32)))
    nodes[4:5] = [helper.make_node("Add", ["c", "bias4"], ["ca"], name="bias_add"),
                  helper.make_node("QuantizeLinear", ["ca", "s", "zp"], ["cq"], name="q_add_out"),
                  helper.make_node("DequantizeLinear", ["cq", "s", "zp"], ["cd"], name="dq_add_out"),
                  helper.make_node("Relu", ["cd"], ["r"], name="relu")]
    v = check_graph(_model(nodes, inits))
    assert [x.rule for x in v] == ["conv-qdq-relu"] and v[0].node == "q_add_out"


def test_qdq_before_relu_of_a_non_conv_is_allowed():
    """Q/DQ -> Relu after something that is not a Conv/Gemm is not the fusion rule."""
    nodes, inits = _good_nodes()
    nodes[4:5] = [helper.make_node("Sigmoid", ["c"], ["sg"], name="sig"),
                  helper.make_node("QuantizeLinear", ["sg", "s", "zp"], ["cq"], name="q_sig"),
                  helper.make_node("DequantizeLinear", ["cq", "s", "zp"], ["cd"], name="dq_sig"),
                  helper.make_node("Relu", ["cd"], ["r"], name="relu")]
    assert check_graph(_model(nodes, inits)) == []


def test_quantized_graph_output_is_refused():
    nodes, inits = _good_nodes()
    nodes[-1] = helper.make_node("Conv", ["rd", "w2", "b"], ["c2"], name="conv2")
    nodes += [helper.make_node("QuantizeLinear", ["c2", "s", "zp"], ["c2q"], name="q_logits"),
              helper.make_node("DequantizeLinear", ["c2q", "s", "zp"], ["y"], name="dq_logits")]
    m = _model(nodes, inits)
    onnx.checker.check_model(m, full_check=True)
    v = check_graph(m)
    assert [x.rule for x in v] == ["quantized-output"]
    assert v[0].node == "y" and "DequantizeLinear dq_logits" in v[0].message


def test_int8_graph_output_is_refused():
    nodes, inits = _good_nodes()
    nodes[-1] = helper.make_node("Conv", ["rd", "w2", "b"], ["c2"], name="conv2")
    nodes.append(helper.make_node("QuantizeLinear", ["c2", "s", "zp"], ["y"], name="q_logits"))
    v = check_graph(_model(nodes, inits, out_type=TensorProto.INT8))
    assert [x.rule for x in v] == ["quantized-output"] and "QuantizeLinear q_logits" in v[0].message


def test_fp32_base_when_fp16_asked_is_refused():
    nodes, inits = _good_nodes()
    m = _model(nodes, inits)
    assert check_graph(m, base="fp32") == []
    v = check_graph(m, base="fp16")
    assert {x.rule for x in v} == {"fp32-base"}
    assert {x.node for x in v} == {"conv", "conv2"}
    assert "float32" in v[0].message


def test_fp16_base_passes_the_base_rule():
    nodes, inits = _good_nodes(dtype=np.float16)
    nodes.insert(0, helper.make_node("Cast", ["x"], ["x16"], name="cast_in", to=F16))
    nodes[1] = helper.make_node("QuantizeLinear", ["x16", "s", "zp"], ["xq"], name="q_in")
    nodes[-1] = helper.make_node("Conv", ["rd", "w2", "b"], ["y16"], name="conv2")
    nodes.append(helper.make_node("Cast", ["y16"], ["y"], name="cast_out", to=F32))
    m = _model(nodes, inits)
    onnx.checker.check_model(m, full_check=True)
    assert check_graph(m, base="fp16") == []
    assert graph_facts(m)["compute_types"] == {"float16": 2}


def test_summary_names_first_and_counts_the_rest():
    nodes, inits = _good_nodes(zp=np.int8(1))
    v = check_graph(_model(nodes, inits), base="fp16")
    line = summary(v)
    assert line.startswith(v[0].message) and f"and {len(v) - 1} more" in line
    assert "\n" not in line


@pytest.mark.parametrize("rule", sorted(BAD))
def test_every_rule_has_a_bad_graph_refused(rule):
    from attnvgg.calibration import trt_rules

    assert set(BAD) == set(trt_rules.RULES)
    build, node = BAD[rule]
    v = check_graph(build(), base="fp16" if rule == "fp32-base" else None)
    assert rule in {x.rule for x in v} and node in {x.node for x in v if x.rule == rule}
