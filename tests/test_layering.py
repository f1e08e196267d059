"""Imports go downward only (DESIGN.md "Layers"), and no module cycle exists.

Walks the AST of every module under attnvgg/, function-level imports included, and checks each
import of a project module against the order

    cli > cli_options > pipeline > report > stage packages (export < calibration < validate < engines < study)
        > data, models > runners > shared modules

A module may import its own package, a stage package before its own, or any lower layer.
Function-level imports of project modules are allowed only where the imported module pulls in a
heavy library at import time (torch: the model modules) or in cli.py / cli_options.py
(``attnvgg --help`` must not load numpy through the stage modules).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "attnvgg"

STAGES = ("export", "calibration", "validate", "engines", "study")
#: rank of each top-level part; a higher rank may import a lower one
RANK: dict[str, float] = {"__main__": 10, "cli": 9, "cli_options": 8.5, "pipeline": 8, "report": 7,
                          **{s: 6 + i / 10 for i, s in enumerate(STAGES)},
                          "data": 5, "models": 5, "runners": 4}
SHARED = 1.0      # errors, artifacts, config, sidecar, onnxgraph, machine, manifest, the package itself
#: modules that import torch at their top: importing them lazily keeps every other module light
TORCH_AT_TOP = {"attnvgg.models.vgg", "attnvgg.models.attention", "attnvgg.models.checkpoint"}
LAZY_OK_IN = {"attnvgg.cli", "attnvgg.cli_options"}


def modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PACKAGE.rglob("*.py")):
        rel = p.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def part(module: str) -> str:
    """``attnvgg.engines.bench`` -> ``engines``; ``attnvgg.sidecar`` -> ``sidecar``."""
    bits = module.split(".")
    return bits[1] if len(bits) > 1 else ""


def rank(module: str) -> float:
    return RANK.get(part(module), SHARED)


def imports(path: Path, known: set[str]) -> list[tuple[str, int, bool]]:
    """(imported project module, line, inside a function) for every import in the file."""
    tree = ast.parse(path.read_text())
    in_function: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_function.update(id(sub) for sub in ast.walk(node) if sub is not node)
    found = []
    for node in ast.walk(tree):
        lazy = id(node) in in_function
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno, lazy) for a in node.names if a.name.split(".")[0] == "attnvgg"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "attnvgg":
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.append((sub if sub in known else node.module, node.lineno, lazy))
    return found


def graph() -> tuple[dict[str, set[str]], list[str]]:
    """The import graph and every import against the order (as readable lines)."""
    mods = modules()
    known = set(mods)
    edges: dict[str, set[str]] = {m: set() for m in mods}
    bad: list[str] = []
    for mod, path in mods.items():
        for target, line, lazy in imports(path, known):
            if target == mod:
                continue
            edges[mod].add(target)
            where = f"{path.relative_to(PACKAGE.parent)}:{line}"
            same_part = part(target) == part(mod) and part(mod) in RANK
            if not same_part and rank(target) >= rank(mod) and not (rank(target) == rank(mod) == SHARED):
                if not (rank(target) == rank(mod) and part(target) != part(mod) and rank(mod) == RANK["data"]):
                    bad.append(f"{where}: {mod} (layer {part(mod) or 'shared'}) imports {target} "
                               f"(layer {part(target) or 'shared'}), which is not below it")
            if lazy and mod not in LAZY_OK_IN and target not in TORCH_AT_TOP:
                bad.append(f"{where}: {mod} imports {target} inside a function; import project modules at the top")
    return edges, bad


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in edges:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_imports_go_downward_only():
    _, bad = graph()
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_no_import_cycle():
    edges, _ = graph()
    # a package's __init__ re-exporting its own submodules is not a cycle between layers
    found = [c for c in cycles(edges) if not all(m.startswith(c[0].rsplit(".", 1)[0]) for m in c)
             or len({part(m) for m in c}) > 1]
    assert not found, f"import cycles: {found}"


def test_the_checker_sees_a_bad_import(tmp_path, monkeypatch):
    """The walk catches an upward import inside a function (so a green run means something)."""
    bad = PACKAGE / "export" / "_layering_probe.py"
    bad.write_text("def f():\n    from attnvgg.engines.bench import bench_artifacts\n    return bench_artifacts\n")
    try:
        _, found = graph()
    finally:
        bad.unlink()
    assert any("_layering_probe.py:2" in b and "attnvgg.engines.bench" in b for b in found), found
