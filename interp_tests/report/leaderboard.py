"""The leaderboard: one table per (model, hook), a row per checkpoint that ran there, the reference first.

Built from finished results (CaseResult JSON) and the drift rows of a compare run, so it needs nothing the
xdist controller lacks. No pytest here.

- A row's value of a metric (L0, explained variance, CE loss score, KL, dead fraction) is the mean of the
  values its cases observed for that check, dataset-level values first: when any case measured it on a
  corpus, the corpus measurements are used, else the lists of texts (the row says which).
- The reference's row, in a run of candidates, holds the values recorded in the baseline file for the same
  checks (`recorded`); in a run of the case files' own SAEs it is measured like any other.
- Matching columns (candidates): the decoders' MMCS, and the lowest decoder cosine, encoder cosine and
  activation correlation over the feature pairs the cases relied on (both sides of each match).
- The Pareto frontier of L0 (lower is better) against explained variance and against CE loss score (higher is
  better): a row is on it when no other row is at least as good on both and better on one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

METRICS = ("l0", "explained_variance", "ce_loss_score", "kl_div", "dead_fraction")
FRONTIERS = {"ev": "explained_variance", "ce": "ce_loss_score"}  # frontier name -> the metric against L0


@dataclass
class Row:
    checkpoint: str  # short label
    sae: str  # the SAE in full (a path, or RELEASE/ID)
    role: str  # "reference" (the case files' SAE in a candidate run), "candidate", or "sae" (a run without candidates)
    recorded: bool = False  # values read from the baseline file, not measured in this run
    passed: int = 0
    failed: int = 0
    values: dict[str, float | None] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # metric -> "corpus" or "texts"
    matching: dict[str, float | None] = field(default_factory=dict)
    frontier: list[str] = field(default_factory=list)  # the frontiers ("ev", "ce") the row is on

    def as_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint, "sae": self.sae, "role": self.role, "recorded": self.recorded,
            "cases_passed": self.passed, "cases_failed": self.failed,
            **{m: self.values.get(m) for m in METRICS}, "sources": dict(self.sources),
            **{k: v for k, v in self.matching.items()}, "frontier": list(self.frontier),
        }


@dataclass
class Board:
    model: str
    hook: str
    rows: list[Row]

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "hook": self.hook, "rows": [r.as_dict() for r in self.rows]}


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _metric_values(verdicts: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """metric -> {"corpus": [...], "texts": [...]} of the verdicts' observed values."""
    out: dict[str, dict[str, list[float]]] = {}
    for v in verdicts:
        if v.get("check") not in METRICS or v.get("error"):
            continue
        value = _finite(v.get("observed"))
        if value is None:
            continue
        source = "corpus" if any(k == "corpus_sha256" for k, _ in v.get("extra") or ()) else "texts"
        out.setdefault(str(v["check"]), {}).setdefault(source, []).append(value)
    return out


def _fill(row: Row, found: Mapping[str, Mapping[str, list[float]]]) -> None:
    for metric in METRICS:
        by_source = found.get(metric, {})
        source = "corpus" if by_source.get("corpus") else "texts" if by_source.get("texts") else ""
        row.values[metric] = _mean(by_source.get(source, [])) if source else None
        if source:
            row.sources[metric] = source


def leaderboard(results: Sequence[Mapping[str, Any]], drift: Sequence[Any] = ()) -> list[Board]:
    """The boards of a run: `results` are CaseResult JSON, `drift` the run's DriftRows (for recorded values)."""
    boards: dict[tuple[str, str], dict[str, Row]] = {}
    verdicts: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    pairs: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    mmcs: dict[tuple[str, str, str], list[float]] = {}
    references: dict[tuple[str, str], set[str]] = {}
    for r in results:
        key = (str(r.get("model", "")), str(r.get("hook", "")))
        label = str(r.get("checkpoint") or r.get("sae"))
        rows = boards.setdefault(key, {})
        row = rows.get(label)
        if row is None:
            row = rows[label] = Row(label, str(r.get("sae")), "candidate" if r.get("candidate") else "sae")
        ok = not r.get("error") and all(v.get("ok") for v in [*r.get("verdicts", ()), *r.get("drift", ())])
        row.passed += ok
        row.failed += not ok
        verdicts.setdefault((*key, label), []).extend(r.get("verdicts", ()))
        pairs.setdefault((*key, label), []).extend(r.get("pairs", ()))
        if "mmcs" in (r.get("matching") or {}):
            mmcs.setdefault((*key, label), []).append(float(r["matching"]["mmcs"]))
        if r.get("candidate"):
            references.setdefault(key, set()).add(str(r.get("reference")))
    out = []
    for key, rows in boards.items():
        for label, row in rows.items():
            _fill(row, _metric_values(verdicts[(*key, label)]))
            if row.role == "candidate":
                row.matching = matching_columns(pairs[(*key, label)], mmcs.get((*key, label), []))
        ordered = list(rows.values())
        for reference in sorted(references.get(key, ())):
            recorded = _recorded_row(reference, drift)
            if recorded is not None:
                ordered.insert(0, recorded)
        mark_frontiers(ordered)
        out.append(Board(key[0], key[1], ordered))
    return out


