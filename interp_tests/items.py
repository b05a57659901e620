"""CaseFile(pytest.File) and CaseItem(pytest.Item): collect, runtest, repr_failure, reportinfo."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from . import baseline
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


def display(path: Path, cwd: Path) -> Path:
    """The path as the user would type it: relative to where pytest was started, when it is below it."""
    try:
        return path.resolve().relative_to(cwd.resolve())
    except ValueError:
        return path


def resolve_sae(ref: SaeRef, base: Path) -> SaeRef:
    """A local SAE path is relative to the case file's directory."""
    if ref.path is None:
        return ref
    return ref.model_copy(update={"path": str((base / ref.path).resolve())})


def index_bound(spec: CaseFileSpec, index: int) -> list[str]:
    """Checks of a case that name a plain feature index: meaningless on a retrained SAE."""
    case = spec.model.cases[index]
    out = []
    refs: list[tuple[tuple[str | int, ...], int | str]] = []
    if case.steer is not None:
        refs.append((("cases", index, "steer", "feature"), case.steer.feature))
    for j, exp in enumerate(case.expect):
        if hasattr(exp.params, "feature"):
            refs.append((("cases", index, "expect", j, exp.name, "feature"), exp.params.feature))
    for loc, ref in refs:
        fdef = spec.model.features.get(ref) if isinstance(ref, str) else ref
        if isinstance(fdef, int):
            out.append(f"{spec.where(*loc)}: {loc[-2]} uses feature {ref!r} = index {fdef}, bound to the original SAE")
    return out


class CaseFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        from .checks import texts_needed

        try:
            spec = load_case_file(self.path, display(self.path, self.config.invocation_params.dir))
        except CaseFileError:
            # a bad case file is an error of that file alone: the other files still run
            self.config.option.continue_on_collection_errors = True
            raise
        state = self.config.stash[STATE]
        saes = spec.model.target.sae_list
        for i, case in enumerate(spec.model.cases):
            for ref in saes:
                key = state.target(spec.model.target, resolve_sae(ref, self.path.parent))
                name = case.id if len(saes) == 1 else f"{case.id}[{ref.label}]"
                state.want(key, texts_needed(spec, i))
                item = CaseItem.from_parent(self, name=name, spec=spec, index=i, key=key)
                item.add_marker(pytest.mark.interp)
                if self.config.pluginmanager.hasplugin("xdist"):
                    # with --dist loadgroup, the cases of one model run on as few workers as possible
                    item.add_marker(pytest.mark.xdist_group(name=f"interp-{key.model}"))
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
    def case(self) -> Any:
        return self.spec.model.cases[self.index]

    def baseline_verdicts(self, state: Session, verdicts: Sequence[Any], label: str) -> list[Any]:
        """Drift checks against the recorded baseline: per-check `baseline: {tolerance}`, or --interp-compare."""
        from .checks import Verdict, fmt

        opts = state.options
        specs = [e.params.baseline for e in self.case.expect]
        if not opts.compare and not any(specs):
            return []
        path = baseline.baseline_path(self.path)
        old = state.baseline(path).get(baseline.item_key(self.case_id, label))
        out = []
        for j, (v, spec) in enumerate(zip(verdicts, specs)):
            tol = spec.tolerance if spec is not None else opts.tolerance if opts.compare else None
            if tol is None:
                continue
            key = baseline.check_key(j, v.check)
            if old is None or key not in old:
                self.user_properties.append(("interp.baseline_missing", f"{v.where}: {v.check} has no baseline in {path.name}"))
                continue
            d = baseline.compare(old[key], v.observed, tol)
            delta = f", delta {fmt(d.delta)}" if d.delta is not None else ""
            out.append(
                Verdict(
                    f"{v.check}.baseline", v.where, d.ok, f"within {fmt(tol)} of the baseline {fmt(d.old)}", v.observed,
                    f"drift from {path.name}: old {fmt(d.old)}, new {fmt(d.new)}{delta} (accept it with --interp-update)",
                    v.feature,
                )
            )
        return out

    @property
    def where(self) -> str:
        return self.spec.where("cases", self.index)

    def runtest(self) -> None:
        from .checks import run_case, verdict_lines
        from .report import render

        state = self.config.stash[STATE]
        engine = state.engine(self.key)
        verdicts = run_case(self.spec, self.index, engine)
        verdicts += self.baseline_verdicts(state, verdicts, engine.label)
        for name, value in verdict_lines(verdicts):
            self.user_properties.append((name, value))
        if engine.replaces is not None:
            for line in index_bound(self.spec, self.index):
                self.user_properties.append(("interp.index_bound", f"{line} (SAE {engine.label} replaces {engine.replaces})"))
        observed = {baseline.check_key(j, v.check): v.observed for j, v in enumerate(verdicts[: len(self.case.expect)])}
        record = {"file": str(self.path), "key": baseline.item_key(self.case_id, engine.label), "values": observed}
        self.user_properties.append(("interp.record", json.dumps(record)))
        if not all(v.ok for v in verdicts):
            raise CaseFailed(verdicts, render(self.case_id, self.key.label, verdicts))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:  # type: ignore[override]
        exc = excinfo.value
        if isinstance(exc, CaseFailed):
            return str(exc)
        if isinstance(exc, InterpTestsError):
            msg = str(exc)
            prefix = "" if msg.startswith(str(self.spec.path)) else f"{self.where}: "
            return f"{prefix}case {self.case_id!r} on {self.key.label}: {msg}"
        if self.config.getoption("fulltrace", False):
            return str(super().repr_failure(excinfo))
        return (
            f"{self.where}: case {self.case_id!r} on {self.key.label}: internal error {type(exc).__name__}: {exc}\n"
            "(this is a bug in interp-tests or its libraries; rerun with --full-trace for the Python traceback)"
        )

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.spec.line("cases", self.index) - 1, f"case {self.case_id} [{self.key.label}]"


class BaselineRecorder:
    """Gathers observed values from test reports (also those of xdist workers) and, with --interp-update,
    writes each case file's baseline atomically at the end of the session; reports stale entries."""

    def __init__(self, update: bool) -> None:
        self.update = update
        self.records: dict[Path, dict[str, dict[str, Any]]] = {}
        self.lines: list[str] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for name, value in report.user_properties:
            if name == "interp.record":
                rec = json.loads(str(value))
                self.records.setdefault(Path(rec["file"]), {})[rec["key"]] = rec["values"]

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        for case_file, updates in sorted(self.records.items()):
            path = baseline.baseline_path(case_file)
            try:
                expected = baseline.expected_keys(load_case_file(case_file))  # the file as it is now
                entries = baseline.load(path)
            except InterpTestsError as exc:
                self.lines.append(f"interp-tests: baseline of {case_file} not handled: {exc}")
                continue
            gone = baseline.stale(entries, expected)
            if self.update:
                baseline.write_atomic(path, case_file, baseline.merge(entries, updates, expected))
                n = sum(len(v) for v in updates.values())
                self.lines.append(f"interp-tests: baseline {path} updated: {n} values of {len(updates)} tests" + (f", {len(gone)} stale entries removed" if gone else ""))
            elif gone:
                self.lines.append(f"interp-tests: {path} has {len(gone)} stale entries (cases or checks no longer in {case_file.name}; --interp-update removes them): {', '.join(gone[:5])}")

    def summary(self) -> list[str]:
        return self.lines
