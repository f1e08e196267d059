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


def _label_offsets(xs: Sequence[float], ys: Sequence[float], log_x: bool = False) -> dict[int, int]:
    """Vertical label offsets (points) so labels of near neighbours do not print over each other
    (nearness along x measured on the axis' own scale)."""
    if log_x:
        xs = [math.log10(x) if x > 0 else 0.0 for x in xs]
    xr = (max(xs) - min(xs)) or 1.0
    yr = (max(ys) - min(ys)) or 1.0
    out: dict[int, int] = {}
    for i in sorted(range(len(xs)), key=lambda i: (xs[i], ys[i])):
        near = [j for j in out if abs(ys[j] - ys[i]) < 0.04 * yr and abs(xs[j] - xs[i]) < 0.3 * xr]
        out[i] = 5 - 11 * len(near)
    return out


#: y axes of the latency-vs-accuracy plot: trained weights show top-1 accuracy; random weights
#: (labels mean nothing) show top-1 agreement with PyTorch fp32, and say so
ACCURACY_AXIS = {"label": "top-1 accuracy (%)", "title": "Latency vs top-1 accuracy (upper left is better)"}
AGREEMENT_AXIS = {"label": "top-1 agreement with PyTorch fp32 (%)",
                  "title": "Random weights: latency vs top-1 agreement with PyTorch fp32 (upper left is better)"}
#: the y axis spans at least this many points, so a 1-point drop never fills the plot's height
MIN_Y_SPAN = 10.0


def y_limits(ys: Sequence[float]) -> tuple[float, float]:
    """At least MIN_Y_SPAN points tall, inside 0..100 (plus a margin for the markers)."""
    lo, hi = min(ys), max(ys)
    top = min(100.0, hi + 1.0)
    bottom = max(0.0, min(lo - 1.0, top - MIN_Y_SPAN))
    if top - bottom < MIN_Y_SPAN:
        top = min(100.0, bottom + MIN_Y_SPAN)
    return bottom - 0.5, top + 0.5


def _plain_ticks(axis: object, fixed: Optional[Sequence[float]] = None) -> None:
    """Log axes labelled 1, 2, 5, 10, 20 ... (or at ``fixed`` values) instead of 2x10^0."""
    from matplotlib.ticker import FixedLocator, FormatStrFormatter, LogLocator, NullFormatter, NullLocator

    axis.set_major_locator(FixedLocator(list(fixed)) if fixed else LogLocator(base=10, subs=(1.0, 2.0, 5.0)))  # type: ignore[attr-defined]
    axis.set_major_formatter(FormatStrFormatter("%g"))   # type: ignore[attr-defined]
    axis.set_minor_locator(NullLocator())                # type: ignore[attr-defined]
    axis.set_minor_formatter(NullFormatter())            # type: ignore[attr-defined]


def plot_png(points: Sequence[tuple[float, float]], labels: Sequence[str], front: Sequence[int],
             batch: Optional[int], axis: Optional[dict] = None, dpi: int = 120) -> bytes:
    """PNG bytes: p50 latency (x) against top-1 % or agreement % (y), front marked and joined."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    axis = axis or ACCURACY_AXIS
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
    positive = [x for x in xs if x > 0]
    log_x = bool(positive) and max(positive) / min(positive) > 8
    for i, dy in _label_offsets(xs, ys, log_x).items():
        ax.annotate(labels[i], (xs[i], ys[i]), textcoords="offset points", xytext=(6, dy), fontsize=8)
    if log_x:
        ax.set_xscale("log")
        _plain_ticks(ax.xaxis)
    ax.set_ylim(*y_limits(ys))
    ax.set_xlabel(f"p50 latency at batch {batch} (ms)" if batch is not None else "p50 latency (ms)")
    ax.set_ylabel(axis["label"])
    ax.set_title(axis["title"], fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def plot_batches(rows: Sequence[dict], with_machine: bool = False, dpi: int = 120) -> bytes:
    """PNG bytes: p50 latency per image (ms) against batch size, one line per row, log-log.

    Per image, so a line that falls means batching pays (the table has p90/p99 and spread)."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for r in rows:
        pts = sorted((int(b), v) for b, v in r["latency"].items() if v.get("p50_ms"))
        if not pts:
            continue
        bs = [b for b, _ in pts]
        per_image = [v["p50_ms"] / b for b, v in pts]
        label = r["label"] + (f" [{r['run']}]" if with_machine else "")
        ax.plot(bs, per_image, marker="o", linewidth=1.4, label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    _plain_ticks(ax.xaxis, sorted({int(b) for r in rows for b in r["latency"]}))
    _plain_ticks(ax.yaxis)
    ax.set_xlabel("batch size")
    ax.set_ylabel("p50 latency per image (ms)")
    ax.set_title("Latency vs batch (lower is better)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
