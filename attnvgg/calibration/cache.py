"""Calibration cache: tensor ranges from an earlier calibration, reused when nothing changed.

Calibrating the full model takes tens of seconds to minutes; the ranges it produces depend only
on the model, the images, the method and its settings, and the set of tensors calibrated (which
the exclusion policy decides). One entry per (model path, data hash, method, settings) lives in
the cache folder as JSON; it records the model's ONNX hash, so an entry left by an earlier,
different model at the same path is ignored with a message and replaced, never reused.

Why each entry carries the hash of its own ranges and is range-checked on read: a cache hit skips
calibration entirely, so an entry edited by hand or damaged on disk (ranges x1000, zeroed, NaN)
would silently give a model that outputs zeros. An entry whose ranges do not hash to what was
stored, or holds a non-finite or empty (hi <= lo) range, is a miss with a warning naming the
file, and is recalibrated and replaced. The cache is optional: a folder that cannot be written
costs a warning, never the calibration.
"""

from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attnvgg.artifacts import read_json, sha256_json, write_json

FORMAT = 2   # 2: entries carry ranges_sha256


def default_cache_dir() -> Path:
    """``$ATTNVGG_CACHE_DIR/calib`` or ``~/.cache/attnvgg/calib``."""
    root = os.environ.get("ATTNVGG_CACHE_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "attnvgg"
    return base / "calib"


@dataclass
class CacheKey:
    model_path: str          # absolute path of the source ONNX
    model_hash: str          # artifacts.onnx_hash of the source ONNX
    data_hash: str           # Dataset.content_hash()
    method: str
    settings: dict           # everything else that changes the ranges
    tensors_hash: str        # sha256 of the sorted calibrated tensor names
    onnxruntime: str

    def slot(self) -> str:
        """File name: the key without the model hash, so a changed model replaces its old entry."""
        ident = sha256_json({"model_path": self.model_path, "data_hash": self.data_hash, "method": self.method,
                             "settings": self.settings, "tensors": self.tensors_hash, "ort": self.onnxruntime})
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(self.model_path).name)[:60]
        return f"{stem}.{self.method}.{ident[:20]}.json"

    def fields(self) -> dict:
        return {"model_path": self.model_path, "model_hash": self.model_hash, "data_hash": self.data_hash,
                "method": self.method, "settings": self.settings, "tensors_hash": self.tensors_hash,
                "onnxruntime": self.onnxruntime}


@dataclass
class Lookup:
    path: Path
    ranges: dict[str, tuple[float, float]] | None   # None: miss
    note: str | None = None                          # why an existing entry was ignored
    bad: bool = False                                # the entry is damaged or edited (a warning, not a note)


def ranges_hash(ranges: dict[str, Any]) -> str:
    """Hash of an entry's ranges as stored (name -> [lo, hi]), independent of key order."""
    return sha256_json({k: [float(v[0]), float(v[1])] for k, v in ranges.items()})


def range_problem(ranges: dict[str, tuple[float, float]]) -> str | None:
    """Why these ranges cannot be quantized with, or None: every range finite with hi > lo."""
    for name, (lo, hi) in ranges.items():
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return f"tensor {name!r} has a non-finite range [{lo}, {hi}]"
        if not hi > lo:
            return f"tensor {name!r} has an empty range [{lo}, {hi}]"
    return None


def lookup(cache_dir: Path, key: CacheKey) -> Lookup:
    path = Path(cache_dir) / key.slot()
    if not path.is_file():
        return Lookup(path, None)
    try:
        entry = read_json(path)
        recorded = entry["key"]
        stored = entry["ranges"]
        ranges = {str(k): (float(v[0]), float(v[1])) for k, v in stored.items()}
    except Exception as exc:  # noqa: BLE001 - any unreadable entry is just a miss
        return Lookup(path, None, f"calibration cache entry {path} is unreadable ({type(exc).__name__}); "
                                  "recalibrating and replacing it", bad=True)
    if entry.get("format") != FORMAT:
        return Lookup(path, None, f"calibration cache entry {path} has format {entry.get('format')}; recalibrating")
    if entry.get("ranges_sha256") != ranges_hash(stored):
        return Lookup(path, None, f"calibration cache entry {path} was edited or damaged (its ranges do not match "
                                  "the hash stored with them); recalibrating and replacing it", bad=True)
    problem = range_problem(ranges)
    if problem:
        return Lookup(path, None, f"calibration cache entry {path} is unusable ({problem}); "
                                  "recalibrating and replacing it", bad=True)
    if recorded.get("model_hash") != key.model_hash:
        return Lookup(path, None, f"calibration cache entry {path.name} was made for another model "
                                  f"(ONNX hash {str(recorded.get('model_hash'))[:12]}, this model "
                                  f"{key.model_hash[:12]}); ignoring it and recalibrating")
    for field in ("data_hash", "method", "settings", "tensors_hash", "onnxruntime"):
        if recorded.get(field) != key.fields()[field]:
            return Lookup(path, None, f"calibration cache entry {path.name} differs in {field}; recalibrating")
    if not ranges:
        return Lookup(path, None, f"calibration cache entry {path.name} has no ranges; recalibrating")
    return Lookup(path, ranges)


def store(path: Path, key: CacheKey, ranges: dict[str, tuple[float, float]], seconds: float,
          data: dict[str, Any]) -> Path:
    """Write the entry atomically (a concurrent reader sees the old entry or the new one)."""
    stored = {k: [float(lo), float(hi)] for k, (lo, hi) in sorted(ranges.items())}
    entry = {"format": FORMAT, "key": key.fields(), "data": data, "calibration_s": round(seconds, 3),
             "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
             "ranges_sha256": ranges_hash(stored), "ranges": stored}
    return write_json(path, entry)
