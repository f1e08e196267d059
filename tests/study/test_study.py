"""The study's parts that need no training: variants, config, claims, the report."""

from __future__ import annotations

import json

import pytest

from tests.conftest import error_line, run_cli


def test_variants_cover_the_config_names():
    from attnvgg.config import STUDY_VARIANTS
    from attnvgg.study.variants import ATTENTION, DESCRIPTION

    assert set(ATTENTION) == set(STUDY_VARIANTS) == set(DESCRIPTION)
    assert ATTENTION["global-b5"] == ("none", "none", "global")


def test_builtin_checkpoint_stands_for_global_only_with_its_recipe():
    import dataclasses

    from attnvgg.config import TrainSpec
    from attnvgg.study.variants import builtin_recipe_matches

    assert builtin_recipe_matches(TrainSpec()) is not None          # the shipped recipe
    assert builtin_recipe_matches(dataclasses.replace(TrainSpec(), epochs=4)) is None
    assert builtin_recipe_matches(dataclasses.replace(TrainSpec(), attention=["se"] * 3)) is None


@pytest.mark.parametrize("args,needle", [
    (["--set", "study.variants=['plain','bogus']"], "unknown study variant"),
    (["--set", "study.variants=['plain','plain']"], "repeat"),
    (["--preset", "nope"], "unknown study preset"),
    (["--set", "study.nope=1"], "unknown key"),
    (["--set", "study.full_size_input=16"], "full_size_input"),
])
def test_study_bad_input_one_line(args, needle, tmp_path):
    res = run_cli(["study", "--out", str(tmp_path / "s"), *args])
    assert res.exit_code == 2, res.output
    assert needle in error_line(res)
    assert not (tmp_path / "s").exists()


def _model(name, top1, gmac, att, full=None):
    return {"variant": name, "attention": [], "description": name, "parameters": 1000, "top1": top1,
            "gmac": {"gmac": gmac, "attention_gmac": gmac * att, "attention_share": att},
            "gmac_full_size": full, "train": {"val_images": 500}}


def test_claims_from_numbers():
    from attnvgg.study.collect import check_claims, difficulty

    full_p = {"gmac": 15.47, "attention_gmac": 0.0, "attention_share": 0.0, "input_size": 224}
    full_g = {"gmac": 19.26, "attention_gmac": 3.79, "attention_share": 0.197, "input_size": 224}
    models = [_model("plain", 0.928, 0.0222, 0.0, full_p), _model("global", 0.894, 0.0256, 0.133, full_g),
              _model("se", 0.93, 0.02221, 0.0001)]
    claims = {c["claim"]: c for c in check_claims(models, [])}
    gain = next(c for k, c in claims.items() if "gains 1-3 points" in k)
    assert gain["verdict"] == "does not hold" and gain["measured"]["gain_points"] == -3.4
    cost = next(c for k, c in claims.items() if "study input size" in k)
    assert cost["measured"]["extra_percent"] == pytest.approx(15.32, abs=0.01)
    assert cost["verdict"].startswith("holds as the increase")         # +15.3 % over plain, 13.3 % share
    full = next(c for k, c in claims.items() if "full-size" in k)
    assert full["measured"]["extra_percent"] == pytest.approx(24.5, abs=0.1)
    assert full["verdict"].startswith("holds as attention's share")      # 19.7 % of the total, +24.5 % over plain
    assert claims["se: a cheaper alternative to global attention"]["verdict"] == "compared"
    se_untrained = [_model("plain", 0.928, 0.0222, 0.0), _model("global", 0.894, 0.0256, 0.133),
                    {**_model("se", 0.124, 0.02221, 0.0001), "chance": 0.125}]
    se_claim = next(c for c in check_claims(se_untrained, []) if c["claim"].startswith("se:"))
    assert se_claim["verdict"] == "not measured" and "did not train" in se_claim["text"]
    assert "se left out" in difficulty(se_untrained)
    assert difficulty(models).startswith("not saturated")
    assert difficulty([_model("a", 0.99, 1, 0), _model("b", 0.985, 1, 0)]).startswith("too easy")
    assert "no difference shows" in difficulty([_model("a", 0.80, 1, 0), _model("b", 0.81, 1, 0)])


