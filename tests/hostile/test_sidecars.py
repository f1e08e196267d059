"""Issue 10's sidecar and output-path checks, as hostile inputs (issue 11's catalogue).

A sidecar is a data file: it may never turn on unpickling or pick a model factory; a model
replaced after its sidecar (kill -9 between the two renames) is refused, not paired with facts
about another file; a corrupt or wrong-shaped sidecar is one line. An output path may not be an
input or a sidecar of an input of the same command.
"""

from __future__ import annotations

import json
import pickle
import sys

import pytest

from tests.hostile.conftest import refused

MARKER = "PAYLOAD_RAN"


def _evil_checkpoint(path, marker):
    """A pickle whose loading runs ``open(marker, 'w')`` (what torch.load(weights_only=False) would do)."""
    code = f"open({str(marker)!r}, 'w').write('ran')"

    class Evil:
        def __reduce__(self):
            return (exec, (code,))

    path.write_bytes(pickle.dumps(Evil()))


def _edit_sidecar(path, fn):
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def _edit_model_sidecars(work, edit):
    """Apply ``edit`` to every sidecar in ``work`` that records the model (export and simplify)."""
    for name in ("model.onnx.json", "model.sim.onnx.json"):
        if "model" in json.loads((work / name).read_text()):
            _edit_sidecar(work / name, edit)


def test_sidecar_cannot_turn_on_trust_checkpoint(work):
    marker = work / MARKER
    _evil_checkpoint(work / "weights.pt", marker)

    def edit(d):
        d["model"]["checkpoint"] = str(work / "weights.pt")
        d["model"]["trust_checkpoint"] = True

    _edit_model_sidecars(work, edit)
    try:
        refused(["validate", "model.sim.onnx", "--batches", "1", "--samples", "1"], work, 2, r"trust")
    finally:
        assert not marker.exists(), "the checkpoint's pickle payload ran"


def test_sidecar_cannot_pick_a_factory(work, tmp_path, monkeypatch):
    pkg = tmp_path / "evilpkg"
    pkg.mkdir()
    marker = work / MARKER
    (pkg / "evilmod.py").write_text(f"open({str(marker)!r}, 'w').write('imported')\ndef make():\n    raise SystemExit(9)\n")
    monkeypatch.syspath_prepend(str(pkg))

    def edit(d):
        d["model"]["factory"] = "evilmod:make"
        d["model"]["arch"] = "custom"

    _edit_model_sidecars(work, edit)
    try:
        refused(["validate", "model.sim.onnx", "--batches", "1", "--samples", "1"], work, 2, r"factory")
    finally:
        assert not marker.exists() and "evilmod" not in sys.modules, "the sidecar's factory module was imported"


def test_model_replaced_after_its_sidecar_is_refused(work):
    """kill -9 of export after the model rename, before the sidecar rename: new model, old sidecar."""
    other = (work / "model.fp16.onnx").read_bytes()
    (work / "model.sim.onnx").write_bytes(other)      # any other model under the old sidecar
    refused(["validate", "model.sim.onnx", "--batches", "1", "--samples", "1"], work, 2, r"sidecar")


CORRUPT = [
    ("truncated", '{"model": {'),
    ("list", "[1, 2, 3]"),
    ("model-int", '{"model": 5}'),
    ("empty", ""),
]
COMMANDS = [
    ("validate", ["validate", "model.sim.onnx", "--batches", "1", "--samples", "1"]),
    ("evaluate", ["evaluate", "model.sim.onnx", "--limit", "8"]),
    ("calibrate", ["calibrate", "model.sim.onnx", "--num-images", "16", "--no-cache", "-o", "q.onnx"]),
]


@pytest.mark.parametrize("content", [c[1] for c in CORRUPT], ids=[c[0] for c in CORRUPT])
@pytest.mark.parametrize("args", [c[1] for c in COMMANDS], ids=[c[0] for c in COMMANDS])
def test_corrupt_or_wrong_shaped_sidecar_is_one_line(work, args, content):
    (work / "model.sim.onnx.json").write_text(content)
    refused(args, work, 2, r"sidecar")


OUTPUT_IS_INPUT = [
    ("evaluate-o-model", ["evaluate", "model.sim.onnx", "--limit", "8", "-o", "model.sim.onnx"]),
    ("evaluate-save-logits-model", ["evaluate", "model.sim.onnx", "--limit", "8", "--save-logits", "model.sim.onnx"]),
    ("evaluate-o-sidecar", ["evaluate", "model.sim.onnx", "--limit", "8", "-o", "model.sim.onnx.json"]),
    ("bench-json-model", ["bench", "model.sim.onnx", "--batches", "1", "--warmup", "0", "--iterations", "1",
                          "--min-seconds", "0", "--json", "model.sim.onnx"]),
    ("validate-json-sidecar", ["validate", "model.sim.onnx", "--batches", "1", "--samples", "1",
                               "--json", "model.sim.onnx.json"]),
    ("validate-junit-model", ["validate", "model.sim.onnx", "--batches", "1", "--samples", "1",
                              "--junit", "model.sim.onnx"]),
    ("calibrate-o-source", ["calibrate", "model.sim.onnx", "--num-images", "16", "--no-cache", "-o", "model.sim.onnx"]),
    ("convert-o-source-sidecar", ["convert", "model.sim.onnx", "--precision", "fp16", "-o", "model.sim.onnx.json"]),
]


@pytest.mark.parametrize("args", [c[1] for c in OUTPUT_IS_INPUT], ids=[c[0] for c in OUTPUT_IS_INPUT])
def test_output_may_not_be_an_input_or_its_sidecar(work, args):
    """``evaluate m.onnx -o m.onnx`` once replaced the model with a 910-byte JSON."""
    refused(args, work, 2)
