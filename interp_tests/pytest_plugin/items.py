"""CaseFile(pytest.File) and CaseItem(pytest.Item): collect, runtest, repr_failure, reportinfo. Translation only:
planning is `plan.py`, running `runner.py`, baselines `baseline.py`, rendering `report.py`."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..cases.plan import CasePlan, resolve_sae
from ..common.echo import visible
from ..common.errors import CaseFileError, InterpTestsError
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
        state = self.config.stash[STATE]
        saes = spec.model.target.sae_list
        for i, case in enumerate(spec.model.cases):
            for ref in saes:
                key = state.target(spec.model.target, resolve_sae(ref, self.path.parent))
                plan = CasePlan(spec, i, key, self.path, ref.label)
                name = item_name(case.id if len(saes) == 1 else f"{case.id}[{ref.label}]")
                item = CaseItem.from_parent(self, name=name, plan=plan)
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
        self.interp: dict[str, Any] | None = None  # what the report carries (see plugin.pytest_runtest_makereport)

    def runtest(self) -> None:
        from ..checks.runner import result_to_json, run_case
        from ..report.junit import junit_properties
        from ..report.text import render

        state = self.config.stash[STATE]
        engine = state.engine(self.plan.target)
        result = run_case(self.plan, engine, strict_identity=state.options.compare)
        drift, rows = state.baselines.compare(self.plan, result)
        result = dataclasses.replace(result, drift=drift)
        self.user_properties.extend(junit_properties(result))
        self.interp = {"baseline": state.baselines.payload(self.plan, result, rows), "result": result_to_json(result)}
        if not result.ok:
            raise CaseFailed(render(result))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:  # type: ignore[override]
        exc = excinfo.value
        label = self.plan.target.label
        if isinstance(exc, CaseFailed):
            return str(exc)
        if isinstance(exc, InterpTestsError):
            msg = str(exc)
            prefix = "" if msg.startswith(str(self.plan.case_file.path)) else f"{self.plan.where}: "
            return visible(f"{prefix}case {self.plan.case_id!r} on {label}: {msg}", keep="\n")
        if self.config.getoption("fulltrace", False):
            return str(super().repr_failure(excinfo))
        return visible(
            f"{self.plan.where}: case {self.plan.case_id!r} on {label}: internal error {type(exc).__name__}: {exc}\n"
            "(this is a bug in interp-tests or its libraries; rerun with --full-trace for the Python traceback)",
            keep="\n",
        )

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.plan.case_file.line("cases", self.plan.index) - 1, visible(f"case {self.plan.case_id} [{self.plan.target.label}]")

