"""attnvgg.sidecar: one schema per kind, the hash checked on every read, no code chosen by a sidecar."""

from __future__ import annotations

import json
import pickle
import shutil
import sys
from pathlib import Path

import pytest

from attnvgg import sidecar
from attnvgg.artifacts import sidecar_path
from attnvgg.errors import InputError
from tests.conftest import error_line, run_cli


@pytest.fixture()
def exported(tiny_exports, tmp_path) -> Path:
    """A private copy of the tiny global export with its sidecar."""
    dest = tmp_path / "model.onnx"
    shutil.copy(tiny_exports["global"], dest)
    shutil.copy(sidecar_path(tiny_exports["global"]), sidecar_path(dest))
    return dest


def test_write_records_kind_tag_hash_and_reads_back(tmp_path):
    art = tmp_path / "m.onnx"
    art.write_bytes(b"not a real model, only bytes to hash")
    written = sidecar.write(art, "fp16", {"keep_io_types": True, "block_ops": []}, source=None)
    data = json.loads(sidecar_path(art).read_text())
    assert data["format"] == "attnvgg.fp16/1" and data["kind"] == "fp16" and data["precision"] == "fp16"
    assert data["artifact_sha256"] == sidecar.artifact_hash(art) and len(data["artifact_sha256"]) == 64
    side = sidecar.read(art)
    assert side == written and side.precision == "fp16" and side.get("keep_io_types") is True
    assert sidecar.precision_of(art) == "fp16"
    with pytest.raises(ValueError, match="lack"):
        sidecar.write(art, "int8", {"flavour": "cpu"})      # a writer that forgets a field fails loudly


def test_model_replaced_after_its_sidecar_is_refused(exported):
    """Covers a crash between the model rename and the sidecar rename (issue 11)."""
    assert sidecar.read(exported).kind == "export"
    exported.write_bytes(exported.read_bytes() + b"\0")
    with pytest.raises(InputError) as err:
        sidecar.read(exported)
    msg = err.value.one_line()
    assert "\n" not in msg and "model.onnx" in msg and "model.onnx.json" in msg and "re-run" in msg
    res = run_cli(["validate", str(exported)])
    assert res.exit_code == 2 and "replaced after its sidecar" in error_line(res)


def test_source_changed_since_the_derived_file_was_made(exported, tmp_path):
    derived = tmp_path / "model.fp16.onnx"
    derived.write_bytes(b"derived")
    sidecar.write(derived, "fp16", {"keep_io_types": True, "block_ops": []}, source=exported)
    assert [s.kind for s in sidecar.lineage(derived)] == ["fp16", "export"]
    sidecar.write(exported, "export", sidecar.read(exported).facts)     # re-export: same bytes, fresh sidecar
    assert len(sidecar.lineage(derived)) == 2
    exported.write_bytes(exported.read_bytes() + b"\0")
    sidecar.write(exported, "export", sidecar.read_file(sidecar_path(exported)).facts)   # a new model, consistent
    with pytest.raises(InputError, match="was made from .* which changed since"):
        sidecar.lineage(derived)


@pytest.mark.parametrize("text, words", [
    ('{"model": {', "not valid JSON"),
    ("[1, 2]", "not a JSON object"),
    ('{"precision": "fp32"}', "not an attnvgg sidecar"),
    ('{"format": "attnvgg.export/9", "kind": "export"}', "this attnvgg reads export/1"),
    ('{"format": "attnvgg.export/1", "kind": "export", "artifact": "m.onnx", "artifact_sha256": "x", '
     '"precision": "fp32", "model": {}, "preprocess": null}', "lacks field 'export'"),
    ('{"format": "attnvgg.export/1", "kind": "export", "artifact": "m.onnx", "artifact_sha256": "x", '
     '"precision": "fp32", "model": [], "preprocess": null, "export": {}}', "field 'model' is list"),
    ('{"format": "attnvgg.export/1", "kind": "export", "artifact": "m.onnx", "artifact_sha256": "x", '
     '"precision": "int4", "model": {}, "preprocess": null, "export": {}}', "precision 'int4'"),
])
def test_corrupt_or_wrong_shaped_sidecar_is_one_line(exported, text, words):
    sidecar_path(exported).write_text(text)
    with pytest.raises(InputError) as err:
        sidecar.read(exported)
    assert words in err.value.one_line() and "\n" not in err.value.one_line()
    res = run_cli(["validate", str(exported)])
    assert res.exit_code == 2 and words in error_line(res)