def test_study_report_renders_rows_claims_and_plots(tmp_path):
    from attnvgg.report.study import make_study_report
    from attnvgg.study.collect import check_claims

    models = [_model("plain", 0.928, 0.0222, 0.0), _model("global", 0.894, 0.0256, 0.133)]
    rows = [{"variant": m["variant"], "engine": e, "key": k, "parameters": 1000, "gmac": m["gmac"]["gmac"],
             "attention_gmac": 0, "attention_share": m["gmac"]["attention_share"], "top1": m["top1"] - d,
             "drop_points": 100 * d, "top1_agreement": 0.99, "p50_b1_ms": 1.0 + d, "p50_b8_ms": 4.0,
             "parity": None if k == "pytorch" else m["variant"] == "plain",
             "parity_failed": [] if m["variant"] == "plain" else ["random b1: cosine 0.9 < 0.98"]}
            for m in models for e, k, d in (("pytorch fp32", "pytorch", 0.0), ("onnxruntime int8", "int8-cpu", 0.01))]
    doc = {"format": "attnvgg-study/1", "variants": ["plain", "global"], "models": models, "rows": rows,
           "attention_maps": [], "claims": check_claims(models, rows), "difficulty": "x", "intro": "i", "method": "m"}
    out = make_study_report(doc, tmp_path / "r")
    md = out["markdown"].read_text()
    assert "## Claims checked" in md and "does not hold" in md
    assert md.count("| plain |") == 2 and md.count("| global |") == 2
    assert (tmp_path / "r" / "study-top1-vs-gmac.png").is_file()
    assert (tmp_path / "r" / "study-top1-vs-latency.png").is_file()
    assert json.loads(out["json"].read_text())["claims"] == doc["claims"]
    assert "data:image/png;base64" in out["html"].read_text()
    assert "| PASS |" in md and "FAIL (random b1)" in md
    parity = next(c for c in doc["claims"] if "parity" in c["claim"])
    assert parity["verdict"] == "does not hold" and "global int8-cpu" in parity["text"]


def test_study_out_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "s"
    f.write_text("x")
    res = run_cli(["study", "--out", str(f), "--set", "study.variants=['plain']"])
    assert res.exit_code == 2 and "is a file" in error_line(res)
    assert f.read_text() == "x"


def test_a_chance_level_training_is_retried_once_with_the_next_seed(tmp_path, monkeypatch):
    from attnvgg import pipeline
    from attnvgg.config import TrainSpec

    seen = []

    def fake_train(spec, out):
        seen.append(spec.seed)
        return {"val_top1": {0: 0.124, 1: 0.942, 2: 0.13, 3: 0.12}[spec.seed], "train_seconds": 50.0}

    monkeypatch.setattr(pipeline, "train", fake_train)
    lines = []
    info = pipeline.train_variant(TrainSpec(attention=["se"] * 3), tmp_path / "m.pt", tmp_path / "seeds.json", lines.append)
    assert seen == [0, 1] and info == {"val_top1": 0.942, "train_seconds": 100.0, "seeds": 2}
    doc = json.loads((tmp_path / "seeds.json").read_text())
    assert [s["seed"] for s in doc["seeds"]] == [0, 1] and doc["chance"] == 0.125
    assert "chance level" in lines[0] and "seed 1" in lines[0]
    seen.clear()     # a trained model is not retried; a retry that also fails is not retried again
    pipeline.train_variant(TrainSpec(seed=1), tmp_path / "m.pt", tmp_path / "s2.json", lines.append)
    pipeline.train_variant(TrainSpec(seed=2), tmp_path / "m.pt", tmp_path / "s3.json", lines.append)
    assert seen == [1, 2, 3]


def test_retry_and_missing_openvino_are_noted():
    from attnvgg.study.collect import openvino_note, retry_notes

    se = {**_model("se", 0.942, 0.0222, 0.0), "train": {"seeds_tried": [{"seed": 0, "val_top1": 0.124},
                                                                       {"seed": 1, "val_top1": 0.942}]}}
    (note,) = retry_notes([_model("plain", 0.928, 0.0222, 0.0), se])
    assert note.startswith("se: training with seed 0 stayed at chance level (12.4 % val top-1)") and "seed 1 (94.2 %)" in note
    assert openvino_note([{"key": "openvino-int8"}]) is None
    assert openvino_note([{"key": "fp32"}]).startswith("OpenVINO rows skipped: ")


def test_openvino_rows_carry_the_float_parts_precision(tmp_path):
    from attnvgg.study.collect import variant_rows

    res = tmp_path / "results"
    res.mkdir()
    runner = {"name": "openvino-bf16", "backend": "openvino-cpu"}
    (res / "accuracy-openvino-int8.json").write_text(json.dumps(
        {"backend": "openvino-cpu", "runner": runner, "top1": 0.9, "reference": {"top1_agreement": 0.98}}))
    (res / "bench-openvino-int8.json").write_text(json.dumps(
        {"rows": [{"runner": "openvino-bf16", "batch": 1, "latency_ms": {"p50": 1.5}},
                  {"runner": "openvino-bf16", "batch": 8, "latency_ms": {"p50": 9.0}}]}))
    (res / "parity-openvino-int8.json").write_text(json.dumps({"passed": True, "cases": []}))
    (row,) = variant_rows("global", tmp_path, 0.91, 1000, {"gmac": 0.02, "attention_gmac": 0.003, "attention_share": 0.13})
    assert row["engine"] == "openvino int8 (cpu flavour), bf16 float parts"
    assert row["top1"] == 0.9 and row["parity"] is True and row["drop_points"] == pytest.approx(1.0)
    assert (row["p50_b1_ms"], row["p50_b8_ms"]) == (1.5, 9.0)
