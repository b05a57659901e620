"""Re-exports interp_tests/benchmarks/test_engine.py (see conftest.py)."""

from interp_tests.benchmarks.test_engine import test_engine_workload  # noqa: F401
