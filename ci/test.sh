#!/usr/bin/env bash
# The project's checks, as CI runs them: lint, types, then the test command from README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/setup.sh
.venv/bin/ruff check interp_tests tests benchmarks scripts conftest.py
.venv/bin/mypy
.venv/bin/pytest -q
bash ci/bench.sh smoke  # every benchmark body once, untimed: they keep working
