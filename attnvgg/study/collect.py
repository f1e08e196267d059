"""Gather one study's facts from the files its stages wrote, and check the claims against them.

Inputs per variant: the training TOML ([result]: val top-1, seconds), the checkpoint (parameter
count), ``gmac.json`` (counted from the exported graph), ``gmac-224.json`` (the full-size model),
the run folder's accuracy/bench results and ``explain.json``. Output: ``study.json`` with one
row per variant x engine/precision and the "claims checked" verdicts. Nothing is measured here.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

from attnvgg.artifacts import read_json
from attnvgg.runners.openvino import unavailable_reason
from attnvgg.study.variants import ATTENTION, DESCRIPTION

STUDY_FORMAT = "attnvgg-study/2"
#: (label, result-file stem) of each engine/precision row of a variant
ENGINES = (("pytorch fp32", "pytorch"), ("onnxruntime fp32", "fp32"), ("onnxruntime fp16", "fp16"),
           ("onnxruntime int8 (tensorrt flavour)", "int8-tensorrt"), ("onnxruntime int8 (cpu flavour)", "int8-cpu"),
           ("openvino fp32", "openvino-fp32"), ("openvino bf16 (fp32 file)", "openvino-bf16"),
           ("openvino int8 (cpu flavour)", "openvino-int8"))
#: OpenVINO's runner names say the inference precision of the float parts
_OPENVINO_PARTS = {"openvino-f32": "f32", "openvino-bf16": "bf16"}
CLAIM_GAIN = (1.0, 3.0)          # top-1 points global attention is said to gain over the plain model
CLAIM_COST = (15.0, 20.0)        # % more MACs it is said to cost


def parameter_count(checkpoint: Path) -> int:
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    return int(sum(v.numel() for v in state.values() if hasattr(v, "numel")))


def _p50(rows: list[dict], batch: int) -> Optional[float]:
    for r in rows:
        if r.get("batch") == batch and isinstance(r.get("latency_ms"), dict):
            return float(r["latency_ms"]["p50"])
    return None


def _maybe(path: Path) -> Optional[dict]:
    return read_json(path) if path.is_file() else None


def _same_backend(acc: dict, runner: str) -> bool:
    backend = str(acc.get("backend") or "")
    name = str((acc.get("runner") or {}).get("name") or "") if isinstance(acc.get("runner"), dict) else ""
    return runner in (backend, name) or (backend == "pytorch" and runner.startswith("pytorch"))


def _engine_label(label: str, stem: str, runner: str) -> str:
    if stem.startswith("openvino"):
        parts = _OPENVINO_PARTS.get(runner)
        return f"{label}, {parts} float parts" if stem == "openvino-int8" and parts else label
    return label if runner in ("onnxruntime-cpu", "pytorch-cpu", "pytorch") else f"{runner} {label.split(' ', 1)[1]}"


def variant_rows(name: str, run_dir: Path, fp32_top1: Optional[float], params: int, gmac: dict) -> list[dict]:
    """One row per precision x runner benched (ONNX Runtime, PyTorch, and OpenVINO where the run
    benched it); top-1 where that artifact was evaluated on that runner."""
    rows = []
    res = run_dir / "results"
    for label, stem in ENGINES:
        acc = _maybe(res / f"accuracy-{stem}.json")
        bench = _maybe(res / f"bench-{stem}.json")
        parity = _maybe(res / f"parity-{stem}.json")
        if acc is None and bench is None:
            continue
        by_runner: dict[str, list[dict]] = {}
        for r in (bench or {}).get("rows", []):
            by_runner.setdefault(str(r.get("runner")), []).append(r)
        if not by_runner and acc is not None:
            by_runner[str(acc.get("backend"))] = []
        for runner, brows in by_runner.items():
            a = acc if acc is not None and _same_backend(acc, runner) else None
            top1 = a.get("top1") if a else None
            engine = _engine_label(label, stem, runner)
            rows.append({
                "variant": name, "engine": engine, "key": stem, "runner": runner, "parameters": params,
                "gmac": gmac["gmac"], "attention_gmac": gmac["attention_gmac"], "attention_share": gmac["attention_share"],
                "top1": top1,
                "drop_points": (None if top1 is None or fp32_top1 is None else round(100 * (fp32_top1 - top1), 4)),
                "top1_agreement": (a.get("reference") or {}).get("top1_agreement") if a else None,
                "p50_b1_ms": _p50(brows, 1), "p50_b8_ms": _p50(brows, 8),
                "parity": None if parity is None or runner.startswith("pytorch") else bool(parity.get("passed")),
                "parity_failed": [] if parity is None else
                [f"{c['inputs']} b{c['batch']}: {'; '.join(c.get('reasons') or [])}" for c in parity.get("cases", [])
                 if not c.get("passed") and c.get("gated") is not False],    # information-only cases never fail a row
            })
    return rows


def openvino_note(rows: list[dict]) -> Optional[str]:
    """Why there are no OpenVINO rows (None where there are)."""
    if any(r["key"].startswith("openvino") for r in rows):
        return None
    why = unavailable_reason()
    return f"OpenVINO rows skipped: {why or 'the runs benched no OpenVINO variant (run.variants)'}"


def retry_notes(models: list[dict]) -> list[str]:
    """One line per variant whose first training seed stayed at chance level (``pipeline.train_variant``)."""
    out = []
    for m in models:
        seeds = (m.get("train") or {}).get("seeds_tried") or []
        if len(seeds) > 1:
            first, last = seeds[0], seeds[-1]
            out.append(f"{m['variant']}: training with seed {first['seed']} stayed at chance level "
                       f"({100 * first['val_top1']:.1f} % val top-1), so it was retrained once with seed {last['seed']} "
                       f"({100 * last['val_top1']:.1f} %); its rows are of that model. The built-in recipe has no batch "
                       "normalisation and five epochs, so some seeds stay on the initial plateau.")
    return out


def collect(root: Path, variants: list[str], meta: dict[str, dict]) -> dict:
    """study.json content. ``meta[name]``: {"train": ..., "checkpoint": path, "run_dir": path, "source": str}."""
    models, rows, maps = [], [], []
    for name in variants:
        m = meta[name]
        vdir = root / name
        gmac = read_json(vdir / "gmac.json")
        full = _maybe(vdir / "gmac-224.json")
        run_dir = Path(m["run_dir"])
        ref = _maybe(run_dir / "results" / "accuracy-pytorch.json") or {}
        params = parameter_count(Path(m["checkpoint"]))
        models.append({"variant": name, "attention": list(ATTENTION[name]), "description": DESCRIPTION[name],
                       "parameters": params, "gmac": gmac, "gmac_full_size": full, "top1": ref.get("top1"),
                       "chance": (1.0 / ref["classes"]) if isinstance(ref.get("classes"), int) and ref["classes"] else None,
                       "train": m.get("train"), "checkpoint_source": m.get("source"), "run_dir": str(run_dir)})
        rows += variant_rows(name, run_dir, ref.get("top1"), params, gmac)
        ex = _maybe(run_dir / "results" / "explain" / "explain.json")
        if ex:
            maps.append({"variant": name, "explain": str(run_dir / "results" / "explain" / "explain.json"),
                         "agreement": {v: {k: a.get(k) for k in ("min_cosine", "mean_cosine", "js_mean", "js_max")}
                                       for v, a in ex.get("agreement", {}).items()}})
    doc = {"format": STUDY_FORMAT, "variants": variants, "models": models, "rows": rows, "attention_maps": maps}
    doc["claims"] = check_claims(models, rows) + map_claims(maps)
    doc["difficulty"] = difficulty(models)
    doc["notes"] = [n for n in (openvino_note(rows),) if n] + retry_notes(models)
    first = models[0].get("train") or {} if models else {}
    doc["intro"] = ("One model per attention variant, each trained with attnvgg train's recipe ([train]: the same "
                    "epochs, seed, schedule, width and data, builtin:train) and its attention in blocks 3-5 changed; "
                    "each then goes through attnvgg run's stages (export, simplify, fp16, INT8 in both flavours, "
                    f"parity, accuracy on {first.get('val_images') or 'the'} built-in validation images, CPU bench).")
    doc["method"] = ("MACs per image are counted from each exported ONNX graph (Conv, Gemm, MatMul; elementwise, "
                     "pooling and Softmax not counted); attention MACs are those of the ops between an attention "
                     "block's input and the node that merges its result back (found by structure). The full-size "
                     "counts come from an export of the width-1.0 model at 224 px with 1000 classes. Latency: ONNX "
                     "Runtime / OpenVINO / PyTorch on the CPU, p50 of at least 0.5 s of runs; compare ratios within one "
                     "study, not absolute times across machines. Drop: PyTorch fp32 top-1 minus the row's top-1, in "
                     "points. One training seed per variant (a variant whose training stayed at chance level is "
                     "retrained once with the next seed, and its row says so).")
    return doc


def map_claims(maps: list[dict]) -> list[dict]:
    """Does each deployed variant look where PyTorch fp32 looks (attention-map agreement)?"""
    out = []
    for m in maps:
        parts = []
        for v, a in m["agreement"].items():
            js = f", mean JS {a['js_mean']:.4f}" if a.get("js_mean") is not None else ""
            parts.append(f"{v} cosine {a['min_cosine']:.4f}{js}")
        out.append({"claim": f"{m['variant']}: deployed variants look where PyTorch fp32 looks",
                    "measured": m["agreement"], "verdict": "compared",
                    "text": "worst-image attention-map agreement with PyTorch fp32: " + "; ".join(parts)})
    return out


def difficulty(models: list[dict]) -> str:
    """Whether the data set lets a difference between variants show, from the measured top-1s."""
    untrained = [m for m in models if did_not_train(m)]
    tops = [(m["variant"], m["top1"]) for m in models if m.get("top1") is not None and not did_not_train(m)]
    note = "".join(f"; {m['variant']} left out: {_untrained_text(m)}" for m in untrained)
    if not tops:
        return "no trained variant" + note
    return _difficulty(models, tops) + note


def _difficulty(models: list[dict], tops: list[tuple[str, float]]) -> str:
    n = (models[0].get("train") or {}).get("val_images") or 500
    hi, lo = max(t for _, t in tops), min(t for _, t in tops)
    se = binomial_se_points((hi + lo) / 2, int(n))
    spread = 100 * (hi - lo)
    listing = ", ".join(f"{v} {100 * t:.1f} %" for v, t in tops)
    if hi >= 0.98:
        return f"too easy: the best variant reaches {100 * hi:.1f} % ({listing}), so gains cannot show"
    if hi <= 0.2:
        return f"too hard: the best variant reaches only {100 * hi:.1f} % ({listing})"
    if spread < 2 * se:
        return (f"top-1 {listing}: the spread ({spread:.1f} points) is within twice the standard error of a "
                f"difference ({se:.1f} points), so no difference shows")
    return (f"not saturated and not too hard: top-1 {listing}; the spread ({spread:.1f} points) exceeds twice the "
            f"standard error of a difference ({se:.1f} points), so differences show")


def did_not_train(m: dict) -> bool:
    """Top-1 within 2 points of chance: the recipe did not train this variant."""
    return m.get("top1") is not None and m.get("chance") is not None and m["top1"] <= m["chance"] + 0.02


def _untrained_text(m: dict) -> str:
    return (f"did not train with this recipe: top-1 {100 * m['top1']:.1f} % is chance level "
            f"({100 * m['chance']:.1f} %), so it cannot be compared")


def _by(models: list[dict], name: str) -> Optional[dict]:
    return next((m for m in models if m["variant"] == name), None)


def _pts(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return None if a is None or b is None else round(100 * (a - b), 2)


def _cost(a: dict, b: dict) -> float:
    return round(100 * (a["gmac"] / b["gmac"] - 1), 4) if b["gmac"] else math.nan


def binomial_se_points(p: float, n: int) -> float:
    """Standard error, in points, of a difference of two top-1 accuracies near ``p`` on ``n`` images each."""
    return round(100 * math.sqrt(2 * p * (1 - p) / max(1, n)), 2)


def cost_verdict(extra_percent: float, share: float) -> str:
    """The claim read both ways: MACs added over the plain model, or attention's share of the total."""
    more = CLAIM_COST[0] <= extra_percent <= CLAIM_COST[1]
    part = CLAIM_COST[0] <= 100 * share <= CLAIM_COST[1]
    if more and part:
        return "holds"
    if more:
        return "holds as the increase over the plain model (not as attention's share of the total)"
    if part:
        return "holds as attention's share of the total MACs, not as the increase over the plain model"
    return "does not hold"


