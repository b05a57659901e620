"""Reconstruction, sparsity and loss checks over the pooled tokens of a case's texts. No pytest here."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..cases import schema
from ..common.errors import CaseError
from ..compute import metrics
from .context import CheckContext
from .verdict import Table, Value, Verdict, fmt, short

if TYPE_CHECKING:
    import torch

    from ..compute.bootstrap import UnitSums
    from ..compute.corpus import Corpus
    from ..compute.corpus_stats import CorpusStats
    from ..compute.engine import TextActs, TextLoss

RECONSTRUCTION: dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor], float]] = {
    "explained_variance": lambda x, x_hat, feats: metrics.explained_variance(x, x_hat),
    "explained_variance_legacy": lambda x, x_hat, feats: metrics.explained_variance_legacy(x, x_hat),
    "mse": lambda x, x_hat, feats: metrics.mse(x, x_hat),
    "cosine": lambda x, x_hat, feats: metrics.cosine(x, x_hat),
    "l0": lambda x, x_hat, feats: metrics.l0(feats),
    "dead_fraction": lambda x, x_hat, feats: metrics.dead_fraction(feats),
}

DEFINITION = {
    "dense_fraction": "fraction of features active on more than a given share of tokens",
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

Bounds = tuple[float | None, float | None]


def bounds(params: schema.Check) -> Bounds:
    return getattr(params, "min", None), getattr(params, "max", None)


def within(value: float | None, lo: float | None, hi: float | None) -> bool:
    if value is None or math.isnan(value):
        return False
    return (lo is None or value >= lo) and (hi is None or value <= hi)


def expected_range(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"in [{fmt(lo)}, {fmt(hi)}]"
    return f">= {fmt(lo)}" if lo is not None else f"<= {fmt(hi)}"


def registry_bounds(ctx: CheckContext, params: schema.RegistryBound, tokens: int) -> tuple[float | None, float | None, str]:
    """(min, max, note) of an `l0` / `explained_variance` check given as {registry: true, tolerance}; the
    registry's values are dataset-level, so the check needs a corpus of REGISTRY_MIN_TOKENS tokens or more."""
    from ..compute.corpus_pass import REGISTRY_MIN_TOKENS
    from ..compute.registry import published

    name = params.check
    if tokens < REGISTRY_MIN_TOKENS:
        raise CaseError(
            f"{ctx.where}: {name}: registry: true compares with a dataset-level value, measured here on {tokens:,} tokens: "
            f"give the check a corpus of at least {REGISTRY_MIN_TOKENS:,} tokens (texts: {{NAME: {{corpus: {{path: FILE, tokens: N}}}}}}, on: NAME)"
        )
    engine = ctx.engine
    owner = engine.reference if engine.reference is not None else engine.ref  # a candidate is held to the reference's value
    label = owner.label if owner is not None else engine.label
    values = published(owner) if owner is not None else {}
    if name not in values:
        raise CaseError(
            f"{ctx.where}: {name}: registry: true, but the registry entry of SAE {label} publishes no {name} "
            f"(it has: {', '.join(values) or 'nothing'}): give explicit bounds instead"
        )
    value, tolerance = values[name], params.tolerance or 0.0
    whose = f"the reference {label}'s" if engine.reference is not None else "registry"
    note = f"{whose} registry value {fmt(value)}, tolerance {fmt(tolerance)}" if engine.reference is not None else f"{whose} value {fmt(value)}, tolerance {fmt(tolerance)}"
    if name == "l0":
        return value - tolerance, value + tolerance, note
    return value - tolerance, None, note


def corpus_values(stats: CorpusStats) -> tuple[tuple[str, Value], ...]:
    return (("corpus_tokens", float(stats.tokens)), ("corpus_tokens_per_second", stats.tokens_per_second), ("corpus_sha256", stats.content_hash))


def corpus_summary(corpus: Corpus, stats: CorpusStats) -> str:
    return f"{corpus.describe()}: sha256 {stats.content_hash[:12]}, {stats.tokens:,} tokens in {stats.windows:,} windows, {stats.tokens_per_second:,.0f} tokens/s"


def corpus_paired(ctx: CheckContext, corpus: Corpus, stats: CorpusStats, name: str, loss: bool = False, **params: Any) -> tuple[float, float, float] | None:
    """Tolerance auto on a candidate: (the reference's value on the same windows, and the 95% interval of
    candidate - reference from one bootstrap drawing the same windows for both)."""
    from ..compute.bootstrap import difference_interval
    from ..compute.corpus_pass import corpus_stats

    reference = ctx.engine.reference_engine
    if not ctx.engine.pair or reference is None:
        return None
    try:
        ref = corpus_stats(reference, corpus, loss=loss, legacy=name == "explained_variance_legacy", progress=ctx.engine.progress)
    except CaseError:  # the reference's own output went non-finite: compared with its recorded value instead
        return None
    if ref.units is None or stats.units is None:
        return None
    diff = difference_interval(stats.units, ref.units, name, **params)
    return None if diff is None else (ref.value(name, **params), *diff)


