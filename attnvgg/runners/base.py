"""The one runner interface that parity, accuracy and the bench take.

Modelled on Polygraphy's BaseRunner: construction is cheap, ``activate`` loads (a session,
an engine, a model), ``infer`` maps input names to arrays and returns output names to
arrays, ``input_metadata`` says names, dtypes and shapes (-1 for a dynamic axis). Use it in
a ``with`` block so resources are released.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING

from attnvgg.errors import InputError

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class TensorMeta:
    name: str
    dtype: str               # numpy dtype name, e.g. "float32"
    shape: tuple[int, ...]   # -1 where the axis is dynamic


def check_feeds(model_name: str, metas: list[TensorMeta], feeds: dict[str, "np.ndarray"]) -> None:
    """One-line InputError for a feed the model does not take: an unknown or missing input, a wrong rank or size."""
    meta = {m.name: m for m in metas}
    unknown = sorted(set(feeds) - set(meta))
    if unknown:
        raise InputError(f"inputs {unknown} are not in {model_name} (it takes {sorted(meta)})",
                         "name the input as the model does")
    missing = sorted(set(meta) - set(feeds))
    if missing:
        raise InputError(f"inputs {missing} of {model_name} were not given", "feed every model input")
    for name, arr in feeds.items():
        m = meta[name]
        if len(arr.shape) != len(m.shape) or any(d != -1 and d != a for d, a in zip(m.shape, arr.shape)):
            raise InputError(
                f"input {name} has shape {tuple(arr.shape)} but {model_name} takes {m.shape} (-1 = dynamic)",
                "feed the model's input size, or re-export with that size / a dynamic batch",
            )


#: coarsest last: a runner that computes in bf16 makes an fp32/fp16 file a bf16 check
PRECISION_COARSENESS = ("fp32", "fp16", "bf16", "int8")


def effective_precision(file_precision: str, compute_precision: str | None) -> str:
    """The precision a run of ``file_precision`` has when the runner computes in
    ``compute_precision`` (None: as the file says): the coarser of the two. bf16 keeps 8
    mantissa bits against fp16's 11, so fp16 run in bf16 is bf16; int8 stays int8 (its float
    parts in bf16 are finer than its int8 parts)."""
    if compute_precision is None or compute_precision not in PRECISION_COARSENESS:
        return file_precision
    if file_precision not in PRECISION_COARSENESS:
        return file_precision
    return max(file_precision, compute_precision, key=PRECISION_COARSENESS.index)


class Runner(abc.ABC):
    #: short backend name used in result files and reports, e.g. "onnxruntime-cpu"
    backend: str = "base"
    #: a precision the runner imposes on top of the file's (OpenVINO's bf16 hint); None: the file's
    compute_precision: str | None = None

    def __init__(self, name: str | None = None):
        self.name = name or self.backend
        self.is_active = False

    # -- lifecycle -----------------------------------------------------------------------
    def activate(self) -> "Runner":
        if not self.is_active:
            self.activate_impl()
            self.is_active = True
        return self

    def deactivate(self) -> None:
        if self.is_active:
            self.deactivate_impl()
            self.is_active = False

    def __enter__(self) -> "Runner":
        return self.activate()

    def __exit__(self, *exc) -> None:
        self.deactivate()

    # -- to implement --------------------------------------------------------------------
    @abc.abstractmethod
    def activate_impl(self) -> None: ...

    def deactivate_impl(self) -> None:
        pass

    @abc.abstractmethod
    def infer_impl(self, feeds: dict[str, "np.ndarray"]) -> dict[str, "np.ndarray"]: ...

    @abc.abstractmethod
    def input_metadata(self) -> list[TensorMeta]: ...

    def output_names(self) -> list[str]:
        return ["logits"]

    # -- public --------------------------------------------------------------------------
    def infer(self, feeds: dict[str, "np.ndarray"]) -> dict[str, "np.ndarray"]:
        if not self.is_active:
            raise RuntimeError(f"runner {self.name} used before activate(); use it in a with block")
        return self.infer_impl(feeds)

    def describe(self) -> dict:
        """JSON-serialisable facts about this runner for result files."""
        return {"name": self.name, "backend": self.backend}
