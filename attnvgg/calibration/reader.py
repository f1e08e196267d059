"""Calibration batches streamed from a Dataset, one at a time.

ORT's calibrators keep every batch's outputs until the reader is exhausted (the histogram
calibrators keep every intermediate tensor of every image: 37.5 MiB per image for one
attention map at 224 px). So the stage feeds the calibrator one batch per ``collect_data``
call through ``OneBatch``; ranges (MinMax) and histograms (Entropy/Percentile) are merged
across calls by ORT itself. Memory is then bounded by the batch size, not the set size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator, Protocol

from attnvgg.errors import InputError
from attnvgg.onnxgraph import InputShape

if TYPE_CHECKING:
    import numpy as np


class Dataset(Protocol):
    """What the stage needs from ``attnvgg.data``'s Dataset."""

    classes: list[str]
    has_labels: bool

    def __len__(self) -> int: ...

    def iter_batches(self, batch_size: int, limit: int | None = None) -> Iterator[tuple[Any, Any]]: ...

    def content_hash(self) -> str: ...

    def describe(self) -> dict: ...


def checked_batches(dataset: Dataset, shape: InputShape, batch_size: int, limit: int | None,
                    what: str = "calibration") -> Iterator["np.ndarray"]:
    """Yield float32 NCHW batches, checking shape and finiteness; refuse an empty set."""
    import numpy as np

    n = 0
    for x, _y in dataset.iter_batches(batch_size, limit=limit):
        x = np.asarray(x)
        if x.ndim != 4 or tuple(x.shape[1:]) != shape.chw:
            raise InputError(f"{what} images have shape {tuple(x.shape[1:])} but the model takes {shape.chw}",
                             "preprocess the data to the model's input size (crop = model input size)")
        if not np.isfinite(x).all():
            raise InputError(f"{what} batch {n // max(batch_size, 1)} contains NaN or Inf pixels",
                             "check the data source")
        n += x.shape[0]
        yield np.ascontiguousarray(x, dtype=np.float32)
    if n == 0:
        raise InputError(f"the {what} set has no images", "point --data at a folder or file with images")


class OneBatch:
    """A CalibrationDataReader that yields one feed dict, then None (``rewind`` starts it again)."""

    def __init__(self, feed: dict):
        self.feed = feed
        self._done = False

    def get_first(self) -> dict:
        return self.feed

    def get_next(self) -> dict | None:
        if self._done:
            return None
        self._done = True
        return self.feed

    def rewind(self) -> None:
        self._done = False

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        feed = self.get_next()
        if feed is None:
            raise StopIteration
        return feed
