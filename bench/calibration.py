"""Calibration time and peak RSS on the full-size model, then the same calibration from the cache.

Full-size VGG16WithAttention at 224 px (random weights, gamma 0.5) exported with attnvgg's
dynamo export; calibration images are seeded N(0, 1) arrays generated batch by batch (never
materialised as a set). Every run is its own process, so peak RSS (os.wait4) is that run's.

    python bench/calibration.py [--workdir DIR] [--images 128] [--batch-size 4] [--methods minmax]

Target on the 2-core CPU machine: peak RSS <= 4 GiB; a cache hit near-instant apart from
writing the model.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


class SeededImages:
    """A Dataset of N(0, 1) images, each generated from its index on demand."""

    def __init__(self, n: int, size: int = 224, seed: int = 0):
        self.n, self.size, self.seed = n, size, seed
        self.classes: list[str] = []
        self.has_labels = False

    def __len__(self) -> int:
        return self.n

    def iter_batches(self, batch_size: int, limit: int | None = None):
        import numpy as np

        n = self.n if limit is None else min(limit, self.n)
        for i in range(0, n, batch_size):
            idx = range(i, min(i + batch_size, n))
            x = np.stack([np.random.default_rng([self.seed, k]).standard_normal((3, self.size, self.size),
                                                                               dtype=np.float32) for k in idx])
            yield x, None

    def content_hash(self) -> str:
        return f"seeded-normal-{self.seed}-{self.n}-{self.size}"

    def describe(self) -> dict:
        return {"kind": "seeded N(0,1)", "images": self.n, "size": self.size}


def child(model: str, out: str, cache_dir: str, images: int, batch: int, method: str) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from attnvgg.calibration.int8 import calibrate
    from attnvgg.config import CalibrateSpec

    spec = CalibrateSpec(method=method, batch_size=batch, cache_dir=cache_dir)
    r = calibrate(model, SeededImages(images), out, spec, progress=False, log=lambda m: None)
    print(json.dumps({"calibration_s": r.calibration_s, "total_s": r.total_s, "cache_hit": r.cache_hit,
                      "quantized": len(r.quantized), "excluded": len(r.excluded), "parity": r.parity,
                      "timings": r.timings}))


def run(cmd: list[str], cwd: Path) -> tuple[float, float, int, str]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    return time.perf_counter() - t0, usage.ru_maxrss / 1024**2, os.waitstatus_to_exitcode(status), out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--methods", default="minmax")
    ap.add_argument("--child", nargs=6, metavar=("MODEL", "OUT", "CACHE", "N", "BATCH", "METHOD"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        m, o, c, n, b, meth = args.child
        child(m, o, c, int(n), int(b), meth)
        return 0
    work = Path(args.workdir or tempfile.mkdtemp(prefix="attnvgg-calib-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    repo = Path(__file__).resolve().parents[1]
    model = work / "model.onnx"
    print(f"full-size VGG16WithAttention, 224x224, gamma 0.5, random weights; {os.cpu_count()} cpus; "
          f"{args.images} images, batch {args.batch_size}; workdir {work}")
    if not model.exists():
        s, rss, rc, out = run([sys.executable, "-m", "attnvgg", "export", "--preset", "vgg16-224", "--gamma", "0.5", "--batch-max", "8",
                               "-o", str(model)], repo)
        print(f"export: {s:.1f} s, peak RSS {rss:.2f} GiB, exit {rc}")
        if rc:
            print(out[-3000:])
            return rc
    print(f"{'run':<22} {'wall s':>7} {'calib s':>8} {'peak RSS GiB':>13} {'quantized':>9} {'cosine':>8}")
    cache = work / "cache"
    for method in args.methods.split(","):
        for label in ("first (miss)", "repeat (cache hit)"):
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(model),
                   str(work / f"model.{method}.int8.onnx"), str(cache), str(args.images), str(args.batch_size), method]
            s, rss, rc, out = run(cmd, repo)
            if rc:
                print(out[-3000:])
                return rc
            res = json.loads(out.strip().splitlines()[-1])
            assert res["cache_hit"] == (label != "first (miss)"), res
            cos = res["parity"]["cosine"] if res["parity"] else float("nan")
            print(f"{method + ' ' + label:<22} {s:>7.1f} {res['calibration_s']:>8.1f} {rss:>13.2f} "
                  f"{res['quantized']:>9} {cos:>8.4f}", flush=True)
            print("    phases (s): " + ", ".join(f"{k} {v:.1f}" for k, v in res["timings"].items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