def text_units(acts: list[TextActs], losses: list[TextLoss] | None = None) -> UnitSums:
    """A case's texts as the units of a bootstrap: each text's sums (its tokens, and its predictions)."""
    import torch

    from ..compute.bootstrap import UnitSums

    units = UnitSums(int(acts[0].feats.shape[-1]) if acts else 0)
    if acts:
        unit = torch.cat([torch.full((a.x.shape[0],), i, dtype=torch.int64) for i, a in enumerate(acts)])
        units.add(torch.cat([a.x for a in acts]), torch.cat([a.x_hat for a in acts]), torch.cat([a.dense() for a in acts]), unit, len(acts))
    if losses:
        unit = torch.cat([torch.full((loss.kl.numel(),), i, dtype=torch.int64) for i, loss in enumerate(losses)])
        ce = {k: torch.cat([getattr(loss, f"ce_{k}") for loss in losses]) for k in ("orig", "sae", "zero")}
        units.add_loss(ce, torch.cat([loss.kl for loss in losses]), unit, len(losses))
    return units


def text_intervals(ctx: CheckContext, texts: list[str], name: str, loss: bool = False, **params: Any) -> tuple[tuple[float, float] | None, tuple[float, float, float] | None]:
    """(the value's 95% interval over the case's texts, and on a candidate under tolerance auto the paired
    interval of candidate - reference over the same texts)."""
    from ..compute.bootstrap import difference_interval, interval, observed_value

    engine = ctx.engine
    mine = text_units(engine.acts(texts), engine.losses(texts) if loss else None)
    own = interval(mine, name, **params)
    reference = engine.reference_engine
    if not engine.pair or reference is None or own is None:
        return own, None
    theirs = text_units(reference.acts(texts), reference.losses(texts) if loss else None)
    diff = difference_interval(mine, theirs, name, **params)
    return own, None if diff is None else (observed_value(theirs, name, **params), *diff)


def _corpus_reconstruction(ctx: CheckContext, params: schema.Check, corpus: Corpus) -> Verdict:
    from ..compute.corpus_pass import corpus_stats

    name = params.check
    stats = corpus_stats(ctx.engine, corpus, legacy=name == "explained_variance_legacy", progress=ctx.engine.progress)
    extra_params: dict[str, Any] = {"above": params.above} if isinstance(params, schema.DenseFraction) else {}
    observed = stats.value(name, **extra_params)
    lo, hi = bounds(params)
    notes: tuple[str, ...] = ()
    if isinstance(params, schema.RegistryBound) and params.registry:
        lo, hi, note = registry_bounds(ctx, params, stats.tokens)
        notes = (note,)
    return Verdict(
        check=name,
        where=ctx.where,
        ok=within(observed, lo, hi),
        expected=expected_range(lo, hi),
        observed=observed,
        summary=f"{DEFINITION[name]} over {corpus_summary(corpus, stats)}",
        notes=notes,
        extra=corpus_values(stats),
        interval=stats.interval(name, **extra_params),
        paired=corpus_paired(ctx, corpus, stats, name, **extra_params),
    )


def dense_fraction(feats: torch.Tensor, above: float) -> float:
    return float(((feats > 0).double().mean(0) > above).double().mean())


def check_reconstruction(ctx: CheckContext, params: schema.Check) -> Verdict:
    import torch

    name = params.check
    corpus = ctx.corpus(getattr(params, "on", None))
    if corpus is not None:
        return _corpus_reconstruction(ctx, params, corpus)
    pairs = ctx.texts(getattr(params, "on", None))
    acts = ctx.engine.acts([t for _, t in pairs])
    if isinstance(params, schema.DenseFraction):
        above = params.above
        measure: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], float] = lambda x, x_hat, feats: dense_fraction(feats, above)  # noqa: E731
    else:
        measure = RECONSTRUCTION[name]
    dense = [a.dense() for a in acts]
    x = torch.cat([a.x for a in acts])
    x_hat = torch.cat([a.x_hat for a in acts])
    if name.startswith("explained_variance") and x.shape[0] < 2:
        raise CaseError(f"{ctx.where}: {name} needs at least 2 tokens over the case's texts (1 - residual / variance: one token has no variance around its mean): give a longer text")
    observed = measure(x, x_hat, torch.cat(dense))
    lo, hi = bounds(params)
    notes: tuple[str, ...] = ()
    if isinstance(params, schema.RegistryBound) and params.registry:
        lo, hi, note = registry_bounds(ctx, params, int(x.shape[0]))
        notes = (note,)
    rows = tuple((label, short(a.text), str(len(a.tokens)), fmt(measure(a.x, a.x_hat, d))) for (label, _), a, d in zip(pairs, acts, dense))
    legacy = name == "explained_variance_legacy"  # its per-token terms are centred on the texts' own mean: no interval
    dense_params: dict[str, Any] = {"above": params.above} if isinstance(params, schema.DenseFraction) else {}
    own, paired = (None, None) if legacy else text_intervals(ctx, [t for _, t in pairs], name, **dense_params)
    return Verdict(
        check=name,
        where=ctx.where,
        ok=within(observed, lo, hi),
        expected=expected_range(lo, hi),
        observed=observed,
        summary=f"{DEFINITION[name]} ({x.shape[0]} tokens of {len(acts)} texts)",
        table=Table(("text of", "text", "tokens", f"{name} alone"), rows),
        notes=notes,
        interval=own,
        paired=paired,
    )


