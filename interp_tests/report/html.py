"""The run as one self-contained HTML file (`--interp-html FILE`): the totals, the session's
sparsity-vs-reconstruction plot, the drift table, then per case its verdict and checks, per-token heatmaps of
feature checks and steering continuations side by side, and last the observed value of every check.
No pytest here.

The file needs no network: inline CSS, inline SVG (matplotlib), one tiny inline script for the buttons that
open and close cases (the cases are `<details>`, so they open and close without it too). Every text that
comes from a case file or a model (ids, texts, tokens, continuations, messages) goes through `html.escape`.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

from ..baselines.protocol import DriftRow, failures_first
from ..checks.runner import CaseResult, result_from_json
from ..checks.verdict import Heatmap, Table, Value, Verdict, fmt, fmt_interval, short
from ..common.echo import visible
from .leaderboard import Board

MAX_HEATMAPS = 8  # texts per verdict shown as heatmaps (a verdict keeps up to feature_checks.MAX_HEATMAPS)
MAX_TOKENS = 300  # tokens per heatmap
MAX_TABLE_ROWS = 50  # rows of a verdict's own table
MAX_NOTES = 20  # notes per verdict or case
MAX_CONTINUATION = 3000  # characters of a steering continuation
MAX_DRIFT_ROWS = 500
MAX_LEADERBOARD_ROWS = 500
MAX_OBSERVED_ROWS = 2000  # rows of the session's table of observed values
OPEN_ALL = 10  # a run of at most this many cases shows every case open; a longer one opens the failing ones

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1200px; padding: 16px 24px; color: #1d2127; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 18px; border-bottom: 1px solid #d5d9de; padding-bottom: 4px; margin-top: 28px; }
h4 { font-size: 14px; margin: 14px 0 6px; } code, .mono, pre { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, monospace; font-size: 12.5px; }
.totals { font-size: 16px; margin: 4px 0 8px; } .totals .fail { color: #b42318; } .totals .pass { color: #1f7a3a; }
ul.session { margin: 4px 0; padding-left: 20px; color: #4a5361; }
.buttons button { font: inherit; margin-right: 6px; padding: 2px 10px; border: 1px solid #c3c8cf; background: #f6f7f9; border-radius: 4px; cursor: pointer; }
.failed-list a { color: #b42318; }
details.case { border: 1px solid #d5d9de; border-left: 5px solid #1f7a3a; border-radius: 4px; margin: 8px 0; background: #fff; }
details.case.fail { border-left-color: #b42318; }
details.case > summary { cursor: pointer; padding: 6px 10px; list-style-position: inside; }
details.case > summary .where, details.case > summary .count { color: #5b6472; margin-left: 8px; }
details.case > .body { padding: 4px 12px 12px; border-top: 1px solid #eceef1; }
.badge { display: inline-block; min-width: 38px; text-align: center; font-weight: 600; font-size: 12px; border-radius: 3px; padding: 0 5px; color: #fff; }
.badge.pass { background: #1f7a3a; } .badge.fail { background: #b42318; }
table { border-collapse: collapse; margin: 6px 0; } th, td { border: 1px solid #dde1e6; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f3f5f7; font-weight: 600; } td.mono { white-space: nowrap; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.fail td { background: #fdecea; } td.verdict.ok { color: #1f7a3a; font-weight: 600; } td.verdict.fail { color: #b42318; font-weight: 700; }
.error { color: #b42318; } .muted, .capped { color: #6b7380; font-style: italic; }
ul.notes { margin: 4px 0; padding-left: 18px; } ul.notes li { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, monospace; font-size: 12.5px; white-space: pre-wrap; }
.detail { margin: 10px 0 4px; padding-left: 10px; border-left: 3px solid #eceef1; }
.heatmap { margin: 4px 0 8px; } .heatmap .label { color: #5b6472; font-size: 12px; }
.tokens { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, monospace; font-size: 13px; line-height: 1.9; background: #fbfbfc; border: 1px solid #eceef1; padding: 4px 6px; }
.tok { border-radius: 2px; padding: 1px 0; box-shadow: inset -1px 0 0 rgba(0,0,0,0.08); } .tok .ws { color: #9aa2ad; }
.scale { font-size: 12px; color: #5b6472; } .scale .swatch { display: inline-block; width: 120px; height: 10px; vertical-align: middle; background: linear-gradient(to right, rgba(255,110,0,0), rgba(255,110,0,1)); border: 1px solid #dde1e6; }
.steering { display: grid; grid-template-columns: 1fr 1fr; gap: 10px; } .steering pre { white-space: pre-wrap; word-break: break-word; background: #fbfbfc; border: 1px solid #eceef1; padding: 6px 8px; margin: 2px 0; }
figure.plot { margin: 8px 0; } figure.plot svg { max-width: 100%; height: auto; }
.side-by-side { display: grid; grid-template-columns: 1fr 1fr; gap: 10px; } .plots { display: grid; grid-template-columns: 1fr 1fr; gap: 10px; }
table.leaderboard td.frontier { color: #1f7a3a; font-weight: 600; } tr.reference td { background: #f3f5f7; }
"""

