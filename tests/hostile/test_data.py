"""Hostile data and result files: random bytes, NaN pixels, symlink loops, wrong-typed records."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests.hostile.conftest import refused, result_file


def _nan_npz(path, hw=32):
    x = np.random.default_rng(0).standard_normal((8, 3, hw, hw)).astype(np.float32)
    x[3, 0, 5, 5] = np.nan
    np.savez(path, x=x, y=np.arange(8) % 10)


DATA_CASES = [
    ("calibrate-random-bytes-npz", ["calibrate", "model.sim.onnx", "--data", "rnd.npz", "--no-cache", "-o", "q.onnx"],
     r"rnd\.npz is not a \.npz \(zip\) archive"),
    ("evaluate-random-bytes-npz", ["evaluate", "model.sim.onnx", "--data", "rnd.npz"], r"rnd\.npz is not a \.npz"),
    ("evaluate-random-bytes-npy", ["evaluate", "model.sim.onnx", "--data", "rnd.npy", "--reference", "pytorch"],
     r"rnd\.npy is not a \.npy array file"),
    ("validate-images-random-bytes", ["validate", "model.sim.onnx", "--images", "rnd.npz", "--batches", "1",
                                      "--samples", "1"], r"rnd\.npz is not a \.npz"),
    ("evaluate-nan-pixels", ["evaluate", "model.sim.onnx", "--data", "nan.npz"], r"nan\.npz: image 3 has NaN/Inf pixels"),
    ("calibrate-nan-pixels", ["calibrate", "model.sim.onnx", "--data", "nan.npz", "--no-cache", "-o", "q.onnx"],
     r"nan\.npz: image 3 has NaN/Inf pixels"),
    ("evaluate-empty-npz", ["evaluate", "model.sim.onnx", "--data", "empty.npz"], r"empty\.npz is not a \.npz.*empty file"),
]


@pytest.mark.parametrize("args,pattern", [c[1:] for c in DATA_CASES], ids=[c[0] for c in DATA_CASES])
def test_refused_data(work, args, pattern):
    (work / "rnd.npz").write_bytes(os.urandom(3000))
    (work / "rnd.npy").write_bytes(os.urandom(3000))
    (work / "empty.npz").write_bytes(b"")
    _nan_npz(work / "nan.npz")
    line = refused(args, work, 2, pattern)
    assert "pickled" not in line and "model weights" not in line


REPORT_CASES = [
    ("accuracy-wrong-types", {"artifact": 5, "top1": "high"}, r"field 'artifact' must be a path string, got 5"),
    ("accuracy-top1-string", {"artifact": "m.onnx", "top1": "high"}, r"field 'top1' must be a number or null, got 'high'"),
    ("accuracy-images-negative", {"artifact": "m.onnx", "top1": 0.5, "images": -4}, r"field 'images' must be a non-negative"),
    ("accuracy-reference-list", {"artifact": "m.onnx", "top1": 0.5, "reference": [1]}, r"field 'reference' must be an object"),
    ("parity-passed-string", {"artifact": "m.onnx", "cases": [], "passed": "yes"}, r"field 'passed' must be true or false"),
    ("parity-case-not-object", {"artifact": "m.onnx", "cases": [3], "passed": True}, r"field 'cases\[0\]' must be an object"),
    ("parity-max-abs-string", {"artifact": "m.onnx", "passed": True,
                               "cases": [{"runner": "ort", "passed": True, "metrics": {"max_abs": "tiny"}}]},
     r"cases\[0\]\.metrics\.max_abs' must be a number"),
]


@pytest.mark.parametrize("record,pattern", [c[1:] for c in REPORT_CASES], ids=[c[0] for c in REPORT_CASES])
def test_report_refuses_wrong_types(work, record, pattern):
    res = work / "results"
    res.mkdir()
    (res / "good.json").write_text(json.dumps(result_file("accuracy", {"artifact": "model.sim.onnx", "top1": 0.5,
                                                                       "images": 8})))
    kind = "parity" if "cases" in record else "accuracy"
    (res / "bad.json").write_text(json.dumps(result_file(kind, record)))
    line = refused(["report", "results", "--out", "rep"], work, 2, pattern)
    assert "bad.json" in line


def test_symlink_loop_counts_each_image_once(tmp_path):
    """``loop -> .`` in an image folder once read 3 images as 83; links back into the tree are not followed."""
    from PIL import Image

    from attnvgg.config import PreprocessSpec
    from attnvgg.data import open_dataset

    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(flat / f"{i}.png")
    (flat / "loop").symlink_to(".")
    (flat / "up").symlink_to("..")
    assert len(open_dataset(str(flat), PreprocessSpec(resize=8, crop=8))) == 3

    tree = tmp_path / "tree"
    for c in ("a", "b"):
        (tree / c).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tree / c / "x.png")
    (tree / "a" / "loop").symlink_to("..")          # back to the root: classes again, forever
    (tree / "b" / "self").symlink_to(".")
    (tree / "b" / "dup.png").symlink_to(tree / "b" / "x.png")   # the same file twice
    ext = tmp_path / "elsewhere"
    ext.mkdir()
    Image.new("RGB", (8, 8)).save(ext / "y.png")
    (tree / "a" / "more").symlink_to(ext)           # a link out of the tree is followed
    ds = open_dataset(str(tree), PreprocessSpec(resize=8, crop=8))
    assert ds.classes == ["a", "b"] and len(ds) == 3
