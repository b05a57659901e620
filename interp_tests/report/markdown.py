"""The run as Markdown, for a pull-request comment or `$GITHUB_STEP_SUMMARY` (`--interp-md FILE`). No pytest here."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ..baselines.protocol import DriftRow, failures_first
from ..checks.verdict import Value, fmt, fmt_interval
from ..common.echo import visible
from .leaderboard import Board

MAX_ROWS = 200


# what Markdown could read as markup, or a table as a cell edge (`_` inside a word, as in hook_resid_pre, is not)
MARKDOWN_PUNCTUATION = re.compile(r"([\\`*\[\]<>!|~&#]|(?<!\w)_|_(?!\w))")


def _cell(value: Value) -> str:
    text = fmt(value) if not isinstance(value, str) else repr(value if len(value) <= 60 else value[:57] + "...")
    return _text(text)


def _code(text: str) -> str:
    """A code span in a table cell: GitHub's tables split cells at any `|` not written `\\|`, in code too."""
    return "`" + visible(str(text)).replace("`", "'").replace("|", "\\|") + "`"


def _text(text: str) -> str:
    """Text outside code spans: on one line, control characters escaped, Markdown's punctuation backslashed
    (`<script>`, `[link](x)`, `![img](y)`, `*`, `_` and `|` show as written)."""
    return MARKDOWN_PUNCTUATION.sub(r"\\\1", visible(str(text).replace("\n", " ")))


def render_markdown(results: Sequence[dict[str, Any]], drift: Sequence[DriftRow], session_lines: Sequence[str], boards: Sequence[Board] = ()) -> str:
    """`results` are CaseResult JSON (runner.result_to_json); `boards` the run's leaderboard."""
    failed = [r for r in results if r.get("error") or not all(v["ok"] for v in [*r["verdicts"], *r.get("drift", ())])]
    lines = [
        "## interp-tests",
        "",
        f"**{len(results) - len(failed)} of {len(results)} cases passed**" + (f", {len(failed)} failed" if failed else ""),
        "",
    ]
    lines.extend(f"- {_text(line.removeprefix('interp-tests: '))}" for line in session_lines)
    if failed:
        lines += ["", "### Failed cases", "", "| case | SAE | check | where | observed | expected |", "| --- | --- | --- | --- | --- | --- |"]
        for r in failed:
            for v in [*r["verdicts"], *r.get("drift", ())]:
                if not v["ok"]:
                    observed = _text("could not be evaluated: " + v["error"]) if v.get("error") else _cell(v["observed"]) + _text(fmt_interval(tuple(v["interval"])) if v.get("interval") else "")
                    lines.append(f"| {_code(r['case_id'])} | {_code(r.get('checkpoint') or r['sae'])} | {_text(v['check'])} | {_code(v['where'])} | {observed} | {_text(v['expected'])} |")
    lines.extend(leaderboard_markdown(boards))
    if drift:
        bad = sum(not d.ok for d in drift)
        several = len({d.checkpoint for d in drift}) > 1  # a sweep: say which checkpoint each row is
        lines += ["", f"### Drift from the reference baselines: {bad} of {len(drift)} out of tolerance", "",
                  "| | where | check | reference | observed | delta | tolerance |" + (" checkpoint |" if several else ""),
                  "| --- | --- | --- | --- | --- | --- | --- |" + (" --- |" if several else "")]
        rows = failures_first(list(drift))
        for d in rows[:MAX_ROWS]:
            ref = "(none)" if d.note == "no baseline" else _cell(d.reference)
            delta = (f"{d.delta:+.4f}" if d.delta is not None else "-") + (f" [{d.delta_interval[0]:+.4f}, {d.delta_interval[1]:+.4f}]" if d.delta_interval else "")
            lines.append(f"| {'❌' if not d.ok else '✅'} | {_code(d.where)} | {_text(d.check)} | {ref} | {_cell(d.observed)} | {delta} | {_text(d.tolerance)} |" + (f" {_code(d.checkpoint)} |" if several else ""))
        if len(rows) > MAX_ROWS:
            lines.append(f"\n{len(rows) - MAX_ROWS} more rows not shown.")
    return "\n".join(lines) + "\n"


def leaderboard_markdown(boards: Sequence[Board]) -> list[str]:
    """One table per (model, hook): the reference first, then the frontier, each row's metrics."""
    from .leaderboard import COLUMNS, cells, ordered_rows

    out: list[str] = []
    for board in boards:
        if len(board.rows) < 2 and not any(r.role == "candidate" for r in board.rows):
            continue
        rows = ordered_rows(board)
        out += ["", f"### Leaderboard: {_text(board.model)} @ {_code(board.hook)} ({len(rows)} checkpoints)", "",
                "| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
        for row in rows[:MAX_ROWS]:
            first, *rest = cells(row)
            out.append(f"| {_code(first)} | " + " | ".join(_text(c) for c in rest) + " |")
        if len(rows) > MAX_ROWS:
            out.append(f"\n{len(rows) - MAX_ROWS} more checkpoints not shown (all of them in --interp-json).")
    return out
