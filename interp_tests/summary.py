"""The run's summary: what every finished case reported, the drift table, baselines written at the end,
and the lines of the terminal summary. Mutable session state, no pytest here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .baseline import Baselines, DriftRow
from .verdict import fmt

MAX_LISTED = 20  # lines of a warning list before it says how many more


@dataclass
class RunSummary:
    baselines: Baselines
    results: list[dict[str, Any]] = field(default_factory=list)  # result_to_json of every finished case
    index_bound: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)

    def absorb(self, interp: dict[str, Any]) -> None:
        """A finished case's report data (from this process or an xdist worker)."""
        self.baselines.absorb(interp["baseline"])
        self.results.append(interp["result"])
        self.index_bound.extend(interp["result"].get("notes") or ())

    def finish(self, complete: bool, promote: bool) -> bool:
        """Write baselines (after a complete run only); True when one could not be written."""
        self.finished = self.baselines.finish(complete, promote)
        return self.baselines.failed_writes > 0

    def lines(self) -> list[tuple[str, str]]:
        """(text, colour) lines for the end of the terminal report."""
        out: list[tuple[str, str]] = [(line, "red" if "cannot" in line or "NOT" in line else "") for line in self.finished]
        out.extend(drift_table(self.baselines.drift))
        if self.index_bound:
            out.append((f"interp-tests: WARNING {len(self.index_bound)} checks are index-bound: plain feature indices do not survive retraining (use most_active_on selectors):", "yellow"))
            out.extend((f"  {line}", "yellow") for line in self.index_bound[:MAX_LISTED])
            if len(self.index_bound) > MAX_LISTED:
                out.append((f"  ... {len(self.index_bound) - MAX_LISTED} more", "yellow"))
        return out


def drift_rows_sorted(rows: list[DriftRow]) -> list[DriftRow]:
    return [r for r in rows if not r.ok] + [r for r in rows if r.ok]


def drift_table(rows: list[DriftRow], max_rows: int = 40) -> list[tuple[str, str]]:
    """The run's drift table: every compared value, failures first, capped."""
    if not rows:
        return []
    failed = sum(not r.ok for r in rows)
    out = [(f"interp-tests: drift from the reference baselines: {failed} of {len(rows)} compared values out of tolerance", "red" if failed else "green")]
    header = ("", "where", "check", "reference", "observed", "delta", "tolerance")
    body = [
        ("FAIL" if not r.ok else "ok", r.where, r.check, fmt(r.reference) if r.note != "no baseline" else "(none)", fmt(r.observed), f"{r.delta:+.4f}" if r.delta is not None else "-", r.tolerance)
        for r in drift_rows_sorted(rows)[:max_rows]
    ]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    for cells in (header, *body):
        out.append(("  " + "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip(), ""))
    if len(rows) > max_rows:
        out.append((f"  ... {len(rows) - max_rows} more rows (all of them in --interp-md FILE)", ""))
    return out
