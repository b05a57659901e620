"""The whole run as one JSON document (`--interp-json FILE`, `Results.to_json()`): every case, check, observed
value, verdict, checkpoint, corpus hash, the drift table and the leaderboard, with a `schema_version`.
docs/JSON.md documents each field. No pytest here.

The document holds plain data only (numbers, strings, booleans, null, lists, objects). Non-finite numbers
are written as the strings "nan", "inf" and "-inf" so that any JSON reader takes the file. Timings are the only
values that differ between two runs of the same inputs: they are the keys that end in `seconds` or
`per_second` (`without_timings` drops them, for comparing runs).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..baselines.protocol import DriftRow
from .leaderboard import Board

SCHEMA_VERSION = 1


def plain(value: Any) -> Any:
    """JSON-safe data: tuples as lists, non-finite floats as strings, dataclasses' dicts as they are."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else "inf" if value > 0 else "-inf"
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("interp-tests")
    except Exception:  # not installed as a distribution (a source tree on sys.path)
        return "unknown"


def checkpoints_of(results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in results:
        label = str(r.get("checkpoint") or r.get("sae"))
        key = (label, str(r.get("model", "")), str(r.get("hook", "")))
        if key not in seen:
            seen[key] = {
                "label": label, "sae": r.get("sae"), "role": "candidate" if r.get("candidate") else "case file SAE",
                "reference": r.get("reference") if r.get("candidate") else None, "model": r.get("model"), "hook": r.get("hook"),
            }
    return list(seen.values())


def corpora_of(results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each corpus the run read (by the sha256 of its windows' token ids), with its token count and the
    checkpoints and checks that measured on it."""
    found: dict[str, dict[str, Any]] = {}
    for r in results:
        for v in r.get("verdicts", ()):
            extra = dict(v.get("extra") or ())
            digest = extra.get("corpus_sha256")
            if not isinstance(digest, str):
                continue
            entry = found.setdefault(digest, {"sha256": digest, "tokens": extra.get("corpus_tokens"), "checkpoints": [], "checks": 0})
            label = str(r.get("checkpoint") or r.get("sae"))
            if label not in entry["checkpoints"]:
                entry["checkpoints"].append(label)
            entry["checks"] += 1
    return list(found.values())


def run_document(
    results: Sequence[Mapping[str, Any]],
    drift: Sequence[DriftRow],
    boards: Sequence[Board],
    session_lines: Sequence[str],
    options: Mapping[str, Any],
    complete: bool,
) -> dict[str, Any]:
    """The run as one JSON-able document (see docs/JSON.md)."""
    cases = []
    for r in results:
        cases.append({**r, "ok": not r.get("error") and all(v.get("ok") for v in [*r.get("verdicts", ()), *r.get("drift", ())])})
    passed = sum(c["ok"] for c in cases)
    return plain({
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "interp-tests", "version": _version()},
        "run": {"complete": complete, "cases": len(cases), "passed": passed, "failed": len(cases) - passed, "options": dict(options), "session": list(session_lines)},
        "checkpoints": checkpoints_of(results),
        "cases": cases,
        "drift": [dict(row.__dict__) for row in drift],
        "corpora": corpora_of(results),
        "leaderboard": [b.as_dict() for b in boards],
    })


TIMING_SUFFIXES = ("seconds", "per_second")


THROUGHPUT = re.compile(r"(, )?[\d,.]+ (tokens/s|s)\b")


def without_timings(document: Any) -> Any:
    """The document without the values that change from run to run (timings, the throughput quoted in check
    summaries, and the session's lines): what two runs of the same inputs must agree on."""
    if isinstance(document, str):
        return THROUGHPUT.sub("", document)
    if isinstance(document, Mapping):
        return {
            k: without_timings(v) for k, v in document.items()
            if not str(k).endswith(TIMING_SUFFIXES) and k != "session"
        }
    if isinstance(document, list):
        if len(document) == 2 and isinstance(document[0], str) and document[0].endswith(TIMING_SUFFIXES):
            return None  # an extra ("corpus_tokens_per_second", value) pair
        return [without_timings(v) for v in document]
    return document
