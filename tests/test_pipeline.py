"""The run pipeline: config override order, stage cache hit/invalidation/resume."""

import json
from pathlib import Path

import pytest

from attnvgg.config import dumps_config
from attnvgg.errors import InputError
from attnvgg.manifest import Manifest, Step
from attnvgg.pipeline import effective_config, run_pipeline
from tests.conftest import error_line, run_cli


def test_override_order_defaults_preset_file_flags(tmp_path):
    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text("[export]\nbatch_max = 16\nopset = 18\n[model]\ngamma = 0.25\n")
    base = effective_config("vgg16-224")
    assert base.export.batch_max == 8 and base.model.input_size == 224 and base.export.opset == 20
    with_file = effective_config("vgg16-224", str(cfg_file))
    assert with_file.export.batch_max == 16 and with_file.export.opset == 18 and with_file.model.gamma == 0.25
    assert with_file.model.input_size == 224  # untouched keys keep the preset's value
    flags = effective_config("vgg16-224", str(cfg_file), ["export.batch_max=4", "validate.tolerances.fp32.atol=0.001"])
    assert flags.export.batch_max == 4 and flags.export.opset == 18
    assert flags.validate.tolerances["fp32"].atol == 0.001 and flags.validate.tolerances["fp16"].atol == 0.05


def test_bad_overrides():
    with pytest.raises(InputError, match="unknown key"):
        effective_config("vgg16-224", None, ["export.nope=1"])
    with pytest.raises(InputError, match="expected an integer"):
        effective_config("vgg16-224", None, ["export.batch_max=many"])
    with pytest.raises(InputError, match="section.key=value"):
        effective_config("vgg16-224", None, ["export.batch_max"])
    with pytest.raises(InputError, match="unknown preset"):
        effective_config("resnet")


def test_config_show_round_trips(tmp_path):
    res = run_cli(["config", "--show", "--preset", "vgg16-224", "--set", "export.opset=18"])
    assert res.exit_code == 0, res.output
    assert "opset = 18" in res.output and "input_size = 224" in res.output
    path = tmp_path / "eff.toml"
    path.write_text(res.output)
    again = effective_config("vgg16-224", str(path))
    assert dumps_config(again) == res.output


def _counting_step(tmp_path: Path, calls: list, setting: int = 1) -> Step:
    src = tmp_path / "in.txt"
    out = tmp_path / "out.txt"

    def fn():
        calls.append(1)
        out.write_text(src.read_text().upper())
        return {"n": len(calls)}

    return Step("upper", "export", fn, inputs=[src], settings={"s": setting}, outputs=[out])


def _run_once(tmp_path, step) -> bool:
    m = Manifest(tmp_path)
    key = m.key(step)
    if m.is_fresh(step, key):
        return False
    step.fn()
    m.record(step, key, 0.0, {})
    return True


def test_manifest_hit_and_invalidation(tmp_path):
    (tmp_path / "in.txt").write_text("abc")
    calls: list = []
    assert _run_once(tmp_path, _counting_step(tmp_path, calls))
    assert not _run_once(tmp_path, _counting_step(tmp_path, calls))             # hit
    assert _run_once(tmp_path, _counting_step(tmp_path, calls, setting=2))      # changed setting
    assert not _run_once(tmp_path, _counting_step(tmp_path, calls, setting=2))
    (tmp_path / "in.txt").write_text("abcd")                                     # changed input content
    assert _run_once(tmp_path, _counting_step(tmp_path, calls, setting=2))
    (tmp_path / "out.txt").write_text("tampered")                                # changed output
    assert _run_once(tmp_path, _counting_step(tmp_path, calls, setting=2))
    (tmp_path / "out.txt").unlink()                                              # missing output
    assert _run_once(tmp_path, _counting_step(tmp_path, calls, setting=2))
    assert len(calls) == 5


def _tiny_run_cfg(tmp_path, *extra):
    return effective_config("vgg16-224", None, [
        "model.width=0.0625", "model.input_size=32", "model.num_classes=10", "model.gamma=0.5",
        "validate.batches=[1,3]", "validate.samples=3", f'run.out="{tmp_path / "run"}"', *extra])