SCRIPT = """
(function () {
  var cases = document.querySelectorAll("details.case");
  document.documentElement.setAttribute("data-cases", String(cases.length));
  document.documentElement.setAttribute("data-failed", String(document.querySelectorAll("details.case.fail").length));
  function each(f) { for (var i = 0; i < cases.length; i++) { f(cases[i]); } }
  var actions = {
    "expand": function () { each(function (c) { c.open = true; }); },
    "collapse": function () { each(function (c) { c.open = false; }); },
    "failures": function () { each(function (c) { c.open = c.classList.contains("fail"); }); }
  };
  var buttons = document.querySelectorAll(".buttons button");
  for (var i = 0; i < buttons.length; i++) {
    buttons[i].hidden = false;
    buttons[i].addEventListener("click", actions[buttons[i].getAttribute("data-action")]);
  }
})();
"""


def esc(value: object) -> str:
    """HTML-escaped, control characters (other than tab and newline) written as escapes (`\\x1b`)."""
    return html.escape(visible(str(value), keep="\t\n"), quote=True)


def render_html(results: Sequence[dict[str, Any]], drift: Sequence[DriftRow], session_lines: Sequence[str], title: str = "interp-tests report", boards: Sequence[Board] = ()) -> str:
    """`results` are CaseResult JSON (runner.result_to_json), in the order the cases finished."""
    cases = [result_from_json(r) for r in results]
    failed = [i for i, c in enumerate(cases) if not c.ok]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>",
        f"<header><h1>{esc(title)}</h1>",
        f'<p class="totals" id="totals"><span class="pass">{len(cases) - len(failed)} of {len(cases)} cases passed</span>'
        + (f', <span class="fail">{len(failed)} failed</span>' if failed else "")
        + "</p>",
    ]
    if session_lines:
        parts.append('<ul class="session">' + "".join(f"<li>{esc(line.removeprefix('interp-tests: '))}</li>" for line in session_lines) + "</ul>")
    if failed:
        several = len({c.checkpoint for c in cases}) > 1
        links = ", ".join(f'<a href="#case-{i}"><code>{esc(cases[i].case_id)}</code>{f" [{esc(cases[i].checkpoint)}]" if several else ""}</a>' for i in failed)
        parts.append(f'<p class="failed-list">Failed: {links}</p>')
    parts.append(
        '<p class="buttons"><button type="button" data-action="expand" hidden>expand all</button>'
        '<button type="button" data-action="collapse" hidden>collapse all</button>'
        '<button type="button" data-action="failures" hidden>failures only</button></p></header>'
    )
    parts.append(render_session(results, boards))
    if drift:
        parts.append(render_drift(drift))
    parts.append(f'<section id="cases"><h2>Cases ({len(cases)})</h2>')
    parts.extend(render_case(i, c, open_=len(cases) <= OPEN_ALL or not c.ok) for i, c in enumerate(cases))
    if not cases:
        parts.append('<p class="muted">No case ran.</p>')
    parts.append("</section>")
    parts.append(f'<section id="observed"><h2>Observed values of every check</h2>{observed_table(cases)}</section>')
    parts.append(f"<script>{SCRIPT}</script></body></html>\n")
    return "\n".join(parts)


