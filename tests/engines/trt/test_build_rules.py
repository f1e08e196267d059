"""`attnvgg build` and `build --dry-run` refuse a graph that breaks a TensorRT rule, naming the node.

The same checker (``calibration.trt_rules``) runs in calibrate; the graphs are hand-built
(tests/trt_graphs.py), one per rule, plus the file ONNX Runtime's quantizer writes with its
default QuantizeBias=True (INT32 bias DQ) and the good tensorrt-flavour file calibrate writes.
"""

from __future__ import annotations

import onnx
import pytest
from click.testing import CliRunner

from attnvgg.cli import cli
from tests.trt_graphs import BAD


def _int8_sidecar(path, high_precision: str) -> None:
    from attnvgg import sidecar

    sidecar.write(path, "int8", {"flavour": "tensorrt", "method": "minmax", "exclusion": {},
                                 "high_precision": high_precision})


def _build(*args: str):
    return CliRunner().invoke(cli, ["build", *args])


@pytest.mark.parametrize("rule", sorted(BAD))
@pytest.mark.parametrize("dry", [True, False])
def test_each_rule_refused_with_the_node_named(rule, dry, tmp_path):
    make, node = BAD[rule]
    p = tmp_path / "bad.int8.onnx"
    onnx.save(make(batch="batch") if rule != "fp32-base" else make(), str(p))
    if rule == "fp32-base":   # only a file whose sidecar asked for an fp16 base breaks this rule
        _int8_sidecar(p, "fp16")
    out = tmp_path / "engines"
    res = _build(str(p), "--out", str(out), *(["--dry-run"] if dry else []))
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert f"{rule} {node}" in lines[0]
    assert not out.exists()


def test_fp32_base_is_fine_when_fp32_was_asked(tmp_path):
    make, _ = BAD["fp32-base"]
    p = tmp_path / "ok.int8.onnx"
    onnx.save(make(), str(p))
    _int8_sidecar(p, "fp32")
    res = _build(str(p), "--out", str(tmp_path / "e"), "--dry-run")
    assert res.exit_code == 0, res.output


def test_ort_quantizer_default_file_is_refused(tmp_path):
    """What ONNX Runtime's quantize_static writes by default (QuantizeBias=True): INT32 bias DQs."""
    import numpy as np
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from tests.calibration.conftest import export_torchscript_attention
    from attnvgg.calibration.reader import OneBatch

    src = export_torchscript_attention(tmp_path / "m.onnx")
    q = tmp_path / "m.int8.onnx"
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    quantize_static(str(src), str(q), OneBatch({"input": x}), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
    res = _build(str(q), "--out", str(tmp_path / "e"), "--dry-run")
    assert res.exit_code == 2
    assert "dq-input-type" in res.stderr and "int32" in res.stderr


def test_calibrated_tensorrt_flavour_passes_the_build_check(tmp_path):
    from attnvgg.calibration.int8 import calibrate
    from attnvgg.config import CalibrateSpec
    from tests.calibration.conftest import ArrayDataset, export_torchscript_attention, random_images

    src = export_torchscript_attention(tmp_path / "m.onnx")
    out = tmp_path / "m.int8.onnx"
    calibrate(src, ArrayDataset(random_images(8, hw=16)), out,
              CalibrateSpec(batch_size=4, cache=False), progress=False, log=lambda m: None)
    res = _build(str(out), "--out", str(tmp_path / "e"), "--dry-run")
    assert res.exit_code == 0, res.output
    assert "precision: int8" in res.stdout
