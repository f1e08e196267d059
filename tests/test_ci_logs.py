"""What a CI log shows: no tqdm `\\r` redraws when the output is a pipe; a bar on a terminal."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from attnvgg import console

ROOT = Path(__file__).resolve().parents[1]


def piped(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run the attnvgg CLI as CI does: stdout and stderr into one pipe, CI=true."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CI": "true"}
    env.pop("FORCE_COLOR", None)
    return subprocess.run([sys.executable, "-c", "from attnvgg.cli import main; main()", *args], cwd=cwd, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=900)


def test_calibrate_and_evaluate_write_no_carriage_return_into_a_pipe(tiny_exports, tmp_path):
    import shutil

    model = tmp_path / "model.onnx"
    shutil.copy(tiny_exports["global"], model)
    shutil.copy(str(tiny_exports["global"]) + ".json", str(model) + ".json")
    cal = piped(["calibrate", str(model), "--num-images", "48", "--batch-size", "8", "--no-cache"], tmp_path)
    assert cal.returncode == 0, cal.stdout.decode()[-2000:]
    assert b"\r" not in cal.stdout and b"wrote " in cal.stdout
    ev = piped(["evaluate", str(tmp_path / "model.int8.onnx"), "--limit", "64", "--batch-size", "8"], tmp_path)
    assert ev.returncode == 0, ev.stdout.decode()[-2000:]
    assert b"\r" not in ev.stdout and b"top-1" in ev.stdout


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_terminal(monkeypatch):
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    list(console.progress(range(5), 5, "calibrate"))
    assert "\r" in term.getvalue() and "calibrate" in term.getvalue()     # a terminal gets the bar
    pipe = io.StringIO()
    monkeypatch.setattr(sys, "stderr", pipe)
    assert list(console.progress(range(5), 5, "calibrate")) == [0, 1, 2, 3, 4]
    assert pipe.getvalue() == ""                                            # a pipe gets nothing
    console.set_level(console.QUIET)
    try:
        monkeypatch.setattr(sys, "stderr", term := _Terminal())
        list(console.progress(range(5), 5, "calibrate"))
        assert term.getvalue() == ""                                        # -q: no bar even on a terminal
    finally:
        console.set_level(console.NORMAL)
