"""Real TensorRT builds and parity on a tiny exported VGG. Needs `import tensorrt` and a CUDA GPU.

Skipped elsewhere with the reason. The model: VGG16WithAttention at width 1/16, 64x64 input,
global attention in blocks 3-5, gamma 0.5, exported with a dynamic batch. Each precision's ONNX
file is made by the product's own stage with its own settings (export; convert --precision fp16;
calibrate --flavour tensorrt, i.e. ModelOpt Q/DQ from our ranges), and each engine has its own
fixture, so a failing INT8 build cannot hide the fp32/fp16 results.
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
PROFILE = dict(batch_min=1, batch_opt=4, batch_max=8, optimization_level=1)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


@pytest.fixture(scope="module")
def fp32_onnx(tmp_path_factory):
    from attnvgg.config import ExportSpec, ModelSpec
    from attnvgg.export.onnx import export_onnx
    from attnvgg.models.build import build_model

    d = tmp_path_factory.mktemp("trt")
    spec = ModelSpec(width=1 / 16, input_size=SIZE, num_classes=10, gamma=0.5)
    path = export_onnx(spec, ExportSpec(batch_max=8), d / "tiny.onnx").path
    return build_model(spec).eval(), path, d


@pytest.fixture(scope="module")
def onnx_file(fp32_onnx, request):
    """The ONNX file of one precision, made by the product's stage."""
    _, fp32, d = fp32_onnx
    precision = request.param
    if precision == "fp32":
        return precision, fp32
    if precision == "fp16":
        from attnvgg.export.fp16 import convert_fp16

        return precision, convert_fp16(fp32, d / "tiny.fp16.onnx").output
    from attnvgg.calibration.int8 import calibrate
    from attnvgg.config import CalibrateSpec
    from tests.calibration.conftest import ArrayDataset, random_images

    r = calibrate(fp32, ArrayDataset(random_images(16, hw=SIZE)), d / "tiny.int8.onnx",
                  CalibrateSpec(batch_size=4, cache=False), progress=False, log=lambda m: None)
    return precision, r.output


@pytest.fixture(scope="module")
def engine(onnx_file, fp32_onnx):
    """One engine per precision (its own build: a failure here fails only this precision's tests)."""
    from attnvgg.config import BuildSpec
    from attnvgg.engines.build import run_build

    precision, path = onnx_file
    res = run_build([path], BuildSpec(**PROFILE), fp32_onnx[2] / f"engines-{precision}")
    res.raise_for_failures()
    (ep,) = res.plan.engines
    return precision, path, ep, res


PRECISIONS = pytest.mark.parametrize("onnx_file", ["fp32", "fp16", "int8"], indirect=True)


def _reference(model, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


@PRECISIONS
def test_engine_and_files_written(engine):
    precision, _, ep, res = engine
    (sc,) = res.sidecars
    assert ep.precision == precision
    assert ep.engine.is_file() and ep.engine.stat().st_size == sc["engine_bytes"]
    assert json.loads(ep.sidecar.read_text())["engine_sha256"] == sc["engine_sha256"]
    assert os.access(ep.trtexec_script, os.X_OK)
    assert "--saveEngine=" + ep.engine.name not in ep.trtexec_script.read_text()
    assert sc["gpu"]["name"] and sc["tensorrt_version"]
    assert res.plan.options.timing_cache.is_file()


@PRECISIONS
@pytest.mark.parametrize("runner_kind", ["polygraphy", "device-resident"])
def test_engine_parity_with_pytorch_and_onnxruntime(engine, fp32_onnx, runner_kind):
    from attnvgg.runners.tensorrt import PolygraphyEngineRunner, TensorRTRunner

    precision, path, ep, _ = engine
    min_cos, atol = {"fp32": (0.99999, 1e-3), "fp16": (0.999, None), "int8": (0.98, None)}[precision]
    cls = PolygraphyEngineRunner if runner_kind == "polygraphy" else TensorRTRunner
    rng = np.random.default_rng(0)
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with cls(ep.engine) as runner:
        for batch in (1, 5, 8):
            x = rng.standard_normal((batch, 3, SIZE, SIZE)).astype(np.float32)
            y = runner.infer({"input": x})["logits"]
            ref = _reference(fp32_onnx[0], x)
            assert y.shape == ref.shape and y.dtype == np.float32
            assert _cosine(y, ref) >= min_cos, (precision, batch, _cosine(y, ref))
            if atol is not None:
                assert np.abs(y - ref).max() <= atol
            assert _cosine(y, sess.run(None, {"input": x})[0]) >= min_cos


@pytest.mark.parametrize("onnx_file", ["fp32"], indirect=True)
def test_bind_once_then_execute_only(engine):
    import torch

    from attnvgg.runners.tensorrt import TensorRTRunner

    ep = engine[2]
    with TensorRTRunner(ep.engine) as runner:
        x = torch.randn(4, 3, SIZE, SIZE, device="cuda")
        out = runner.bind({"input": x})["logits"]
        torch.cuda.synchronize()
        first = out.clone()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record(runner.stream)
        runner.execute()
        end.record(runner.stream)
        end.synchronize()
        assert out.is_cuda and out.shape == (4, 10) and start.elapsed_time(end) > 0
        assert torch.equal(out, first)                   # same buffers, same input: same result
        assert runner.profile_shapes()["input"] == ((1, 3, SIZE, SIZE), (4, 3, SIZE, SIZE), (8, 3, SIZE, SIZE))
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=runner.stream, capture_error_mode="thread_local"):
            runner.execute()
        graph.replay()
        torch.cuda.synchronize()
        assert torch.allclose(out, first)


