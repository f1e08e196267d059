"""Every stage preprocesses with the spec stored with the model (its export sidecar)."""

import pytest

from attnvgg.data.preprocess import for_model
from attnvgg.config import Config, ExportSpec, PreprocessSpec
from attnvgg.errors import InputError
from attnvgg.export.onnx import export_onnx
from tests.conftest import error_line, run_cli, tiny_spec


@pytest.fixture(scope="module")
def exported_64(tmp_path_factory):
    """A 64 px model exported with a non-default preprocessing (resize 64, crop 64)."""
    path = tmp_path_factory.mktemp("pre") / "m.onnx"
    pre = PreprocessSpec(resize=64, crop=64, mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
    export_onnx(tiny_spec("global", input_size=64, num_classes=8), ExportSpec(batch_max=8), path, preprocess=pre)
    return path, pre


def test_stored_spec_wins_over_a_rescaled_default(exported_64):
    path, pre = exported_64
    assert for_model(str(path), Config().preprocess, 64, given=False) == pre
    # without a sidecar the config's default is scaled to the input: not what the model saw
    assert for_model(None, Config().preprocess, 64, given=True).resize == 73


def test_contradicting_config_is_refused(exported_64):
    path, _ = exported_64
    cfg = Config()
    cfg.preprocess.resize, cfg.preprocess.crop = 80, 64
    with pytest.raises(InputError, match="differs from the one stored"):
        for_model(str(path), cfg.preprocess, 64, given=True)


def test_evaluate_cli_uses_the_stored_spec(exported_64, tmp_path):
    import json

    from attnvgg.data.preprocess import spec_hash

    path, pre = exported_64
    out = tmp_path / "acc.json"
    res = run_cli(["evaluate", str(path), "--data", "builtin:val", "--limit", "16", "-o", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["data"]["preprocess_hash"] == spec_hash(pre)
    bad = tmp_path / "bad.toml"
    bad.write_text("[preprocess]\nresize = 80\ncrop = 64\n")
    res = run_cli(["evaluate", str(path), "--data", "builtin:val", "--limit", "16", "--config", str(bad),
                   "-o", str(tmp_path / "x.json")])
    assert res.exit_code == 2 and "differs from the one stored" in error_line(res)
    assert not (tmp_path / "x.json").exists()
