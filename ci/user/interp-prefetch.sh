#!/usr/bin/env bash
# Download every model and SAE that the case files (and the candidate) need into the local HF cache,
# so that the gate itself can run with HF_HUB_OFFLINE=1. Copy into your repository next to interp-gate.sh.
#
#   ci/interp-prefetch.sh [CANDIDATE] [CASE FILES OR DIRECTORIES...]     (default: cases/)
set -euo pipefail
PYTEST=${PYTEST:-pytest}
args=()
if [ $# -ge 1 ]; then
  args+=(--interp-sae "$1")
  shift
fi
if [ $# -eq 0 ]; then set -- cases/; fi
exec "$PYTEST" "$@" -p no:cacheprovider -q --interp-prefetch "${args[@]}"
