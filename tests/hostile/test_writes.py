"""Hostile output locations: a parent that is a file, a read-only folder, a full disk.

Each once ended in a traceback (FileExistsError, OSError 30, OSError 28). Now: one line, exit 2
for a path the user can fix, 3 for a full disk, and nothing half-written or left behind.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli
from tests.hostile.conftest import refused, result_file, snapshot

TINY = ["--width", "0.0625", "--input-size", "32", "--num-classes", "10"]

PARENT_IS_FILE = [
    ("export", ["export", *TINY, "-o", "afile/model.onnx"]),
    ("simplify", ["simplify", "model.onnx", "-o", "afile/model.sim.onnx"]),
    ("convert", ["convert", "model.sim.onnx", "--precision", "fp16", "-o", "afile/m.fp16.onnx"]),
    ("calibrate", ["calibrate", "model.sim.onnx", "--num-images", "16", "--no-cache", "-o", "afile/q.onnx"]),
    ("evaluate", ["evaluate", "model.sim.onnx", "--limit", "8", "-o", "afile/acc.json"]),
    ("validate-json", ["validate", "model.sim.onnx", "--batches", "1", "--samples", "1", "--json", "afile/p.json"]),
    ("bench-json", ["bench", "model.sim.onnx", "--batches", "1", "--warmup", "0", "--iterations", "1",
                    "--min-seconds", "0", "--json", "afile/b.json"]),
    ("run-out", ["run", "--preset", "vgg16-224", "--config", "tiny.toml", "--out", "afile/run"]),
    ("config-write", ["config", "--write", "afile/c.toml"]),
    ("report-out", ["report", "results", "--out", "afile/rep"]),
]


def _results(work):
    """A minimal accuracy result for report cases."""
    (work / "results").mkdir(exist_ok=True)
    (work / "results" / "acc.json").write_text(json.dumps(result_file("accuracy", {"artifact": "model.sim.onnx",
                                                                                   "top1": 0.5, "images": 8})))


@pytest.mark.parametrize("args", [c[1] for c in PARENT_IS_FILE], ids=[c[0] for c in PARENT_IS_FILE])
def test_output_parent_is_a_file(work, args):
    (work / "afile").write_text("I am a file\n")
    _results(work)
    refused(args, work, 2, r"afile is a file, not a folder")


READ_ONLY = [
    ("export", ["export", *TINY, "-o", "ro/model.onnx"]),
    ("calibrate", ["calibrate", "model.sim.onnx", "--num-images", "16", "--no-cache", "-o", "ro/q.onnx"]),
    ("convert", ["convert", "model.sim.onnx", "--precision", "fp16", "-o", "ro/m.fp16.onnx"]),
    ("report", ["report", "results", "--out", "ro/rep"]),
    ("run", ["run", "--preset", "vgg16-224", "--config", "tiny.toml", "--out", "ro/run"]),
    ("evaluate", ["evaluate", "model.sim.onnx", "--limit", "8", "-o", "ro/acc.json"]),
]


@pytest.mark.parametrize("args", [c[1] for c in READ_ONLY], ids=[c[0] for c in READ_ONLY])
def test_read_only_output_folder(work, faults, args):
    (work / "ro").mkdir()
    _results(work)
    faults.read_only(work / "ro")
    refused(args, work, 2, r"ro is not writable \(Read-only file system\)")


def test_read_only_cache_dir_warns_and_goes_on(work, faults):
    (work / "cache").mkdir()
    faults.read_only(work / "cache")
    before = snapshot(work / "cache")
    res = run_cli(["calibrate", "model.sim.onnx", "--num-images", "16", "--cache-dir", "cache", "-o", "q.onnx"], cwd=work)
    assert res.exit_code == 0, res.output
    assert "warning: cannot write the calibration cache in cache" in res.output
    assert (work / "q.onnx").is_file() and (work / "q.onnx.json").is_file()
    assert snapshot(work / "cache") == before


DISK_FULL = [
    ("calibrate", ["calibrate", "model.sim.onnx", "--num-images", "16", "--no-cache", "-o", "full/q.onnx"]),
    ("convert", ["convert", "model.sim.onnx", "--precision", "fp16", "-o", "full/m.fp16.onnx"]),
    ("export", ["export", *TINY, "-o", "full/model.onnx"]),
]


@pytest.mark.parametrize("args", [c[1] for c in DISK_FULL], ids=[c[0] for c in DISK_FULL])
def test_disk_full(work, faults, args):
    full = work / "full"
    full.mkdir()
    before_full = snapshot(full)
    faults.disk_full(full)
    line = refused(args, work, 3, r"no space left on the device to write .*full", watch=work)
    assert "torchscript" not in line and "exporter" not in line     # a full disk is not the exporter's fault
    assert snapshot(full) == before_full                           # no partial or temporary file left


def test_disk_full_during_run_leaves_no_partial_file(work, faults):
    """``run`` may leave its run folder and manifest (both complete), never a partial or temp file."""
    import json as _json

    from tests.conftest import error_line

    full = work / "full"
    full.mkdir()
    faults.disk_full(full, after_bytes=4096)
    res = run_cli(["run", "--preset", "vgg16-224", "--config", "tiny.toml", "--out", "full/run", "--stages",
                   "export,simplify"], cwd=work)
    assert res.exit_code == 3, res.output
    assert "no space left on the device" in error_line(res)
    files = {str(p.relative_to(full)) for p in full.rglob("*") if p.is_file()}
    # config.toml: the effective config the report's reproduce line names, written whole before any stage
    assert files <= {"run/manifest.json", "run/.attnvgg-run.lock", "run/config.toml"}, files
    if (full / "run/manifest.json").exists():
        _json.loads((full / "run/manifest.json").read_text())     # complete, never half-written
