#!/usr/bin/env bash
# Benchmark regression gate for benchmarks/ (docs/benchmarks.md).
#
#   ci/bench.sh save [NAME]      run the benchmarks and save the run (as NAME, else numbered: --benchmark-autosave)
#   ci/bench.sh compare [REF]    run them again and fail when any median is more than $BENCH_FAIL (default 10%)
#                                slower than REF (a saved run's number or name; default: the latest saved run)
#   ci/bench.sh smoke            each benchmark body once, untimed (--benchmark-disable), 1 thread: a quick CI check
#
# Arguments after `--` go to pytest, e.g. `ci/bench.sh compare -- --interp-device cuda --interp-dtype bfloat16`.
# Runs are stored in $BENCH_STORAGE (default .benchmarks/, git-ignored) under one folder per machine id
# (OS-Python-version-bits): keep that folder between CI runs (a cache or an artifact), save on the main
# branch, compare on pull requests, and only compare runs of the same runner kind and the same options.
# A shared runner's noise can exceed 10%: use a quiet runner, --interp-bench-threads 1, or a larger BENCH_FAIL.
# JEMALLOC=/path/to/libjemalloc.so.2 runs under jemalloc with page purging off (LD_PRELOAD, MALLOC_CONF):
# on CPU, large tensors then reuse memory instead of paying page faults (docs/benchmarks.md). Compare only
# runs made with the same allocator (extra_info records it).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '3,8p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

if [ -x .venv/bin/python ]; then PY=${PYTHON:-.venv/bin/python}; else PY=${PYTHON:-python3}; fi
mode=${1:-}
[ $# -gt 0 ] && shift
ref=""
if [ $# -gt 0 ] && [ "$1" != "--" ]; then ref=$1; shift; fi
if [ $# -gt 0 ] && [ "$1" = "--" ]; then shift; fi

if [ -n "${JEMALLOC:-}" ]; then
  [ -f "$JEMALLOC" ] || { echo "ci/bench.sh: JEMALLOC=$JEMALLOC is not a file (expected libjemalloc.so.2)" >&2; exit 2; }
  export LD_PRELOAD="$JEMALLOC${LD_PRELOAD:+:$LD_PRELOAD}" MALLOC_CONF=${MALLOC_CONF:-dirty_decay_ms:-1,muzzy_decay_ms:-1}
fi

storage=${BENCH_STORAGE:-.benchmarks}
timed=(benchmarks/ --benchmark-only --benchmark-storage="$storage" --benchmark-sort=fullname
       --benchmark-columns=min,median,max,rounds)

case "$mode" in
  save)
    if [ -n "$ref" ]; then save=(--benchmark-save="$ref"); else save=(--benchmark-autosave); fi
    exec "$PY" -m pytest "${timed[@]}" "${save[@]}" "$@" ;;
  compare)
    if ! find "$storage" -name '*.json' 2>/dev/null | grep -q .; then
      echo "ci/bench.sh compare: no saved run in $storage: run 'ci/bench.sh save' on the baseline first" >&2
      exit 2
    fi
    exec "$PY" -m pytest "${timed[@]}" --benchmark-compare${ref:+=$ref} \
      --benchmark-compare-fail="median:${BENCH_FAIL:-10%}" "$@" ;;
  smoke)
    # one torch thread: a smoke run checks the code, and on a runner whose cores are shared 2-thread
    # kernels can be many times slower (docs/benchmarks.md); a later --interp-bench-threads overrides it
    exec "$PY" -m pytest benchmarks/ --benchmark-disable -q --interp-bench-threads 1 "$@" ;;
  *)
    usage ;;
esac
