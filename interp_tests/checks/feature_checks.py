"""Feature checks: fires, silent, separates, top_k, most_active. Each is (context, params) -> Verdict.

No pytest here. Every verdict carries the per-text rows behind it and a per-token heatmap of the feature.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..cases import schema
from ..compute import metrics
from .context import CheckContext
from .verdict import Heatmap, Row, Verdict, failing_first, fmt, short

if TYPE_CHECKING:
    import torch

    from ..compute.corpus import Corpus
    from ..compute.engine import TextActs

MAX_HEATMAPS = 24  # texts per verdict whose per-token activations are kept for visual reports


def heatmaps(labels: Sequence[str], acts: Sequence[TextActs], feature: int) -> tuple[Heatmap, ...]:
    return tuple(
        Heatmap(label=label, tokens=a.tokens, values=tuple(float(v) for v in a.dense()[:, feature].tolist()))
        for label, a in list(zip(labels, acts))[:MAX_HEATMAPS]
    )


def reference_heatmaps(ctx: CheckContext, ref: int | str, labels: Sequence[str], texts: Sequence[str]) -> tuple[Heatmap, ...]:
    """On a candidate: the reference feature's activations on the same texts, from the reference SAE (for
    visual reports, beside the candidate's); () on the reference, or when the reference cannot be read."""
    from ..common.errors import InterpTestsError

    reference = ctx.engine.reference_engine
    if reference is None:
        return ()
    try:
        index = ctx.features.reference_index(ref, (*ctx.loc, ctx.name, "feature"))
        return heatmaps(labels, reference.acts(list(texts)[:MAX_HEATMAPS]), index)
    except InterpTestsError:
        return ()


def max_over(acts: TextActs, column: torch.Tensor, token: str | None) -> tuple[float, int] | None:
    """(max activation, position) of a feature over a text's tokens, or over the positions of `token`."""
    positions = acts.positions(token) if token is not None else list(range(len(acts.tokens)))
    if not positions:
        return None
    values = column[positions]
    j = int(values.argmax())
    return float(values[j]), positions[j]


def missing_token(label: str, acts: TextActs, token: str) -> str:
    shown = list(acts.tokens[:40])
    more = f" ... ({len(acts.tokens)} tokens)" if len(acts.tokens) > 40 else ""
    return f"token {token!r} does not occur in {label} {short(acts.text)}; its tokens: {shown!r}{more}"


def _corpus_fires_or_silent(ctx: CheckContext, params: schema.Fires | schema.Silent, corpus: Corpus, feature: int, feature_label: str) -> Verdict:
    from ..compute.corpus_pass import corpus_stats
    from .recon_checks import corpus_summary, corpus_values

    stats = corpus_stats(ctx.engine, corpus, progress=ctx.engine.progress)
    assert stats.max_act is not None  # a pass with tokens sets it
    observed = float(stats.max_act[feature])
    fires = isinstance(params, schema.Fires)
    ok = observed > params.min if isinstance(params, schema.Fires) else observed <= params.max
    bound = f"> {fmt(params.min)}" if isinstance(params, schema.Fires) else f"<= {fmt(params.max)}"
    return Verdict(
        check="fires" if fires else "silent",
        where=ctx.where,
        ok=ok,
        expected=f"max activation over the corpus {bound}",
        observed=observed,
        summary=f"largest activation over {corpus_summary(corpus, stats)} (density {stats.density(feature):.6f})",
        feature=feature_label,
        feature_index=feature,
        extra=corpus_values(stats),
    )