# ----------------------------------------------------------------------------- cases
def render_case(index: int, case: CaseResult, open_: bool) -> str:
    verdicts = case.all_verdicts
    bad = sum(not v.ok for v in verdicts)
    state = "pass" if case.ok else "fail"
    count = f"{bad} of {len(verdicts)} checks failed" if bad else f"{len(verdicts)} checks passed"
    out = [
        f'<details class="case {state}" id="case-{index}" data-ok="{str(case.ok).lower()}" data-case-id="{esc(case.case_id)}"{" open" if open_ else ""}>',
        f'<summary><span class="badge {state}">{"PASS" if case.ok else "FAIL"}</span> <code class="case-id">{esc(case.case_id)}</code>'
        f' on <code class="sae">{esc(case.checkpoint or case.sae)}</code><span class="where mono">{esc(case.where)}</span><span class="count">{count}</span></summary>',
        '<div class="body">',
    ]
    if case.candidate:
        out.append(f'<p>Candidate SAE <code>{esc(case.sae)}</code> in place of the reference <code>{esc(case.reference)}</code>.</p>')
    if case.features:
        out.append('<p class="features">Features: ' + ", ".join(f"<code>{esc(n)}</code> = #{i}" for n, i in sorted(case.features.items())) + "</p>")
    if case.matching:
        out.append("<p>Feature matching: " + ", ".join(f"{esc(k)} {fmt(v)}" for k, v in sorted(case.matching.items())) + "</p>")
    out.append(notes_list(case.notes))
    out.append(checks_table(verdicts))
    seen: dict[tuple[Heatmap, ...], str] = {}  # heatmaps already drawn in this case -> the anchor of their check
    for j, v in enumerate(verdicts):
        anchor = f"case-{index}-check-{j}"
        out.append(render_detail(anchor, v, seen.get(v.heatmaps, "")))
        seen.setdefault(v.heatmaps, anchor)
    out.append("</div></details>")
    return "\n".join(x for x in out if x)


def observed_cell(v: Verdict) -> str:
    if v.error:
        return f'<span class="error">could not be evaluated: {esc(v.error)}</span>'
    interval = f' <span class="ci">{esc(fmt_interval(v.interval).strip())}</span>' if v.interval is not None else ""
    return f'<span title="{esc(v.summary)}">{esc(value_text(v.observed))}</span>{interval}'


def value_text(value: Value, width: int = 80) -> str:
    return short(value, width) if isinstance(value, str) else fmt(value)


def checks_table(verdicts: Sequence[Verdict]) -> str:
    rows = []
    for v in verdicts:
        state = "ok" if v.ok else "fail"
        num = "" if isinstance(v.observed, str) or v.error else ' class="num"'
        rows.append(
            f'<tr class="{state}" data-check="{esc(v.check)}"><td>{esc(v.check)}</td><td class="mono">{esc(v.where)}</td><td>{esc(v.feature)}</td>'
            f"<td{num}>{observed_cell(v)}</td><td>{esc(v.expected)}</td><td class=\"verdict {state}\">{'ok' if v.ok else 'FAIL'}</td></tr>"
        )
    head = "<thead><tr><th>check</th><th>where</th><th>feature</th><th>observed</th><th>expected</th><th></th></tr></thead>"
    return f'<table class="checks">{head}<tbody>{"".join(rows)}</tbody></table>'


def render_detail(anchor: str, v: Verdict, drawn: str = "") -> str:
    """What stands behind one verdict: its notes, its own table, heatmaps, steering continuations."""
    steering = v.check == "generates" and any(k == "base" for k, _ in v.extra)
    if not (v.notes or v.table or v.heatmaps or steering or v.error):
        return ""
    out = [f'<div class="detail" id="{anchor}" data-check="{esc(v.check)}">']
    feature = f" [{esc(v.feature)}]" if v.feature else ""
    out.append(f'<h4>{esc(v.check)}{feature} <span class="mono muted">{esc(v.where)}</span></h4>')
    if v.error:
        out.append(f'<p><span class="error">could not be evaluated:</span> {esc(v.error)}</p>')
    else:
        out.append(f"<p>observed = {esc(v.summary)}</p>")
    if steering:
        out.append(render_steering(v))
    else:
        out.append(notes_list(v.notes))
    if v.table is not None:
        out.append(render_table(v.table))
    if v.heatmaps and drawn:
        out.append(f'<p class="muted">The per-token activations are the same as those of <a href="#{drawn}">the check above</a>.</p>')
    elif v.heatmaps and v.reference_heatmaps:  # a candidate: the reference feature beside it, on one scale
        out.append(render_side_by_side(v.reference_heatmaps, v.heatmaps))
    elif v.heatmaps:
        out.append(render_heatmaps(v.heatmaps))
    out.append("</div>")
    return "\n".join(x for x in out if x)


