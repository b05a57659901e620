"""The baseline protocol, owned here: record a reference's observed values, compare a run with them,
tolerances per kind of value, stale entries, and the atomic write at the end of a complete run.
No pytest here: the pytest layer calls `Baselines.compare`, ships `Baselines.payload` on each report,
and calls `Baselines.absorb` / `Baselines.finish` on the process that owns the files.

`cases/foo.yaml` -> `cases/foo.yaml.baseline.json` (the full file name, so foo.yaml and foo.yml never share):

    {"version": 2, "case_file": "foo.yaml",
     "cases": {"<case id>": {"<reference SAE as the case file names it>": {
         "sae": "<the SAE whose values these are>",
         "checks": {"expect[0].fires": 1.234, "expect[2].generates": "text"},
         "features": {"def_keyword": 692}}}}}

Baselines belong to the reference (the SAE the case file names): a candidate given by `--interp-sae` is
compared with them and never recorded, unless `--interp-promote` makes it the new reference explicitly.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..cases import schema
from ..cases.plan import CasePlan
from ..checks.runner import CaseResult, check_key
from ..checks.verdict import Value, Verdict, fmt
from ..common.echo import echo
from ..common.errors import InterpTestsError
from ..common.files import AtomicSet, PartialCommit, PathError, checked_file
from ..common.memo import Memo

VERSION = 2
MAX_BASELINE_BYTES = 1 << 30


def baseline_path(case_file: Path) -> Path:
    return case_file.with_name(case_file.name + ".baseline.json")


# ----------------------------------------------------------------------------- tolerances
@dataclass(frozen=True)
class ComparePolicy:
    """What a run does with baselines: `update` records (--interp-update), `compare` fails on drift
    (--interp-compare), `tolerance` is one absolute tolerance for every compared number (--interp-tolerance)."""

    update: bool = False
    compare: bool = False
    tolerance: float | str | None = None  # a number, or "auto" (by the measurements' intervals)


@dataclass(frozen=True)
class Tolerance:
    """A value passes when |new - old| <= abs + rel * |old|; `exact` values (ranks, texts) must be equal."""

    abs: float = 0.0
    rel: float = 0.0
    exact: bool = False
    auto: bool = False  # by the intervals (`auto_comparison`); `abs`/`rel`/`exact` are the fallback for a value without one

    def allows(self, old: Value, new: Value) -> tuple[bool, float | None]:
        """(within tolerance, new - old when both are numbers)."""
        if isinstance(old, (int, float)) and isinstance(new, (int, float)):
            if math.isnan(old) or math.isnan(new):
                return math.isnan(old) and math.isnan(new), None
            if math.isinf(old) or math.isinf(new):
                return old == new, None
            delta = float(new) - float(old)
            if self.exact:
                return delta == 0, delta
            return abs(delta) <= self.abs + self.rel * abs(float(old)), delta
        return old == new, None

    def describe(self) -> str:
        if self.auto:
            return "auto"
        if self.exact:
            return "exact"
        parts = [f"abs {self.abs:g}" if self.abs else "", f"rel {self.rel:g}" if self.rel else ""]
        return " + ".join(p for p in parts if p) or "exact"


EXACT = Tolerance(exact=True)
ACTIVATION = Tolerance(abs=1e-4, rel=0.05)  # activations and losses scale with the model: relative
SCORE = Tolerance(abs=0.01)  # bounded scores (EV, cosine, AUROC, CE score): absolute

DEFAULT_TOLERANCE: dict[str, Tolerance] = {
    "fires": ACTIVATION,
    "silent": ACTIVATION,
    "separates": Tolerance(abs=0.02),
    "top_k": EXACT,  # ranks
    "most_active": EXACT,
    "explained_variance": SCORE,
    "explained_variance_legacy": SCORE,
    "mse": ACTIVATION,
    "cosine": SCORE,
    "l0": ACTIVATION,
    "dead_fraction": SCORE,
    "ce_loss_score": SCORE,
    "delta_loss": ACTIVATION,
    "kl_div": ACTIVATION,
    "logprob_shift": Tolerance(abs=0.05, rel=0.05),
    "kl": ACTIVATION,
    "generates": EXACT,  # the exact continuation
    "matched": SCORE,
    "density": Tolerance(abs=1e-4, rel=0.1),
    "dense_fraction": SCORE,
}


def tolerance_for(params: schema.Check, options: ComparePolicy) -> Tolerance | None:
    """How a check is compared with its baseline, or None when this run does not compare it.

    A check's own `baseline:` wins, then --interp-tolerance (absolute, for values that are not exact), then
    the default of its kind. Without --interp-compare only checks with their own `baseline:` compare; an
    --interp-update run compares nothing: it records the values that later runs compare with.
    """
    if options.update:
        return None
    default = DEFAULT_TOLERANCE[params.check]
    spec = params.baseline
    if spec == schema.AUTO or (spec is None and options.compare and options.tolerance == schema.AUTO):
        return dataclasses.replace(default, auto=True)
    if isinstance(spec, schema.BaselineSpec):
        given_abs = spec.abs if spec.abs is not None else spec.tolerance
        if given_abs is None and spec.rel is None:
            return default
        return Tolerance(abs=given_abs or 0.0, rel=spec.rel or 0.0)
    if not options.compare:
        return None
    if isinstance(options.tolerance, float) and not default.exact:
        return Tolerance(abs=options.tolerance)
    return default


Z95 = 1.959963984540054  # the normal quantile of a two-sided 95% interval


@dataclass(frozen=True)
class AutoOutcome:
    ok: bool
    reference: Value  # what the candidate is compared with
    delta: float | None
    interval: tuple[float, float] | None  # of the difference
    says: str  # the test used, what it assumes, and its verdict, in words


NUMERICAL_ZERO = 1e-6  # a paired difference within 1e-6 of the value (relative) of 0 is 0: the precision every value is checked to


def auto_comparison(verdict: Verdict, recorded: Value, recorded_interval: tuple[float, float] | None, fallback: Tolerance) -> AutoOutcome:
    """`baseline: auto`: a drift is a difference beyond what the measurements' noise allows (docs/CASES.md,
    "Choosing tolerances").
    - paired (a candidate whose reference ran in this run on the same windows or texts): the 95% bootstrap
      interval of candidate - reference, drawing the same units for both, must include 0;
    - unpaired (only the reference's recorded value and interval): |difference| <= 1.96 sqrt(se_c^2 + se_r^2),
      each se the interval's half-width / 1.96; it treats the two measurements as independent, which on the
      same corpus makes it conservative (a real drift must be larger to be seen); a baseline recorded without
      an interval takes the candidate's own se for the reference's;
    - a value without an interval (ranks, steering, feature maxima): the check's default tolerance."""
    observed = verdict.observed
    if verdict.paired is not None:
        ref, lo, hi = verdict.paired
        floor = NUMERICAL_ZERO * abs(ref) + 1e-12  # identical SAEs differ by float rounding (about 1e-10 of the value), not by a drift
        ok = lo <= floor and hi >= -floor
        delta = float(observed) - ref if isinstance(observed, (int, float)) else None
        verdict_words = ("includes 0: within noise" if lo <= 0.0 <= hi else "is within float rounding (1e-6 of the value) of 0: no drift") if ok else "excludes 0: a drift beyond noise"
        says = (f"auto, paired bootstrap over the same units: 95% CI of the difference [{lo:+.4g}, {hi:+.4g}] "
                f"{verdict_words} (reference {fmt(ref)} measured in this run)")
        return AutoOutcome(ok, ref, delta, (lo, hi), says)
    if verdict.interval is not None and isinstance(observed, (int, float)) and isinstance(recorded, (int, float)) and math.isfinite(float(recorded)):
        se_c = (verdict.interval[1] - verdict.interval[0]) / (2 * Z95)
        assumed = recorded_interval is None
        se_r = se_c if assumed else (recorded_interval[1] - recorded_interval[0]) / (2 * Z95)  # type: ignore[index]
        delta = float(observed) - float(recorded)
        half = Z95 * math.hypot(se_c, se_r)
        ok = abs(delta) <= half
        says = (f"auto, unpaired: |difference| {abs(delta):.4g} {'<=' if ok else '>'} 1.96 x sqrt(se_c^2 + se_r^2) = {half:.4g} "
                f"({'the baseline has no interval: the reference taken as noisy as the candidate; ' if assumed else ''}"
                "independent measurements assumed, conservative on one corpus)")
        return AutoOutcome(ok, recorded, delta, (delta - half, delta + half), says)
    ok, delta = fallback.allows(recorded, observed)
    return AutoOutcome(ok, recorded, delta, None, f"auto: {verdict.check} has no interval, so its default tolerance {dataclasses.replace(fallback, auto=False).describe()}")


# ----------------------------------------------------------------------------- files
@dataclass(frozen=True)
class Entry:
    sae: str
    checks: Mapping[str, Value]
    features: Mapping[str, int]
    intervals: Mapping[str, tuple[float, float]] = dataclasses.field(default_factory=dict)  # check key -> 95% interval


Entries = dict[str, dict[str, Entry]]  # case id -> reference label -> entry


@dataclass(frozen=True)
class BaselineFile:
    path: Path
    entries: Entries
    problems: tuple[str, ...] = ()  # malformed entries, skipped


def _value(raw: Any) -> Value:
    if raw is None or isinstance(raw, str):
        return raw
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise ValueError(f"expected a number or a string, got {echo(raw)}")
    try:
        return float(raw)
    except OverflowError:
        raise ValueError(f"number {echo(raw)} is out of range") from None


def read(path: Path) -> BaselineFile:
    """A baseline file's entries ({} when there is none). A file that cannot be parsed raises
    InterpTestsError; a malformed entry is skipped and named in `problems`."""
    if not os.path.lexists(path):
        return BaselineFile(path, {})
    try:
        checked_file(path, "baseline", MAX_BASELINE_BYTES)
    except PathError as exc:
        raise InterpTestsError(f"{exc}: a baseline is a JSON file written by --interp-update") from None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InterpTestsError(f"{path}: unreadable baseline ({type(exc).__name__}: {echo(str(exc), 200)}): restore it from version control, or delete it and record again with --interp-update") from None
    if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("cases"), dict):
        version = data.get("version") if isinstance(data, dict) else None
        raise InterpTestsError(f"{path}: not a version-{VERSION} baseline (version {echo(version)}, expected a 'cases' mapping): delete it and record again with --interp-update")
    entries: Entries = {}
    problems: list[str] = []
    for case_id, by_sae in data["cases"].items():
        if not isinstance(by_sae, dict):
            problems.append(f"{path}: case {echo(case_id)}: expected a mapping of SAE labels, got {echo(by_sae)}")
            continue
        for label, raw in by_sae.items():
            try:
                if not isinstance(raw, dict) or not isinstance(raw.get("checks"), dict):
                    raise ValueError(f"expected a mapping with 'checks', got {echo(raw)}")
                checks = {str(k): _value(v) for k, v in raw["checks"].items()}
                features = raw.get("features", {})
                if not isinstance(features, dict) or not all(isinstance(v, int) and not isinstance(v, bool) for v in features.values()):
                    raise ValueError(f"'features' must map names to indices, got {echo(features)}")
                intervals = raw.get("intervals", {})
                if not isinstance(intervals, dict) or not all(
                    isinstance(v, list) and len(v) == 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v) for v in intervals.values()
                ):
                    raise ValueError(f"'intervals' must map check keys to [low, high], got {echo(intervals)}")
                entries.setdefault(str(case_id), {})[str(label)] = Entry(
                    str(raw.get("sae", label)), checks, dict(features), {str(k): (float(v[0]), float(v[1])) for k, v in intervals.items()}
                )
            except ValueError as exc:
                problems.append(f"{path}: case {echo(case_id)} [{label}]: malformed entry: {exc}")
    return BaselineFile(path, entries, tuple(problems))


