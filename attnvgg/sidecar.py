"""The one owner of every sidecar and result-file header: schema, write, read, lineage, precision.

An artifact ``model.onnx`` is described by ``model.onnx.json``; nobody else reads or writes that
JSON. Each kind has a ``format`` tag ``attnvgg.<kind>/<version>`` and a short list of fields it
must carry; ``write`` adds the SHA-256 of the file it describes and ``read`` recomputes it on
every read, so a model replaced after its sidecar was written (or a crash between the two renames)
is refused with one line instead of being paired with facts about another file.

Result files (parity, accuracy, bench, mixed-precision search) are JSON of their own with the same
``format`` tag and an ``artifacts`` map ``{path: sha256}`` of what they measured
(``result_header``), so the report can refuse results older than their artifact (``stale_results``).

A data file never decides what code runs: a sidecar whose model spec names a ``factory`` or asks
for ``trust_checkpoint`` is refused by ``model_spec`` unless the same grant came from the command
line or a config the user passed (the ``factory``/``trust`` arguments). Refusing, not ignoring,
because a silently dropped factory would build a different model than the one exported.

Why the hash is cached per (device, inode, size, mtime): reports and stages read the same sidecar
several times; a changed or replaced file has a new inode or mtime and is hashed again.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from attnvgg.artifacts import onnx_hash, sha256_file, sidecar_path, write_json
from attnvgg.config import PRECISIONS, ModelSpec, PreprocessSpec, from_dict
from attnvgg.errors import InputError, first_line
from attnvgg.onnxgraph import detect_precision, load_onnx

# kind -> (version, precision the kind implies or None, required fields and their JSON types)
ARTIFACT_KINDS: dict[str, tuple[int, Optional[str], dict[str, tuple[type, ...]]]] = {
    "export": (1, "fp32", {"model": (dict,), "preprocess": (dict, type(None)), "export": (dict,)}),
    "simplify": (1, "fp32", {"model": (dict,), "preprocess": (dict, type(None)), "simplify": (dict,)}),
    "fp16": (1, "fp16", {"keep_io_types": (bool,), "block_ops": (list,)}),
    "int8": (1, "int8", {"flavour": (str,), "method": (str,), "exclusion": (dict,)}),
    "engine": (1, None, {"tensorrt_version": (str,), "gpu": (dict,), "build_options": (dict,),
                         "profiles": (dict, list)}),
}
RESULT_KINDS: dict[str, int] = {"parity": 1, "accuracy": 1, "bench": 1, "mixed": 1, "notes": 1}
BASE_FIELDS = {"format": (str,), "kind": (str,), "artifact": (str,), "artifact_sha256": (str,),
               "precision": (str,)}
RERUN = {"export": "attnvgg export", "simplify": "attnvgg simplify", "fp16": "attnvgg convert --precision fp16",
         "int8": "attnvgg calibrate", "engine": "attnvgg build"}


def format_tag(kind: str) -> str:
    version = ARTIFACT_KINDS[kind][0] if kind in ARTIFACT_KINDS else RESULT_KINDS[kind]
    return f"attnvgg.{kind}/{version}"


def parse_tag(tag: Any) -> Optional[tuple[str, int]]:
    """``"attnvgg.int8/1"`` -> ("int8", 1); None for anything that is not one of our tags."""
    if not isinstance(tag, str) or not tag.startswith("attnvgg.") or "/" not in tag:
        return None
    kind, _, version = tag[len("attnvgg."):].partition("/")
    return (kind, int(version)) if version.isdigit() else None


# ----------------------------------------------------------------------------- hashes

_HASHES: dict[tuple, str] = {}


def artifact_hash(path: str | os.PathLike) -> str:
    """SHA-256 of an artifact: ONNX with its external data file, anything else by its bytes."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        _HASHES[key] = onnx_hash(p) if p.suffix == ".onnx" else sha256_file(p)
    return _HASHES[key]


# ----------------------------------------------------------------------------- typed sidecar

@dataclass(frozen=True)
class Sidecar:
    """A validated sidecar. ``facts`` is the whole JSON object; the typed fields are its core."""

    path: Path                      # the .json file
    artifact: Path                  # the file it describes
    kind: str
    version: int
    precision: str
    artifact_sha256: str
    source: Optional[Path] = None
    source_sha256: Optional[str] = None
    facts: dict = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.facts.get(key, default)


