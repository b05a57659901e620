#!/usr/bin/env bash
# Runs case files and writes JUnit XML: ci/run-cases.sh [PYTEST ARGS...]
#   REPORT_DIR (default reports/) receives junit.xml. Any extra arguments go to pytest, e.g.
#   ci/run-cases.sh cases/gpt2-small --interp-device cuda --interp-compare
set -euo pipefail
cd "$(dirname "$0")/.."
REPORT_DIR=${REPORT_DIR:-reports}
mkdir -p "$REPORT_DIR"
if [ $# -eq 0 ]; then set -- cases/; fi
exec .venv/bin/pytest -p no:cacheprovider --junitxml="$REPORT_DIR/junit.xml" -o junit_family=xunit1 "$@"
