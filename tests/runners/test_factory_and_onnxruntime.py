"""The runner factory picks by file type; the ONNX Runtime runner checks what it is fed."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from attnvgg.errors import InputError
from attnvgg.runners.factory import open_runner
from attnvgg.runners.onnxruntime import OnnxRuntimeRunner
from attnvgg.runners.tensorrt import PolygraphyEngineRunner, TensorRTRunner


def _tiny(path, batch="b"):
    """input (batch, 3, 4, 4) -> ReduceMean over H, W -> Gemm -> logits (batch, 2)."""
    w = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), "w")
    axes = numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "axes")
    nodes = [helper.make_node("ReduceMean", ["input", "axes"], ["m"], keepdims=0),
             helper.make_node("Gemm", ["m", "w"], ["logits"], transB=1)]
    g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, 4, 4])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 2])], [w, axes])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=9), str(path))
    return path


def test_factory_picks_the_runner_by_suffix(tmp_path):
    assert isinstance(open_runner(_tiny(tmp_path / "m.onnx")), OnnxRuntimeRunner)
    for suffix in (".engine", ".plan", ".trt"):
        e = tmp_path / f"m{suffix}"
        e.write_bytes(b"bytes")
        assert isinstance(open_runner(e), PolygraphyEngineRunner)      # constructed only: nothing loaded
        assert isinstance(open_runner(e, device_resident=True), TensorRTRunner)
    (tmp_path / "m.txt").write_text("x")
    with pytest.raises(InputError, match="neither an ONNX model"):
        open_runner(tmp_path / "m.txt")
    with pytest.raises(InputError, match="file not found"):
        open_runner(tmp_path / "missing.onnx")
    with pytest.raises(InputError, match="no model file"):
        open_runner(None)
    with pytest.raises(InputError, match="unknown ONNX Runtime provider"):
        open_runner(tmp_path / "m.onnx", provider="tpu")


def test_onnxruntime_runner_checks_names_and_shapes(tmp_path):
    with OnnxRuntimeRunner(_tiny(tmp_path / "m.onnx")) as r:
        (meta,) = r.input_metadata()
        assert meta.name == "input" and meta.shape == (-1, 3, 4, 4) and meta.dtype == "float32"
        out = r.infer({"input": np.ones((5, 3, 4, 4), np.float32)})
        assert out["logits"].shape == (5, 2)
        np.testing.assert_allclose(out["logits"][0], [0 + 1 + 2, 3 + 4 + 5])
        with pytest.raises(InputError, match=r"inputs \['x'\] are not in m.onnx"):
            r.infer({"x": np.ones((1, 3, 4, 4), np.float32)})
        with pytest.raises(InputError, match=r"has shape \(1, 3, 8, 8\) but m.onnx takes \(-1, 3, 4, 4\)"):
            r.infer({"input": np.ones((1, 3, 8, 8), np.float32)})
        with pytest.raises(InputError, match="has shape"):
            r.infer({"input": np.ones((3, 4, 4), np.float32)})           # rank differs
        with pytest.raises(InputError, match=r"inputs \['input'\] of m.onnx were not given"):
            r.infer({})
        got = r.infer({"input": np.ones((1, 3, 4, 4), np.float64)})     # cast to the model's dtype
        assert got["logits"].dtype == np.float32


def test_static_batch_is_enforced(tmp_path):
    with OnnxRuntimeRunner(_tiny(tmp_path / "s.onnx", batch=2)) as r:
        r.infer({"input": np.ones((2, 3, 4, 4), np.float32)})
        with pytest.raises(InputError, match="re-export with that size / a dynamic batch"):
            r.infer({"input": np.ones((3, 3, 4, 4), np.float32)})


def test_missing_or_broken_file_is_one_line(tmp_path):
    with pytest.raises(InputError, match="ONNX file not found"):
        OnnxRuntimeRunner(tmp_path / "gone.onnx").activate()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf")
    with pytest.raises(InputError, match="cannot load") as err:
        OnnxRuntimeRunner(bad).activate()
    assert "\n" not in err.value.one_line()