def _corpus_loss(ctx: CheckContext, params: schema.Check, corpus: Corpus) -> Verdict:
    from ..compute.corpus_pass import corpus_stats

    name = params.check
    stats = corpus_stats(ctx.engine, corpus, loss=True, progress=ctx.engine.progress)
    if stats.predictions == 0:
        raise CaseError(f"{ctx.where}: {name} needs windows of at least 3 tokens (it scores the predictions at positions 1 .. n-2)")
    observed = float(getattr(stats, name))
    lo, hi = bounds(params)
    ce = {k: stats.ce(k) for k in ("orig", "sae", "zero")}
    return Verdict(
        check=name,
        where=ctx.where,
        ok=within(observed, lo, hi),
        expected=expected_range(lo, hi),
        observed=observed,
        summary=(
            f"{DEFINITION[name]} over {stats.predictions:,} predictions of {corpus_summary(corpus, stats)}; "
            f"CE orig {fmt(ce['orig'])}, sae {fmt(ce['sae'])}, zero {fmt(ce['zero'])}, KL {fmt(stats.kl_div)}"
        ),
        extra=(("ce_orig", ce["orig"]), ("ce_sae", ce["sae"]), ("ce_zero", ce["zero"]), *corpus_values(stats)),
        interval=stats.interval(name),
        paired=corpus_paired(ctx, corpus, stats, name, loss=True),
    )


def check_loss(ctx: CheckContext, params: schema.Check) -> Verdict:
    import torch

    name = params.check
    corpus = ctx.corpus(getattr(params, "on", None))
    if corpus is not None:
        return _corpus_loss(ctx, params, corpus)
    pairs = ctx.texts(getattr(params, "on", None))
    losses = ctx.engine.losses([t for _, t in pairs])
    n = sum(int(loss.ce_orig.numel()) for loss in losses)
    if n == 0:
        raise CaseError(f"{ctx.where}: {name} needs texts of at least 2 tokens (it scores the predictions at positions 1 .. n-2)")
    ce = {k: float(torch.cat([getattr(loss, f"ce_{k}") for loss in losses]).mean()) for k in ("orig", "sae", "zero")}
    kl = float(torch.cat([loss.kl for loss in losses]).mean())
    if name == "ce_loss_score":
        denominator = ce["zero"] - ce["orig"]
        observed = (ce["zero"] - ce["sae"]) / denominator if denominator != 0 else float("nan")
    elif name == "delta_loss":
        observed = ce["sae"] - ce["orig"]
    else:
        observed = kl
    lo, hi = bounds(params)
    own, paired = text_intervals(ctx, [t for _, t in pairs], name, loss=True)

    def mean(t: torch.Tensor) -> str:
        return fmt(float(t.mean())) if t.numel() else "-"

    rows = tuple(
        (label, short(text), str(int(loss.ce_orig.numel())), mean(loss.ce_orig), mean(loss.ce_sae), mean(loss.ce_zero))
        for (label, text), loss in zip(pairs, losses)
    )
    return Verdict(
        check=name,
        where=ctx.where,
        ok=within(observed, lo, hi),
        expected=expected_range(lo, hi),
        observed=observed,
        summary=f"{DEFINITION[name]} over {n} predictions; CE orig {fmt(ce['orig'])}, sae {fmt(ce['sae'])}, zero {fmt(ce['zero'])}, KL {fmt(kl)}",
        table=Table(("text of", "text", "preds", "CE orig", "CE sae", "CE zero"), rows),
        extra=(("ce_orig", ce["orig"]), ("ce_sae", ce["sae"]), ("ce_zero", ce["zero"])),
        interval=own,
        paired=paired,
    )