def write(artifact: str | os.PathLike, kind: str, facts: dict, source: str | os.PathLike | None = None,
          precision: str | None = None) -> Sidecar:
    """Write ``artifact``'s sidecar (atomically) for a finished artifact; returns it as read back.

    The hash of ``artifact`` (and of ``source``, when given) is computed here, so a writer cannot
    forget it or spell its key differently.
    """
    if kind not in ARTIFACT_KINDS:
        raise ValueError(f"unknown sidecar kind {kind!r}")
    art = Path(artifact)
    version, implied, required = ARTIFACT_KINDS[kind]
    prec = precision or implied
    if prec not in PRECISIONS:
        raise ValueError(f"sidecar kind {kind} needs a precision, got {prec!r}")
    missing = [k for k in required if k not in facts]
    if missing:
        raise ValueError(f"{kind} sidecar facts lack {missing}")
    data: dict[str, Any] = {"format": format_tag(kind), "kind": kind, "artifact": art.name,
                            "artifact_sha256": artifact_hash(art), "precision": prec}
    if source is not None:
        src = Path(source)
        data["source"] = str(src)
        data["source_sha256"] = artifact_hash(src) if src.is_file() else None
    data.update({k: v for k, v in facts.items() if k not in data})
    path = sidecar_path(art)
    write_json(path, data)
    return _validate(json.loads(json.dumps(data, default=str)), path, art)


def read(artifact: str | os.PathLike) -> Optional[Sidecar]:
    """The sidecar of ``artifact``, validated and hash-checked; None when there is none.

    Raises InputError (one line) for a corrupt or wrong-shaped sidecar or one that describes
    another file than the one now at ``artifact``.
    """
    art = Path(artifact)
    path = sidecar_path(art)
    if not path.is_file():
        return None
    side = read_file(path)
    if not art.is_file():
        raise InputError(f"{art} is missing but its sidecar {path.name} is there", "re-run the stage that writes it")
    check_hash(side)
    return side


def read_file(path: str | os.PathLike) -> Sidecar:
    """Parse and validate a sidecar file without looking at its artifact (the report reads copies)."""
    path = Path(path)
    name = path.name[: -len(".json")] if path.name.endswith(".json") else path.name
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"sidecar {path} is not valid JSON ({first_line(exc, 80)})",
                         f"delete it and re-run the stage that wrote {name}") from exc
    except OSError as exc:
        raise InputError(f"cannot read sidecar {path} ({exc.strerror})", "check the file's permissions") from exc
    return _validate(data, path, path.with_name(name))


def _validate(data: Any, path: Path, artifact: Path) -> Sidecar:
    redo = f"delete it and re-run the stage that wrote {artifact.name}"
    if not isinstance(data, dict):
        raise InputError(f"sidecar {path} is not a JSON object", redo)
    tag = parse_tag(data.get("format"))
    if tag is None or tag[0] not in ARTIFACT_KINDS:
        raise InputError(f"sidecar {path} is not an attnvgg sidecar (format {data.get('format')!r}): "
                         "written by another tool or an older attnvgg", redo)
    kind, version = tag
    want, _, required = ARTIFACT_KINDS[kind]
    if version != want:
        raise InputError(f"sidecar {path} is format {kind}/{version}; this attnvgg reads {kind}/{want}", redo)
    for key, types in {**BASE_FIELDS, **required}.items():
        if key not in data:
            raise InputError(f"sidecar {path} lacks field {key!r}", redo)
        if not isinstance(data[key], types):
            raise InputError(f"sidecar {path}: field {key!r} is {type(data[key]).__name__}, expected "
                             f"{' or '.join(t.__name__ for t in types)}", redo)
    if data["kind"] != kind or data["precision"] not in PRECISIONS:
        raise InputError(f"sidecar {path}: kind {data['kind']!r} / precision {data['precision']!r} do not match "
                         f"its format {data['format']!r}", redo)
    src = data.get("source")
    if src is not None and not isinstance(src, str):
        raise InputError(f"sidecar {path}: field 'source' is not a path", redo)
    return Sidecar(path=path, artifact=artifact, kind=kind, version=version, precision=data["precision"],
                   artifact_sha256=data["artifact_sha256"], source=Path(src) if src else None,
                   source_sha256=data.get("source_sha256"), facts=data)


def check_hash(side: Sidecar) -> None:
    if artifact_hash(side.artifact) != side.artifact_sha256:
        raise InputError(f"{side.artifact} was replaced after its sidecar {side.path.name} was written "
                         "(its sha256 differs from the sidecar's)",
                         f"re-run the stage that writes it ({RERUN.get(side.kind, 'attnvgg')})")


# ----------------------------------------------------------------------------- lineage

def _resolve_source(side: Sidecar) -> Optional[Path]:
    if side.source is None:
        return None
    src = side.source
    if src.is_file():
        return src
    beside = side.artifact.parent / src.name          # a moved run folder keeps its files together
    return beside if beside.is_file() else None


def lineage(artifact: str | os.PathLike, max_depth: int = 8) -> list[Sidecar]:
    """The sidecars of ``artifact`` and of its sources, nearest first; every one hash-checked.

    A source whose content changed since the artifact was made from it ends the chain with an
    error: facts from it (the model spec, the preprocessing) would describe another model.
    """
    chain: list[Sidecar] = []
    seen: set[Path] = set()
    p: Optional[Path] = Path(artifact)
    while p is not None and len(chain) < max_depth:
        key = p.resolve()
        if key in seen:
            break
        seen.add(key)
        side = read(p)
        if side is None:
            break
        chain.append(side)
        src = _resolve_source(side)
        if src is not None and side.source_sha256 and artifact_hash(src) != side.source_sha256:
            raise InputError(f"{side.artifact} was made from {src}, which changed since (sha256 differs)",
                             f"re-run the stage that writes {side.artifact.name} ({RERUN.get(side.kind, 'attnvgg')})")
        p = src
    return chain


