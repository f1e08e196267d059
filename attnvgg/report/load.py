"""Find and read result files; turn each kind into one plain record shape.

Why tolerant adapters: the report reads what other stages wrote (bench, evaluate, validate,
sidecars, the pipeline's notes), and those formats grow. Each adapter names the keys it reads,
accepts the known spellings, and leaves a value missing rather than guessing it.

Kinds are decided by the ``format`` tag each writer puts in (``attnvgg.sidecar`` owns them):

* report  ``attnvgg.report/1`` (our own output: ignored)
* bench   ``attnvgg.bench/1`` (``engines.bench``), parity ``attnvgg.parity/1`` (``validate``),
  accuracy ``attnvgg.accuracy/1`` (``evaluate``), notes ``attnvgg.notes/1`` (the pipeline's
  skipped stages)
* sidecar ``attnvgg.export/1``, ``.simplify``, ``.fp16``, ``.int8``, ``.engine`` beside an artifact

A JSON without one of these tags is listed as ignored. Result files name the hash of every
artifact they measured: a result older than its artifact (the file is here and its hash differs)
is refused, since its figures describe another model.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from attnvgg import sidecar
from attnvgg.errors import InputError, first_line

REPORT_FORMAT = "attnvgg.report/1"
ARTIFACT_SUFFIXES = (".onnx", ".engine", ".plan", ".trt")
PYTORCH = "pytorch"


@dataclass
class Results:
    bench: list[dict] = field(default_factory=list)       # bench rows, each with "_source"
    machines: list[dict] = field(default_factory=list)    # bench "machine" blocks (distinct)
    accuracy: list[dict] = field(default_factory=list)    # accuracy_record() outputs
    parity: list[dict] = field(default_factory=list)      # parity_record() outputs
    sidecars: dict[str, dict] = field(default_factory=dict)  # artifact path -> sidecar
    skipped: list[dict] = field(default_factory=list)     # {"what", "reason", "source"}
    sources: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    bench_files: list[dict] = field(default_factory=list)  # {"spec", "machine", "load_average", "source"}
    runs: list[dict] = field(default_factory=list)        # the pipeline's notes "run" blocks (+ "preset_model")

    @property
    def has_results(self) -> bool:
        return bool(self.bench or self.accuracy or self.parity)


# ----------------------------------------------------------------------------- discovery

def find_json(inputs: Iterable[Path]) -> list[Path]:
    """Every .json under the inputs (folders recursively, hidden and staging folders skipped)."""
    files: list[Path] = []
    for p in inputs:
        p = Path(p)
        if p.is_dir():
            for root, dirs, names in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                files += [Path(root) / n for n in sorted(names) if n.endswith(".json") and not n.startswith(".")]
        elif p.is_file():
            files.append(p)
        else:
            raise InputError(f"results path not found: {p}", "pass the run folder or result JSON files that exist")
    seen: set[Path] = set()
    out = []
    for f in files:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


def read(path: Path) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not valid JSON ({first_line(exc, 120)})",
                         "fix or remove the file, then rerun attnvgg report") from exc
    except OSError as exc:
        raise InputError(f"cannot read {path} ({exc.strerror})", "check the file's permissions") from exc


def sidecar_target(path: Path) -> Optional[str]:
    """``model.onnx.json`` -> ``model.onnx`` (as a path string); None if not a sidecar name."""
    name = path.name[: -len(".json")]
    return str(path.with_name(name)) if name.endswith(ARTIFACT_SUFFIXES) else None


def classify(data: Any, path: Path) -> Optional[str]:
    """The kind of a JSON file from its format tag (see the module doc); None if it is not ours."""
    kind = sidecar.result_kind(data)
    if kind in ("report", "bench", "parity", "accuracy", "notes"):
        return kind
    if kind in sidecar.ARTIFACT_KINDS and sidecar_target(path) is not None:
        return "sidecar"
    return None


def check_fresh(data: dict, path: Path) -> None:
    """Refuse a result file that measured an artifact which has changed since."""
    stale = sidecar.stale_results(data, path)
    if stale:
        raise InputError(f"{path} measured {stale[0]} before it changed (its sha256 differs from the one recorded)",
                         "re-run the stage that wrote the result (or attnvgg run), or remove the stale file")


# ----------------------------------------------------------------------------- adapters

def fraction(v: Any) -> Optional[float]:
    """An accuracy as a fraction. Values above 1 are taken as percentages; non-numbers as missing."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
        return None
    return float(v) / 100.0 if v > 1.0 else float(v)


def number(v: Any) -> Optional[float]:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
        return None
    return float(v)


_NUMBER = (int, float)


def _wrong(source: str, kind: str, key: str, want: str, got: Any) -> InputError:
    shown = repr(got) if len(repr(got)) <= 40 else repr(got)[:37] + "..."
    return InputError(f"{source}: {kind} record field {key!r} must be {want}, got {shown}",
                      "fix or remove the file, then rerun attnvgg report")


