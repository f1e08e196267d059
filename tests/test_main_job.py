"""The README's main job: `attnvgg run` on the built-in default, end to end."""

import json

from tests.test_ci_logs import piped


def test_default_run_produces_the_report_with_every_row(tmp_path):
    out = tmp_path / "run"
    # as a CI job runs it: stdout and stderr into one pipe
    done = piped(["run", "--out", str(out), "--set", "bench.min_seconds=0.2", "--set", "bench.iterations=10"],
                 tmp_path)
    log = done.stdout.decode()
    assert done.returncode == 0, log[-3000:]          # the README's main job passes every check it runs
    assert "report:" in log
    assert "\r" not in log                             # no progress-bar redraws in a CI log
    lines = log.splitlines()
    notes = [i for i, ln in enumerate(lines) if ln.startswith("      ")]
    assert notes, log                                  # the fp16 clamp note, the calibration notes ...
    for i in notes:                                    # ... each after its own (finished) stage line
        owner = next(ln for ln in reversed(lines[:i]) if ln.startswith("[ "))
        assert not owner.endswith("running ..."), (owner, lines[i])
    assert (out / "config.toml").is_file() and "reproduce" in json.loads((out / "notes.json").read_text())["run"]
    rep = out / "report"
    for name in ("report.md", "report.html", "report.json", "report.csv", "report.png"):
        assert (rep / name).is_file(), name
    data = json.loads((rep / "report.json").read_text())
    rows = {(r["runner"].split("-")[0], r["precision"], r.get("flavour")) for r in data["rows"]}
    for want in (("pytorch", "fp32", None), ("onnxruntime", "fp32", None), ("onnxruntime", "fp16", None),
                 ("onnxruntime", "int8", "tensorrt"), ("onnxruntime", "int8", "cpu")):
        assert want in rows, (want, rows)
    for r in data["rows"]:  # measured, not invented: every row has latency and accuracy
        assert r["latency"] and r["top1"] is not None, r
    # OpenVINO rows where openvino (and, for bf16, a bf16 CPU) is here; else the reason in the report
    from attnvgg.runners.openvino import unavailable_reason

    ov_rows = {(r["runner"], r["precision"], r.get("flavour")) for r in data["rows"] if r["runner"].startswith("openvino")}
    skipped = {s["what"]: s["reason"] for s in data["skipped"]}
    if unavailable_reason("f32"):
        assert not ov_rows and "openvino" in skipped["variant openvino-fp32"]
    elif unavailable_reason("bf16"):
        assert ov_rows == {("openvino-f32", "fp32", None), ("openvino-f32", "int8", "cpu")}, ov_rows
        assert "bf16" in skipped["variant openvino-bf16"]
    else:
        assert ov_rows == {("openvino-f32", "fp32", None), ("openvino-bf16", "bf16", None),
                           ("openvino-bf16", "int8", "cpu")}, ov_rows
    html = (rep / "report.html").read_text()
    assert "data:image/png;base64," in html and "<table" in html
    # a rerun with nothing changed runs no stage
    # (invoked the same way: the report's reproduce block records the invocation, so another
    # invocation of the same run re-renders the report, and only the report)
    again = piped(["run", "--out", str(out), "--set", "bench.min_seconds=0.2", "--set", "bench.iterations=10"],
                  tmp_path)
    assert again.returncode == done.returncode
    progress = [ln for ln in again.stdout.decode().splitlines() if ln.startswith("[")]
    assert progress and all(ln.endswith(("cached", "FAILED (cached)")) or "skipped" in ln for ln in progress), progress
