"""What a writer leaves on disk: modes under the umask, stale temporaries after kill -9, escaped Markdown."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time

import pytest

from tests.conftest import run_cli
from tests.hostile.conftest import result_file


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield lambda m: os.umask(m)
    os.umask(old)


@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_honour_the_umask(tmp_path, umask, mask, mode):
    """Files written through temp-and-rename were 0600 under umask 022 while model.onnx was 0644."""
    from attnvgg.artifacts import atomic_files, write_json

    umask(mask)
    write_json(tmp_path / "a.json", {"x": 1})
    with atomic_files(tmp_path / "rep") as stage:
        (stage / "r.md").write_text("x")
    for p in (tmp_path / "a.json", tmp_path / "rep" / "r.md"):
        assert stat.S_IMODE(p.stat().st_mode) == mode, (p, oct(p.stat().st_mode))


def test_stage_outputs_are_0644_under_umask_022(work, umask):
    umask(0o022)
    res = run_cli(["convert", "model.sim.onnx", "--precision", "fp16", "--no-check", "-o", "m16.onnx"], cwd=work)
    assert res.exit_code == 0, res.output
    for name in ("m16.onnx", "m16.onnx.json"):
        assert stat.S_IMODE((work / name).stat().st_mode) == 0o644, name


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_temporaries_of_a_killed_writer_are_cleaned(work):
    """kill -9 left .export-XXXX/ folders and .name.XXXX.tmp files forever; the next run of the stage
    removes those whose writer is provably dead, never a live writer's."""
    from attnvgg.artifacts import _HOST

    dead, live = _dead_pid(), os.getpid()
    stale_tmp = work / f".m16.onnx.{dead}@{_HOST}.abc123.tmp"
    live_tmp = work / f".m16.onnx.{live}@{_HOST}.def456.tmp"
    other_host = work / f".m16.onnx.{dead}@ffffff.ghi789.tmp"
    legacy_old = work / ".m16.onnx.k2j4h5ab.tmp"      # tempfile's name from older versions, 2 days old
    legacy_new = work / ".m16.onnx.z9y8x7wv.tmp"      # the same, fresh: maybe a live older writer
    not_ours = work / ".m16.onnx.my-notes.tmp"        # not a name attnvgg makes, however old
    for p in (stale_tmp, live_tmp, other_host, legacy_old, legacy_new, not_ours):
        p.write_bytes(b"")
    day_ago = time.time() - 2 * 24 * 3600
    os.utime(legacy_old, (day_ago, day_ago))
    os.utime(not_ours, (day_ago, day_ago))
    stale_export = work / f".export-{dead}@{_HOST}-q1w2e3"
    stale_export.mkdir()
    (stale_export / "model.onnx").write_bytes(b"half")
    res = run_cli(["convert", "model.sim.onnx", "--precision", "fp16", "--no-check", "-o", "m16.onnx"], cwd=work)
    assert res.exit_code == 0, res.output
    assert not stale_tmp.exists() and not legacy_old.exists()
    assert live_tmp.exists() and other_host.exists() and legacy_new.exists() and not_ours.exists()
    res = run_cli(["export", "--width", "0.0625", "--input-size", "32", "--num-classes", "10", "-o", "e.onnx"], cwd=work)
    assert res.exit_code == 0, res.output
    assert not stale_export.exists()


def test_report_markdown_escapes_names(tmp_path):
    """report.md embedded names unescaped: a '|' broke the table, '<img ...>' became markup."""
    from attnvgg.report import make_report

    res = tmp_path / "results"
    res.mkdir()
    name = "evil|<img src=x onerror=alert(1)>**b**.onnx"
    (res / "acc.json").write_text(json.dumps(result_file("accuracy", {"artifact": name, "runner": "ort|x", "top1": 0.5,
                                                                      "images": 8})))
    (res / "notes.json").write_text(json.dumps(result_file("notes", {"skipped": {"build": "no <b>tensorrt</b> | here"}})))
    out = make_report([res], tmp_path / "rep")
    md = out["markdown"].read_text()
    import re

    assert not re.search(r"(?<!\\)[<>]", md) and "**b**" not in md     # no raw markup left
    assert "evil\\|\\<img src=x onerror=alert(1)\\>\\*\\*b\\*\\*.onnx" in md
    tables, cur = [], []            # every Markdown table: consecutive "|" lines (header, separator, rows)
    for ln in md.splitlines() + [""]:
        if ln.startswith("|"):
            cur.append(ln)
        elif cur:
            tables.append(cur)
            cur = []

    def cells(ln):
        return len(re.findall(r"(?<!\\)\|", ln))

    assert tables
    for header, _sep, *rows in tables:    # a name with '|' never adds a cell
        assert rows and all(cells(ln) == cells(header) for ln in rows), rows
    assert "no \\<b\\>tensorrt\\</b\\> \\| here" in md


def test_stale_calibration_scratch_of_a_killed_run_is_cleaned(work, tmp_path, monkeypatch):
    """Calibration stages a copy of the model in the temp dir; a kill -9 left it there forever."""
    import tempfile

    from attnvgg.artifacts import _HOST

    scratch = tmp_path / "systemtmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    dead = scratch / f"attnvgg-calib-{_dead_pid()}@{_HOST}-abcd"
    dead.mkdir()
    (dead / "model.onnx").write_bytes(b"x" * 100)
    res = run_cli(["calibrate", "model.sim.onnx", "--num-images", "16", "--no-cache", "-o", "q.onnx"], cwd=work)
    assert res.exit_code == 0, res.output
    assert not dead.exists() and list(scratch.iterdir()) == []
