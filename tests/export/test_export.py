"""Export + simplify + validate for every attention kind, at batch 1 and 3."""

import json

import onnx
import pytest

from attnvgg.config import ExportSpec, SimplifySpec, ValidateSpec
from attnvgg.errors import CheckFailed, InputError
from attnvgg.export.graph import summarize
from attnvgg.onnxgraph import detect_precision
from attnvgg.export.onnx import export_onnx
from attnvgg.export.simplify import foldable_nodes, simplify_onnx
from attnvgg.validate.parity import run_parity
from tests.conftest import tiny_spec


@pytest.mark.parametrize("kind", ["global", "se", "cbam", "none"])
def test_export_simplify_validate(kind, tiny_exports, tmp_path):
    src = tiny_exports[kind]
    model = onnx.load(str(src))
    (inp,) = model.graph.input
    assert inp.name == "input" and [o.name for o in model.graph.output] == ["logits"]
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 32, 32]  # dynamic batch, static H/W
    sim = simplify_onnx(src, tmp_path / "model.sim.onnx", SimplifySpec())
    assert sim.path.exists()
    res = run_parity(sim.path, tiny_spec(kind), ValidateSpec(batches=[1, 3], samples=3), explicit_batches=True)
    assert res.passed, [c.reasons for c in res.cases]
    assert sorted({c.batch for c in res.cases}) == [1, 3, 8]  # asked for + the exported range's ends
    for c in res.cases:
        assert c.metrics["max_abs"] <= 1e-4 and c.metrics["top1_agreement"] == 1.0


def test_global_attention_ops_in_graph(tiny_exports):
    s = summarize(tiny_exports["global"])
    assert s.op_counts["Softmax"] == 3 and s.op_counts["MatMul"] >= 6
    assert s.precision == "fp32" and s.parameters > 0 and s.file_size > 0
    assert "Softmax" not in summarize(tiny_exports["se"]).op_counts


def test_sidecar_records_model_and_hash(tiny_exports):
    side = json.loads(tiny_exports["cbam"].with_name("model.onnx.json").read_text())
    assert side["model"]["attention"] == ["cbam"] * 3 and side["precision"] == "fp32"
    assert side["batch_range"] == [1, 8] and len(side["artifact_sha256"]) == 64


def test_dynamo_export_is_already_minimal(tiny_exports, tmp_path):
    model = onnx.load(str(tiny_exports["global"]))
    assert foldable_nodes(model) == []
    res = simplify_onnx(tiny_exports["global"], tmp_path / "s.onnx")
    assert not res.ran_onnxsim and "already minimal" in res.reason


def test_torchscript_export_is_simplified_by_onnxsim(tmp_path):
    # The legacy exporter needs the final feature map to divide 7: 224 px.
    spec = tiny_spec("global", input_size=224)
    out = export_onnx(spec, ExportSpec(exporter="torchscript", opset=17, batch_max=4), tmp_path / "ts.onnx")
    sim = simplify_onnx(out.path, tmp_path / "ts.sim.onnx", SimplifySpec(check_n=1))
    assert sim.ran_onnxsim and sim.nodes_after <= sim.nodes_before
    res = run_parity(sim.path, spec, ValidateSpec(batches=[1], samples=1))
    assert res.passed


def test_static_batch_export(tmp_path):
    out = export_onnx(tiny_spec("se"), ExportSpec(dynamic_batch=False, batch_min=2, batch_max=2), tmp_path / "s.onnx")
    dims = onnx.load(str(out.path)).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_value == 2
    res = run_parity(out.path, tiny_spec("se"), ValidateSpec(samples=2))
    assert res.passed and {c.batch for c in res.cases} == {2}
    with pytest.raises(InputError, match="static batch of 2"):
        run_parity(out.path, tiny_spec("se"), ValidateSpec(batches=[4]), explicit_batches=True)


def test_dynamic_hw_needs_declared_sizes(tmp_path):
    with pytest.raises(InputError, match="--hw-sizes"):
        export_onnx(tiny_spec("none"), ExportSpec(dynamic_hw=True), tmp_path / "d.onnx")
    assert not (tmp_path / "d.onnx").exists()


def test_dynamic_hw_refused_when_a_size_fails_parity(tmp_path):
    # AdaptiveAvgPool2d((7, 7)): the graph traced at 224 px reports success but fails at 256 px.
    with pytest.raises(CheckFailed, match="dynamic H/W export is wrong at 256px"):
        export_onnx(tiny_spec("none", input_size=224), ExportSpec(dynamic_hw=True, hw_sizes=[224, 256]), tmp_path / "d.onnx")
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob(".*tmp"))


def test_external_data_always(tmp_path):
    out = export_onnx(tiny_spec("none"), ExportSpec(external_data="always"), tmp_path / "e.onnx")
    assert (tmp_path / "e.onnx.data").exists()
    assert summarize(out.path).external_data
    res = run_parity(out.path, tiny_spec("none"), ValidateSpec(batches=[1], samples=1))
    assert res.passed


def test_detect_precision_int8_and_fp16():
    from onnx import TensorProto, helper

    def graph(nodes, inits=()):
        g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], list(inits))
        return helper.make_model(g)

    q = graph([helper.make_node("QuantizeLinear", ["x", "s"], ["q"]), helper.make_node("DequantizeLinear", ["q", "s"], ["y"])])
    assert detect_precision(q) == "int8"
    h = graph([helper.make_node("Cast", ["x"], ["h"], to=TensorProto.FLOAT16), helper.make_node("Cast", ["h"], ["y"], to=TensorProto.FLOAT)])
    assert detect_precision(h) == "fp16"
    assert detect_precision(graph([helper.make_node("Relu", ["x"], ["y"])])) == "fp32"
