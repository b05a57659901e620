"""Re-exports interp_tests/benchmarks/test_collection.py (see conftest.py)."""

from interp_tests.benchmarks.test_collection import test_collecting_named_case_files  # noqa: F401
