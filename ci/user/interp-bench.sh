#!/usr/bin/env bash
# Encode-throughput benchmarks of the case files' targets, compared with the last saved run.
# Copy into your repository. The first run (no saved run yet) saves a baseline and passes.
#
#   ci/interp-bench.sh [THRESHOLD]      (default 10%: fail when a median is that much slower)
#
# Threads are pinned (--interp-bench-threads, default 1) so that runs on a shared runner compare.
# Extra pytest arguments: INTERP_BENCH_ARGS, shell-quoted (e.g. "-k 'tiny-stdlib and test_encode' --interp-bench-tokens 2048").
set -euo pipefail
PYTEST=${PYTEST:-pytest}
threshold=${1:-10%}
storage=${BENCH_STORAGE:-.benchmarks}
threads=${INTERP_BENCH_THREADS:-1}
common=(-p interp_tests.benchmarks.plugin --pyargs interp_tests.benchmarks -p no:cacheprovider --benchmark-only --benchmark-storage="$storage" --interp-bench-threads "$threads")
eval "extra=(${INTERP_BENCH_ARGS:-})"
if find "$storage" -name '*.json' 2>/dev/null | grep -q .; then
  exec "$PYTEST" "${common[@]}" --benchmark-compare --benchmark-compare-fail="median:$threshold" --benchmark-autosave "${extra[@]}"
fi
echo "interp-bench: no saved run in $storage yet: this run is saved as the baseline" >&2
exec "$PYTEST" "${common[@]}" --benchmark-autosave "${extra[@]}"
