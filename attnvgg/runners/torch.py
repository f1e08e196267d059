"""PyTorch runner: the reference every other runner is compared against.

Polygraphy's PytRunner calls the module as a loader and its dtype conversion raises, so
this is our own, on the project's runner interface.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from attnvgg.runners.base import Runner, TensorMeta


class TorchRunner(Runner):
    backend = "pytorch"

    def __init__(
        self,
        model: Any | Callable[[], Any],
        input_shape: tuple[int, ...] | None = None,
        device: str = "cpu",
        half: bool = False,
        channels_last: bool = False,
        name: str | None = None,
    ):
        super().__init__(name or f"pytorch-{device}")
        self._model_or_loader = model
        self.device = device
        self.half = half
        self.channels_last = channels_last
        self._input_shape = input_shape
        self.model = None

    def activate_impl(self) -> None:
        import torch
        from torch import nn

        m = self._model_or_loader
        model = m if isinstance(m, nn.Module) else m()
        model = model.to(self.device).eval()
        if self.half:
            model = model.half()
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model

    def deactivate_impl(self) -> None:
        self.model = None

    def input_metadata(self) -> list[TensorMeta]:
        shape = tuple(self._input_shape) if self._input_shape else (-1, 3, -1, -1)
        return [TensorMeta("input", "float16" if self.half else "float32", shape)]

    def to_device(self, x: np.ndarray):
        import torch

        t = torch.from_numpy(np.ascontiguousarray(x)).to(self.device)
        t = t.half() if self.half else t.float()
        if self.channels_last:
            t = t.contiguous(memory_format=torch.channels_last)
        return t

    def infer_device(self, x):
        import torch

        with torch.inference_mode():
            return self.model(x)

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if len(feeds) != 1:
            raise ValueError(f"the PyTorch runner takes one input, got {sorted(feeds)}")
        (x,) = feeds.values()
        y = self.infer_device(self.to_device(x))
        return {"logits": y.float().cpu().numpy()}

    def describe(self) -> dict:
        import torch

        return {**super().describe(), "device": self.device, "torch": torch.__version__,
                "precision": "fp16" if self.half else "fp32", "threads": torch.get_num_threads()}