def check_density(ctx: CheckContext, params: schema.Density) -> Verdict:
    import torch

    from ..compute.corpus_pass import corpus_stats
    from .recon_checks import corpus_summary, corpus_values

    feature, feature_label = ctx.feature(params.feature)
    corpus = ctx.corpus(params.on)
    if corpus is not None:
        stats = corpus_stats(ctx.engine, corpus, progress=ctx.engine.progress)
        observed = stats.density(feature)
        summary, extra = f"firing frequency over {corpus_summary(corpus, stats)}", corpus_values(stats)
        interval = stats.interval("density", feature=feature)
    else:
        from ..compute.bootstrap import interval as bootstrap_interval
        from .recon_checks import text_units

        pairs = ctx.texts(params.on)
        acts = ctx.engine.acts([t for _, t in pairs])
        column = torch.cat([a.dense()[:, feature] for a in acts])
        observed = float((column > 0).double().mean())
        summary, extra = f"fraction of the {column.shape[0]} tokens of {len(acts)} texts where the feature is > 0", ()
        interval = bootstrap_interval(text_units(acts), "density", feature=feature)
    return Verdict(
        check="density",
        where=ctx.where,
        ok=params.min <= observed <= params.max,
        expected=f"in [{fmt(params.min)}, {fmt(params.max)}]",
        observed=observed,
        summary=summary,
        feature=feature_label,
        feature_index=feature,
        extra=extra,
        interval=interval,
    )


def _fires_or_silent(ctx: CheckContext, params: schema.Fires | schema.Silent) -> Verdict:
    fires = isinstance(params, schema.Fires)
    feature, feature_label = ctx.feature(params.feature)
    corpus = ctx.corpus(params.on)
    if corpus is not None:
        return _corpus_fires_or_silent(ctx, params, corpus, feature, feature_label)
    pairs = ctx.texts(params.on)
    acts = ctx.engine.acts([t for _, t in pairs])
    rows: list[Row] = []
    notes: list[str] = []
    maxima: list[float] = []
    for (label, _), a in zip(pairs, acts):
        found = max_over(a, a.dense()[:, feature], params.token)
        if found is None:
            notes.append(missing_token(label, a, params.token or ""))
            rows.append((False, (label, short(a.text), "-", "-", "token missing")))
            continue
        value, pos = found
        maxima.append(value)
        ok = value > params.min if isinstance(params, schema.Fires) else value <= params.max
        rows.append((ok, (label, short(a.text), repr(a.tokens[pos]), fmt(value), "ok" if ok else "FAIL")))
    if isinstance(params, schema.Fires):
        observed = min(maxima) if maxima else None
        expected = f"max activation > {fmt(params.min)} on every text"
        summary = "smallest per-text max activation"
    else:
        observed = max(maxima) if maxima else None
        expected = f"max activation <= {fmt(params.max)} on every text"
        summary = "largest per-text max activation"
    if params.token is not None:
        summary += f" at {params.token!r}"
    return Verdict(
        check="fires" if fires else "silent",
        where=ctx.where,
        ok=not notes and all(ok for ok, _ in rows),
        expected=expected,
        observed=observed,
        summary=summary,
        feature=feature_label,
        feature_index=feature,
        table=failing_first(("text of", "text", "at token", "max act", ""), rows),
        notes=tuple(notes),
        heatmaps=heatmaps([label for label, _ in pairs], acts, feature),
        reference_heatmaps=reference_heatmaps(ctx, params.feature, [label for label, _ in pairs], [t for _, t in pairs]),
    )


def check_fires(ctx: CheckContext, params: schema.Fires) -> Verdict:
    return _fires_or_silent(ctx, params)


def check_silent(ctx: CheckContext, params: schema.Silent) -> Verdict:
    return _fires_or_silent(ctx, params)


def check_separates(ctx: CheckContext, params: schema.Separates) -> Verdict:
    feature, feature_label = ctx.feature(params.feature)
    positive, negative = ctx.texts(params.positive), ctx.texts(params.negative)
    acts = ctx.engine.acts([t for _, t in positive + negative])
    scores = [float(a.dense()[:, feature].max()) for a in acts]
    pos_scores, neg_scores = scores[: len(positive)], scores[len(positive) :]
    auroc = metrics.auroc(pos_scores, neg_scores)
    rows: list[Row] = []
    for k, ((label, text), score) in enumerate(zip(positive + negative, scores)):
        is_positive = k < len(positive)
        good = score > max(neg_scores) if is_positive else score < min(pos_scores)
        rows.append((good, ("positive" if is_positive else "negative", label, short(text), fmt(score))))
    sides = [f"{'positive' if k < len(positive) else 'negative'} {label}" for k, (label, _) in enumerate(positive + negative)]
    return Verdict(
        check="separates",
        where=ctx.where,
        ok=auroc >= params.min_auroc,
        expected=f"AUROC >= {fmt(params.min_auroc)}",
        observed=auroc,
        summary=f"AUROC of per-text max activation, {len(pos_scores)} positive vs {len(neg_scores)} negative texts",
        feature=feature_label,
        feature_index=feature,
        table=failing_first(("side", "text of", "text", "max act"), rows),
        heatmaps=heatmaps(sides, acts, feature),
        reference_heatmaps=reference_heatmaps(ctx, params.feature, sides, [t for _, t in positive + negative]),
    )


