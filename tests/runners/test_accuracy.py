"""Accuracy evaluation: top-1/top-5 against a hand computation, agreement, NaN reporting, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from attnvgg.config import EvaluateSpec
from attnvgg.runners.onnxruntime import OnnxRuntimeRunner
from attnvgg.runners.torch import TorchRunner
from attnvgg.errors import CheckFailed, InputError
from attnvgg.runners.accuracy import check_budget, evaluate
from tests.conftest import preprocess_config, stub_datasets


class Labelled:
    """The attnvgg.data Dataset interface over arrays."""

    def __init__(self, x, y=None):
        self.x = np.asarray(x, np.float32)
        self.y = None if y is None else np.asarray(y, np.int64)
        self.has_labels = self.y is not None
        self.classes = [str(i) for i in range(10)]

    def __len__(self):
        return len(self.x)

    def iter_batches(self, batch_size, limit=None):
        n = len(self.x) if limit is None else min(limit, len(self.x))
        for i in range(0, n, batch_size):
            yield self.x[i:i + batch_size][: n - i], None if self.y is None else self.y[i:i + batch_size][: n - i]

    def content_hash(self):
        return "h"

    def describe(self):
        return {"kind": "arrays", "images": len(self.x)}


def _torch_model():
    """A small attention classifier whose top-1 depends on the input (random deep nets predict one class)."""
    import torch
    from torch import nn

    from attnvgg.models.attention import GlobalAttention

    torch.manual_seed(0)
    att = GlobalAttention(16)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), att, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(16, 10)).eval()
    with torch.no_grad():
        att.gamma.fill_(0.5)
        model[-1].bias.zero_()
    return model


def _export(model, path: Path, static_batch: int | None = None) -> Path:
    from attnvgg.config import ExportSpec, ModelSpec
    from attnvgg.export.onnx import export_onnx

    spec = ExportSpec(dynamic_batch=False, batch_min=static_batch) if static_batch else ExportSpec(batch_max=32)
    export_onnx(ModelSpec(input_size=32, num_classes=10), spec, path, model=model)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("acc")
    m = _torch_model()
    return m, _export(m, d / "tiny.onnx"), _export(m, d / "static4.onnx", static_batch=4)


@pytest.fixture(scope="module")
def data(models):
    """Images with per-channel offsets; labels = the model's answer, 7 of them changed."""
    import torch

    rng = np.random.default_rng(5)
    x = (rng.standard_normal((22, 3, 32, 32)) + rng.normal(0, 3, (22, 3, 1, 1))).astype(np.float32)
    with torch.no_grad():
        y = models[0](torch.from_numpy(x)).argmax(1).numpy()
    y[:7] = (y[:7] + 1 + np.arange(7) % 3) % 10
    return Labelled(x, y)


def _hand(path: Path, ds: Labelled):
    logits = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": ds.x})[0]
    top1 = float((logits.argmax(1) == ds.y).mean())
    top5 = float(np.mean([y in np.argsort(-row)[:5] for row, y in zip(logits, ds.y)]))
    return logits, top1, top5


def test_top1_top5_equal_a_hand_computation(models, data):
    _, path, _ = models
    logits, top1, top5 = _hand(path, data)
    assert top1 == 15 / 22 and top1 < top5 < 1   # not all right, not all wrong
    assert len(set(logits.argmax(1))) >= 4
    r = evaluate(OnnxRuntimeRunner(path), data, EvaluateSpec(batch_size=8), progress=False)
    assert r.images == 22 and r.classes == 10 and r.topk == 5
    assert r.top1 == top1 and r.top5 == top5
    r = evaluate(OnnxRuntimeRunner(path), data, EvaluateSpec(batch_size=8, limit=10), progress=False)
    assert r.images == 10 and r.top1 == float((logits[:10].argmax(1) == data.y[:10]).mean())


def test_agreement_with_pytorch_reference_and_saved_logits(models, data):
    model, path, static = models
    logits, top1, _ = _hand(path, data)
    r = evaluate(OnnxRuntimeRunner(path), data, EvaluateSpec(batch_size=8),
                 reference=TorchRunner(model, input_shape=(-1, 3, 32, 32)), progress=False, keep_logits=True)
    assert r.reference.kind == "pytorch" and r.reference.top1_agreement == 1.0
    assert r.reference.mean_cosine > 0.99999 and r.reference.top1 == top1
    np.testing.assert_allclose(r.logits, logits, rtol=1e-5, atol=1e-5)
    # a static batch of 4 with 22 images: the last batch is padded, the padding discarded
    r2 = evaluate(OnnxRuntimeRunner(static), data, EvaluateSpec(batch_size=8), reference_logits=logits,
                  progress=False)
    assert r2.images == 22 and r2.top1 == top1 and r2.reference.top1_agreement == 1.0
    assert any("static batch of 4" in n for n in r2.notes)


