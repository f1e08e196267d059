"""Accuracy-aware mixed precision on the built-in trained checkpoint, against the default policy.

Exports the built-in model (``attnvgg.data.builtin_model_config()``, dynamic batch up to 32),
runs ``calibrate_mixed`` with a top-1 budget on ``builtin:val`` (calibration on ``builtin:calib``,
fresh cache, so the one calibration pass is visible; if the budget is out of reach with INT8
convolutions, the failure is printed and the search reruns, from the cache, at the same budget
with ``allow_float_conv``: convolutions become candidates too), then calibrates the default model (preset
``attention``: every attention path in float) from the same images, measures its drop on the same
validation images, and compares how many layers each keeps in float.

    python bench/mixed_precision.py [--max-drop 0.3] [--val-limit N] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _builtin(work: Path):
    from attnvgg.config import ExportSpec
    from attnvgg.data import builtin_model_config, open_dataset
    from attnvgg.export.onnx import export_onnx

    spec, pre = builtin_model_config()
    t0 = time.perf_counter()
    path = export_onnx(spec, ExportSpec(batch_max=32), work / "builtin.onnx", preprocess=pre).path
    what = (f"built-in checkpoint ({spec.arch}, attention {spec.attention}, width {spec.width}, "
            f"{spec.input_size} px, {spec.num_classes} classes; exported in {time.perf_counter() - t0:.1f} s)")
    return path, open_dataset("builtin:calib", pre), open_dataset("builtin:val", pre), what


def _float_layers(path: Path) -> tuple[int, int]:
    """(compute nodes that do not run INT8, compute nodes) in a written Q/DQ graph."""
    import onnx

    from attnvgg.calibration.graph import QDQ_OPS, SHAPE_OPS, GraphIndex
    from attnvgg.calibration.policy import quantized_nodes

    m = onnx.load(str(path))
    idx = GraphIndex.build(m, infer_types=True)
    q = {n["name"] for n in quantized_nodes(m, idx)}
    compute = [n for n in m.graph.node if n.op_type not in QDQ_OPS | SHAPE_OPS | {"Constant"}]
    return sum(n.name not in q for n in compute), len(compute)


def _drop(model: Path, reference: Path, val, limit: int | None) -> float:
    from attnvgg.config import EvaluateSpec
    from attnvgg.runners.onnxruntime import OnnxRuntimeRunner
    from attnvgg.runners.accuracy import evaluate

    spec = EvaluateSpec(batch_size=16, limit=limit)
    with OnnxRuntimeRunner(reference) as r:
        ref = evaluate(r, val, spec, progress=False).top1
    with OnnxRuntimeRunner(model) as r:
        got = evaluate(r, val, spec, progress=False).top1
    return 100 * (ref - got)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-drop", type=float, default=0.3)
    ap.add_argument("--val-limit", type=int, default=None)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()

    import attnvgg.calibration.int8 as int8
    from attnvgg.calibration.groups import layer_groups
    from attnvgg.calibration.mixed import calibrate_mixed
    from attnvgg.config import CalibrateSpec, MixedSpec
    from attnvgg.errors import CheckFailed

    tmp = tempfile.TemporaryDirectory(prefix="bench-mixed-") if args.workdir is None else None
    work = Path(args.workdir or tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    src, calib, val, what = _builtin(work)
    print(f"model: {what}")
    print(f"calibration: {calib.describe().get('kind', calib.describe())}, {len(calib)} images; "
          f"validation: {len(val) if args.val_limit is None else min(args.val_limit, len(val))} images")

    cache = work / "cache"
    spec = CalibrateSpec(cache_dir=str(cache))
    per_image = 100 / (len(val) if args.val_limit is None else min(args.val_limit, len(val)))

    def run(budget: float, allow_float_conv: bool = False):
        t0 = time.perf_counter()
        flags = f"--max-drop {budget:g}{' --allow-float-conv' if allow_float_conv else ''}"
        try:
            r = calibrate_mixed(src, calib, val, work / "mixed.int8.onnx", spec,
                                MixedSpec(max_drop=budget, val_limit=args.val_limit, allow_float_conv=allow_float_conv),
                                log=lambda m: None, progress=False)
        except CheckFailed as exc:
            report = json.loads((work / "mixed.int8.onnx.mixed.json").read_text())
            print(f"search ({flags}): {time.perf_counter() - t0:.1f} s, {report['evaluations']} "
                  f"evaluations, {report['calibration_passes']} calibration pass(es) -> CheckFailed: {exc}")
            return None, report
        print(f"search ({flags}): {time.perf_counter() - t0:.1f} s, {r.evaluations} evaluations, "
              f"{r.calibration_passes} calibration pass(es){' (cache hit)' if r.cache_hit else ''}, "
              f"phases {r.calibration.timings}")
        return r, None

    r, failed = run(args.max_drop)
    if r is None:
        print(f"the budget is below what INT8 convolutions allow on these images (one image = {per_image:.2f} "
              f"points); rerunning at the same budget with convolutions as candidates (allow_float_conv)")
        r, failed = run(args.max_drop, allow_float_conv=True)
        if r is None:
            print("not met even with every group in float")
            if tmp is not None:
                tmp.cleanup()
            return
    s = r.search
    limit = "every group float" if any(g.startswith("conv:") for g in r.candidates) else "all but convs float"
    print(f"fp32 top-1 {r.fp32_top1:.2%} on {r.val_images} images; all INT8 drop {s.all_int8.drop:.2f} points; "
          f"last resort ({limit}) {'not needed' if s.last_resort is None else f'{s.last_resort.drop:.2f}'}")
    print("sensitivity ranking (one group in float, rest INT8; recovered = all-INT8 minus this):")
    for k, x in enumerate(s.ranking, 1):
        print(f"  {k:2d}. {x.group:32s} drop {x.drop:5.2f}  recovered {x.recovered_drop:5.2f} points, "
              f"logit error {x.error:.2e} (recovered {x.recovered_error:+.2e})")
    if not s.ranking:
        print("  (not needed: the all-INT8 model met the budget)")
    print(f"chosen float groups: {r.float_groups or 'none'} -> top-1 drop {s.final.drop:.2f} points "
          f"(budget {s.max_drop:g})")

    # the default: every attention path in float (preset "attention"), same calibration images
    default = int8.calibrate(src, calib, work / "attention.int8.onnx", CalibrateSpec(cache_dir=str(cache)),
                             log=lambda m: None, progress=False)
    d_drop = _drop(default.output, src, val, args.val_limit)
    import onnx

    from attnvgg.calibration.graph import SHAPE_OPS

    groups = layer_groups(onnx.load(str(src)))
    n_att = sum(g.kind == "attention" for g in groups)

    def line(name: str, float_groups: list[str], excluded: list[dict], path: Path, drop: float) -> None:
        compute = sum(p["op_type"] not in SHAPE_OPS for p in excluded)
        att = sum(g.startswith("attention:") for g in float_groups)
        nf, nt = _float_layers(path)
        print(f"{name:8s}: {len(float_groups)} float groups {float_groups}, attention blocks in float {att}/{n_att}, "
              f"{len(excluded)} nodes excluded ({compute} not shape-only), {nf}/{nt} compute nodes not INT8 in "
              f"the graph, top-1 drop {drop:.2f}")

    d_names = {p["name"] for p in default.excluded}
    d_groups = [g.id for g in groups if d_names & set(g.nodes)]
    line("mixed", r.float_groups, r.calibration.excluded, r.output, s.final.drop)
    line("default", d_groups, default.excluded, default.output, d_drop)
    fewer = len(r.float_groups) < len(d_groups)
    print(f"fewer float layer groups than the default: {'yes' if fewer else 'no'} "
          f"({len(r.float_groups)} vs {len(d_groups)})")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
