"""Parity of an ONNX model or engine against the PyTorch reference.

Random inputs at several batch sizes (both ends of the dynamic range included) and, when
given, image inputs; per-output metrics against per-precision tolerances; a table, a JSON
result and a JUnit XML file for CI dashboards.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from attnvgg import sidecar
from attnvgg.artifacts import check_outputs, write_json, write_text
from attnvgg.config import ModelSpec, PreprocessSpec, ValidateSpec
from attnvgg.data import open_dataset
from attnvgg.errors import InputError, MissingDependency
from attnvgg.models.build import build_model
from attnvgg.runners.base import effective_precision
from attnvgg.runners.factory import open_runner, provider_compute_precision
from attnvgg.runners.metrics import compare, passes
from attnvgg.runners.torch import TorchRunner
from attnvgg.validate.locate import locate_divergence
from attnvgg.validate import polygraphy_io as pio
from attnvgg.validate.polygraphy_io import SavedIterations


@dataclass
class Case:
    runner: str
    inputs: str            # "random" or the image source
    batch: int
    output: str
    metrics: dict
    passed: bool
    reasons: list[str] = field(default_factory=list)
    seconds: float = 0.0
    tolerance: str = ""    # the tolerance set applied (a bf16 runner on an fp32 file: "bf16")


@dataclass
class ParityResult:
    artifact: str
    precision: str          # the precision checked: the first runner's tolerance set
    tolerance: dict         # that set's values
    cases: list[Case]
    passed: bool
    reference: dict
    locate: dict | None = None
    skipped: list[str] = field(default_factory=list)
    artifact_precision: str = ""                            # what the file itself is
    tolerances: dict = field(default_factory=dict)          # every set applied: name -> values
    polygraphy: dict | None = None   # saved inputs/outputs and the equivalent `polygraphy run` line

    def to_dict(self) -> dict:
        return {**asdict(self), "cases": [asdict(c) for c in self.cases]}

    def worst(self) -> dict:
        keys = ("max_abs", "max_rel", "mean_abs")
        out = {k: max((c.metrics[k] for c in self.cases), default=0.0) for k in keys}
        out["cosine"] = min((c.metrics["min_cosine"] for c in self.cases), default=1.0)
        out["top1_agreement"] = min((c.metrics["top1_agreement"] for c in self.cases), default=1.0)
        return out


def batch_sizes(spec: ValidateSpec, input_dims: list, batch_range: list[int] | None, explicit: bool) -> list[int]:
    """Batches to test. A static batch is tested as is; a dynamic one at both range ends too."""
    b0 = input_dims[0] if input_dims else -1
    if isinstance(b0, int) and b0 > 0:
        if explicit and any(b != b0 for b in spec.batches):
            raise InputError(f"the model has a static batch of {b0}, but batches {spec.batches} were asked for",
                             f"use --batches {b0}, or re-export with a dynamic batch")
        return [b0]
    sizes = set(spec.batches)
    if batch_range:
        sizes.update(batch_range)
        lo, hi = batch_range
        bad = [b for b in sizes if not lo <= b <= hi]
        if bad and explicit:
            raise InputError(f"batch sizes {sorted(bad)} are outside the exported range {lo}..{hi}",
                             f"pick batches within {lo}..{hi} or re-export with --batch-max")
        sizes = {b for b in sizes if lo <= b <= hi}
    return sorted(sizes)


def random_inputs(shape_chw: tuple[int, int, int], batch: int, samples: int, seed: int) -> Iterator[np.ndarray]:
    """``samples`` images in batches of ``batch``, standard normal (what preprocessed images look like)."""
    rng = np.random.default_rng(seed + batch)
    n_batches = max(1, -(-samples // batch))
    for _ in range(n_batches):
        yield rng.standard_normal((batch, *shape_chw)).astype(np.float32)


def image_inputs(source: str, preprocess: PreprocessSpec, batch: int, limit: int) -> Iterator[np.ndarray]:
    ds = open_dataset(source, preprocess)
    for x, _ in ds.iter_batches(batch, limit=limit):
        if len(x) == batch:
            yield x


def tolerance_set(file_precision: str, compute_precision: str | None, exact: bool = False) -> str:
    """The tolerance set a runner is judged by: the file's precision, or the coarser precision
    the runner computes in (OpenVINO bf16 on an fp32 file: "bf16"), unless the user named the
    set (``exact``)."""
    return file_precision if exact else effective_precision(file_precision, compute_precision)


def tolerance_sets(file_precision: str, providers: list[str], exact: bool = False) -> list[str]:
    """The tolerance sets ``providers`` will be judged by (for overriding them from flags)."""
    return sorted({tolerance_set(file_precision, provider_compute_precision(p), exact) for p in providers})


def run_parity(
    artifact: str | os.PathLike,
    model_spec: ModelSpec,
    spec: ValidateSpec,
    precision: str | None = None,
    explicit_batches: bool = False,
    preprocess: PreprocessSpec | None = None,
    exact_precision: bool = False,
    saved: "SavedIterations | None" = None,
) -> ParityResult:
    """Every runner of ``spec.providers`` against PyTorch. ``precision`` is the file's (read from
    it when None); each runner is judged by :func:`tolerance_set` of it. ``saved`` (if given)
    receives the first runner's inputs and the PyTorch outputs, one entry per batch fed, for the
    Polygraphy files."""
    artifact = Path(artifact)
    if not artifact.exists():
        raise InputError(f"file not found: {artifact}", "check the path, or run attnvgg export first")
    precision = precision or sidecar.precision_of(artifact)
    if precision not in spec.tolerances:
        raise InputError(f"no tolerance for precision {precision!r}", f"use one of {', '.join(spec.tolerances)}")
    chain = sidecar.lineage(artifact)
    batch_range = chain[0].get("batch_range") if chain else None
    model = build_model(model_spec)
    runners = []
    skipped: list[str] = []
    is_engine = artifact.suffix != ".onnx"
    for provider in (["cpu"] if is_engine else spec.providers):
        r = open_runner(artifact, provider=provider)
        runners.append(r)
    sets = {r.name: tolerance_set(precision, r.compute_precision, exact_precision) for r in runners}
    for name in set(sets.values()) - set(spec.tolerances):
        raise InputError(f"no tolerance for precision {name!r}", f"add [validate.tolerances.{name}] to the config")
    tols = {name: spec.tolerances[name] for name in sets.values()}

    cases: list[Case] = []
    ref_runner = TorchRunner(model)
    with ref_runner:
        for runner in runners:
            try:
                runner.activate()
            except Exception as exc:
                if isinstance(exc, MissingDependency) and runner is not runners[0]:
                    skipped.append(f"{runner.name}: {exc}")
                    continue
                raise
            try:
                meta = runner.input_metadata()[0]
                dims = list(meta.shape)
                chw = tuple(d if d > 0 else s for d, s in zip(dims[1:], (model_spec.in_channels, model_spec.input_size, model_spec.input_size)))
                want = (model_spec.in_channels, model_spec.input_size, model_spec.input_size)
                if chw != want:
                    raise InputError(
                        f"{artifact.name} takes input {tuple(dims)} but the reference model takes (N, {want[0]}, {want[1]}, {want[2]})",
                        "pass the --input-size/--checkpoint the model was exported with",
                    )
                batches = batch_sizes(spec, dims, batch_range, explicit_batches)
                sources: list[tuple[str, Any]] = []
                for b in batches:
                    sources.append(("random", (b, random_inputs(chw, b, spec.samples, spec.seed))))
                    if spec.images:
                        if preprocess is None:
                            raise InputError("image inputs need a preprocessing spec",
                                             "export from a config with [preprocess], or pass --config")
                        sources.append((spec.images, (b, image_inputs(spec.images, preprocess, b, max(spec.samples, b)))))
                for label, (b, batches_iter) in sources:
                    refs, outs, t0 = [], [], time.perf_counter()
                    out_name = runner.output_names()[0]
                    for x in batches_iter:
                        refs.append(ref_runner.infer({"input": x})["logits"])
                        got = runner.infer({meta.name: x})
                        outs.append(got[out_name] if "logits" not in got else got["logits"])
                        if saved is not None and runner is runners[0]:
                            saved.inputs.append({meta.name: x})
                            saved.outputs.append({"logits" if "logits" in got else out_name: refs[-1]})
                    if not refs:
                        skipped.append(f"{label} at batch {b}: fewer images than the batch")
                        continue
                    ref = np.concatenate(refs)
                    out = np.concatenate(outs)
                    tol = tols[sets[runner.name]]
                    m = compare(ref, out, tol)
                    ok, why = passes(m, tol)
                    cases.append(Case(runner.name, label, b, "logits", m.to_dict(), ok, why,
                                      round(time.perf_counter() - t0, 3), tolerance=sets[runner.name]))
            finally:
                runner.deactivate()
    passed = bool(cases) and all(c.passed for c in cases)
    first = sets[runners[0].name]
    return ParityResult(
        artifact=str(artifact),
        precision=first,
        tolerance=asdict(tols[first]),
        cases=cases,
        passed=passed,
        reference={"backend": "pytorch", "model": asdict(model_spec)},
        skipped=skipped,
        artifact_precision=precision,
        tolerances={name: asdict(t) for name, t in tols.items()},
    )


def format_table(result: ParityResult) -> str:
    head = f"{'runner':<18} {'inputs':<10} {'batch':>5} {'max abs':>10} {'max rel':>10} {'mean abs':>10} {'cosine':>10} {'top-1':>7}  result"
    lines = [f"parity of {result.artifact} ({result.precision}) vs PyTorch fp32", head, "-" * len(head)]
    for c in result.cases:
        m = c.metrics
        src = c.inputs if len(c.inputs) <= 10 else "images"
        lines.append(f"{c.runner:<18} {src:<10} {c.batch:>5} {m['max_abs']:>10.3g} {m['max_rel']:>10.3g} "
                     f"{m['mean_abs']:>10.3g} {m['min_cosine']:>10.7f} {m['top1_agreement']:>7.1%}  "
                     f"{'PASS' if c.passed else 'FAIL: ' + '; '.join(c.reasons)}")
    for s in result.skipped:
        lines.append(f"skipped: {s}")
    lines.append(f"{'PASS' if result.passed else 'FAIL'}: {sum(c.passed for c in result.cases)}/{len(result.cases)} cases within "
                 f"{tolerance_text(result.tolerance)}" + (f" ({result.precision} tolerance)" if len(result.tolerances) > 1 else ""))
    for name, t in result.tolerances.items():
        if name != result.precision:
            who = sorted({c.runner for c in result.cases if c.tolerance == name})
            lines.append(f"  {', '.join(who) or name}: {name} tolerance, {tolerance_text(t)}")
    lines.append(TOLERANCE_RULE)
    if result.locate:
        lines.append(format_locate(result.locate))
    if result.polygraphy:
        lines.append(f"same check with Polygraphy: {result.polygraphy['command']}")
    return "\n".join(lines)


TOLERANCE_RULE = ("rule: numpy allclose, every element |a - ref| <= atol + rtol*|ref| (max rel alone may exceed rtol); "
                  "then cosine per sample >= min and top-1 agreement >= min")


def tolerance_text(tol: dict) -> str:
    """``atol 0.0001 + rtol 0.001*|ref|, cosine >= 0.99999, top-1 >= 100%`` (infinite bounds left out)."""
    import math

    parts = []
    if not (math.isinf(tol["atol"]) and math.isinf(tol["rtol"])):
        parts.append(f"abs(a-ref) <= atol {tol['atol']:g} + rtol {tol['rtol']:g}*abs(ref)")
    parts.append(f"cosine >= {tol['min_cosine']:g}")
    parts.append(f"top-1 >= {tol['min_top1']:.0%}")
    return ", ".join(parts)


def format_locate(loc: dict) -> str:
    if not loc.get("found"):
        return f"locate: {loc.get('message', 'no diverging layer found')}"
    s = (f"first diverging layer: {loc['module']} ({loc['module_type']}), max abs {loc['max_abs']:.3g}"
         f" vs tolerance {loc['tolerance']:.3g}")
    if loc.get("onnx_node"):
        s += f"; ONNX node {loc['onnx_node']} ({loc['onnx_op']})"
    if loc.get("last_good"):
        s += f"; last matching layer: {loc['last_good']}"
    return s


def junit_xml(result: ParityResult) -> str:
    from xml.etree import ElementTree as ET

    suite = ET.Element("testsuite", name="attnvgg.validate", tests=str(len(result.cases)),
                       failures=str(sum(not c.passed for c in result.cases)), errors="0",
                       time=f"{sum(c.seconds for c in result.cases):.3f}")
    for c in result.cases:
        case = ET.SubElement(suite, "testcase", classname=f"parity.{Path(result.artifact).name}.{c.runner}",
                             name=f"{c.inputs}-batch{c.batch}-{c.output}", time=f"{c.seconds:.3f}")
        if not c.passed:
            fail = ET.SubElement(case, "failure", message="; ".join(c.reasons), type="ParityFailure")
            fail.text = ", ".join(f"{k}={v}" for k, v in c.metrics.items())
        out = ET.SubElement(case, "system-out")
        out.text = ", ".join(f"{k}={v}" for k, v in c.metrics.items())
    if result.locate and result.locate.get("found"):
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="first_diverging_layer", value=str(result.locate["module"]))
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def polygraphy_block(result: ParityResult, saved: SavedIterations | None, save_inputs: str | os.PathLike | None,
                     save_outputs: str | os.PathLike | None) -> dict:
    """Write the Polygraphy files that were asked for; the equivalent ``polygraphy run`` line
    (with placeholders for files not saved, and the option that saves them)."""
    tol = result.tolerance
    max_ref = saved.max_abs_reference() if saved is not None and saved.outputs else None
    if saved is not None and saved.inputs:
        if save_inputs:
            pio.save_inputs(save_inputs, saved.inputs)
        if save_outputs:
            pio.save_outputs(save_outputs, saved.outputs)
    atol, rtol = pio.polygraphy_tolerances(tol["atol"], tol["rtol"])
    ins = str(save_inputs) if save_inputs else "INPUTS.json"
    outs = str(save_outputs) if save_outputs else "OUTPUTS.json"
    return {"inputs": str(save_inputs) if save_inputs else None, "outputs": str(save_outputs) if save_outputs else None,
            "iterations": len(saved.inputs) if saved is not None else 0,
            "atol": atol, "rtol": rtol, "max_abs_reference": max_ref,
            "command": pio.polygraphy_command(result.artifact, ins, outs, atol, rtol)
            + ("" if save_inputs and save_outputs else "   (write INPUTS/OUTPUTS with validate --save-inputs/--save-outputs)"),
            "tolerance_rule": "twice attnvgg's atol and rtol: Polygraphy fails an element only where |a-ref| > atol "
                              "and > rtol*|ref|, so what passes numpy's allclose here passes there"}


def write_results(result: ParityResult, json_path: str | os.PathLike | None, junit_path: str | os.PathLike | None) -> None:
    check_outputs([json_path, junit_path], [result.artifact])
    if json_path:
        write_json(json_path, {**sidecar.result_header("parity", [result.artifact]), **result.to_dict()})
    if junit_path:
        write_text(junit_path, junit_xml(result))


def validate_artifact(
    artifact: str | os.PathLike,
    model_spec: ModelSpec,
    spec: ValidateSpec,
    json_path: str | os.PathLike | None = None,
    junit_path: str | os.PathLike | None = None,
    precision: str | None = None,
    explicit_batches: bool = False,
    preprocess: PreprocessSpec | None = None,
    exact_precision: bool = False,
    save_inputs: str | os.PathLike | None = None,
    save_outputs: str | os.PathLike | None = None,
) -> ParityResult:
    """Parity, then (if asked and it failed) the first diverging layer; results written atomically.

    ``save_inputs``/``save_outputs``: the inputs fed and PyTorch's outputs in Polygraphy's JSON
    formats, and ``result.polygraphy`` the ``polygraphy run`` line that checks the model on them.
    """
    pio.check_destinations(save_inputs, save_outputs, artifact)
    check_outputs([json_path, junit_path, save_inputs, save_outputs], [artifact])
    saved = SavedIterations([], []) if (save_inputs or save_outputs) else None
    result = run_parity(artifact, model_spec, spec, precision=precision, explicit_batches=explicit_batches,
                        preprocess=preprocess, saved=saved, exact_precision=exact_precision)
    result.polygraphy = polygraphy_block(result, saved, save_inputs, save_outputs)
    if spec.locate and not result.passed and Path(artifact).suffix == ".onnx":
        tol = spec.tolerances[result.precision]
        failing = next(c for c in result.cases if not c.passed)
        x = next(random_inputs((model_spec.in_channels, model_spec.input_size, model_spec.input_size),
                               failing.batch, failing.batch, spec.seed))
        atol = tol.atol if np.isfinite(tol.atol) else 1e-2
        rtol = tol.rtol if np.isfinite(tol.rtol) else 1e-1
        result.locate = locate_divergence(artifact, build_model(model_spec), x, atol=atol, rtol=rtol)
    write_results(result, json_path, junit_path)
    return result
