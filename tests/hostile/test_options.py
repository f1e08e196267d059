"""Hostile options and config values: refused with one line and exit 2 before anything is written.

Each case once passed silently or with a traceback (issue 11): ``export --num-classes 0`` wrote
logits [batch, 0], ``--opset 5`` wrote opset 18 while the sidecar said 5, ``validate --samples 0``
checked nothing and passed, ``calibrate --num-bins 0`` and ``validate.samples=-5`` were accepted.
"""

from __future__ import annotations

import pytest

from tests.hostile.conftest import refused

TINY = ["--width", "0.0625", "--input-size", "32", "--num-classes", "10"]

CASES = [
    # id, args (relative to the work folder), exit code, pattern the error line must match
    ("export-num-classes-0", ["export", "--num-classes", "0", "-o", "new.onnx"], 2, r"num_classes must be at least 1, got 0"),
    ("export-num-classes--1", ["export", "--num-classes", "-1", "-o", "new.onnx"], 2, r"num_classes must be at least 1, got -1"),
    ("export-opset-5", ["export", *TINY, "--opset", "5", "-o", "new.onnx"], 2, r"opset 5 cannot be exported"),
    ("export-opset-10-dynamo-writes-18", ["export", *TINY, "--opset", "10", "-o", "new.onnx"], 2,
     r"the dynamo exporter wrote opset 18, not the opset 10 asked for; nothing was written"),
    ("export-opset-99", ["export", *TINY, "--opset", "99", "-o", "new.onnx"], 2, r"opset 99 is newer than"),
    ("export-width-0", ["export", "--width", "0", "-o", "new.onnx"], 2, r"width must be a positive number"),
    ("export-width-nan", ["export", "--width", "nan", "-o", "new.onnx"], 2, r"width must be a positive number"),
    ("export-over-sim", ["export", *TINY, "--opset", "99", "-o", "model.onnx"], 2, r"opset 99"),
    ("validate-samples-0", ["validate", "model.sim.onnx", "--samples", "0"], 2, r"samples must be at least 1, got 0"),
    ("validate-samples--3", ["validate", "model.sim.onnx", "--samples", "-3"], 2, r"samples must be at least 1, got -3"),
    ("validate-missing-file", ["validate", "missing.onnx"], 2, r"file not found: missing\.onnx"),
    ("validate-min-top1-2", ["validate", "model.sim.onnx", "--min-top1", "2"], 2, r"min_top1 must be in \[0, 1\]"),
    ("validate-atol-negative", ["validate", "model.sim.onnx", "--atol", "-1"], 2, r"atol must be >= 0"),
    ("calibrate-num-bins-0", ["calibrate", "model.sim.onnx", "--num-bins", "0", "-o", "q.onnx"], 2, r"--num-bins must be at least 2, got 0"),
    ("calibrate-num-bins--4", ["calibrate", "model.sim.onnx", "--method", "entropy", "--num-bins", "-4", "-o", "q.onnx"], 2,
     r"--num-bins must be at least 2"),
    ("calibrate-check-samples--1", ["calibrate", "model.sim.onnx", "--check-samples", "-1", "-o", "q.onnx"], 2,
     r"--check-samples must be >= 0"),
    ("run-validate-samples--5", ["run", "--preset", "vgg16-224", "--config", "tiny.toml", "--out", "r", "--set", "validate.samples=-5"], 2,
     r"samples must be at least 1, got -5"),
    ("run-model-num-classes-0", ["run", "--preset", "vgg16-224", "--config", "tiny.toml", "--out", "r", "--set", "model.num_classes=0"], 2,
     r"num_classes must be at least 1"),
    ("run-opset-3", ["run", "--preset", "vgg16-224", "--config", "tiny.toml", "--out", "r", "--set", "export.opset=3"], 2, r"opset 3 cannot"),
    ("run-num-bins-0", ["run", "--preset", "vgg16-224", "--config", "tiny.toml", "--out", "r", "--set", "calibrate.num_bins=0"], 2, r"--num-bins"),
    ("run-random-inputs-bogus", ["run", "--preset", "vgg16-224", "--config", "tiny.toml", "--out", "r", "--set",
                                 "validate.tolerances.int8.random_inputs=maybe"], 2, r"random_inputs must be one of gate, info"),
    ("run-evaluate-batch-0", ["run", "--preset", "vgg16-224", "--config", "tiny.toml", "--out", "r", "--set", "evaluate.batch_size=0"], 2,
     r"evaluate batch_size must be at least 1"),
]


@pytest.mark.parametrize("args,code,pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_refused_option(work, args, code, pattern):
    refused(args, work, code, pattern)
