"""Run folder, content hashes and atomic writes.

Every artifact is written to a temporary name in the destination folder and renamed into
place, so a crash never leaves a half-written model or engine that a later stage would trust.

Why the temporary names carry the writer's PID and host (``.model.onnx.4242@1a2b3c.x8k2.tmp``,
``.export-4242@1a2b3c-x8k2/``): a ``kill -9`` leaves them behind, and the next write of the same
artifact removes exactly those whose writer is provably dead (same host, PID gone). A live
writer's files are never touched; legacy names without a PID are removed only when a day old.

Why the umask: ``mkstemp`` creates 0600 files; a model that other users or a serving container
must read ends up unreadable. Renamed-in files get ``0666 & ~umask``, as ``open()`` would give.

Why OSErrors are translated here: a read-only folder, a full disk or an output whose parent is a
regular file are the user's environment, not a bug; every writer goes through these helpers, so
they become one-line errors (exit 2 for a path the user can fix, 3 for a full disk) in one place.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

from attnvgg.errors import InputError

from attnvgg.errors import AttnvggError, InputError, StageError

#: Legacy temporary names (no PID) older than this are stale.
LEGACY_STALE_S = 24 * 3600
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]
_TAG_RE = re.compile(r"(?P<pid>\d+)@(?P<host>[0-9a-f]{6})")
_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG}
_NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}
_NOT_A_DIR = {errno.ENOTDIR, errno.EEXIST}
_WRITE_ERRNOS = _NO_SPACE | _NOT_WRITABLE | _NOT_A_DIR


def _tag() -> str:
    return f"{os.getpid()}@{_HOST}"


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


def current_umask() -> int:
    """The process umask, read without changing it where /proc allows (no race with threads)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def _first_file_ancestor(path: Path) -> Path | None:
    for p in [path, *path.parents]:
        if p.exists() and not p.is_dir():
            return p
    return None


def _existing_ancestor(path: Path) -> Path:
    for p in [path, *path.parents]:
        if p.is_dir():
            return p
    return path


def write_error(exc: OSError, dest: str | os.PathLike, folder: bool = False) -> AttnvggError:
    """An OSError met while writing ``dest`` (a file, or with ``folder`` a folder to create) as one line."""
    dest = Path(dest)
    why = exc.strerror or type(exc).__name__
    what = f"create folder {dest}" if folder else f"write {dest}"
    if exc.errno in _NO_SPACE:
        return StageError(f"no space left on the device to {what} ({why}); nothing was written",
                          "free disk space (or choose another --out) and rerun")
    if exc.errno in _NOT_A_DIR:
        blocker = _first_file_ancestor(dest if folder else dest.parent)
        if blocker is not None:
            return InputError(f"cannot {what}: {blocker} is a file, not a folder",
                              "choose an output path whose folders are folders")
    if exc.errno in _NOT_WRITABLE:
        where = _existing_ancestor(dest.parent)
        return InputError(f"cannot {what}: {where} is not writable ({why})",
                          "choose a writable output folder (--out), or fix its permissions")
    return StageError(f"cannot {what} ({why})", "check the output folder and rerun")


def _is_write_error(exc: OSError, dest_dir: Path, tmp: Path | None = None) -> bool:
    """Whether an OSError raised inside a write block is about the write (not reading an input)."""
    if exc.errno not in _WRITE_ERRNOS:
        return False
    name = getattr(exc, "filename", None)
    if name is None:
        return True
    try:
        p = Path(os.fsdecode(name)).resolve()
        return p == dest_dir.resolve() or dest_dir.resolve() in p.parents or (tmp is not None and p == tmp.resolve())
    except (OSError, ValueError):
        return False


