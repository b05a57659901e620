"""Re-exports interp_tests/benchmarks/test_matching.py (see conftest.py)."""

from interp_tests.benchmarks.test_matching import test_matching  # noqa: F401
