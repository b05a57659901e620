"""Re-exports interp_tests/benchmarks/test_steer.py (see conftest.py)."""

from interp_tests.benchmarks.test_steer import test_steer  # noqa: F401
