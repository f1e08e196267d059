"""--help of every command, and bad inputs: one line, non-zero exit, no artifact."""


import torch

from attnvgg.cli import cli
from tests.conftest import error_line, run_cli

TINY_ARGS = ["--width", "0.0625", "--input-size", "32", "--num-classes", "10", "--gamma", "0.5"]


def test_help_of_every_command():
    for name in cli.commands:
        res = run_cli([name, "--help"])
        assert res.exit_code == 0 and "Usage:" in res.output, name


def test_export_then_validate_cli(tmp_path):
    res = run_cli(["export", *TINY_ARGS, "--batch-max", "4", "-o", "m.onnx"], cwd=tmp_path)
    assert res.exit_code == 0, res.output
    assert "parameters:" in res.output and "Softmax 3" in res.output
    res = run_cli(["simplify", "m.onnx"], cwd=tmp_path)
    assert res.exit_code == 0 and (tmp_path / "m.sim.onnx").exists(), res.output
    res = run_cli(["validate", "m.sim.onnx", "--junit", "r.xml", "--json", "r.json"], cwd=tmp_path)
    assert res.exit_code == 0, res.output
    assert "PASS" in res.output and (tmp_path / "r.xml").exists()


def test_validate_missing_file(tmp_path):
    res = run_cli(["validate", str(tmp_path / "nope.onnx"), *TINY_ARGS])
    assert res.exit_code == 2
    assert "not found" in error_line(res)


def test_validate_non_onnx_file(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_text("this is not a protobuf")
    res = run_cli(["validate", str(junk), *TINY_ARGS])
    assert res.exit_code == 2
    assert "junk.onnx" in error_line(res)
    res = run_cli(["simplify", str(junk)])
    assert res.exit_code == 2 and "not" in error_line(res)
    assert not (tmp_path / "junk.sim.onnx").exists()


def test_export_wrong_checkpoint(tmp_path):
    from attnvgg.models.vgg import VGG16WithAttention

    ckpt = tmp_path / "se.pt"
    torch.save(VGG16WithAttention(10, ["se"] * 3, width=1 / 16).state_dict(), ckpt)
    res = run_cli(["export", *TINY_ARGS, "--attention", "global", "--checkpoint", str(ckpt), "-o", "m.onnx"], cwd=tmp_path)
    assert res.exit_code == 2
    line = error_line(res)
    assert "missing" in line and "unexpected" in line
    assert not (tmp_path / "m.onnx").exists()


def test_export_wrong_input_size(tmp_path):
    res = run_cli(["export", "--width", "0.0625", "--input-size", "16", "-o", "m.onnx"], cwd=tmp_path)
    assert res.exit_code == 2 and "--input-size" in error_line(res)
    assert not list(tmp_path.iterdir())


def test_validate_wrong_input_size(tiny_exports):
    res = run_cli(["validate", str(tiny_exports["none"]), "--width", "0.0625", "--num-classes", "10",
                   "--attention", "none", "--input-size", "64"])
    assert res.exit_code == 2 and "takes input" in error_line(res)


def test_bad_config_key(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[model]\nwidht = 0.5\n")
    res = run_cli(["export", "--config", str(cfg), "-o", str(tmp_path / "m.onnx")])
    assert res.exit_code == 2 and "unknown key(s) widht" in error_line(res)


def test_bad_batches_option(tiny_exports):
    res = run_cli(["validate", str(tiny_exports["none"]), "--batches", "1,x"])
    assert res.exit_code == 2 and "--batches" in error_line(res)


def test_failed_parity_exit_code_1(tiny_exports, tmp_path):
    from tests.validate.test_parity import corrupt

    bad = corrupt(tiny_exports["se"], tmp_path / "bad.onnx", factor=1.5)
    res = run_cli(["validate", str(bad), "--locate"])
    assert res.exit_code == 1
    assert "first diverging layer: features.12" in error_line(res)


# ----------------------------------------------------------------------------- -q/-v, --json -

def test_every_command_takes_quiet_and_verbose():
    from attnvgg.cli import cli

    for name, cmd in cli.commands.items():
        opts = {o for p in cmd.params for o in getattr(p, "opts", [])}
        assert {"-q", "--quiet", "-v", "--verbose"} <= opts, name


def test_validate_and_bench_json_dash_go_to_stdout(tiny_exports, tmp_path):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    model = str(tiny_exports["se"])
    for args in (["validate", model, "--batches", "1", "--samples", "2", "--json", "-"],
                 ["bench", model, "--batches", "1", "--iterations", "3", "--min-seconds", "0", "--warmup", "1",
                  "--json", "-"]):
        done = subprocess.run([sys.executable, "-c", "from attnvgg.cli import main; main()", *args], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        data = json.loads(done.stdout)                 # stdout is the JSON and nothing else
        assert data["cases"] if args[0] == "validate" else data["rows"]
        assert done.stderr.strip()                     # the table went to stderr
        assert not (tmp_path / "-").exists()           # no file named '-'


def test_quiet_validate_prints_the_verdict_only(tiny_exports):
    from tests.conftest import run_cli

    res = run_cli(["validate", str(tiny_exports["se"]), "--batches", "1", "--samples", "2", "-q"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("PASS: ") and len(res.output.strip().splitlines()) == 1
