"""A compact HTML view of a run for notebooks (`Results._repr_html_`): totals, each leaderboard, the failures.
Everything from a case file or a model is escaped. No pytest here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .html import esc

MAX_FAILURES = 50
COLUMNS = (("checkpoint", "checkpoint"), ("cases_passed", "passed"), ("cases_failed", "failed"), ("l0", "L0"), ("explained_variance", "EV"),
           ("ce_loss_score", "CE score"), ("kl_div", "KL"), ("dead_fraction", "dead"), ("mmcs", "MMCS"), ("lowest_encoder_cos", "min enc cos"),
           ("lowest_correlation", "min corr"), ("frontier", "frontier"))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return "-" if value is None else str(value)


def results_html(document: dict[str, Any], failures: Sequence[Any]) -> str:
    run = document["run"]
    parts = [f"<div><p><b>interp-tests: {run['passed']} of {run['cases']} cases passed</b>" + (f", {run['failed']} failed" if run["failed"] else "") + "</p>"]
    for board in document["leaderboard"]:
        head = "".join(f"<th>{esc(title)}</th>" for _, title in COLUMNS)
        rows = []
        for row in board["rows"]:
            label = row["checkpoint"] + (" (reference, recorded)" if row.get("recorded") else "")
            cells = [esc(label)] + [esc(_cell(row.get(key))) for key, _ in COLUMNS[1:]]
            rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        parts.append(f"<p>Leaderboard: {esc(board['model'])} @ <code>{esc(board['hook'])}</code></p><table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
    if failures:
        body = "".join(
            f"<tr><td><code>{esc(f.case_id)}</code></td><td>{esc(f.checkpoint)}</td><td>{esc(f.check)}</td><td><code>{esc(f.where)}</code></td><td>{esc(f.message)}</td></tr>"
            for f in failures[:MAX_FAILURES]
        )
        more = f"<p>{len(failures) - MAX_FAILURES} more failures not shown.</p>" if len(failures) > MAX_FAILURES else ""
        parts.append(f"<p>Failures</p><table><thead><tr><th>case</th><th>checkpoint</th><th>check</th><th>where</th><th>why</th></tr></thead><tbody>{body}</tbody></table>{more}")
    parts.append("</div>")
    return "".join(parts)
