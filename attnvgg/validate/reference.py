"""Find the PyTorch model an artifact came from, through the sidecar chain."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from attnvgg import sidecar
from attnvgg.config import ModelSpec, PreprocessSpec, from_dict
from attnvgg.errors import InputError


def lineage(artifact: str | os.PathLike, max_depth: int = 8) -> list[dict]:
    """Sidecars of the artifact and its sources, nearest first; each validated and hash-checked
    (``attnvgg.sidecar.read``)."""
    from attnvgg.artifacts import sidecar_path

    chain: list[dict] = []
    p: Path | None = Path(artifact)
    seen = set()
    while p is not None and len(chain) < max_depth:
        side = sidecar_path(p)
        if not side.is_file() or side in seen:
            break
        seen.add(side)
        data = sidecar.read(p)
        if data is None:
            break
        chain.append(data)
        src = data.get("source")
        if not src:
            break
        src_p = Path(src)
        if not src_p.is_absolute() and not src_p.exists():
            src_p = Path(artifact).parent / src_p.name
        p = src_p
    return chain


def model_spec_for(artifact: str | os.PathLike, trust: bool = False, factory: str | None = None) -> ModelSpec | None:
    """The model spec in the artifact's sidecar chain. ``trust``/``factory`` are what the user granted
    on the command line or in a config; a sidecar asking for more is refused (never code from data)."""
    from attnvgg.artifacts import sidecar_path

    for side in lineage(artifact):
        if side.get("model"):
            sidecar.check_grants(side, sidecar_path(Path(artifact)), trust, factory)
            try:
                return from_dict(ModelSpec, side["model"], "sidecar model")
            except InputError as exc:
                raise InputError(f"sidecar of {artifact}: {exc.message}", "re-run attnvgg export") from exc
    return None


def preprocess_spec_for(artifact: str | os.PathLike) -> PreprocessSpec | None:
    for side in lineage(artifact):
        if side.get("preprocess"):
            return from_dict(PreprocessSpec, side["preprocess"], "sidecar preprocess")
    return None


def resolve_model_spec(artifact: str | os.PathLike, override: ModelSpec | None, overridden: bool) -> ModelSpec:
    """The reference model: explicit options win; else the artifact's sidecar chain."""
    if not Path(artifact).exists():   # say so first: a missing sidecar is only a consequence
        raise InputError(f"file not found: {artifact}", "check the path, or run attnvgg export first")
    if overridden and override is not None:
        return override
    grants = override if override is not None else ModelSpec()
    spec = model_spec_for(artifact, trust=grants.trust_checkpoint, factory=grants.factory)
    if spec is None:
        if override is not None and (override.checkpoint or override.factory):
            return override
        raise InputError(
            f"no PyTorch reference known for {artifact} (no sidecar {Path(artifact).name}.json with the model spec)",
            "pass the model options used at export (--checkpoint/--attention/--width/--input-size/--gamma) or --config",
        )
    return spec


def precision_of(artifact: str | os.PathLike, model: Any | None = None) -> str:
    for side in lineage(artifact)[:1]:
        if side.get("precision"):
            return str(side["precision"])
    if Path(artifact).suffix == ".onnx":
        from attnvgg.export.graph import detect_precision, load_onnx

        return detect_precision(model if model is not None else load_onnx(artifact, load_external_data=False))
    return "fp32"
