"""Each check: (expectation, observations) -> Verdict(ok, observed, expected, detail). No pytest here.

`run_case(case_file, index, engine)` runs every check of one case against one SAE engine and returns
their verdicts. Feature references resolve once per SAE (`FeatureResolver`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import metrics, schema
from .errors import CaseError

if TYPE_CHECKING:
    import torch

    from .engine import SaeEngine, TextActs

MAX_ROWS = 12


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Verdict:
    check: str
    where: str  # file:line
    ok: bool
    expected: str
    observed: float | str | None
    summary: str  # what the observed number is, in words
    feature: str = ""  # e.g. "gg = #123" for feature checks
    table: Table | None = None
    notes: tuple[str, ...] = ()
    extra: tuple[tuple[str, float | str], ...] = ()  # more values recorded as properties


def fmt(v: float | str | None) -> str:
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
    return repr(text if len(text) <= width else text[: width - 3] + "...")


# ----------------------------------------------------------------------------- features
@dataclass
class FeatureResolver:
    """Resolves feature references of one case file for one SAE; selector results are cached."""

    cf: schema.CaseFile
    engine: SaeEngine
    resolved: dict[str, int] = field(default_factory=dict)

    def check_range(self, index: int, loc: tuple[str | int, ...]) -> int:
        d_sae = self.engine.d_sae
        if not 0 <= index < d_sae:
            raise CaseError(
                f"{self.cf.where(*loc)}: feature index {index} is outside [0, {d_sae}) "
                f"(d_sae of SAE {self.engine.label} is {d_sae})"
            )
        return index

    def __call__(self, ref: int | str, loc: tuple[str | int, ...]) -> int:
        if isinstance(ref, int):
            return self.check_range(ref, loc)
        if ref not in self.resolved:
            fdef = self.cf.model.features[ref]
            floc = ("features", ref)
            if isinstance(fdef, int):
                self.resolved[ref] = self.check_range(fdef, floc)
            else:
                self.resolved[ref] = self.most_active_on(fdef, floc)
        return self.resolved[ref]

    def most_active_on(self, sel: schema.MostActiveOn, loc: tuple[str | int, ...]) -> int:
        (acts,) = self.engine.acts([sel.most_active_on])
        dense = acts.dense()
        if sel.token is not None:
            pos = acts.positions(sel.token)
            if not pos:
                raise CaseError(
                    f"{self.cf.where(*loc, 'token')}: token {sel.token!r} does not occur in {short(sel.most_active_on)}; "
                    f"its tokens: {list(acts.tokens)!r}"
                )
            dense = dense[pos]
        per_feature = dense.max(0).values
        return int(per_feature.argmax())  # torch returns the first (lowest) index on ties

    def label(self, ref: int | str, index: int) -> str:
        return f"#{index}" if isinstance(ref, int) else f"{ref} = #{index}"


# ----------------------------------------------------------------------------- context
@dataclass(frozen=True)
class Ctx:
    cf: schema.CaseFile
    case_index: int
    check_index: int
    engine: SaeEngine
    features: FeatureResolver

    @property
    def case(self) -> schema.Case:
        return self.cf.model.cases[self.case_index]

    @property
    def loc(self) -> tuple[str | int, ...]:
        return ("cases", self.case_index, "expect", self.check_index)

    @property
    def where(self) -> str:
        return self.cf.where(*self.loc)

    def texts(self, on: tuple[str, ...] | None) -> list[tuple[str, str]]:
        """(label, text) pairs: the check's own groups, else the case's on/text/texts."""
        case = self.case
        groups = on if on is not None else case.on
        if groups is not None:
            return [(g, t) for g in groups for t in self.cf.model.texts[g]]
        if case.text is not None:
            return [("text", case.text)]
        if case.texts is not None:
            return [(f"texts[{i}]", t) for i, t in enumerate(case.texts)]
        raise CaseError(f"{self.where}: this check needs texts")  # schema validation prevents this

    def feature(self, p: Any) -> tuple[int, str]:
        name = self.case.expect[self.check_index].name
        index = self.features(p.feature, (*self.loc, name, "feature"))
        return index, self.features.label(p.feature, index)


Row = tuple[bool, tuple[str, ...]]


def _table(header: tuple[str, ...], rows: Sequence[Row]) -> Table:
    """Failing rows first, then the rest, in their original order."""
    ordered = [r for ok, r in rows if not ok] + [r for ok, r in rows if ok]
    return Table(header, tuple(ordered))


def _max_over(acts: TextActs, col: torch.Tensor, token: str | None) -> tuple[float, int] | None:
    """(max activation, position) of a feature over a text's tokens, or over the positions of `token`."""
    positions = acts.positions(token) if token is not None else list(range(len(acts.tokens)))
    if not positions:
        return None
    vals = col[positions]
    j = int(vals.argmax())
    return float(vals[j]), positions[j]


