"""ModelOpt on the light twin: the restored model is ModelOpt's own answer on the full model."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from attnvgg.calibration import light_twin, modelopt_ptq
from attnvgg.calibration.int8 import calibrate
from attnvgg.config import CalibrateSpec


def _spec(tmp_path, **kw) -> CalibrateSpec:
    return CalibrateSpec(**{"batch_size": 4, "cache_dir": str(tmp_path / "cache"), **kw})


def _graph_facts(m: onnx.ModelProto):
    nodes = [(n.name, n.op_type, list(n.input), list(n.output),
              sorted(helper.printable_attribute(a) for a in n.attribute)) for n in m.graph.node]
    inits = sorted((i.name, i.data_type, list(i.dims), numpy_helper.to_array(i).tobytes()) for i in m.graph.initializer)
    live = {o for n in m.graph.node for o in n.output} | {i.name for i in m.graph.input} | {i.name for i in m.graph.initializer}
    vis = sorted((v.name, str(v.type)) for v in m.graph.value_info if v.name in live)   # ModelOpt leaves stale ones
    io = ([str(i) for i in m.graph.input], [str(o) for o in m.graph.output])
    return nodes, inits, vis, io


@pytest.mark.parametrize("high_precision", ["fp16", "fp32"])
def test_restored_twin_equals_modelopt_on_the_full_model(tiny_global, calib_data, tmp_path, monkeypatch, high_precision):
    light = tmp_path / "light.onnx"
    calibrate(tiny_global, calib_data, light, _spec(tmp_path, high_precision=high_precision), progress=False)
    side = json.loads((tmp_path / "light.onnx.json").read_text())
    assert side["quantizer"]["light_twin"].startswith("2 Gemm chain(s) cut to 16 wide"), side["quantizer"]

    real = modelopt_ptq.quantize
    monkeypatch.setattr(modelopt_ptq, "quantize", lambda *a, **k: real(*a, **{**k, "light": False}))
    full = tmp_path / "full.onnx"
    calibrate(tiny_global, calib_data, full, _spec(tmp_path, high_precision=high_precision), progress=False)
    assert json.loads((tmp_path / "full.onnx.json").read_text())["quantizer"]["light_twin"] == "off"

    light_model = onnx.load(str(light))
    made = {o for n in light_model.graph.node for o in n.output} | {i.name for i in light_model.graph.initializer}
    assert all(v.name in made for v in light_model.graph.value_info)     # no stale record with the twin's width
    a, b = _graph_facts(light_model), _graph_facts(onnx.load(str(full)))
    assert a[0] == b[0]                    # the same nodes, names, wiring and attributes
    assert a[1] == b[1]                    # the same initializers, byte for byte (weights, scales, zero points)
    assert a[2] == b[2] and a[3] == b[3]   # the same shape records and graph I/O


def _head(shared: bool = False, bias_shape=(32,), to_output: bool = False) -> onnx.ModelProto:
    """x (N, 8) -> Gemm 8->32 -> Relu -> Gemm 32->32 -> Relu -> Gemm 32->3 -> y."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((32, 8)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.standard_normal(bias_shape).astype(np.float32), "b1"),
             numpy_helper.from_array(rng.standard_normal((32, 32)).astype(np.float32), "w2"),
             numpy_helper.from_array(rng.standard_normal((3, 32)).astype(np.float32), "w3")]
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h1"], name="g1", transB=1),
             helper.make_node("Relu", ["h1"], ["r1"], name="relu1"),
             helper.make_node("Gemm", ["r1", "w2"], ["h2"], name="g2", transB=1),
             helper.make_node("Relu", ["h2"], ["r2"], name="relu2"),
             helper.make_node("Gemm", ["r2", "w3"], ["y"], name="g3", transB=1)]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])]
    if shared:   # w2 also read by another node: cutting it would change that node
        nodes.append(helper.make_node("Identity", ["w2"], ["w2_copy"], name="peek"))
        outputs.append(helper.make_tensor_value_info("w2_copy", TensorProto.FLOAT, [32, 32]))
    if to_output:
        outputs.append(helper.make_tensor_value_info("r1", TensorProto.FLOAT, ["N", 32]))
    g = helper.make_graph(nodes, "head", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])], outputs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)], ir_version=10)


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(["y"], {"x": x})[0]


