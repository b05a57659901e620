"""CaseFile(pytest.File) and CaseItem(pytest.Item): collect, runtest, repr_failure, reportinfo."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from .errors import CaseFileError, InterpTestsError
from .schema import CaseFile as CaseFileSpec
from .schema import SaeRef, load_case_file
from .session import Session, TargetKey

STATE = pytest.StashKey["Session"]()


class CaseFailed(Exception):
    """Raised by CaseItem.runtest when at least one check fails; carries every verdict."""

    def __init__(self, verdicts: Sequence[Any], text: str) -> None:
        self.verdicts = verdicts
        super().__init__(text)


def resolve_sae(ref: SaeRef, base: Path) -> SaeRef:
    """A local SAE path is relative to the case file's directory."""
    if ref.path is None:
        return ref
    return ref.model_copy(update={"path": str((base / ref.path).resolve())})


class CaseFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        from .checks import texts_needed

        try:
            spec = load_case_file(self.path)
        except CaseFileError:
            # a bad case file is an error of that file alone: the other files still run
            self.config.option.continue_on_collection_errors = True
            raise
        state = self.config.stash[STATE]
        saes = spec.model.target.sae_list
        for i, case in enumerate(spec.model.cases):
            for ref in saes:
                key = TargetKey.of(spec.model.target, resolve_sae(ref, self.path.parent))
                name = case.id if len(saes) == 1 else f"{case.id}[{ref.label}]"
                state.want(key, texts_needed(spec, i))
                item = CaseItem.from_parent(self, name=name, spec=spec, index=i, key=key)
                item.add_marker(pytest.mark.interp)
                yield item

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:  # type: ignore[override]
        if isinstance(excinfo.value, CaseFileError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)  # type: ignore[return-value]


class CaseItem(pytest.Item):
    def __init__(self, *, spec: CaseFileSpec, index: int, key: TargetKey, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.index = index
        self.key = key

    @property
    def case_id(self) -> str:
        return self.spec.model.cases[self.index].id

    @property
    def where(self) -> str:
        return self.spec.where("cases", self.index)

    def runtest(self) -> None:
        from .checks import run_case, verdict_lines
        from .report import render

        state = self.config.stash[STATE]
        engine = state.engine(self.key)
        verdicts = run_case(self.spec, self.index, engine)
        for name, value in verdict_lines(verdicts):
            self.user_properties.append((name, value))
        if not all(v.ok for v in verdicts):
            raise CaseFailed(verdicts, render(self.case_id, self.key.label, verdicts))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:  # type: ignore[override]
        exc = excinfo.value
        if isinstance(exc, CaseFailed):
            return str(exc)
        if isinstance(exc, InterpTestsError):
            msg = str(exc)
            prefix = "" if msg.startswith(str(self.path)) else f"{self.where}: "
            return f"{prefix}case {self.case_id!r} on {self.key.label}: {msg}"
        if self.config.getoption("fulltrace", False):
            return str(super().repr_failure(excinfo))
        return (
            f"{self.where}: case {self.case_id!r} on {self.key.label}: internal error {type(exc).__name__}: {exc}\n"
            "(this is a bug in interp-tests or its libraries; rerun with --full-trace for the Python traceback)"
        )

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.spec.line("cases", self.index) - 1, f"case {self.case_id} [{self.key.label}]"
