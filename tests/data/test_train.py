"""The trainer: a tiny run writes a loadable checkpoint + TOML, reproducibly; bad options are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from attnvgg.cli import cli
from attnvgg.config import TrainSpec
from attnvgg.data.train import builtin_model_config, load_model_toml, train
from attnvgg.errors import InputError

TINY = dict(epochs=1, width=1 / 16, input_size=32, train_limit=48, val_limit=16, batch_size=16, threads=1)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("train") / "tiny.pt"
    return train(TrainSpec(**TINY), out)


def test_tiny_train_writes_loadable_checkpoint_and_toml(tiny_run):
    import torch

    from attnvgg.models.build import build_model

    ckpt, toml = Path(tiny_run["checkpoint"]), Path(tiny_run["config"])
    assert ckpt.name == "tiny.pt" and toml.name == "tiny.toml"
    assert sorted(p.name for p in ckpt.parent.iterdir()) == ["tiny.pt", "tiny.toml"]   # no temp files left
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert "features.14.gamma" in state
    model_spec, pre, extras = load_model_toml(toml)
    assert Path(model_spec.checkpoint) == ckpt.resolve()
    assert (model_spec.num_classes, model_spec.input_size, model_spec.width) == (8, 32, 1 / 16)
    assert (pre.resize, pre.crop) == (32, 32)
    assert extras["train"]["seed"] == 0 and extras["train"]["epochs"] == 1
    assert extras["result"]["val_top1"] == tiny_run["val_top1"] and 0.0 <= tiny_run["val_top1"] <= 1.0
    model = build_model(model_spec)                      # strict load through the project's loader
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 8)


def test_model_toml_is_a_train_config(tiny_run):
    """``attnvgg train --config model.toml`` retrains with the recorded settings."""
    from attnvgg.data.train import load_train_spec

    assert load_train_spec(tiny_run["config"]) == TrainSpec(**TINY)


def test_same_seed_same_weights(tiny_run, tmp_path):
    import torch

    again = train(TrainSpec(**TINY), tmp_path / "again.pt")
    a = torch.load(tiny_run["checkpoint"], weights_only=True)
    b = torch.load(again["checkpoint"], weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert again["val_top1"] == tiny_run["val_top1"]
    other = train(TrainSpec(**{**TINY, "seed": 1}), tmp_path / "other.pt")
    c = torch.load(other["checkpoint"], weights_only=True)
    assert not torch.equal(a["classifier.6.weight"], c["classifier.6.weight"])


@pytest.mark.parametrize("kw,needle", [(dict(epochs=0), "epochs"), (dict(width=-1.0), "width"),
                                       (dict(attention=["global", "x", "se"]), "attention"),
                                       (dict(input_size=16), "input size"), (dict(train_limit=10**6), "train limit")])
def test_bad_spec_refused_before_writing(tmp_path, kw, needle):
    with pytest.raises(InputError) as err:
        train(TrainSpec(**{**TINY, **kw}), tmp_path / "m.pt")
    assert needle in str(err.value) and "\n" not in str(err.value)
    assert not any(tmp_path.iterdir())


def test_out_folder_and_bad_suffix(tmp_path):
    from attnvgg.data.train import output_paths

    assert output_paths(tmp_path / "run") == (tmp_path / "run" / "model.pt", tmp_path / "run" / "model.toml")
    with pytest.raises(InputError):
        output_paths(tmp_path / "model.onnx")


def test_builtin_model_ships_and_works():
    """The packaged checkpoint loads strictly and is accurate on the built-in val split."""
    import torch

    from attnvgg.data.datasets import open_dataset
    from attnvgg.models.build import build_model

    model_spec, pre = builtin_model_config()
    assert Path(model_spec.checkpoint).is_file()
    assert Path(model_spec.checkpoint).stat().st_size < 10 * 2**20
    model = build_model(model_spec)
    correct = total = 0
    with torch.no_grad():
        for x, y in open_dataset("builtin:val", pre).iter_batches(100, limit=200):
            correct += int((model(torch.from_numpy(x)).argmax(1).numpy() == y).sum())
            total += len(y)
    assert correct / total > 0.6


# ----------------------------------------------------------------------------------- CLI

def test_cli_help():
    res = CliRunner().invoke(cli, ["train", "--help"])
    assert res.exit_code == 0 and "--epochs" in res.output and "--out" in res.output


@pytest.mark.parametrize("args,needle", [(["--epochs", "0"], "epochs must be >= 1"),
                                         (["--width", "0"], "width must be positive"),
                                         (["--attention", "global,foo,se"], "attention")])
def test_cli_bad_value_one_line_exit_2(tmp_path, args, needle):
    res = CliRunner().invoke(cli, ["train", "--out", str(tmp_path / "m.pt"), *args])
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("error:")
    assert not (tmp_path / "m.pt").exists()


def test_cli_non_integer_is_usage_error(tmp_path):
    res = CliRunner().invoke(cli, ["train", "--out", str(tmp_path / "m.pt"), "--epochs", "two"])
    assert res.exit_code == 2 and "epochs" in res.stderr


def test_cli_tiny_run(tmp_path):
    args = ["train", "--out", str(tmp_path / "run"), "--epochs", "1", "--width", "0.0625", "--input-size", "32",
            "--train-limit", "32", "--val-limit", "16", "--batch-size", "16", "--threads", "1", "--quiet"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert "val top-1" in res.stdout and (tmp_path / "run" / "model.pt").is_file()
    assert (tmp_path / "run" / "model.toml").is_file()


