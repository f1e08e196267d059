"""Run folder, content hashes and atomic writes.

Every artifact is written to a temporary name in the destination folder and renamed into
place, so a crash never leaves a half-written model or engine that a later stage would trust.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from attnvgg.errors import InputError


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_json(obj: Any) -> str:
    """Hash of a JSON-serialisable object, independent of key order."""
    return sha256_bytes(json.dumps(obj, sort_keys=True, default=str).encode())


def onnx_hash(path: str | os.PathLike) -> str:
    """Hash of an ONNX model including its external data file, if any."""
    path = Path(path)
    h = hashlib.sha256(sha256_file(path).encode())
    data = external_data_path(path)
    if data.exists():
        h.update(sha256_file(data).encode())
    return h.hexdigest()


def external_data_path(onnx_path: str | os.PathLike) -> Path:
    p = Path(onnx_path)
    return p.with_name(p.name + ".data")


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it to ``dest`` only if the block succeeds."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_files(dest_dir: str | os.PathLike) -> Iterator[Path]:
    """Stage several files in a temp folder beside ``dest_dir``; move them in on success.

    Files are moved in the order of their modification time, oldest first, so the file
    written last (e.g. the ``.onnx`` that references a ``.onnx.data``) appears last.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".staging-", dir=dest_dir))
    try:
        yield stage
        files = sorted((p for p in stage.iterdir() if p.is_file()), key=lambda p: p.stat().st_mtime_ns)
        for p in files:
            os.replace(p, dest_dir / p.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def write_bytes(dest: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
    return Path(dest)


def write_text(dest: str | os.PathLike, text: str) -> Path:
    return write_bytes(dest, text.encode())


def json_text(obj: Any) -> str:
    """The JSON every result file holds (``--json -`` prints the same to stdout)."""
    return json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"


def write_json(dest: str | os.PathLike, obj: Any) -> Path:
    return write_text(dest, json_text(obj))


def read_json(path: str | os.PathLike) -> Any:
    with open(path) as f:
        return json.load(f)


def _json_default(obj: Any) -> Any:
    import dataclasses

    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def sidecar_path(artifact: str | os.PathLike) -> Path:
    """The JSON that describes an artifact: ``model.onnx`` -> ``model.onnx.json``."""
    p = Path(artifact)
    return p.with_name(p.name + ".json")


def check_outputs(outputs: Iterable[str | os.PathLike | None], inputs: Iterable[str | os.PathLike | None]) -> None:
    """The one output-path check of every command: an output may be neither one of the command's
    inputs nor a file that belongs to one (its sidecar ``.json``, its ONNX external ``.data``), nor
    another output. Raises InputError before anything is written."""
    owned: dict[Path, str] = {}
    for i in inputs:
        if i is None or str(i) == "pytorch":
            continue
        p = Path(i).resolve()
        owned[p] = f"the input {i}"
        owned[sidecar_path(p)] = f"the sidecar of the input {i}"
        owned[external_data_path(p)] = f"the external data of the input {i}"
    seen: dict[Path, str] = {}
    for o in outputs:
        if o is None:
            continue
        p = Path(o).resolve()
        if p in owned:
            raise InputError(f"output {o} is {owned[p]}; writing it would destroy what the command reads",
                             "write the output to another path")
        if p in seen:
            raise InputError(f"output {o} is given twice (also as {seen[p]})", "give each output its own path")
        seen[p] = str(o)


def file_size(path: str | os.PathLike) -> int:
    """Size of an artifact on disk, including an ONNX external data file."""
    p = Path(path)
    size = p.stat().st_size
    data = external_data_path(p)
    if p.suffix == ".onnx" and data.exists():
        size += data.stat().st_size
    return size
