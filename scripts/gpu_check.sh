#!/usr/bin/env bash
# GPU check for attnvgg: the full-size model (VGG16 + global attention, 224 px, random
# weights with gamma 0.5) through export -> simplify -> fp16 / int8 -> three TensorRT engines
# -> parity of each engine against PyTorch -> latency, then one summary.
#
# Usage: scripts/gpu_check.sh [OUT_DIR]      (default: gpu_check_out)
#   PRESET=edge scripts/gpu_check.sh         build with the edge preset (default: server)
#   ATTNVGG="python -m attnvgg" scripts/gpu_check.sh   use a source checkout
#
# Needs: an NVIDIA GPU with its driver, torch with CUDA, TensorRT 10.x or 11.x, onnxruntime
# (pip install "attnvgg[gpu]"), ~10 GB free disk, 10-30 minutes. Exit status: 0 when every
# step passed, 1 when a step failed (the summary says which), 2 when a prerequisite is missing.
set -euo pipefail

OUT=${1:-gpu_check_out}
PRESET=${PRESET:-server}
ATTNVGG=${ATTNVGG:-attnvgg}
PYTHON=${PYTHON:-python3}
INPUT_SIZE=224
GAMMA=0.5

die() { echo "gpu_check: $*" >&2; exit 2; }

# ------------------------------------------------------------------ prerequisites
command -v nvidia-smi >/dev/null 2>&1 || die "nvidia-smi not found: this check needs an NVIDIA GPU and driver"
nvidia-smi -L >/dev/null 2>&1 || die "nvidia-smi cannot see a GPU (driver not loaded?)"
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found; set PYTHON=/path/to/python"
# shellcheck disable=SC2086
$ATTNVGG --version >/dev/null 2>&1 || die "'$ATTNVGG' does not run; install attnvgg (pip install \"attnvgg[gpu]\") or set ATTNVGG"
"$PYTHON" - <<'EOF' || die "Python prerequisites missing (see above); install with: pip install \"attnvgg[gpu]\""
import sys
missing = []
try:
    import torch
    if not torch.cuda.is_available():
        missing.append(f"torch {torch.__version__} sees no CUDA GPU (CUDA build: {torch.version.cuda})")
except ImportError:
    missing.append("torch is not installed")
try:
    import onnxruntime  # noqa: F401
except ImportError:
    missing.append("onnxruntime is not installed")
from attnvgg.runners.tensorrt import tensorrt_available
ok, why = tensorrt_available()
if not ok:
    missing.append(why)
for m in missing:
    print("gpu_check: missing:", m, file=sys.stderr)
if not missing:
    print("gpu_check:", why)
sys.exit(1 if missing else 0)
EOF
for cmd in export simplify convert calibrate build validate bench; do
    # shellcheck disable=SC2086
    $ATTNVGG "$cmd" --help >/dev/null 2>&1 || die "'attnvgg $cmd' is not available in this install (not merged yet?)"
done
mkdir -p "$OUT/logs"
free_kb=$(df -Pk "$OUT" | awk 'NR==2 {print $4}')
[ "${free_kb:-0}" -ge $((10 * 1024 * 1024)) ] || die "less than 10 GB free in $OUT"

# ------------------------------------------------------------------ steps
declare -a NAMES=() STATUS=() SECONDS_TAKEN=()
FAILED=0

# step NAME CMD...: run, log to $OUT/logs/NAME.log, record pass/fail and time; never stops the script.
step() {
    local name=$1; shift
    echo "== $name: $*"
    local t0 rc=0
    t0=$(date +%s)
    if "$@" 2>&1 | tee "$OUT/logs/$name.log"; then rc=0; else rc=$?; fi
    NAMES+=("$name"); SECONDS_TAKEN+=($(( $(date +%s) - t0 )))
    if [ "$rc" -eq 0 ]; then STATUS+=("pass"); else STATUS+=("FAIL (exit $rc)"); FAILED=1; fi
    return 0
}
have() { [ -s "$1" ] || { echo "gpu_check: $1 was not written; skipping what needs it" >&2; return 1; }; }

# shellcheck disable=SC2086
step export $ATTNVGG export --input-size "$INPUT_SIZE" --gamma "$GAMMA" --out "$OUT/model.onnx"
if have "$OUT/model.onnx"; then
    # shellcheck disable=SC2086
    step simplify $ATTNVGG simplify "$OUT/model.onnx" --out "$OUT/model.sim.onnx"
fi
if have "$OUT/model.sim.onnx"; then
    # shellcheck disable=SC2086
    step convert-fp16 $ATTNVGG convert "$OUT/model.sim.onnx" --precision fp16 --out "$OUT/model.fp16.onnx"
    # shellcheck disable=SC2086
    step calibrate-int8 $ATTNVGG calibrate "$OUT/model.sim.onnx" --out "$OUT/model.int8.onnx"
fi
ONNX=()
for f in "$OUT/model.sim.onnx" "$OUT/model.fp16.onnx" "$OUT/model.int8.onnx"; do [ -s "$f" ] && ONNX+=("$f"); done
ENGINES=()
if [ "${#ONNX[@]}" -gt 0 ]; then
    # shellcheck disable=SC2086
    step build $ATTNVGG build "${ONNX[@]}" --target "$PRESET" --out "$OUT/engines"
    for e in "$OUT/engines/model.sim.fp32.engine" "$OUT/engines/model.fp16.engine" "$OUT/engines/model.int8.engine"; do
        [ -s "$e" ] && ENGINES+=("$e")
    done
fi
for e in "${ENGINES[@]}"; do
    base=$(basename "$e" .engine)
    # shellcheck disable=SC2086
    step "validate-$base" $ATTNVGG validate "$e" --json "$OUT/validate.$base.json"
done
if [ "${#ENGINES[@]}" -gt 0 ]; then
    # shellcheck disable=SC2086
    step bench $ATTNVGG bench "${ENGINES[@]}"
fi

# ------------------------------------------------------------------ summary
echo
echo "================ attnvgg GPU check summary ($OUT, preset $PRESET) ================"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | sed 's/^/GPU: /'
for i in "${!NAMES[@]}"; do
    printf '%-28s %-16s %6ss\n' "${NAMES[$i]}" "${STATUS[$i]}" "${SECONDS_TAKEN[$i]}"
done
"$PYTHON" - "${ENGINES[@]}" <<'EOF'
import json, sys
for e in sys.argv[1:]:
    try:
        s = json.load(open(e + ".json"))
    except (OSError, ValueError) as exc:
        print(f"{e}: no readable sidecar ({exc})")
        continue
    p = s["profiles"][0]
    name, shapes = next(iter(p.items()))
    print(f"{s['engine']:<26} {s['precision']:<5} TensorRT {s['tensorrt_version']} on {s['gpu']['name']} "
          f"(cc {s['gpu']['compute_capability']}), {s['engine_bytes'] / 2**20:.0f} MiB, built in {s['build_seconds']:.0f} s, "
          f"batch {shapes['min'][0]}/{shapes['opt'][0]}/{shapes['max'][0]}")
EOF
echo "logs: $OUT/logs/  trtexec equivalents: $OUT/engines/*.trtexec.sh"
if [ "$FAILED" -ne 0 ]; then echo "RESULT: FAILED (see the steps marked FAIL)"; exit 1; fi
echo "RESULT: all steps passed"
