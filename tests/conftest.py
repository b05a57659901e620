"""Test-session setup for the plugin's own tests."""

from __future__ import annotations

import importlib
import os
import pkgutil
import warnings

import pytest


def import_up_front() -> None:
    """pytester's in-process runs restore sys.modules afterwards, dropping modules first imported inside a
    run; re-importing torch's C extensions in the same process then crashes, and a project module imported
    first inside a run would be dropped after it, so the next run would import a second copy (a test that
    patches the first would patch a stale module). Import them once, up front."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in (
            "ruamel.yaml.composer",  # yaml_source caches classes built on these: keep one copy
            "ruamel.yaml.constructor",
            "ruamel.yaml.error",
            "ruamel.yaml.events",
            "ruamel.yaml.nodes",
            "ruamel.yaml.scanner",
            "sae_lens",
            "torch",
            "transformer_lens",
        ):
            importlib.import_module(name)
    import interp_tests

    skipped = ("interp_tests.__main__", "interp_tests.benchmarks", "interp_tests.bundled", "interp_tests.data")  # `python -m` runs the CLI; benchmarks: pytest-benchmark's; the rest: data
    for module in pkgutil.walk_packages(interp_tests.__path__, "interp_tests."):
        if not module.name.startswith(skipped):
            importlib.import_module(module.name)


# glibc hands freed blocks over 128 kB back to the OS and page-faults them in again on the next allocation of
# that size: every batch's activations and logits paid it (a quarter of the quick loop's system time). These
# keep them in the process (what jemalloc does for `ci/bench.sh`). Read by glibc at a process's start: set here,
# in xdist's controller, they reach its workers.
GLIBC_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(1 << 32), "MALLOC_TOP_PAD_": str(64 << 20)}


def pytest_configure(config: pytest.Config) -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if getattr(config.option, "numprocesses", None) and not worker:
        for name, value in GLIBC_MALLOC.items():
            os.environ.setdefault(name, value)
        return  # xdist's controller runs no test: only its workers need the imports (6 s of CPU each)
    import_up_front()
    if worker:
        # Under xdist (`pytest -n 2`) each worker is a process of its own: one torch thread each, so that two
        # workers on two cores do not spin-wait for each other's OpenMP threads (the subprocesses a test
        # starts inherit the setting through OMP_NUM_THREADS).
        import torch

        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)


@pytest.fixture
def pytester(pytester: pytest.Pytester, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A run inside a test loads this project's plugin and pytest's own, not every plugin installed: loading
    the others (xdist, pytest-benchmark, which starts `git` and `file` to name the machine, ...) cost about
    30 ms of each of the quick loop's 180 in-process runs. The slow tests, which run xdist and the
    benchmarks, and those marked `installed_plugins` keep every plugin installed."""
    if request.node.get_closest_marker("slow") is None and request.node.get_closest_marker("installed_plugins") is None:
        monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
        monkeypatch.setenv("PYTEST_PLUGINS", "interp_tests.pytest_plugin.hooks")
        # named so, the plugin (imported by this process already) is not rewritten, and pytest would say so
        monkeypatch.setenv("PYTEST_ADDOPTS", "-W ignore::pytest.PytestAssertRewriteWarning")
    return pytester
