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


@dataclass(frozen=True)
class PlotPoint:
    """One checkpoint on a frontier plot: its number (the legend's), L0 and the other metric."""

    number: int
    label: str
    x: float
    y: float
    reference: bool = False
    frontier: bool = False


OFFSETS = [(6, 5), (6, -13), (-8, 5), (-8, -13), (10, 14), (10, -22), (-14, 14), (-14, -22), (18, 0), (-22, 0), (0, 18), (0, -26)]


def frontier_svg(points: Sequence[PlotPoint], ylabel: str, title: str) -> str:
    """L0 against a metric, one marker per checkpoint (the reference a star), the Pareto frontier drawn as a
    step line. Markers carry their legend numbers, never full labels; points at one spot share one annotation
    ("1, 3, 4"), and an annotation that would overlap another (or leave the axes) tries other offsets and is
    dropped when none is free: the legend beside the plot always names every point."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 4.4), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    others = [p for p in points if not p.reference]
    refs = [p for p in points if p.reference]
    if others:
        ax.scatter([p.x for p in others], [p.y for p in others], s=36, zorder=3,
                   c=["#1f7a3a" if p.frontier else "#4a6fa5" for p in others], label="checkpoint (green: on the frontier)")
    if refs:
        ax.scatter([p.x for p in refs], [p.y for p in refs], s=140, marker="*", c="#b42318", zorder=4, label="reference")
    front = sorted((p for p in points if p.frontier), key=lambda p: (p.x, -p.y))
    if len(front) > 1:
        ax.step([p.x for p in front], [p.y for p in front], where="post", color="#1f7a3a", alpha=0.6, zorder=2, label="frontier")
    ax.set_xlabel("L0 (mean active features per token; lower is sparser)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.margins(x=0.15, y=0.15)
    if points:
        ax.legend(loc="best", fontsize=7, framealpha=0.7)
    fig.tight_layout()
    canvas.draw()
    renderer = canvas.get_renderer()
    legend = ax.get_legend()
    placed = [legend.get_window_extent(renderer)] if legend is not None else []
    frame = ax.get_window_extent(renderer)
    for spot in _spots(points, ax):
        text = ", ".join(str(p.number) for p in spot)
        anchor = (spot[0].x, spot[0].y)
        for dx, dy in OFFSETS:
            note = ax.annotate(text, anchor, textcoords="offset points", xytext=(dx, dy), fontsize=8, zorder=5)
            box = note.get_window_extent(renderer)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not any(box.overlaps(other) for other in placed):
                placed.append(box)
                break
            note.remove()
    return svg_of(fig)


def _spots(points: Sequence[PlotPoint], ax: Any) -> list[list[PlotPoint]]:
    """Points grouped by where they land on the plot (within 3 pixels)."""
    spots: list[tuple[Any, list[PlotPoint]]] = []
    for p in points:
        xy = ax.transData.transform((p.x, p.y))
        for where, members in spots:
            if abs(where[0] - xy[0]) < 3 and abs(where[1] - xy[1]) < 3:
                members.append(p)
                break
        else:
            spots.append((xy, [p]))
    return [members for _, members in spots]
