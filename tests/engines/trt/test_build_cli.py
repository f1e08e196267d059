"""`attnvgg build` from the command line: dry-run plans, bad input, missing TensorRT."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from attnvgg.cli import cli
from attnvgg.runners.tensorrt import tensorrt_available

ROOT = Path(__file__).resolve().parents[3]
EXPECTED = {"server": ("1x3x8x8", "16x3x8x8", "64x3x8x8"), "edge": ("1x3x8x8", "1x3x8x8", "1x3x8x8")}


def _run(*args: str):
    return CliRunner().invoke(cli, ["build", *args])


def _one_line_error(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize("preset", ["server", "edge"])
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_dry_run_prints_plan(onnx_files, tmp_path, preset, precision):
    out = tmp_path / "engines"
    res = _run(str(onnx_files[precision]), "--out", str(out), "--preset", preset, "--dry-run")
    assert res.exit_code == 0, res.output
    text = res.stdout
    mn, op, mx = EXPECTED[preset]
    engine = out / f"model.{precision}.engine"
    assert f"target: {preset}" in text   # --preset is the old spelling of --target
    assert f"precision: {precision} (graph:" in text
    assert "input: input float32 [batch, 3, 8, 8]" in text
    assert f"profile input: min {mn}  opt {op}  max {mx}" in text
    assert f"engine 1/1: {engine}" in text
    assert f"sidecar: {engine}.json" in text and f"trtexec script: {engine}.trtexec.sh" in text
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("trtexec: "))
    trt_engine = out / f"model.{precision}.trtexec.engine"   # never the engine the sidecar hashes
    assert line.strip().startswith(f"trtexec: cd {out} && trtexec ")   # the .trtexec.sh command, from its folder
    assert f"--onnx={os.path.relpath(onnx_files[precision], out)}" in line and f"--saveEngine={trt_engine.name}" in line
    assert f"--minShapes=input:{mn} --optShapes=input:{op} --maxShapes=input:{mx} --shapes=input:{op}" in line
    assert "--profilingVerbosity=detailed" in line and f"--exportLayerInfo={trt_engine.name}.layers.json" in line
    assert f"--exportProfile={trt_engine.name}.profile.json" in line
    assert "--stronglyTyped" in line and "--fp16" not in line and "--int8" not in line
    assert ("--noTF32" in line) == (precision == "fp32")
    assert not out.exists()      # a dry run writes nothing


def test_dry_run_overrides_and_three_files(onnx_files, tmp_path):
    res = _run(*map(str, onnx_files.values()), "--out", str(tmp_path / "o"), "--target", "edge",
               "--max-batch", "4", "--workspace", "512", "--opt-level", "2", "--hardware-compat", "ampere+",
               "--version-compatible", "--tf32", "--dry-run")
    assert res.exit_code == 0, res.output
    t = res.stdout
    assert "batch: min 1 / opt 1 / max 4 (set)" in t and "workspace: 512 MiB (set)" in t
    assert "builder optimization level: 2 (set)" in t and "engine 3/3" in t
    assert t.count("--hardwareCompatibilityLevel=ampere+") == 3 and t.count("--versionCompatible") == 3
    assert "--noTF32" not in t


def test_config_file_build_table(onnx_files, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[build]\npreset = "edge"\nbatch_max = 2\n')
    res = _run(str(onnx_files["fp32"]), "--config", str(cfg), "--out", str(tmp_path / "o"), "--dry-run")
    assert res.exit_code == 0, res.output
    assert "batch: min 1 / opt 1 / max 2 (set)" in res.stdout
    res = _run(str(onnx_files["fp32"]), "--config", str(cfg), "--max-batch", "6", "--out", str(tmp_path / "o"), "--dry-run")
    assert "max 6 (set)" in res.stdout     # the flag wins over the file


def test_dry_run_never_imports_tensorrt_or_torch(onnx_files, tmp_path):
    """Even where tensorrt is installed, a dry run must not import it (nor torch)."""
    code = textwrap.dedent(f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in ('tensorrt', 'torch'):
                    raise ImportError('blocked for this test: ' + name)
        sys.meta_path.insert(0, Block())
        from attnvgg.cli import cli
        cli(['build', {str(onnx_files['int8'])!r}, '--out', {str(tmp_path / 'o')!r}, '--dry-run'], standalone_mode=False)
        from attnvgg.runners.tensorrt import tensorrt_available
        ok, why = tensorrt_available()
        assert ok is False and 'tensorrt' in why, why
        print('OK', why)
    """)
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "precision: int8" in r.stdout and "OK " in r.stdout


