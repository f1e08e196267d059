"""What must stay cheap to import: the one subprocess check (it was copied in three test files).

``attnvgg --help`` loads no numpy, torch or ONNX; the data package loads no torch or PIL; the
report reads result files without torch or ONNX Runtime (matplotlib draws the plot).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.report.conftest import write_results

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "onnxruntime", "onnx", "tensorrt", "matplotlib", "numpy", "PIL")


def loaded_after(code: str) -> list[str]:
    """The heavy modules a fresh interpreter has loaded after running ``code``."""
    probe = code + f"\nimport sys\nprint('LOADED', sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("LOADED"))
    return eval(line.split(" ", 1)[1])  # noqa: S307 - our own print of a list of names


@pytest.mark.parametrize("case", ["help", "cli", "data", "report"])
def test_light_imports(case, tmp_path):
    if case == "help":
        code = ("from attnvgg.cli import cli\ntry:\n    cli(['--help'], prog_name='attnvgg')\n"
                "except SystemExit:\n    pass")
        assert loaded_after(code) == []
    elif case == "cli":
        assert not {"torch", "PIL", "numpy"} & set(loaded_after("import attnvgg.cli"))
    elif case == "data":
        assert not {"torch", "PIL"} & set(loaded_after("import attnvgg.data"))
    else:
        run = write_results(tmp_path)
        code = (f"from attnvgg.report import make_report\nmake_report({str(run)!r}, {str(tmp_path / 'out')!r})\n"
                "from attnvgg.cli import cli")
        loaded = loaded_after(code)
        assert not {"torch", "onnxruntime", "onnx", "tensorrt"} & set(loaded) and "matplotlib" in loaded
