"""validate --save-inputs/--save-outputs write Polygraphy's own formats, and the printed
`polygraphy run` line passes on them (Polygraphy itself runs it, in a subprocess)."""

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from attnvgg.config import PreprocessSpec, ValidateSpec
from attnvgg.data import open_dataset
from attnvgg.validate.parity import validate_artifact
from attnvgg.validate.polygraphy_io import load_outputs, polygraphy_tolerances
from tests.conftest import error_line, run_cli, tiny_spec
from tests.validate.test_parity import corrupt


def polygraphy_exe() -> str:
    exe = Path(sys.executable).with_name("polygraphy")
    return str(exe) if exe.is_file() else (shutil.which("polygraphy") or "polygraphy")


def run_line(line: str, cwd: Path) -> subprocess.CompletedProcess:
    args = shlex.split(line.split("   (")[0])
    assert args[:2] == ["polygraphy", "run"]
    return subprocess.run([polygraphy_exe(), *args[1:]], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_saved_files_are_polygraphy_formats_and_its_run_line_passes(tiny_exports, tmp_path):
    model = tmp_path / "model.onnx"
    shutil.copy(tiny_exports["global"], model)
    shutil.copy(str(tiny_exports["global"]) + ".json", str(model) + ".json")
    res = run_cli(["validate", str(model), "--batches", "1,3", "--samples", "3", "--save-inputs", "in.json",
                   "--save-outputs", "out.json"], cwd=tmp_path)
    assert res.exit_code == 0, res.output
    assert "|a - ref| <= atol + rtol*|ref|" in res.output        # the rule is stated in the table
    line = next(ln for ln in res.output.splitlines() if ln.startswith("same check with Polygraphy: "))
    line = line.split(": ", 1)[1]
    assert "--onnxrt" in line and "--load-inputs in.json" in line and "--load-outputs out.json" in line

    # the formats: Polygraphy's own readers load them
    from polygraphy.comparator import RunResults
    from polygraphy.json import load_json

    feeds = load_json(str(tmp_path / "in.json"))
    assert isinstance(feeds, list) and all(list(f) == ["input"] for f in feeds)
    batches = sorted({f["input"].shape[0] for f in feeds})
    assert 1 in batches and 3 in batches and 8 in batches     # the dynamic range's ends are fed too
    results = RunResults.load(str(tmp_path / "out.json"))
    assert list(results.keys()) == ["pytorch"] and len(results["pytorch"]) == len(feeds)
    assert [o["logits"].shape[0] for o in load_outputs(tmp_path / "out.json")] == [f["input"].shape[0] for f in feeds]

    done = run_line(line, tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "PASSED" in done.stdout + done.stderr


def test_the_polygraphy_line_fails_on_a_model_attnvgg_fails(tiny_exports, tmp_path):
    """The line is a real check, not a formality: a corrupted model fails it too."""
    bad = corrupt(tiny_exports["global"], tmp_path / "bad.onnx", factor=1.5)
    res = validate_artifact(bad, tiny_spec("global"), ValidateSpec(batches=[1], samples=2),
                            save_inputs=tmp_path / "i.json", save_outputs=tmp_path / "o.json")
    assert not res.passed
    done = run_line(res.polygraphy["command"], tmp_path)
    assert done.returncode != 0


def test_the_polygraphy_atol_covers_numpy_allclose():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal(1000) * 5
    atol, rtol = 1e-3, 1e-2
    out = ref + (atol + rtol * np.abs(ref)) * rng.uniform(-1, 1, ref.shape)       # within allclose
    assert np.allclose(out, ref, atol=atol, rtol=rtol)
    diff = np.abs(out - ref)
    assert not np.all((diff <= atol) | (diff <= rtol * np.abs(ref)))   # polygraphy's rule at the same values fails
    pa, pr = polygraphy_tolerances(atol, rtol)
    assert np.all((diff <= pa) | (diff <= pr * np.abs(ref)))          # at twice them it passes
    assert polygraphy_tolerances(float("inf"), 0.1) == (float("inf"), float("inf"))


def test_validate_refuses_save_paths_that_are_the_model(tiny_exports, tmp_path):
    model = tmp_path / "model.onnx"
    shutil.copy(tiny_exports["se"], model)
    shutil.copy(str(tiny_exports["se"]) + ".json", str(model) + ".json")
    before = model.read_bytes()
    res = run_cli(["validate", str(model), "--batches", "1", "--save-inputs", str(model) + ".json"])
    assert res.exit_code == 2 and "writing it would destroy" in error_line(res)
    res = run_cli(["validate", str(model), "--batches", "1", "--save-inputs", "x.json", "--save-outputs", "x.json"],
                  cwd=tmp_path)
    assert res.exit_code == 2 and "given twice" in error_line(res)
    from attnvgg.errors import InputError
    from attnvgg.validate.polygraphy_io import check_destinations

    with pytest.raises(InputError, match="is a folder"):
        check_destinations(None, tmp_path, model)
    assert model.read_bytes() == before


# ----------------------------------------------------------------------------- data in

SPEC = PreprocessSpec(resize=32, crop=32)


def test_polygraphy_input_json_is_a_data_set(tmp_path):
    from polygraphy.json import save_json

    x1 = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    x3 = np.random.default_rng(1).standard_normal((3, 3, 32, 32)).astype(np.float32)
    save_json([{"input": x1}, {"input": x3}], str(tmp_path / "in.json"))
    ds = open_dataset(str(tmp_path / "in.json"), SPEC)
    x, y = ds.arrays()
    assert y is None and x.shape == (4, 3, 32, 32)
    np.testing.assert_array_equal(x, np.concatenate([x1, x3]))


def test_npz_keyed_by_the_input_name(tmp_path):
    x = np.random.default_rng(0).standard_normal((5, 3, 32, 32)).astype(np.float32)
    np.savez(tmp_path / "modelopt.npz", input=x)                 # ModelOpt's calibration_data={"input": x}
    np.testing.assert_array_equal(open_dataset(str(tmp_path / "modelopt.npz"), SPEC).arrays()[0], x)
    np.savez(tmp_path / "named.npz", pixel_values=x)
    got = open_dataset(str(tmp_path / "named.npz"), SPEC, input_name="pixel_values").arrays()[0]
    np.testing.assert_array_equal(got, x)


@pytest.mark.parametrize("payload, words", [
    ("not json", "cannot read"),
    ('{"a": 1}', "is not an array"),
    ("[]", "not Polygraphy input data"),
    ('[{"input": {"polygraphy_class": "NoSuchType"}}]', "cannot read"),
])
def test_bad_polygraphy_json_is_one_input_error(tmp_path, payload, words):
    from attnvgg.errors import InputError

    p = tmp_path / "bad.json"
    p.write_text(payload)
    with pytest.raises(InputError) as exc:
        open_dataset(str(p), SPEC)
    assert words in str(exc.value)


def test_npz_with_an_unknown_key_is_refused_not_guessed(tmp_path):
    from attnvgg.errors import InputError

    x = np.zeros((2, 3, 32, 32), np.float32)
    np.savez(tmp_path / "one.npz", whatever=x)
    with pytest.raises(InputError, match="no image array: no 'x', 'images' or model input name 'input'"):
        open_dataset(str(tmp_path / "one.npz"), SPEC)


def test_calibrate_reads_a_modelopt_npz(tiny_exports, tmp_path):
    x = np.random.default_rng(0).standard_normal((8, 3, 32, 32)).astype(np.float32)
    np.savez(tmp_path / "calib.npz", input=x)
    model = tmp_path / "model.onnx"
    shutil.copy(tiny_exports["se"], model)
    shutil.copy(str(tiny_exports["se"]) + ".json", str(model) + ".json")
    res = run_cli(["calibrate", str(model), "--data", str(tmp_path / "calib.npz"), "--no-cache"])
    assert res.exit_code == 0, res.output
    assert "8 images" in res.output
