"""Shared fixtures: tiny width-reduced models and their exports, built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")

TINY = dict(width=1 / 16, input_size=32, num_classes=10, gamma=0.5)


def tiny_spec(attention="global", **kw):
    from attnvgg.config import ModelSpec

    kinds = attention if isinstance(attention, list) else [attention] * 3
    args = {**TINY, **kw}
    return ModelSpec(attention=kinds, **args)


@pytest.fixture(scope="session")
def tiny_exports(tmp_path_factory) -> dict:
    """{kind: path of a dynamo export of the tiny model with that attention in blocks 3-5}."""
    from attnvgg.config import ExportSpec
    from attnvgg.export.onnx import export_onnx

    root = tmp_path_factory.mktemp("exports")
    out = {}
    for kind in ("global", "se", "cbam", "none"):
        path = root / kind / "model.onnx"
        export_onnx(tiny_spec(kind), ExportSpec(batch_max=8), path)
        out[kind] = path
    return out


def run_cli(args: list[str], cwd: Path | None = None):
    """Run the CLI in-process; returns click's Result (exit_code, output incl. stderr)."""
    from click.testing import CliRunner

    from attnvgg.cli import cli

    runner = CliRunner()
    cwd_before = os.getcwd()
    try:
        if cwd:
            os.chdir(cwd)
        return runner.invoke(cli, args, catch_exceptions=False)
    finally:
        os.chdir(cwd_before)


def error_line(result) -> str:
    """The error output must be exactly one line starting with 'error:'."""
    lines = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output, result.output
    return lines[0]


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory):
    """Tests never read or write the user's calibration cache."""
    old = os.environ.get("ATTNVGG_CACHE_DIR")
    os.environ["ATTNVGG_CACHE_DIR"] = str(tmp_path_factory.mktemp("attnvgg-cache"))
    yield
    if old is None:
        os.environ.pop("ATTNVGG_CACHE_DIR", None)
    else:
        os.environ["ATTNVGG_CACHE_DIR"] = old


def stub_datasets(monkeypatch, pick) -> None:
    """Every data source the stages open returns ``pick(name)`` (arrays built in the test).

    Patches the public opener (``attnvgg.data.open_dataset``, also as the pipeline imported it),
    not a CLI internal: the preprocessing decision still runs as in a real call."""
    import attnvgg.pipeline  # noqa: F401 - imported first, so it binds the real opener that undo restores

    fake = lambda name, pre, split=None: pick(name)  # noqa: E731
    monkeypatch.setattr("attnvgg.data.open_dataset", fake)
    monkeypatch.setattr("attnvgg.pipeline.open_dataset", fake)


def preprocess_config(folder: Path, model: Path, name: str = "pre.toml") -> list[str]:
    """``--config`` args giving a [preprocess] table for a model file without a sidecar."""
    from attnvgg.onnxgraph import load_onnx, model_input

    hw = model_input(load_onnx(model, load_external_data=False)).chw[1]
    path = Path(folder) / name
    path.write_text(f"[preprocess]\nresize = {hw}\ncrop = {hw}\n")
    return ["--config", str(path)]