def check_record(d: dict, kind: str, source: str) -> None:
    """Refuse a record whose fields have the wrong types, instead of rendering it as a row.

    A report is read by people deciding what to ship: ``{"artifact": 5, "top1": "high"}`` must be
    an error naming the file and field, not a row with a blank accuracy."""
    def opt_num(key: str, where: dict = d, label: str = "") -> None:
        v = where.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, _NUMBER)):
            raise _wrong(source, kind, label + key, "a number or null", v)

    for key in ("artifact", "model"):
        v = d.get(key)
        if v is not None and not isinstance(v, str):
            raise _wrong(source, kind, key, "a path string", v)
    if kind == "accuracy":
        for key in ("top1", "top5", "top1_agreement", "mean_cosine"):
            opt_num(key)
        for key in ("samples", "images"):
            v = d.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise _wrong(source, kind, key, "a non-negative integer", v)
        ref = d.get("reference")
        if ref is not None and not isinstance(ref, dict):
            raise _wrong(source, kind, "reference", "an object or null", ref)
        for key in ("top1", "top1_agreement", "mean_cosine"):
            if isinstance(ref, dict):
                opt_num(key, ref, "reference.")
    elif kind == "parity":
        if not isinstance(d.get("artifact"), str):
            raise _wrong(source, kind, "artifact", "a path string", d.get("artifact"))
        if d.get("passed") is not None and not isinstance(d.get("passed"), bool):
            raise _wrong(source, kind, "passed", "true or false", d.get("passed"))
        for i, c in enumerate(d.get("cases") or []):
            if not isinstance(c, dict):
                raise _wrong(source, kind, f"cases[{i}]", "an object", c)
            if c.get("metrics") is not None and not isinstance(c.get("metrics"), dict):
                raise _wrong(source, kind, f"cases[{i}].metrics", "an object", c.get("metrics"))
            if c.get("passed") is not None and not isinstance(c.get("passed"), bool):
                raise _wrong(source, kind, f"cases[{i}].passed", "true or false", c.get("passed"))
            opt_num("max_abs", c.get("metrics") or {}, f"cases[{i}].metrics.")


def accuracy_record(d: dict, source: str) -> dict:
    """Keys read: artifact (or model), runner ({name, backend} or a name), top1, top5,
    top1_agreement, mean_cosine, samples (or images), reference {kind, name, top1,
    top1_agreement, mean_cosine}. Accuracies are fractions (0..1); values above 1 are percent."""
    ref = d.get("reference") if isinstance(d.get("reference"), dict) else {}
    runner = d.get("runner")
    if isinstance(runner, dict):
        runner = runner.get("name") or runner.get("backend")
    artifact = d.get("artifact") or d.get("model")
    agreement = d.get("top1_agreement", ref.get("top1_agreement"))
    cosine = d.get("mean_cosine", ref.get("mean_cosine"))
    return {
        "artifact": str(artifact) if artifact else None,
        "runner": str(runner) if runner else (PYTORCH if artifact == PYTORCH else None),
        "top1": fraction(d.get("top1")), "top5": fraction(d.get("top5")),
        "top1_agreement": fraction(agreement), "mean_cosine": number(cosine),
        "samples": d.get("samples", d.get("images")),
        "data_source": (d.get("data") or {}).get("source") if isinstance(d.get("data"), dict) else None,
        "reference_kind": ref.get("kind"), "reference_name": ref.get("name"),
        "reference_top1": fraction(ref.get("top1")),
        "source": source,
    }


def parity_record(d: dict, source: str) -> dict:
    """Keys read: artifact, precision, passed, tolerance{atol, rtol, min_cosine, min_top1},
    cases[{runner, metrics{max_abs, min_cosine, top1_agreement}, passed, gated}], skipped[str],
    polygraphy{command, inputs, outputs}. The verdict and figures per runner are those of the gated
    cases (what ``validate``'s exit code follows); failing information-only cases are counted."""
    per_runner: dict[str, float] = {}
    worst: dict[str, dict] = {}
    for c in d.get("cases") or []:
        if not isinstance(c, dict):
            continue
        metrics = c.get("metrics") or {}
        m = number(metrics.get("max_abs"))
        r = str(c.get("runner") or "?")
        w = worst.setdefault(r, {"passed": True, "min_cosine": None, "top1_agreement": None, "cases": 0,
                                 "info_failed": 0})
        if c.get("gated") is False:
            # information only (INT8 on random inputs): never the verdict, never the gated figures
            w["info_failed"] += c.get("passed") is not True
            continue
        if m is not None:
            per_runner[r] = max(per_runner.get(r, m), m)
        w["cases"] += 1
        w["passed"] = w["passed"] and c.get("passed") is True
        for k in ("min_cosine", "top1_agreement"):
            v = number(metrics.get(k))
            if v is not None:
                w[k] = v if w[k] is None else min(w[k], v)
    tol = d.get("tolerance") if isinstance(d.get("tolerance"), dict) else None
    if tol is not None:
        # an infinite atol/rtol (no elementwise bound: INT8) is written as null in strict JSON
        bounds = {k: (float("inf") if tol.get(k) is None else number(tol.get(k))) for k in ("atol", "rtol")}
        if all(v is not None for v in bounds.values()) and all(number(tol.get(k)) is not None for k in ("min_cosine", "min_top1")):
            tol = {**tol, **bounds}
        else:
            tol = None
    pg = d.get("polygraphy") if isinstance(d.get("polygraphy"), dict) else None
    return {"artifact": str(d.get("artifact")), "precision": d.get("precision"), "passed": d.get("passed"),
            "max_abs": per_runner, "per_runner": worst, "tolerance": tol,
            "polygraphy": pg if pg and isinstance(pg.get("command"), str) else None, "source": source}