def _missing_token(label: str, acts: TextActs, token: str) -> str:
    shown = list(acts.tokens[:40])
    more = f" ... ({len(acts.tokens)} tokens)" if len(acts.tokens) > 40 else ""
    return f"token {token!r} does not occur in {label} {short(acts.text)}; its tokens: {shown!r}{more}"


# ----------------------------------------------------------------------------- feature checks
def _fires_or_silent(ctx: Ctx, p: Any, name: str) -> Verdict:
    f, flabel = ctx.feature(p)
    pairs = ctx.texts(p.on)
    acts = ctx.engine.acts([t for _, t in pairs])
    rows: list[Row] = []
    notes: list[str] = []
    maxima: list[float] = []
    for (label, _), a in zip(pairs, acts):
        got = _max_over(a, a.dense()[:, f], p.token)
        if got is None:
            notes.append(_missing_token(label, a, p.token or ""))
            rows.append((False, (label, short(a.text), "-", "-", "token missing")))
            continue
        value, pos = got
        maxima.append(value)
        ok = value > p.min if name == "fires" else value <= p.max
        rows.append((ok, (label, short(a.text), repr(a.tokens[pos]), fmt(value), "ok" if ok else "FAIL")))
    if name == "fires":
        observed = min(maxima) if maxima else None
        expected = f"max activation > {fmt(p.min)} on every text"
        summary = "smallest per-text max activation"
    else:
        observed = max(maxima) if maxima else None
        expected = f"max activation <= {fmt(p.max)} on every text"
        summary = "largest per-text max activation"
    if p.token is not None:
        summary += f" at {p.token!r}"
    ok = not notes and all(r[0] for r in rows)
    return Verdict(
        name, ctx.where, ok, expected, observed, summary, flabel,
        _table(("text of", "text", "at token", "max act", ""), rows), tuple(notes),
    )


def check_fires(ctx: Ctx, p: schema.Fires) -> Verdict:
    return _fires_or_silent(ctx, p, "fires")


def check_silent(ctx: Ctx, p: schema.Silent) -> Verdict:
    return _fires_or_silent(ctx, p, "silent")


def check_separates(ctx: Ctx, p: schema.Separates) -> Verdict:
    f, flabel = ctx.feature(p)
    pos_pairs, neg_pairs = ctx.texts(p.positive), ctx.texts(p.negative)
    acts = ctx.engine.acts([t for _, t in pos_pairs + neg_pairs])
    scores = [float(a.dense()[:, f].max()) for a in acts]
    pos, neg = scores[: len(pos_pairs)], scores[len(pos_pairs) :]
    auc = metrics.auroc(pos, neg)
    ok = auc >= p.min_auroc
    worst_neg = max(neg)
    rows: list[Row] = []
    for k, ((label, text), s) in enumerate(zip(pos_pairs + neg_pairs, scores)):
        is_pos = k < len(pos_pairs)
        good = s > worst_neg if is_pos else s < min(pos)
        rows.append((good, ("positive" if is_pos else "negative", label, short(text), fmt(s))))
    return Verdict(
        "separates", ctx.where, ok, f"AUROC >= {fmt(p.min_auroc)}", auc,
        f"AUROC of per-text max activation, {len(pos)} positive vs {len(neg)} negative texts", flabel,
        _table(("side", "text of", "text", "max act"), rows),
    )


def _top(row: torch.Tensor, n: int = 3) -> str:
    vals, idx = row.topk(min(n, row.shape[0]))
    return ", ".join(f"#{int(i)}={fmt(float(v))}" for v, i in zip(vals, idx))


def check_top_k(ctx: Ctx, p: schema.TopK) -> Verdict:
    f, flabel = ctx.feature(p)
    pairs = ctx.texts(p.on)
    acts = ctx.engine.acts([t for _, t in pairs])
    rows: list[Row] = []
    notes: list[str] = []
    ranks: list[int] = []
    for (label, _), a in zip(pairs, acts):
        positions = a.positions(p.token)
        if not positions:
            notes.append(_missing_token(label, a, p.token))
            rows.append((False, (label, short(a.text), "-", "-", "-", "token missing", "")))
            continue
        dense = a.dense()
        for pos in positions:
            row = dense[pos]
            value = float(row[f])
            rank = 1 + int((row > row[f]).sum())
            ranks.append(rank)
            ok = value > 0 and rank <= p.k
            status = "ok" if ok else ("inactive" if value <= 0 else f"rank > {p.k}")
            rows.append((ok, (label, short(a.text), str(pos + 1), fmt(value), str(rank), status, _top(row))))
    ok = not notes and all(r[0] for r in rows)
    return Verdict(
        "top_k", ctx.where, ok, f"active and rank <= {p.k} at every {p.token!r}", float(max(ranks)) if ranks else None,
        f"worst rank at {p.token!r} (1 = most active)", flabel,
        _table(("text of", "text", "pos", "act", "rank", "", "top features there"), rows), tuple(notes),
    )


