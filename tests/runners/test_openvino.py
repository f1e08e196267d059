"""The OpenVINO runner: precision decision, missing package, parity of every precision on the
tiny model, the CLI and bench paths.

Tests that need the openvino package skip with the reason where it is absent; the decision
logic and the missing-package message are tested everywhere (the absence is simulated).
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from attnvgg.config import CalibrateSpec, Fp16Spec, ValidateSpec, default_tolerances
from attnvgg.errors import InputError, MissingDependency
from attnvgg.runners import openvino as ovr
from attnvgg.runners.base import effective_precision
from attnvgg.runners.factory import open_runner
from tests.conftest import error_line, run_cli, tiny_spec

try:
    import openvino  # noqa: F401

    HAVE_OV = True
except ImportError:
    HAVE_OV = False

needs_openvino = pytest.mark.skipif(not HAVE_OV, reason='openvino is not installed (pip install "attnvgg[openvino]")')


def _bf16_reason() -> str | None:
    return ovr.unavailable_reason("bf16") if HAVE_OV else "openvino is not installed"


def needs_bf16():
    why = _bf16_reason()
    if why:
        pytest.skip(f"no OpenVINO bf16 here: {why}")


@pytest.fixture
def no_openvino(monkeypatch):
    """Make ``import openvino`` fail as it does where the package is not installed."""
    for name in [m for m in sys.modules if m == "openvino" or m.startswith("openvino.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "openvino", None)   # None in sys.modules: ImportError on import


# ------------------------------------------------------------------ the precision decision (pure)

@pytest.mark.parametrize("caps", [["FP32", "INT8"], [], ["fp32", "fp16", "int8", "bin"]])
def test_bf16_refused_where_the_cpu_does_not_report_it(caps):
    with pytest.raises(MissingDependency) as info:
        ovr.choose_precision("bf16", caps)
    msg = info.value.one_line()
    assert "no native bf16" in msg and "OPTIMIZATION_CAPABILITIES" in msg and "--provider openvino" in msg
    assert "\n" not in msg and info.value.exit_code == 4


@pytest.mark.parametrize("caps", [["BF16", "FP32"], ["FP32", "bf16", "INT8"], ["BF16"]])
def test_bf16_granted_where_the_cpu_reports_it(caps):
    assert ovr.choose_precision("bf16", caps) == "bf16"


def test_f32_needs_no_capability_and_unknown_precision_is_bad_input():
    assert ovr.choose_precision("f32", []) == "f32"
    with pytest.raises(InputError, match="unknown OpenVINO inference precision 'fp8'"):
        ovr.choose_precision("fp8", ["BF16"])
    with pytest.raises(InputError, match="unknown OpenVINO inference precision"):
        ovr.OpenVinoRunner("x.onnx", precision="fp16")


def test_effective_precision_is_the_coarser():
    assert effective_precision("fp32", None) == "fp32"
    assert effective_precision("fp32", "bf16") == "bf16"
    assert effective_precision("fp16", "bf16") == "bf16"
    assert effective_precision("int8", "bf16") == "int8"
    assert "bf16" in default_tolerances()


# ------------------------------------------------------------------ missing package

def test_missing_openvino_message(no_openvino, tiny_exports):
    with pytest.raises(MissingDependency) as info:
        ovr.import_openvino()
    assert 'pip install "attnvgg[openvino]"' in info.value.one_line()
    runner = open_runner(tiny_exports["global"], provider="openvino")   # construction needs no openvino
    with pytest.raises(MissingDependency, match=r'attnvgg\[openvino\]'):
        runner.activate()
    assert ovr.unavailable_reason("f32").startswith("openvino is not installed")
    assert ovr.openvino_version() is None


def test_missing_openvino_cli_one_line_exit_4(no_openvino, tiny_exports):
    onnx = str(tiny_exports["global"])
    for args in (["validate", onnx, "--provider", "openvino", "--samples", "2"],
                 ["bench", onnx, "--provider", "openvino", "--iterations", "1", "--min-seconds", "0", "--batches", "1"],
                 ["evaluate", onnx, "--runner", "openvino-bf16", "--data", "builtin:val", "--limit", "4"]):
        res = run_cli(args)
        assert res.exit_code == 4, (args, res.output)
        line = error_line(res)
        assert "openvino is not installed" in line and 'pip install "attnvgg[openvino]"' in line


def test_run_skips_openvino_variants_with_the_reason(no_openvino):
    from attnvgg.pipeline import variant_runners

    runners, skipped = variant_runners(["fp32", "openvino-fp32", "openvino-bf16", "openvino-int8"])
    assert runners == {"fp32": "cpu"}
    assert set(skipped) == {"openvino-fp32", "openvino-bf16", "openvino-int8"}
    assert all('pip install "attnvgg[openvino]"' in why for why in skipped.values())


def test_run_report_says_why_openvino_variants_are_missing(no_openvino, tmp_path):
    from attnvgg.pipeline import effective_config, run_pipeline

    cfg = effective_config("vgg16-224", None, [
        "model.width=0.0625", "model.input_size=32", "model.num_classes=10", "model.gamma=0.5",
        "validate.batches=[1]", "validate.samples=2", f'run.out="{tmp_path / "run"}"',
        'run.variants=["fp32", "openvino-fp32", "openvino-bf16"]'])
    lines: list[str] = []
    summary = run_pipeline(cfg, ["export", "simplify", "validate", "report"], echo=lines.append)
    assert summary["steps"]["validate:fp32"] == "done" and "validate:openvino-fp32" not in summary["steps"]
    assert any(ln.startswith("variant openvino-fp32") and "skipped" in ln for ln in lines), lines
    notes = json.loads((tmp_path / "run/notes.json").read_text())
    assert 'pip install "attnvgg[openvino]"' in notes["skipped"]["variant openvino-bf16"]
    report = (tmp_path / "run/report/report.md").read_text()
    assert "- variant openvino-fp32: openvino is not installed" in report


def test_run_without_bf16_skips_bf16_and_runs_int8_in_f32(monkeypatch):
    from attnvgg.pipeline import variant_runners

    def fake(precision="f32"):
        return None if precision == "f32" else "this CPU has no native bf16 (test)"

    import attnvgg.pipeline as pipeline

    monkeypatch.setattr(ovr, "unavailable_reason", fake)
    if hasattr(pipeline, "unavailable_reason"):      # imported by name at the pipeline's top
        monkeypatch.setattr(pipeline, "unavailable_reason", fake)
    runners, skipped = variant_runners(["openvino-fp32", "openvino-bf16", "openvino-int8"])
    assert runners == {"openvino-fp32": "openvino", "openvino-int8": "openvino"}
    assert skipped == {"openvino-bf16": "this CPU has no native bf16 (test)"}


@needs_openvino
def test_runner_refuses_bf16_when_the_cpu_lacks_it(monkeypatch, tiny_exports):
    """The runner asks the CPU and goes through choose_precision: no BF16 -> refused, not run as f32."""
    import openvino as ov

    real = ov.Core.get_property

    class NoBf16Core(ov.Core):
        def get_property(self, device, name):
            if name == "OPTIMIZATION_CAPABILITIES":
                return ["FP32", "INT8", "EXPORT_IMPORT"]
            return real(self, device, name)

    monkeypatch.setattr(ov, "Core", NoBf16Core)
    with pytest.raises(MissingDependency, match="no native bf16"):
        ovr.OpenVinoRunner(tiny_exports["global"], precision="bf16").activate()
    res = run_cli(["validate", str(tiny_exports["global"]), "--provider", "openvino-bf16", "--samples", "2"])
    assert res.exit_code == 4 and "no native bf16" in error_line(res)


# ------------------------------------------------------------------ the runner itself

@needs_openvino
def test_runner_metadata_threads_and_describe(tiny_exports):
    r = ovr.OpenVinoRunner(tiny_exports["global"], precision="f32", threads=1)
    with r:
        (meta,) = r.input_metadata()
        assert meta.name == "input" and meta.dtype == "float32" and meta.shape == (-1, 3, 32, 32)
        assert r.output_names() == ["logits"]
        out = r.infer({"input": np.zeros((2, 3, 32, 32), np.float32)})
        assert out["logits"].shape == (2, 10) and out["logits"].dtype == np.float32
        d = r.describe()
    assert d["backend"] == "openvino-cpu" and d["name"] == "openvino-f32" and d["precision"] == "fp32"
    assert d["threads"] == 1 and d["threads_source"] == "set" and d["performance_hint"] == "LATENCY"
    assert d["openvino"] and d["device"] == "CPU" and d["static_shapes"]


@needs_openvino
def test_one_static_compile_per_batch_same_numbers_as_dynamic(tiny_exports):
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    with ovr.OpenVinoRunner(tiny_exports["global"]) as static, \
            ovr.OpenVinoRunner(tiny_exports["global"], static_shapes=False) as dynamic:
        a = static.infer({"input": x})["logits"]
        static.infer({"input": x[:1]})
        static.infer({"input": x})
        assert sorted(static._compiled) == [((1, 3, 32, 32),), ((3, 3, 32, 32),)]   # batch 1 from activate
        b = dynamic.infer({"input": x})["logits"]
        assert list(dynamic._compiled) == [None]
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)


@needs_openvino
def test_runner_bad_inputs_and_bad_file(tiny_exports, tmp_path):
    with ovr.OpenVinoRunner(tiny_exports["global"]) as r:
        with pytest.raises(InputError, match=r"has shape \(1, 3, 16, 16\) but model.onnx takes"):
            r.infer({"input": np.zeros((1, 3, 16, 16), np.float32)})
        with pytest.raises(InputError, match="are not in model.onnx"):
            r.infer({"image": np.zeros((1, 3, 32, 32), np.float32)})
    bad = tmp_path / "bad.onnx"
    bad.write_text("not a model")
    with pytest.raises(InputError, match="OpenVINO cannot read") as info:
        ovr.OpenVinoRunner(bad).activate()
    assert "\n" not in info.value.one_line()
    with pytest.raises(InputError, match="not found"):
        ovr.OpenVinoRunner(tmp_path / "none.onnx").activate()


# ------------------------------------------------------------------ parity, every precision

def _parity(path, precision_of_file, provider, kind="global"):
    from attnvgg.validate.parity import run_parity

    spec = ValidateSpec(batches=[1, 3], samples=6, providers=[provider])
    return run_parity(path, tiny_spec(kind), spec, precision=precision_of_file)


@pytest.fixture(scope="module")
def tiny_variants(tiny_exports, tmp_path_factory):
    """fp16 and both INT8 flavours of the tiny global-attention export."""
    from attnvgg.calibration.int8 import calibrate
    from attnvgg.export.fp16 import convert_fp16
    from tests.calibration.conftest import ArrayDataset, random_images

    root = tmp_path_factory.mktemp("ov-variants")
    src = tiny_exports["global"]
    out = {"fp32": src, "fp16": root / "model.fp16.onnx"}
    convert_fp16(src, out["fp16"], Fp16Spec(check=False), log=lambda m: None)
    data = ArrayDataset(random_images(32))
    for flavour in ("tensorrt", "cpu"):
        out[f"int8-{flavour}"] = root / f"model.int8-{flavour}.onnx"
        calibrate(src, data, out[f"int8-{flavour}"], CalibrateSpec(flavour=flavour, batch_size=8, cache=False),
                  log=lambda m: None, progress=False)
    return out


@needs_openvino
@pytest.mark.parametrize("kind", ["global", "se", "cbam", "none"])
def test_f32_parity_within_the_fp32_tolerance(tiny_exports, kind):
    res = _parity(tiny_exports[kind], "fp32", "openvino", kind)
    assert res.passed, [c.reasons for c in res.cases]
    assert res.precision == "fp32" and {c.runner for c in res.cases} == {"openvino-f32"}
    assert max(c.metrics["max_abs"] for c in res.cases) < default_tolerances()["fp32"].atol


@needs_openvino
@pytest.mark.parametrize("kind", ["global", "se", "cbam", "none"])
def test_bf16_parity_within_the_bf16_tolerance(tiny_exports, kind):
    needs_bf16()
    res = _parity(tiny_exports[kind], "fp32", "openvino-bf16", kind)
    assert res.passed, [c.reasons for c in res.cases]
    assert res.precision == "bf16" and res.artifact_precision == "fp32"
    assert all(c.tolerance == "bf16" for c in res.cases)
    # bf16 really ran: not bit-equal to the f32 run of the same file
    f32 = _parity(tiny_exports[kind], "fp32", "openvino", kind)
    assert max(c.metrics["max_abs"] for c in res.cases) > 10 * max(c.metrics["max_abs"] for c in f32.cases)


@needs_openvino
@pytest.mark.parametrize("variant,precision", [("fp16", "fp16"), ("int8-tensorrt", "int8"), ("int8-cpu", "int8")])
@pytest.mark.parametrize("provider", ["openvino", "openvino-bf16"])
def test_fp16_and_int8_files_within_their_tolerance(tiny_variants, variant, precision, provider):
    if provider == "openvino-bf16":
        needs_bf16()
    res = _parity(tiny_variants[variant], precision, provider)
    want = effective_precision(precision, "bf16" if provider == "openvino-bf16" else None)
    assert res.precision == want and all(c.tolerance == want for c in res.cases)
    if variant != "int8-cpu":
        assert res.passed, [c.reasons for c in res.cases]
        return
    # The tiny model's random-weight logits are near ties, so the uint8 cpu flavour flips top-1 on
    # ONNX Runtime too (4 of 6 agree at batch 3): hold OpenVINO to the int8 cosine and to ONNX
    # Runtime's own top-1 agreement on the same file, minus at most one sample in six.
    ort = {c.batch: c for c in _parity(tiny_variants[variant], precision, "cpu").cases}
    tol = default_tolerances()["int8"]
    for c in res.cases:
        assert c.metrics["min_cosine"] >= tol.min_cosine, c
        assert c.metrics["top1_agreement"] >= ort[c.batch].metrics["top1_agreement"] - 1 / 6 - 1e-9, (c, ort[c.batch])


@needs_openvino
def test_validate_cli_mixes_runners_each_with_its_tolerance(tiny_exports, tmp_path):
    needs_bf16()
    out = tmp_path / "p.json"
    res = run_cli(["validate", str(tiny_exports["global"]), "--provider", "cpu", "--provider", "openvino",
                   "--provider", "openvino-bf16", "--samples", "2", "--json", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    by_runner = {c["runner"]: c["tolerance"] for c in data["cases"]}
    assert by_runner == {"onnxruntime-cpu": "fp32", "openvino-f32": "fp32", "openvino-bf16": "bf16"}
    assert set(data["tolerances"]) == {"fp32", "bf16"} and "openvino-bf16: bf16 tolerance" in res.output


@needs_openvino
def test_bf16_tolerance_fails_a_real_error(tiny_exports):
    """The bf16 set is loose, not blind: a wrong model (other weights) fails it."""
    from attnvgg.validate.parity import run_parity

    needs_bf16()
    spec = ValidateSpec(batches=[3], samples=6, providers=["openvino-bf16"])
    res = run_parity(tiny_exports["global"], tiny_spec("global", seed=1), spec, precision="fp32")
    assert not res.passed


# ------------------------------------------------------------------ bench and evaluate

@needs_openvino
def test_bench_openvino_rows(tiny_exports):
    from attnvgg.config import BenchSpec
    from attnvgg.engines.bench import bench_artifacts

    providers = ["cpu", "openvino"] + ([] if _bf16_reason() else ["openvino-bf16"])
    spec = BenchSpec(warmup=1, iterations=3, min_seconds=0.0, batches=[1, 2], providers=providers)
    res = bench_artifacts([str(tiny_exports["global"])], spec)
    rows = {(r["runner"], r["batch"]): r for r in res["rows"]}
    f32 = rows[("openvino-f32", 1)]
    assert f32["backend"] == "openvino-cpu" and f32["device"] == "cpu" and f32["precision"] == "fp32"
    assert f32["threads"] >= 1 and f32["threads_source"] == "default"
    assert ("onnxruntime-cpu", 2) in rows and ("openvino-f32", 2) in rows
    if "openvino-bf16" in providers:
        assert rows[("openvino-bf16", 1)]["precision"] == "bf16"
    assert res["machine"]["versions"]["openvino"]


@needs_openvino
def test_evaluate_cli_with_openvino(tmp_path):
    """Accuracy of the built-in model's export through OpenVINO, against PyTorch."""
    from attnvgg.data import builtin_model_config
    from attnvgg.export.onnx import export_onnx
    from attnvgg.config import ExportSpec

    spec, pre = builtin_model_config()
    onnx = tmp_path / "builtin.onnx"
    export_onnx(spec, ExportSpec(batch_max=16), onnx, preprocess=pre)
    out = tmp_path / "acc.json"
    res = run_cli(["evaluate", str(onnx), "--provider", "openvino", "--limit", "64", "--out", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["runner"]["name"] == "openvino-f32" and data["top1"] is not None
