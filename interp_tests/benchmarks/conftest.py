"""`pytest --pyargs interp_tests.benchmarks` loads the benchmarks' plugin from here. Its command-line options
need it loaded before the command line is parsed: `pytest -p interp_tests.benchmarks.plugin --pyargs ...`."""

pytest_plugins = ["interp_tests.benchmarks.plugin"]