def matching_columns(pairs: Sequence[Mapping[str, Any]], mmcs: Sequence[float]) -> dict[str, float | None]:
    decoder = [float(p["decoder_cos"]) for p in pairs if _finite(p.get("decoder_cos")) is not None]
    encoder = [float(p["encoder_cos"]) for p in pairs if _finite(p.get("encoder_cos")) is not None]
    correlation = [float(p["correlation"]) for p in pairs if _finite(p.get("correlation")) is not None]
    return {
        "mmcs": _mean(list(mmcs)),
        "matched_decoder_cos": _mean(decoder),
        "lowest_decoder_cos": min(decoder, default=None),
        "lowest_encoder_cos": min(encoder, default=None),
        "lowest_correlation": min(correlation, default=None),
    }


def _recorded_row(reference: str, drift: Sequence[Any]) -> Row | None:
    """The reference's row from the values recorded in its baseline (one value per compared check)."""
    seen: dict[str, tuple[str, float]] = {}  # where -> (metric, recorded value)
    for d in drift:
        if getattr(d, "reference_sae", "") != reference or d.check not in METRICS:
            continue
        value = _finite(d.reference)
        if value is not None:
            seen[d.where] = (d.check, value)
    if not seen:
        return None
    row = Row(reference, reference, "reference", recorded=True)
    by_metric: dict[str, dict[str, list[float]]] = {}
    for metric, value in seen.values():
        by_metric.setdefault(metric, {}).setdefault("recorded", []).append(value)
    for metric in METRICS:
        values = by_metric.get(metric, {}).get("recorded", [])
        row.values[metric] = _mean(values)
        if values:
            row.sources[metric] = "recorded"
    return row


def mark_frontiers(rows: Sequence[Row]) -> None:
    for name, metric in FRONTIERS.items():
        points: list[tuple[Row, float, float]] = []
        for r in rows:
            x, y = r.values.get("l0"), r.values.get(metric)
            if x is not None and y is not None:
                points.append((r, x, y))
        for r, x, y in points:
            dominated = any(_le(ox, x) and _le(y, oy) and (not _le(x, ox) or not _le(oy, y)) for o, ox, oy in points if o is not r)
            if not dominated:
                r.frontier.append(name)


def _le(a: float, b: float) -> bool:
    """a <= b, values within 1e-6 relative (float rounding of the same measurement) counting as equal."""
    return a <= b + 1e-6 * max(abs(a), abs(b), 1e-12)


def ordered_rows(board: Board) -> list[Row]:
    """The reference first, then the rows on a frontier, then the rest, each by explained variance (best first)."""
    def score(r: Row) -> float:
        ev = r.values.get("explained_variance")
        return -(ev if ev is not None else -math.inf)

    references = [r for r in board.rows if r.role == "reference"]
    others = [r for r in board.rows if r.role != "reference"]
    on = sorted((r for r in others if r.frontier), key=score)
    off = sorted((r for r in others if not r.frontier), key=score)
    return references + on + off


COLUMNS = ("checkpoint", "claims", "L0", "EV", "CE score", "KL", "dead", "MMCS", "min enc cos", "min corr", "frontier")


def cells(row: Row) -> tuple[str, ...]:
    def num(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    name = row.checkpoint + (" (reference, recorded)" if row.recorded else " (reference)" if row.role == "reference" else "")
    claims = "-" if row.recorded else f"{row.passed}/{row.passed + row.failed}"
    frontier = "+".join({"ev": "L0-EV", "ce": "L0-CE"}[f] for f in row.frontier)
    return (
        name, claims, *(num(row.values.get(m)) for m in METRICS),
        num(row.matching.get("mmcs")), num(row.matching.get("lowest_encoder_cos")), num(row.matching.get("lowest_correlation")), frontier,
    )


def terminal_lines(boards: Sequence[Board], max_rows: int = 20) -> list[str]:
    """The leaderboard for the terminal summary: capped, the frontier first."""
    out: list[str] = []
    for board in boards:
        if len(board.rows) < 2 and not any(r.role == "candidate" for r in board.rows):
            continue  # one SAE and no candidate: nothing to rank
        rows = ordered_rows(board)
        out.append(f"interp-tests: leaderboard {board.model} @ {board.hook}: {len(rows)} checkpoints (frontier: L0 against explained variance / CE loss score)")
        body = [cells(r) for r in rows[:max_rows]]
        widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(COLUMNS)]
        for line in (COLUMNS, *body):
            out.append("  " + "  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip())
        if len(rows) > max_rows:
            out.append(f"  ... {len(rows) - max_rows} more checkpoints (all of them in --interp-md, --interp-html and --interp-json)")
    return out