def render(case_file_name: str, entries: Entries) -> str:
    """A baseline file's text: every entry, sorted, as JSON."""
    data = {
        "version": VERSION,
        "case_file": case_file_name,
        "cases": {
            case_id: {
                label: {"sae": e.sae, "checks": dict(sorted(e.checks.items())), "features": dict(sorted(e.features.items())),
                        **({"intervals": {k: list(v) for k, v in sorted(e.intervals.items())}} if e.intervals else {})}
                for label, e in sorted(by_sae.items())
            }
            for case_id, by_sae in sorted(entries.items())
        },
    }
    return json.dumps(data, indent=2, allow_nan=True) + "\n"


def write_atomic(path: Path, case_file_name: str, entries: Entries) -> None:
    """Write all entries to `path` at once (one file of the set `Baselines.finish` writes)."""
    files = AtomicSet()
    try:
        files.add(path, render(case_file_name, entries))
        files.commit()
    finally:
        files.discard()


def expected_checks(spec: schema.CaseFileModel) -> dict[str, set[str]]:
    """Case id -> its check keys, for a parsed case file."""
    return {c.id: {check_key(j, e.name) for j, e in enumerate(c.expect)} for c in spec.cases}


def stale(entries: Entries, expected: Mapping[str, set[str]]) -> list[str]:
    """Entries (or checks of entries) that no case/check of the file has any more."""
    out = []
    for case_id, by_sae in entries.items():
        for label, entry in by_sae.items():
            if case_id not in expected:
                out.append(f"{case_id} [{label}]")
                continue
            out.extend(f"{case_id} [{label}] {c}" for c in entry.checks if c not in expected[case_id])
    return out


