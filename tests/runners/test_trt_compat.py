"""Engine sidecar: what it records, and the refusal of an engine built for another TensorRT/GPU."""

from __future__ import annotations

import json

import pytest

from attnvgg import sidecar
from attnvgg.artifacts import sha256_file
from attnvgg.config import BuildSpec
from attnvgg.engines.build_plan import make_sidecar, plan_build
from attnvgg.runners.trt_compat import SIDECAR_FORMAT, RuntimeEnv, check_sidecar, load_sidecar
from attnvgg.errors import InputError
from tests.engines.trt.conftest import onnx_files  # noqa: F401 - the fixture these tests build engines from

H200 = RuntimeEnv("10.13.0.35", "NVIDIA H200", "9.0")


@pytest.fixture
def built(onnx_files, tmp_path):
    """A plan for the fp16 file, a stand-in engine file (bytes, not an engine) and its sidecar dict.

    No TensorRT is involved: these tests cover only the sidecar bookkeeping around an engine.
    """

    def make(env: RuntimeEnv = H200, **spec_kw):
        plan = plan_build([onnx_files["fp16"]], BuildSpec(**spec_kw), tmp_path / "out")
        ep = plan.engines[0]
        ep.engine.parent.mkdir(parents=True, exist_ok=True)
        ep.engine.write_bytes(b"engine bytes for bookkeeping tests")
        sc = make_sidecar(ep, plan.options, env, onnx_hash="h" * 64, engine_sha256=sha256_file(ep.engine),
                          engine_bytes=ep.engine.stat().st_size, build_seconds=1.25, timing_cache_status="created")
        return ep, sidecar.write(ep.engine, "engine", sc, source=ep.onnx.resolve(), precision=ep.precision).facts

    return make


def test_sidecar_records_what_the_brief_asks(built):
    ep, sc = built()
    assert sc["format"] == SIDECAR_FORMAT
    assert sc["tensorrt_version"] == "10.13.0.35"
    assert sc["gpu"] == {"name": "NVIDIA H200", "compute_capability": "9.0"}
    assert sc["onnx_hash"] == "h" * 64 and sc["precision"] == "fp16"
    assert sc["source"] == str(ep.onnx.resolve())   # validate follows "source" to the model spec
    assert sc["profiles"] == [{"input": {"min": [1, 3, 8, 8], "opt": [16, 3, 8, 8], "max": [64, 3, 8, 8]}}]
    opts = sc["build_options"]
    assert opts["target"] == "server" and opts["workspace_mib"] == 8192 and opts["strongly_typed"] is True
    assert opts["tf32"] is True and sc["build_seconds"] == 1.25 and sc["built_at"]
    assert json.loads(ep.sidecar.read_text()) == sc      # what was written is what we return
    assert ep.sidecar.name == ep.engine.name + ".json"


def test_matching_engine_accepted(built):
    ep, _ = built()
    sc = load_sidecar(ep.engine)
    check_sidecar(sc, H200, ep.engine, engine_sha256=sha256_file(ep.engine))


def test_other_tensorrt_version_refused(built):
    ep, sc = built()
    with pytest.raises(InputError) as ei:
        check_sidecar(sc, RuntimeEnv("10.16.1.11", "NVIDIA H200", "9.0"), ep.engine)
    msg = ei.value.one_line()
    assert "tensorrt_version" in msg and "10.13.0.35" in msg and "10.16.1.11" in msg
    assert "gpu." not in msg and "attnvgg build" in msg and "\n" not in msg
    assert ei.value.exit_code == 2


def test_other_gpu_refused_naming_the_field(built):
    ep, sc = built()
    with pytest.raises(InputError) as ei:
        check_sidecar(sc, RuntimeEnv("10.13.0.35", "NVIDIA A100-SXM4-80GB", "8.0"), ep.engine)
    msg = ei.value.one_line()
    assert "gpu.name" in msg and "gpu.compute_capability" in msg and "tensorrt_version" not in msg
    with pytest.raises(InputError, match="gpu.name") as ei:
        check_sidecar(sc, RuntimeEnv("10.13.0.35", "NVIDIA H100 80GB HBM3", "9.0"), ep.engine)
    assert "compute_capability" not in ei.value.one_line()


def test_hardware_compatible_engine_relaxes_gpu_check(built):
    ep, sc = built(hardware_compatibility="ampere+")
    check_sidecar(sc, RuntimeEnv("10.13.0.35", "NVIDIA A10", "8.6"), ep.engine)     # other Ampere+ GPU: fine
    with pytest.raises(InputError, match="Ampere"):
        check_sidecar(sc, RuntimeEnv("10.13.0.35", "Tesla T4", "7.5"), ep.engine)
    with pytest.raises(InputError, match="tensorrt_version"):                        # version still checked
        check_sidecar(sc, RuntimeEnv("10.14.1", "NVIDIA A10", "8.6"), ep.engine)


def test_same_compute_capability_relaxes_name_only(built):
    ep, sc = built(hardware_compatibility="same-compute-capability")
    check_sidecar(sc, RuntimeEnv("10.13.0.35", "NVIDIA H100 PCIe", "9.0"), ep.engine)
    with pytest.raises(InputError, match="compute_capability"):
        check_sidecar(sc, RuntimeEnv("10.13.0.35", "NVIDIA L40S", "8.9"), ep.engine)


def test_version_compatible_engine_accepts_newer_tensorrt_only(built):
    ep, sc = built(version_compatible=True)
    check_sidecar(sc, RuntimeEnv("10.16.1.11", "NVIDIA H200", "9.0"), ep.engine)
    check_sidecar(sc, RuntimeEnv("11.1.0.5", "NVIDIA H200", "9.0"), ep.engine)
    with pytest.raises(InputError, match="same or a newer TensorRT"):
        check_sidecar(sc, RuntimeEnv("10.8.0.43", "NVIDIA H200", "9.0"), ep.engine)


def test_sidecar_of_another_engine_refused(built):
    ep, sc = built()
    ep.engine.write_bytes(b"a different engine")
    with pytest.raises(InputError, match="replaced after its sidecar"):     # checked on every read
        load_sidecar(ep.engine)
    with pytest.raises(InputError, match="engine_sha256"):
        check_sidecar(sc, H200, ep.engine, engine_sha256=sha256_file(ep.engine))


def test_missing_or_foreign_sidecar_refused(built):
    ep, _ = built()
    ep.sidecar.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_sidecar(ep.engine)
    ep.sidecar.write_text(json.dumps({"precision": "fp16"}))
    with pytest.raises(InputError, match="not an attnvgg sidecar"):
        load_sidecar(ep.engine)
    ep.sidecar.unlink()
    with pytest.raises(InputError, match="no sidecar") as ei:
        load_sidecar(ep.engine)
    assert "attnvgg build" in ei.value.one_line()


def test_sidecar_missing_field_refused(built):
    ep, sc = built()
    del sc["gpu"]
    with pytest.raises(InputError, match="lacks field"):
        check_sidecar(sc, H200, ep.engine)
