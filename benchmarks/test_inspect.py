"""Re-exports interp_tests/benchmarks/test_inspect.py (see conftest.py)."""

from interp_tests.benchmarks.test_inspect import test_inspect_end_to_end  # noqa: F401
