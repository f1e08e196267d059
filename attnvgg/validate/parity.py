"""Parity of an ONNX model or engine against the PyTorch reference.

Random inputs at several batch sizes (both ends of the dynamic range included) and, when
given, image inputs; per-output metrics against per-precision tolerances; a table, a JSON
result and a JUnit XML file for CI dashboards.

What gates (``Case.gated``): every case, except that a precision whose tolerance says
``random_inputs = "info"`` (INT8 by default) is gated on its image cases only, when there are
any. Why: INT8 ranges are calibrated on images from the data the model serves; standard-normal
noise lies outside that distribution, so its activations clip and a random-input miss (cosine
0.37 at batch 1 on the built-in model, whose image cases give 0.9995) measures the noise, not
the model. Those cases are still run, printed, written to the JSON (``"gated": false``) and to
JUnit as properties, marked ``INFO``: information, never invisible, never the verdict. Without
images the random cases gate, and the result says so.
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
from attnvgg.config import ONNX_RUNNERS, RANDOM_INPUT_ROLES, ModelSpec, PreprocessSpec, Tolerance, ValidateSpec
from attnvgg.data import open_dataset
from attnvgg.errors import InputError, MissingDependency
from attnvgg.models.build import build_model
from attnvgg.runners.base import effective_precision
from attnvgg.runners.factory import open_runner, provider_compute_precision
from attnvgg.runners.metrics import compare, passes
from attnvgg.runners.torch import TorchRunner
from attnvgg.validate.locate import locate_divergence
from attnvgg.validate.maps import validate_maps
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
    gated: bool = True     # False: information only (see the module docstring); never decides ``passed``
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
    gate: str = "all cases"  # what the verdict rests on, in words
    attention_maps: dict | None = None   # --attention-maps: agreement with PyTorch fp32 maps, limits, failures
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


def check_spec(spec: ValidateSpec) -> None:
    """Refuse settings that would make the check vacuous (no samples) before any model is built."""
    if isinstance(spec.samples, bool) or not isinstance(spec.samples, int) or spec.samples < 1:
        raise InputError(f"validate samples must be at least 1, got {spec.samples!r}",
                         "e.g. --samples 8 (or validate.samples = 8 in the config)")
    if not spec.batches or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in spec.batches):
        raise InputError(f"validate batches must be positive integers, got {spec.batches!r}", "e.g. --batches 1,8")
    bad = [p for p in spec.providers if p not in ONNX_RUNNERS]
    if bad or not spec.providers:
        raise InputError(f"unknown validate provider(s) {bad or spec.providers}", f"use any of {', '.join(ONNX_RUNNERS)}")
    for prec, tol in spec.tolerances.items():
        for key in ("atol", "rtol"):
            v = getattr(tol, key)
            if not v >= 0:
                raise InputError(f"tolerance {prec}.{key} must be >= 0 (inf for no limit), got {v}",
                                 f"fix validate.tolerances.{prec}.{key}")
        if not -1.0 <= tol.min_cosine <= 1.0:
            raise InputError(f"tolerance {prec}.min_cosine must be in [-1, 1], got {tol.min_cosine}",
                             f"fix validate.tolerances.{prec}.min_cosine")
        if not 0.0 <= tol.min_top1 <= 1.0:
            raise InputError(f"tolerance {prec}.min_top1 must be in [0, 1], got {tol.min_top1}",
                             f"fix validate.tolerances.{prec}.min_top1 (a fraction: 0.8 = 80 %)")
        if tol.random_inputs not in RANDOM_INPUT_ROLES:
            raise InputError(f"tolerance {prec}.random_inputs must be one of {', '.join(RANDOM_INPUT_ROLES)}, "
                             f"got {tol.random_inputs!r}", f"fix validate.tolerances.{prec}.random_inputs")


def gate_cases(cases: list["Case"], tol: Tolerance) -> str:
    """Mark which cases decide the verdict (see the module docstring); returns the rule in words."""
    image_runners = {c.runner for c in cases if c.inputs != "random"}
    if tol.random_inputs != "info":
        return "all cases"
    info = 0
    for c in cases:
        if c.inputs == "random" and c.runner in image_runners:
            c.gated = False
            info += 1
    if not image_runners:
        return ("random inputs (no image inputs were given: pass --images from the data the model serves, "
                "whose distribution the calibration saw)")
    return ("image inputs; random-input cases are information only (calibrated ranges do not cover "
            "standard-normal noise)")


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
    check_spec(spec)
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
    gate = gate_cases(cases, spec.tolerances[precision])
    gated = [c for c in cases if c.gated]
    passed = bool(gated) and all(c.passed for c in gated)
    first = sets[runners[0].name]
    return ParityResult(
        artifact=str(artifact),
        precision=first,
        tolerance=asdict(tols[first]),
        cases=cases,
        passed=passed,
        reference={"backend": "pytorch", "model": asdict(model_spec)},
        skipped=skipped,
        gate=gate,
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
                     f"{'' if c.gated else 'INFO (not gated) '}{'PASS' if c.passed else 'FAIL: ' + '; '.join(c.reasons)}")
    for s in result.skipped:
        lines.append(f"skipped: {s}")
    gated = [c for c in result.cases if c.gated]
    info = [c for c in result.cases if not c.gated]
    if info:
        lines.append(f"gated on {result.gate}; {sum(not c.passed for c in info)} of {len(info)} information-only "
                     "case(s) are outside the tolerance")
    elif result.gate != "all cases":
        lines.append(f"gated on {result.gate}")
    lines.append(f"{'PASS' if result.passed else 'FAIL'}: {sum(c.passed for c in gated)}/{len(gated)} gated cases within "
                 f"{tolerance_text(result.tolerance)}")
    for name, t in result.tolerances.items():
        if name != result.precision:
            who = sorted({c.runner for c in result.cases if c.tolerance == name})
            lines.append(f"  {', '.join(who) or name}: {name} tolerance, {tolerance_text(t)}")
    lines.append(TOLERANCE_RULE)
    if result.locate:
        lines.append(format_locate(result.locate))
    if result.polygraphy:
        lines.append(f"same check with Polygraphy: {result.polygraphy['command']}")
    if result.attention_maps:
        am = result.attention_maps
        js = f", mean JS {am['js_mean']:.4f}" if am.get("js_mean") is not None else ""
        lim = am["limits"]
        lines.append(f"{'PASS' if not am['failures'] else 'FAIL'}: attention maps on {am['images']} {am['inputs']} "
                     f"inputs: cosine min {am['min_cosine']:.4f}{js} (limits: cosine >= {lim['min_cosine']:g}, "
                     f"mean JS <= {lim['max_js']:g})")
        lines += [f"  {f}" for f in am["failures"]]
    return "\n".join(lines)


def check_attention_maps(artifact: Path, model_spec: ModelSpec, spec: ValidateSpec, precision: str,
                         preprocess: PreprocessSpec | None) -> dict:
    """Attention-map agreement with PyTorch fp32 against ``spec.map_limits[precision]``."""
    if artifact.suffix != ".onnx":
        raise InputError(f"--attention-maps needs an ONNX file, got {artifact.name}",
                         "validate the ONNX model the engine was built from")
    if precision not in spec.map_limits:
        raise InputError(f"no attention-map limits for precision {precision!r}",
                         f"use one of {', '.join(spec.map_limits)}")
    if spec.map_images < 1:
        raise InputError(f"map_images must be >= 1, got {spec.map_images}", "e.g. --set validate.map_images=4")
    limits = spec.map_limits[precision]
    chw = (model_spec.in_channels, model_spec.input_size, model_spec.input_size)
    if spec.images and preprocess is not None:
        x = next(image_inputs(spec.images, preprocess, spec.map_images, spec.map_images), None)
        label = spec.images
    else:
        x, label = None, "random"
    if x is None:
        x, label = next(random_inputs(chw, spec.map_images, 1, spec.seed)), "random"
    res, failures = validate_maps(artifact, model_spec, x, limits, variant=precision)
    return {**res.to_dict(), "inputs": label, "limits": asdict(limits), "failures": failures}


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
    if tol.get("random_inputs") == "info":
        parts.append("gated on image inputs (random inputs: information only)")
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
                       failures=str(sum(c.gated and not c.passed for c in result.cases)), errors="0",
                       time=f"{sum(c.seconds for c in result.cases):.3f}")
    for c in result.cases:
        case = ET.SubElement(suite, "testcase", classname=f"parity.{Path(result.artifact).name}.{c.runner}",
                             name=f"{c.inputs}-batch{c.batch}-{c.output}", time=f"{c.seconds:.3f}")
        if not c.gated:
            props = ET.SubElement(case, "properties")
            ET.SubElement(props, "property", name="gated", value="false")
            ET.SubElement(props, "property", name="information_only_result",
                          value="pass" if c.passed else "fail: " + "; ".join(c.reasons))
        elif not c.passed:
            fail = ET.SubElement(case, "failure", message="; ".join(c.reasons), type="ParityFailure")
            fail.text = ", ".join(f"{k}={v}" for k, v in c.metrics.items())
        out = ET.SubElement(case, "system-out")
        out.text = ("" if c.gated else f"INFO (not gated: {result.gate}) ") + ", ".join(
            f"{k}={v}" for k, v in c.metrics.items())
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
    failing = next((c for c in result.cases if c.gated and not c.passed), None)
    if spec.locate and failing is not None and Path(artifact).suffix == ".onnx":
        tol = spec.tolerances[result.precision]
        x = next(random_inputs((model_spec.in_channels, model_spec.input_size, model_spec.input_size),
                               failing.batch, failing.batch, spec.seed))
        atol = tol.atol if np.isfinite(tol.atol) else 1e-2
        rtol = tol.rtol if np.isfinite(tol.rtol) else 1e-1
        result.locate = locate_divergence(artifact, build_model(model_spec), x, atol=atol, rtol=rtol)
    if spec.attention_maps:
        result.attention_maps = check_attention_maps(Path(artifact), model_spec, spec, result.precision, preprocess)
        if result.attention_maps["failures"]:
            result.passed = False
    write_results(result, json_path, junit_path)
    return result
