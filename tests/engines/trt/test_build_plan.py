"""Build plan logic on CPU: presets, overrides, profiles, precision detection, trtexec line."""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path

import pytest

from attnvgg import sidecar
from attnvgg.config import BuildSpec, Config, from_dict
from attnvgg.engines.build_plan import (
    TARGETS, engine_path_for, inspect_onnx, plan_build, resolve_options, trtexec_args, trtexec_script,
)
from attnvgg.runners.trt_compat import trt_capabilities
from attnvgg.errors import InputError, MissingDependency


# ----------------------------------------------------------------------------- presets / overrides

@pytest.mark.parametrize("preset,expect", [("server", (1, 16, 64)), ("edge", (1, 1, 1))])
def test_preset_batch_range(preset, expect, tmp_path):
    o = resolve_options(BuildSpec(target=preset), tmp_path)
    assert (o.batch_min, o.batch_opt, o.batch_max) == expect
    assert not o.explicit_batch and o.overridden == ()


def test_edge_has_smaller_workspace_than_server(tmp_path):
    assert resolve_options(BuildSpec(target="edge"), tmp_path).workspace_mib < \
        resolve_options(BuildSpec(target="server"), tmp_path).workspace_mib


def test_explicit_options_override_preset(tmp_path):
    o = resolve_options(BuildSpec(target="edge", batch_max=32, workspace_mib=300, optimization_level=5), tmp_path)
    assert (o.batch_min, o.batch_opt, o.batch_max) == (1, 1, 32)
    assert o.workspace_mib == 300 and o.optimization_level == 5
    assert set(o.overridden) == {"batch_max", "workspace_mib", "optimization_level"} and o.explicit_batch


@pytest.mark.parametrize("kw,msg", [
    (dict(batch_min=8, batch_opt=4), "min batch 8 is larger than opt batch 4"),
    (dict(batch_opt=128), "opt batch 128 is larger than max batch 64"),
    (dict(batch_min=0), "at least 1"),
    (dict(target="cloud"), "unknown build target 'cloud'"),
    (dict(optimization_level=7), "outside 0..5"),
    (dict(workspace_mib=0), "workspace"),
    (dict(hardware_compatibility="turing+"), "unknown hardware compatibility"),
    (dict(dla_core=-1), "negative"),
])
def test_bad_options_refused(kw, msg, tmp_path):
    with pytest.raises(InputError, match=msg) as ei:
        resolve_options(BuildSpec(**kw), tmp_path)
    assert "\n" not in ei.value.one_line()


def test_timing_cache_relative_to_out_and_disable(tmp_path):
    assert resolve_options(BuildSpec(), tmp_path / "o").timing_cache == tmp_path / "o" / "timing.cache"
    assert resolve_options(BuildSpec(timing_cache="/abs/t.cache"), tmp_path).timing_cache == Path("/abs/t.cache")
    assert resolve_options(BuildSpec(timing_cache=""), tmp_path).timing_cache is None


def test_buildspec_in_config_from_toml_dict():
    cfg = from_dict(Config, {"build": {"preset": "edge", "batch_max": 4, "tf32": True}})
    assert cfg.build.target == "edge" and cfg.build.batch_max == 4 and cfg.build.tf32 is True
    with pytest.raises(InputError, match="unknown key"):
        from_dict(Config, {"build": {"fp16": True}})


# ----------------------------------------------------------------------------- precision / inputs

def test_precision_detected_from_graph(onnx_files):
    assert inspect_onnx(onnx_files["fp32"]).precision == "fp32"
    f16 = inspect_onnx(onnx_files["fp16"])
    assert f16.precision == "fp16" and "float16 initializers" in f16.precision_source
    q = inspect_onnx(onnx_files["int8"])
    assert q.precision == "int8" and "QuantizeLinear" in q.precision_source


def test_inputs_and_outputs_read(onnx_files):
    f = inspect_onnx(onnx_files["fp32"])
    assert [(t.name, t.dtype, t.shape) for t in f.inputs] == [("input", "float32", ("batch", 3, 8, 8))]
    assert [t.name for t in f.outputs] == ["logits"]


def test_precision_from_sidecar_agreeing(onnx_files):
    p = onnx_files["fp16"]
    sidecar.write(p, "fp16", {"keep_io_types": True, "block_ops": []})
    f = inspect_onnx(p)
    assert f.precision == "fp16" and f.precision_source.startswith("sidecar")


def test_precision_sidecar_contradicting_graph_refused(onnx_files):
    p = onnx_files["fp32"]
    sidecar.write(p, "int8", {"flavour": "tensorrt", "method": "minmax", "exclusion": {}})
    with pytest.raises(InputError, match="says int8 but the graph is fp32"):
        inspect_onnx(p)


