"""Merge bench, accuracy, parity and sidecar records into one row per artifact x runner.

Why matching is by file: each stage names the artifact as its caller spelled the path
(relative, absolute, from another folder). Two spellings are the same artifact when they
resolve to the same absolute path or one is a path suffix of the other (``run/model.onnx`` and
``/tmp/run/model.onnx``). A value that is not in any result file stays missing (None, shown
as "—"); a value measured with another runner of the same file (accuracy of an ONNX file
evaluated on the CPU, shown on its CUDA row) is used and flagged (``*_runner`` keys, "†").
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from attnvgg.report.facts import precision_summary, spread
from attnvgg.report.load import PYTORCH, Results, load_sidecar_beside, number

PRECISION_ORDER = {"fp32": 0, "fp16": 1, "bf16": 2, "int8": 3}


# ----------------------------------------------------------------------------- artifact identity

class ArtifactGroups:
    """Union of path spellings that name the same artifact; a short display key for each group."""

    def __init__(self, names: list[str]):
        idents = sorted({self._ident(n) for n in names if n})
        parent = {i: i for i in idents}

        def find(i: str) -> str:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        for a in idents:
            for b in idents:
                if a < b and self._same(a, b):
                    parent[find(a)] = find(b)
        groups: dict[str, list[str]] = {}
        for i in idents:
            groups.setdefault(find(i), []).append(i)
        by_name: dict[str, int] = {}
        for members in groups.values():
            base = PYTORCH if members[0] == PYTORCH else os.path.basename(members[0])
            by_name[base] = by_name.get(base, 0) + 1
        self._key: dict[str, str] = {}
        self.paths: dict[str, list[str]] = {}
        for members in groups.values():
            base = PYTORCH if members[0] == PYTORCH else os.path.basename(members[0])
            key = base if by_name[base] == 1 else min(members, key=len)
            self.paths[key] = members
            for m in members:
                self._key[m] = key

    @staticmethod
    def _ident(name: str) -> str:
        return PYTORCH if name == PYTORCH else os.path.normpath(name)

    @staticmethod
    def _same(a: str, b: str) -> bool:
        if PYTORCH in (a, b):
            return a == b
        if os.path.abspath(a) == os.path.abspath(b):
            return True
        pa, pb = Path(a).parts, Path(b).parts
        short, long_ = (pa, pb) if len(pa) <= len(pb) else (pb, pa)
        return long_[len(long_) - len(short):] == short

    def key(self, name: Optional[str]) -> Optional[str]:
        return self._key.get(self._ident(name)) if name else None


# ----------------------------------------------------------------------------- sidecar facts

def _sidecar_chain(group_paths: list[str], sidecars: dict[str, dict], groups: ArtifactGroups) -> list[dict]:
    """The artifact's sidecar and its sources' (through "source"), nearest first; at most 4."""
    by_key = {groups.key(k): v for k, v in sidecars.items()}
    chain: list[dict] = []
    key = groups.key(group_paths[0])
    side = by_key.get(key)
    if side is None:
        for p in group_paths:
            side = load_sidecar_beside(p)
            if side is not None:
                break
    while side is not None and len(chain) < 4:
        chain.append(side)
        src = side.get("source")
        if not isinstance(src, str) or not src:
            break
        side = by_key.get(groups.key(src)) if groups.key(src) else None
        if side is None:
            side = load_sidecar_beside(src)
    return chain


def _prep(chain: list[dict]) -> tuple[Optional[float], Optional[str]]:
    """(seconds, kind) of the step that made the artifact: build, calibrate, convert or export."""
    if not chain:
        return None, None
    s = chain[0]
    if number(s.get("build_seconds")) is not None:
        return number(s["build_seconds"]), "build"
    for k in ("calibration_s", "calibration_seconds"):
        if number(s.get(k)) is not None:
            cached = isinstance(s.get("cache"), dict) and s["cache"].get("hit")
            return number(s[k]), "calibrate, cached ranges" if cached else "calibrate"
    if number(s.get("seconds")) is not None:
        kind = {"fp16": "convert", "int8": "calibrate"}.get(str(s.get("precision")), "export")
        return number(s["seconds"]), kind
    return None, None


def _size_from(chain: list[dict], paths: list[str]) -> Optional[int]:
    if chain:
        for k in ("engine_bytes", "size_bytes"):
            if isinstance(chain[0].get(k), int):
                return chain[0][k]
    for p in paths:
        if p != PYTORCH and os.path.isfile(p):
            size = os.path.getsize(p)
            data = p + ".data"
            if p.endswith(".onnx") and os.path.isfile(data):
                size += os.path.getsize(data)
            return size
    return None


# ----------------------------------------------------------------------------- rows

def _blank(group: str, runner: str) -> dict:
    return {"label": None, "artifact": group, "runner": runner, "backend": None, "device": None,
            "precision": None, "flavour": None, "latency": {}, "top1": None, "top5": None,
            "drop_points": None, "top1_agreement": None, "mean_cosine": None, "accuracy_runner": None,
            "parity_max_abs": None, "parity_runner": None, "parity_passed": None, "parity_tolerance": None,
            "parity_info_failed": 0,
            "parity_min_cosine": None, "parity_top1_agreement": None, "polygraphy": None, "trtexec_script": None,
            "precision_summary": None, "size_bytes": None,
            "prep_seconds": None, "prep_kind": None, "threads": None, "on_pareto_front": False,
            "on_cpu_pareto_front": False}


def baseline_top1(results: Results) -> tuple[Optional[float], Optional[str]]:
    """PyTorch fp32 top-1: its own evaluate result, else a pytorch reference inside another one."""
    for a in results.accuracy:
        if a["artifact"] == PYTORCH and a["top1"] is not None:
            return a["top1"], a["source"]
    for a in results.accuracy:
        if a["reference_kind"] == PYTORCH and a["reference_top1"] is not None:
            return a["reference_top1"], a["source"]
    return None, None


def build_rows(results: Results) -> tuple[list[dict], list[int], dict]:
    """(rows, batch sizes seen, facts about the baseline)."""
    names = [r["artifact"] for r in results.bench] + [a["artifact"] for a in results.accuracy if a["artifact"]]
    names += [p["artifact"] for p in results.parity] + list(results.sidecars)
    groups = ArtifactGroups([str(n) for n in names if n])
    rows: dict[tuple[str, str], dict] = {}

    def row(artifact: str, runner: Optional[str]) -> dict:
        g = groups.key(str(artifact)) or str(artifact)
        r = runner or "?"
        if (g, r) not in rows:
            rows[(g, r)] = _blank(g, r)
        return rows[(g, r)]

    batches: set[int] = set()
    for b in results.bench:
        r = row(str(b["artifact"]), b.get("runner") or b.get("backend"))
        batch = int(b["batch"])
        batches.add(batch)
        lat, comp = b["latency_ms"], b.get("compute_ms") or {}
        p50 = number(lat.get("p50"))
        entry = {"p50_ms": p50, "p90_ms": number(lat.get("p90")),
                 "p99_ms": number(lat.get("p99")), "mean_ms": number(lat.get("mean")),
                 "throughput_ips": batch / (p50 / 1000.0) if p50 else None,       # from p50, not the mean
                 "throughput_mean_ips": number(b.get("throughput_ips")),
                 "compute_p50_ms": number(comp.get("p50")), "compute_p99_ms": number(comp.get("p99")),
                 "warmup": b.get("warmup"), "iterations": b.get("iterations"), "source": b["_source"]}
        entry["spread"] = spread(entry)
        r["latency"][batch] = entry
        for k in ("backend", "device", "precision", "flavour", "size_bytes", "threads"):
            if b.get(k) is not None:
                r[k] = b[k]
    for a in results.accuracy:
        if a["artifact"]:
            row(a["artifact"], a["runner"])
    for p in results.parity:
        for runner in p["max_abs"]:
            row(p["artifact"], runner)
    base, _ = baseline_top1(results)
    if base is not None and not any(g == PYTORCH for g, _ in rows):
        row(PYTORCH, PYTORCH)

    for (g, runner), r in rows.items():
        paths = groups.paths.get(g, [g])
        chain = [] if g == PYTORCH else _sidecar_chain(paths, results.sidecars, groups)
        if r["precision"] is None:
            r["precision"] = "fp32" if g == PYTORCH else next(
                (str(s["precision"]) for s in chain[:1] if s.get("precision")),
                next((p["precision"] for p in results.parity if groups.key(p["artifact"]) == g and p["precision"]), None))
        if r["precision"] == "int8" and r["flavour"] is None:
            r["flavour"] = next((str(s["flavour"]) for s in chain if s.get("flavour")), None)
        if r["backend"] is None:
            r["backend"] = runner.rsplit("-", 1)[0] if runner.startswith("pytorch") else runner
        _fill_accuracy(r, g, runner, results, groups, base)
        _fill_parity(r, g, runner, results, groups)
        if r["size_bytes"] is None and g != PYTORCH:
            r["size_bytes"] = _size_from(chain, paths)
        r["prep_seconds"], r["prep_kind"] = (None, None) if g == PYTORCH else _prep(chain)
        r["artifact_paths"] = sorted(set(paths))
        if g != PYTORCH:
            r["precision_summary"] = precision_summary(r["precision"], chain)
            script = chain[0].get("trtexec_script") if chain else None
            if isinstance(script, str) and script:
                r["trtexec_script"] = str(Path(paths[0]).with_name(Path(script).name))
        r["label"] = f"{runner} {r['precision'] or '?'}" + (f" ({r['flavour']})" if r["flavour"] else "")
    ordered = sorted(rows.values(), key=lambda r: (r["artifact"] != PYTORCH, PRECISION_ORDER.get(r["precision"], 9),
                                                   r["flavour"] or "", r["runner"], r["artifact"]))
    return ordered, sorted(batches), {"top1": base}


def _fill_accuracy(r: dict, g: str, runner: str, results: Results, groups: ArtifactGroups,
                   base: Optional[float]) -> None:
    mine = [a for a in results.accuracy if groups.key(a["artifact"]) == g]
    same = [a for a in mine if a["runner"] == runner]
    pick = (same or mine or [None])[-1]
    if pick is None and g == PYTORCH and base is not None:
        r.update(top1=base, accuracy_runner="reference")
    if pick is not None:
        r.update(top1=pick["top1"], top5=pick["top5"], top1_agreement=pick["top1_agreement"],
                 mean_cosine=pick["mean_cosine"], accuracy_runner=pick["runner"])
        if g == PYTORCH and r["top1"] is None:
            r["top1"] = base
    if r["top1"] is not None and base is not None:
        r["drop_points"] = (base - r["top1"]) * 100.0


def _fill_parity(r: dict, g: str, runner: str, results: Results, groups: ArtifactGroups) -> None:
    """The row's parity: its own runner's cases if validated with it, else the worst runner's
    (flagged). PASS/FAIL is that runner's cases all passing, under the tolerance of the file."""
    mine = [p for p in results.parity if groups.key(p["artifact"]) == g]

    def take(p: dict, who: str) -> None:
        w = p["per_runner"].get(who) or {}
        r.update(parity_max_abs=p["max_abs"].get(who), parity_runner=who,
                 parity_passed=w.get("passed") if w else p["passed"], parity_tolerance=p["tolerance"],
                 parity_min_cosine=w.get("min_cosine"), parity_top1_agreement=w.get("top1_agreement"),
                 parity_info_failed=w.get("info_failed", 0), polygraphy=p["polygraphy"])

    for p in reversed(mine):
        if runner in p["max_abs"]:
            return take(p, runner)
    for p in reversed(mine):
        if p["max_abs"]:
            other, _ = max(p["max_abs"].items(), key=lambda kv: kv[1])
            return take(p, other)


