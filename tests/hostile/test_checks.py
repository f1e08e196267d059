"""Checks that must not pass what is wrong: cosine of zero/NaN outputs, edited calibration cache
entries, the INT8 gate, strict JSON of NaN results."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import error_line, run_cli
from tests.hostile.conftest import rehash_sidecar


def _strict(text: str):
    def no(tok):
        raise ValueError(f"non-strict JSON token {tok}")
    return json.loads(text, parse_constant=no)


@pytest.mark.parametrize("bad", ["zeros", "nan", "inf"])
def test_cosine_of_zero_or_non_finite_output_fails(bad):
    """A NaN model showed cosine 1.0000000; an all-zero INT8 model "mean cosine 1.000000" at 1 % agreement."""
    from attnvgg.config import default_tolerances
    from attnvgg.runners.accuracy import _Tally
    from attnvgg.runners.metrics import compare, passes

    ref = np.random.default_rng(0).standard_normal((4, 10))
    out = {"zeros": np.zeros_like(ref), "nan": np.full_like(ref, np.nan), "inf": np.full_like(ref, np.inf)}[bad]
    m = compare(ref, out, default_tolerances()["int8"])
    assert m.cosine == 0.0 and m.min_cosine == 0.0 and m.cosine_undefined == 4
    ok, why = passes(m, default_tolerances()["int8"])
    assert not ok and any("cosine undefined for 4 of 4" in w for w in why)
    t = _Tally()
    t.agreement(out, ref)
    assert t.cos_sum == 0.0 and t.cos_min == 0.0 and t.cos_undefined == 4


def test_nan_model_parity_json_is_strict(work):
    """Parity JSON of a NaN output had bare NaN tokens; now null plus a non_finite map, and exit 1."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(work / "model.sim.onnx"))
    init = next(t for t in m.graph.initializer if t.name == "classifier.6.weight")
    arr = numpy_helper.to_array(init).copy()
    arr[:] = np.nan
    init.CopyFrom(numpy_helper.from_array(arr, init.name))
    onnx.save(m, str(work / "model.sim.onnx"))
    rehash_sidecar(work / "model.sim.onnx")
    res = run_cli(["validate", "model.sim.onnx", "--batches", "1", "--samples", "2", "--json", "p.json",
                   "--junit", "p.xml"], cwd=work)
    assert res.exit_code == 1, res.output
    assert "parity failed" in error_line(res)
    data = _strict((work / "p.json").read_text())
    assert data["passed"] is False and data["non_finite"]
    case = data["cases"][0]
    assert case["metrics"]["finite"] is False and case["metrics"]["max_abs"] is None
    assert data["non_finite"]["cases.0.metrics.max_abs"] == "nan"


def test_int8_gate_is_on_images_and_random_cases_stay_visible():
    """The decision: an INT8 verdict rests on image inputs; random-input figures are information."""
    from attnvgg.config import default_tolerances
    from attnvgg.validate.parity import Case, ParityResult, format_table, gate_cases, junit_xml

    def case(inputs, batch, passed):
        return Case("onnxruntime-cpu", inputs, batch, "logits",
                    {"max_abs": 1.0, "max_rel": 1.0, "mean_abs": 0.1, "min_cosine": 0.37 if not passed else 0.9995,
                     "top1_agreement": 0.75}, passed, [] if passed else ["cosine 0.370750 < 0.98"])

    int8 = default_tolerances()["int8"]
    cases = [case("random", 1, False), case("builtin:val", 1, True), case("random", 8, False), case("builtin:val", 8, True)]
    gate = gate_cases(cases, int8)
    assert [c.gated for c in cases] == [False, True, False, True] and gate.startswith("image inputs")
    res = ParityResult("m.int8.onnx", "int8", {"atol": 1, "rtol": 1, "min_cosine": 0.98, "min_top1": 0.8}, cases,
                       passed=all(c.passed for c in cases if c.gated), reference={}, gate=gate)
    table = format_table(res)
    assert table.count("INFO (not gated) FAIL: cosine 0.370750") == 2 and "2 of 2 information-only" in table
    xml = junit_xml(res)
    assert 'failures="0"' in xml and xml.count('name="information_only_result" value="fail: cosine 0.370750 &lt; 0.98"') == 2
    # without images, the random cases gate (a verdict must rest on something) and it says why
    alone = [case("random", 1, False)]
    assert "no image inputs" in gate_cases(alone, int8) and alone[0].gated
    # fp32 and fp16 gate on everything
    both = [case("random", 1, False), case("builtin:val", 1, True)]
    assert gate_cases(both, default_tolerances()["fp32"]) == "all cases" and all(c.gated for c in both)


def _cache_entry(cache_dir):
    entries = sorted(cache_dir.glob("*.json"))
    assert len(entries) == 1, entries
    return entries[0]


@pytest.mark.parametrize("edit", ["x1000", "zero", "nan", "truncated"])
def test_edited_calibration_cache_entry_is_recomputed(work, edit):
    """An entry edited to ranges x1000 or 0 was a "cache hit" giving a model that outputs zeros."""
    from tests.calibration.conftest import counting_passes

    args = ["calibrate", "model.sim.onnx", "--num-images", "16", "--cache-dir", "cache", "-o", "q.onnx"]
    assert run_cli(args, cwd=work).exit_code == 0
    entry = _cache_entry(work / "cache")
    good = json.loads(entry.read_text())
    data = json.loads(entry.read_text())
    if edit == "truncated":
        entry.write_text(entry.read_text()[:200])
    else:
        for k, (lo, hi) in data["ranges"].items():
            data["ranges"][k] = {"x1000": [lo * 1000, hi * 1000], "zero": [0.0, 0.0], "nan": [lo, float("nan")]}[edit]
        entry.write_text(json.dumps(data))
    with counting_passes() as passes:
        res = run_cli(args, cwd=work)
    assert res.exit_code == 0, res.output
    warn = [ln for ln in res.output.splitlines() if ln.startswith("warning:")]
    assert len(warn) == 1 and str(entry.name) in warn[0] and "recalibrating" in warn[0], res.output
    assert len(passes) == 1 and "cache hit" not in res.output
    assert json.loads(entry.read_text())["ranges"] == good["ranges"]      # replaced by a good entry
    hit = run_cli(args, cwd=work)
    assert hit.exit_code == 0 and "cache hit" in hit.output
