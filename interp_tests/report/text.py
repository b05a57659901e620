"""Renders a case's verdicts as a plain-text failure report. No pytest here."""

from __future__ import annotations

from ..checks.runner import CaseResult
from ..checks.verdict import MAX_ROWS, Table, Verdict, fmt, fmt_interval
from ..common.echo import visible


def table_lines(table: Table, indent: str = "      ", max_rows: int = MAX_ROWS) -> list[str]:
    n = len(table.header)
    rows = [tuple(r[:n]) + ("",) * (n - len(r)) for r in table.rows[:max_rows]]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(table.header)]

    def line(cells: tuple[str, ...]) -> str:
        return indent + "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    out = [line(table.header)] + [line(r) for r in rows]
    if len(table.rows) > max_rows:
        out.append(f"{indent}... {len(table.rows) - max_rows} more rows not shown")
    return out


def headline(result: CaseResult) -> str:
    verdicts = result.all_verdicts
    name = result.checkpoint or result.sae
    target = name if not result.candidate else f"{name} (candidate for {result.reference})"
    failed = [v for v in verdicts if not v.ok]
    if not failed:
        return f"case {result.case_id!r} on {target}: all {len(verdicts)} checks passed"
    first = failed[0]
    what = f"{first.check} could not be evaluated: {first.error}" if first.error else f"{first.check} observed {fmt(first.observed)}{fmt_interval(first.interval)}, expected {first.expected} ({first.where})"
    return f"{len(failed)} of {len(verdicts)} checks failed in case {result.case_id!r} on {target}: {what}"


def verdict_lines(v: Verdict) -> list[str]:
    feature = f" [{v.feature}{' ' + v.feature_url if v.feature_url else ''}]" if v.feature else ""
    status = "ok  " if v.ok else "FAIL"
    if v.error:
        return [f"  ERR  {v.where}  {v.check}{feature}: could not be evaluated: {v.error}"]
    lines = [f"  {status} {v.where}  {v.check}{feature}: observed {fmt(v.observed)}{fmt_interval(v.interval)}, expected {v.expected}"]
    if v.check.endswith(".baseline") or v.check == "feature_identity":
        lines.append(f"       {v.summary}")
        return lines
    if v.ok:
        return lines
    lines.append(f"       observed = {v.summary}")
    lines.extend(f"       {note}" for note in v.notes)
    if v.table is not None and v.table.rows:
        lines.extend(table_lines(v.table, indent="       "))
    return lines


def render(result: CaseResult) -> str:
    lines = [headline(result)]
    for v in result.all_verdicts:
        lines.extend(verdict_lines(v))
    lines.extend(f"  note: {n}" for n in result.notes)
    return "\n".join(visible(line) for line in lines)  # control characters of ids and names: escaped
