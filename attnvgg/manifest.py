"""Stage caching for ``attnvgg run``: a manifest of content hashes in the run folder.

A step's key hashes its stage name, its settings, the content of its input files and the
attnvgg version. A step is skipped when its key matches the manifest and its outputs are
still there with the hashes recorded; otherwise it runs and the manifest is rewritten
(atomically) right after it, so an interrupted run resumes at the step it was in.

Why content hashes every run, not size + mtime: a file rewritten with the same size and mtime
(random bytes over an INT8 model, a restored backup) must not pass as the cached artifact. Each
file is hashed at most once per run (a per-process memo, dropped for a step's outputs when the
step writes them), which keeps a full-size rerun under 10 s (docs/results/runs.txt).

Why paths are stored relative to the run folder: ``cp -a runs/a runs/b`` must give a run folder
that works on its own (and ``runs/b`` must never vouch for files in ``runs/a``).

Why a lock: two ``attnvgg run`` on one folder would both redo every stage and race on the same
files. The second waits for the first (saying so), then finds the stages cached.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from attnvgg import __version__
from attnvgg.artifacts import ensure_dir, read_json, sha256_file, sha256_json, write_error, write_json
from attnvgg.errors import InputError

MANIFEST = "manifest.json"
LOCK = ".attnvgg-run.lock"


@dataclass
class Step:
    name: str                                  # unique in the run, e.g. "calibrate:int8-tensorrt"
    stage: str                                 # the stage it belongs to, for --stages
    fn: Callable[[], dict | None]              # does the work; returns facts for the manifest
    inputs: list[Path] = field(default_factory=list)
    settings: dict | Callable[[], dict] = field(default_factory=dict)  # callable: resolved only if the step runs
    outputs: list[Path] = field(default_factory=list)
    skip_reason: Callable[[], str | None] | None = None  # e.g. TensorRT absent: the step is skipped
    optional_inputs: bool = False              # inputs that do not exist are left out (the report)
    variant: str | None = None                 # the model variant the step measures (validate/evaluate/bench)


def _warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr)


class Manifest:
    def __init__(self, run_dir: Path, warn: Callable[[str], None] = _warn):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / MANIFEST
        self._memo: dict[str, str] = {}
        data: Any = {}
        if self.path.is_file():
            try:
                data = read_json(self.path)
            except (ValueError, UnicodeDecodeError):
                warn(f"{self.path} is not valid JSON; rerunning every stage (it is rewritten as the stages finish)")
                data = {}
            except OSError as exc:
                raise InputError(f"cannot read {self.path} ({exc.strerror})", "check the run folder's permissions") from exc
            if not (isinstance(data, dict) and isinstance(data.get("steps", {}), dict)):
                raise InputError(
                    f"{self.path} is valid JSON but not an attnvgg run manifest (expected an object whose "
                    f"'steps' is an object, got {_shape(data)})",
                    "the folder may belong to something else: choose another --out, or delete the file to rerun every stage")
        steps = data.get("steps", {}) if isinstance(data, dict) else {}
        # records of the wrong shape are dropped (their steps rerun), never trusted
        self.steps: dict[str, dict] = {k: v for k, v in steps.items() if isinstance(v, dict)}

    def save(self) -> None:
        write_json(self.path, {"attnvgg": __version__, "steps": self.steps})

    def rel(self, path: Path) -> str:
        """A path as the manifest stores it: relative to the run folder when inside it."""
        p, root = Path(path).resolve(), self.run_dir.resolve()
        return p.relative_to(root).as_posix() if root in p.parents else str(path)

    def abs(self, stored: str) -> Path:
        p = Path(stored)
        return p if p.is_absolute() else self.run_dir / p

    def hash_file(self, path: Path) -> str:
        """Content hash (an ONNX file with its external data), computed at most once per run."""
        p = Path(path)
        key = str(p.resolve())
        if key in self._memo:
            return self._memo[key]
        h = sha256_file(p)
        data = p.with_name(p.name + ".data")
        if p.suffix == ".onnx" and data.exists():
            h = sha256_json([h, sha256_file(data)])
        self._memo[key] = h
        return h

    def forget_hashes(self, paths: list[Path]) -> None:
        for p in paths:
            self._memo.pop(str(Path(p).resolve()), None)

    def key(self, step: Step) -> str:
        if step.optional_inputs:
            step.inputs = [p for p in step.inputs if Path(p).exists()]
        missing = [str(p) for p in step.inputs if not Path(p).exists()]
        if missing:
            raise InputError(f"step {step.name} needs {', '.join(missing)}, which does not exist",
                             "run the earlier stages first (drop --stages, or add the stage that makes it)")
        return sha256_json({
            "stage": step.stage,
            "settings": step.settings() if callable(step.settings) else step.settings,
            "inputs": {Path(p).name: self.hash_file(Path(p)) for p in step.inputs},
            "attnvgg": __version__,
        })

    def is_fresh(self, step: Step, key: str) -> bool:
        """The step's record matches ``key`` and its outputs are there, unchanged. A step whose
        check failed is fresh too (``status`` says so): rerunning it would fail the same way."""
        rec = self.steps.get(step.name)
        if not rec or rec.get("key") != key or rec.get("status") not in ("done", "failed"):
            return False
        outputs = rec.get("outputs", {})
        if not isinstance(outputs, dict):
            return False
        for p, h in outputs.items():
            path = self.abs(str(p))
            if not path.exists() or self.hash_file(path) != h:
                return False
        return True

    def record(self, step: Step, key: str, seconds: float, info: dict | None, status: str = "done") -> None:
        self.forget_hashes(step.outputs)
        self.steps[step.name] = {
            "stage": step.stage,
            "key": key,
            "status": status,
            "seconds": round(seconds, 3),
            "outputs": {self.rel(Path(p)): self.hash_file(Path(p)) for p in step.outputs if Path(p).exists()},
            "info": info or {},
        }
        self.save()

    def forget(self, name: str) -> None:
        self.steps.pop(name, None)
        self.save()


def _shape(data: Any) -> str:
    if isinstance(data, dict):
        return f"'steps' of type {type(data.get('steps')).__name__}"
    return f"a JSON {type(data).__name__}"


@contextlib.contextmanager
def run_lock(run_dir: Path, echo: Callable[[str], None]) -> Iterator[None]:
    """Hold an exclusive lock on the run folder for the whole run (flock: released if we die)."""
    ensure_dir(run_dir)
    path = Path(run_dir) / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise write_error(exc, path) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            echo(f"waiting: another attnvgg run (pid {holder}) is using {run_dir}; "
                 "this one continues when it finishes (Ctrl-C to stop)")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)   # releases the lock
