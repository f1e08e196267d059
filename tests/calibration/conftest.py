"""Tiny models and in-memory data sets for the calibration tests (seconds each, CPU only)."""

from __future__ import annotations

import contextlib

import hashlib
from pathlib import Path

import numpy as np
import pytest


class ArrayDataset:
    """The Dataset interface of attnvgg.data over numpy arrays, counting how often it is read."""

    def __init__(self, x: np.ndarray, y: np.ndarray | None = None, name: str = "arrays"):
        self.x = np.ascontiguousarray(x, dtype=np.float32)
        self.y = None if y is None else np.asarray(y, dtype=np.int64)
        self.classes = [str(i) for i in range(10)]
        self.has_labels = self.y is not None
        self.name = name
        self.batches_read = 0

    def __len__(self) -> int:
        return len(self.x)

    def iter_batches(self, batch_size: int, limit: int | None = None):
        n = len(self.x) if limit is None else min(limit, len(self.x))
        for i in range(0, n, batch_size):
            self.batches_read += 1
            j = min(i + batch_size, n)
            yield self.x[i:j], (None if self.y is None else self.y[i:j])

    def content_hash(self) -> str:
        h = hashlib.sha256(self.x.tobytes())
        if self.y is not None:
            h.update(self.y.tobytes())
        return h.hexdigest()

    def describe(self) -> dict:
        return {"kind": self.name, "images": len(self.x)}


def random_images(n: int, hw: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, hw, hw)).astype(np.float32)


def export_tiny(path: Path, attention: list[str], seed: int = 0) -> Path:
    """VGG16WithAttention at width 1/16 on 32x32 inputs, gamma 0.5, dynamic batch, via attnvgg's export."""
    from attnvgg.config import ExportSpec, ModelSpec
    from attnvgg.export.onnx import export_onnx

    spec = ModelSpec(attention=attention, width=1 / 16, input_size=32, num_classes=10, gamma=0.5, seed=seed)
    export_onnx(spec, ExportSpec(batch_max=16), path)
    return path


def export_torchscript_attention(path: Path) -> Path:
    """A small net with one GlobalAttention, exported by the TorchScript exporter (other node names)."""
    import torch
    from torch import nn

    from attnvgg.models.attention import GlobalAttention

    torch.manual_seed(1)
    att = GlobalAttention(16)
    with torch.no_grad():
        att.gamma.fill_(0.5)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), att, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(16, 10)).eval()
    torch.onnx.export(model, torch.randn(2, 3, 16, 16), str(path), dynamo=False, input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=17)
    return path


@pytest.fixture(scope="session")
def tiny_global(tmp_path_factory) -> Path:
    return export_tiny(tmp_path_factory.mktemp("models") / "global.onnx", ["global", "global", "global"])


@pytest.fixture(scope="session")
def tiny_global_retrained(tmp_path_factory) -> Path:
    """Same architecture as ``tiny_global``, other weights: a model re-exported after training."""
    return export_tiny(tmp_path_factory.mktemp("models") / "global2.onnx", ["global", "global", "global"], seed=1)


@pytest.fixture(scope="session")
def tiny_mixed(tmp_path_factory) -> Path:
    return export_tiny(tmp_path_factory.mktemp("models") / "mixed.onnx", ["global", "se", "cbam"])


@pytest.fixture(scope="session")
def tiny_torchscript(tmp_path_factory) -> Path:
    return export_torchscript_attention(tmp_path_factory.mktemp("models") / "ts.onnx")


@pytest.fixture()
def make_dataset():
    return ArrayDataset


@pytest.fixture()
def rand_images():
    return random_images


@pytest.fixture()
def calib_data() -> ArrayDataset:
    return ArrayDataset(random_images(12))


@pytest.fixture()
def cache_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("ATTNVGG_CACHE_DIR", str(tmp_path / "cache-root"))
    return d


@contextlib.contextmanager
def counting_passes():
    """Count real calibration passes (ONNX Runtime range collections) while the block runs: the
    independent check that a cache hit skipped one, without a counter in the product code."""
    from attnvgg.calibration import int8

    calls: list[int] = []
    real = int8._collect_ranges

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(int8, "_collect_ranges", counted)
        yield calls