def check_most_active(ctx: Ctx, p: schema.MostActive) -> Verdict:
    f, flabel = ctx.feature(p)
    pairs = ctx.texts(p.on)
    acts = ctx.engine.acts([t for _, t in pairs])
    rows: list[Row] = []
    ranks: list[int] = []
    for (label, _), a in zip(pairs, acts):
        dense = a.dense()
        per_feature = dense.max(0).values
        mine = float(per_feature[f])
        rank = 1 + int((per_feature > per_feature[f]).sum())
        ranks.append(rank)
        best = int(per_feature.argmax())
        at = int(dense[:, best].argmax())
        rows.append((rank == 1, (label, short(a.text), fmt(mine), str(rank), f"#{best}", fmt(float(per_feature[best])), repr(a.tokens[at]))))
    ok = all(r[0] for r in rows)
    return Verdict(
        "most_active", ctx.where, ok, "rank 1 (no feature has a larger single activation) in every text",
        float(max(ranks)), "worst rank of the feature's largest activation among all features' (1 = most active)", flabel,
        _table(("text of", "text", "its max", "rank", "top feature", "top max", "at token"), rows),
    )


# ----------------------------------------------------------------------------- reconstruction
RECON: dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor], float]] = {
    "explained_variance": lambda x, xh, f: metrics.explained_variance(x, xh),
    "explained_variance_legacy": lambda x, xh, f: metrics.explained_variance_legacy(x, xh),
    "mse": lambda x, xh, f: metrics.mse(x, xh),
    "cosine": lambda x, xh, f: metrics.cosine(x, xh),
    "l0": lambda x, xh, f: metrics.l0(f),
    "dead_fraction": lambda x, xh, f: metrics.dead_fraction(f),
}

SUMMARY = {
    "explained_variance": "1 - sum||x - x_hat||^2 / sum||x - mu||^2 over pooled tokens",
    "explained_variance_legacy": "mean over tokens of 1 - ||x - x_hat||^2 / ||x - mu||^2",
    "mse": "mean over elements of (x - x_hat)^2",
    "cosine": "mean over tokens of cos(x, x_hat)",
    "l0": "mean over tokens of the number of active features",
    "dead_fraction": "fraction of features inactive on every token",
    "ce_loss_score": "(CE_zero - CE_sae) / (CE_zero - CE_orig)",
    "delta_loss": "CE_sae - CE_orig",
    "kl_div": "mean KL(orig || sae) of next-token distributions",
}


def _bounds(p: Any) -> tuple[float | None, float | None]:
    return getattr(p, "min", None), getattr(p, "max", None)


def _within(value: float | None, lo: float | None, hi: float | None) -> bool:
    if value is None or math.isnan(value):
        return False
    return (lo is None or value >= lo) and (hi is None or value <= hi)


