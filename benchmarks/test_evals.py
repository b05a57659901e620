"""Re-exports interp_tests/benchmarks/test_evals.py (see conftest.py)."""

from interp_tests.benchmarks.test_evals import test_corpus_metrics_against_run_evals  # noqa: F401
