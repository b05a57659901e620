"""Plots of a run for the HTML report, drawn by matplotlib as inline SVG. No pytest here.

matplotlib is imported inside the functions that draw, so that `pytest --help` and `--collect-only`
never load it; a Figure with its own Agg canvas is used, never pyplot, so no global backend is changed.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SparsityPoint:
    """One SAE's L0 and explained variance (means over the cases of the run that observed them)."""

    sae: str  # the SAE's label, e.g. "gpt2-small-res-jb/blocks.8.hook_resid_pre"
    l0: float
    explained_variance: float
    cases: int  # how many cases the values come from


def sparsity_points(results: Sequence[dict[str, Any]]) -> list[SparsityPoint]:
    """Per SAE label, the mean observed `l0` and `explained_variance` of the run's results (CaseResult JSON);
    only SAEs with both, only finite numbers of checks that could be evaluated."""
    l0s: dict[str, list[float]] = {}
    evs: dict[str, list[float]] = {}
    cases: dict[str, set[str]] = {}
    for r in results:
        sae = str(r["sae"])
        for v in r["verdicts"]:
            value = v["observed"]
            if v.get("error") or isinstance(value, (str, type(None))) or not math.isfinite(value):
                continue
            into = {"l0": l0s, "explained_variance": evs}.get(v["check"])
            if into is not None:
                into.setdefault(sae, []).append(float(value))
                cases.setdefault(sae, set()).add(str(r["case_id"]))
    return [SparsityPoint(s, sum(l0s[s]) / len(l0s[s]), sum(evs[s]) / len(evs[s]), len(cases[s])) for s in l0s if s in evs]


def sparsity_svg(points: Sequence[SparsityPoint]) -> str:
    """L0 against explained variance, one labelled point per SAE, as an `<svg>` element (no XML prolog)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ordered = sorted(points, key=lambda p: p.l0)
    for p in ordered:
        ax.scatter([p.l0], [p.explained_variance], s=40, zorder=3)
        ax.annotate(short_label(p.sae), (p.l0, p.explained_variance), textcoords="offset points", xytext=(6, 5), fontsize=8)
    ax.set_xlabel("L0 (mean active features per token)")
    ax.set_ylabel("explained variance")
    ax.set_title("Sparsity vs reconstruction, one point per SAE")
    ax.grid(True, alpha=0.3)
    ax.margins(x=0.25, y=0.2)
    fig.tight_layout()
    return svg_of(fig)


def short_label(sae: str, width: int = 48) -> str:
    return sae if len(sae) <= width else "..." + sae[-(width - 3) :]


def svg_of(fig: Any) -> str:
    """A figure as an inline `<svg>` element: deterministic ids, no date, the XML prolog and doctype cut."""
    import matplotlib

    out = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "interp-tests", "svg.fonttype": "path"}):
        fig.savefig(out, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    text = out.getvalue()
    return text[text.index("<svg") :]
