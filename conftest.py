"""Repository-level pytest configuration (the plugin itself is registered by its pytest11 entry point)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

# Suites that need the model hub run only when named on the command line (`pytest cases/gpt2-small`).
HUB_SUITES = ("cases/gpt2-small",)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    for suite in HUB_SUITES:
        hub = (config.rootpath / suite).resolve()
        if collection_path.resolve() != hub:
            continue
        named = [(config.invocation_params.dir / str(a).split("::")[0]).resolve() for a in config.args]
        if not any(p == hub or p.is_relative_to(hub) for p in named):
            return True
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The long fuzz run (`-m fuzz`) runs only when asked for: otherwise it is deselected, not skipped."""
    if "fuzz" in str(config.getoption("-m") or ""):
        return
    long_runs = [item for item in items if item.get_closest_marker("fuzz") is not None]
    if long_runs:
        config.hook.pytest_deselected(items=long_runs)
        items[:] = [item for item in items if item.get_closest_marker("fuzz") is None]