def _expected(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"in [{fmt(lo)}, {fmt(hi)}]"
    return f">= {fmt(lo)}" if lo is not None else f"<= {fmt(hi)}"


def registry_bounds(ctx: Ctx, name: str, p: Any) -> tuple[float | None, float | None, str]:
    """(min, max, note) of an `l0` / `explained_variance` check given as {registry: true, tolerance}."""
    from .registry import published

    values = published(ctx.engine.ref) if ctx.engine.ref is not None else {}
    if name not in values:
        raise CaseError(
            f"{ctx.where}: {name}: registry: true, but the registry entry of SAE {ctx.engine.label} publishes no {name} "
            f"(it has: {', '.join(values) or 'nothing'}): give explicit bounds instead"
        )
    value, tol = values[name], p.tolerance
    note = f"registry value {fmt(value)}, tolerance {fmt(tol)}"
    if name == "l0":
        return value - tol, value + tol, note
    return value - tol, None, note


def check_reconstruction(ctx: Ctx, name: str, p: Any) -> Verdict:
    import torch

    pairs = ctx.texts(p.on)
    acts = ctx.engine.acts([t for _, t in pairs])
    fn = RECON[name]
    dense = [a.dense() for a in acts]
    x = torch.cat([a.x for a in acts])
    x_hat = torch.cat([a.x_hat for a in acts])
    if name.startswith("explained_variance") and x.shape[0] < 2:
        raise CaseError(f"{ctx.where}: {name} needs at least 2 tokens over the case's texts (1 - residual / variance: one token has no variance around its mean): give a longer text")
    observed = fn(x, x_hat, torch.cat(dense))
    lo, hi = _bounds(p)
    notes: tuple[str, ...] = ()
    if getattr(p, "registry", False):
        lo, hi, note = registry_bounds(ctx, name, p)
        notes = (note,)
    rows = [(True, (label, short(a.text), str(len(a.tokens)), fmt(fn(a.x, a.x_hat, d)))) for (label, _), a, d in zip(pairs, acts, dense)]
    return Verdict(
        name, ctx.where, _within(observed, lo, hi), _expected(lo, hi), observed,
        f"{SUMMARY[name]} ({x.shape[0]} tokens of {len(acts)} texts)",
        table=Table(("text of", "text", "tokens", f"{name} alone"), tuple(r for _, r in rows)),
        notes=notes,
    )


def check_loss(ctx: Ctx, name: str, p: Any) -> Verdict:
    import torch

    pairs = ctx.texts(p.on)
    losses = ctx.engine.losses([t for _, t in pairs])
    n = sum(int(l.ce_orig.numel()) for l in losses)
    if n == 0:
        raise CaseError(f"{ctx.where}: {name} needs texts of at least 2 tokens (it scores the predictions at positions 1 .. n-2)")
    ce = {k: float(torch.cat([getattr(l, f"ce_{k}") for l in losses]).mean()) for k in ("orig", "sae", "zero")}
    kl = float(torch.cat([l.kl for l in losses]).mean())
    if name == "ce_loss_score":
        denom = ce["zero"] - ce["orig"]
        observed = (ce["zero"] - ce["sae"]) / denom if denom != 0 else float("nan")
    elif name == "delta_loss":
        observed = ce["sae"] - ce["orig"]
    else:
        observed = kl
    lo, hi = _bounds(p)
    rows = tuple(
        (label, short(text), str(int(l.ce_orig.numel())), fmt(float(l.ce_orig.mean())) if l.ce_orig.numel() else "-",
         fmt(float(l.ce_sae.mean())) if l.ce_sae.numel() else "-", fmt(float(l.ce_zero.mean())) if l.ce_zero.numel() else "-")
        for (label, text), l in zip(pairs, losses)
    )
    return Verdict(
        name, ctx.where, _within(observed, lo, hi), _expected(lo, hi), observed,
        f"{SUMMARY[name]} over {n} predictions; CE orig {fmt(ce['orig'])}, sae {fmt(ce['sae'])}, zero {fmt(ce['zero'])}, KL {fmt(kl)}",
        table=Table(("text of", "text", "preds", "CE orig", "CE sae", "CE zero"), rows),
        extra=(("ce_orig", ce["orig"]), ("ce_sae", ce["sae"]), ("ce_zero", ce["zero"])),
    )


# ----------------------------------------------------------------------------- dispatch
def texts_needed(cf: schema.CaseFile, index: int) -> list[str]:
    """Every text a case encodes (for prefetching in one batch per target)."""
    case = cf.model.cases[index]
    out: list[str] = []
    for fdef in cf.model.features.values():
        if isinstance(fdef, schema.MostActiveOn):
            out.append(fdef.most_active_on)
    if case.text is not None:
        out.append(case.text)
    out.extend(case.texts or ())
    for g in case.on or ():
        out.extend(cf.model.texts.get(g, ()))
    for exp in case.expect:
        p = exp.params
        for attr in ("on", "positive", "negative"):
            for g in getattr(p, attr, None) or ():
                out.extend(cf.model.texts.get(g, ()))
    return list(dict.fromkeys(out))


def run_check(ctx: Ctx) -> Verdict:
    exp = ctx.case.expect[ctx.check_index]
    name, p = exp.name, exp.params
    if name in FEATURE_FUNCS:
        return FEATURE_FUNCS[name](ctx, p)
    if name in RECON:
        return check_reconstruction(ctx, name, p)
    if name in schema.LOSS_CHECKS:
        return check_loss(ctx, name, p)
    from . import steering

    return steering.run_check(ctx, name, p)


FEATURE_FUNCS: dict[str, Callable[[Ctx, Any], Verdict]] = {
    "fires": check_fires,
    "silent": check_silent,
    "separates": check_separates,
    "top_k": check_top_k,
    "most_active": check_most_active,
}


def run_case(cf: schema.CaseFile, index: int, engine: SaeEngine, features: FeatureResolver | None = None) -> list[Verdict]:
    features = features or FeatureResolver(cf, engine)
    case = cf.model.cases[index]
    return [run_check(Ctx(cf, index, j, engine, features)) for j in range(len(case.expect))]


def verdict_lines(verdicts: Sequence[Verdict]) -> list[tuple[str, float | str]]:
    """JUnit properties: `<check>.observed` for every check (and a few extra values)."""
    out: list[tuple[str, float | str]] = []
    for v in verdicts:
        out.append((f"{v.check}.observed", v.observed if v.observed is not None else "none"))
        out.extend((f"{v.check}.{k}", val) for k, val in v.extra)
    return out
