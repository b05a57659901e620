"""Re-exports interp_tests/benchmarks/test_corpus.py (see conftest.py)."""

from interp_tests.benchmarks.test_corpus import (
    test_corpus_intervals_overhead,  # noqa: F401
    test_corpus_million_tokens,  # noqa: F401,E402
    test_corpus_twelve_saes,  # noqa: F401
)
