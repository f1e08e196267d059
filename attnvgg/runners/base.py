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

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class TensorMeta:
    name: str
    dtype: str               # numpy dtype name, e.g. "float32"
    shape: tuple[int, ...]   # -1 where the axis is dynamic


class Runner(abc.ABC):
    #: short backend name used in result files and reports, e.g. "onnxruntime-cpu"
    backend: str = "base"

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
