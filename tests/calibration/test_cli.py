"""attnvgg calibrate on the command line: result line, cache hit on repeat, one-line errors."""

from __future__ import annotations

import json
import shutil

import pytest

from attnvgg.artifacts import sidecar_path
from tests.conftest import error_line, run_cli, stub_datasets


@pytest.fixture()
def model(tiny_global, tmp_path):
    dest = tmp_path / "m.onnx"
    shutil.copy(tiny_global, dest)
    if sidecar_path(tiny_global).exists():
        shutil.copy(sidecar_path(tiny_global), sidecar_path(dest))
    return dest


@pytest.fixture()
def fake_data(monkeypatch, make_dataset, rand_images):
    """Arrays built here instead of a data source on disk (through the public data opener)."""
    data = make_dataset(rand_images(8))
    stub_datasets(monkeypatch, lambda name: data)
    return data


def test_calibrate_writes_model_and_hits_cache(model, fake_data, tmp_path):
    args = ["calibrate", str(model), "--data", "x", "--batch-size", "4", "--cache-dir", str(tmp_path / "c")]
    res = run_cli(args)
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output and "m.int8.onnx" in res.output and "calibrated in" in res.output
    side = json.loads((tmp_path / "m.int8.onnx.json").read_text())
    assert side["flavour"] == "tensorrt" and side["method"] == "minmax"
    res = run_cli(args + ["--flavour", "cpu", "-o", str(tmp_path / "cpu.onnx"), "--check-samples", "4"])
    assert res.exit_code == 0 and "cache hit" in res.output and "vs fp32 on 4 images" in res.output, res.output
    assert json.loads((tmp_path / "cpu.onnx.json").read_text())["activation_type"] == "uint8"


@pytest.mark.parametrize("case", ["missing_model", "unknown_exclude", "too_many_images", "bad_batch"])
def test_calibrate_bad_inputs(model, fake_data, tmp_path, case):
    args = ["calibrate", str(model), "--data", "x", "--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path / "o.onnx")]
    if case == "missing_model":
        args[1] = str(tmp_path / "missing.onnx")
    elif case == "unknown_exclude":
        args += ["--exclude", "no_such_node"]
    elif case == "too_many_images":
        args += ["--num-images", "9"]
    elif case == "bad_batch":
        args += ["--batch-size", "0"]
    res = run_cli(args)
    assert res.exit_code == 2
    error_line(res)
    assert not (tmp_path / "o.onnx").exists() and not (tmp_path / "o.onnx.json").exists()
