"""``attnvgg run`` under hostile conditions: failing checks, tampered files, copied folders,
wrong-shaped manifests, partial --stages, and a second run on the same folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from tests.conftest import error_line, run_cli
from tests.hostile.conftest import refused

RUN = ["run", "--preset", "vgg16-224", "--config", "tiny.toml"]


def test_run_exits_1_on_a_failed_check_and_again_when_cached(work):
    """It once exited 0 while results/parity-*.json said "passed": false."""
    tight = ["--set", "validate.tolerances.fp32.atol=0.0", "--set", "validate.tolerances.fp32.rtol=0.0"]
    args = [*RUN, "--out", "r", "--stages", "export,simplify,validate,report", *tight]
    res = run_cli(args, cwd=work)
    assert res.exit_code == 1, res.output
    assert any(ln.startswith("[") and "validate:fp32" in ln and "FAILED" in ln for ln in res.output.splitlines())
    assert "1 check(s) failed: validate:fp32" in error_line(res)
    parity = json.loads((work / "r/results/parity-fp32.json").read_text())
    assert parity["passed"] is False
    assert (work / "r/report/report.json").is_file()           # the other stages finished
    again = run_cli(args, cwd=work)
    assert again.exit_code == 1 and "FAILED (cached)" in again.output, again.output
    ok = run_cli([*RUN, "--out", "r", "--stages", "export,simplify,validate,report"], cwd=work)
    assert ok.exit_code == 0, ok.output
    assert json.loads((work / "r/results/parity-fp32.json").read_text())["passed"] is True


def test_run_stages_without_the_variant_stages_validates_what_it_has(work):
    """README's ``run --stages export,simplify,validate`` on a fresh folder once exited 2 wanting model.fp16.onnx;
    ``--stages export,simplify,fp16`` printed a report path it never wrote."""
    every = ["--set", 'run.variants=["fp32","fp16","int8-tensorrt","int8-cpu"]']
    res = run_cli([*RUN, "--out", "r", "--stages", "export,simplify,validate", *every], cwd=work)
    assert res.exit_code == 0, res.output
    assert (work / "r/results/parity-fp32.json").is_file()
    for v in ("fp16", "int8-tensorrt", "int8-cpu"):
        assert any(f"validate:{v}" in ln and "skipped:" in ln and "is not selected" in ln for ln in res.output.splitlines())
    assert "report: not written" in res.output
    res2 = run_cli([*RUN, "--out", "r", "--stages", "export,simplify,fp16", *every], cwd=work)
    assert res2.exit_code == 0, res2.output
    assert "report: not written" in res2.output and not (work / "r/report").exists()


def test_manifest_uses_content_hashes_and_survives_cp_a(work):
    """A model overwritten with random bytes of the same size and mtime was once "cached";
    a copied run folder (cp -a runs/a runs/b) pointed into the first one."""
    args = [*RUN, "--stages", "export,simplify,validate"]
    assert run_cli([*args, "--out", "a"], cwd=work).exit_code == 0
    manifest = json.loads((work / "a/manifest.json").read_text())
    outputs = [p for s in manifest["steps"].values() for p in s["outputs"]]
    assert outputs and not any(os.path.isabs(p) for p in outputs), outputs
    subprocess.run(["cp", "-a", str(work / "a"), str(work / "b")], check=True)
    shutil.rmtree(work / "a")
    copied = run_cli([*args, "--out", "b"], cwd=work)
    assert copied.exit_code == 0, copied.output
    steps = [ln for ln in copied.output.splitlines() if ln.startswith("[")]
    assert steps and all(ln.endswith("cached") or "not selected" in ln for ln in steps), steps

    sim = work / "b/model.sim.onnx"
    st = sim.stat()
    sim.write_bytes(os.urandom(st.st_size))
    os.utime(sim, ns=(st.st_atime_ns, st.st_mtime_ns))
    tampered = run_cli([*args, "--out", "b"], cwd=work)
    assert tampered.exit_code == 0, tampered.output
    line = next(ln for ln in tampered.output.splitlines() if "simplify" in ln and ln.startswith("["))
    assert not line.endswith("cached"), tampered.output       # the simplified model is made again


@pytest.mark.parametrize("content", ['{"steps": []}', "[1, 2, 3]", '{"steps": 7}'], ids=["steps-list", "list", "steps-int"])
def test_wrong_shaped_manifest_is_refused(work, content):
    (work / "r").mkdir()
    (work / "r/manifest.json").write_text(content)
    refused([*RUN, "--out", "r", "--stages", "export"], work, 2, r"not an attnvgg run manifest")


def test_second_run_on_a_folder_waits_for_the_first(tmp_path):
    """Two ``attnvgg run`` on one folder once both redid every stage; the second now waits."""
    from attnvgg.manifest import LOCK, run_lock

    run_dir = tmp_path / "r"
    run_dir.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(run_dir / LOCK)!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX); os.pwrite(fd, str(os.getpid()).encode(), 0)\n"
        "print('locked', flush=True); time.sleep(2.0)\n")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    lines: list[str] = []
    t0 = time.monotonic()
    with run_lock(run_dir, lines.append):
        waited = time.monotonic() - t0
    holder.wait(timeout=10)
    assert waited >= 1.0, waited
    assert len(lines) == 1 and lines[0].startswith("waiting: another attnvgg run") and str(holder.pid) in lines[0]
