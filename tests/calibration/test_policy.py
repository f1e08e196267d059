"""The exclusion policy on written graphs, the quantized-node report, topological sorting."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from attnvgg.calibration.graph import SHAPE_OPS, GraphIndex
from attnvgg.onnxgraph import toposort
from attnvgg.calibration.int8 import calibrate
from attnvgg.calibration.policy import attention_sites, gate_sites, plan_exclusions, quantized_nodes
from attnvgg.config import CalibrateSpec
from attnvgg.errors import InputError, StageError


def _dq_reaches(model: onnx.ModelProto, tensor: str) -> bool:
    """Independent of the package: does ``tensor`` come from a DequantizeLinear through shape-only ops?"""
    prod = {o: n for n in model.graph.node for o in n.output}
    n = prod.get(tensor)
    while n is not None:
        if n.op_type == "DequantizeLinear":
            return True
        if n.op_type not in SHAPE_OPS:
            return False
        n = prod.get(n.input[0])
    return False


def _attention_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    inits = {i.name for i in model.graph.initializer} | {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    return [n for n in model.graph.node
            if n.op_type == "Softmax" or (n.op_type == "MatMul" and not any(i in inits for i in n.input))]


def _spec(tmp_path, **kw) -> CalibrateSpec:
    return CalibrateSpec(batch_size=4, cache_dir=str(tmp_path / "cache"), **kw)


@pytest.mark.parametrize("flavour, convs", [("tensorrt", 18), ("cpu", 22)])
def test_default_policy_keeps_attention_float_in_written_graph(tiny_global, calib_data, tmp_path, flavour, convs):
    """ModelOpt (tensorrt flavour) leaves the 4 convs with 4 channels in float (TensorRT's INT8 conv
    kernels want >= 16 or a multiple of 8 channels); ONNX Runtime (cpu flavour) quantizes all 22."""
    out = tmp_path / "q.onnx"
    r = calibrate(tiny_global, calib_data, out, _spec(tmp_path, flavour=flavour), progress=False)
    q = onnx.load(str(out))
    att = _attention_nodes(q)
    assert len([n for n in att if n.op_type == "Softmax"]) == 3
    assert len([n for n in att if n.op_type == "MatMul"]) == 6
    for n in att:
        for i in n.input:
            assert not _dq_reaches(q, i), f"{n.name} input {i} is fed by DequantizeLinear"
    kept = {e["name"] for e in r.excluded}
    assert {n.name for n in att} <= kept
    # the convolutions around attention still run quantized
    assert sum(1 for e in r.quantized if e["op_type"] == "Conv") == convs
    onnx.checker.check_model(q, full_check=True)


def test_preset_none_tensorrt_flavour_modelopt_keeps_softmax_float(tiny_global, calib_data, tmp_path):
    """With nothing excluded, ModelOpt's own placement still never quantizes the Softmax output."""
    out = tmp_path / "q.onnx"
    r = calibrate(tiny_global, calib_data, out, _spec(tmp_path, keep_float="none"), progress=False)
    q = onnx.load(str(out))
    assert r.excluded == []
    for n in q.graph.node:
        if n.op_type == "Softmax":
            assert all(c.op_type != "QuantizeLinear" for c in q.graph.node if n.output[0] in c.input)
            assert not _dq_reaches(q, n.input[0])
    assert "Softmax" not in {e["op_type"] for e in r.quantized}


def test_preset_none_quantizes_attention(tiny_global, calib_data, tmp_path):
    """ONNX Runtime's quantizer (cpu flavour) quantizes the attention path when nothing is excluded."""
    out = tmp_path / "q.onnx"
    r = calibrate(tiny_global, calib_data, out, _spec(tmp_path, keep_float="none", flavour="cpu"), progress=False)
    q = onnx.load(str(out))
    matmuls = [n for n in _attention_nodes(q) if n.op_type == "MatMul"]
    assert matmuls and all(all(_dq_reaches(q, i) for i in n.input) for n in matmuls)
    assert r.excluded == []
    assert {"MatMul", "Softmax"} <= {e["op_type"] for e in r.quantized}


def test_policy_found_by_structure_in_torchscript_export(tiny_torchscript, make_dataset, tmp_path):
    model = onnx.load(str(tiny_torchscript))
    sites = attention_sites(model)
    assert len(sites) == 1
    ops = sorted(n.op_type for n in sites[0])
    assert ops.count("MatMul") == 2 and ops.count("Softmax") == 1
    data = make_dataset(np.random.default_rng(3).standard_normal((8, 3, 16, 16)).astype(np.float32))
    out = tmp_path / "ts.int8.onnx"
    calibrate(tiny_torchscript, data, out, _spec(tmp_path), progress=False)
    q = onnx.load(str(out))
    for n in _attention_nodes(q):
        assert not any(_dq_reaches(q, i) for i in n.input), n.name


def test_gates_preset_keeps_sigmoid_and_mul_float_and_stays_accurate(tiny_mixed, calib_data, tmp_path):
    model = onnx.load(str(tiny_mixed))
    assert len(gate_sites(model)) == 3           # SE gate, CBAM channel gate, CBAM spatial gate
    out = tmp_path / "q.onnx"
    # cpu flavour: ORT folds Relu into the uint8 Q; the float copy for the gate Mul must be re-inserted
    spec = _spec(tmp_path, keep_float="attention+gates", flavour="cpu", check_samples=8)
    r = calibrate(tiny_mixed, calib_data, out, spec, progress=False)
    q = onnx.load(str(out))
    gate_names = {e["name"] for e in r.excluded if e["reason"] == "gate"}
    gates = [n for n in q.graph.node if n.name in gate_names]
    assert {n.op_type for n in gates} == {"Sigmoid", "Mul", "Unsqueeze"}
    for n in gates:
        assert not any(_dq_reaches(q, i) for i in n.input), n.name
    assert r.parity["min_cosine"] > 0.999


