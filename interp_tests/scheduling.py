"""`pytest -n N --dist loadgroup`: the cases of one model run on one worker, which loads the model once.

pytest-xdist's `loadgroup` groups tests by their `xdist_group` mark, which it hands to its scheduler by
appending `@<group>` to the node id; pytest 9.2's structured node ids no longer take that suffix
(pytest-xdist issue #1386), so the groups are silently lost. Case items carry no such mark (it would also
make `-k group` select every case): this scheduler groups a case by the model its case file names, and
keeps xdist's own rule for every other test. Loaded by the plugin's `pytest_xdist_make_scheduler` on
xdist's controller only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xdist.scheduler import LoadGroupScheduling

from .casefile import load_case_file
from .errors import InterpTestsError

CASE_SUFFIXES = (".yaml", ".yml")


def model_group(path: Path) -> str | None:
    """The group of a case file's cases (`interp-<model>`), None if the file is unreadable."""
    try:
        return f"interp-{load_case_file(path).model.target.model}"
    except (InterpTestsError, OSError):
        return None  # an unreadable file is one error item: any worker reports it


class CaseModelScheduling(LoadGroupScheduling):
    """xdist's `loadgroup`, a case grouped by the model its case file names."""

    def __init__(self, config: Any, log: Any = None) -> None:
        super().__init__(config, log)
        self.rootpath = Path(config.rootpath)
        self.groups: dict[str, str | None] = {}  # case file (as the node id names it) -> its group

    def _split_scope(self, nodeid: str) -> str:
        scope = str(super()._split_scope(nodeid))
        if scope != nodeid:
            return scope  # a test of the user's own with an `xdist_group` mark, where the suffix arrives
        path, sep, _ = nodeid.partition("::")
        if not sep or not path.endswith(CASE_SUFFIXES):
            return scope
        if path not in self.groups:
            self.groups[path] = model_group(self.rootpath / path)
        return self.groups[path] or scope
