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

from ..cases.casefile import load_case_file
from ..common.errors import InterpTestsError

CASE_SUFFIXES = (".yaml", ".yml")


def model_group(path: Path) -> str | None:
    """The group of a case file's cases (`interp-<model>`), None if the file is missing or unreadable."""
    if not path.is_file():
        return None
    try:
        return f"interp-{load_case_file(path).model.target.model}"
    except (InterpTestsError, OSError):
        return None  # an unreadable file is one error item: any worker reports it


class CaseModelScheduling(LoadGroupScheduling):
    """xdist's `loadgroup`, a case grouped by the model its case file names."""

    def __init__(self, config: Any, log: Any = None) -> None:
        super().__init__(config, log)
        self.bases = (Path(config.rootpath), Path(config.invocation_params.dir))  # a file outside the rootdir is named from where pytest ran
        self.groups: dict[str, str | None] = {}  # case file (as the node id names it) -> its group

    def _split_scope(self, nodeid: str) -> str:
        path, sep, _ = nodeid.partition("::")
        if sep and path.endswith(CASE_SUFFIXES):  # before xdist's rule: a case id may hold an `@`
            if path not in self.groups:
                self.groups[path] = next((g for g in (model_group(base / path) for base in self.bases) if g), None)
            if self.groups[path]:
                return str(self.groups[path])
        return str(super()._split_scope(nodeid))