def test_run_caches_and_reruns_only_what_changed(tmp_path):
    lines: list[str] = []
    stages = ["export", "simplify", "validate"]
    cfg = _tiny_run_cfg(tmp_path, 'run.variants=["fp32"]')
    s1 = run_pipeline(cfg, stages, echo=lines.append)
    assert s1["steps"]["export"] == "done" and s1["steps"]["validate:fp32"] == "done"
    parity = json.loads((tmp_path / "run/results/parity-fp32.json").read_text())
    assert parity["passed"]
    s2 = run_pipeline(_tiny_run_cfg(tmp_path, 'run.variants=["fp32"]'), stages, echo=lines.append)
    assert {s2["steps"][k] for k in ("export", "simplify", "validate:fp32")} == {"cached"}
    # a validate setting changes only validate
    s3 = run_pipeline(_tiny_run_cfg(tmp_path, 'run.variants=["fp32"]', "validate.samples=4"), stages, echo=lines.append)
    assert s3["steps"]["export"] == "cached" and s3["steps"]["simplify"] == "cached"
    assert s3["steps"]["validate:fp32"] == "done"
    # a model setting reruns everything downstream
    s4 = run_pipeline(_tiny_run_cfg(tmp_path, 'run.variants=["fp32"]', "validate.samples=4", "model.gamma=0.25"),
                      stages, echo=lines.append)
    assert all(s4["steps"][k] == "done" for k in ("export", "simplify", "validate:fp32"))


def test_run_resumes_after_interruption(tmp_path, monkeypatch):
    import attnvgg.pipeline as simp      # the pipeline's reference to the stage function

    cfg = _tiny_run_cfg(tmp_path, 'run.variants=["fp32"]')

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(simp, "simplify_onnx", boom)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(cfg, ["export", "simplify"], echo=lambda s: None)
    monkeypatch.undo()
    s = run_pipeline(_tiny_run_cfg(tmp_path, 'run.variants=["fp32"]'), ["export", "simplify"], echo=lambda s: None)
    assert s["steps"]["export"] == "cached" and s["steps"]["simplify"] == "done"


def test_run_stage_needing_missing_input(tmp_path):
    cfg = _tiny_run_cfg(tmp_path, 'run.variants=["fp32"]')
    with pytest.raises(InputError, match="run the earlier stages"):
        run_pipeline(cfg, ["validate"], echo=lambda s: None)


def test_run_without_tensorrt_skips_build_and_report_says_so(tmp_path):
    from attnvgg.runners.tensorrt import tensorrt_available

    ok, why = tensorrt_available()
    if ok:
        pytest.skip("TensorRT and a GPU are present: the build stage runs here")
    cfg = _tiny_run_cfg(tmp_path, 'run.variants=["fp32"]', "bench.iterations=3", "bench.min_seconds=0.0",
                        "bench.batches=[1]")
    lines: list[str] = []
    s = run_pipeline(cfg, ["export", "simplify", "validate", "build", "bench", "report"], echo=lines.append)
    assert s["steps"]["build"].startswith("skipped: ")
    report = (tmp_path / "run/report/report.md").read_text()
    assert "## Skipped" in report and "build: " in report and "tensorrt" in report.lower()
    assert "pytorch" in report and "model.sim.onnx" in report
    notes = json.loads((tmp_path / "run/notes.json").read_text())
    assert "build" in notes["skipped"]


def test_unknown_stage_is_refused_before_anything_runs(tmp_path):
    res = run_cli(["run", "--preset", "vgg16-224", "--out", str(tmp_path / "r"), "--stages", "export,quantise"])
    assert res.exit_code == 2 and "unknown stage(s) quantise" in error_line(res)
    assert not (tmp_path / "r").exists()


# ----------------------------------------------------------------------------- stage lines and notes

def test_notes_follow_their_stage_line_and_a_slow_stage_gets_a_start_line(capsys):
    import time

    from attnvgg.manifest import Step
    from attnvgg.pipeline import _log, run_step

    lines: list[str] = []

    def slow() -> dict:
        _log("calibration cache hit: somewhere")
        time.sleep(0.5)
        return {"ok": True}

    info, notes, dt = run_step(Step("calibrate:x", "calibrate", slow, inputs=[], settings={}, outputs=[]),
                               "[ 4/21] calibrate:x", lines.append, start_after_s=0.1)
    assert info == {"ok": True} and dt >= 0.5
    assert lines == ["[ 4/21] calibrate:x running ..."]          # the start line, while it ran
    assert notes == ["calibration cache hit: somewhere"]          # held back, for after the stage line
    assert capsys.readouterr().err == ""                          # nothing printed above the stage line

    fast: list[str] = []
    run_step(Step("simplify", "simplify", lambda: {}, inputs=[], settings={}, outputs=[]), "[ 2/21] simplify",
             fast.append, start_after_s=0.5)
    time.sleep(0.6)
    assert fast == []                                             # a fast stage: no start line
