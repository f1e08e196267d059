"""FP16 variant: checker-valid, float16 weights, fp32 I/O, parity against fp32, bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from attnvgg.cli import cli
from attnvgg.config import Fp16Spec, Tolerance
from attnvgg.errors import CheckFailed, InputError
from attnvgg.export.fp16 import convert_fp16


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    """VGG16WithAttention, width 1/16, 32 px, gamma 0.5, dynamic batch (dynamo: 32 px breaks the legacy exporter)."""
    import torch

    from attnvgg.models.build import set_gamma
    from attnvgg.models.vgg import VGG16WithAttention

    torch.manual_seed(0)
    model = VGG16WithAttention(num_classes=10, attention=["global", "se", "cbam"], width=1 / 16).eval()
    set_gamma(model, 0.5)
    path = tmp_path_factory.mktemp("fp16") / "tiny.onnx"
    torch.onnx.export(model, (torch.randn(2, 3, 32, 32),), str(path), dynamo=True, external_data=False,
                      input_names=["input"], output_names=["logits"],
                      dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=64)}}, verbose=False)
    return path


def _elem(vi) -> int:
    return vi.type.tensor_type.elem_type


def test_fp16_is_valid_float16_with_fp32_io_and_passes_parity(tiny_onnx, tmp_path):
    out = tmp_path / "tiny.fp16.onnx"
    r = convert_fp16(tiny_onnx, out)
    m = onnx.load(str(out))
    onnx.checker.check_model(m, full_check=True)
    types = {i.data_type for i in m.graph.initializer if i.dims and np.prod(i.dims) > 1}
    assert onnx.TensorProto.FLOAT16 in types and onnx.TensorProto.FLOAT not in types
    assert [_elem(i) for i in m.graph.input] == [onnx.TensorProto.FLOAT]
    assert [_elem(o) for o in m.graph.output] == [onnx.TensorProto.FLOAT]
    assert r.parity["passed"] and r.parity["min_cosine"] > 0.999 and r.parity["samples"] == 4
    side = json.loads((tmp_path / "tiny.fp16.onnx.json").read_text())
    from attnvgg.artifacts import onnx_hash

    assert side["precision"] == "fp16" and side["source_sha256"] == onnx_hash(tiny_onnx)
    assert side["block_ops"] == [] and side["keep_io_types"] is True
    assert side["converter"].startswith("modelopt AutoCast") and side["fp32_nodes"] == []
    assert out.stat().st_size < tiny_onnx.stat().st_size * 0.6


def test_block_op_keeps_softmax_fp32_and_fp16_io(tiny_onnx, tmp_path):
    out = tmp_path / "b.onnx"
    convert_fp16(tiny_onnx, out, Fp16Spec(block_ops=["Softmax"], keep_io_types=False))
    m = onnx.shape_inference.infer_shapes(onnx.load(str(out)))
    types = {vi.name: _elem(vi) for vi in list(m.graph.value_info) + list(m.graph.output)}
    softmax = [n for n in m.graph.node if n.op_type == "Softmax"]
    assert softmax and all(types[n.input[0]] == onnx.TensorProto.FLOAT for n in softmax)
    assert [_elem(i) for i in m.graph.input] == [onnx.TensorProto.FLOAT16]
    assert [_elem(o) for o in m.graph.output] == [onnx.TensorProto.FLOAT16]


def test_out_of_order_converter_output_is_sorted(tiny_onnx, tmp_path, monkeypatch):
    import onnxconverter_common.float16 as f16

    real = f16.convert_float_to_float16

    def scrambled(*a, **k):
        m = real(*a, **k)
        nodes = list(m.graph.node)
        del m.graph.node[:]
        m.graph.node.extend(reversed(nodes))
        return m

    monkeypatch.setattr(f16, "convert_float_to_float16", scrambled)
    r = convert_fp16(tiny_onnx, tmp_path / "s.onnx", Fp16Spec(converter="onnxconverter-common"))
    assert any("topological" in n for n in r.notes)
    onnx.checker.check_model(onnx.load(str(tmp_path / "s.onnx")), full_check=True)


def test_failed_parity_is_check_failed_and_recorded(tiny_onnx, tmp_path):
    out = tmp_path / "f.onnx"
    with pytest.raises(CheckFailed) as err:
        convert_fp16(tiny_onnx, out, tolerance=Tolerance(atol=0.0, rtol=0.0, min_cosine=1.0, min_top1=1.0))
    assert "\n" not in str(err.value) and err.value.exit_code == 1
    side = json.loads((tmp_path / "f.onnx.json").read_text())
    assert side["parity_vs_fp32"]["passed"] is False


@pytest.mark.parametrize("case", ["missing", "bad_op", "already_fp16", "same_path", "not_onnx_suffix"])
def test_bad_inputs(tiny_onnx, tmp_path, case):
    src, out, spec = tiny_onnx, tmp_path / "o" / "x.onnx", Fp16Spec()
    if case == "missing":
        src = tmp_path / "missing.onnx"
    elif case == "bad_op":
        spec.block_ops = ["softmax"]
    elif case == "already_fp16":
        convert_fp16(tiny_onnx, tmp_path / "h.onnx")
        src = tmp_path / "h.onnx"
    elif case == "same_path":
        out = tiny_onnx
    elif case == "not_onnx_suffix":
        out = tmp_path / "o" / "x.bin"
    with pytest.raises(InputError) as err:
        convert_fp16(src, out, spec)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "o").exists()


def test_cli_convert(tiny_onnx, tmp_path):
    import shutil

    src = tmp_path / "m.onnx"
    shutil.copy(tiny_onnx, src)
    res = CliRunner().invoke(cli, ["convert", str(src), "--precision", "fp16", "--block-op", "Softmax"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "m.fp16.onnx").exists() and "blocked: Softmax" in res.output
    res = CliRunner().invoke(cli, ["convert", str(tmp_path / "nope.onnx"), "--precision", "fp16"])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "not found" in res.output


def test_onnxconverter_common_remains_selectable(tiny_onnx, tmp_path):
    out = tmp_path / "oc.onnx"
    r = convert_fp16(tiny_onnx, out, Fp16Spec(converter="onnxconverter-common"))
    side = json.loads((tmp_path / "oc.onnx.json").read_text())
    assert side["converter"].startswith("onnxconverter-common") and "TopK" in side["converter_block_list"]
    assert r.parity["passed"]


def test_autocast_keeps_out_of_range_nodes_fp32(tmp_path):
    """AutoCast's data-range fallback: a MatMul whose output exceeds its data range (512) stays fp32."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.full((4, 4), 300.0, np.float32), "w")
    w2 = numpy_helper.from_array(np.full((4, 4), 0.01, np.float32), "w2")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["h"], name="big"),
                           helper.make_node("MatMul", ["h", "w2"], ["y"], name="small")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])], [w, w2])
    src = tmp_path / "big.onnx"
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    onnx.save(m, str(src))
    r = convert_fp16(src, tmp_path / "big.fp16.onnx", Fp16Spec(check=False))
    assert "big" in r.fp32_nodes


def test_unknown_converter_refused(tiny_onnx, tmp_path):
    with pytest.raises(InputError, match="unknown fp16 converter"):
        convert_fp16(tiny_onnx, tmp_path / "x.onnx", Fp16Spec(converter="magic"))
    assert not (tmp_path / "x.onnx").exists()
