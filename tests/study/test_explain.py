"""attnvgg explain: JSON + one PNG per image, every variant's agreement, one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import error_line, run_cli, tiny_spec


@pytest.fixture(scope="module")
def npz_images(tmp_path_factory):
    p = tmp_path_factory.mktemp("explain-data") / "imgs.npz"
    x = np.random.default_rng(3).integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    np.savez(p, x=x, y=np.array([0, 1, 2]))
    return p


@pytest.mark.parametrize("kind", ["global", "cbam"])
def test_explain_writes_json_and_overlays(kind, tiny_exports, npz_images, tmp_path):
    from PIL import Image

    from attnvgg.config import PreprocessSpec
    from attnvgg.study.explain import explain

    out = tmp_path / "ex"
    r = explain(tiny_spec(kind), PreprocessSpec(resize=32, crop=32), {"fp32": tiny_exports[kind]}, out,
                data=str(npz_images), images=2)
    doc = json.loads((out / "explain.json").read_text())
    assert doc["format"].startswith("attnvgg-explain/")
    assert len(doc["images"]) == 2 and [p.name for p in r.pngs] == ["explain-0.png", "explain-1.png"]
    assert doc["agreement"]["fp32"]["min_cosine"] > 0.99999
    kinds = {s["kind"] for s in doc["sites"]}
    assert kinds == ({"softmax"} if kind == "global" else {"channel-gate", "spatial-gate"})
    with Image.open(r.pngs[0]) as im:
        assert im.size[0] > 500 and im.size[1] > 200          # rows x panels, not an empty canvas
        assert len({tuple(c) for c in np.asarray(im.convert("RGB")).reshape(-1, 3)[::97].tolist()}) > 50


def test_explain_cli_and_bad_inputs(tiny_exports, npz_images, tmp_path):
    opts = ["--attention", "global", "--width", "0.0625", "--input-size", "32", "--num-classes", "10", "--gamma", "0.5"]
    ok = run_cli(["explain", f"fp32={tiny_exports['global']}", *opts, "--data", str(npz_images),
                  "--images", "1", "--out", str(tmp_path / "o")])
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "o" / "explain-0.png").is_file()
    missing = run_cli(["explain", str(tmp_path / "nope.onnx"), *opts, "--out", str(tmp_path / "o2")])
    assert missing.exit_code == 2
    assert "not found" in error_line(missing)
    zero = run_cli(["explain", str(tiny_exports["global"]), *opts, "--images", "0", "--out", str(tmp_path / "o3")])
    assert zero.exit_code == 2 and "at least one image" in error_line(zero)
    plain = run_cli(["explain", str(tiny_exports["none"]), "--attention", "none", "--width", "0.0625",
                     "--input-size", "32", "--num-classes", "10", "--data", str(npz_images), "--out", str(tmp_path / "o4")])
    assert plain.exit_code == 2 and "no attention block" in error_line(plain)
    assert not (tmp_path / "o4" / "explain.json").exists()


def test_class_names_beyond_the_data_sets_classes_are_numbers():
    from attnvgg.study.explain import class_name

    names = ["a", "b"]
    assert class_name(names, 1) == "b"
    assert class_name(names, 7) == "class 7"      # a 1000-class model on an 8-class data set
    assert class_name([], 0) == "class 0"
