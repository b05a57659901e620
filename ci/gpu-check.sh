#!/usr/bin/env bash
# GPU check: the suites and the benchmarks on CUDA, in float32 and bfloat16, in under 8 minutes.
#
#   ci/gpu-check.sh OUT_DIR      (or set OUT)
#
# Writes to OUT_DIR: tests-cuda.xml (JUnit), bench-cuda-float32.json and bench-cuda-bfloat16.json
# (pytest-benchmark --benchmark-json, extra_info holding tokens/s, GFLOP/s, fraction of the matmul ceiling,
# the steering and engine ratios) and gpu-check.log (with the one-screen summaries).
# Installs nothing from the network. Python: .venv/ if there is one, else $PYTHON, else python3. When that
# Python lacks interp-tests' dependencies, they are installed from $WHEELHOUSE (default .whl/, made by
# ci/gpu-wheels.sh on a machine with a package index) with `pip --no-index --no-deps`, and interp-tests
# itself from this checkout (editable, no build isolation). The model hub is never contacted
# (HF_HUB_OFFLINE=1): hub targets are skipped. Each step has its own time limit, so the whole check ends
# in time even when one step hangs. GPU_CHECK_DEVICE=cpu runs the same steps on the CPU (a dry run of this
# script on a machine without a GPU); GPU_CHECK_STEP_S sets each step's limit (default 150),
# GPU_CHECK_DTYPES the benchmark dtypes (default "float32 bfloat16").
set -uo pipefail
cd "$(dirname "$0")/.."

out=${1:-${OUT:-}}
[ -n "$out" ] || { echo "usage: ci/gpu-check.sh OUT_DIR   (or set OUT)" >&2; exit 2; }
mkdir -p "$out"
if [ -x .venv/bin/python ]; then PY=${PYTHON:-.venv/bin/python}; else PY=${PYTHON:-python3}; fi
case $PY in */*) PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")" ;; esac  # absolute: checks run from /
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
log="$out/gpu-check.log"

device=${GPU_CHECK_DEVICE:-cuda}
limit=${GPU_CHECK_STEP_S:-150}  # seconds per step
wheels=${WHEELHOUSE:-.whl}
ready() {  # from /, so that the checkout itself is not on sys.path: what pytest's subprocesses will see
  (cd / && "$PY" -c "import interp_tests.pytest_plugin.hooks, torch, sae_lens, transformer_lens, pytest_benchmark, ruamel.yaml")
}
if ! ready 2>/dev/null; then
  if ls "$wheels"/*.whl >/dev/null 2>&1; then
    echo "gpu-check: installing $(ls "$wheels"/*.whl | wc -l) wheels from $wheels into $("$PY" -c 'import sys; print(sys.prefix)')"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --disable-pip-version-check "$wheels"/*.whl || exit 2
    if ! "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --disable-pip-version-check -e .; then
      # no setuptools >= 69 to build it with: load the plugin from the checkout instead of its entry point
      echo "gpu-check: editable install failed; using the checkout through PYTHONPATH and PYTEST_PLUGINS"
      export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
      # an interp_tests.egg-info in the checkout already declares the entry point: registering twice fails
      "$PY" -c "import importlib.metadata as m, sys; sys.exit(any(e.name == 'interp_tests' for e in m.entry_points(group='pytest11')))" \
        && export PYTEST_PLUGINS=interp_tests.pytest_plugin.hooks
    fi
    ready || exit 2
  else
    echo "gpu-check: $PY lacks interp-tests or its dependencies: run ci/setup.sh (TORCH_SPEC=a CUDA build) first, or ci/gpu-wheels.sh where an index is reachable and carry .whl/ here (or set WHEELHOUSE)" >&2
    exit 2
  fi
fi
GPU_CHECK_DEVICE=$device "$PY" - <<'PYEOF' 2>&1 | tee "$log" || exit 2
import os, sys, torch
if os.environ["GPU_CHECK_DEVICE"] == "cpu":
    print(f"gpu-check: dry run on the CPU, torch {torch.__version__}, Python {sys.version.split()[0]}")
    sys.exit(0)
if not torch.cuda.is_available():
    sys.exit(f"gpu-check: torch {torch.__version__} sees no CUDA device (a CPU build of torch, or no driver)")
print(f"gpu-check: torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}, Python {sys.version.split()[0]}")
PYEOF

status=0
step() {  # step SECONDS NAME pytest-args...: run one step under its own limit, remember the first failure
  local limit=$1 name=$2; shift 2
  local t0=$SECONDS rc=0
  # SIGINT at the limit: pytest ends the session as on Ctrl-C, and pytest-benchmark still writes its JSON
  # with the benchmarks done so far
  timeout --signal=INT --kill-after=15 "$limit" "$PY" -m pytest "$@" >>"$log" 2>&1 || rc=$?
  local why=""
  [ "$rc" -ne 124 ] || why=" (hit its ${limit} s limit: results so far kept)"
  echo "gpu-check: $name: exit $rc in $((SECONDS - t0)) s$why" | tee -a "$log"
  [ "$status" -ne 0 ] || status=$rc
}

# 1. the YAML cases and the plugin's own tests, models and SAEs on the GPU (hub suites stay skipped)
step "$limit" "tests ($device)" cases/ tests/ -q --interp-device "$device" --junitxml="$out/tests-$device.xml"
# 2. the benchmarks, float32 then bfloat16 (about 2 minutes each on one H100, most of it model building)
dry=()  # the CPU dry run checks the script, not the speed: one small size, one round
[ "$device" = cuda ] || dry=(--interp-bench-tokens 256 --interp-bench-rounds 1 --interp-bench-new-tokens 4 --interp-bench-cases 2 -k "not engine")
for dtype in ${GPU_CHECK_DTYPES:-float32 bfloat16}; do
  step "$limit" "benchmarks ($device, $dtype)" benchmarks/ -q --benchmark-only --interp-device "$device" --interp-dtype "$dtype" \
    --benchmark-json="$out/bench-$device-$dtype.json" "${dry[@]}"
done
tail -n 40 "$log"
exit "$status"
