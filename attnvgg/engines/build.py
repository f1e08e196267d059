"""The build stage: plan (always, without TensorRT), then build the engines."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

from attnvgg.config import BuildSpec
from attnvgg.engines.build_plan import BuildPlan, plan_build
from attnvgg.engines.tensorrt import build_engines


@dataclass
class BuildResult:
    plan: BuildPlan
    sidecars: list[dict] = field(default_factory=list)   # one per built engine; empty on a dry run


def run_build(onnx_paths: Sequence[str | os.PathLike], spec: BuildSpec, out_dir: str | os.PathLike,
              dry_run: bool = False) -> BuildResult:
    """The build stage: plan (always, without TensorRT), then build unless ``dry_run``.

    Bad input raises InputError before TensorRT is looked for; a missing TensorRT or GPU raises
    MissingDependency (exit 4).
    """
    plan = plan_build(onnx_paths, spec, out_dir)
    if dry_run:
        return BuildResult(plan)

    return BuildResult(plan, build_engines(plan))
