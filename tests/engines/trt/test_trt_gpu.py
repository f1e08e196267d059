"""Real TensorRT builds and parity on a tiny exported VGG. Needs `import tensorrt` and a CUDA GPU.

Skipped elsewhere with the reason. The model: VGG16WithAttention at width 1/16, 64x64 input,
global attention in blocks 3-5, gamma 0.5, exported with a dynamic batch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from attnvgg.runners.tensorrt import tensorrt_available

OK, WHY = tensorrt_available()
pytestmark = [pytest.mark.tensorrt, pytest.mark.gpu,
              pytest.mark.skipif(not OK, reason=f"needs TensorRT and a CUDA GPU: {WHY}")]

SIZE = 64


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def _export(model, path: Path) -> Path:
    """Private export helper (the export stage is written elsewhere): dynamic batch, one file."""
    import torch

    x = torch.randn(2, 3, SIZE, SIZE)
    try:
        batch = torch.export.Dim("batch", min=1, max=64)
        torch.onnx.export(model, (x,), str(path), input_names=["input"], output_names=["logits"],
                          dynamic_shapes={"x": {0: batch}}, external_data=False, dynamo=True)
    except TypeError:  # older torch without these keywords
        torch.onnx.export(model, (x,), str(path), input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17)
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import onnx

    from attnvgg.config import ModelSpec
    from attnvgg.models.build import build_model

    d = tmp_path_factory.mktemp("trt")
    model = build_model(ModelSpec(width=1 / 16, input_size=SIZE, num_classes=10, gamma=0.5))
    files = {"fp32": _export(model, d / "tiny.onnx")}
    try:
        from onnxconverter_common import float16

        onnx.save(float16.convert_float_to_float16(onnx.load(str(files["fp32"])), keep_io_types=True),
                  str(d / "tiny.fp16.onnx"))
        files["fp16"] = d / "tiny.fp16.onnx"
    except ImportError:
        pass
    try:
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

        class Reader(CalibrationDataReader):
            def __init__(self):
                rng = np.random.default_rng(1)
                self.it = iter([{"input": rng.standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)} for _ in range(8)])

            def get_next(self):
                return next(self.it, None)

        quantize_static(str(files["fp32"]), str(d / "tiny.int8.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True,
                        op_types_to_quantize=["Conv", "Gemm"],
                        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
        files["int8"] = d / "tiny.int8.onnx"
    except ImportError:
        pass
    return model, files, d


@pytest.fixture(scope="module")
def built(tiny):
    from attnvgg.config import BuildSpec
    from attnvgg.engines.build import run_build

    model, files, d = tiny
    res = run_build(list(files.values()), BuildSpec(target="edge", optimization_level=1), d / "engines")
    return model, files, res


def _reference(model, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def test_engines_and_files_written(built):
    _, files, res = built
    assert len(res.sidecars) == len(files)
    for ep, sc in zip(res.plan.engines, res.sidecars):
        assert ep.engine.is_file() and ep.engine.stat().st_size == sc["engine_bytes"]
        assert json.loads(ep.sidecar.read_text())["engine_sha256"] == sc["engine_sha256"]
        assert os.access(ep.trtexec_script, os.X_OK)
        assert sc["gpu"]["name"] and sc["tensorrt_version"]
    assert res.plan.options.timing_cache.is_file()


@pytest.mark.parametrize("precision,min_cos,atol", [("fp32", 0.99999, 1e-3), ("fp16", 0.999, None), ("int8", 0.98, None)])
def test_engine_parity_with_pytorch_and_onnxruntime(built, precision, min_cos, atol):
    from attnvgg.runners.tensorrt import TensorRTRunner

    model, files, res = built
    if precision not in files:
        pytest.skip(f"could not make the {precision} ONNX here (converter/quantizer missing)")
    ep = next(e for e in res.plan.engines if e.precision == precision)
    rng = np.random.default_rng(0)
    with TensorRTRunner(ep.engine) as runner:
        for batch in (1, 5, 8):
            x = rng.standard_normal((batch, 3, SIZE, SIZE)).astype(np.float32)
            y = runner.infer({"input": x})["logits"]
            ref = _reference(model, x)
            assert y.shape == ref.shape
            assert _cosine(y, ref) >= min_cos, (precision, batch, _cosine(y, ref))
            if atol is not None:
                assert np.abs(y - ref).max() <= atol
            try:
                import onnxruntime as ort
            except ImportError:
                continue
            ort_y = ort.InferenceSession(str(files[precision]), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
            assert _cosine(y, ort_y) >= min_cos


def test_infer_device_and_stream(built):
    import torch

    from attnvgg.runners.tensorrt import TensorRTRunner

    ep = built[2].plan.engines[0]
    with TensorRTRunner(ep.engine) as runner:
        x = torch.randn(4, 3, SIZE, SIZE, device="cuda")
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record(runner.stream)
        out = runner.infer_device({"input": x})["logits"]
        end.record(runner.stream)
        end.synchronize()
        assert out.is_cuda and out.shape == (4, 10) and start.elapsed_time(end) > 0
        assert runner.profile_shapes()["input"] == ((1, 3, SIZE, SIZE), (1, 3, SIZE, SIZE), (8, 3, SIZE, SIZE))


def test_batch_outside_profile_refused(built):
    from attnvgg.runners.tensorrt import TensorRTRunner
    from attnvgg.errors import InputError

    ep = built[2].plan.engines[0]
    with TensorRTRunner(ep.engine) as runner, pytest.raises(InputError, match="outside the engine's profile"):
        runner.infer({"input": np.zeros((9, 3, SIZE, SIZE), np.float32)})


def test_mismatched_sidecar_refused_on_load(built, tmp_path):
    import shutil

    from attnvgg.artifacts import read_json, write_json
    from attnvgg.runners.tensorrt import TensorRTRunner
    from attnvgg.errors import InputError

    ep = built[2].plan.engines[0]
    engine = tmp_path / ep.engine.name
    shutil.copy(ep.engine, engine)
    sc = read_json(ep.sidecar)
    sc["tensorrt_version"] = "9.9.9"
    write_json(str(engine) + ".json", sc)
    with pytest.raises(InputError, match="tensorrt_version"):
        TensorRTRunner(engine).activate()


def test_timing_cache_reused_on_rebuild(tiny, built):
    from attnvgg.config import BuildSpec
    from attnvgg.engines.build import run_build

    _, files, res = built
    again = run_build([files["fp32"]], BuildSpec(target="edge", optimization_level=1), res.plan.out_dir)
    assert again.sidecars[0]["timing_cache"] == "reused"
