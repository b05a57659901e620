"""The run's summary: what every finished case reported, the drift table, baselines written at the end,
and the lines of the terminal summary. Mutable session state, no pytest here."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..baselines.protocol import Baselines, DriftRow, failures_first
from ..checks.verdict import Value, fmt, short

if TYPE_CHECKING:
    from .leaderboard import Board

MAX_LISTED = 20  # lines of a warning list before it says how many more


@dataclass
class RunSummary:
    baselines: Baselines
    results: list[dict[str, Any]] = field(default_factory=list)  # result_to_json of every finished case
    index_bound: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)

    def absorb(self, interp: dict[str, Any]) -> None:
        """A finished case's report data (from this process or an xdist worker)."""
        if interp.get("baseline") is not None:  # a case that could not run records nothing
            self.baselines.absorb(interp["baseline"])
        self.results.append(interp["result"])
        result = interp["result"]
        label = f"[{result.get('checkpoint')}] " if result.get("candidate") and result.get("checkpoint") else ""
        self.index_bound.extend(label + n for n in result.get("notes") or () if label + n not in self.index_bound)

    def finish(self, complete: bool, promote: bool) -> bool:
        """Write baselines (after a complete run only); True when one could not be written."""
        self.finished.extend(self.baselines.finish(complete, promote))
        return self.baselines.failed_writes > 0

    def write_markdown(self, path: Path | str, session_lines: list[str]) -> bool:
        """Write the Markdown summary; True when it could not be written (the reason joins the summary)."""
        from .markdown import render_markdown

        return self._write("Markdown summary", path, lambda: render_markdown(self.results, self.baselines.drift, session_lines, self.boards()))

    def ordered(self) -> list[dict[str, Any]]:
        """The results in the order of the case files and their cases, each case's checkpoints by label: the same
        whichever order the run took (load groups, xdist workers)."""
        def key(r: dict[str, Any]) -> tuple[str, int, str]:
            file, _, line = str(r.get("where", "")).rpartition(":")
            return file, int(line) if line.isdigit() else 0, str(r.get("checkpoint") or "")

        return sorted(self.results, key=key)

    def boards(self) -> list[Board]:
        from .leaderboard import leaderboard

        return leaderboard(self.ordered(), self.baselines.drift)

    def document(self, session_lines: list[str], options: Mapping[str, Any], complete: bool) -> dict[str, Any]:
        """The run as one JSON document (docs/JSON.md)."""
        from .document import run_document

        return run_document(self.ordered(), sorted(self.baselines.drift, key=lambda d: (d.where, d.checkpoint)), self.boards(), session_lines, options, complete)

    def write_json(self, path: Path | str, session_lines: list[str], options: Mapping[str, Any], complete: bool) -> bool:
        """Write the run's JSON document; True when it could not be written (the reason joins the summary)."""
        import json

        return self._write("JSON document", path, lambda: json.dumps(self.document(session_lines, options, complete), indent=1, allow_nan=False) + "\n")

    def write_html(self, path: Path | str, session_lines: list[str]) -> bool:
        """Write the self-contained HTML report; True when it could not be written (the reason joins the summary)."""
        from .html import render_html

        return self._write("HTML report", path, lambda: render_html(self.results, self.baselines.drift, session_lines, boards=self.boards()))

    def _write(self, what: str, path: Path | str, render: Callable[[], str]) -> bool:
        """A report file written with `common.files.write_output` (atomically onto a regular file or a new path,
        directly onto a device or FIFO, `-` to standard output); True, and the reason, when it could not be."""
        from ..common.errors import InterpTestsError
        from ..common.files import write_output

        try:
            where = write_output(path, render(), what)
        except InterpTestsError as exc:
            self.finished.append(f"interp-tests: cannot write the {what}: {exc}")
            return True
        except OSError as exc:
            self.finished.append(f"interp-tests: cannot write {path}: {exc.strerror or exc}")
            return True
        self.finished.append(f"interp-tests: {what} written to {where}")
        return False

    def lines(self) -> list[tuple[str, str]]:
        """(text, colour) lines for the end of the terminal report."""
        out: list[tuple[str, str]] = [(line, "red" if "cannot" in line or "NOT" in line or "replaced no SAE" in line else "") for line in self.finished]
        from .leaderboard import terminal_lines

        out.extend((line, "") for line in terminal_lines(self.boards()))
        out.extend(drift_table(self.baselines.drift))
        if self.index_bound:
            out.append((f"interp-tests: {len(self.index_bound)} notes on candidate SAEs (features follow the matching to the reference; plain indices without a matching are index-bound):", "yellow"))
            out.extend((f"  {line}", "yellow") for line in self.index_bound[:MAX_LISTED])
            if len(self.index_bound) > MAX_LISTED:
                out.append((f"  ... {len(self.index_bound) - MAX_LISTED} more", "yellow"))
        return out


def cell(value: Value, width: int = 40) -> str:
    return short(value, width) if isinstance(value, str) else fmt(value)


def drift_table(rows: list[DriftRow], max_rows: int = 40) -> list[tuple[str, str]]:
    """The run's drift table: every compared value, failures first, capped."""
    if not rows:
        return []
    failed = sum(not r.ok for r in rows)
    out = [(f"interp-tests: drift from the reference baselines: {failed} of {len(rows)} compared values out of tolerance", "red" if failed else "green")]
    several = len({r.checkpoint for r in rows}) > 1  # a sweep: say which checkpoint each row is
    header = ("", "where", "check", "reference", "observed", "delta", "tolerance") + (("checkpoint",) if several else ())
    body = [
        ("FAIL" if not r.ok else "ok", r.where, r.check, cell(r.reference) if r.note != "no baseline" else "(none)", cell(r.observed), (f"{r.delta:+.4f}" if r.delta is not None else "-") + (f" [{r.delta_interval[0]:+.4f}, {r.delta_interval[1]:+.4f}]" if r.delta_interval else ""), r.tolerance)
        + ((r.checkpoint,) if several else ())
        for r in failures_first(rows)[:max_rows]
    ]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    for cells in (header, *body):
        out.append(("  " + "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip(), ""))
    if len(rows) > max_rows:
        out.append((f"  ... {len(rows) - max_rows} more rows (all of them in --interp-md FILE)", ""))
    return out
