"""Attention maps from PyTorch and ONNX: shapes per attention kind, agreement, the broken-INT8 case."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import run_cli, tiny_spec

X = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)

# tiny model: width 1/16 (16, 32, 32 channels in blocks 3-5), 32 px -> 8x8, 4x4, 2x2 at the attention slots
EXPECTED = {
    "global": [("softmax", [64, 64]), ("softmax", [16, 16]), ("softmax", [4, 4])],
    "se": [("channel-gate", [16]), ("channel-gate", [32]), ("channel-gate", [32])],
    "cbam": [("channel-gate", [16, 1, 1]), ("spatial-gate", [1, 8, 8]), ("channel-gate", [32, 1, 1]),
             ("spatial-gate", [1, 4, 4]), ("channel-gate", [32, 1, 1]), ("spatial-gate", [1, 2, 2])],
}


@pytest.mark.parametrize("kind", ["global", "se", "cbam"])
def test_map_shapes_per_attention_kind(kind, tiny_exports):
    from attnvgg.models.build import build_model
    from attnvgg.validate.maps import compare_maps, onnx_maps, torch_maps

    model = build_model(tiny_spec(kind))
    sites, maps, _ = torch_maps(model, X)
    assert [(s.kind, s.shape) for s in sites] == EXPECTED[kind]
    assert [list(m.shape[1:]) for m in maps] == [shape for _, shape in EXPECTED[kind]]
    found, omaps, logits = onnx_maps(tiny_exports[kind], X)
    assert [k for k, _ in found] == [k for k, _ in EXPECTED[kind]]
    assert [m.size for m in omaps] == [m.size for m in maps] and logits.shape == (2, 10)
    if kind == "global":
        np.testing.assert_allclose(maps[0].sum(-1), 1.0, rtol=1e-5)   # softmax rows
    _, _, res, _ = compare_maps({"fp32": tiny_exports[kind]}, model, X)
    assert res["fp32"].min_cosine > 0.99999
    assert (res["fp32"].js_max is None) == (kind != "global")
    if kind == "global":
        assert res["fp32"].js_max < 1e-6


def test_model_without_attention_is_refused(tiny_exports):
    from attnvgg.errors import InputError
    from attnvgg.models.build import build_model
    from attnvgg.validate.maps import compare_maps

    with pytest.raises(InputError, match="no attention block"):
        compare_maps({"fp32": tiny_exports["none"]}, build_model(tiny_spec("none")), X)


def test_maps_of_another_model_are_refused(tiny_exports):
    from attnvgg.errors import InputError
    from attnvgg.models.build import build_model
    from attnvgg.validate.maps import compare_maps

    with pytest.raises(InputError, match="attention tensors"):
        compare_maps({"fp32": tiny_exports["cbam"]}, build_model(tiny_spec("global")), X)


def test_js_divergence_bounds():
    from attnvgg.validate.maps import js_divergence

    p = np.array([[0.5, 0.5, 0.0, 0.0]])
    assert js_divergence(p, p)[0] == pytest.approx(0.0, abs=1e-12)
    assert js_divergence(p, np.array([[0.0, 0.0, 0.5, 0.5]]))[0] == pytest.approx(1.0)
    # an unnormalised, partly negative candidate row (after Q/DQ) is clipped and renormalised
    assert js_divergence(p, np.array([[1.0, 1.0, -0.1, 0.0]]))[0] == pytest.approx(0.0, abs=1e-12)


@pytest.fixture(scope="module")
def int8_pair(tiny_exports, tmp_path_factory):
    """The tiny global model in INT8 (cpu flavour, ONNX Runtime's quantizer): the default keep-float
    policy, and none (the Softmax quantized too; ModelOpt's tensorrt flavour never quantizes it)."""
    from attnvgg.calibration.int8 import calibrate
    from attnvgg.config import CalibrateSpec, PreprocessSpec
    from attnvgg.data.datasets import ArrayDataset

    root = tmp_path_factory.mktemp("maps-int8")
    data = ArrayDataset(np.random.default_rng(1).standard_normal((32, 3, 32, 32)).astype(np.float32), None,
                        PreprocessSpec(resize=32, crop=32), "random")
    out = {}
    for preset in ("attention", "none"):
        spec = CalibrateSpec(flavour="cpu", keep_float=preset, batch_size=8, cache=False)
        out[preset] = root / f"int8-{preset}.onnx"
        calibrate(tiny_exports["global"], data, out[preset], spec, progress=False)
    return out


def test_quantized_softmax_agrees_less_than_the_default(int8_pair):
    from attnvgg.models.build import build_model
    from attnvgg.validate.maps import compare_maps

    _, _, res, _ = compare_maps({"default": int8_pair["attention"], "qsoftmax": int8_pair["none"]},
                                build_model(tiny_spec("global")), X)
    good, bad = res["default"], res["qsoftmax"]
    # random tiny weights quantize badly even with the default policy; the Softmax quantized
    # as well still costs more
    assert bad.js_mean > 2 * good.js_mean
    # the largest map (block 3, 64 positions) suffers most from 8-bit rows: 4x the divergence
    # (0.0105 vs 0.0025 here); the cosine, dominated by the large entries, moves less
    assert bad.sites[0].js_mean > 2 * good.sites[0].js_mean
    assert bad.sites[0].cosine < good.sites[0].cosine


def test_validate_attention_maps_gates_ci(int8_pair, tmp_path):
    """validate --attention-maps: the default INT8 model passes the map limits, the broken one exits 1."""
    import json

    cfg = tmp_path / "limits.toml"
    # random inputs (no image set from a preset), limits between the two models' agreement
    cfg.write_text('[validate]\nimages = ""\n[validate.map_limits.int8]\nmin_cosine = 0.9\nmax_js = 0.01\n')
    args = ["--attention", "global", "--width", "0.0625", "--input-size", "32", "--num-classes", "10",
            "--gamma", "0.5", "--batches", "1", "--samples", "1", "--min-cosine", "-1", "--min-top1", "0",
            "--attention-maps", "--config", str(cfg)]
    ok = run_cli(["validate", str(int8_pair["attention"]), *args, "--json", str(tmp_path / "ok.json")])
    assert ok.exit_code == 0, ok.output
    assert "PASS: attention maps" in ok.output
    assert json.loads((tmp_path / "ok.json").read_text())["attention_maps"]["failures"] == []
    bad = run_cli(["validate", str(int8_pair["none"]), *args, "--json", str(tmp_path / "bad.json")])
    assert bad.exit_code == 1, bad.output
    assert "attention maps of" in bad.output and "disagree" in bad.output
    doc = json.loads((tmp_path / "bad.json").read_text())
    assert doc["passed"] is False and doc["attention_maps"]["failures"]
    assert doc["attention_maps"]["limits"] == {"min_cosine": 0.9, "max_js": 0.01}


def test_validate_attention_maps_refuses_an_engine(tmp_path):
    from tests.conftest import error_line

    eng = tmp_path / "m.engine"
    eng.write_bytes(b"x")
    res = run_cli(["validate", str(eng), "--attention", "global", "--width", "0.0625", "--input-size", "32",
                   "--num-classes", "10", "--attention-maps"])
    assert res.exit_code in (2, 4), res.output
    error_line(res)