def without_stale(entries: Entries, expected: Mapping[str, set[str]]) -> Entries:
    out: Entries = {}
    for case_id, by_sae in entries.items():
        if case_id not in expected:
            continue
        for label, e in by_sae.items():
            checks = {k: v for k, v in e.checks.items() if k in expected[case_id]}
            out.setdefault(case_id, {})[label] = Entry(e.sae, checks, e.features, {k: v for k, v in e.intervals.items() if k in expected[case_id]})
    return out


# ----------------------------------------------------------------------------- the session's side
@dataclass(frozen=True)
class DriftRow:
    """One compared value: a row of the run's drift table."""

    where: str
    case_id: str
    check: str
    reference: Value
    observed: Value
    delta: float | None
    tolerance: str
    ok: bool
    note: str = ""
    checkpoint: str = ""  # the SAE that ran (a candidate's label)
    reference_sae: str = ""  # the case file's SAE, whose recorded value `reference` is
    delta_interval: tuple[float, float] | None = None  # tolerance auto: the 95% interval of the difference


def failures_first(rows: list[DriftRow]) -> list[DriftRow]:
    return [r for r in rows if not r.ok] + [r for r in rows if r.ok]


def as_reference(checks: Mapping[str, Value]) -> dict[str, Value]:
    """A promoted candidate's values as it observes them once it is the reference: `matched` compares a
    candidate with the reference, and the reference matches itself (1.0)."""
    return {key: 1.0 if key.rsplit(".", 1)[-1] in schema.IDENTITY_CHECKS else value for key, value in checks.items()}