def test_bad_model_table_in_a_sidecar_is_one_line(exported):
    data = json.loads(sidecar_path(exported).read_text())
    data["model"]["widht"] = 2
    sidecar.write(exported, "export", data)
    with pytest.raises(InputError, match="sidecar .*unknown key"):
        sidecar.model_spec(exported)


# ----------------------------------------------------------------------------- no code from a sidecar

class _Marker:
    """Unpickling this creates a file: proof that code from the checkpoint ran."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_edited_sidecar_cannot_turn_on_unpickling(exported, tmp_path):
    marker = tmp_path / "unpickled"
    ckpt = tmp_path / "evil.pt"
    ckpt.write_bytes(pickle.dumps({"state": _Marker(str(marker))}))
    data = json.loads(sidecar_path(exported).read_text())
    data["model"].update(checkpoint=str(ckpt), trust_checkpoint=True)
    sidecar.write(exported, "export", data)                      # hash intact: only the facts were edited
    with pytest.raises(InputError, match="never turns on trust_checkpoint"):
        sidecar.model_spec(exported)
    for args in (["validate", str(exported)],
                 ["evaluate", str(exported), "--reference", "pytorch", "--limit", "4", "-o", str(tmp_path / "a.json")],
                 ["bench", str(exported), "--pytorch", "--iterations", "1", "--min-seconds", "0"]):
        res = run_cli(args)
        assert res.exit_code == 2 and "--trust-checkpoint" in error_line(res), (args, res.output)
    assert not marker.exists()
    # the grant from the command line is what allows it (then the file is loaded as asked)
    assert sidecar.model_spec(exported, trust=True).trust_checkpoint is True


def test_sidecar_cannot_choose_a_factory(exported, tmp_path, monkeypatch):
    mod = tmp_path / "evil_factory_mod.py"
    marker = tmp_path / "imported"
    mod.write_text(f"from pathlib import Path\nPath({str(marker)!r}).touch()\ndef s():\n    raise SystemExit(9)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    data = json.loads(sidecar_path(exported).read_text())
    data["model"].update(factory="evil_factory_mod:s", arch="custom")
    sidecar.write(exported, "export", data)
    with pytest.raises(InputError, match="a sidecar never chooses code"):
        sidecar.model_spec(exported)
    data["model"]["factory"] = "this:s"
    sidecar.write(exported, "export", data)
    res = run_cli(["validate", str(exported)])
    assert res.exit_code == 2 and "--model this:s" in error_line(res)
    assert not marker.exists() and "evil_factory_mod" not in sys.modules


# ----------------------------------------------------------------------------- stage commands

def test_export_records_the_preprocess_of_its_input_size(tmp_path):
    res = run_cli(["export", "--width", "0.125", "--input-size", "64", "--num-classes", "8", "-o", "m.onnx"], cwd=tmp_path)
    assert res.exit_code == 0, res.output
    pre = sidecar.preprocess(tmp_path / "m.onnx")
    assert pre.crop == 64 and pre.resize >= 64
    spec = sidecar.model_spec(tmp_path / "m.onnx")
    assert spec.checkpoint is None       # the built-in weights belong to the built-in architecture only


def test_default_model_is_the_builtin_one_for_every_command(tmp_path):
    from attnvgg.data import builtin_model_config

    res = run_cli(["export", "-o", "m.onnx"], cwd=tmp_path)
    assert res.exit_code == 0, res.output
    builtin, pre = builtin_model_config()
    spec = sidecar.model_spec(tmp_path / "m.onnx")
    assert (spec.width, spec.num_classes, spec.input_size, Path(spec.checkpoint).name) == (
        builtin.width, builtin.num_classes, builtin.input_size, "builtin.pt")
    assert sidecar.preprocess(tmp_path / "m.onnx") == pre


def test_reference_pytorch_takes_the_model_from_the_sidecar(exported, tmp_path):
    out = tmp_path / "acc.json"
    res = run_cli(["evaluate", str(exported), "--data", "builtin:val", "--limit", "16", "--reference", "pytorch",
                   "-o", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert doc["reference"]["top1_agreement"] == 1.0 and doc["format"] == "attnvgg.accuracy/1"
    assert doc["artifacts"] == {str(exported): sidecar.artifact_hash(exported)}


@pytest.mark.parametrize("command", ["evaluate", "calibrate", "validate"])
def test_onnx_without_sidecar_is_refused_with_the_way_out(exported, tmp_path, command):
    bare = tmp_path / "bare.onnx"
    shutil.copy(exported, bare)
    args = {"evaluate": ["evaluate", str(bare), "--limit", "4", "-o", str(tmp_path / "a.json")],
            "calibrate": ["calibrate", str(bare), "-o", str(tmp_path / "q.onnx")],
            "validate": ["validate", str(bare)]}[command]
    res = run_cli(args)
    assert res.exit_code == 2
    assert "--config" in error_line(res)
    assert not (tmp_path / "a.json").exists() and not (tmp_path / "q.onnx").exists()
    # given on the command line, the same file works
    cfg = tmp_path / "given.toml"
    cfg.write_text("[model]\nwidth = 0.0625\ninput_size = 32\nnum_classes = 10\ngamma = 0.5\n"
                   "[preprocess]\nresize = 32\ncrop = 32\n")
    if command == "validate":
        res = run_cli(args + ["--config", str(cfg)])
        assert res.exit_code == 0, res.output


def test_builtin_model_toml_is_a_valid_config():
    toml = Path(__file__).resolve().parents[1] / "attnvgg" / "assets" / "builtin.toml"
    res = run_cli(["config", "--show", "--config", str(toml)])
    assert res.exit_code == 0, res.output
    assert "[result]" not in res.output and "builtin.pt" in res.output


@pytest.mark.parametrize("case", ["evaluate_out_is_input", "validate_json_is_sidecar", "bench_json_is_input",
                                  "save_logits_is_input"])
def test_output_may_not_be_an_input_or_its_sidecar(exported, tmp_path, case):
    before = {p: p.read_bytes() for p in (exported, sidecar_path(exported))}
    args = {"evaluate_out_is_input": ["evaluate", str(exported), "-o", str(exported)],
            "validate_json_is_sidecar": ["validate", str(exported), "--json", str(sidecar_path(exported))],
            "bench_json_is_input": ["bench", str(exported), "--json", str(exported)],
            "save_logits_is_input": ["evaluate", str(exported), "--save-logits", str(sidecar_path(exported)),
                                     "-o", str(tmp_path / "a.json")]}[case]
    res = run_cli(args)
    assert res.exit_code == 2 and "output" in error_line(res)
    assert {p: p.read_bytes() for p in before} == before


# ----------------------------------------------------------------------------- report and stale results

def test_report_refuses_results_older_than_their_artifact(exported, tmp_path):
    res = run_cli(["validate", str(exported), "--json", str(tmp_path / "parity.json")])
    assert res.exit_code == 0, res.output
    res = run_cli(["report", str(tmp_path / "parity.json"), "--out", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    exported.write_bytes(exported.read_bytes() + b"\0")       # the model changed after it was measured
    res = run_cli(["report", str(tmp_path / "parity.json"), "--out", str(tmp_path / "rep2")])
    assert res.exit_code == 2 and "before it changed" in error_line(res)
    assert not (tmp_path / "rep2").exists()


def test_report_dispatches_on_the_format_tag(tmp_path):
    from tests.report.conftest import accuracy, write

    write(tmp_path / "weird-name.json", accuracy("m.onnx", "onnxruntime-cpu", 0.5, 0.9))
    untagged = accuracy("n.onnx", "onnxruntime-cpu", 0.6, 0.9)
    untagged.pop("format")
    write(tmp_path / "n.onnx.accuracy.json", untagged)
    from attnvgg.report.load import collect

    res = collect([tmp_path])
    assert [a["artifact"] for a in res.accuracy] == ["m.onnx"]
    assert str(tmp_path / "n.onnx.accuracy.json") in res.ignored
