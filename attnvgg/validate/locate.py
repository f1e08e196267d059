"""Find the first layer where an ONNX graph diverges from PyTorch.

What ``polygraphy run --onnx-outputs mark all`` does by hand: expose every intermediate
tensor of the ONNX graph, record every module's output in PyTorch with forward hooks, and
walk the modules in execution order. A module matches when some ONNX tensor of the same
shape holds its values within tolerance; the first module with no match is named, together
with the ONNX node (by the dynamo exporter's name scope where present, else the nearest tensor).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from attnvgg.runners.onnxruntime import run_all_outputs


def _torch_records(model: Any, x: np.ndarray) -> list[tuple[str, str, np.ndarray]]:
    import torch
    from torch import nn

    from attnvgg.models.attention import CBAM, GlobalAttention, SEBlock   # imports torch

    records: list[tuple[str, str, np.ndarray]] = []
    handles = []

    def hook(name: str):
        def fn(module: nn.Module, inputs: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor):
                # clone: an in-place ReLU would otherwise rewrite the conv output we recorded
                records.append((name, type(module).__name__, output.detach().clone().float().numpy()))
        return fn

    for name, module in model.named_modules():
        if not name:
            continue
        is_leaf = not list(module.children())
        if is_leaf or isinstance(module, (GlobalAttention, SEBlock, CBAM)):
            handles.append(module.register_forward_hook(hook(name)))
    try:
        with torch.no_grad():
            model(torch.from_numpy(x))
    finally:
        for h in handles:
            h.remove()
    return records


def locate_divergence(path: str | os.PathLike, model: Any, x: np.ndarray, atol: float = 1e-4, rtol: float = 1e-3) -> dict:
    path = Path(path)
    records = _torch_records(model, x)
    tensors, producers = run_all_outputs(path, x)
    by_shape: dict[tuple, list[str]] = {}
    for n, v in tensors.items():
        by_shape.setdefault(tuple(v.shape), []).append(n)
    last_good = None
    for name, mtype, ref in records:
        cands = by_shape.get(tuple(ref.shape), [])
        tol = atol + rtol * float(np.abs(ref).max()) if ref.size else atol
        best_err, best_name = float("inf"), None
        for c in cands:
            err = float(np.abs(tensors[c].astype(np.float64) - ref).max())
            if err < best_err:
                best_err, best_name = err, c
            if err <= tol:
                break
        if best_err <= tol:
            last_good = name
            continue
        if not cands:
            # No tensor of this shape in the graph (a fused or reshaped op): it cannot be compared.
            continue
        scoped = [t for t, (_, _, scope) in producers.items() if scope == name and t in tensors]
        node_tensor = scoped[-1] if scoped else best_name
        node = producers.get(node_tensor, ("", "", ""))
        return {"found": True, "module": name, "module_type": mtype, "max_abs": best_err, "tolerance": tol,
                "onnx_node": node[0], "onnx_op": node[1], "onnx_tensor": node_tensor, "last_good": last_good,
                "compared_modules": len(records)}
    return {"found": False, "compared_modules": len(records),
            "message": f"all {len(records)} module outputs have a matching ONNX tensor; the divergence is after the last module or in the output"}
