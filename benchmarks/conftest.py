"""`pytest benchmarks/` in a checkout: the benchmarks live in the package (interp_tests/benchmarks/, so that a
pip install can run them with `pytest -p interp_tests.benchmarks.plugin --pyargs interp_tests.benchmarks`);
this folder loads their plugin and re-exports each test module, so node ids and saved runs
(`benchmarks/test_encode.py::test_encode[...]`) stay what they were. See docs/benchmarks.md."""

pytest_plugins = ["interp_tests.benchmarks.plugin"]
