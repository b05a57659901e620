"""CaseFile(pytest.File) and CaseItem(pytest.Item): collect, runtest, repr_failure, reportinfo. Translation only:
which cases run on what is `run/plans.py`, running one is `run/session.py` `Session.run_plan`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..cases.plan import CasePlan
from ..common.echo import visible
from ..common.errors import CaseFileError
from ..run.session import Session

STATE = pytest.StashKey[Session]()


class CaseFailed(Exception):
    """Raised by CaseItem.runtest when at least one check fails; its text is the whole report."""


def display(path: Path, cwd: Path) -> Path:
    """The path as the user would type it: relative to where pytest was started, when it is below it."""
    try:
        return path.resolve().relative_to(cwd.resolve())
    except ValueError:
        return path


def item_name(case_id: str) -> str:
    """A case id as a pytest node name: `::` would split a node id, so it is written `:_:`; control characters
    are written as escapes (`\\x1b`), so that no id reaches the terminal raw."""
    return visible(case_id.replace("::", ":_:"))


class CaseFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        from ..cases.casefile import load_case_file

        shown = display(self.path, self.config.invocation_params.dir)
        try:
            spec = load_case_file(self.path, shown)
            items = list(self._items(spec))
        except CaseFileError as exc:
            yield InvalidCaseFile.from_parent(self, name="<case file>", problem=str(exc))
            return
        except Exception as exc:  # a bug must not stop the other files: report it as this file's error
            problem = f"{shown}:1: <file>: internal error {type(exc).__name__}: {visible(str(exc)[:300])} (a bug in interp-tests: please report it with this file)"
            yield InvalidCaseFile.from_parent(self, name="<case file>", problem=problem)
            return
        yield from items

    def _items(self, spec: Any) -> Iterator[CaseItem]:
        from ..run.plans import case_plans

        for name, plan in case_plans(self.config.stash[STATE], spec, self.path):
            item = CaseItem.from_parent(self, name=item_name(name), plan=plan)
            item.add_marker(pytest.mark.interp)  # with --dist loadgroup, scheduling.py groups the cases by model
            yield item


class InvalidCaseFile(pytest.Item):
    """A case file that cannot be read: an error of that file alone, while the other files run."""

    def __init__(self, *, problem: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.problem = problem

    def setup(self) -> None:
        pytest.fail(self.problem, pytrace=False)  # an error at setup: counted as an error, not a failed test

    def runtest(self) -> None:  # pragma: no cover - setup always fails first
        pytest.fail(self.problem, pytrace=False)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"case file {self.path.name}"


class CaseItem(pytest.Item):
    def __init__(self, *, plan: CasePlan, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plan = plan
        self.interp: dict[str, Any] | None = None  # what the report carries (see hooks.pytest_runtest_makereport)

    def runtest(self) -> None:
        from ..run.session import NotThisHook

        state = self.config.stash[STATE]
        try:
            record = state.run_plan(self.plan)
        except NotThisHook as exc:
            pytest.skip(str(exc))
        self.user_properties.extend(record.junit)
        self.interp = record.data
        if not record.ok:
            raise CaseFailed(visible(record.text, keep="\n"))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:  # type: ignore[override]
        exc = excinfo.value
        if isinstance(exc, CaseFailed):
            return str(exc)
        if self.config.getoption("fulltrace", False):
            return str(super().repr_failure(excinfo))
        return visible(
            f"{self.plan.where}: case {self.plan.case_id!r} on {self.plan.target.label}: internal error {type(exc).__name__}: {exc}\n"
            "(this is a bug in interp-tests or its libraries; rerun with --full-trace for the Python traceback)",
            keep="\n",
        )

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.plan.case_file.line("cases", self.plan.index) - 1, visible(f"case {self.plan.case_id} [{self.plan.target.checkpoint}]")
