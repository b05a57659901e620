#!/usr/bin/env bash
# GPU check: the suites and the benchmarks on CUDA, in float32 and bfloat16, in under 8 minutes.
#
#   ci/gpu-check.sh OUT_DIR      (or set OUT)
#
# Writes to OUT_DIR: tests-cuda.xml (JUnit), bench-cuda-float32.json and bench-cuda-bfloat16.json
# (pytest-benchmark --benchmark-json, extra_info holding tokens/s, GFLOP/s, fraction of the matmul ceiling,
# the steering and engine ratios) and gpu-check.log. Installs nothing from the network: it uses .venv/ (or
# $PYTHON) as it is, and only if interp-tests is missing there, installs it from $WHEELHOUSE with
# `pip --no-index`. The model hub is never contacted (HF_HUB_OFFLINE=1): hub targets are skipped.
# Each step has its own time limit, so the whole check ends in time even when one step hangs.
set -uo pipefail
cd "$(dirname "$0")/.."

out=${1:-${OUT:-}}
[ -n "$out" ] || { echo "usage: ci/gpu-check.sh OUT_DIR   (or set OUT)" >&2; exit 2; }
mkdir -p "$out"
if [ -x .venv/bin/python ]; then PY=${PYTHON:-.venv/bin/python}; else PY=${PYTHON:-python3}; fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
log="$out/gpu-check.log"

if ! "$PY" -c "import interp_tests, torch, sae_lens, transformer_lens, pytest_benchmark" 2>/dev/null; then
  if [ -n "${WHEELHOUSE:-}" ] && [ -d "$WHEELHOUSE" ]; then
    "$PY" -m pip install -q --no-index --find-links "$WHEELHOUSE" -e . || exit 2
  else
    echo "gpu-check: $PY lacks interp-tests or its dependencies; run ci/setup.sh (TORCH_SPEC=a CUDA build) first, or set WHEELHOUSE" >&2
    exit 2
  fi
fi
"$PY" - <<'PYEOF' 2>&1 | tee "$log" || exit 2
import sys, torch
if not torch.cuda.is_available():
    sys.exit(f"gpu-check: torch {torch.__version__} sees no CUDA device (a CPU build of torch, or no driver)")
print(f"gpu-check: torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}")
PYEOF

status=0
step() {  # step SECONDS NAME pytest-args...: run one step under its own limit, remember the first failure
  local limit=$1 name=$2; shift 2
  local t0=$SECONDS rc=0
  timeout --kill-after=10 "$limit" "$PY" -m pytest "$@" >>"$log" 2>&1 || rc=$?
  echo "gpu-check: $name: exit $rc in $((SECONDS - t0)) s" | tee -a "$log"
  [ "$status" -ne 0 ] || status=$rc
}

# 1. the YAML cases and the plugin's own tests, models and SAEs on the GPU (hub suites stay skipped)
step 150 "tests (cuda)" cases/ tests/ -q --interp-device cuda --junitxml="$out/tests-cuda.xml"
# 2. the benchmarks, float32 then bfloat16 (about 2 minutes each on one H100, most of it model building)
for dtype in float32 bfloat16; do
  step 150 "benchmarks (cuda, $dtype)" benchmarks/ -q --benchmark-only --interp-device cuda --interp-dtype "$dtype" \
    --benchmark-json="$out/bench-cuda-$dtype.json"
done
tail -n 40 "$log"
exit "$status"
