"""One "candidate vs reference" comparison: run two runners on the same inputs, compare logits.

Used by export's dynamic-H/W proof, the fp16 check and the int8 quick check (``validate`` has
its own loop because it reports a case per batch size and input source). Running apart from
comparing, as Polygraphy's Comparator does: the runners only infer, ``metrics`` judges.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from attnvgg.config import Tolerance
from attnvgg.runners.base import Runner
from attnvgg.runners.metrics import compare, passes


def first_output(runner: Runner, x: np.ndarray) -> np.ndarray:
    """The runner's first output for ``x`` fed to its one input, as float32."""
    name = runner.input_metadata()[0].name
    return np.asarray(next(iter(runner.infer({name: x}).values())), dtype=np.float32)


def compare_runners(reference: Runner, candidate: Runner, inputs: Iterable[np.ndarray], tol: Tolerance) -> dict:
    """Metrics of ``candidate`` against ``reference`` over all ``inputs`` (both activated here if
    they are not yet), with ``passed`` and the failed criteria in ``why``."""
    refs, outs = [], []
    with reference, candidate:
        for x in inputs:
            refs.append(first_output(reference, x))
            outs.append(first_output(candidate, x))
    m = compare(np.concatenate(refs), np.concatenate(outs), tol)
    ok, why = passes(m, tol)
    return {**m.to_dict(), "passed": ok, "why": why}
