"""Accuracy of any runner on labelled data, and agreement with an fp32 reference.

Top-1/top-5 against labels says how good a variant is; agreement with the fp32 model (top-1
agreement and the cosine of the logits) says how much of that a precision change cost, and
works without labels. Logits are reduced batch by batch, so memory does not grow with the set.

A NaN or Inf in the logits is never averaged away: the stage stops at the first such batch and
names it, and for an ONNX model reruns that one image with every intermediate tensor exposed
to name the first node that produces a non-finite value (for PyTorch, the first module).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from attnvgg import console
from attnvgg.console import note
from attnvgg.config import EvaluateSpec
from attnvgg.runners.base import Runner
from attnvgg.errors import CheckFailed, InputError
from attnvgg.runners.onnxruntime import run_all_outputs


@dataclass
class Agreement:
    kind: str                      # "artifact", "pytorch" or "logits"
    name: str
    top1: float | None = None      # the reference's own accuracy (with labels)
    top5: float | None = None
    top1_agreement: float = 0.0
    mean_cosine: float = 0.0
    min_cosine: float = 1.0


@dataclass
class AccuracyResult:
    model: str
    runner: dict
    data: dict
    images: int
    classes: int
    topk: int                      # 5, or the class count when there are fewer classes
    top1: float | None
    top5: float | None
    reference: Agreement | None
    seconds: float
    notes: list[str] = field(default_factory=list)
    logits: np.ndarray | None = field(default=None, repr=False)   # only with keep_logits; not in to_dict

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("logits", None)
        return d

    def summary_line(self, out: Any) -> str:
        acc = f"top-1 {self.top1:.2%}, top-{self.topk} {self.top5:.2%}" if self.top1 is not None else "no labels"
        ref = (f"; vs reference: top-1 agreement {self.reference.top1_agreement:.2%}, "
               f"mean cosine {self.reference.mean_cosine:.6f}" if self.reference else "")
        return f"{acc} on {self.images} images{ref} -> {out}"


class _Tally:
    """Running counts for one runner (labels) and its agreement with a reference."""

    def __init__(self) -> None:
        self.n = 0
        self.top1 = 0
        self.topk = 0
        self.agree = 0
        self.cos_sum = 0.0
        self.cos_min = 1.0

    def labels(self, logits: np.ndarray, y: np.ndarray, k: int) -> None:
        order = np.argsort(-logits, axis=1)[:, :k]
        self.top1 += int((order[:, 0] == y).sum())
        self.topk += int((order == y[:, None]).any(axis=1).sum())

    def agreement(self, logits: np.ndarray, ref: np.ndarray) -> None:
        a, b = logits.astype(np.float64), ref.astype(np.float64)
        self.agree += int((a.argmax(1) == b.argmax(1)).sum())
        denom = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        cos = np.where(denom > 0, (a * b).sum(1) / np.where(denom > 0, denom, 1.0), 1.0)
        self.cos_sum += float(cos.sum())
        self.cos_min = min(self.cos_min, float(cos.min()))


def _first_output(outputs: dict[str, np.ndarray]) -> np.ndarray:
    return np.asarray(next(iter(outputs.values())))


def evaluate(
    runner: Runner,
    dataset: Any,
    spec: EvaluateSpec | None = None,
    reference: Runner | None = None,
    reference_logits: np.ndarray | None = None,
    reference_name: str = "reference",
    keep_logits: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = note,
) -> AccuracyResult:
    """Top-1/top-5 of ``runner`` on ``dataset`` and, if given, agreement with a reference."""
    spec = spec or EvaluateSpec()
    if spec.batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {spec.batch_size}", "e.g. --batch-size 16")
    if reference is not None and reference_logits is not None:
        raise InputError("both a reference model and reference logits were given", "pass only one of them")
    n_total = len(dataset) if spec.limit is None else min(spec.limit, len(dataset))
    if n_total == 0:
        raise InputError("the evaluation set has no images", "point --data at a labelled folder or file")
    has_labels = bool(getattr(dataset, "has_labels", False))
    if not has_labels and reference is None and reference_logits is None:
        raise InputError("the evaluation set has no labels and no reference was given",
                         "use labelled data (class subfolders) or pass --reference / --reference-logits")
    if reference_logits is not None:
        reference_logits = np.asarray(reference_logits)
        if reference_logits.ndim != 2 or reference_logits.shape[0] < n_total:
            raise InputError(f"reference logits have shape {reference_logits.shape} but {n_total} images are "
                             "evaluated", "save them from the same data set and order (attnvgg evaluate --save-logits)")
    notes: list[str] = []
    t0 = time.perf_counter()
    with runner, (reference if reference is not None else _Null()):
        meta = runner.input_metadata()[0]
        runner_info = runner.describe()
        batch = spec.batch_size
        static = meta.shape[0] if meta.shape and meta.shape[0] > 0 else -1
        if static > 0 and static != batch:
            notes.append(f"the model has a static batch of {static}; evaluating with batch {static} "
                         "(the last batch is padded and the padding discarded)")
            batch = static
        for msg in notes:
            log(f"note: {msg}")
        tally, ref_tally = _Tally(), _Tally()
        k = 0
        classes = 0
        batches = dataset.iter_batches(batch, limit=n_total)
        if progress:     # a bar only on a terminal (tqdm disable=None): no \r in piped logs
            batches = console.progress(batches, -(-n_total // batch), f"evaluate {runner.name}")
        start = 0
        kept: list[np.ndarray] = []
        for b, (x, y) in enumerate(batches):
            x = np.asarray(x, dtype=np.float32)
            want = tuple(d for d in meta.shape[1:])
            if x.ndim != len(meta.shape) or any(w != -1 and w != a for w, a in zip(want, x.shape[1:])):
                raise InputError(f"images have shape {tuple(x.shape[1:])} but {runner.name} takes {want}",
                                 "preprocess the data to the model's input size")
            n = x.shape[0]
            logits = _run(runner, meta.name, x, static)
            _check_finite(logits, runner, meta.name, x, b, start, "model")
            if logits.ndim != 2:
                raise InputError(f"{runner.name} returns shape {logits.shape}, not (batch, classes)",
                                 "evaluate a classifier that outputs logits")
            classes = logits.shape[1]
            k = min(5, classes)
            if has_labels and y is not None:
                y = np.asarray(y, dtype=np.int64)
                if y.min() < 0 or y.max() >= classes:
                    raise InputError(f"label {int(y.max())} is out of range for a model with {classes} outputs",
                                     "evaluate with the data set the model was trained on")
                tally.labels(logits, y, k)
            if reference is not None:
                ref = _run(reference, reference.input_metadata()[0].name, x, _static_batch(reference))
                _check_finite(ref, reference, reference.input_metadata()[0].name, x, b, start, "reference")
                if ref.shape != logits.shape:
                    raise InputError(f"reference outputs {ref.shape} but the model outputs {logits.shape}",
                                     "compare two variants of the same model")
            elif reference_logits is not None:
                ref = reference_logits[start:start + n]
                if ref.shape[1] != classes:
                    raise InputError(f"reference logits have {ref.shape[1]} classes, the model {classes}",
                                     "use logits saved from the same model")
            else:
                ref = None
            if ref is not None:
                tally.agreement(logits, ref)
                if has_labels and y is not None:
                    ref_tally.labels(ref, y, k)
            if keep_logits:
                kept.append(logits)
            tally.n += n
            start += n
    n = tally.n
    agreement = None
    if reference is not None or reference_logits is not None:
        agreement = Agreement(
            kind="logits" if reference_logits is not None else ("pytorch" if reference.backend == "pytorch" else "artifact"),
            name=reference_name,
            top1=ref_tally.top1 / n if has_labels else None, top5=ref_tally.topk / n if has_labels else None,
            top1_agreement=tally.agree / n, mean_cosine=tally.cos_sum / n, min_cosine=tally.cos_min)
    describe = dataset.describe() if hasattr(dataset, "describe") else {}
    result = AccuracyResult(
        model=runner.name, runner=runner_info, data=describe,
        images=n, classes=classes, topk=k, top1=tally.top1 / n if has_labels else None,
        top5=tally.topk / n if has_labels else None, reference=agreement,
        seconds=round(time.perf_counter() - t0, 3), notes=notes,
        logits=np.concatenate(kept) if keep_logits and kept else None)
    return result


def check_budget(result: AccuracyResult, max_top1_drop: float | None) -> None:
    """CheckFailed if top-1 fell more than ``max_top1_drop`` (a fraction) below the reference's."""
    if max_top1_drop is None:
        return
    ref = result.reference
    if ref is None or ref.top1 is None or result.top1 is None:
        raise InputError("--max-top1-drop needs labelled data and a reference", "pass --reference or drop the option")
    drop = ref.top1 - result.top1
    if drop > max_top1_drop:
        raise CheckFailed(f"top-1 {result.top1:.2%} is {drop:.2%} below the reference's {ref.top1:.2%} "
                          f"(budget {max_top1_drop:.2%})", "keep more layers in float or recalibrate")


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def _static_batch(runner: Runner) -> int:
    shape = runner.input_metadata()[0].shape
    return shape[0] if shape and shape[0] > 0 else -1