def notes_list(notes: Sequence[str]) -> str:
    if not notes:
        return ""
    items = "".join(f"<li>{esc(n)}</li>" for n in notes[:MAX_NOTES])
    more = f'<li class="capped">... {len(notes) - MAX_NOTES} more notes not shown</li>' if len(notes) > MAX_NOTES else ""
    return f'<ul class="notes">{items}{more}</ul>'


def render_table(table: Table) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in table.header)
    body = "".join("<tr" + (' class="fail"' if "FAIL" in row else "") + ">" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in table.rows[:MAX_TABLE_ROWS])
    capped = f'<p class="capped">{len(table.rows) - MAX_TABLE_ROWS} more rows not shown (of {len(table.rows)}).</p>' if len(table.rows) > MAX_TABLE_ROWS else ""
    return f'<table class="rows"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{capped}'


def render_steering(v: Verdict) -> str:
    base = next((value for key, value in v.extra if key == "base"), "")
    prompt = [n for n in v.notes if n.startswith("prompt")]
    others = [n for n in v.notes if not n.startswith(("prompt", "base ", "steered "))]
    return "\n".join([
        notes_list(prompt),
        '<div class="steering">',
        f'<div class="base"><h4>base continuation</h4>{continuation(base)}</div>',
        f'<div class="steered"><h4>steered continuation</h4>{continuation(v.observed)}</div>',
        "</div>",
        notes_list(others),
    ])


def continuation(text: Value) -> str:
    text = "" if text is None else str(text)
    capped = f'<p class="capped">{len(text) - MAX_CONTINUATION} more characters not shown.</p>' if len(text) > MAX_CONTINUATION else ""
    return f"<pre>{esc(text[:MAX_CONTINUATION])}</pre>{capped}"


# ----------------------------------------------------------------------------- heatmaps
WHITESPACE = re.compile(r"([ \t\n\r])")
VISIBLE = {" ": "·", "\t": "→", "\n": "↵", "\r": "␍"}


def token_html(token: str) -> str:
    """A token, escaped, with its whitespace made visible (· space, → tab, ↵ newline)."""
    return "".join(f'<span class="ws">{VISIBLE[p]}</span>' if p in VISIBLE else esc(p) for p in WHITESPACE.split(token) if p)


def colour(value: float, scale: float) -> str:
    if not math.isfinite(value):
        return "rgba(150,0,200,0.6)"
    alpha = min(1.0, abs(value) / scale) if scale > 0 else 0.0
    return f"rgba(255,110,0,{alpha:.3f})" if value >= 0 else f"rgba(40,110,255,{alpha:.3f})"


def render_side_by_side(reference: Sequence[Heatmap], candidate: Sequence[Heatmap]) -> str:
    """The reference feature and the candidate's on the same texts, in two columns on one colour scale."""
    scale = heat_scale([*reference[:MAX_HEATMAPS], *candidate[:MAX_HEATMAPS]])
    return (
        '<div class="side-by-side">'
        f'<div class="reference-maps"><h4>reference</h4>{render_heatmaps(reference, scale)}</div>'
        f'<div class="candidate-maps"><h4>candidate</h4>{render_heatmaps(candidate, scale)}</div></div>'
    )


def heat_scale(maps: Sequence[Heatmap]) -> float:
    finite = [abs(x) for m in maps for x in m.values[:MAX_TOKENS] if math.isfinite(x)]
    return max(finite, default=0.0)


def render_heatmaps(maps: Sequence[Heatmap], scale: float | None = None) -> str:
    """The feature's activation on each token of each text, on one colour scale per verdict."""
    shown = list(maps[:MAX_HEATMAPS])
    scale = heat_scale(shown) if scale is None else scale
    out = [f'<div class="heatmaps"><p class="scale">Activation of the feature per token (hover for the value): <span class="swatch"></span> 0 … {fmt(scale)}</p>']
    for m in shown:
        out.append(render_heatmap(m, scale))
    if len(maps) > MAX_HEATMAPS:
        out.append(f'<p class="capped">{len(maps) - MAX_HEATMAPS} more texts not shown (the first {MAX_HEATMAPS} are).</p>')
    out.append("</div>")
    return "\n".join(out)


