"""Checkpoint loading and torchvision VGG16 import.

Checkpoints load with ``torch.load(weights_only=True)``: a file that needs arbitrary
unpickling is refused unless the user opts in (``trust_checkpoint``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnvgg.errors import InputError, first_line
from attnvgg.models.vgg import torchvision_index_to_ours


def load_state_dict(path: str | Path, trust: bool = False) -> dict[str, Any]:
    import pickle

    import torch

    p = Path(path)
    if not p.is_file():
        raise InputError(f"checkpoint not found: {p}", "pass the path of a .pt state_dict")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as exc:
        raise InputError(
            f"checkpoint {p} needs full unpickling, which can run arbitrary code",
            "re-save it as a plain state_dict, or pass --trust-checkpoint if you trust its source",
        ) from exc
    except Exception as exc:
        first = first_line(exc, 10_000)
        raise InputError(
            f"{p} is not a readable PyTorch checkpoint ({first[:160]})",
            "pass a file saved with torch.save(model.state_dict(), path)",
        ) from exc
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if hasattr(obj, "state_dict") and not isinstance(obj, dict):
        obj = obj.state_dict()
    if not isinstance(obj, dict) or not all(hasattr(v, "shape") for v in obj.values()):
        raise InputError(f"checkpoint {p} holds no state_dict of tensors", "save model.state_dict()")
    # Checkpoints saved from nn.DataParallel carry a "module." prefix.
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


@dataclass
class KeyReport:
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)   # "key: ckpt (a, b) vs model (c, d)"

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self, limit: int = 4) -> str:
        parts = []
        for label, keys in (("missing", self.missing), ("unexpected", self.unexpected),
                            ("mis-shaped", self.mismatched)):
            if keys:
                shown = ", ".join(keys[:limit]) + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")
                parts.append(f"{len(keys)} {label}: {shown}")
        return "; ".join(parts)


def compare_keys(model_sd: dict[str, Any], ckpt_sd: dict[str, Any]) -> KeyReport:
    rep = KeyReport()
    rep.missing = sorted(k for k in model_sd if k not in ckpt_sd)
    rep.unexpected = sorted(k for k in ckpt_sd if k not in model_sd)
    for k in sorted(set(model_sd) & set(ckpt_sd)):
        a, b = tuple(ckpt_sd[k].shape), tuple(model_sd[k].shape)
        if a != b:
            rep.mismatched.append(f"{k} {a} vs model {b}")
    return rep


def load_into(model, state_dict: dict[str, Any], source: str) -> None:
    """Strict load with a message naming missing, unexpected and mis-shaped keys."""
    rep = compare_keys(model.state_dict(), state_dict)
    if not rep.ok:
        raise InputError(
            f"checkpoint {source} does not match the model ({rep.summary()})",
            "check the model options (attention kinds, width, num_classes) match the checkpoint",
        )
    model.load_state_dict(state_dict, strict=True)


_FEAT = re.compile(r"^features\.(\d+)\.(.+)$")


def import_torchvision_vgg16(model, tv_state: dict[str, Any]) -> dict[str, list[str]]:
    """Copy torchvision-format VGG16 weights into a VGG16WithAttention.

    Returns {"loaded": [...], "new": [...], "skipped": [...]}: ``new`` are the model's tensors
    that the file does not provide (the attention modules, or a re-sized classifier head),
    ``skipped`` the file's tensors that did not fit (e.g. a 1000-class head on a 10-class model).
    """
    import torch

    target = model.state_dict()
    mapped: dict[str, Any] = {}
    skipped: list[str] = []
    for key, value in tv_state.items():
        m = _FEAT.match(key)
        new_key = f"features.{torchvision_index_to_ours(int(m.group(1)))}.{m.group(2)}" if m else key
        if new_key in target and tuple(target[new_key].shape) == tuple(value.shape):
            mapped[new_key] = value
        else:
            skipped.append(key)
    if not mapped:
        raise InputError(
            "no tensor of the torchvision-format file fits the model",
            "check it is a VGG16 state_dict (keys features.N.weight, classifier.N.weight) and the width is 1",
        )
    with torch.no_grad():
        for k, v in mapped.items():
            target[k].copy_(v)
    model.load_state_dict(target)
    new = sorted(k for k in target if k not in mapped)
    return {"loaded": sorted(mapped), "new": new, "skipped": sorted(skipped)}