def test_budget_and_missing_labels(models, data):
    _, path, _ = models
    logits, _, _ = _hand(path, data)
    shuffled = logits[::-1].copy()
    r = evaluate(OnnxRuntimeRunner(path), data, EvaluateSpec(batch_size=8), reference_logits=shuffled, progress=False)
    assert r.reference.top1_agreement < 0.5
    r.reference.top1 = r.top1 + 0.2
    with pytest.raises(CheckFailed, match="below the reference"):
        check_budget(r, 0.05)
    check_budget(r, 0.5)
    with pytest.raises(InputError, match="no labels"):
        evaluate(OnnxRuntimeRunner(path), Labelled(data.x), progress=False)


def _nan_model(path: Path) -> Path:
    """input -> Conv(ones) -> Log -> GlobalAveragePool -> Flatten -> Gemm: negative images give NaN at Log."""
    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    fc = numpy_helper.from_array(np.eye(10, 4, dtype=np.float32), "fc")
    nodes = [helper.make_node("Conv", ["input", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Log", ["c"], ["l"], name="the_log"),
             helper.make_node("GlobalAveragePool", ["l"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "fc"], ["logits"], name="fc", transB=1)]
    g = helper.make_graph(nodes, "nan", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["b", 3, 8, 8])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", 10])], [w, fc])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), str(path))
    return path


def _nan_data() -> Labelled:
    x = np.abs(np.random.default_rng(0).standard_normal((12, 3, 8, 8))).astype(np.float32) + 0.1
    x[9] = -1.0      # batch 2 (batch size 4), image 9
    return Labelled(x, np.zeros(12, np.int64))


def test_nan_in_outputs_names_batch_and_node(tmp_path):
    path = _nan_model(tmp_path / "nan.onnx")
    with pytest.raises(CheckFailed) as err:
        evaluate(OnnxRuntimeRunner(path), _nan_data(), EvaluateSpec(batch_size=4), progress=False)
    msg = str(err.value)
    assert "\n" not in msg
    assert "batch 2 (images 8-11" in msg and "first image 9" in msg
    assert "'the_log' (Log)" in msg


def test_nan_in_pytorch_outputs_names_module():
    import torch
    from torch import nn

    class Log(nn.Module):
        def forward(self, x):
            return torch.log(x)

    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), Log(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 10)).eval()
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[0].bias.zero_()
    with pytest.raises(CheckFailed, match=r"batch 2 .*module '1'"):
        evaluate(TorchRunner(model, input_shape=(-1, 3, 8, 8)), _nan_data(), EvaluateSpec(batch_size=4),
                 progress=False)


def test_cli_evaluate(models, data, tmp_path, monkeypatch):
    from attnvgg import cli as cli_mod

    _, path, _ = models
    stub_datasets(monkeypatch, lambda name: data)
    out = tmp_path / "acc.json"
    res = CliRunner().invoke(cli_mod.cli, ["evaluate", str(path), "--data", "x", "--out", str(out),
                                           "--save-logits", str(tmp_path / "l.npy"), "--batch-size", "8"])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    _, top1, _ = _hand(path, data)
    assert doc["top1"] == top1 and doc["artifact"] == str(path)
    res = CliRunner().invoke(cli_mod.cli, ["evaluate", str(path), "--reference-logits", str(tmp_path / "l.npy"),
                                           "--out", str(tmp_path / "b.json"), "--save-logits", str(tmp_path / "l.npz")])
    assert res.exit_code == 0 and "top-1 agreement 100.00%" in res.output
    res = CliRunner().invoke(cli_mod.cli, ["evaluate", str(path), "--reference-logits", str(tmp_path / "l.npz"),
                                           "--out", str(tmp_path / "c.json")])
    assert res.exit_code == 0 and "top-1 agreement 100.00%" in res.output, res.output
    res = CliRunner().invoke(cli_mod.cli, ["evaluate", str(tmp_path / "missing.onnx")])
    assert res.exit_code == 2 and res.output.count("\n") == 1
    # random weights would give a meaningless number (the built-in default has trained weights)
    res = CliRunner().invoke(cli_mod.cli, ["evaluate", "--preset", "vgg16-224"])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "no model to evaluate" in res.output
    nan = _nan_model(tmp_path / "nan.onnx")
    stub_datasets(monkeypatch, lambda name: _nan_data())
    res = CliRunner().invoke(cli_mod.cli, ["evaluate", str(nan), *preprocess_config(tmp_path, nan, "nan.toml"),
                                           "--batch-size", "4", "--out", str(tmp_path / "n.json")])
    assert res.exit_code == 1 and res.output.count("\n") == 1 and "the_log" in res.output
    assert not (tmp_path / "n.json").exists()