@pytest.mark.parametrize("onnx_file", ["fp32"], indirect=True)
def test_batch_outside_profile_refused(engine):
    from attnvgg.errors import InputError
    from attnvgg.runners.tensorrt import PolygraphyEngineRunner, TensorRTRunner

    ep = engine[2]
    for cls in (TensorRTRunner, PolygraphyEngineRunner):
        with cls(ep.engine) as runner, pytest.raises(InputError):
            runner.infer({"input": np.zeros((9, 3, SIZE, SIZE), np.float32)})


@pytest.mark.parametrize("onnx_file", ["fp32"], indirect=True)
def test_mismatched_sidecar_refused_on_load(engine, tmp_path):
    import shutil

    from attnvgg.artifacts import read_json, write_json
    from attnvgg.errors import InputError
    from attnvgg.runners.tensorrt import PolygraphyEngineRunner, TensorRTRunner

    ep = engine[2]
    copy = tmp_path / ep.engine.name
    shutil.copy(ep.engine, copy)
    sc = read_json(ep.sidecar)
    sc["tensorrt_version"] = "9.9.9"
    write_json(str(copy) + ".json", sc)
    for cls in (TensorRTRunner, PolygraphyEngineRunner):
        with pytest.raises(InputError, match="tensorrt_version"):
            cls(copy).activate()


@pytest.mark.parametrize("onnx_file", ["fp32"], indirect=True)
def test_timing_cache_reused_on_rebuild(engine):
    from attnvgg.config import BuildSpec
    from attnvgg.engines.build import run_build

    _, path, _, res = engine
    again = run_build([path], BuildSpec(**PROFILE), res.plan.out_dir)
    assert again.sidecars[0]["timing_cache"] == "reused"


def test_one_failed_engine_is_reported_and_the_others_build(fp32_onnx, tmp_path):
    """A file TensorRT cannot build (here: a workspace of 1 MiB for a 64 px VGG is fine, so use an
    unsupported op) fails alone; the good file next to it is built."""
    import onnx
    from onnx import TensorProto, helper

    from attnvgg.config import BuildSpec
    from attnvgg.engines.build import run_build
    from attnvgg.errors import StageError

    bad = tmp_path / "bad.onnx"
    g = helper.make_graph([helper.make_node("Unique", ["input"], ["logits"])], "bad",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(bad))
    res = run_build([fp32_onnx[1], bad], BuildSpec(**PROFILE), tmp_path / "engines")
    assert len(res.sidecars) == 1 and len(res.failures) == 1 and "bad" in res.failures[0]["engine"]
    assert res.plan.engines[0].engine.is_file() and not res.plan.engines[1].engine.exists()
    with pytest.raises(StageError, match="1 of 2 engine"):
        res.raise_for_failures()