def test_violated_policy_is_a_stage_error_and_writes_nothing(tiny_global, calib_data, tmp_path, monkeypatch):
    # Without the rewiring, ORT's Q/DQ on the query conv output feeds the excluded Reshape -> MatMul.
    monkeypatch.setattr("attnvgg.calibration.int8.detach_from_qdq", lambda *a, **k: 0)
    out = tmp_path / "q.onnx"
    with pytest.raises(StageError, match="exclusion policy 'attention' violated: .*DequantizeLinear"):
        calibrate(tiny_global, calib_data, out, _spec(tmp_path, flavour="cpu"), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]


def test_explicit_exclude_and_unknown_name(tiny_global, calib_data, tmp_path):
    model = onnx.load(str(tiny_global))
    first_conv = next(n.name for n in model.graph.node if n.op_type == "Conv")
    out = tmp_path / "q.onnx"
    r = calibrate(tiny_global, calib_data, out, _spec(tmp_path, exclude=[first_conv]), progress=False)
    assert first_conv not in {e["name"] for e in r.quantized}
    q = onnx.load(str(out))
    conv = next(n for n in q.graph.node if n.name == first_conv)
    assert not any(_dq_reaches(q, i) for i in conv.input)
    with pytest.raises(InputError, match="no node of that name"):
        plan_exclusions(model, "attention", ["node_convv2d"])


def _qdq_graph() -> onnx.ModelProto:
    """input -> Q -> DQ -> Conv(W via DQ) -> Relu -> MatMul(activation, float const) -> out."""
    w = numpy_helper.from_array(np.ones((2, 3, 1, 1), np.int8), "w_q")
    s = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    z = numpy_helper.from_array(np.array(0, np.int8), "z")
    m = numpy_helper.from_array(np.ones((4, 4), np.float32), "m")
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q"),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="dq"),
        helper.make_node("DequantizeLinear", ["w_q", "s", "z"], ["wd"], name="dqw"),
        helper.make_node("Conv", ["xd", "wd"], ["c"], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "m"], ["y"], name="mm"),
    ]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])], [w, s, z, m])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_quantized_nodes_definition():
    m = _qdq_graph()
    assert [n["name"] for n in quantized_nodes(m)] == ["conv"]   # relu reads a float Conv output; mm a float const


def test_toposort_restores_order_and_checker_passes():
    m = _qdq_graph()
    nodes = list(m.graph.node)
    del m.graph.node[:]
    m.graph.node.extend(reversed(nodes))
    with pytest.raises(onnx.checker.ValidationError):
        onnx.checker.check_model(m, full_check=True)
    assert toposort(m) is True
    onnx.checker.check_model(m, full_check=True)
    assert toposort(m) is False
    idx = GraphIndex.build(m)
    assert idx.producer["y"].name == "mm"


def test_scaled_dot_product_attention_is_found_with_its_scale():
    """q x k^T / sqrt(d) -> Softmax -> x v, as in transformer blocks; a Linear MatMul is not attention."""
    inits = [numpy_helper.from_array(np.array(8.0, np.float32), "sqrt_d"),
             numpy_helper.from_array(np.ones((4, 4), np.float32), "w_out"),
             numpy_helper.from_array(np.array([0, 2, 1], np.int64), "perm")]
    nodes = [
        helper.make_node("Transpose", ["k"], ["kt"], name="kt", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["s"], name="qk"),
        helper.make_node("Div", ["s", "sqrt_d"], ["s2"], name="scale"),
        helper.make_node("Softmax", ["s2"], ["p"], name="softmax", axis=-1),
        helper.make_node("MatMul", ["p", "v"], ["o"], name="pv"),
        helper.make_node("MatMul", ["o", "w_out"], ["y"], name="linear"),
    ]
    f = TensorProto.FLOAT
    g = helper.make_graph(nodes, "sdpa", [helper.make_tensor_value_info(n, f, [1, 6, 4]) for n in "qkv"],
                          [helper.make_tensor_value_info("y", f, [1, 6, 4])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    (site,) = attention_sites(m)
    assert sorted(n.name for n in site) == ["kt", "pv", "qk", "scale", "softmax"]
    assert plan_exclusions(m, "none").names == []


def test_unnamed_nodes_get_names_and_the_policy_still_holds(tiny_torchscript, make_dataset, tmp_path):
    model = onnx.load(str(tiny_torchscript))
    for n in model.graph.node:
        n.name = ""
    src = tmp_path / "unnamed.onnx"
    onnx.save(model, str(src))
    data = make_dataset(np.random.default_rng(3).standard_normal((8, 3, 16, 16)).astype(np.float32))
    out = tmp_path / "q.onnx"
    r = calibrate(src, data, out, _spec(tmp_path), progress=False)
    q = onnx.load(str(out))
    att = _attention_nodes(q)
    assert len(att) == 3 and all(n.name.startswith("attnvgg_node_") for n in att)
    assert not any(_dq_reaches(q, i) for n in att for i in n.input)
    assert {e["name"] for e in r.excluded} >= {n.name for n in att}
