"""Accuracy-aware mixed precision on a tiny trained model: groups, budgets, one calibration, CLI.

The fixture trains a small attention CNN (conv, global attention, SE gate, two FC layers) for a
few seconds on synthetic 32x32 images. Validation labels are the fp32 model's own predictions,
so every flip counts as a drop, on images the fp32 model classifies with a clear margin.

The search runs on the product path, the tensorrt flavour (ModelOpt's Q/DQ placement from our
ranges). With ONNX Runtime's symmetric int8 quantizer this fixture's 8-bit attention cost top-1;
ModelOpt never quantizes the Softmax output, so the plain model loses nothing in INT8 (checked
below). The searches therefore run on the ``outlier`` variant (one activation channel x1000: the
INT8 ranges are wrecked, fp32 is not) with convolutions allowed in float: budget 0 must keep
groups in float, budget 100 keeps none.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest

from attnvgg.calibration.groups import layer_groups
from attnvgg.calibration.mixed import calibrate_mixed, mixed_report_path
from attnvgg.config import CalibrateSpec, EvaluateSpec, MixedSpec
from attnvgg.errors import CheckFailed, InputError
from tests.calibration.conftest import ArrayDataset, counting_passes
from tests.conftest import error_line, preprocess_config, run_cli, stub_datasets


def _images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Ten classes: a coloured patch at a class-specific place, in unit Gaussian noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = rng.standard_normal((n, 3, 32, 32)).astype(np.float32)
    for i, k in enumerate(y):
        cy, cx = (k // 5) * 16 + 2 + rng.integers(0, 8), (k % 5) * 6 + rng.integers(0, 3)
        x[i, k % 3, cy:cy + 6, cx:cx + 5] += 1.5
        x[i, (k + 1) % 3, cy:cy + 6, cx:cx + 5] -= 1.0 * (k >= 5)
    return x, y.astype(np.int64)


def _net():
    import torch
    from torch import nn

    from attnvgg.models.attention import GlobalAttention, SEBlock

    att = GlobalAttention(16)
    with torch.no_grad():
        att.gamma.fill_(1.0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), att, nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), SEBlock(32), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 16, 64), nn.ReLU(), nn.Linear(64, 10))


def _train(steps: int = 60):
    import torch
    from torch import nn

    torch.manual_seed(0)
    x, y = _images(1024, 0)
    model = _net()
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    X, Y = torch.from_numpy(x), torch.from_numpy(y)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        i = torch.randint(0, len(X), (32,), generator=g)
        loss = nn.functional.cross_entropy(model(X[i]), Y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@dataclass
class Trained:
    model: Path              # fp32 ONNX
    outlier: Path            # same function, one activation channel scaled by 1000: INT8 convs wreck it
    calib: ArrayDataset
    val: ArrayDataset


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Trained:
    import torch

    from attnvgg.config import ExportSpec, ModelSpec
    from attnvgg.export.onnx import export_onnx

    root = tmp_path_factory.mktemp("mixed")
    model = _train()
    with torch.no_grad():
        model[5].gamma.fill_(2.5)
    xv, _ = _images(512, 1)
    with torch.no_grad():
        logits = model(torch.from_numpy(xv)).numpy()
    top2 = np.sort(logits, axis=1)[:, -2:]
    margin = (top2[:, 1] - top2[:, 0]) / np.linalg.norm(logits, axis=1)
    keep = np.nonzero(margin > 0.05)[0][:160]
    val = ArrayDataset(xv[keep], logits[keep].argmax(1), name="val")
    spec = ModelSpec(input_size=32, num_classes=10)
    path = export_onnx(spec, ExportSpec(batch_max=64), root / "small.onnx", model=model).path
    # ReLU and MaxPool commute with a positive scale: fp32 is unchanged, the INT8 range is not.
    with torch.no_grad():
        model[0].weight[0] *= 1000
        model[0].bias[0] *= 1000
        model[3].weight[:, 0] /= 1000
        assert (model(torch.from_numpy(val.x)).argmax(1).numpy() == val.y).all()
    outlier = export_onnx(spec, ExportSpec(batch_max=64), root / "outlier.onnx", model=model).path
    return Trained(path, outlier, ArrayDataset(_images(32, 2)[0], name="calib"), val)


def _spec(cache: Path | None, **kw) -> CalibrateSpec:
    return CalibrateSpec(batch_size=16, cache=cache is not None, cache_dir=str(cache) if cache else None, **kw)


def _search(t: Trained, out: Path, budget: float, cache: Path | None = None, model: Path | None = None,
            allow_float_conv: bool = False):
    return calibrate_mixed(model or t.model, t.calib, t.val, out, _spec(cache),
                           MixedSpec(max_drop=budget, allow_float_conv=allow_float_conv), log=lambda _m: None,
                           progress=False)


def _drop(model: Path, reference: Path, val: ArrayDataset) -> float:
    """Top-1 points lost, measured from scratch with the evaluate stage on both files."""
    from attnvgg.runners.onnxruntime import OnnxRuntimeRunner
    from attnvgg.runners.accuracy import evaluate

    with OnnxRuntimeRunner(reference) as r:
        ref = evaluate(r, val, EvaluateSpec(batch_size=32), progress=False).top1
    with OnnxRuntimeRunner(model) as r:
        got = evaluate(r, val, EvaluateSpec(batch_size=32), progress=False).top1
    return 100 * (ref - got)


# ------------------------------------------------------------------------------ groups

def test_groups_follow_tensorrt_fusion(tiny_mixed):
    m = onnx.load(str(tiny_mixed))
    groups = layer_groups(m)
    names = [n for g in groups for n in g.nodes]
    assert len(names) == len(set(names)) == len([n for n in m.graph.node if n.op_type != "Constant"])
    kinds = {g.kind for g in groups}
    assert kinds == {"conv", "attention", "gate", "fc", "other"}
    convs = [g for g in groups if g.kind == "conv" and g.id.startswith("conv:features.")]
    assert all(g.ops[0] == "Conv" for g in convs)
    assert any(g.ops == ["Conv", "Relu", "MaxPool"] for g in convs) and any(g.ops == ["Conv", "Relu"] for g in convs)
    fcs = [g for g in groups if g.kind == "fc"]
    assert [g.ops for g in fcs] == [["Gemm", "Relu"], ["Gemm", "Relu"], ["Gemm"]]
    (att,) = [g for g in groups if g.kind == "attention"]
    assert att.ops.count("MatMul") == 2 and "Softmax" in att.ops and att.ops[-1] == "Add"   # + residual
    se, cbam = [g for g in groups if g.kind == "gate"]
    assert se.ops.count("Sigmoid") == 1 and "Gemm" in se.ops
    assert cbam.ops.count("Sigmoid") == 2 and cbam.ops.count("Mul") == 2   # channel + spatial gate, one group


# ------------------------------------------------------------------------------ search

@pytest.fixture(scope="module")
def runs(trained, tmp_path_factory) -> dict:
    """Budget 0 (fresh cache), budget 0 again (cache hit), budget 100 (no cache): each pass and each
    ModelOpt placement counted."""
    from attnvgg.calibration import modelopt_ptq

    root = tmp_path_factory.mktemp("runs")
    cache = root / "cache"
    out = {}
    real = modelopt_ptq.quantize
    for key, budget, c in (("b0", 0.0, cache), ("b0_again", 0.0, cache), ("b100", 100.0, None)):
        calls: list[list[str]] = []

        def counting(*a, calls=calls, **k):
            calls.append(list(a[4]))
            return real(*a, **k)

        modelopt_ptq.quantize = counting
        try:
            with counting_passes() as passes:
                r = _search(trained, root / f"{key}.int8.onnx", budget, c, model=trained.outlier, allow_float_conv=True)
        finally:
            modelopt_ptq.quantize = real
        out[key] = (r, len(passes), calls)
    return out


def test_plain_model_loses_nothing_in_int8_on_the_tensorrt_flavour(trained, tmp_path):
    r = _search(trained, tmp_path / "p.int8.onnx", 0.0)
    assert r.search.met and r.search.all_int8.drop == 0 and r.float_groups == [] and r.evaluations == 1


def test_one_calibration_pass_per_search_none_on_a_cache_hit(runs):
    (b0, p0, c0), (again, p1, _), (b100, p100, _) = runs["b0"], runs["b0_again"], runs["b100"]
    assert p0 == 1 and b0.calibration_passes == 1 and not b0.cache_hit
    assert p1 == 0 and again.calibration_passes == 0 and again.cache_hit
    assert p100 == 1 and b100.calibration_passes == 1
    assert b0.evaluations >= 3                       # all INT8, last resort, sensitivities
    # every candidate placed by ModelOpt from the one set of ranges, then the written model
    assert len(c0) == b0.evaluations + 1 and c0[-1] == b0.float_nodes


def test_ranking_is_deterministic(runs):
    (a, _, _), (b, _, _), (c, _, _) = runs["b0"], runs["b0_again"], runs["b100"]
    assert a.search.ranking and a.search.ranking == b.search.ranking
    assert a.float_groups == b.float_groups and a.search.steps == b.search.steps
    assert a.search.all_int8 == c.search.all_int8    # recalibrated from scratch: same ranges, same model


def test_zero_budget_keeps_groups_in_float_that_a_loose_budget_does_not(runs):
    b0, b100 = runs["b0"][0], runs["b100"][0]
    assert len(b0.float_groups) > len(b100.float_groups) == 0
    assert any(g.startswith("conv:") for g in b0.float_groups)       # the outlier channel's conv
    assert b0.search.all_int8.drop > 0 and b0.search.final.drop == 0
    assert b100.search.final.drop <= 100


@pytest.mark.parametrize("key, budget", [("b0", 0.0), ("b100", 100.0)])
def test_written_model_meets_its_budget_when_reevaluated(runs, trained, key, budget):
    from attnvgg.calibration.graph import GraphIndex
    from attnvgg.calibration.policy import policy_violations, quantized_nodes
    from attnvgg.calibration.trt_rules import check_graph

    r = runs[key][0]
    drop = _drop(r.output, trained.outlier, trained.val)
    assert drop <= budget + 1e-9 and drop == pytest.approx(r.search.final.drop)
    q = onnx.load(str(r.output))
    idx = GraphIndex.build(q, infer_types=True)
    assert policy_violations(q, r.float_nodes, idx) == []
    quantized = {n["name"] for n in quantized_nodes(q, idx)}
    assert not set(r.float_nodes) & quantized
    assert bool(quantized) == (key == "b100")          # budget 0 on the outlier ends with nothing left INT8
    assert check_graph(q, base="fp16", idx=idx) == []


def test_choice_is_explained_in_sidecar_and_report(runs):
    r = runs["b0"][0]
    side = json.loads(r.calibration.sidecar.read_text())
    mp = side["mixed_precision"]
    assert mp["met"] and mp["max_drop"] == 0 and mp["float_groups"] == r.float_groups
    assert [s["group"] for s in mp["ranking"]] == [s.group for s in r.search.ranking]
    assert mp["calibration_passes"] == 1 and mp["evaluations"] == r.evaluations
    assert side["exclusion"]["preset"] == "mixed"
    assert {p["name"] for p in side["exclusion"]["nodes"]} == set(r.float_nodes)
    report = json.loads(mixed_report_path(r.output).read_text())
    assert report["output"] == str(r.output) and report["drop"] == r.search.final.drop
    assert len(report["steps"]) == r.evaluations and report["groups"]


def test_unreachable_budget_fails_and_writes_no_model(trained, tmp_path):
    out = tmp_path / "o.int8.onnx"
    with pytest.raises(CheckFailed) as exc:
        _search(trained, out, 5.0, model=trained.outlier)
    msg = str(exc.value)
    assert "\n" not in msg and "even with everything but the convolutions in float" in msg
    assert not out.exists() and not (tmp_path / "o.int8.onnx.json").exists()
    report = json.loads(mixed_report_path(out).read_text())
    assert not report["met"] and report["output"] is None and report["last_resort_drop"] > 5
    assert f"{report['last_resort_drop']:.2f}" in msg
    assert "--allow-float-conv" in msg and "--exclude" in msg and not report["allow_float_conv"]


def test_float_convs_meet_the_budget_that_int8_convs_cannot(trained, tmp_path):
    """The outlier model misses 5 points with every non-conv group in float (test above); with
    convolutions as candidates the search ranks them and keeps the offending ones in float."""
    out = tmp_path / "o.int8.onnx"
    r = calibrate_mixed(trained.outlier, trained.calib, trained.val, out, _spec(None),
                        MixedSpec(max_drop=5.0, allow_float_conv=True), log=lambda _m: None, progress=False)
    ranked = [s.group for s in r.search.ranking]
    assert r.search.met and any(g.startswith("conv:") for g in ranked)
    assert any(g.startswith("conv:") for g in r.float_groups)
    assert r.search.steps[1]["why"] == "last resort, every group in float"
    assert _drop(out, trained.outlier, trained.val) == pytest.approx(r.search.final.drop) and r.search.final.drop <= 5
    mp = json.loads(r.calibration.sidecar.read_text())["mixed_precision"]
    assert mp["allow_float_conv"] is True and mp["int8_always"] == [] and mp["evaluations"] == r.evaluations
    assert {s["kind"] for s in mp["ranking"]} >= {"conv"}
    report = json.loads(mixed_report_path(out).read_text())
    assert report["allow_float_conv"] is True and len(report["steps"]) == r.evaluations


def test_unlabelled_validation_set_is_refused(trained, tmp_path):
    with pytest.raises(InputError, match="no labels"):
        calibrate_mixed(trained.model, trained.calib, ArrayDataset(trained.val.x), tmp_path / "o.onnx",
                        _spec(None), MixedSpec(max_drop=1.0), log=lambda _m: None, progress=False)


# --------------------------------------------------------------------------------- CLI

@pytest.fixture()
def cli_data(monkeypatch, trained):
    sets = {"calib": trained.calib, "val": trained.val, "unlabelled": ArrayDataset(trained.val.x)}
    stub_datasets(monkeypatch, lambda name: sets[name])
    return sets


def test_cli_max_drop_writes_model_and_report(trained, cli_data, tmp_path):
    model = tmp_path / "m.onnx"
    shutil.copy(trained.model, model)
    (tmp_path / "m.int8.onnx").write_bytes(b"the plain INT8 model an earlier calibrate wrote")
    res = run_cli(["calibrate", str(model), *preprocess_config(tmp_path, model), "--data", "calib",
                   "--batch-size", "16", "--max-drop", "5",
                   "--val-data", "val", "--val-limit", "100", "--no-cache"])
    assert res.exit_code == 0, res.output
    assert "mixed precision" in res.output and "1 calibration pass" in res.output and "on 100 images" in res.output
    # its own default name: the earlier model.int8.onnx is left alone
    assert (tmp_path / "m.int8.onnx").read_bytes() == b"the plain INT8 model an earlier calibrate wrote"
    assert (tmp_path / "m.int8-mixed.onnx").exists() and "m.int8-mixed.onnx" in res.output
    mp = json.loads((tmp_path / "m.int8-mixed.onnx.json").read_text())["mixed_precision"]
    assert mp["val"]["images"] == 100 and mp["drop"] <= 5


def test_cli_unreachable_budget_exits_1_with_one_line(trained, cli_data, tmp_path):
    model = tmp_path / "m.onnx"
    shutil.copy(trained.outlier, model)
    res = run_cli(["calibrate", str(model), *preprocess_config(tmp_path, model), "--data", "calib", "--max-drop", "0.5",
                   "--val-data", "val", "--no-cache"])
    assert res.exit_code == 1
    assert "budget" in error_line(res)
    assert not (tmp_path / "m.int8.onnx").exists() and not (tmp_path / "m.int8-mixed.onnx").exists()


@pytest.mark.parametrize("case", ["negative", "val_limit", "val_without_budget", "with_preset", "unlabelled",
                                  "float_conv_without_budget"])
def test_cli_bad_inputs(trained, cli_data, tmp_path, case):
    args = ["calibrate", str(trained.model), *preprocess_config(tmp_path, trained.model), "--data", "calib",
            "--out", str(tmp_path / "o.onnx"), "--no-cache"]
    args += {"negative": ["--max-drop", "-1"],
             "val_limit": ["--max-drop", "1", "--val-data", "val", "--val-limit", "0"],
             "val_without_budget": ["--val-data", "val"],
             "with_preset": ["--max-drop", "1", "--exclude-preset", "attention"],
             "unlabelled": ["--max-drop", "1", "--val-data", "unlabelled"],
             "float_conv_without_budget": ["--allow-float-conv"]}[case]
    res = run_cli(args)
    assert res.exit_code == 2, res.output
    line = error_line(res)
    if case == "float_conv_without_budget":
        assert "--allow-float-conv" in line and "--max-drop" in line
    assert not (tmp_path / "o.onnx").exists() and not (tmp_path / "o.onnx.json").exists()
