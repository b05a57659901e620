"""Re-exports interp_tests/benchmarks/test_encode.py (see conftest.py)."""

from interp_tests.benchmarks.test_encode import test_encode  # noqa: F401