def ensure_dir(folder: str | os.PathLike) -> Path:
    """``mkdir -p`` with one-line errors (a parent that is a file, a read-only tree, a full disk)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(exc, folder, folder=True) from exc
    if not folder.is_dir():
        raise InputError(f"output folder {folder} is a file", "choose a folder path")
    return folder


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    return True


_LEGACY_RE = re.compile(r"[a-z0-9_]{8}")   # tempfile's random part: what older attnvgg versions left


def _is_stale(entry: Path, now: float, middle: str) -> bool:
    m = _TAG_RE.match(middle)
    if m:
        if m.group("host") != _HOST:
            return False          # another machine's writer (a shared file system): not ours to judge
        return not _pid_alive(int(m.group("pid")))
    if not _LEGACY_RE.fullmatch(middle):
        return False              # not a name we make: never touch it
    try:
        return now - entry.lstat().st_mtime > LEGACY_STALE_S
    except OSError:
        return False


def clean_stale(folder: str | os.PathLike, prefix: str, suffix: str = "") -> list[Path]:
    """Remove temporary files/folders named ``prefix...suffix`` in ``folder`` whose writer is dead.

    Called by every writer before it writes, so what a ``kill -9`` left is cleaned on the next
    run of the same stage. Returns what was removed.
    """
    folder = Path(folder)
    removed: list[Path] = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    now = time.time()
    for e in entries:
        name = e.name
        if not (name.startswith(prefix) and name.endswith(suffix)) or len(name) <= len(prefix) + len(suffix):
            continue
        if not _is_stale(e, now, name[len(prefix):len(name) - len(suffix)]):
            continue
        try:
            if e.is_dir() and not e.is_symlink():
                shutil.rmtree(e)
            else:
                e.unlink()
            removed.append(e)
        except OSError:
            pass
    return removed


def _honour_umask(path: Path) -> None:
    os.chmod(path, 0o666 & ~current_umask())


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it to ``dest`` only if the block succeeds."""
    dest = Path(dest)
    tmp_path: Path | None = None
    try:
        ensure_dir(dest.parent)
        clean_stale(dest.parent, f".{dest.name}.", ".tmp")
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.{_tag()}.", suffix=".tmp", dir=dest.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        yield tmp_path
        _honour_umask(tmp_path)
        os.replace(tmp_path, dest)
    except OSError as exc:
        if _is_write_error(exc, dest.parent, tmp_path):
            raise write_error(exc, dest) from exc
        raise
    finally:
        if tmp_path is not None and tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def temp_dir(parent: str | os.PathLike, kind: str, dest: str | os.PathLike | None = None) -> Iterator[Path]:
    """A scratch folder ``parent/.KIND-PID@HOST-XXXX/`` (stale ones of the same kind are removed first);
    ``dest`` is what it is for, named in errors."""
    parent = ensure_dir(parent)
    clean_stale(parent, f".{kind}-")
    try:
        stage = Path(tempfile.mkdtemp(prefix=f".{kind}-{_tag()}-", dir=parent))
    except OSError as exc:
        raise write_error(exc, dest or parent / f".{kind}") from exc
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def scratch_prefix(kind: str) -> str:
    """A prefix for a scratch folder in the system temp dir (``attnvgg-KIND-PID@HOST-``), after
    removing the ones a killed run of the same kind left there (large copies of models)."""
    clean_stale(tempfile.gettempdir(), f"attnvgg-{kind}-")
    return f"attnvgg-{kind}-{_tag()}-"


@contextlib.contextmanager
def atomic_files(dest_dir: str | os.PathLike) -> Iterator[Path]:
    """Stage several files in a temp folder beside ``dest_dir``; move them in on success.

    Files are moved in the order of their modification time, oldest first, so the file
    written last (e.g. the ``.onnx`` that references a ``.onnx.data``) appears last.
    """
    dest_dir = Path(dest_dir)
    with temp_dir(dest_dir, "staging", dest_dir / "(staged files)") as stage:
        current = dest_dir / "(staged files)"
        try:
            yield stage
            files = sorted((p for p in stage.iterdir() if p.is_file()), key=lambda p: p.stat().st_mtime_ns)
            mode = 0o666 & ~current_umask()
            for p in files:
                current = dest_dir / p.name
                os.chmod(p, mode)
                os.replace(p, current)
        except OSError as exc:
            if _is_write_error(exc, dest_dir):
                raise write_error(exc, current) from exc
            raise


def write_bytes(dest: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
    return Path(dest)


def write_text(dest: str | os.PathLike, text: str) -> Path:
    return write_bytes(dest, text.encode())


def strict_json(obj: Any) -> Any:
    """``obj`` with every NaN/Inf replaced by null, and where there were any, a ``non_finite`` map.

    Strict JSON parsers (browsers, jq, Go, Java) reject the bare ``NaN``/``Infinity`` tokens that
    Python writes. A dict gets ``"non_finite": {"cases.0.metrics.max_abs": "nan", ...}`` so
    nothing is lost: null alone would read as "missing".
    """
    plain = json.loads(json.dumps(obj, default=_json_default))
    found: dict[str, str] = {}

    def clean(v: Any, where: str) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            found[where] = "nan" if v != v else ("inf" if v > 0 else "-inf")
            return None
        if isinstance(v, dict):
            return {k: clean(x, f"{where}.{k}" if where else str(k)) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x, f"{where}.{i}" if where else str(i)) for i, x in enumerate(v)]
        return v

    out = clean(plain, "")
    if found and isinstance(out, dict):
        out["non_finite"] = {**(out.get("non_finite") or {}), **found} if isinstance(out.get("non_finite"), dict) \
            else found
    return out


def json_text(obj: Any) -> str:
    """The strict JSON every result file holds (``--json -`` prints the same to stdout)."""
    return json.dumps(strict_json(obj), indent=2, sort_keys=False, allow_nan=False) + "\n"


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