def notes_records(d: dict, source: str) -> list[dict]:
    out: list[dict] = []
    sk = d.get("skipped")
    if isinstance(sk, dict):
        out += [{"what": str(k), "reason": str(v), "source": source} for k, v in sk.items()]
    elif isinstance(sk, list):
        for item in sk:
            if isinstance(item, dict):
                what = item.get("stage") or item.get("what") or item.get("artifact") or "?"
                out.append({"what": str(what), "reason": str(item.get("reason", "")), "source": source})
            else:
                out.append({"what": "", "reason": str(item), "source": source})
    stages = d.get("stages")
    if isinstance(stages, dict):
        for name, st in stages.items():
            if isinstance(st, dict) and st.get("status") == "skipped":
                out.append({"what": str(name), "reason": str(st.get("reason", "")), "source": source})
    for n in d.get("notes") or []:
        if isinstance(n, str):
            out.append({"what": "note", "reason": n, "source": source})
    return out


# ----------------------------------------------------------------------------- collect

def collect(inputs: Iterable[Path]) -> Results:
    """Read every result file under ``inputs``. Raises InputError on a malformed file."""
    res = Results()
    for path in find_json(inputs):
        data = read(path)
        kind = classify(data, path)
        src = str(path)
        if kind in (None, "report"):
            res.ignored.append(src)
            continue
        res.sources.append(src)
        if kind in ("bench", "parity", "accuracy"):
            check_fresh(data, path)
        if kind == "bench":
            _add_bench(res, data, src)
        elif kind == "parity":
            check_record(data, "parity", src)
            res.parity.append(parity_record(data, src))
            res.skipped += [{"what": f"validate {data.get('artifact')}", "reason": str(s), "source": src}
                            for s in data.get("skipped") or []]
        elif kind == "accuracy":
            check_record(data, "accuracy", src)
            res.accuracy.append(accuracy_record(data, src))
        elif kind == "notes":
            res.skipped += notes_records(data, src)
            if isinstance(data.get("run"), dict):
                res.runs.append({**data["run"], "preset_model": data.get("preset_model"), "source": src})
        elif kind == "sidecar":
            res.sidecars[sidecar_target(path)] = read_sidecar(path)  # type: ignore[index]
    return res


def _add_bench(res: Results, data: dict, src: str) -> None:
    res.bench_files.append({"spec": data.get("spec") if isinstance(data.get("spec"), dict) else {},
                            "machine": data.get("machine") if isinstance(data.get("machine"), dict) else {},
                            "load_average": data.get("load_average") if isinstance(data.get("load_average"), dict)
                            else None, "source": src})
    for row in data.get("rows") or []:
        if isinstance(row, dict) and isinstance(row.get("latency_ms"), dict) and row.get("batch"):
            res.bench.append({**row, "_source": src})
    for s in data.get("skipped") or []:
        if isinstance(s, dict):
            b = f" batch {s['batch']}" if s.get("batch") else ""
            res.skipped.append({"what": f"bench {s.get('artifact')} on {s.get('runner')}{b}",
                                "reason": str(s.get("reason", "")), "source": src})
    m = data.get("machine")
    if isinstance(m, dict):
        key = json.dumps({k: v for k, v in m.items() if k != "date"}, sort_keys=True)
        if all(json.dumps({k: v for k, v in x.items() if k != "date"}, sort_keys=True) != key for x in res.machines):
            res.machines.append(m)


def read_sidecar(path: Path) -> dict:
    """A sidecar's facts, validated by ``attnvgg.sidecar``; hash-checked when its artifact is here."""
    side = sidecar.read_file(path)
    if side.artifact.is_file():
        sidecar.check_hash(side)
    return side.facts


def load_sidecar_beside(artifact: str) -> Optional[dict]:
    """The sidecar next to an artifact named in a result file, if that file is here to read."""
    p = Path(artifact + ".json")
    return read_sidecar(p) if p.is_file() else None
