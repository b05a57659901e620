"""Directory collectors that collect their directory once per session. No logic beyond pytest's own.

pytest re-collects the directory of every file named on the command line ("files given directly multiple
times on the command line should not be deduplicated"), so `pytest a.yaml b.yaml ...` over n files of one
directory visits n^2 files. These collect as pytest's `Dir` and `Package` do (the same hooks, in the same
order) and return the children of their first collection again; pytest then picks each named file among them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest


class OnceDirectory(pytest.Directory):
    """pytest's `Dir` (a directory without `__init__.py`), collected once. `Dir` itself is final: its
    `collect` is written again here, from the public hooks."""

    _children: list[Any] | None = None

    def collect(self) -> Iterable[pytest.Item | pytest.Collector]:
        if self._children is None:
            self._children = list(self._collect())
        return self._children

    def _collect(self) -> Iterable[pytest.Item | pytest.Collector]:
        config, ihook = self.config, self.ihook
        try:
            with os.scandir(self.path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except FileNotFoundError:
            return
        for entry in entries:
            try:
                is_dir, is_file = entry.is_dir(), entry.is_file()
            except OSError:
                continue
            path = Path(entry.path)
            if is_dir:
                if not self.session.isinitpath(path, with_parents=True) and ihook.pytest_ignore_collect(collection_path=path, config=config):
                    continue
                col = ihook.pytest_collect_directory(path=path, parent=self)
                if col is not None:
                    yield col
            elif is_file:
                if not self.session.isinitpath(path) and ihook.pytest_ignore_collect(collection_path=path, config=config):
                    continue
                yield from ihook.pytest_collect_file(file_path=path, parent=self)


class OncePackage(pytest.Package):
    """pytest's `Package` (a directory with `__init__.py`), collected once."""

    _children: list[Any] | None = None

    def collect(self) -> Iterable[pytest.Item | pytest.Collector]:
        if self._children is None:
            self._children = list(super().collect())
        return self._children


def collected_once(path: Path, parent: pytest.Collector) -> pytest.Collector:
    """The directory's collector as pytest would make it (a Package where it has an __init__.py), collected once."""
    if (path / "__init__.py").is_file():
        return OncePackage.from_parent(parent, path=path)
    return OnceDirectory.from_parent(parent, path=path)
