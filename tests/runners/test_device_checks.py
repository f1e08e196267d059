"""Runner decisions that guard GPU results, tested on CPU: no silent CPU fallback, bf16 outputs."""

from __future__ import annotations

import numpy as np
import pytest

from attnvgg.errors import MissingDependency


def test_ort_cuda_session_that_fell_back_to_cpu_is_refused(tmp_path, monkeypatch):
    """ORT appends the CPU provider and uses it when CUDA cannot start: a 'cuda' row must not be a CPU time."""
    import onnxruntime as ort

    from attnvgg.runners.onnxruntime import OnnxRuntimeRunner
    from tests.engines.trt.conftest import make_onnx

    path = make_onnx(tmp_path / "m.onnx")
    real = ort.InferenceSession

    class FellBack(real):  # a real CPU session, created as ORT does when the CUDA provider fails to load
        def __init__(self, p, so=None, providers=None, **kw):
            assert providers == ["CUDAExecutionProvider"]
            super().__init__(p, so, providers=["CPUExecutionProvider"], **kw)

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", FellBack)
    runner = OnnxRuntimeRunner(path, provider="cuda")
    with pytest.raises(MissingDependency, match="fell back to CPUExecutionProvider") as err:
        runner.activate()
    assert "\n" not in err.value.one_line() and runner.session is None


def test_ort_cpu_session_is_accepted(tmp_path):
    from attnvgg.runners.onnxruntime import OnnxRuntimeRunner
    from tests.engines.trt.conftest import make_onnx

    with OnnxRuntimeRunner(make_onnx(tmp_path / "m.onnx")) as r:
        assert r.session.get_providers()[0] == "CPUExecutionProvider"


def test_bf16_outputs_convert_to_float32_exactly():
    import torch

    from attnvgg.runners.tensorrt import to_numpy

    t = torch.tensor([[1.5, -2.25, 3.0e38, 1e-3]], dtype=torch.bfloat16)
    a = to_numpy(t)
    assert a.dtype == np.float32 and np.array_equal(a, t.to(torch.float32).numpy())
    assert to_numpy(torch.ones(2, dtype=torch.float16)).dtype == np.float16


def test_engines_open_through_polygraphy_except_for_the_bench(tmp_path):
    """validate/evaluate get Polygraphy's TrtRunner; the bench gets the device-resident runner (no TensorRT needed to pick)."""
    from attnvgg.runners.factory import open_runner
    from attnvgg.runners.tensorrt import PolygraphyEngineRunner, TensorRTRunner

    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not activated in this test")
    assert type(open_runner(engine)) is PolygraphyEngineRunner
    assert type(open_runner(engine, device_resident=True)) is TensorRTRunner


def test_bench_opens_engines_device_resident(monkeypatch, tmp_path):
    from attnvgg.config import BenchSpec
    from attnvgg.engines import bench
    from attnvgg.runners.tensorrt import TensorRTRunner

    engine = tmp_path / "m.engine"
    engine.write_bytes(b"x")
    pick_only = lambda: (True, "pretend: only the pick is tested")  # noqa: E731 - nothing is loaded or built
    monkeypatch.setattr("attnvgg.runners.tensorrt.tensorrt_available", pick_only)
    if hasattr(bench, "tensorrt_available"):
        monkeypatch.setattr(bench, "tensorrt_available", pick_only)
    monkeypatch.setattr(bench, "artifact_meta", lambda p: {"artifact": str(p)})
    (runner, _), = bench._runners_for(str(engine), BenchSpec(), None, lambda *a: None)
    assert isinstance(runner, TensorRTRunner) and not runner.is_active