def render_heatmap(m: Heatmap, scale: float) -> str:
    spans = []
    for token, value in list(zip(m.tokens, m.values))[:MAX_TOKENS]:
        spans.append(f'<span class="tok" style="background:{colour(value, scale)}" title="{esc(repr(token))} = {fmt(value)}" data-act="{fmt(value)}">{token_html(token)}</span>')
        if "\n" in token:
            spans.append("<br>")
    top = max(m.values, default=float("nan"))
    capped = f'<span class="capped"> … {len(m.tokens) - MAX_TOKENS} more tokens not shown</span>' if len(m.tokens) > MAX_TOKENS else ""
    return (
        f'<div class="heatmap"><div class="label">{esc(m.label)}: {esc(short("".join(m.tokens), 70))}, max {fmt(top)}</div>'
        f'<div class="tokens">{"".join(spans)}{capped}</div></div>'
    )


# ----------------------------------------------------------------------------- drift and session
def render_drift(drift: Sequence[DriftRow]) -> str:
    rows = failures_first(list(drift))
    bad = sum(not r.ok for r in rows)
    body = []
    several = len({r.checkpoint for r in rows}) > 1
    for r in rows[:MAX_DRIFT_ROWS]:
        state = "ok" if r.ok else "fail"
        reference = "(none)" if r.note == "no baseline" else value_text(r.reference, 40)
        delta = (f"{r.delta:+.4f}" if r.delta is not None else "-") + (f" [{r.delta_interval[0]:+.4f}, {r.delta_interval[1]:+.4f}]" if r.delta_interval else "")
        body.append(
            f'<tr class="{state}"><td class="mono">{esc(r.where)}</td><td><code>{esc(r.case_id)}</code></td>'
            + (f"<td><code>{esc(r.checkpoint)}</code></td>" if several else "")
            + f'<td>{esc(r.check)}</td>'
            f'<td class="num">{esc(reference)}</td><td class="num">{esc(value_text(r.observed, 40))}</td><td class="num">{delta}</td>'
            f'<td>{esc(r.tolerance)}</td><td class="verdict {state}">{"ok" if r.ok else "FAIL"}</td></tr>'
        )
    head = ("<thead><tr><th>where</th><th>case</th>" + ("<th>checkpoint</th>" if several else "")
            + "<th>check</th><th>reference</th><th>observed</th><th>delta</th><th>tolerance</th><th></th></tr></thead>")
    capped = f'<p class="capped">{len(rows) - MAX_DRIFT_ROWS} more rows not shown (the failures come first).</p>' if len(rows) > MAX_DRIFT_ROWS else ""
    return (
        f'<section id="drift"><h2>Drift from the reference baselines</h2><p>{bad} of {len(rows)} compared values out of tolerance.</p>'
        f'<table class="drift">{head}<tbody>{"".join(body)}</tbody></table>{capped}</section>'
    )


def render_session(results: Sequence[dict[str, Any]], boards: Sequence[Board] = ()) -> str:
    """The leaderboard of each (model, hook) and its frontier plots: L0 against explained variance (the first
    board's is `#sparsity-plot`) and against CE loss score, the reference and every checkpoint numbered."""
    from .leaderboard import leaderboard

    boards = list(boards) if boards else leaderboard(results)
    out = ['<section id="session"><h2>Sparsity vs reconstruction</h2>']
    drawn = 0
    for b, board in enumerate(boards):
        if len(board.rows) > 1 or any(r.role == "candidate" for r in board.rows):
            out.append(leaderboard_table(board, b))
        plots = []
        for metric, ident, ylabel in (("explained_variance", "sparsity-plot", "explained variance"), ("ce_loss_score", "ce-plot", "CE loss score")):
            figure = frontier_figure(board, metric, ident if drawn == 0 else f"{ident}-{b}", ylabel)
            if figure:
                plots.append(figure)
        if plots:
            drawn += 1
            out.append('<div class="plots">' + "".join(plots) + "</div>")
    if not drawn:
        out.append('<p class="muted" id="sparsity-plot-missing">No plot: no SAE of this run was checked for both <code>l0</code> and <code>explained_variance</code>.</p>')
    out.append("</section>")
    return "\n".join(out)


