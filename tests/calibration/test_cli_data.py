"""attnvgg calibrate/evaluate with real data sources (attnvgg.data): built-in sets and bad folders."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.conftest import error_line, run_cli

pytest.importorskip("attnvgg.data", reason="attnvgg.data (branch data) is not merged yet")


@pytest.fixture()
def model(tiny_global, tmp_path):
    dest = tmp_path / "m.onnx"
    shutil.copy(tiny_global, dest)
    shutil.copy(str(tiny_global) + ".json", str(dest) + ".json")   # the model with its sidecar
    return dest


def _png_folder(path, n: int, corrupt: bool = False):
    from PIL import Image

    path.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(path / f"img{i}.png")
    if corrupt:
        (path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4)
    return path


def test_calibrate_on_builtin_calib_and_a_folder(model, tmp_path):
    cache = str(tmp_path / "c")
    res = run_cli(["calibrate", str(model), "--data", "builtin:calib", "--num-images", "16", "--cache-dir", cache])
    assert res.exit_code == 0, res.output
    side = json.loads((tmp_path / "m.int8.onnx.json").read_text())
    assert side["images"] == 16 and side["data_hash"]
    folder = _png_folder(tmp_path / "imgs", 6)
    res = run_cli(["calibrate", str(model), "--data", str(folder), "--cache-dir", cache, "-o", str(tmp_path / "f.onnx")])
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("case", ["missing_folder", "empty_folder", "corrupt_image"])
def test_calibrate_bad_data(model, tmp_path, case):
    if case == "missing_folder":
        data = tmp_path / "nope"
    elif case == "empty_folder":
        data = tmp_path / "empty"
        data.mkdir()
    else:
        data = _png_folder(tmp_path / "imgs", 5, corrupt=True)
    out = tmp_path / "o.onnx"
    res = run_cli(["calibrate", str(model), "--data", str(data), "--cache-dir", str(tmp_path / "c"), "-o", str(out)])
    assert res.exit_code == 2, res.output
    error_line(res)
    assert not out.exists() and not (tmp_path / "o.onnx.json").exists()


def test_evaluate_on_builtin_val(model, tmp_path):
    out = tmp_path / "acc.json"
    res = run_cli(["evaluate", str(model), "--data", "builtin:val", "--limit", "32", "-o", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert doc["images"] == 32 and 0 <= doc["top1"] <= doc["top5"] <= 1
