"""The calibrate stage: flavours, methods, sidecar, bounded streaming, bad inputs."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import attnvgg.calibration.int8 as int8
from attnvgg.calibration.int8 import calibrate
from attnvgg.config import CalibrateSpec
from attnvgg.errors import InputError


def _spec(tmp_path, **kw) -> CalibrateSpec:
    return CalibrateSpec(**{"batch_size": 4, "cache_dir": str(tmp_path / "cache"), **kw})


def _zero_points(model: onnx.ModelProto) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(activation zero points, weight/bias zero points) read from the written DequantizeLinear nodes.

    A DQ is a weight's when its data is an initializer or the output of a QuantizeLinear of one.
    """
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    q_of = {n.output[0]: n for n in model.graph.node if n.op_type == "QuantizeLinear"}
    act, wts = {}, {}
    for n in model.graph.node:
        if n.op_type == "DequantizeLinear" and len(n.input) == 3:
            zp = inits[n.input[2]]
            q = q_of.get(n.input[0])
            is_weight = n.input[0] in inits or (q is not None and q.input[0] in inits)
            (wts if is_weight else act)[n.input[0]] = zp
    return act, wts


def test_tensorrt_flavour_is_int8_symmetric_zero_point_zero(tiny_global, calib_data, tmp_path):
    """ModelOpt's placement: int8 everywhere, zero point 0, no INT32 bias DQ, per-channel weights, fp16 base."""
    from attnvgg.calibration.trt_rules import check_graph, graph_facts

    out = tmp_path / "q.onnx"
    calibrate(tiny_global, calib_data, out, _spec(tmp_path), progress=False)
    q = onnx.load(str(out))
    act, wts = _zero_points(q)
    assert act and wts
    assert {z.dtype for z in act.values()} == {np.dtype(np.int8)}
    assert {z.dtype for z in wts.values()} == {np.dtype(np.int8)}       # no int32 bias
    assert all(not z.any() for z in list(act.values()) + list(wts.values()))
    # per-channel weight scales: a quantized conv weight carries one scale per output channel
    inits = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    qw = [n for n in q.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "features.18.weight"]
    assert qw and inits[qw[0].input[1]].shape == (inits["features.18.weight"].shape[0],)
    assert check_graph(q, base="fp16") == []
    facts = graph_facts(q)
    assert facts["int32_dq"] == 0 and set(facts["compute_types"]) == {"float16"}
    assert q.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT   # fp32 logits kept


def test_cpu_flavour_is_uint8_asymmetric_activations_int8_weights(tiny_global, calib_data, tmp_path):
    out = tmp_path / "q.onnx"
    calibrate(tiny_global, calib_data, out, _spec(tmp_path, flavour="cpu"), progress=False)
    act, wts = _zero_points(onnx.load(str(out)))
    assert {z.dtype for z in act.values()} == {np.dtype(np.uint8)}
    assert any(z.any() for z in act.values())                 # asymmetric: some zero points are not 0
    assert np.dtype(np.int8) in {z.dtype for z in wts.values()}
    assert all(not z.any() for z in wts.values())             # weights stay symmetric


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_histogram_methods_run_and_record_sidecar(tiny_global, calib_data, tmp_path, method):
    out = tmp_path / f"{method}.onnx"
    r = calibrate(tiny_global, calib_data, out, _spec(tmp_path, method=method, check_samples=8), progress=False)
    side = json.loads((tmp_path / f"{method}.onnx.json").read_text())
    assert side["method"] == method and side["precision"] == "int8"
    assert r.parity["min_cosine"] > 0.98          # the int8 tolerance


