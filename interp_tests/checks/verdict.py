"""Verdicts, tables and number formatting: the leaf every check and report builds on. No pytest here."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

MAX_ROWS = 12  # rows of a table shown in a terminal report before it says how many more there are

Value = float | str | None


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Verdict:
    """The outcome of one check of one case against one SAE."""

    check: str  # the check's name, e.g. "fires"
    where: str  # file:line of the check
    ok: bool
    expected: str  # what passes, in words
    observed: Value  # the number (or text) compared
    summary: str  # what the observed value is, in words
    feature: str = ""  # e.g. "gg = #123" for feature checks
    table: Table | None = None
    notes: tuple[str, ...] = ()
    extra: tuple[tuple[str, Value], ...] = ()  # more values recorded as properties
    heatmaps: tuple[Heatmap, ...] = ()  # per-token activations of the feature, for visual reports
    error: str = ""  # set when the check could not be evaluated (ok is then False)
    feature_index: int | None = None  # the SAE feature a feature check read
    feature_url: str = ""  # its Neuronpedia page, where the SAE's registry entry has a Neuronpedia id
    reference_heatmaps: tuple[Heatmap, ...] = ()  # on a candidate: the reference feature on the same texts
    interval: tuple[float, float] | None = None  # the observed value's 95% interval (bootstrap over windows or texts)
    paired: tuple[float, float, float] | None = None  # on a candidate: (the reference's value on the same units, and
    # the 95% interval of candidate - reference from one bootstrap drawing the same units for both)


@dataclass(frozen=True)
class Heatmap:
    """One text's tokens and one feature's activation at each of them (BOS excluded)."""

    label: str
    tokens: tuple[str, ...]
    values: tuple[float, ...]


def fmt(v: Value) -> str:
    """A value at fixed precision: 4 decimals, nan/inf spelled out, strings as a short repr."""
    if v is None:
        return "-"
    if isinstance(v, str):
        return short(v, 80)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.4f}"


def short(text: str, width: int = 48) -> str:
    """`repr` of a text cut to about `width` characters (so spaces and newlines stay visible)."""
    return repr(text if len(text) <= width else text[: width - 3] + "...")


Row = tuple[bool, tuple[str, ...]]


def failing_first(header: tuple[str, ...], rows: Sequence[Row]) -> Table:
    """A table with the failing rows first, then the rest, each in their original order."""
    ordered = [r for ok, r in rows if not ok] + [r for ok, r in rows if ok]
    return Table(header, tuple(ordered))


def fmt_interval(interval: tuple[float, float] | None) -> str:
    """` [95% CI 0.8050, 0.8170]`, or nothing when there is no interval."""
    if interval is None:
        return ""
    return f" [95% CI {fmt(interval[0])}, {fmt(interval[1])}]"
