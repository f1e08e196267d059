"""Where a benchmark ran: CPU model and cores, GPU and driver, library versions, date.

Why apart from the bench: these are facts recorded with every result file, gathered without
ever failing (a missing nvidia-smi, tensorrt or onnxruntime is recorded as null).
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Optional
from attnvgg import __version__


def cpuinfo() -> tuple[Optional[str], Optional[int]]:
    """CPU model name and physical core count from /proc/cpuinfo (Linux), else (None, None)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None, None
    model, cores, phys = None, set(), None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name" and model is None:
            model = value
        elif key == "physical id":
            phys = value
        elif key == "core id":
            cores.add((phys, value))
    return model, (len(cores) or None)


def _version(dist: str) -> Optional[str]:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


#: (report name, distribution) of every library a stage may use, recorded with each measurement
LIBRARIES = (("onnxsim", "onnxsim"), ("onnxslim", "onnxslim"), ("onnxconverter_common", "onnxconverter-common"),
             ("polygraphy", "polygraphy"), ("modelopt", "nvidia-modelopt"), ("openvino", "openvino"),
             ("onnxruntime_gpu", "onnxruntime-gpu"), ("pillow", "pillow"), ("click", "click"),
             ("matplotlib", "matplotlib"), ("tqdm", "tqdm"))


def code_revision() -> dict:
    """attnvgg's version and, when it runs from a git checkout, the commit and whether the tree
    had local changes: what a reproduce line needs besides the config."""
    import shutil
    import subprocess

    out: dict = {"attnvgg": __version__, "git_commit": None, "git_dirty": None}
    root = Path(__file__).resolve().parent.parent
    git = shutil.which("git")
    if not git or not (root / ".git").exists():
        return out
    try:
        commit = subprocess.run([git, "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run([git, "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except Exception:  # noqa: BLE001 - a fact about the checkout, never a reason to fail
        return out
    out.update(git_commit=commit or None, git_dirty=bool(dirty))
    return out


def _nvidia_smi() -> Optional[dict]:
    import shutil
    import subprocess

    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=name,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True).stdout.strip()
    except Exception:  # noqa: BLE001 - a machine fact, never a reason to fail the bench
        return None
    if not out:
        return None
    name, _, driver = out.splitlines()[0].partition(",")
    return {"name": name.strip(), "driver": driver.strip() or None}


def machine_info(tensorrt_version: Optional[str] = None) -> dict:
    """Where the figures were measured: CPU, cores, GPU and driver, library versions, date.

    ``tensorrt_version`` comes from the caller (``runners.tensorrt.installed_tensorrt_version``):
    this shared module sits below the runners and never imports tensorrt."""
    import platform
    import sys

    model, physical = cpuinfo()
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = None
    gpu = None
    torch_version = cuda_version = None
    try:
        import torch

        torch_version = torch.__version__
        cuda_version = torch.version.cuda
        if torch.cuda.is_available():
            dev = torch.cuda.current_device()
            major, minor = torch.cuda.get_device_capability(dev)
            gpu = {"name": torch.cuda.get_device_name(dev), "compute_capability": f"{major}.{minor}",
                   "driver": None, "count": torch.cuda.device_count()}
    except Exception:  # noqa: BLE001
        pass
    smi = _nvidia_smi()
    if smi:
        gpu = {**(gpu or {"name": smi["name"]}), "driver": smi["driver"]}
    ort = None
    try:
        import onnxruntime

        ort = {"version": onnxruntime.__version__, "providers": onnxruntime.get_available_providers()}
    except Exception:  # noqa: BLE001
        pass
    return {
        "cpu": {"model": model or platform.processor() or None, "logical_cores": os.cpu_count(),
                "physical_cores": physical, "usable_cores": usable},
        "gpu": gpu,
        "versions": {"python": sys.version.split()[0], "attnvgg": __version__, "torch": torch_version,
                     "cuda": cuda_version, "onnxruntime": ort["version"] if ort else None,
                     "onnxruntime_providers": ort["providers"] if ort else None,
                     "onnx": _version("onnx"), "numpy": _version("numpy"), "tensorrt": tensorrt_version,
                     **{name: _version(dist) for name, dist in LIBRARIES}},
        "code": code_revision(),
        "platform": platform.platform(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
