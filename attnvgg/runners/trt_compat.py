"""What an engine is tied to, decided without TensorRT: version capabilities, the engine
sidecar's compatibility check. Pure Python, tested on any CPU; the TensorRT runner and the
build stage both use it.

Sidecar compatibility (``check_sidecar``): an engine runs only on the TensorRT version and GPU
it was built with, so loading one whose sidecar names another TensorRT version, GPU name or
compute capability is refused. Two build options relax this on purpose:
* ``version_compatible``: the engine carries its lean runtime, so any TensorRT version equal to
  or newer than the one that built it is accepted; an older one is still refused.
* ``hardware_compatibility = "ampere+"``: the GPU name and exact compute capability are not
  compared; any GPU of compute capability 8.0 or newer is accepted.
  ``"same-compute-capability"``: the GPU name is not compared; the compute capability must match.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from attnvgg.errors import InputError, MissingDependency
from attnvgg import sidecar
from attnvgg.artifacts import sidecar_path

SIDECAR_FORMAT = sidecar.format_tag("engine")
INSTALL_HINT = 'install it with: pip install "attnvgg[gpu]" on a machine with an NVIDIA GPU and driver'


# ----------------------------------------------------------------------------- TensorRT versions

@dataclass(frozen=True)
class TrtCapabilities:
    """What differs between the TensorRT versions this project supports."""

    version: str
    major: int
    minor: int
    strongly_typed_flag: bool     # pass NetworkDefinitionCreationFlag.STRONGLY_TYPED (10.x); 11.x always is
    dla_possible: bool            # this TensorRT release can build DLA engines at all
    dla_note: str
    notes: tuple[str, ...] = ()


def parse_version(version: str) -> tuple[int, ...]:
    """``"10.13.0.35"`` -> ``(10, 13, 0, 35)``; non-numeric tails are ignored."""
    parts: list[int] = []
    for piece in str(version).split("."):
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def trt_capabilities(version: str) -> TrtCapabilities:
    """The one place that switches on the TensorRT version.

    10.x: networks are weakly typed unless created with the STRONGLY_TYPED flag, so we set it.
    11.x: every network is strongly typed and the flag is deprecated (accepted, ignored), so we
    pass no flag. DLA (NVIDIA's "Working with DLA" page, 11.4.1): 10.7 was the last 10.x release
    with DLA; 11.0-11.3 have none; 11.4.1 brought it back on Jetson AGX Orin (JetPack 7.2.2+).
    The builder still asks the hardware (``num_DLA_cores``); this only words the refusal.
    """
    v = parse_version(version)
    if len(v) < 2 or v[0] < 10:
        raise MissingDependency(
            f"TensorRT {version} is not supported (attnvgg builds strongly typed engines with TensorRT 10.x or 11.x)",
            INSTALL_HINT,
        )
    major, minor = v[0], v[1]
    notes: list[str] = []
    if major == 10:
        if minor < 12:
            notes.append(f"TensorRT {version}: strong typing matured in 10.12; upgrade if the build rejects the graph")
        dla = minor <= 7
        note = ("DLA on Jetson (JetPack 6, TensorRT 10.x up to 10.7)" if dla else
                f"TensorRT {version} has no DLA support (10.7 was the last 10.x release with DLA)")
        return TrtCapabilities(version, major, minor, True, dla, note, tuple(notes))
    dla = v[:3] >= (11, 4, 1)
    note = ("DLA on Jetson AGX Orin with JetPack 7.2.2+ only" if dla else
            f"TensorRT {version} has no DLA support on Jetson (11.0-11.3 have none; 11.4.1+ has it on "
            "Jetson AGX Orin with JetPack 7.2.2+); build DLA engines with TensorRT 10.x up to 10.7 (JetPack 6)")
    return TrtCapabilities(version, major, minor, False, dla, note, tuple(notes))


@dataclass(frozen=True)
class RuntimeEnv:
    """What an engine is tied to: the TensorRT version and the GPU."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str         # "9.0"



def load_sidecar(engine: str | os.PathLike) -> dict:
    """The engine's sidecar facts, read (and hash-checked) through ``attnvgg.sidecar``."""
    e = Path(engine)
    side = sidecar.read(e)
    if side is None:
        raise InputError(f"engine {e} has no sidecar {sidecar_path(e).name}, so where it may run is unknown",
                         f"rebuild it with: attnvgg build MODEL.onnx --out {e.parent}")
    if side.kind != "engine":
        raise InputError(f"{side.path} is not an attnvgg engine sidecar (format {side.get('format')!r})",
                         f"rebuild the engine with: attnvgg build MODEL.onnx --out {e.parent}")
    return side.facts


def _cc(text: str) -> tuple[int, ...]:
    return parse_version(text)


def check_sidecar(sidecar: dict, env: RuntimeEnv, engine: str | os.PathLike,
                  engine_sha256: Optional[str] = None) -> None:
    """Refuse an engine that was built for another TensorRT version or GPU (see module doc)."""
    e = Path(engine)
    opts = sidecar.get("build_options") or {}
    onnx = sidecar.get("onnx") or "MODEL.onnx"
    rebuild = f"rebuild it here with: attnvgg build {onnx} --out {e.parent} --target {opts.get('target', opts.get('preset', 'server'))}"
    try:
        built_trt = str(sidecar["tensorrt_version"])
        built_gpu = str(sidecar["gpu"]["name"])
        built_cc = str(sidecar["gpu"]["compute_capability"])
    except (KeyError, TypeError) as exc:
        raise InputError(f"sidecar of {e} lacks field {exc}", rebuild) from exc
    if engine_sha256 is not None and sidecar.get("engine_sha256") != engine_sha256:
        raise InputError(f"sidecar of {e} describes another engine (engine_sha256 differs)", rebuild)

    diffs: list[str] = []
    if opts.get("version_compatible"):
        if parse_version(env.tensorrt_version) < parse_version(built_trt):
            diffs.append(f"tensorrt_version: built with {built_trt}, running {env.tensorrt_version} "
                         "(a version-compatible engine needs the same or a newer TensorRT)")
    elif env.tensorrt_version != built_trt:
        diffs.append(f"tensorrt_version: built with {built_trt}, running {env.tensorrt_version}")

    hwc = opts.get("hardware_compatibility", "none")
    if hwc == "ampere+":
        if _cc(env.compute_capability) < (8, 0):
            diffs.append(f"gpu.compute_capability: engine is Ampere+ (8.0 or newer), running {env.compute_capability}")
    else:
        if hwc != "same-compute-capability" and env.gpu_name != built_gpu:
            diffs.append(f"gpu.name: built on {built_gpu!r}, running on {env.gpu_name!r}")
        if env.compute_capability != built_cc:
            diffs.append(f"gpu.compute_capability: built for {built_cc}, running {env.compute_capability}")
    if diffs:
        raise InputError(f"engine {e} does not match this machine: " + "; ".join(diffs), rebuild)