def test_twin_cuts_each_hidden_width_and_stays_a_valid_model():
    m = _head()
    cuts = light_twin.find_cuts(m)
    assert [(c.first, c.second, c.width) for c in cuts] == [("g1", "g2", 32), ("g2", "g3", 32)]   # g3 keeps its 3 outputs
    twin, _ = light_twin.make_twin(m)
    onnx.checker.check_model(twin, full_check=True)
    dims = {i.name: list(i.dims) for i in twin.graph.initializer}
    assert dims == {"w1": [16, 8], "b1": [16], "w2": [16, 16], "w3": [3, 16]}
    assert {i.name: list(i.dims) for i in m.graph.initializer}["w1"] == [32, 8]     # the source is untouched
    assert _run(twin, np.ones((2, 8), np.float32)).shape == (2, 3)


def test_a_graph_with_unnamed_or_repeated_node_names_is_not_cut():
    m = _head()
    m.graph.node[1].name = ""
    assert light_twin.find_cuts(m) == []
    m.graph.node[1].name = "g1"
    assert light_twin.find_cuts(m) == []


@pytest.mark.parametrize("kw", [{"shared": True}, {"bias_shape": (1,)}, {"to_output": True}])
def test_chains_that_cannot_be_cut_are_left_alone(kw):
    # each case spoils the g1 -> g2 chain; g2 -> g3 is cut unless its weight w2 is shared
    assert [c.first for c in light_twin.find_cuts(_head(**kw))] == ([] if kw.get("shared") else ["g2"])


def test_restore_puts_the_full_weights_back_and_refuses_a_quantized_cut():
    m = _head()
    twin, cuts = light_twin.make_twin(m)
    restored = light_twin.restore(twin, m, cuts)
    x = np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32)
    np.testing.assert_array_equal(_run(restored, x), _run(m, x))
    # fp16 weights are restored in fp16 by AutoCast's rule (clamped to the fp16 range)
    twin16, cuts16 = light_twin.make_twin(m)
    w2 = next(i for i in twin16.graph.initializer if i.name == "w2")
    w2.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w2).astype(np.float16), "w2"))
    big = onnx.ModelProto()
    big.CopyFrom(m)
    full_w2 = next(i for i in big.graph.initializer if i.name == "w2")
    arr = numpy_helper.to_array(full_w2).copy()
    arr[0, 0] = 1e6
    full_w2.CopyFrom(numpy_helper.from_array(arr, "w2"))
    got = numpy_helper.to_array(next(i for i in light_twin.restore(twin16, big, cuts16).graph.initializer if i.name == "w2"))
    assert got.dtype == np.float16 and got.shape == (32, 32) and got[0, 0] == np.float16(65504)
    # a cut Gemm whose weight now comes from a DequantizeLinear: the twin's answer does not carry over
    twin_q, cuts_q = light_twin.make_twin(m)
    g2 = next(n for n in twin_q.graph.node if n.name == "g2")
    g2.input[1] = "w2_dequantized"
    assert light_twin.restore(twin_q, m, cuts_q) is None


def test_a_twin_that_does_not_carry_over_quantizes_the_full_model(tiny_global, calib_data, tmp_path, monkeypatch):
    monkeypatch.setattr(light_twin, "restore", lambda *a: None)
    out = tmp_path / "a.onnx"
    calibrate(tiny_global, calib_data, out, _spec(tmp_path), progress=False)
    side = json.loads((tmp_path / "a.onnx.json").read_text())
    assert side["quantizer"]["light_twin"] == "ModelOpt quantized a cut Gemm: the full model was quantized instead"
    dims = {i.name: list(i.dims) for i in onnx.load(str(out)).graph.initializer}
    src = {i.name: list(i.dims) for i in onnx.load(str(tiny_global)).graph.initializer}
    assert all(dims[k] == v for k, v in src.items() if k in dims and len(v) == 2)   # full-width weights
