"""Latency-versus-accuracy plot with the Pareto front.

Why a Pareto front: a variant is worth deploying only if no other is both faster and more
accurate. matplotlib is imported inside :func:`plot_png` and drawn on an Agg canvas directly
(no pyplot, no global backend switch), so the report works headless and the rest of the
package never pays for the import.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates, ordered by latency (then input order).

    A point is (latency, accuracy); lower latency and higher accuracy are better. ``a``
    dominates ``b`` if it is no worse in both and strictly better in one, so identical points
    are all on the front, and of two points with the same latency only the more accurate is.
    Points with a NaN or infinite coordinate are never on the front.
    """
    ok = [i for i, (lat, acc) in enumerate(points) if math.isfinite(lat) and math.isfinite(acc)]
    front = []
    for i in ok:
        li, ai = points[i]
        dominated = any(
            (lj <= li and aj >= ai) and (lj < li or aj > ai)
            for j in ok if j != i for lj, aj in (points[j],)
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], i))


def _label_offsets(xs: Sequence[float], ys: Sequence[float]) -> dict[int, int]:
    """Vertical label offsets (points) so labels of near neighbours do not print over each other."""
    xr = (max(xs) - min(xs)) or 1.0
    yr = (max(ys) - min(ys)) or 1.0
    out: dict[int, int] = {}
    for i in sorted(range(len(xs)), key=lambda i: (xs[i], ys[i])):
        near = [j for j in out if abs(ys[j] - ys[i]) < 0.04 * yr and abs(xs[j] - xs[i]) < 0.3 * xr]
        out[i] = 5 - 11 * len(near)
    return out


def plot_png(points: Sequence[tuple[float, float]], labels: Sequence[str], front: Sequence[int],
             batch: Optional[int], dpi: int = 120) -> bytes:
    """PNG bytes: p50 latency (x) against top-1 % (y), front marked and joined, points labelled."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    on = set(front)
    xs = [p[0] for p in points]
    ys = [p[1] * 100.0 for p in points]
    off = [i for i in range(len(points)) if i not in on]
    ax.scatter([xs[i] for i in off], [ys[i] for i in off], s=40, color="#9aa5b1", label="dominated", zorder=2)
    ax.scatter([xs[i] for i in front], [ys[i] for i in front], s=60, color="#d1495b", label="Pareto front", zorder=3)
    if len(front) > 1:
        fx = [xs[i] for i in front]
        fy = [ys[i] for i in front]
        ax.step(fx, fy, where="post", color="#d1495b", linewidth=1.2, alpha=0.8, zorder=1)
    for i, dy in _label_offsets(xs, ys).items():
        ax.annotate(labels[i], (xs[i], ys[i]), textcoords="offset points", xytext=(6, dy), fontsize=8)
    positive = [x for x in xs if x > 0]
    if positive and max(positive) / min(positive) > 20:
        ax.set_xscale("log")
    ax.set_xlabel(f"p50 latency at batch {batch} (ms)" if batch is not None else "p50 latency (ms)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title("Latency vs top-1 accuracy (upper left is better)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
