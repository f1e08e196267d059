"""Reading an artifact's sidecar safely: a minimal version (issue 11), until issue 10's schema module lands.

What it guarantees, because a sidecar is a data file that anyone can edit or a crash can leave
stale:

* a corrupt sidecar (``{"model": {``, empty, not an object) or one of the wrong shape (``model``
  or ``preprocess`` not a table, ``source`` not a path) is one ``InputError`` naming the file;
* the hash of the model recorded in the sidecar is checked on every read, so a ``kill -9`` of a
  stage between the model's rename and the sidecar's rename (a new model beside the old sidecar)
  is refused instead of pairing the model with facts about another file;
* a sidecar never chooses code to run: a model spec asking for ``trust_checkpoint`` or naming a
  ``factory`` is refused unless the same grant came from the command line or a config the user
  passed (``trust``/``factory`` arguments). Refused, not ignored: a silently dropped factory would
  build a different model than the one exported.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

from attnvgg.artifacts import onnx_hash, sha256_file, sidecar_path
from attnvgg.errors import InputError

#: Keys under which the stages record the hash of the file a sidecar describes.
HASH_KEYS = ("artifact_sha256", "onnx_sha256", "onnx_hash")
_HASHES: dict[tuple, str] = {}


def artifact_hash(path: str | os.PathLike) -> str:
    """SHA-256 of an artifact (an ONNX file with its external data), memoised per file identity."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        _HASHES[key] = onnx_hash(p) if p.suffix == ".onnx" else sha256_file(p)
    return _HASHES[key]


def read(artifact: str | os.PathLike) -> Optional[dict]:
    """The validated, hash-checked sidecar of ``artifact``; None when there is none."""
    art = Path(artifact)
    path = sidecar_path(art)
    if not path.is_file():
        return None
    redo = f"delete it and re-run the stage that wrote {art.name}"
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"sidecar {path} is not valid JSON ({str(exc).splitlines()[0][:80]})", redo) from exc
    except OSError as exc:
        raise InputError(f"cannot read sidecar {path} ({exc.strerror})", "check the file's permissions") from exc
    if not isinstance(data, dict):
        raise InputError(f"sidecar {path} is not a JSON object (got a {type(data).__name__})", redo)
    for key, types, what in (("model", (dict,), "a table"), ("preprocess", (dict, type(None)), "a table or null"),
                             ("source", (str, type(None)), "a path"), ("precision", (str, type(None)), "a string")):
        if key in data and not isinstance(data[key], types):
            raise InputError(f"sidecar {path}: field {key!r} must be {what}, got {type(data[key]).__name__}", redo)
    recorded = next((data[k] for k in HASH_KEYS if isinstance(data.get(k), str)), None)
    if recorded is not None and art.is_file() and artifact_hash(art) != recorded:
        raise InputError(f"{art} was replaced after its sidecar {path.name} was written (its sha256 differs from "
                         "the one the sidecar records)", f"re-run the stage that writes {art.name}")
    return data


def check_grants(data: dict, path: Path, trust: bool, factory: Optional[str]) -> None:
    """Refuse a sidecar model spec that asks for more than the user granted."""
    model = data.get("model") or {}
    asked = model.get("factory")
    if asked and asked != factory:
        raise InputError(f"sidecar {path} names the model factory {asked!r}: a sidecar never chooses code to run",
                         f"if you trust it, pass --model {asked} (or set it in --config)")
    if model.get("trust_checkpoint") is True and not trust:
        raise InputError(f"sidecar {path} asks to unpickle the checkpoint {model.get('checkpoint')!r}: a sidecar never "
                         "turns on trust_checkpoint", "if you trust the file, pass --trust-checkpoint")