def entry_for(by_label: Mapping[str, Entry], label: str, resolved: str, case_dir: Path) -> Entry | None:
    """A case's entry for the SAE the case file names: under its label as written, or else the one entry
    recorded from that same SAE under another label (`resolved`: a local path made absolute; a promoted
    local SAE is recorded relative to the case file's directory, `case_dir`, so the repository can move).
    The second is what `--interp-sae NEW --interp-update --interp-promote` leaves once the case file's `sae:`
    points at NEW: the promoted values sit under the old reference's label. Two such entries: none is taken."""
    if label in by_label:
        return by_label[label]
    found = [e for e in by_label.values() if e.sae == resolved or _same_path(e.sae, resolved, case_dir)]
    return found[0] if len(found) == 1 else None


def _same_path(recorded: str, resolved: str, case_dir: Path) -> bool:
    if not recorded.startswith("."):  # a promoted local SAE is recorded as ./x or ../x
        return False
    return (case_dir / recorded).resolve() == Path(resolved)


def recorded_sae(label: str, candidate: bool, case_dir: Path) -> str:
    """What an entry records as its SAE: the label, but a promoted candidate's local path relative to the
    case file's directory (`../new-sae`), which stays true when the repository is checked out elsewhere."""
    path = Path(label)
    if not candidate or not path.is_absolute():
        return label
    relative = os.path.relpath(path, case_dir)
    return relative if relative.startswith(".") else f"./{relative}"


