"""The tensorrt flavour through ModelOpt: our ranges reach the model, ORT is left as it was, bad cases refused."""

from __future__ import annotations

import json
import re

import numpy as np
import onnx
import pytest

from attnvgg.calibration import cache as calib_cache
from onnx import numpy_helper

from attnvgg.calibration import modelopt_ptq
from attnvgg.calibration.int8 import calibrate
from attnvgg.config import CalibrateSpec
from attnvgg.errors import InputError, StageError


def _spec(tmp_path, **kw) -> CalibrateSpec:
    return CalibrateSpec(**{"batch_size": 4, "cache_dir": str(tmp_path / "cache"), **kw})


def _activation_scales(model: onnx.ModelProto) -> dict[str, float]:
    inits = {i.name: i for i in model.graph.initializer}
    return {n.input[0]: float(numpy_helper.to_array(inits[n.input[1]])) for n in model.graph.node
            if n.op_type == "QuantizeLinear" and n.input[0] not in inits}


def test_calibration_cache_is_the_format_modelopt_reads(tmp_path):
    from modelopt.onnx.quantization.calib_utils import import_scales_from_calib_cache

    scales = modelopt_ptq.scales_from_ranges({"a": (-2.54, 1.0), "b/c.d": (0.0, 12.7), "z": (0.0, 0.0)})
    assert scales["a"] == pytest.approx(0.02) and scales["b/c.d"] == pytest.approx(0.1) and scales["z"] == 1.0
    path = modelopt_ptq.write_calibration_cache(scales, "minmax", tmp_path / "c.cache")
    lines = path.read_text().splitlines()
    assert lines[0] == "TRT-100000-MinMaxCalibration" and len(lines) == 4
    theirs = import_scales_from_calib_cache(str(path))
    assert theirs == {f"{k}_scale": pytest.approx(v) for k, v in scales.items()}
    assert modelopt_ptq.read_calibration_cache(path) == pytest.approx(scales)


def test_cache_refuses_a_name_with_the_separator(tmp_path):
    with pytest.raises(StageError, match="cannot be written"):
        modelopt_ptq.write_calibration_cache({"a: b": 1.0}, "minmax", tmp_path / "c.cache")


def test_exclusion_patterns_match_only_the_named_node():
    pats = modelopt_ptq.exclusion_patterns(["relu_1", "features.14/MatMul"])
    names = ["relu_1", "relu_10", "features.14/MatMul", "features_14/MatMul_1"]
    assert [n for n in names if any(re.match(p, n) for p in pats)] == ["relu_1", "features.14/MatMul"]


def test_model_scales_are_our_ranges(tiny_global, calib_data, tmp_path):
    """Every activation scale is amax/127 of attnvgg's cached range; edit the cache and the model follows."""
    out = tmp_path / "a.onnx"
    calibrate(tiny_global, calib_data, out, _spec(tmp_path), progress=False)
    side = json.loads((tmp_path / "a.onnx.json").read_text())
    entry = json.loads(next((tmp_path / "cache").iterdir()).read_text())
    ranges = {k: tuple(v) for k, v in entry["ranges"].items()}
    ours = modelopt_ptq.scales_from_ranges(ranges)
    got = _activation_scales(onnx.load(str(out)))
    assert got and len(got) == side["quantizer"]["activation_scales_from_attnvgg_ranges"]
    for t, s in got.items():
        assert s == float(np.float16(ours[t])), t            # fp16 base: scales stored as float16
    # the same model from a cache entry with doubled ranges has doubled scales: ModelOpt's own pass decided nothing
    path = next((tmp_path / "cache").iterdir())
    entry["ranges"] = {k: [2 * v[0], 2 * v[1]] for k, v in entry["ranges"].items()}
    entry["ranges_sha256"] = calib_cache.ranges_hash(entry["ranges"])   # a consistent entry, not a corrupt one
    path.write_text(json.dumps(entry))
    out2 = tmp_path / "b.onnx"
    r2 = calibrate(tiny_global, calib_data, out2, _spec(tmp_path), progress=False)
    assert r2.cache_hit
    got2 = _activation_scales(onnx.load(str(out2)))
    assert got2.keys() == got.keys()
    for t in got:
        assert got2[t] == float(np.float16(2 * ours[t])) or got2[t] == pytest.approx(2 * got[t], rel=1e-3), t