def test_sidecar_records_what_was_done(tiny_global, calib_data, tmp_path):
    from attnvgg.artifacts import onnx_hash

    out = tmp_path / "q.int8.onnx"
    r = calibrate(tiny_global, calib_data, out, _spec(tmp_path), progress=False)
    side = json.loads((tmp_path / "q.int8.onnx.json").read_text())
    assert side["precision"] == "int8" and side["flavour"] == "tensorrt" and side["method"] == "minmax"
    assert side["source_sha256"] == onnx_hash(tiny_global)
    assert side["data_hash"] == calib_data.content_hash()
    assert side["images"] == 12 and side["batch_size"] == 4
    assert {n["op_type"] for n in side["exclusion"]["nodes"]} == {"MatMul", "Softmax", "Transpose", "Reshape"}
    # ModelOpt leaves convs with fewer than 16 channels (not a multiple of 8) in float: 18 of the tiny model's 22
    assert side["quantized_nodes"] == r.quantized and side["quantized_by_op"]["Conv"] == 18
    assert side["high_precision"] == "fp16" and side["tensorrt_rules"]["passed"] is True
    assert side["tensorrt_rules"]["int32_dq"] == 0
    assert side["quantizer"]["quantizer"].startswith("nvidia-modelopt")
    assert side["quantizer"]["activation_scales_from_attnvgg_ranges"] > 0
    assert side["calibration_s"] > 0 and side["cache"]["hit"] is False
    assert side["artifact_sha256"] == onnx_hash(out)


def test_streams_one_batch_per_collect_and_skips_attention_maps(tiny_global, calib_data, tmp_path, monkeypatch):
    fed = []

    class Counting(int8.OneBatch):
        def __init__(self, feed):
            fed.append(next(iter(feed.values())).shape[0])
            super().__init__(feed)

    monkeypatch.setattr(int8, "OneBatch", Counting)
    calibrate(tiny_global, calib_data, tmp_path / "q.onnx", _spec(tmp_path), progress=False)
    assert fed == [4, 4, 4]
    model = onnx.load(str(tiny_global))
    wanted = int8._tensors_to_calibrate(model, int8._op_types(), set(
        int8.plan_exclusions(model, "attention").names))
    maps = {n.output[0] for n in model.graph.node if n.op_type == "Softmax"}
    maps |= {n.input[0] for n in model.graph.node if n.op_type == "Softmax"}
    assert maps and not (maps & wanted)


def test_fewer_images_than_batch_adjusts_with_a_note(tiny_global, make_dataset, rand_images, tmp_path):
    data = make_dataset(rand_images(3))
    notes = []
    r = calibrate(tiny_global, data, tmp_path / "q.onnx", _spec(tmp_path, batch_size=8), log=notes.append,
                  progress=False)
    assert r.batch_size == 3 and r.images == 3
    assert any("fewer than the batch size 8; using batch 3" in n for n in notes)


@pytest.mark.parametrize("case", ["missing_model", "empty_data", "too_many", "wrong_size", "nan_pixels",
                                  "bad_out", "corrupt_model"])
def test_bad_inputs_one_line_and_no_output(tiny_global, make_dataset, rand_images, tmp_path, case):
    random_images = rand_images
    src, data, spec = tiny_global, make_dataset(random_images(6)), _spec(tmp_path)
    out = tmp_path / "out" / "q.onnx"
    if case == "missing_model":
        src = tmp_path / "nope.onnx"
    elif case == "empty_data":
        data = make_dataset(np.zeros((0, 3, 32, 32), np.float32))
    elif case == "too_many":
        spec.num_images = 7
    elif case == "wrong_size":
        data = make_dataset(random_images(6, hw=16))
    elif case == "nan_pixels":
        x = random_images(6)
        x[2, 0, 0, 0] = np.nan
        data = make_dataset(x)
    elif case == "bad_out":
        out = tmp_path / "out" / "q.txt"
    elif case == "corrupt_model":
        src = tmp_path / "corrupt.onnx"
        src.write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(InputError) as err:
        calibrate(src, data, out, spec, progress=False)
    assert "\n" not in str(err.value)
    assert not out.exists() and not (out.parent.exists() and any(out.parent.iterdir()))