def frontier_figure(board: Board, metric: str, ident: str, ylabel: str) -> str:
    from .leaderboard import ordered_rows
    from .plots import PlotPoint, frontier_svg

    frontier = {"explained_variance": "ev", "ce_loss_score": "ce"}[metric]
    points, legend = [], []
    for n, row in enumerate(ordered_rows(board), start=1):
        x, y = row.values.get("l0"), row.values.get(metric)
        if x is None or y is None:
            continue
        points.append(PlotPoint(n, row.checkpoint, x, y, row.role == "reference", frontier in row.frontier))
        cases = row.passed + row.failed
        what = "recorded" if row.recorded else f"{cases} case{'s' if cases != 1 else ''}"
        short_metric = "EV" if metric == "explained_variance" else "CE score"
        legend.append(f"<li value=\"{n}\">{esc(row.checkpoint)}: L0 {x:.2f}, {short_metric} {y:.4f}, {what}{' (frontier)' if frontier in row.frontier else ''}</li>")
    if not points:
        return ""
    title = f"{board.model} @ {board.hook}" if board.model or board.hook else "every SAE of the run"
    svg = frontier_svg(points, ylabel, f"L0 vs {ylabel}: {title}")
    return f'<figure class="plot" id="{esc(ident)}">{svg}<figcaption class="muted"><ol class="legend">{"".join(legend)}</ol></figcaption></figure>'


def leaderboard_table(board: Board, index: int) -> str:
    from .leaderboard import COLUMNS, cells, ordered_rows

    rows = ordered_rows(board)
    body = []
    for n, row in enumerate(rows[:MAX_LEADERBOARD_ROWS], start=1):
        values = cells(row)
        klass = ' class="reference"' if row.role == "reference" else ""
        body.append(f"<tr{klass}><td class=\"num\">{n}</td><td><code>{esc(values[0])}</code></td>"
                    + "".join(f'<td class="num">{esc(c)}</td>' for c in values[1:-1]) + f'<td class="frontier">{esc(values[-1])}</td></tr>')
    head = "<thead><tr><th>#</th>" + "".join(f"<th>{esc(c)}</th>" for c in COLUMNS) + "</tr></thead>"
    capped = f'<p class="capped">{len(rows) - MAX_LEADERBOARD_ROWS} more checkpoints not shown (all of them in --interp-json).</p>' if len(rows) > MAX_LEADERBOARD_ROWS else ""
    title = f"Leaderboard: {esc(board.model)} @ <code>{esc(board.hook)}</code>"
    return f'<div class="leaderboard" id="leaderboard-{index}"><h3>{title}</h3><table class="leaderboard">{head}<tbody>{"".join(body)}</tbody></table>{capped}</div>'


def observed_table(cases: Sequence[CaseResult]) -> str:
    rows = list(observed_rows(cases))
    head = "<thead><tr><th>case</th><th>SAE</th><th>check</th><th>where</th><th>observed</th><th>also recorded</th><th></th></tr></thead>"
    capped = f'<p class="capped">{len(rows) - MAX_OBSERVED_ROWS} more rows not shown (of {len(rows)}).</p>' if len(rows) > MAX_OBSERVED_ROWS else ""
    return f'<table class="observed">{head}<tbody>{"".join(rows[:MAX_OBSERVED_ROWS])}</tbody></table>{capped}'


def observed_rows(cases: Sequence[CaseResult]) -> Iterable[str]:
    for c in cases:
        for v in c.verdicts:
            state = "ok" if v.ok else "fail"
            extra = ", ".join(f"{esc(k)} {esc(value_text(x, 40))}" for k, x in v.extra)
            yield (
                f'<tr class="{state}"><td><code>{esc(c.case_id)}</code></td><td>{esc(c.sae)}</td><td>{esc(v.check)}</td><td class="mono">{esc(v.where)}</td>'
                f'<td class="num">{observed_cell(v)}</td><td>{extra}</td><td class="verdict {state}">{"ok" if v.ok else "FAIL"}</td></tr>'
            )