@dataclass
class Baselines:
    """The session's baselines: read once per file, compared per case, written once at the end."""

    options: ComparePolicy
    files: Memo[BaselineFile] = field(default_factory=Memo)  # read once per session; an unreadable file stays an error
    records: dict[Path, dict[str, dict[str, dict[str, Any]]]] = field(default_factory=dict)  # file -> case -> label -> payload
    drift: list[DriftRow] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    failed_writes: int = 0
    interrupted: bool = False  # Ctrl-C while the baselines were being written (none was changed)

    def _file(self, path: Path) -> BaselineFile:
        return self.files.get(path, lambda: read(path))

    def compare(self, plan: CasePlan, result: CaseResult) -> tuple[tuple[Verdict, ...], tuple[DriftRow, ...]]:
        """Drift verdicts of the checks this run compares (see `tolerance_for`), and their drift-table rows."""
        path = baseline_path(plan.source)
        record_cmd = f"record it on the reference with `pytest {plan.case_file.path} --interp-update`"
        out = []
        rows = []
        entry: Entry | None = None
        problem = ""
        try:
            entry = entry_for(self._file(path).entries.get(plan.case_id, {}), plan.reference_label, plan.target.reference_sae.label, plan.source.parent)
        except InterpTestsError as exc:
            problem = str(exc)
        candidate = result.candidate
        for j, (expectation, verdict) in enumerate(zip(plan.case.expect, result.verdicts)):
            tolerance = tolerance_for(expectation.params, self.options)
            if tolerance is None:
                continue
            key = check_key(j, verdict.check)
            if problem or entry is None or key not in entry.checks:
                why = problem or f"no baseline for {key} of case {plan.case_id!r} [{plan.reference_label}] in {path.name}: {record_cmd}"
                out.append(Verdict(
                    check=f"{verdict.check}.baseline", where=verdict.where, ok=False, expected="a recorded baseline",
                    observed=verdict.observed, summary=why, feature=verdict.feature,
                ))
                rows.append(DriftRow(verdict.where, plan.case_id, verdict.check, None, verdict.observed, None, tolerance.describe(), False, "no baseline", plan.target.checkpoint, plan.reference_label))
                continue
            old = entry.checks[key]
            interval: tuple[float, float] | None = None
            if tolerance.auto:
                auto = auto_comparison(verdict, old, entry.intervals.get(key), tolerance)
                ok, delta, old, interval, described = auto.ok, auto.delta, auto.reference, auto.interval, auto.says
            else:
                ok, delta = tolerance.allows(old, verdict.observed)
                described = f"tolerance {tolerance.describe()}"
            who = "candidate" if candidate else "observed"
            shown_delta = f", delta {delta:+.4f}" if delta is not None else ""
            fix = "fix the candidate, or accept it with --interp-promote" if candidate else "accept it with --interp-update"
            out.append(Verdict(
                check=f"{verdict.check}.baseline",
                where=verdict.where,
                ok=ok,
                expected=f"reference {fmt(old)} within {tolerance.describe()}",
                observed=verdict.observed,
                summary=f"reference {fmt(old)} ({entry.sae}), {who} {fmt(verdict.observed)}{shown_delta}, {described} ({path.name}; {fix})",
                feature=verdict.feature,
                interval=verdict.interval,  # the value's own; the difference's is in the summary and the drift row
            ))
            shown_tolerance = described if tolerance.auto else tolerance.describe()
            rows.append(DriftRow(verdict.where, plan.case_id, verdict.check, old, verdict.observed, delta, shown_tolerance, ok, "", plan.target.checkpoint, plan.reference_label, interval))
        return tuple(out), tuple(rows)

    def payload(self, plan: CasePlan, result: CaseResult, rows: tuple[DriftRow, ...]) -> dict[str, Any]:
        """What a report carries to the process that owns the files (JSON-able, survives xdist)."""
        return {
            "file": str(plan.source),
            "shown": str(plan.case_file.path),
            "case": plan.case_id,
            "reference": plan.reference_label,
            "sae": result.sae,
            "candidate": result.candidate,
            "checks": dict(result.observed),
            "intervals": dict(result.intervals),
            "features": dict(result.features),
            "drift": [dict(row.__dict__) for row in rows],
        }

    def absorb(self, payload: Mapping[str, Any]) -> None:
        """Take a finished case's payload (from this process or an xdist worker's report)."""
        self.records.setdefault(Path(payload["file"]), {}).setdefault(payload["case"], {})[payload["reference"]] = dict(payload)
        self.drift.extend(DriftRow(**row) for row in payload["drift"])

    def _write_set(self, pending: list[tuple[Path, str, str]]) -> None:
        """Every updated baseline file as one set: all temporaries first (a failure or Ctrl-C there leaves every
        file as it was), then the renames with Ctrl-C held back; a rename that fails part way is reported with
        the files that are new and those that are not."""
        files = AtomicSet()
        try:
            for path, text, _ in pending:
                try:
                    files.add(path, text)
                except (OSError, PathError) as exc:
                    files.discard()
                    self.failed_writes += 1
                    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                    self.lines.append(f"interp-tests: cannot write baseline {path}: {reason} (make it a writable regular file or folder, then rerun with --interp-update)")
                    self.lines.extend(f"interp-tests: baseline {other} NOT updated: baselines are written as a set, and {path} could not be (the file is unchanged)" for other, _, _ in pending if other != path)
                    return
        except KeyboardInterrupt:
            files.discard()
            self.interrupted = True
            self.lines.extend(f"interp-tests: baseline {path} NOT updated: interrupted while the baselines were written (the file is unchanged)" for path, _, _ in pending)
            return
        try:
            files.commit()
        except PartialCommit as exc:
            self.failed_writes += 1
            self.lines.append(f"interp-tests: baselines only partly written: {exc}")
            return
        except KeyboardInterrupt:  # held until every rename was done: the set is new
            self.interrupted = True
            self.lines.extend(line for _, _, line in pending)
            self.lines.append("interp-tests: interrupted after the baselines were written (every file above is new)")
            return
        self.lines.extend(line for _, _, line in pending)

    def finish(self, complete: bool, promote: bool) -> list[str]:
        """At the end of the session: write what --interp-update recorded (only after a complete run), report
        stale entries. Returns the lines for the terminal summary."""
        from ..cases.casefile import load_case_file

        pending: list[tuple[Path, str, str]] = []  # (baseline file, its new text, the line that says so)
        for case_file, by_case in sorted(self.records.items()):
            path = baseline_path(case_file)
            try:
                expected = expected_checks(load_case_file(case_file).model)  # the file as it is now
                current = read(path)
            except InterpTestsError as exc:
                self.lines.append(f"interp-tests: baseline of {case_file} not handled: {exc}")
                self.failed_writes += self.options.update
                continue
            gone = stale(current.entries, expected)
            if not self.options.update:
                if gone:
                    self.lines.append(f"interp-tests: {path} has {len(gone)} stale entries (cases or checks no longer in {case_file.name}; --interp-update removes them): {', '.join(gone[:5])}")
                continue
            if not complete:
                self.lines.append(f"interp-tests: baseline {path} NOT updated: the run did not complete (the file is unchanged)")
                continue
            entries = {cid: dict(by) for cid, by in current.entries.items()}
            n = 0
            for case_id, by_label in by_case.items():
                for label, rec in by_label.items():
                    if rec["candidate"] and not promote:
                        continue  # never recorded by accident: the session refuses --interp-update with a candidate
                    checks = as_reference(rec["checks"]) if rec["candidate"] else rec["checks"]
                    intervals = {k: (float(v[0]), float(v[1])) for k, v in (rec.get("intervals") or {}).items()}
                    entries.setdefault(case_id, {})[label] = Entry(recorded_sae(rec["sae"], rec["candidate"], case_file.parent), checks, rec["features"], intervals)
                    n += len(rec["checks"])
            what = "promoted the candidate's values in" if promote else "updated"
            dropped = f", {len(gone)} stale entries removed" if gone else ""
            fixed = f", {len(current.problems)} malformed entries replaced or dropped" if current.problems else ""
            written = f"interp-tests: baseline {path} {what}: {n} values of {sum(len(b) for b in by_case.values())} tests{dropped}{fixed}"
            pending.append((path, render(case_file.name, without_stale(entries, expected)), written))
        if pending:
            self._write_set(pending)
        return self.lines