def test_uint8_or_nonzero_zero_point_refused(onnx_factory):
    with pytest.raises(InputError, match="uint8"):
        inspect_onnx(onnx_factory("u8.int8.onnx", "int8", zp_dtype="uint8", zp_value=128))
    with pytest.raises(InputError, match="non-zero"):
        inspect_onnx(onnx_factory("nz.int8.onnx", "int8", zp_value=3))


def test_qoperator_int8_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("QLinearMatMul", list("abcdefgh"), ["y"])], "q",
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 2]) for n in "abcdefgh"],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
    p = tmp_path / "q.onnx"
    onnx.save(helper.make_model(g), str(p))
    with pytest.raises(InputError, match="QOperator"):
        inspect_onnx(p)


def test_dynamic_hw_refused(onnx_factory):
    with pytest.raises(InputError, match="dynamic non-batch axes"):
        inspect_onnx(onnx_factory("dyn.onnx", hw="h"))


def test_missing_and_non_onnx_refused(tmp_path):
    with pytest.raises(InputError, match="not found"):
        inspect_onnx(tmp_path / "nope.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_text("this is not a protobuf\n" * 5)
    with pytest.raises(InputError, match="not an ONNX model"):
        inspect_onnx(junk)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="not an ONNX model"):
        inspect_onnx(empty)


# ----------------------------------------------------------------------------- plan

def test_plan_profiles_follow_preset(onnx_files, tmp_path):
    plan = plan_build(list(onnx_files.values()), BuildSpec(target="edge"), tmp_path / "out")
    assert [e.precision for e in plan.engines] == ["fp32", "fp16", "int8"]
    for e in plan.engines:
        assert e.profile == {"input": ((1, 3, 8, 8),) * 3} and e.dynamic   # edge: one static shape
    assert [e.engine.name for e in plan.engines] == ["model.fp32.engine", "model.fp16.engine", "model.int8.engine"]
    assert plan.engines[1].sidecar.name == "model.fp16.engine.json"
    assert plan.engines[1].trtexec_script.name == "model.fp16.engine.trtexec.sh"


def test_tf32_off_for_fp32_by_default_and_overridable(onnx_files, tmp_path):
    plan = plan_build(list(onnx_files.values()), BuildSpec(), tmp_path)
    assert {e.precision: e.tf32 for e in plan.engines} == {"fp32": False, "fp16": True, "int8": True}
    plan = plan_build([onnx_files["fp32"]], BuildSpec(tf32=True), tmp_path)
    assert plan.engines[0].tf32 is True
    plan = plan_build([onnx_files["fp16"]], BuildSpec(tf32=False), tmp_path)
    assert plan.engines[0].tf32 is False


def test_static_batch_fixes_profile_unless_contradicted(onnx_factory, tmp_path):
    p = onnx_factory("static.onnx", batch=4)
    e = plan_build([p], BuildSpec(), tmp_path).engines[0]
    assert e.profile["input"] == ((4, 3, 8, 8),) * 3 and not e.dynamic and e.notes
    assert "--minShapes" not in " ".join(trtexec_args(e, resolve_options(BuildSpec(), tmp_path)))
    with pytest.raises(InputError, match="static batch of 4"):
        plan_build([p], BuildSpec(batch_opt=2, batch_max=8), tmp_path)


def test_two_files_same_engine_refused(onnx_factory, tmp_path):
    a = onnx_factory("a/model.onnx")
    b = onnx_factory("b/model.onnx")
    with pytest.raises(InputError, match="would both write"):
        plan_build([a, b], BuildSpec(), tmp_path / "out")


def test_engine_name_adds_precision_only_when_absent(tmp_path):
    assert engine_path_for(Path("m.sim.onnx"), "fp32", tmp_path).name == "m.sim.fp32.engine"
    assert engine_path_for(Path("m.int8.onnx"), "int8", tmp_path).name == "m.int8.engine"


# ----------------------------------------------------------------------------- trtexec

