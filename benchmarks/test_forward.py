"""Re-exports interp_tests/benchmarks/test_forward.py (see conftest.py)."""

from interp_tests.benchmarks.test_forward import test_forward_encode  # noqa: F401
