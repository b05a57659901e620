"""JUnit XML properties of a case: `<check>.observed` for each check, and the documented extras. No pytest here.

On a candidate SAE with a feature matching, `interp.mmcs` and `interp.matched_fraction` (see matching.py).
A check kind that occurs more than once in a case is numbered by its position in `expect:`:
`l0[4].observed`, `l0[5].observed`; a kind that occurs once keeps the plain name.
"""

from __future__ import annotations

from collections import Counter

from ..checks.runner import CaseResult
from ..checks.verdict import Value

COUNTS = frozenset({"candidate_index", "corpus_tokens"})  # extras that are whole numbers: written as such


def _extra(key: str, value: Value) -> Value | str:
    if key in COUNTS and isinstance(value, float) and value.is_integer():
        return str(int(value))  # `692`, not `692.0`
    return value


def junit_properties(result: CaseResult) -> list[tuple[str, Value | str]]:
    counts = Counter(v.check for v in result.verdicts)
    out: list[tuple[str, Value | str]] = []
    for j, v in enumerate(result.verdicts):
        name = v.check if counts[v.check] == 1 else f"{v.check}[{j}]"
        out.append((f"{name}.observed", v.observed if v.observed is not None else "none"))
        if v.interval is not None:  # the observed value's 95% interval (docs/CASES.md, "Intervals")
            out.extend(((f"{name}.ci_low", v.interval[0]), (f"{name}.ci_high", v.interval[1])))
        out.extend((f"{name}.{k}", _extra(k, value)) for k, value in v.extra if value is not None)
    out.extend((f"interp.{k}", value) for k, value in sorted(result.matching.items()))
    out.append(("interp.checkpoint", result.checkpoint or result.sae))  # which checkpoint this test case ran on
    out.append(("interp.checkpoint_path", result.sae))
    return out
