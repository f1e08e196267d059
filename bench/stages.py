"""Wall time and peak RSS of export, simplify and validate on the full-size model.

Each stage runs as its own process (the CLI), and its peak RSS comes from that process's
rusage (os.wait4), so one stage's memory never hides another's.

    python bench/stages.py [--workdir DIR] [--batch-max 8] [--exporter dynamo]

Targets on the 2-core CPU machine: export <= 15 s, simplify <= 30 s, each step <= 4 GiB.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_stage(args: list[str], cwd: Path) -> tuple[float, float, int, str]:
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "attnvgg", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - t0
    return seconds, usage.ru_maxrss / 1024**2, proc.returncode, out  # ru_maxrss is KiB on Linux


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--exporter", default="dynamo")
    ap.add_argument("--batch-max", type=int, default=8)
    ap.add_argument("--batches", default="1,3")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="attnvgg-stages-"))
    work.mkdir(parents=True, exist_ok=True)
    env_note = f"python {sys.version.split()[0]}, {os.cpu_count()} cpus"
    stages = [
        ("export", ["export", "--preset", "vgg16-224", "--gamma", "0.5", "--exporter", args.exporter, "--batch-max", str(args.batch_max),
                    "-o", "model.onnx"]),
        ("simplify", ["simplify", "model.onnx", "-o", "model.sim.onnx"]),
        ("simplify --force", ["simplify", "model.onnx", "-o", "model.forced.sim.onnx", "--force"]),
        ("validate", ["validate", "model.sim.onnx", "--batches", args.batches, "--json", "parity.json",
                      "--junit", "parity.xml"]),
    ]
    print(f"full-size VGG16WithAttention, 224x224, gamma 0.5, random weights; {env_note}; workdir {work}")
    print(f"{'stage':<18} {'wall s':>8} {'peak RSS GiB':>13} {'exit':>5}")
    rows = []
    for name, cmd in stages:
        s, rss, rc, out = run_stage(cmd, work)
        rows.append((name, s, rss, rc))
        print(f"{name:<18} {s:>8.1f} {rss:>13.2f} {rc:>5}", flush=True)
        if rc != 0:
            print(out[-3000:])
            return rc
        last = [ln for ln in out.splitlines() if ln.strip()]
        for ln in last[-3:] if name != "validate" else last:
            print(f"    {ln}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