def test_check_scales_names_a_foreign_scale(tiny_global, calib_data, tmp_path):
    out = tmp_path / "a.onnx"
    calibrate(tiny_global, calib_data, out, _spec(tmp_path), progress=False)
    entry = json.loads(next((tmp_path / "cache").iterdir()).read_text())
    ours = modelopt_ptq.scales_from_ranges({k: tuple(v) for k, v in entry["ranges"].items()})
    model = onnx.load(str(out))
    assert modelopt_ptq.check_scales(model, ours)[0] == []
    q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] in ours)
    init = next(i for i in model.graph.initializer if i.name == q.input[1])
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 3, init.name))
    problems, _ = modelopt_ptq.check_scales(model, ours)
    assert len(problems) == 1 and q.input[0] in problems[0]
    missing = {k: v for k, v in ours.items() if k != q.input[0]}
    problems, _ = modelopt_ptq.check_scales(onnx.load(str(out)), missing)
    assert len(problems) == 1 and "did not calibrate" in problems[0]


def test_modelopt_leaves_onnxruntime_as_it_was(tiny_global, calib_data, tmp_path):
    """ModelOpt edits ORT's registries and calibrator methods process-wide; the stage puts them back."""
    from onnxruntime.quantization import calibrate as ort_calibrate
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    before = (dict(QDQRegistry), dict(QLinearOpsRegistry), ort_calibrate.MinMaxCalibrater.collect_data,
              ort_calibrate.CalibraterBase.__init__, ort_calibrate.create_calibrator)
    calibrate(tiny_global, calib_data, tmp_path / "a.onnx", _spec(tmp_path, cache=False), progress=False)
    after = (dict(QDQRegistry), dict(QLinearOpsRegistry), ort_calibrate.MinMaxCalibrater.collect_data,
             ort_calibrate.CalibraterBase.__init__, ort_calibrate.create_calibrator)
    assert after[0] == before[0] and after[1] == before[1]
    assert all(a is b for a, b in zip(after[2:], before[2:]))
    assert "Relu" in QDQRegistry


def test_fp32_high_precision_keeps_an_fp32_base(tiny_global, calib_data, tmp_path):
    from attnvgg.calibration.trt_rules import check_graph, graph_facts

    out = tmp_path / "a.onnx"
    calibrate(tiny_global, calib_data, out, _spec(tmp_path, high_precision="fp32"), progress=False)
    m = onnx.load(str(out))
    assert set(graph_facts(m)["compute_types"]) == {"float32"}
    assert check_graph(m, base="fp32") == []
    assert json.loads((tmp_path / "a.onnx.json").read_text())["high_precision"] == "fp32"


@pytest.mark.parametrize("kw, match", [
    ({"flavour": "cpu", "high_precision": "fp16"}, "tensorrt flavour only"),
    ({"high_precision": "bf16"}, "unknown high precision"),
    ({"per_channel": False}, "cpu flavour only"),
])
def test_bad_combinations_are_refused_before_work(tiny_global, calib_data, tmp_path, kw, match):
    out = tmp_path / "a.onnx"
    with pytest.raises(InputError, match=match) as err:
        calibrate(tiny_global, calib_data, out, _spec(tmp_path, **kw), progress=False)
    assert "\n" not in str(err.value) and not out.exists()


def test_a_rule_violation_is_a_stage_error_and_writes_nothing(tiny_global, calib_data, tmp_path, monkeypatch):
    """If ModelOpt ever wrote a graph TensorRT rejects, calibrate refuses it (here: a forced INT32 DQ)."""
    from onnx import helper

    real = modelopt_ptq.quantize

    def with_int32_dq(*a, **k):
        model, info = real(*a, **k)
        conv = next(n for n in model.graph.node if n.op_type == "Conv")
        model.graph.initializer.extend([
            numpy_helper.from_array(np.zeros((1,), np.int32), "bad_b"),
            numpy_helper.from_array(np.array(1.0, np.float16), "bad_s")])
        out = conv.output[0]
        conv.output[0] = "bad_raw"
        model.graph.node.append(helper.make_node("DequantizeLinear", ["bad_b", "bad_s"], ["bad_f"], name="bad_dq"))
        model.graph.node.append(helper.make_node("Add", ["bad_raw", "bad_f"], [out], name="bad_add"))
        return model, info

    monkeypatch.setattr(modelopt_ptq, "quantize", with_int32_dq)
    out = tmp_path / "a.onnx"
    with pytest.raises(StageError, match="TensorRT graph rule: DequantizeLinear bad_dq reads int32"):
        calibrate(tiny_global, calib_data, out, _spec(tmp_path), progress=False)
    assert not out.exists() and not (tmp_path / "a.onnx.json").exists()


