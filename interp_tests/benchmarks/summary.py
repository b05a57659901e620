"""The one-screen summary that ends a timed benchmark session, and the number formats it shares with the
markdown table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class BenchReport:
    """Rows for the end-of-session summary and the ceilings later benchmarks compare against."""

    rows: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    ceilings: dict[tuple[str, int], float] = field(default_factory=dict)  # (target id, tokens) -> GFLOP/s

    def add(self, name: str, info: dict[str, Any]) -> None:
        self.rows.append((name, dict(info)))

    def lines(self) -> list[str]:
        if not self.rows:
            return []
        header = ("benchmark", "device/dtype", "median", "tokens/s", "GFLOP/s", "of ceiling", "notes")
        table = [header]
        for name, i in self.rows:
            table.append((
                name,
                f"{i.get('device', '?')}/{i.get('dtype', '?')}",
                seconds(i.get("median_s")),
                per_s(i.get("tokens_per_s")),
                num(i.get("gflops"), ".1f"),
                num(i.get("fraction_of_ceiling"), ".0%"),
                i.get("note", ""),
            ))
        widths = [max(len(str(r[c])) for r in table) for c in range(len(header))]
        fmt = lambda r: "  ".join(str(v).ljust(w) if c in (0, 1, 6) else str(v).rjust(w) for c, (v, w) in enumerate(zip(r, widths)))  # noqa: E731
        return [fmt(table[0]), "  ".join("-" * w for w in widths), *(fmt(r).rstrip() for r in table[1:])]


def num(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def per_s(value: float | None, grouped: bool = False) -> str:
    """A rate: whole numbers from 100 up (with thousands separators when `grouped`), one decimal below."""
    if value is None:
        return "-"
    return format(value, (",.0f" if grouped else ".0f") if value >= 100 else ".1f")


def seconds(value: float | None) -> str:
    """A duration for people: `12.3 ms` under a second, `1.23 s` above."""
    if value is None:
        return "-"
    return f"{value * 1e3:.1f} ms" if value < 1 else f"{value:.2f} s"