def test_trtexec_line_has_every_option(onnx_files, tmp_path):
    spec = BuildSpec(target="server", batch_max=32, workspace_mib=2048, optimization_level=4,
                     hardware_compatibility="ampere+", version_compatible=True)
    plan = plan_build([onnx_files["fp32"]], spec, tmp_path / "out")
    args = trtexec_args(plan.engines[0], plan.options)
    assert args[0] == "trtexec"
    for a in ["--stronglyTyped", "--minShapes=input:1x3x8x8", "--optShapes=input:16x3x8x8",
              "--maxShapes=input:32x3x8x8", "--memPoolSize=workspace:2048M", "--builderOptimizationLevel=4",
              f"--timingCacheFile={tmp_path / 'out' / 'timing.cache'}", "--noTF32",
              "--hardwareCompatibilityLevel=ampere+", "--versionCompatible",
              f"--onnx={onnx_files['fp32']}", f"--saveEngine={tmp_path / 'out' / 'model.fp32.trtexec.engine'}",
              "--shapes=input:16x3x8x8", "--profilingVerbosity=detailed",
              f"--exportLayerInfo={tmp_path / 'out' / 'model.fp32.trtexec.engine.layers.json'}",
              f"--exportProfile={tmp_path / 'out' / 'model.fp32.trtexec.engine.profile.json'}"]:
        assert a in args, a
    assert not any(a in args for a in ("--fp16", "--int8", "--best"))


def test_trtexec_dla_flags(onnx_files, tmp_path):
    plan = plan_build([onnx_files["fp16"]], BuildSpec(target="edge", dla_core=1), tmp_path)
    args = trtexec_args(plan.engines[0], plan.options)
    assert "--useDLACore=1" in args and "--allowGPUFallback" in args
    plan = plan_build([onnx_files["fp16"]], BuildSpec(dla_core=0, gpu_fallback=False, batch_min=4, batch_opt=4,
                                                       batch_max=4), tmp_path)
    args = trtexec_args(plan.engines[0], plan.options)
    assert "--allowGPUFallback" not in args and "--maxShapes=input:4x3x8x8" in args


def test_dla_refuses_a_dynamic_profile(onnx_files, tmp_path):
    """DLA has no dynamic shapes: the server preset's 1/16/64 with a DLA core is refused, the edge preset is static."""
    with pytest.raises(InputError, match="DLA has no dynamic shapes"):
        plan_build([onnx_files["fp16"]], BuildSpec(dla_core=0), tmp_path)
    e = plan_build([onnx_files["fp16"]], BuildSpec(target="edge", dla_core=0), tmp_path).engines[0]
    assert len(set(e.profile["input"])) == 1


def test_dry_run_and_trtexec_script_show_the_same_command(onnx_files, tmp_path):
    from attnvgg.engines.build_plan import render_plan

    plan = plan_build([onnx_files["int8"], onnx_files["fp16"]], BuildSpec(), tmp_path / "out")
    shown = [ln.strip()[len("trtexec: "):] for ln in render_plan(plan).splitlines() if ln.strip().startswith("trtexec: ")]
    assert len(shown) == 2
    for ep, line in zip(plan.engines, shown):
        cd, _, cmd = line.partition(" && ")
        assert shlex.split(cd) == ["cd", str(ep.engine.parent)]
        body = trtexec_script(ep, plan.options).split('cd "$(dirname "$0")"\n', 1)[1]
        script_cmd = shlex.split(body.replace("\\\n", " "))
        assert script_cmd[-1] == "$@" and script_cmd[:-1] == shlex.split(cmd)


def test_trtexec_script_uses_paths_relative_to_engine(onnx_files, tmp_path):
    plan = plan_build([onnx_files["int8"]], BuildSpec(), tmp_path / "out")
    text = trtexec_script(plan.engines[0], plan.options)
    assert text.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in text
    cmd = shlex.split(text.split('cd "$(dirname "$0")"\n', 1)[1].replace("\\\n", " "))
    assert "--onnx=../model.int8.onnx" in cmd and "--saveEngine=model.int8.trtexec.engine" in cmd
    assert "--saveEngine=model.int8.engine" not in cmd      # the engine its sidecar hashes is never overwritten
    assert "--exportLayerInfo=model.int8.trtexec.engine.layers.json" in cmd and "--shapes=input:16x3x8x8" in cmd
    assert "--timingCacheFile=timing.cache" in cmd


# ----------------------------------------------------------------------------- TensorRT versions

@pytest.mark.parametrize("version,flag,dla", [
    ("10.3.0.30", True, True), ("10.16.1.11", True, False),
    ("11.0.0.12", False, False), ("11.3.0", False, False), ("11.4.1", False, True),
])
def test_version_switch(version, flag, dla):
    caps = trt_capabilities(version)
    assert caps.strongly_typed_flag is flag and caps.dla_possible is dla and caps.dla_note


def test_old_tensorrt_refused():
    with pytest.raises(MissingDependency, match="8.6.1"):
        trt_capabilities("8.6.1")
    assert "10.12" in " ".join(trt_capabilities("10.8.0").notes)
    assert TARGETS["server"].batch_opt == 16
    assert replace(BuildSpec(), target="edge").target == "edge"


# ----------------------------------------------------------------------------- Polygraphy arguments