def _run(runner: Runner, name: str, x: np.ndarray, static: int) -> np.ndarray:
    """Run one batch; a static-batch model gets the last, short batch padded with copies."""
    n = x.shape[0]
    if static > 0 and n != static:
        pad = np.concatenate([x, np.repeat(x[-1:], static - n, axis=0)])
        return _first_output(runner.infer({name: pad}))[:n].astype(np.float32)
    return _first_output(runner.infer({name: x})).astype(np.float32)


def _check_finite(logits: np.ndarray, runner: Runner, name: str, x: np.ndarray, b: int, start: int,
                  role: str) -> None:
    bad = ~np.isfinite(logits).reshape(logits.shape[0], -1).all(axis=1)
    if not bad.any():
        return
    first = int(np.argmax(bad))
    where = locate_nonfinite(runner, name, x[first:first + 1] if _static_batch(runner) <= 0 else x)
    raise CheckFailed(
        f"{role} {runner.name} produced NaN/Inf logits in batch {b} (images {start}-{start + x.shape[0] - 1}, "
        f"{int(bad.sum())} of {x.shape[0]} samples, first image {start + first}); {where}",
        "inspect that node's inputs and the model weights (a NaN is never averaged into accuracy)")


def locate_nonfinite(runner: Runner, name: str, x: np.ndarray) -> str:
    """A short phrase naming the first node/module that produces a non-finite value."""
    try:
        if runner.backend.startswith("onnxruntime"):
            hit = locate_nonfinite_onnx(runner.path, {name: x})
            if hit is None:
                return "no single ONNX node produces it with graph optimizations off"
            node, op, tensor = hit
            return f"first non-finite tensor: {tensor!r} from node {node!r} ({op})"
        if runner.backend == "pytorch" and getattr(runner, "model", None) is not None:
            hit = locate_nonfinite_torch(runner.model, runner.to_device(x))
            return f"first non-finite output: module {hit!r}" if hit else "no module output is non-finite"
    except CheckFailed:
        raise
    except Exception as exc:  # noqa: BLE001 - locating is a diagnosis; the batch is already named
        return f"could not locate the node ({type(exc).__name__})"
    return "node location is not available for this backend"


def locate_nonfinite_onnx(path: str | Path, feeds: dict[str, np.ndarray]) -> tuple[str, str, str] | None:
    """Rerun ``feeds`` with every node output exposed; return (node, op type, tensor) of the first bad one."""

    tensors, producers = run_all_outputs(Path(path), feeds)
    for tensor, (node, op, _) in producers.items():
        v = tensors.get(tensor)
        if v is not None and not np.isfinite(v.astype(np.float64)).all():
            return node, op, tensor
    return None


def locate_nonfinite_torch(model: Any, x: Any) -> str | None:
    """Forward hooks on every module; the first (in execution order) whose output is non-finite."""
    import torch

    first: list[str] = []
    hooks = []

    def hook(name: str):
        def fn(_m: Any, _inp: Any, out: Any) -> None:
            if not first and isinstance(out, torch.Tensor) and out.is_floating_point() and not torch.isfinite(out).all():
                first.append(name)
        return fn

    # Hooks fire child-first, so the first hit is the innermost module where the value appears.
    for name, module in model.named_modules():
        if name:
            hooks.append(module.register_forward_hook(hook(name)))
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return first[0] if first else None
