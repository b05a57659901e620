"""pytest-benchmark JSON runs as one markdown table for the docs (scripts/bench_table.py prints it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .summary import num, per_s, seconds


def markdown_table(runs: Sequence[dict[str, Any]]) -> str:
    """The benchmarks of pytest-benchmark JSON runs (`--benchmark-json`) as one markdown table for the docs."""
    header = ("benchmark", "device", "dtype", "median", "tokens/s", "GFLOP/s", "of ceiling", "notes")
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for run in runs:
        for b in run.get("benchmarks", []):
            i = b.get("extra_info", {})
            median = i.get("median_s", b.get("stats", {}).get("median"))
            cells = (
                f"`{b.get('name', '?')}`",
                i.get("device_name", i.get("device", "?")),
                i.get("dtype", "?"),
                seconds(median),
                per_s(i.get("tokens_per_s"), grouped=True),
                num(i.get("gflops"), ",.1f"),
                num(i.get("fraction_of_ceiling"), ".2f"),
                str(i.get("note", "")).replace("|", "/"),
            )
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
