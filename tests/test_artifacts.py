"""Atomic writes and the one output-path check."""

from __future__ import annotations

import pytest

from attnvgg.artifacts import atomic_path, check_outputs, write_json
from attnvgg.errors import InputError


def test_a_crash_mid_write_keeps_the_old_file(tmp_path):
    dest = tmp_path / "model.onnx"
    dest.write_text("old, complete")
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_text("half written")
            assert dest.read_text() == "old, complete"     # nothing visible before the rename
            raise RuntimeError("crash")
    assert dest.read_text() == "old, complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]   # no temp file left


def test_a_finished_write_replaces_the_file(tmp_path):
    dest = tmp_path / "sub" / "r.json"
    write_json(dest, {"a": 1})
    write_json(dest, {"a": 2})
    assert dest.read_text().strip().endswith("}") and '"a": 2' in dest.read_text()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["r.json"]


@pytest.mark.parametrize("outputs, inputs, words", [
    (["m.onnx"], ["m.onnx"], "is the input .*m.onnx"),
    (["m.onnx.json"], ["m.onnx"], "sidecar of the input"),
    (["m.onnx.data"], ["m.onnx"], "external data"),
    (["a.json", "a.json"], ["m.onnx"], "given twice"),
])
def test_output_paths_that_would_destroy_an_input(tmp_path, outputs, inputs, words):
    with pytest.raises(InputError, match=words):
        check_outputs([tmp_path / o for o in outputs], [tmp_path / i for i in inputs])


def test_distinct_outputs_pass(tmp_path):
    check_outputs([tmp_path / "m.int8.onnx", tmp_path / "m.int8.onnx.json", None], [tmp_path / "m.onnx", None, "pytorch"])
