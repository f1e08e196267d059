"""Stage caching for ``attnvgg run``: a manifest of content hashes in the run folder.

A step's key hashes its stage name, its settings, the content of its input files and the
attnvgg version. A step is skipped when its key matches the manifest and its outputs are
still there with the hashes recorded; otherwise it runs and the manifest is rewritten
(atomically) right after it, so an interrupted run resumes at the step it was in.
File hashes are memoised by (path, size, mtime) so a rerun does not re-read 556 MB models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from attnvgg import __version__
from attnvgg.artifacts import read_json, sha256_file, sha256_json, write_json
from attnvgg.errors import InputError

MANIFEST = "manifest.json"


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


class Manifest:
    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / MANIFEST
        data: dict[str, Any] = {}
        if self.path.is_file():
            try:
                data = read_json(self.path)
            except (ValueError, OSError):
                data = {}  # a corrupt manifest only costs a rerun
        self.steps: dict[str, dict] = data.get("steps", {})
        self.file_hashes: dict[str, list] = data.get("file_hashes", {})

    def save(self) -> None:
        write_json(self.path, {"attnvgg": __version__, "steps": self.steps, "file_hashes": self.file_hashes})

    def hash_file(self, path: Path) -> str:
        p = Path(path)
        st = p.stat()
        key = str(p.resolve())
        memo = self.file_hashes.get(key)
        if memo and memo[0] == st.st_size and memo[1] == st.st_mtime_ns:
            return memo[2]
        h = sha256_file(p)
        data = p.with_name(p.name + ".data")
        if p.suffix == ".onnx" and data.exists():
            h = sha256_json([h, self.hash_file(data)])
        self.file_hashes[key] = [st.st_size, st.st_mtime_ns, h]
        return h

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
        rec = self.steps.get(step.name)
        if not rec or rec.get("key") != key or rec.get("status") != "done":
            return False
        for p, h in rec.get("outputs", {}).items():
            path = Path(p)
            if not path.exists() or self.hash_file(path) != h:
                return False
        return True

    def record(self, step: Step, key: str, seconds: float, info: dict | None, status: str = "done") -> None:
        self.steps[step.name] = {
            "stage": step.stage,
            "key": key,
            "status": status,
            "seconds": round(seconds, 3),
            "outputs": {str(p): self.hash_file(Path(p)) for p in step.outputs if Path(p).exists()},
            "info": info or {},
        }
        self.save()

    def forget(self, name: str) -> None:
        self.steps.pop(name, None)
        self.save()

