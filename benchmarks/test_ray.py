"""Re-exports interp_tests/benchmarks/test_ray.py (see conftest.py)."""

from interp_tests.benchmarks.test_ray import test_sweep_on_a_ray_cluster  # noqa: F401
