"""Accuracy-aware mixed precision: the fastest Q/DQ model whose top-1 drop meets a budget.

Users give a budget (top-1 points lost against fp32 on a validation subset), not a list of
layers. The search, like NNCF's accuracy control and Intel Neural Compressor's tuning:
1. quantizes everything and stops if the budget is met. Convolutions stay INT8 by default: they
   carry ~80 % of the MACs, so a model that needs a float convolution is not the fast model the
   user asked for; ``MixedSpec.allow_float_conv`` (``--allow-float-conv``) opts them in as
   candidates, ranked and chosen like every other group;
2. evaluates the last resort, every candidate group in float, and stops with ``CheckFailed`` if
   even that misses the budget (no model is written);
3. ranks the candidate groups (``groups.layer_groups``: attention paths, SE/CBAM gates, FC
   layers, other ops, and convolutions when allowed) by sensitivity, measured by keeping one group in float with everything
   else quantized. That is the question each greedy step asks (how much does reverting this
   group recover in the model we would ship), it includes the interaction with the quantized
   layers around the group, and it is how NNCF's accuracy control ranks (revert one group in
   the quantized model). Quantizing one group alone instead would measure each group's error
   in a float model, which misses that errors compound through depth;
4. keeps groups in float, most sensitive first, until the budget is met; a group whose
   measured sensitivity is negative (in float, top-1 gets worse than all INT8) is never kept in
   float (``helps``).

The rank key is the recovered logit error (1 - mean cosine of the logits against fp32), with the
recovered top-1 as tie-break: top-1 on a subset of N images moves in steps of 100/N points and
ties almost everywhere, the cosine does not.

Every candidate is built from one set of tensor ranges (``int8.RangeSession``): the search runs
one calibration pass, or none on a cache hit. ``search`` takes the evaluator as a callback, so
its logic is tested with a fake one.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from attnvgg import sidecar
from attnvgg.console import note
from attnvgg.artifacts import write_json
from attnvgg.config import CalibrateSpec, EvaluateSpec, MixedSpec
from attnvgg.errors import CheckFailed, InputError
from attnvgg.calibration import int8
from attnvgg.calibration.graph import GraphIndex
from attnvgg.calibration.groups import float_closure, layer_groups
from attnvgg.calibration.policy import ExclusionPlan, Protected, plan_exclusions
from attnvgg.runners.onnxruntime import OnnxRuntimeRunner
from attnvgg.runners.accuracy import evaluate

#: Drops are compared with this slack: 100 * (a - b) of two fractions is not exact in binary.
_EPS = 1e-9


@dataclass(frozen=True)
class Measurement:
    drop: float                     # top-1 points lost against fp32
    error: float                    # 1 - mean cosine of the logits against fp32
    top1: float | None = None
    agreement: float | None = None  # top-1 agreement with fp32


@dataclass
class Sensitivity:
    group: str
    drop: float                     # drop with only this group in float (everything else INT8)
    error: float
    recovered_drop: float           # all-INT8 drop minus ``drop``
    recovered_error: float


@dataclass
class SearchResult:
    max_drop: float
    met: bool
    float_groups: list[str]         # chosen, in the order they were added
    final: Measurement              # of the chosen configuration (the last resort when not met)
    all_int8: Measurement
    last_resort: Measurement | None  # every candidate group in float; None when not needed
    ranking: list[Sensitivity] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)
    evaluations: int = 0
    not_helping: list[str] = field(default_factory=list)  # in float alone, top-1 got worse: never kept

    def to_dict(self) -> dict:
        return asdict(self)


Evaluator = Callable[[frozenset], Measurement]

#: What the last resort keeps in float, by ``allow_float_conv``: in the step log, and in ``CheckFailed``.
LAST_RESORT = {False: "every group but the convolutions in float", True: "every group in float"}
_LIMIT = {False: "everything but the convolutions in float", True: "every group in float"}


def select_candidates(groups: Sequence, quantized: set[str], allow_float_conv: bool = False) -> list[str]:
    """Ids of the groups (``groups.LayerGroup``, graph order) the search may keep in float.

    A group is a candidate when one of its nodes runs quantized, or reads a DequantizeLinear output,
    in the all-INT8 model (``quantized``: those node names); conv groups only with ``allow_float_conv``.
    The second case matters for the tensorrt flavour: ModelOpt quantizes only the non-residual
    input of a residual Add, so the attention block's Add is partly INT8 without "running
    quantized", and keeping its group in float removes that Q/DQ.
    """
    return [g.id for g in groups if (allow_float_conv or g.kind != "conv") and any(n in quantized for n in g.nodes)]


def helps(s: Sensitivity) -> bool:
    """A group whose measured sensitivity is negative on the budget's own measure (in float,
    top-1 is worse than all INT8) is never kept in float. A group with no effect alone, or a worse
    logit error alone, stays a candidate: groups interact (an outlier conv and the conv after it
    only help together), so only a measured top-1 loss rules one out."""
    return s.recovered_drop >= -_EPS


def search(candidates: Sequence[str], measure: Evaluator, max_drop: float,
           log: Callable[[str], None] = lambda _m: None,
           last_resort: str = LAST_RESORT[False]) -> SearchResult:
    """Greedy accuracy-aware search over ``candidates`` (group ids, graph order).

    ``measure(float_groups)`` evaluates the model with those groups in float and the rest INT8.
    Each configuration is measured at most once. ``last_resort`` names what all candidates in
    float amount to (``LAST_RESORT``), for the step log.
    """
    if not max_drop >= 0 or math.isinf(max_drop):
        raise InputError(f"the accuracy budget must be a finite number >= 0, got {max_drop}", "e.g. --max-drop 0.5")
    candidates = list(dict.fromkeys(candidates))
    memo: dict[frozenset, Measurement] = {}
    steps: list[dict] = []

    def m(groups: frozenset, why: str) -> Measurement:
        if groups not in memo:
            r = memo[groups] = measure(groups)
            steps.append({"why": why, "float_groups": [g for g in candidates if g in groups],
                          "drop": r.drop, "error": r.error})
            log(f"mixed: {why}: top-1 drop {r.drop:.2f} points (logit error {r.error:.2e})")
        return memo[groups]

    def ok(r: Measurement) -> bool:
        return r.drop <= max_drop + _EPS

    def done(met: bool, chosen: list[str], final: Measurement, last: Measurement | None,
             ranking: list[Sensitivity], not_helping: Sequence[str] = ()) -> SearchResult:
        return SearchResult(max_drop, met, chosen, final, base, last, ranking, steps, len(memo), list(not_helping))

    base = m(frozenset(), "all INT8")
    if ok(base):
        return done(True, [], base, None, [])
    last = m(frozenset(candidates), f"last resort, {last_resort}")
    if not ok(last):
        return done(False, list(candidates), last, last, [])
    ranking = []
    for g in candidates:
        r = m(frozenset([g]), f"sensitivity of {g}")
        ranking.append(Sensitivity(g, r.drop, r.error, base.drop - r.drop, base.error - r.error))
    position = {g: k for k, g in enumerate(candidates)}
    ranking.sort(key=lambda s: (-s.recovered_error, -s.recovered_drop, position[s.group]))
    helping = [s for s in ranking if helps(s)]
    not_helping = [s.group for s in ranking if not helps(s)]
    for g in not_helping:
        log(f"mixed: {g} is never kept in float: in float top-1 gets worse (recovered "
            f"{next(s.recovered_drop for s in ranking if s.group == g):+.2f} points)")
    chosen: list[str] = []
    r = base
    for s in helping:
        chosen.append(s.group)
        r = m(frozenset(chosen), f"{len(chosen)} group(s) in float")
        if ok(r):
            return done(True, chosen, r, last, ranking, not_helping)
    # every group that helps is in float and the budget is still missed (the last resort met it
    # only with groups that, alone, made the model worse): not met, nothing is kept for them
    return done(False, chosen, r, last, ranking, not_helping)


# --------------------------------------------------------------------------- the stage

@dataclass
class MixedResult:
    search: SearchResult
    output: Path | None              # None when the budget was not met
    report: Path
    float_groups: list[str]
    float_nodes: list[str]
    candidates: list[str]
    calibration_passes: int
    cache_hit: bool
    evaluations: int
    val_images: int
    fp32_top1: float
    seconds: float
    calibration: object | None = None   # int8.CalibrationResult of the written model

    def summary_line(self, flavour: str, allow_float_conv: bool) -> str:
        s = self.search
        kept = ", ".join(self.float_groups) or "none"
        convs = ", convolutions allowed" if allow_float_conv else ""
        passes = f"{self.calibration_passes} calibration pass" + ("" if self.calibration_passes == 1 else "es")
        return (f"wrote {self.output} (int8 {flavour}, mixed precision: {len(self.float_groups)} of "
                f"{len(self.candidates)} groups in float{convs} [{kept}]; top-1 drop {s.final.drop:.2f} <= "
                f"{s.max_drop:g} points on {self.val_images} images; {passes}{' (cache hit)' if self.cache_hit else ''}, "
                f"{self.evaluations} evaluations, {self.seconds:.1f} s) -> {self.report}")


def check_mixed_flags(search: dict, keep_float: str | None = None) -> None:
    """--val-data/--val-limit/--allow-float-conv only with --max-drop; --keep-float never with it."""
    if search.get("max_drop") is None:
        given = [f"--{k.replace('_', '-')}" for k in ("val_data", "val_limit") if search.get(k) is not None]
        given += ["--allow-float-conv"] if search.get("allow_float_conv") else []
        if given:
            raise InputError(f"{' and '.join(given)} only appl{'y' if len(given) > 1 else 'ies'} to the accuracy search",
                             "add --max-drop POINTS")
    elif keep_float is not None:
        raise InputError("--keep-float and --max-drop both given: the search decides what stays in float",
                         "drop --keep-float (use --exclude NODE to force a node into float)")


def mixed_report_path(out: Path) -> Path:
    """``model.int8.onnx`` -> ``model.int8.onnx.mixed.json``."""
    return out.with_name(out.name + ".mixed.json")


def _dq_readers(model: object) -> list[dict]:
    """Nodes (not Q/DQ) with at least one input from a DequantizeLinear: partly INT8."""
    graph = model.graph  # type: ignore[attr-defined]
    dq_out = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return [{"name": n.name, "op_type": n.op_type} for n in graph.node
            if n.op_type not in ("QuantizeLinear", "DequantizeLinear") and any(i in dq_out for i in n.input)]


def check_mixed(mixed: MixedSpec) -> float:
    if mixed.max_drop is None:
        raise InputError("no accuracy budget given", "pass --max-drop POINTS, e.g. --max-drop 0.5")
    if not mixed.max_drop >= 0 or math.isinf(mixed.max_drop):
        raise InputError(f"--max-drop must be a finite number of top-1 points >= 0, got {mixed.max_drop}",
                         "e.g. --max-drop 0.5")
    if mixed.val_limit is not None and mixed.val_limit < 1:
        raise InputError(f"--val-limit must be at least 1, got {mixed.val_limit}", "or leave it out to use every image")
    if mixed.val_batch_size < 1:
        raise InputError(f"validation batch size must be at least 1, got {mixed.val_batch_size}", "e.g. 16")
    return float(mixed.max_drop)


def calibrate_mixed(
    model_path: str | Path,
    calib: object,
    val: object,
    out: str | Path,
    spec: CalibrateSpec | None = None,
    mixed: MixedSpec | None = None,
    log: Callable[[str], None] = note,
    progress: bool = True,
) -> MixedResult:
    """Search few float groups (greedy, see ``search``) that meet ``mixed.max_drop``; write that model to ``out``.

    Writes ``out``, its sidecar (with a ``mixed_precision`` entry) and ``out.mixed.json``. When the
    budget cannot be met, writes only ``out.mixed.json`` and raises ``CheckFailed``.
    """
    import onnx

    t0 = time.perf_counter()
    spec = spec or CalibrateSpec()
    mixed = mixed or MixedSpec()
    max_drop = check_mixed(mixed)
    int8._validate(spec)
    src, out = Path(model_path), Path(out)
    int8._check_out(src, out)
    if not getattr(val, "has_labels", False):
        raise InputError("the validation set has no labels; the budget is in top-1 points",
                         "pass labelled data with --val-data (builtin:val or class subfolders)")
    report_path = mixed_report_path(out)
    eval_spec = EvaluateSpec(batch_size=mixed.val_batch_size, limit=mixed.val_limit)
    quiet = lambda _m: None  # noqa: E731 - evaluate's per-run notes would repeat for every candidate

    with int8.RangeSession(src, calib, spec, log, progress) as session:
        if spec.keep_float not in ("none", CalibrateSpec().keep_float):
            session.note(f"--keep-float {spec.keep_float!r} not applied: the accuracy search decides "
                         "what stays in float (attention included)")
        forced = plan_exclusions(session.model, "none", spec.exclude)
        idx = GraphIndex.build(session.model)
        op_of = {n.name: n.op_type for n in idx.nodes()}
        groups = layer_groups(session.model, idx)
        by_id = {g.id: g for g in groups}
        session.collect(set(forced.names))

        with OnnxRuntimeRunner(src, name="fp32") as fp32:
            ref = evaluate(fp32, val, eval_spec, keep_logits=True, progress=progress, log=log)
        session.mark("evaluate")
        ref_top1 = float(ref.top1)

        def plan_for(float_groups: frozenset) -> ExclusionPlan:
            plan = ExclusionPlan("mixed", nodes=list(forced.nodes))
            seen = set(plan.names)
            for g in groups:
                if g.id not in float_groups:
                    continue
                for name in float_closure(idx, g.nodes):
                    if name not in seen:
                        seen.add(name)
                        plan.nodes.append(Protected(name, op_of[name], f"mixed:{g.id}"))
            return plan

        cand_path = session.tmp / "candidate.onnx"
        all_int8_qnodes: list[dict] = []

        def measure(float_groups: frozenset) -> Measurement:
            model, _rewired, qnodes = session.build(plan_for(float_groups), check=False)
            if not float_groups:
                all_int8_qnodes[:] = qnodes + _dq_readers(model)
            onnx.save(model, str(cand_path))
            del model
            with OnnxRuntimeRunner(cand_path, name="candidate") as runner:
                r = evaluate(runner, val, eval_spec, reference_logits=ref.logits, progress=False, log=quiet)
            session.mark("evaluate")
            return Measurement(drop=round(100.0 * (ref_top1 - float(r.top1)), 9),
                               error=max(0.0, 1.0 - r.reference.mean_cosine), top1=r.top1,
                               agreement=r.reference.top1_agreement)

        # Candidates: groups that run quantized somewhere in the all-INT8 model (convolutions only if allowed).
        base = measure(frozenset())
        quantized = {q["name"] for q in all_int8_qnodes}
        allow_conv = bool(mixed.allow_float_conv)
        candidates = select_candidates(groups, quantized, allow_conv)
        fixed = [] if allow_conv else [g.id for g in groups if g.kind == "conv"]
        memo = {frozenset(): base}
        result = search(candidates, lambda fg: memo[fg] if fg in memo else measure(fg), max_drop, log,
                        LAST_RESORT[allow_conv])
        evaluations = result.evaluations

        chosen = frozenset(result.float_groups)
        float_nodes = plan_for(chosen).names if result.met else []
        passes = session.passes
        summary = {
            "max_drop": max_drop, "allow_float_conv": allow_conv, "met": result.met, "metric": "top-1 points lost against fp32",
            "drop": result.final.drop, "top1": result.final.top1, "fp32_top1": ref_top1,
            "all_int8_drop": result.all_int8.drop,
            "last_resort_drop": result.last_resort.drop if result.last_resort else None,
            "float_groups": list(result.float_groups) if result.met else [],
            "never_float": list(result.not_helping),
            "float_nodes": float_nodes, "forced_float_nodes": forced.names,
            "ranking": [{**asdict(s), "kind": by_id[s.group].kind} for s in result.ranking],
            "candidates": candidates, "int8_always": fixed,
            "ranking_method": "keep one group in float, everything else INT8; rank by recovered logit error "
                              "(1 - mean cosine vs fp32), then recovered top-1",
            "val": {"data": val.describe() if hasattr(val, "describe") else {}, "images": ref.images},
            "evaluations": evaluations, "calibration_passes": passes, "cache_hit": session.cache_hit,
            "search_s": round(time.perf_counter() - t0, 3),
        }
        full = {**summary, "output": None, "steps": result.steps, "groups": [g.to_dict() for g in groups]}
        if not result.met:
            write_json(report_path, {**sidecar.result_header("mixed", [src]), **full})
            last = f"{result.last_resort.drop:.2f}" if result.last_resort else f"{result.final.drop:.2f}"
            if result.last_resort is not None and result.last_resort.drop <= max_drop + _EPS:
                raise CheckFailed(
                    f"top-1 budget {max_drop:g} points not met by the groups that help in float: drop "
                    f"{result.final.drop:.2f} points on {ref.images} images with {len(result.float_groups)} group(s) in "
                    f"float; {', '.join(result.not_helping)} made top-1 worse in float and are never kept "
                    f"(details: {report_path})",
                    "raise --max-drop, or calibrate on more (or more representative) validation images: "
                    "on few images top-1 moves in large steps")
            raise CheckFailed(
                f"top-1 budget {max_drop:g} points not met: drop {last} points on {ref.images} images even with "
                f"{_LIMIT[allow_conv]} (all INT8: {result.all_int8.drop:.2f}); no model written (details: {report_path})",
                "raise --max-drop or calibrate on more representative data" if allow_conv else
                "raise --max-drop, calibrate on more representative data, keep a convolution in float with "
                "--exclude, or let the search keep convolutions in float with --allow-float-conv")
        plan = plan_for(chosen)
        model, rewired, qnodes = session.build(plan, check=True)
        summary["search_s"] = round(time.perf_counter() - t0, 3)
        calibration = session.write(model, plan, rewired, qnodes, out, extra_sidecar={"mixed_precision": summary})
        write_json(report_path, {**sidecar.result_header("mixed", [src, out]), **full,
                                 "search_s": summary["search_s"], "output": str(out)})
    return MixedResult(search=result, output=out, report=report_path, float_groups=list(result.float_groups),
                       float_nodes=float_nodes, candidates=candidates, calibration_passes=passes,
                       cache_hit=session.cache_hit, evaluations=evaluations, val_images=ref.images,
                       fp32_top1=ref_top1, seconds=summary["search_s"], calibration=calibration)
