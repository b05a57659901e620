"""The benchmarks of interp-tests, shipped with the package so that a pip install can run them:

    pytest -p interp_tests.benchmarks.plugin --pyargs interp_tests.benchmarks [--interp-bench-... options]
    pytest --pyargs interp_tests.benchmarks            # the same with the default options

Nothing at runtime imports this package: the pytest plugin (`interp_tests.pytest_plugin`) does not, and the
benchmark options exist only where `interp_tests.benchmarks.plugin` is loaded (by `-p`, by this folder's
conftest, or by the repository's `benchmarks/conftest.py`). See docs/benchmarks.md.

Modules: `builtin` (the GPT-2-small-shaped target and random inputs), `targets` (which targets to bench),
`timing` (interleaved rounds, synchronisation, the environment), `flops`, `workload` (the engine
workload and its baselines), `summary` (the end-of-session table), `markdown` (the docs table), `plugin`
(options, parametrization, fixtures), and the `test_*.py` benchmarks.

May import: every room (it is the top layer; its plugin reads the pytest plugin's session). Imported by: nothing.
"""