def test_polygraphy_args_are_strongly_typed_without_precision_flags(onnx_files, tmp_path):
    from attnvgg.engines.build_plan import FORBIDDEN_CONFIG_ARGS, polygraphy_build_args

    plan = plan_build(list(onnx_files.values()), BuildSpec(workspace_mib=2048, optimization_level=4), tmp_path / "o")
    for e in plan.engines:
        a = polygraphy_build_args(e, plan.options)
        assert a["network"] == {"path": str(e.onnx), "strongly_typed": True}
        c = a["config"]
        assert not set(c) & set(FORBIDDEN_CONFIG_ARGS)             # never fp16/int8/bf16/fp8 or a calibrator
        assert c["tf32"] is (e.precision != "fp32")                 # CreateConfig clears TF32 unless asked
        assert c["memory_pool_limits"] == {"WORKSPACE": 2048 << 20}
        assert c["builder_optimization_level"] == 4 and c["profiling_verbosity"] == "DETAILED"
        assert c["profiles"] == [{"input": {"min": [1, 3, 8, 8], "opt": [16, 3, 8, 8], "max": [64, 3, 8, 8]}}]
        assert c["load_timing_cache"] == a["save_timing_cache"] == str(tmp_path / "o" / "timing.cache")
        assert "hardware_compatibility_level" not in c and "version_compatible" not in c and "use_dla" not in c
        assert a["dla_core"] is None


def test_polygraphy_args_compatibility_dla_and_static(onnx_files, onnx_factory, tmp_path):
    from attnvgg.engines.build_plan import polygraphy_build_args

    spec = BuildSpec(hardware_compatibility="ampere+", version_compatible=True, timing_cache="")
    plan = plan_build([onnx_files["fp32"]], spec, tmp_path)
    c = polygraphy_build_args(plan.engines[0], plan.options)
    assert c["config"]["hardware_compatibility_level"] == "AMPERE_PLUS" and c["config"]["version_compatible"] is True
    assert "load_timing_cache" not in c["config"] and c["save_timing_cache"] is None
    plan = plan_build([onnx_files["fp16"]], BuildSpec(target="edge", dla_core=1, gpu_fallback=False), tmp_path)
    a = polygraphy_build_args(plan.engines[0], plan.options)
    assert a["config"]["use_dla"] is True and a["config"]["allow_gpu_fallback"] is False and a["dla_core"] == 1
    assert a["config"]["profiles"] == [{"input": {"min": [1, 3, 8, 8], "opt": [1, 3, 8, 8], "max": [1, 3, 8, 8]}}]
    static = plan_build([onnx_factory("s.onnx", batch=2)], BuildSpec(), tmp_path).engines[0]
    assert polygraphy_build_args(static, plan.options)["config"]["profiles"] is None   # Polygraphy's default


def test_polygraphy_config_kwargs_match_createconfig(onnx_files, tmp_path):
    """The plan's arguments are real CreateConfig/NetworkFromOnnxPath/EngineBytesFromNetwork keywords.

    Polygraphy's loaders are deferred (nothing is built or imported from TensorRT at construction);
    the TensorRT enums are replaced by their names through a namespace, so this runs without TensorRT
    and builds nothing.
    """
    from types import SimpleNamespace

    from polygraphy.backend.trt import CreateConfig, EngineBytesFromNetwork, NetworkFromOnnxPath, Profile

    from attnvgg.engines.build_plan import polygraphy_build_args
    from attnvgg.engines.tensorrt import config_kwargs

    names = SimpleNamespace(WORKSPACE="WORKSPACE", DETAILED="DETAILED", AMPERE_PLUS="AMPERE_PLUS")
    trt = SimpleNamespace(__version__="11.0", MemoryPoolType=names, ProfilingVerbosity=names,
                          HardwareCompatibilityLevel=names)
    plan = plan_build([onnx_files["int8"]], BuildSpec(hardware_compatibility="ampere+", version_compatible=True),
                      tmp_path)
    a = polygraphy_build_args(plan.engines[0], plan.options)
    kw = config_kwargs(trt, a["config"])
    assert isinstance(kw["profiles"][0], Profile) and kw["memory_pool_limits"] == {"WORKSPACE": 8192 << 20}
    cfg = CreateConfig(**kw)
    assert cfg.tf32 is True and cfg.fp16 is False and cfg.int8 is False and cfg.bf16 is False
    assert cfg.hardware_compatibility_level == "AMPERE_PLUS" and cfg.version_compatible is True
    assert cfg.timing_cache_path == a["save_timing_cache"]
    net = NetworkFromOnnxPath(a["network"]["path"], strongly_typed=True)
    assert net.strongly_typed is True
    EngineBytesFromNetwork(net, config=cfg, save_timing_cache=a["save_timing_cache"])
