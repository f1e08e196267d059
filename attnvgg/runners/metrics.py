"""Parity metrics between a reference output and a candidate output."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from attnvgg.config import Tolerance


@dataclass
class ParityMetrics:
    max_abs: float
    max_rel: float
    mean_abs: float
    cosine: float            # mean over samples of the per-sample cosine similarity
    min_cosine: float        # worst sample
    top1_agreement: float    # fraction of samples whose argmax agrees
    allclose: bool           # |a - b| <= atol + rtol * |ref| everywhere
    finite: bool             # candidate has no NaN/Inf
    samples: int

    def to_dict(self) -> dict:
        return asdict(self)


def compare(ref: np.ndarray, out: np.ndarray, tol: Tolerance | None = None) -> ParityMetrics:
    ref = np.asarray(ref, dtype=np.float64)
    out = np.asarray(out, dtype=np.float64)
    if ref.shape != out.shape:
        raise ValueError(f"shape mismatch: reference {ref.shape} vs candidate {out.shape}")
    finite = bool(np.isfinite(out).all())
    diff = np.abs(ref - out)
    n = ref.shape[0] if ref.ndim > 1 else 1
    r2 = ref.reshape(n, -1)
    o2 = out.reshape(n, -1)
    denom = np.linalg.norm(r2, axis=1) * np.linalg.norm(o2, axis=1)
    cos = np.where(denom > 0, (r2 * o2).sum(axis=1) / np.where(denom > 0, denom, 1), 1.0)
    top1 = float((r2.argmax(axis=1) == o2.argmax(axis=1)).mean()) if r2.shape[1] > 1 else 1.0
    rel = diff / np.maximum(np.abs(ref), 1e-6)
    atol = tol.atol if tol else 0.0
    rtol = tol.rtol if tol else 0.0
    allclose = bool(finite and np.all(diff <= atol + rtol * np.abs(ref)))
    return ParityMetrics(
        max_abs=float(diff.max()) if diff.size else 0.0,
        max_rel=float(rel.max()) if rel.size else 0.0,
        mean_abs=float(diff.mean()) if diff.size else 0.0,
        cosine=float(np.nan_to_num(cos, nan=-1.0).mean()),
        min_cosine=float(np.nan_to_num(cos, nan=-1.0).min()),
        top1_agreement=top1,
        allclose=allclose,
        finite=finite,
        samples=n,
    )


def passes(m: ParityMetrics, tol: Tolerance) -> tuple[bool, list[str]]:
    """Whether metrics meet the tolerance, and which criteria failed (human-readable)."""
    why = []
    if not m.finite:
        why.append("output has NaN/Inf")
    if not m.allclose:
        why.append(f"max abs {m.max_abs:.3g} exceeds atol {tol.atol:g} + rtol {tol.rtol:g}*|ref|")
    if m.min_cosine < tol.min_cosine:
        why.append(f"cosine {m.min_cosine:.6f} < {tol.min_cosine:g}")
    if m.top1_agreement < tol.min_top1:
        why.append(f"top-1 agreement {m.top1_agreement:.1%} < {tol.min_top1:.1%}")
    return (not why), why
