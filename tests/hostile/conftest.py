"""The hostile-input catalogue's tools: tiny artifacts built once, folder snapshots, fault injection.

Every refused input is checked the same way (``refused``): the exit code README documents, exactly
one ``error:`` line of the form "what, where; what to do" and no traceback, and the watched folder
byte for byte (and mode for mode) as it was, so nothing was changed, half-written or left behind.

Faults that need privileges on a real machine (a read-only folder, a full disk) are injected at
the file-system calls every writer goes through (``os.open``, ``os.mkdir``, ``open``, ``os.replace``)
for paths under one folder, so the tests run as root and in CI alike. docs/results/hostile.txt
records the same cases run against a real read-only mount and a full tmpfs.
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import io
import os
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import error_line, run_cli

TINY_TOML = """\
[model]
width = 0.0625
input_size = 32
num_classes = 10
gamma = 0.5
[preprocess]
resize = 32
crop = 32
[validate]
batches = [1, 2]
samples = 2
[calibrate]
num_images = 32
batch_size = 16
[evaluate]
limit = 32
[bench]
batches = [1]
warmup = 1
iterations = 2
min_seconds = 0.0
[run]
variants = ["fp32"]
"""


def snapshot(root: Path) -> dict[str, tuple]:
    """relative path -> (kind, sha256 or None, mode) for everything under ``root`` (hidden files too)."""
    out: dict[str, tuple] = {}
    if not root.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            p = Path(dirpath) / d
            out[str(p.relative_to(root))] = ("dir", None, p.lstat().st_mode)
        for f in filenames:
            p = Path(dirpath) / f
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else os.readlink(p)
            out[str(p.relative_to(root))] = ("file", digest, p.lstat().st_mode)
    return out


def refused(args: list[str], cwd: Path, code: int, match: str | None = None, watch: Path | None = None) -> str:
    """Run the CLI; assert the exit code, one 'error: what; what to do' line, and an unchanged folder."""
    watch = watch or cwd
    before = snapshot(watch)
    res = run_cli([str(a) for a in args], cwd=cwd)
    assert res.exit_code == code, f"exit {res.exit_code}, wanted {code}: {res.output}"
    line = error_line(res)
    assert "; " in line, f"no 'what to do' part: {line}"
    assert "Traceback" not in res.output and "Exception" not in res.output, res.output
    if match:
        assert re.search(match, line), line
    after = snapshot(watch)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert not changed, f"changed or appeared: {changed}"
    return line


def result_file(kind: str, record: dict) -> dict:
    """A result record as the stages write it: with the format tag of its kind where result files
    carry one (issue 10's sidecar module), so the report reads it as ours."""
    try:
        from attnvgg.sidecar import format_tag
    except ImportError:
        return dict(record)
    return {"format": format_tag(kind), "artifacts": {}, **record}


def rehash_sidecar(artifact: Path) -> None:
    """After a test rewrites a model on purpose, make its sidecar describe the new bytes (a
    consistent, deliberately broken model rather than a stale sidecar)."""
    import json

    from attnvgg.artifacts import onnx_hash

    side = artifact.with_name(artifact.name + ".json")
    data = json.loads(side.read_text())
    for key in ("artifact_sha256", "onnx_sha256", "onnx_hash"):
        if key in data:
            data[key] = onnx_hash(artifact)
    side.write_text(json.dumps(data))


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> Path:
    """model.onnx (+sidecar), model.sim.onnx, model.fp16.onnx, model.int8.onnx of the tiny model."""
    from attnvgg.calibration.int8 import calibrate
    from attnvgg.config import CalibrateSpec, ExportSpec, Fp16Spec, ModelSpec, PreprocessSpec, default_tolerances
    from attnvgg.data import open_dataset
    from attnvgg.export.fp16 import convert_fp16
    from attnvgg.export.onnx import export_onnx
    from attnvgg.export.simplify import simplify_onnx

    root = tmp_path_factory.mktemp("hostile-models")
    pre = PreprocessSpec(resize=32, crop=32)
    spec = ModelSpec(width=1 / 16, input_size=32, num_classes=10, gamma=0.5)
    export_onnx(spec, ExportSpec(batch_max=8), root / "model.onnx", preprocess=pre)
    simplify_onnx(root / "model.onnx", root / "model.sim.onnx")
    convert_fp16(root / "model.sim.onnx", root / "model.fp16.onnx", Fp16Spec(check=False),
                 tolerance=default_tolerances()["fp16"], log=lambda m: None)
    calibrate(root / "model.sim.onnx", open_dataset("builtin:calib", pre), root / "model.int8.onnx",
              CalibrateSpec(num_images=32, batch_size=16, cache=False), log=lambda m: None, progress=False)
    (root / "tiny.toml").write_text(TINY_TOML)
    return root


@pytest.fixture
def work(tmp_path, tiny_models) -> Path:
    """A private copy of the tiny artifacts (a test may be hostile to its own folder)."""
    dest = tmp_path / "w"
    shutil.copytree(tiny_models, dest)
    return dest


# ------------------------------------------------------------------------------ fault injection

def _under(path, folder: Path) -> bool:
    try:
        p = Path(os.path.abspath(os.fsdecode(path)))
    except TypeError:
        return False
    f = Path(os.path.abspath(folder))
    return p == f or f in p.parents


_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


class Faults:
    """Make one folder read-only or full, as the kernel would answer (EROFS / ENOSPC)."""

    def __init__(self, monkeypatch):
        self.mp = monkeypatch

    def read_only(self, folder: Path) -> None:
        folder = Path(folder)
        real_os_open, real_mkdir, real_open, real_replace = os.open, os.mkdir, builtins.open, os.replace

        def ro(path):
            return OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))

        def os_open(path, flags, *a, **k):
            if flags & _WRITE_FLAGS and _under(path, folder):
                raise ro(path)
            return real_os_open(path, flags, *a, **k)

        def mkdir(path, *a, **k):
            if _under(path, folder) and not os.path.isdir(path):
                raise ro(path)
            return real_mkdir(path, *a, **k)

        def open_(file, mode="r", *a, **k):
            if isinstance(file, (str, bytes, os.PathLike)) and set(mode) & set("wax+") and _under(file, folder):
                raise ro(file)
            return real_open(file, mode, *a, **k)

        def replace(src, dst, *a, **k):
            if _under(dst, folder):
                raise ro(dst)
            return real_replace(src, dst, *a, **k)

        self.mp.setattr(os, "open", os_open)
        self.mp.setattr(os, "mkdir", mkdir)
        self.mp.setattr(builtins, "open", open_)
        self.mp.setattr(io, "open", open_)
        self.mp.setattr(os, "replace", replace)

    def disk_full(self, folder: Path, after_bytes: int = 512) -> None:
        """Files under ``folder`` open, take ``after_bytes`` bytes, then every write fails with ENOSPC."""
        folder = Path(folder)
        real_open = builtins.open

        class Full:
            def __init__(self, f):
                self._f = f
                self._n = 0

            def write(self, data):
                room = max(0, after_bytes - self._n)
                if len(data) > room:
                    if room:
                        self._f.write(data[:room])
                        self._n += room
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                self._n += len(data)
                return self._f.write(data)

            def __getattr__(self, name):
                return getattr(self._f, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self._f.close()

            def __iter__(self):
                return iter(self._f)

        def open_(file, mode="r", *a, **k):
            f = real_open(file, mode, *a, **k)
            if isinstance(file, (str, bytes, os.PathLike)) and set(mode) & set("wax+") and _under(file, folder):
                return Full(f)
            return f

        self.mp.setattr(builtins, "open", open_)
        self.mp.setattr(io, "open", open_)


@pytest.fixture
def faults(monkeypatch) -> Faults:
    return Faults(monkeypatch)
