#!/usr/bin/env bash
# The project's checks, exactly as CI runs them (.ci/run): setup, lint, types, tests, benchmark smoke run.
exec bash "$(dirname "$0")/../.ci/run"
