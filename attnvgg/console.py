"""What a command prints besides its result: notes, progress bars, detail; set once by -q/-v.

Why one module: every stage logs through a ``log`` callable and some draw tqdm bars; the
command line decides how much of that a person (or a CI log) sees. ``-q`` keeps only results,
warnings about failed checks and errors; ``-v`` adds detail lines. Progress bars are drawn only
when stderr is a terminal (tqdm ``disable=None``), so a piped CI log never holds ``\\r`` redraws.
"""

from __future__ import annotations

import sys
from typing import Any, Iterable, Optional

QUIET, NORMAL, VERBOSE = 0, 1, 2
_level = NORMAL


def set_level(level: int) -> None:
    global _level
    _level = max(QUIET, min(VERBOSE, int(level)))


def level() -> int:
    return _level


def level_from_flags(quiet: int, verbose: int) -> int:
    """-q lowers, -v raises; both given cancel out."""
    return NORMAL - min(quiet, 1) + min(verbose, 1)


def note(msg: str) -> None:
    """A note a person wants by default (a cache hit, a clamp, a skipped case): stderr, not with -q."""
    if _level >= NORMAL:
        print(msg, file=sys.stderr, flush=True)


def detail(msg: str) -> None:
    """Detail only -v asks for (search steps, timings of sub-steps)."""
    if _level >= VERBOSE:
        print(msg, file=sys.stderr, flush=True)


def progress(items: Iterable[Any], total: Optional[int], desc: str, unit: str = "batch") -> Iterable[Any]:
    """A tqdm bar on stderr when it is a terminal and not -q; the items unchanged otherwise."""
    if _level < NORMAL:
        return items
    from tqdm import tqdm

    return tqdm(items, total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, disable=None)