def test_help_documents_exit_code_4():
    res = CliRunner().invoke(cli, ["build", "--help"])
    assert res.exit_code == 0
    flat = " ".join(res.output.split())
    assert "4 TensorRT or a CUDA GPU is missing" in flat and 'pip install "attnvgg[gpu]"' in flat


def test_tensorrt_available_returns_reason(monkeypatch):
    import importlib.util
    import types

    ok, why = tensorrt_available()
    if not ok:      # here: no tensorrt, or no GPU; the reason says which and how to get it
        assert "tensorrt" in why.lower() and ("attnvgg[gpu]" in why or "GPU" in why), why
    # the package is absent: named, with the install line
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorrt" else object())
    ok, why = tensorrt_available()
    assert not ok and "not installed" in why and 'pip install "attnvgg[gpu]"' in why
    monkeypatch.undo()
    # an importable tensorrt of an unsupported version (a bare module with only a version: builds nothing)
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="8.6.1"))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    ok, why = tensorrt_available()
    assert not ok and "TensorRT 8.6.1 is not supported" in why and "10.x or 11.x" in why


@pytest.mark.skipif(tensorrt_available()[0], reason="TensorRT and a GPU are present: the missing-TensorRT path cannot be shown")
def test_build_without_tensorrt_exits_4(onnx_files, tmp_path):
    out = tmp_path / "engines"
    res = _run(str(onnx_files["fp16"]), "--out", str(out))
    assert res.exit_code == 4
    msg = _one_line_error(res)
    assert 'pip install "attnvgg[gpu]"' in msg or "GPU" in msg
    assert not list(tmp_path.rglob("*.engine"))


def _tensorrt_importable() -> bool:
    try:
        import tensorrt  # noqa: F401
    except Exception:
        return False
    return True


@pytest.mark.skipif(_tensorrt_importable(), reason="tensorrt is importable here")
def test_missing_tensorrt_message_names_package(onnx_files, tmp_path):
    res = _run(str(onnx_files["fp32"]), "--out", str(tmp_path / "e"))
    assert res.exit_code == 4
    msg = _one_line_error(res)
    assert "tensorrt" in msg and 'pip install "attnvgg[gpu]"' in msg


@pytest.mark.parametrize("case", ["missing", "not_onnx", "min_gt_opt", "opt_gt_max", "unknown_preset", "directory"])
def test_bad_input_one_line_exit_2(onnx_files, tmp_path, case):
    out = tmp_path / "engines"
    good = str(onnx_files["fp32"])
    junk = tmp_path / "notes.txt"
    junk.write_text("hello, not a model\n")
    args = {
        "missing": [str(tmp_path / "absent.onnx")],
        "not_onnx": [str(junk)],
        "min_gt_opt": [good, "--min-batch", "8", "--opt-batch", "4"],
        "opt_gt_max": [good, "--opt-batch", "32", "--max-batch", "16"],
        "unknown_preset": [good, "--preset", "datacenter"],
        "directory": [str(tmp_path)],
    }[case]
    for dry in ([], ["--dry-run"]):
        res = _run(*args, "--out", str(out), *dry)
        assert res.exit_code == 2, (case, res.output)
        msg = _one_line_error(res)
        assert len(msg) < 400
    assert not out.exists() and not list(tmp_path.rglob("*.engine"))


def test_only_the_tensorrt_module_imports_tensorrt():
    pkg = ROOT / "attnvgg"
    import re

    pattern = re.compile(r"^\s*(import tensorrt\b|from tensorrt\b)", re.M)
    users = sorted(str(p.relative_to(ROOT)) for p in pkg.rglob("*.py") if pattern.search(p.read_text()))
    assert users == ["attnvgg/runners/tensorrt.py"]


def test_runner_refuses_missing_engine(tmp_path):
    from attnvgg.runners.tensorrt import TensorRTRunner
    from attnvgg.errors import InputError

    with pytest.raises(InputError, match="engine file not found"):
        TensorRTRunner(tmp_path / "none.engine").activate()


@pytest.mark.skipif(tensorrt_available()[0], reason="TensorRT and a GPU are present")
def test_runner_without_tensorrt_is_missing_dependency(tmp_path):
    from attnvgg.runners.tensorrt import TensorRTRunner
    from attnvgg.errors import MissingDependency

    e = tmp_path / "m.engine"
    e.write_bytes(b"x")
    with pytest.raises(MissingDependency) as ei:
        TensorRTRunner(e).activate()
    assert ei.value.exit_code == 4
