"""Parity catches a corrupted ONNX file and --locate names the layer; result files."""

import json
from xml.etree import ElementTree as ET

import numpy as np
import onnx

from attnvgg import sidecar
from onnx import numpy_helper

from attnvgg.config import Tolerance, ValidateSpec
from attnvgg.runners.metrics import compare, passes
from attnvgg.validate.parity import validate_artifact
from tests.conftest import tiny_spec


def corrupt(src, dst, name="features.12.weight", factor=1.05):
    model = onnx.load(str(src))
    (init,) = [i for i in model.graph.initializer if i.name == name]
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(factor), name))
    onnx.save(model, str(dst))
    # a stage that wrote bad weights: the same facts as the source, a sidecar for the new file
    # (a copied sidecar would be refused: its hash describes the source)
    side = sidecar.read(src)
    sidecar.write(dst, side.kind, side.facts)
    return dst


def test_corrupted_initializer_fails_and_is_located(tiny_exports, tmp_path):
    bad = corrupt(tiny_exports["global"], tmp_path / "bad.onnx")
    spec = ValidateSpec(batches=[1, 3], samples=6, locate=True)
    res = validate_artifact(bad, tiny_spec("global"), spec, tmp_path / "r.json", tmp_path / "r.xml")
    assert not res.passed
    assert res.locate["found"] and res.locate["module"] == "features.12"
    assert res.locate["onnx_op"] == "Conv" and res.locate["last_good"] == "features.11"
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["passed"] is False and data["locate"]["module"] == "features.12"
    suite = ET.parse(tmp_path / "r.xml").getroot().find("testsuite")
    assert int(suite.get("failures")) == len(res.cases) > 0
    assert suite.find("testcase/failure") is not None


def test_corruption_in_attention_is_located(tiny_exports, tmp_path):
    bad = corrupt(tiny_exports["global"], tmp_path / "bad.onnx", name="features.22.conv_value.weight", factor=1.5)
    res = validate_artifact(bad, tiny_spec("global"), ValidateSpec(batches=[3], samples=3, locate=True))
    assert not res.passed
    assert res.locate["module"] == "features.22.conv_value"


def test_passing_result_files(tiny_exports, tmp_path):
    res = validate_artifact(tiny_exports["se"], tiny_spec("se"), ValidateSpec(batches=[1]), tmp_path / "r.json",
                            tmp_path / "r.xml")
    assert res.passed and res.locate is None
    suite = ET.parse(tmp_path / "r.xml").getroot().find("testsuite")
    assert suite.get("failures") == "0" and suite.find("testcase/failure") is None


def test_metrics_values():
    ref = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    out = ref + np.array([[0.0, 0.0, 0.5], [0.0, 0.0, 3.0]])
    m = compare(ref, out, Tolerance(atol=0.1, rtol=0))
    assert m.max_abs == 3.0 and m.top1_agreement == 0.5 and not m.allclose
    ok, why = passes(m, Tolerance(atol=0.1, rtol=0, min_cosine=0.9, min_top1=1.0))
    assert not ok and any("top-1" in w for w in why)
    nan = compare(ref, ref * np.nan, Tolerance())
    assert not nan.finite and not passes(nan, Tolerance())[0]
