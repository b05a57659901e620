"""Machine-owned baselines: every observed value of every check, next to the case file. No pytest here.

`cases/foo.yaml` -> `cases/foo.baseline.json`:

    {"version": 1, "case_file": "foo.yaml",
     "entries": {"<case id>[<SAE label>]": {"expect[0].fires": 1.234, "expect[2].generates": "text"}}}

Files are written atomically (a temporary file in the same directory, fsync, then os.replace), so an
interrupted run leaves the old baseline intact. The human-written YAML is never touched.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InterpTestsError

VERSION = 1
Value = float | str | None


def baseline_path(case_file: Path) -> Path:
    return case_file.with_name(case_file.stem + ".baseline.json")


def item_key(case_id: str, sae_label: str) -> str:
    return f"{case_id}[{sae_label}]"


def check_key(index: int, name: str) -> str:
    return f"expect[{index}].{name}"


def load(path: Path) -> dict[str, dict[str, Value]]:
    """The entries of a baseline file ({} when there is none)."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("entries"), dict):
            raise ValueError(f"expected version {VERSION} with an 'entries' mapping")
    except (OSError, ValueError) as exc:
        raise InterpTestsError(f"{path}: unreadable baseline ({exc}); delete it and rerun with --interp-update") from None
    return data["entries"]


def write_atomic(path: Path, case_file: Path, entries: Mapping[str, Mapping[str, Value]]) -> None:
    data = {"version": VERSION, "case_file": case_file.name, "entries": {k: dict(sorted(v.items())) for k, v in sorted(entries.items())}}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, allow_nan=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class Drift:
    ok: bool
    old: Value
    new: Value
    delta: float | None


def compare(old: Value, new: Value, tolerance: float) -> Drift:
    """Numbers: |new - old| <= tolerance (NaN equals NaN); anything else must be equal."""
    if isinstance(old, (int, float)) and isinstance(new, (int, float)):
        if math.isnan(old) or math.isnan(new):
            return Drift(math.isnan(old) and math.isnan(new), old, new, None)
        delta = float(new) - float(old)
        return Drift(abs(delta) <= tolerance, old, new, delta)
    return Drift(old == new, old, new, None)


def stale(entries: Mapping[str, Mapping[str, Value]], expected: Mapping[str, set[str]]) -> list[str]:
    """Entries (item keys, or item key + check key) that no longer match a case/check of the file.

    `expected` maps each case id of the file to its check keys.
    """
    out = []
    for key, checks in entries.items():
        case_id = key.split("[", 1)[0]
        if case_id not in expected:
            out.append(key)
            continue
        out.extend(f"{key} {c}" for c in checks if c not in expected[case_id])
    return out


def merge(
    entries: Mapping[str, Mapping[str, Value]], updates: Mapping[str, Mapping[str, Value]], expected: Mapping[str, set[str]]
) -> dict[str, dict[str, Value]]:
    """Old entries with `updates` replacing whole items, minus what is stale."""
    out = {k: dict(v) for k, v in entries.items()}
    out.update({k: dict(v) for k, v in updates.items()})
    for gone in stale(out, expected):
        key, _, check = gone.partition(" ")
        if check:
            out[key].pop(check, None)
        else:
            out.pop(key, None)
    return out


def expected_keys(spec: Any) -> dict[str, set[str]]:
    """Case id -> check keys, from a parsed case file (schema.CaseFile)."""
    return {c.id: {check_key(j, e.name) for j, e in enumerate(c.expect)} for c in spec.model.cases}
