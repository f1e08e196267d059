"""validate's inputs and reference outputs in Polygraphy's own JSON formats, and the
``polygraphy run`` line that checks them.

Why Polygraphy's formats and not ours: an engineer who already gates with ``polygraphy run
--load-inputs --load-outputs`` can re-check any attnvgg model, on any runner Polygraphy has
(ONNX Runtime, TensorRT), without attnvgg. So the inputs are written with
``polygraphy.json.save_json`` as its data-loader format (a JSON list of ``{input name: array}``
feed dicts, one per iteration) and the PyTorch outputs as a ``polygraphy.comparator.RunResults``
(one runner, ``pytorch``, one ``IterationResult`` per iteration): the files ``polygraphy run
--save-inputs/--save-outputs`` itself writes. polygraphy is imported inside the functions.

Tolerance: attnvgg's rule is numpy's ``allclose`` (``|a-b| <= atol + rtol*|ref|`` for every
element). Polygraphy's elementwise check fails an element only where ``|a-b| > atol`` AND
``|a-b| > rtol*|ref|``. The line passes ``--atol 2*atol --rtol 2*rtol``: an element within
``atol + rtol*|ref|`` is within twice the larger of the two terms, so within one of Polygraphy's
two bounds, and outputs that pass here pass there. int8's infinite atol/rtol (its gate is
cosine and top-1 agreement, which Polygraphy cannot express) are passed as ``inf``: that line
then checks that every output exists, has the reference's shape and is not NaN.
"""

from __future__ import annotations

import math
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from attnvgg.artifacts import atomic_path, check_outputs
from attnvgg.errors import InputError

REFERENCE_RUNNER = "pytorch"
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


@dataclass
class SavedIterations:
    """What validate fed and what PyTorch answered, one entry per iteration (batch)."""

    inputs: list[dict[str, np.ndarray]]
    outputs: list[dict[str, np.ndarray]]

    def max_abs_reference(self) -> float:
        return max((float(np.max(np.abs(a))) for o in self.outputs for a in o.values() if a.size), default=0.0)


def _check_dest(path: Path, what: str) -> None:
    if path.is_dir():
        raise InputError(f"{what} {path} is a folder", f"pass a file name for {what}, e.g. inputs.json")
    if path.parent.exists() and not path.parent.is_dir():
        raise InputError(f"{what} {path}: {path.parent} is a file, not a folder", "pick a path in a folder")


def check_destinations(inputs_path: Optional[str | os.PathLike], outputs_path: Optional[str | os.PathLike],
                       artifact: str | os.PathLike) -> None:
    """Refuse bad --save-inputs/--save-outputs paths before any model runs (a folder; the model,
    its sidecar or data file; the same file twice: the shared output check)."""
    given = [(Path(p), w) for p, w in ((inputs_path, "--save-inputs"), (outputs_path, "--save-outputs")) if p]
    for p, what in given:
        _check_dest(p, what)
    check_outputs([inputs_path, outputs_path], [artifact])


def save_inputs(path: str | os.PathLike, feeds: Sequence[dict[str, np.ndarray]]) -> Path:
    """Polygraphy data-loader JSON: a list of feed dicts (``polygraphy run --load-inputs``)."""
    from polygraphy.json import save_json
    from polygraphy.logger import G_LOGGER

    with atomic_path(path) as tmp, G_LOGGER.verbosity():    # no "[I] Saving ..." lines in our output
        save_json([{k: np.ascontiguousarray(v) for k, v in f.items()} for f in feeds], str(tmp))
    return Path(path)


def save_outputs(path: str | os.PathLike, outputs: Sequence[dict[str, np.ndarray]],
                 runner_name: str = REFERENCE_RUNNER) -> Path:
    """Polygraphy ``RunResults`` JSON with one runner (``polygraphy run --load-outputs``)."""
    from polygraphy.comparator import RunResults
    from polygraphy.logger import G_LOGGER

    results = RunResults()
    results.add([{k: np.ascontiguousarray(v) for k, v in o.items()} for o in outputs], runner_name=runner_name)
    with atomic_path(path) as tmp, G_LOGGER.verbosity():
        results.save(str(tmp))
    return Path(path)


def load_outputs(path: str | os.PathLike) -> list[dict[str, np.ndarray]]:
    """The iterations of the first runner in a saved ``RunResults`` (for tests and tools)."""
    from polygraphy.comparator import RunResults
    from polygraphy.logger import G_LOGGER

    with G_LOGGER.verbosity():
        results = RunResults.load(str(path))
    _, iterations = results[0]
    return [dict(it.items()) for it in iterations]


def _num(v: float) -> str:
    return "inf" if math.isinf(v) else f"{v:.6g}"


def polygraphy_tolerances(atol: float, rtol: float) -> tuple[float, float]:
    """Polygraphy's (atol, rtol) that accept everything numpy's allclose(atol, rtol) accepts."""
    if math.isinf(atol) or math.isinf(rtol):
        return math.inf, math.inf
    return 2.0 * atol, 2.0 * rtol


def polygraphy_command(artifact: str | os.PathLike, inputs_path: str | os.PathLike,
                       outputs_path: str | os.PathLike, atol: float, rtol: float) -> str:
    """``polygraphy run MODEL --onnxrt|--trt --load-inputs I --load-outputs O --atol A --rtol R``."""
    art = str(artifact)
    backend = ["--trt", "--model-type", "engine"] if art.endswith(ENGINE_SUFFIXES) else ["--onnxrt"]
    args = ["polygraphy", "run", art, *backend, "--load-inputs", str(inputs_path),
            "--load-outputs", str(outputs_path), "--atol", _num(atol), "--rtol", _num(rtol)]
    return " ".join(shlex.quote(a) for a in args)
