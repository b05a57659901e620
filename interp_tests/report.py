"""Renders verdicts as plain-text failure reports. No pytest here."""

from __future__ import annotations

from collections.abc import Sequence

from .checks import MAX_ROWS, Table, Verdict, fmt


def table_lines(table: Table, indent: str = "      ", max_rows: int = MAX_ROWS) -> list[str]:
    n = len(table.header)
    rows = [tuple(r[:n]) + ("",) * (n - len(r)) for r in table.rows[:max_rows]]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(table.header)]
    line = lambda cells: indent + "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    out = [line(table.header)] + [line(r) for r in rows]
    if len(table.rows) > max_rows:
        out.append(f"{indent}... {len(table.rows) - max_rows} more rows not shown")
    return out


def headline(case_id: str, target: str, verdicts: Sequence[Verdict]) -> str:
    failed = [v for v in verdicts if not v.ok]
    if not failed:
        return f"case {case_id!r} on {target}: all {len(verdicts)} checks passed"
    first = failed[0]
    return (
        f"{len(failed)} of {len(verdicts)} checks failed in case {case_id!r} on {target}: "
        f"{first.check} observed {fmt(first.observed)}, expected {first.expected} ({first.where})"
    )


def render(case_id: str, target: str, verdicts: Sequence[Verdict]) -> str:
    lines = [headline(case_id, target, verdicts)]
    for v in verdicts:
        feature = f" [{v.feature}]" if v.feature else ""
        status = "ok  " if v.ok else "FAIL"
        lines.append(f"  {status} {v.where}  {v.check}{feature}: observed {fmt(v.observed)}, expected {v.expected}")
        if v.ok:
            continue
        lines.append(f"       observed = {v.summary}")
        lines.extend(f"       {note}" for note in v.notes)
        if v.table is not None and v.table.rows:
            lines.extend(table_lines(v.table, indent="       "))
    return "\n".join(lines)
