"""Graph simplification with onnxsim and its numerical check.

A dynamo export is usually already minimal, and onnxsim then spends ~25 s and ~3.7 GiB on
the full-size model to change nothing. ``is_minimal`` checks cheaply for what onnxsim would
remove (shape computation, constant-foldable nodes, identities); if none is there we say so
and skip it. When onnxsim runs, its numerical check always runs too.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from attnvgg import sidecar
from attnvgg.artifacts import atomic_path, check_outputs, external_data_path, sidecar_path
from attnvgg.config import SimplifySpec
from attnvgg.errors import CheckFailed, StageError, first_line
from attnvgg.export.graph import summarize
from attnvgg.onnxgraph import input_shape, load_onnx, save_onnx

SHAPE_OPS = {"Shape", "Size", "ConstantOfShape", "Range", "NonZero"}
NO_OPS = {"Identity", "Dropout"}
#: Facts of the export sidecar that still hold for the simplified graph ("seconds": the export
#: time the report shows for the file, as before).
INHERITED = ("model", "preprocess", "export", "input", "batch_range", "checkpoint_sha256", "seconds")


@dataclass
class SimplifyResult:
    path: Path
    ran_onnxsim: bool
    nodes_before: int
    nodes_after: int
    seconds: float
    reason: str

    def to_dict(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


def foldable_nodes(model: Any) -> list[str]:
    """Nodes onnxsim would fold or drop: shape maths, identities, nodes fed only by constants."""
    graph = model.graph
    constants = {i.name for i in graph.initializer}
    found = []
    for node in graph.node:
        if node.op_type in SHAPE_OPS or node.op_type in NO_OPS:
            found.append(f"{node.op_type}:{node.name}")
            continue
        if node.op_type == "Constant":
            constants.update(node.output)
            continue
        real_inputs = [i for i in node.input if i]
        if real_inputs and all(i in constants for i in real_inputs):
            found.append(f"{node.op_type}:{node.name}")
            constants.update(node.output)
    # Constant nodes that feed something are foldable into initializers too.
    consts = [n for n in graph.node if n.op_type == "Constant"]
    used_by_nonconst = {i for n in graph.node if n.op_type != "Constant" for i in n.input}
    found += [f"Constant:{n.name}" for n in consts if set(n.output) & used_by_nonconst]
    init_used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    found += [f"unused initializer:{i.name}" for i in graph.initializer if i.name not in init_used]
    return found


def _copy_onnx(src: Path, out: Path) -> None:
    """The graph is unchanged: copy the bytes (and external data) instead of re-serialising."""
    if external_data_path(src).exists():
        save_onnx(load_onnx(src), out, external_data="always")
        return
    with atomic_path(out) as tmp:
        shutil.copyfile(src, tmp)


def simplify_onnx(src: str | os.PathLike, out: str | os.PathLike, spec: SimplifySpec | None = None) -> SimplifyResult:
    import onnx

    spec = spec or SimplifySpec()
    src, out = Path(src), Path(out)
    check_outputs([out, sidecar_path(out)], [src])
    src_side = sidecar.read(src)      # a replaced or corrupt source sidecar fails before onnxsim runs
    model = load_onnx(src)
    before = len(model.graph.node)
    t0 = time.perf_counter()
    todo = foldable_nodes(model)
    if spec.skip_if_minimal and not todo:
        result = SimplifyResult(out, False, before, before, time.perf_counter() - t0,
                                "already minimal: no shape computation, constant-foldable nodes or identities; onnxsim skipped")
        _copy_onnx(src, out)
    else:
        import onnxsim

        name, shape = input_shape(model)
        test_shape = [d if isinstance(d, int) else (2 if i == 0 else 224) for i, d in enumerate(shape)]
        try:
            simplified, ok = onnxsim.simplify(model, check_n=spec.check_n, test_input_shapes={name: test_shape})
        except Exception as exc:
            first = first_line(exc)
            raise StageError(f"onnxsim failed on {src}: {first}",
                             "use the unsimplified model, or try --exporter dynamo which needs no simplification") from exc
        if not ok:
            raise CheckFailed(f"onnxsim changed the outputs of {src} (its numerical check with {spec.check_n} random inputs failed)",
                              "use the unsimplified model; no simplified file was written")
        onnx.checker.check_model(simplified)
        after = len(simplified.graph.node)
        reason = f"onnxsim: {before} -> {after} nodes" + (" (no change)" if after == before else "")
        result = SimplifyResult(out, True, before, after, time.perf_counter() - t0, reason)
        save_onnx(simplified, out)
    inherited = src_side.facts if src_side is not None else {}
    facts = {key: inherited.get(key) for key in INHERITED}
    facts.update({
        "stage": "simplify",
        "simplify": {**asdict(spec), **result.to_dict(), "skipped_nodes": todo[:20]},
        "summary": summarize(out).to_dict(),
    })
    sidecar.write(out, "simplify", facts, source=src)
    return result
