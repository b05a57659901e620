"""Re-exports interp_tests/benchmarks/test_sweep.py (see conftest.py)."""

from interp_tests.benchmarks.test_sweep import (
    test_sweep_against_separate_runs,  # noqa: F401
    test_sweep_memory_within_budget,  # noqa: F401
)