def test_excluded_node_next_to_a_quantized_one_is_rewired(tiny_global, calib_data, tmp_path):
    """ModelOpt shares one Q/DQ among a tensor's consumers; an excluded residual Add must read the float tensor."""
    from attnvgg.calibration.graph import GraphIndex
    from attnvgg.calibration.policy import policy_violations
    from attnvgg.calibration.trt_rules import check_graph

    src = onnx.load(str(tiny_global))
    adds = [n.name for n in src.graph.node if n.op_type == "Add"]
    out = tmp_path / "a.onnx"
    r = calibrate(tiny_global, calib_data, out, _spec(tmp_path, exclude=adds), progress=False)
    q = onnx.load(str(out))
    idx = GraphIndex.build(q, infer_types=True)
    assert policy_violations(q, adds, idx) == []
    assert check_graph(q, base="fp16", idx=idx) == []
    side = json.loads((tmp_path / "a.onnx.json").read_text())
    assert side["exclusion"]["rewired_inputs"] >= len(adds)
    assert r.parity is None or r.parity["passed"]


def test_dq_readers_count_partly_quantized_nodes_as_candidates():
    from onnx import TensorProto, helper

    from attnvgg.calibration.mixed import _dq_readers

    nodes = [helper.make_node("QuantizeLinear", ["a", "s", "z"], ["aq"], name="q"),
             helper.make_node("DequantizeLinear", ["aq", "s", "z"], ["ad"], name="dq"),
             helper.make_node("Add", ["ad", "b"], ["c"], name="residual"),
             helper.make_node("Relu", ["b"], ["d"], name="float_relu")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in "ab"],
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in "cd"])
    assert _dq_readers(helper.make_model(g)) == [{"name": "residual", "op_type": "Add"}]


def test_source_model_is_never_rewritten(tiny_global, calib_data, tmp_path):
    """ModelOpt shape-infers its input file in place: the stage hands it a copy, never the user's file."""
    import hashlib
    import os
    import shutil

    src = tmp_path / "src.onnx"
    m = onnx.load(str(tiny_global))
    del m.graph.value_info[:]          # shape inference would add these if it wrote the file
    onnx.save(m, str(src))
    before = (hashlib.sha256(src.read_bytes()).hexdigest(), os.stat(src).st_mtime_ns)
    calibrate(src, calib_data, tmp_path / "q.onnx", _spec(tmp_path, cache=False), progress=False)
    assert (hashlib.sha256(src.read_bytes()).hexdigest(), os.stat(src).st_mtime_ns) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.onnx", "q.onnx.json", "src.onnx"]
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)


def test_modelopt_records_never_reach_a_root_handler(tiny_global, calib_data, tmp_path):
    """A root handler set up by another library (logging.basicConfig) must not print ModelOpt's
    records (on CPU machines it logs 'Failed to get GPU count: NVML Shared Library Not Found')."""
    import logging

    seen = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record)

    h = Keep(level=logging.DEBUG)
    logging.root.addHandler(h)
    try:
        with modelopt_ptq._captured_logs():
            logging.getLogger("modelopt.onnx").error("inside")
        calibrate(tiny_global, calib_data, tmp_path / "a.onnx", _spec(tmp_path, cache=False), progress=False)
        logging.getLogger("modelopt.onnx").error("after")       # outside the stage: propagation is back
    finally:
        logging.root.removeHandler(h)
    assert [r.getMessage() for r in seen if r.name.startswith("modelopt")] == ["after"]
