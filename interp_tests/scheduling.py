"""`pytest -n N --dist loadgroup`: the cases of one model run on one worker, which loads the model once.

The plugin marks every case `xdist_group("interp-<model>")`. pytest-xdist 3.8 hands that group to its
scheduler by appending `@<group>` to the node id, which pytest 9.2's structured node ids no longer take
(pytest-xdist issue #1386): the group is silently lost and the cases are spread test by test, so every
worker loads every model. This scheduler is xdist's own `loadgroup` where the suffix arrives, and reads the
group from the case file a node id names where it does not. Loaded by the plugin's
`pytest_xdist_make_scheduler` on xdist's controller only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xdist.scheduler import LoadGroupScheduling

from .casefile import load_case_file
from .errors import InterpTestsError

CASE_SUFFIXES = (".yaml", ".yml")


def model_group(path: Path) -> str | None:
    """The xdist group of a case file's cases (`interp-<model>`, as items.py marks them), None if unreadable."""
    try:
        return f"interp-{load_case_file(path).model.target.model}"
    except (InterpTestsError, OSError):
        return None  # an unreadable file is one error item: any worker reports it


class CaseModelScheduling(LoadGroupScheduling):
    """xdist's `loadgroup`, with the group of a case read from its case file when the node id lacks it."""

    def __init__(self, config: Any, log: Any = None) -> None:
        super().__init__(config, log)
        self.rootpath = Path(config.rootpath)
        self.groups: dict[str, str | None] = {}  # case file (as the node id names it) -> its group

    def _split_scope(self, nodeid: str) -> str:
        scope = str(super()._split_scope(nodeid))
        if scope != nodeid:
            return scope  # xdist's own `@group` suffix arrived
        path, sep, _ = nodeid.partition("::")
        if not sep or not path.endswith(CASE_SUFFIXES):
            return scope
        if path not in self.groups:
            self.groups[path] = model_group(self.rootpath / path)
        return self.groups[path] or scope
