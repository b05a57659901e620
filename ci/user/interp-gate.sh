#!/usr/bin/env bash
# Gate a candidate SAE checkpoint on the claims and reference baselines of a repository's case files.
# Copy into your repository (e.g. ci/interp-gate.sh); it needs only interp-tests installed (pip).
#
#   ci/interp-gate.sh CANDIDATE [CASE FILES OR DIRECTORIES...]     (default: cases/)
#
# CANDIDATE: a SAELens-format directory (cfg.json + sae_weights.safetensors) or RELEASE:ID.
# Writes $OUT/junit.xml and $OUT/drift.md (OUT defaults to interp-report/); appends the Markdown to
# $GITHUB_STEP_SUMMARY when that is set. Exit status: pytest's (0 all claims hold and nothing drifted).
# Extra pytest options: INTERP_PYTEST_ARGS (e.g. "--interp-device cuda -n 2 --dist loadgroup").
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 CANDIDATE [CASE FILES OR DIRECTORIES...]" >&2
  exit 2
fi
candidate=$1
shift
if [ $# -eq 0 ]; then set -- cases/; fi
out=${OUT:-interp-report}
mkdir -p "$out"
PYTEST=${PYTEST:-pytest}
status=0
# shellcheck disable=SC2086  # INTERP_PYTEST_ARGS is a list of words
"$PYTEST" "$@" -p no:cacheprovider --interp-sae "$candidate" --interp-compare \
  --junitxml="$out/junit.xml" --interp-md "$out/drift.md" ${INTERP_PYTEST_ARGS:-} || status=$?
if [ -n "${GITHUB_STEP_SUMMARY:-}" ] && [ -f "$out/drift.md" ]; then
  cat "$out/drift.md" >> "$GITHUB_STEP_SUMMARY"
fi
exit "$status"