def check_claims(models: list[dict], rows: list[dict]) -> list[dict]:
    """Each claim with the measured numbers and a verdict: "holds", "does not hold" or "not measured"."""
    out: list[dict] = []
    plain, glob = _by(models, "plain"), _by(models, "global")
    if plain is None or glob is None:
        return [{"claim": "global attention vs the plain model", "verdict": "not measured",
                 "text": "the study needs both the plain and the global variant"}]
    n = (plain.get("train") or {}).get("val_images") or 500
    gain = _pts(glob["top1"], plain["top1"])
    se = binomial_se_points(((glob["top1"] or 0) + (plain["top1"] or 0)) / 2, int(n))
    holds = gain is not None and CLAIM_GAIN[0] <= gain <= CLAIM_GAIN[1]
    out.append({
        "claim": "global attention on blocks 3-5 gains 1-3 points of top-1 over the plain model",
        "measured": {"plain_top1": plain["top1"], "global_top1": glob["top1"], "gain_points": gain,
                     "se_points": se, "images": n},
        "verdict": "holds" if holds else "does not hold",
        "text": (f"PyTorch fp32 top-1 {100 * glob['top1']:.1f} % (global) vs {100 * plain['top1']:.1f} % (plain): "
                 f"{gain:+.1f} points (one seed, {n} validation images; standard error of the difference about "
                 f"{se:.1f} points)") if gain is not None else "no top-1 measured",
    })
    cost = _cost(glob["gmac"], plain["gmac"])
    out.append({
        "claim": "global attention costs 15-20 % more FLOPs (study input size)",
        "measured": {"plain_gmac": plain["gmac"]["gmac"], "global_gmac": glob["gmac"]["gmac"], "extra_percent": cost,
                     "attention_share": glob["gmac"]["attention_share"]},
        "verdict": cost_verdict(cost, glob["gmac"]["attention_share"]),
        "text": (f"{glob['gmac']['gmac'] * 1e3:.2f} vs {plain['gmac']['gmac'] * 1e3:.2f} MMAC per image: {cost:+.1f} % "
                 f"(attention is {100 * glob['gmac']['attention_share']:.1f} % of the global model's MACs)"),
    })
    if glob.get("gmac_full_size") and plain.get("gmac_full_size"):
        gf, pf = glob["gmac_full_size"], plain["gmac_full_size"]
        cost_f = _cost(gf, pf)
        out.append({
            "claim": f"global attention costs 15-20 % more FLOPs (full-size VGG16 at {gf.get('input_size', 224)} px)",
            "measured": {"plain_gmac": pf["gmac"], "global_gmac": gf["gmac"], "extra_percent": cost_f,
                         "attention_share": gf["attention_share"]},
            "verdict": cost_verdict(cost_f, gf["attention_share"]),
            "text": (f"{gf['gmac']:.2f} vs {pf['gmac']:.2f} GMAC per image: {cost_f:+.1f} % (attention "
                     f"{gf['attention_gmac']:.2f} GMAC, {100 * gf['attention_share']:.1f} % of the global model)"),
        })
    for alt in ("se", "cbam", "global-b5"):
        a = _by(models, alt)
        if a is None:
            continue
        g = _pts(a["top1"], plain["top1"])
        vs_glob = _pts(a["top1"], glob["top1"])
        c = _cost(a["gmac"], plain["gmac"])
        fs = ""
        if a.get("gmac_full_size") and plain.get("gmac_full_size"):
            fs = f"; at full size {_cost(a['gmac_full_size'], plain['gmac_full_size']):+.3f} % MACs"
        text = (f"top-1 {100 * a['top1']:.1f} % ({g:+.1f} points vs plain, {vs_glob:+.1f} vs global) for "
                f"{c:+.3f} % MACs over plain{fs}") if g is not None else "no top-1 measured"
        out.append({
            "claim": f"{alt}: a cheaper alternative to global attention",
            "measured": {"top1": a["top1"], "vs_plain_points": g, "vs_global_points": vs_glob, "extra_percent": c},
            "verdict": "not measured" if did_not_train(a) else "compared",
            "text": f"{_untrained_text(a)}; it costs {c:+.3f} % MACs over plain{fs}" if did_not_train(a) else text,
        })
    checked = [r for r in rows if r.get("parity") is not None]
    if checked:
        failed = [r for r in checked if r["parity"] is False]
        out.append({
            "claim": "every deployed variant passes parity against its PyTorch model",
            "measured": {f"{r['variant']} {r['key']}": r.get("parity_failed") for r in failed},
            "verdict": "holds" if not failed else "does not hold",
            "text": (f"all {len(checked)} ONNX variants pass" if not failed else
                     f"{len(failed)} of {len(checked)} fail: " + "; ".join(
                         f"{r['variant']} {r['key']} ({', '.join(r.get('parity_failed') or [])})" for r in failed)),
        })
    drops = {r["variant"]: r["drop_points"] for r in rows if r["key"] == "int8-tensorrt" and r["drop_points"] is not None}
    if drops:
        out.append({"claim": "INT8 (tensorrt flavour) top-1 drop per variant", "measured": drops, "verdict": "compared",
                    "text": ", ".join(f"{k} {v:+.1f}" for k, v in drops.items()) + " points"})
    return out
