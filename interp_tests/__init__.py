"""interp-tests: interpretability claims about sparse autoencoders as tests.

The Python API (`evaluate`, `Results`) imports the heavy libraries only when it runs:

    import interp_tests
    results = interp_tests.evaluate("cases/claims.yaml", saes="runs/*/final", compare=True)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api.evaluate import evaluate
    from .api.results import Results

__all__ = ["Results", "evaluate"]


def __getattr__(name: str) -> Any:
    if name == "evaluate":
        from .api.evaluate import evaluate

        return evaluate
    if name == "Results":
        from .api.results import Results

        return Results
    raise AttributeError(f"module 'interp_tests' has no attribute {name!r}")
