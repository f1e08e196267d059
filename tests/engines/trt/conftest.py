"""Tiny fp32 / fp16 / int8 ONNX files built with onnx.helper, for the TensorRT build tests.

Each is Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm with an input named ``input``
(batch axis dynamic unless asked otherwise) and an output ``logits``; the fp16 one is
float16-typed inside with Casts at the edges, the int8 one has explicit Q/DQ (zero point 0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest


def make_onnx(path: Path, precision: str = "fp32", batch: int | str = "batch", hw: int | str = 8,
              zp_dtype: str = "int8", zp_value: int = 0) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.2
    b = rng.standard_normal(4).astype(np.float32) * 0.1
    fw = rng.standard_normal((10, 4)).astype(np.float32) * 0.2
    fb = np.zeros(10, np.float32)
    nodes, inits = [], []
    x = "input"
    if precision == "fp16":
        w, b, fw, fb = (a.astype(np.float16) for a in (w, b, fw, fb))
        nodes.append(helper.make_node("Cast", ["input"], ["x16"], to=TensorProto.FLOAT16))
        x = "x16"
    inits += [numpy_helper.from_array(w, "conv.w"), numpy_helper.from_array(b, "conv.b"),
              numpy_helper.from_array(fw, "fc.w"), numpy_helper.from_array(fb, "fc.b")]
    conv_w = "conv.w"
    if precision == "int8":
        zp_np = np.array(zp_value, dtype=np.dtype(zp_dtype))
        inits += [numpy_helper.from_array(np.array(0.05, np.float32), "x.scale"),
                  numpy_helper.from_array(zp_np, "x.zp"),
                  numpy_helper.from_array(np.array(0.01, np.float32), "w.scale"),
                  numpy_helper.from_array(np.zeros((), np.int8), "w.zp"),
                  numpy_helper.from_array(np.clip(np.round(w / 0.01), -127, 127).astype(np.int8), "conv.w.q")]
        nodes += [helper.make_node("QuantizeLinear", ["input", "x.scale", "x.zp"], ["xq"], name="q_in"),
                  helper.make_node("DequantizeLinear", ["xq", "x.scale", "x.zp"], ["xdq"], name="dq_in"),
                  helper.make_node("DequantizeLinear", ["conv.w.q", "w.scale", "w.zp"], ["wdq"], name="dq_w")]
        x, conv_w = "xdq", "wdq"
        inits = [i for i in inits if i.name != "conv.w"]
    nodes += [helper.make_node("Conv", [x, conv_w, "conv.b"], ["c"], pads=[1, 1, 1, 1]),
              helper.make_node("Relu", ["c"], ["r"]),
              helper.make_node("GlobalAveragePool", ["r"], ["g"]),
              helper.make_node("Flatten", ["g"], ["f"]),
              helper.make_node("Gemm", ["f", "fc.w", "fc.b"], ["y"], transB=1)]
    if precision == "fp16":
        nodes.append(helper.make_node("Cast", ["y"], ["logits"], to=TensorProto.FLOAT))
    else:
        nodes.append(helper.make_node("Identity", ["y"], ["logits"]))
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, hw, hw])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def onnx_files(tmp_path: Path) -> dict[str, Path]:
    """model.onnx (fp32), model.fp16.onnx, model.int8.onnx in a temp folder."""
    return {
        "fp32": make_onnx(tmp_path / "model.onnx", "fp32"),
        "fp16": make_onnx(tmp_path / "model.fp16.onnx", "fp16"),
        "int8": make_onnx(tmp_path / "model.int8.onnx", "int8"),
    }


@pytest.fixture
def onnx_factory(tmp_path: Path) -> Callable[..., Path]:
    def make(name: str, precision: str = "fp32", **kw) -> Path:
        return make_onnx(tmp_path / name, precision, **kw)

    return make