def top_features(row: torch.Tensor, n: int = 3) -> str:
    values, indices = row.topk(min(n, row.shape[0]))
    return ", ".join(f"#{int(i)}={fmt(float(v))}" for v, i in zip(values, indices))


def check_top_k(ctx: CheckContext, params: schema.TopK) -> Verdict:
    feature, feature_label = ctx.feature(params.feature)
    pairs = ctx.texts(params.on)
    acts = ctx.engine.acts([t for _, t in pairs])
    rows: list[Row] = []
    notes: list[str] = []
    ranks: list[int] = []
    for (label, _), a in zip(pairs, acts):
        positions = a.positions(params.token)
        if not positions:
            notes.append(missing_token(label, a, params.token))
            rows.append((False, (label, short(a.text), "-", "-", "-", "token missing", "")))
            continue
        dense = a.dense()
        for pos in positions:
            row = dense[pos]
            value = float(row[feature])
            rank = 1 + int((row > row[feature]).sum())
            ranks.append(rank)
            ok = value > 0 and rank <= params.k
            status = "ok" if ok else ("inactive" if value <= 0 else f"rank > {params.k}")
            rows.append((ok, (label, short(a.text), str(pos + 1), fmt(value), str(rank), status, top_features(row))))
    return Verdict(
        check="top_k",
        where=ctx.where,
        ok=not notes and all(ok for ok, _ in rows),
        expected=f"active and rank <= {params.k} at every {params.token!r}",
        observed=float(max(ranks)) if ranks else None,
        summary=f"worst rank at {params.token!r} (1 = most active)",
        feature=feature_label,
        feature_index=feature,
        table=failing_first(("text of", "text", "pos", "act", "rank", "", "top features there"), rows),
        notes=tuple(notes),
        heatmaps=heatmaps([label for label, _ in pairs], acts, feature),
        reference_heatmaps=reference_heatmaps(ctx, params.feature, [label for label, _ in pairs], [t for _, t in pairs]),
    )


def check_most_active(ctx: CheckContext, params: schema.MostActive) -> Verdict:
    feature, feature_label = ctx.feature(params.feature)
    pairs = ctx.texts(params.on)
    acts = ctx.engine.acts([t for _, t in pairs])
    rows: list[Row] = []
    ranks: list[int] = []
    for (label, _), a in zip(pairs, acts):
        dense = a.dense()
        per_feature = dense.max(0).values
        mine = float(per_feature[feature])
        rank = 1 + int((per_feature > per_feature[feature]).sum())
        ranks.append(rank)
        best = int(per_feature.argmax())
        at = int(dense[:, best].argmax())
        rows.append((rank == 1, (label, short(a.text), fmt(mine), str(rank), f"#{best}", fmt(float(per_feature[best])), repr(a.tokens[at]))))
    return Verdict(
        check="most_active",
        where=ctx.where,
        ok=all(ok for ok, _ in rows),
        expected="rank 1 (no feature has a larger single activation) in every text",
        observed=float(max(ranks)),
        summary="worst rank of the feature's largest activation among all features' (1 = most active)",
        feature=feature_label,
        feature_index=feature,
        table=failing_first(("text of", "text", "its max", "rank", "top feature", "top max", "at token"), rows),
        heatmaps=heatmaps([label for label, _ in pairs], acts, feature),
        reference_heatmaps=reference_heatmaps(ctx, params.feature, [label for label, _ in pairs], [t for _, t in pairs]),
    )
