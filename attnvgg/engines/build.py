"""The build stage: plan (always, without TensorRT), then build the engines."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from attnvgg.config import BuildSpec
from attnvgg.engines.build_plan import BuildPlan, plan_build
from attnvgg.engines.tensorrt import build_engines
from attnvgg.errors import StageError


@dataclass
class BuildResult:
    plan: BuildPlan
    sidecars: list[dict] = field(default_factory=list)   # one per built engine; empty on a dry run
    failures: list[dict] = field(default_factory=list)   # {"engine", "onnx", "error"} per engine that failed

    def built(self) -> list[tuple[Path, dict]]:
        """(engine path, sidecar) of every engine that was built, in plan order."""
        by_name = {sc["engine"]: sc for sc in self.sidecars}
        return [(ep.engine, by_name[ep.engine.name]) for ep in self.plan.engines if ep.engine.name in by_name]

    def raise_for_failures(self) -> None:
        """StageError naming the failed engines (after the others were built and reported)."""
        if not self.failures:
            return
        first = self.failures[0]
        more = f" (and {len(self.failures) - 1} more)" if len(self.failures) > 1 else ""
        raise StageError(f"{len(self.failures)} of {len(self.plan.engines)} engine(s) failed to build, "
                         f"{len(self.sidecars)} built; {Path(first['engine']).name}: {first['error']}{more}",
                         "the engines that built are usable; fix the failed file and rerun attnvgg build on it")


def run_build(onnx_paths: Sequence[str | os.PathLike], spec: BuildSpec, out_dir: str | os.PathLike,
              dry_run: bool = False) -> BuildResult:
    """The build stage: plan (always, without TensorRT), then build unless ``dry_run``.

    Bad input raises InputError before TensorRT is looked for; a missing TensorRT or GPU raises
    MissingDependency (exit 4). An engine that fails to build does not stop the others: it is
    in ``failures`` (call ``raise_for_failures`` once the built ones are reported).
    """
    plan = plan_build(onnx_paths, spec, out_dir)
    if dry_run:
        return BuildResult(plan)
    built, failed = build_engines(plan)
    return BuildResult(plan, built, failed)