def nearest(artifact: str | os.PathLike, key: str) -> Optional[Sidecar]:
    """The nearest sidecar in the lineage that carries a non-null ``key``."""
    return next((s for s in lineage(artifact) if s.get(key) is not None), None)


def precision_of(artifact: str | os.PathLike) -> str:
    """The one precision decision: the sidecar's word, else the ONNX graph's, else fp32 (an engine
    without a sidecar is refused by the TensorRT runner anyway)."""
    side = read(artifact)
    if side is not None:
        return side.precision
    if Path(artifact).suffix == ".onnx":
        return detect_precision(load_onnx(artifact, load_external_data=False))
    return "fp32"


def model_spec(artifact: str | os.PathLike, trust: bool = False, factory: str | None = None) -> Optional[ModelSpec]:
    """The model spec the artifact was made from, or None when no sidecar in its lineage has one.

    ``trust``/``factory`` are the grants the user gave on the command line or in a config: a
    sidecar asking for more is refused (a data file never decides what code runs).
    """
    side = nearest(artifact, "model")
    if side is None:
        return None
    raw = side.get("model")
    if not isinstance(raw, dict):
        raise InputError(f"sidecar {side.path}: field 'model' is not a table", "re-run attnvgg export")
    asked_factory = raw.get("factory")
    if asked_factory and asked_factory != factory:
        raise InputError(f"sidecar {side.path} names the model factory {asked_factory!r}: a sidecar never chooses "
                         "code to run", f"if you trust it, pass --model {asked_factory} (or set it in --config)")
    if raw.get("trust_checkpoint") is True and not trust:
        raise InputError(f"sidecar {side.path} asks to unpickle the checkpoint {raw.get('checkpoint')!r}: a sidecar "
                         "never turns on trust_checkpoint", "if you trust the file, pass --trust-checkpoint")
    spec = _table(side, ModelSpec, raw, "model")
    return dataclasses.replace(spec, trust_checkpoint=bool(trust and spec.trust_checkpoint),
                               factory=spec.factory if spec.factory == factory else None)


def preprocess(artifact: str | os.PathLike) -> Optional[PreprocessSpec]:
    """The preprocessing stored with the model (export records it), or None."""
    side = nearest(artifact, "preprocess")
    if side is None:
        return None
    return _table(side, PreprocessSpec, side.get("preprocess"), "preprocess")


def _table(side: Sidecar, cls: type, raw: Any, key: str) -> Any:
    """A sidecar table as a typed spec; one line naming the sidecar when it is not one."""
    if not isinstance(raw, dict):
        raise InputError(f"sidecar {side.path}: field {key!r} is not a table", "re-run attnvgg export")
    try:
        return from_dict(cls, raw, f"sidecar {key}")
    except InputError as exc:
        raise InputError(f"sidecar {side.path}: {exc.message}", "re-run attnvgg export") from exc


# ----------------------------------------------------------------------------- result files

def result_header(kind: str, artifacts: list[str | os.PathLike | None]) -> dict:
    """``format`` and ``artifacts`` ({path: sha256}) for a result file measuring ``artifacts``
    (None or "pytorch" for the PyTorch model: no file, no hash)."""
    hashes: dict[str, Optional[str]] = {}
    for a in artifacts:
        if a is None or str(a) == "pytorch":
            continue
        p = Path(a)
        hashes[str(p)] = artifact_hash(p) if p.is_file() else None
    return {"format": format_tag(kind), "artifacts": hashes}


def result_kind(data: Any) -> Optional[str]:
    """The kind of a result or sidecar JSON from its tag: parity, accuracy, bench, mixed, notes,
    report, or a sidecar kind; None for a file that is not ours."""
    if not isinstance(data, dict):
        return None
    tag = parse_tag(data.get("format"))
    if tag is None:
        return None
    return tag[0]


def stale_results(data: dict, result_path: Path) -> list[str]:
    """Artifacts a result file names whose content changed since it was measured.

    An artifact is looked for where the result names it, then beside the result file and one
    folder up (``results/`` in a run folder); one found nowhere cannot be checked and is passed.
    """
    stale = []
    arts = data.get("artifacts")
    if not isinstance(arts, dict):
        return stale
    for name, digest in arts.items():
        if not isinstance(digest, str):
            continue
        base = Path(name).name
        for cand in (Path(name), result_path.parent / base, result_path.parent.parent / base):
            if cand.is_file():
                if artifact_hash(cand) != digest:
                    stale.append(str(cand))
                break
    return stale
