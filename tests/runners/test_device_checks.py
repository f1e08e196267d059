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
