"""Parity metrics between a reference output and a candidate output.

Cosine similarity is undefined for an all-zero vector and meaningless for one holding NaN/Inf.
Such a sample scores 0.0 ("no similarity") and is counted in ``cosine_undefined``, so it always
fails a cosine criterion: an all-zero INT8 model or a NaN model must never show cosine 1.0.
"""

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
    cosine_undefined: int = 0  # samples whose reference or candidate is all-zero or non-finite (scored 0.0)

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
    cos, undefined = cosine_per_sample(r2, o2)
    top1 = float((r2.argmax(axis=1) == o2.argmax(axis=1)).mean()) if r2.shape[1] > 1 else 1.0
    rel = diff / np.maximum(np.abs(ref), 1e-6)
    atol = tol.atol if tol else 0.0
    rtol = tol.rtol if tol else 0.0
    allclose = bool(finite and np.all(diff <= atol + rtol * np.abs(ref)))
    return ParityMetrics(
        max_abs=float(diff.max()) if diff.size else 0.0,
        max_rel=float(rel.max()) if rel.size else 0.0,
        mean_abs=float(diff.mean()) if diff.size else 0.0,
        cosine=float(cos.mean()) if cos.size else 0.0,
        min_cosine=float(cos.min()) if cos.size else 0.0,
        top1_agreement=top1,
        allclose=allclose,
        finite=finite,
        samples=n,
        cosine_undefined=undefined,
    )


def cosine_per_sample(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, int]:
    """Row-wise cosine of two (N, D) arrays; rows where either side is all-zero or non-finite
    score 0.0. Returns (cosines, how many rows were undefined)."""
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    finite = np.isfinite(a).all(axis=1) & np.isfinite(b).all(axis=1)
    a0 = np.where(finite[:, None], a, 0.0)
    b0 = np.where(finite[:, None], b, 0.0)
    denom = np.linalg.norm(a0, axis=1) * np.linalg.norm(b0, axis=1)
    ok = finite & (denom > 0) & np.isfinite(denom)
    cos = np.zeros(len(a0), dtype=np.float64)
    cos[ok] = (a0[ok] * b0[ok]).sum(axis=1) / denom[ok]
    return np.clip(cos, -1.0, 1.0), int((~ok).sum())


def passes(m: ParityMetrics, tol: Tolerance) -> tuple[bool, list[str]]:
    """Whether metrics meet the tolerance, and which criteria failed (human-readable)."""
    why = []
    if not m.finite:
        why.append("output has NaN/Inf")
    if not m.allclose:
        why.append(f"max abs {m.max_abs:.3g} exceeds atol {tol.atol:g} + rtol {tol.rtol:g}*|ref|")
    if m.cosine_undefined:
        why.append(f"cosine undefined for {m.cosine_undefined} of {m.samples} samples (all-zero or NaN/Inf output)")
    if m.min_cosine < tol.min_cosine or m.min_cosine != m.min_cosine:
        why.append(f"cosine {m.min_cosine:.6f} < {tol.min_cosine:g}")
    if m.top1_agreement < tol.min_top1:
        why.append(f"top-1 agreement {m.top1_agreement:.1%} < {tol.min_top1:.1%}")
    return (not why), why