def choose_plot_batch(rows: list[dict], batches: list[int], wanted: Optional[int] = None,
                      metric: str = "top1") -> Optional[int]:
    """Batch 1 if every row with a ``metric`` (top-1, or top-1 agreement) has it, else the
    largest batch they all have, else the batch most of them have (largest on ties)."""
    if wanted is not None:
        return wanted
    rated = [r for r in rows if r[metric] is not None and r["latency"]]
    if not rated:
        return batches[0] if batches else None
    sets = [set(r["latency"]) for r in rated]
    common = set.intersection(*sets)
    if 1 in common:
        return 1
    if common:
        return max(common)
    counts: dict[int, int] = {}
    for s in sets:
        for b in s:
            counts[b] = counts.get(b, 0) + 1
    return max(counts, key=lambda b: (counts[b], b))


def plot_points(rows: list[dict], batch: Optional[int], metric: str = "top1") -> tuple[list[int], list[str]]:
    """Indices of rows plotted at ``batch`` and the reasons others are not."""
    idx, left_out = [], []
    for i, r in enumerate(rows):
        lat = (r["latency"].get(batch) or {}).get("p50_ms") if batch is not None else None
        if lat is not None and r[metric] is not None:
            idx.append(i)
        else:
            why = "no latency at batch %s" % batch if lat is None else (
                "no top-1" if metric == "top1" else "no top-1 agreement")
            left_out.append(f"{r['label']} ({Path(r['artifact']).name}): {why}")
    return idx, left_out
