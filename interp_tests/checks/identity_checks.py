"""Feature identity across checkpoints: the `matched` check, and the identity verdicts of named features
on a candidate SAE. No pytest here. The matching itself is `matching.py`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..cases import schema
from .context import CheckContext, FeatureResolver
from .verdict import Verdict, fmt

if TYPE_CHECKING:
    from ..compute.engine import SaeEngine


def pair_texts(ctx: CheckContext, on: tuple[str, ...] | None) -> list[str]:
    """The texts two matched features are correlated over: the check's own groups, else the case's texts,
    else every list of texts of the case file."""
    texts = [t for _, t in ctx.texts(on)]
    if not texts:
        model = ctx.case_file.model
        texts = [t for group in model.texts for t in model.text_list(group)]
    return list(dict.fromkeys(texts))


@dataclass(frozen=True)
class Pair:
    """A reference feature and its best match in a candidate: both sides of the match."""

    reference: int
    candidate: int
    decoder_cos: float
    encoder_cos: float
    correlation: float | None  # of their activations over `tokens` tokens (None: neither varies there)
    tokens: int

    def as_dict(self) -> dict[str, float | int | None]:
        return {"reference": self.reference, "candidate": self.candidate, "decoder_cos": self.decoder_cos,
                "encoder_cos": self.encoder_cos, "correlation": self.correlation, "tokens": self.tokens}


def pair_of(engine: SaeEngine, reference_index: int, texts: list[str]) -> Pair:
    """The matched pair of a reference feature on a candidate engine (with a matching and a reference engine)."""
    import torch

    from ..compute.matching import activation_correlation

    assert engine.matching is not None and engine.reference_engine is not None  # callers check both
    match, dec_cos, enc_cos = engine.matching.of(reference_index)
    correlation, tokens = None, 0
    if texts:
        ref_acts = engine.reference_engine.acts(texts)
        cand_acts = engine.acts(texts)
        a = torch.cat([x.dense()[:, reference_index] for x in ref_acts])
        b = torch.cat([x.dense()[:, match] for x in cand_acts])
        correlation, tokens = activation_correlation(a, b), int(a.numel())
    return Pair(reference_index, match, dec_cos, enc_cos, correlation, tokens)


def check_matched(ctx: CheckContext, params: schema.Matched) -> Verdict:
    loc = (*ctx.loc, "matched", "feature")
    reference_index = ctx.features.reference_index(params.feature, loc)
    engine = ctx.engine
    name = params.feature if isinstance(params.feature, str) else None
    label = f"{name} = #{reference_index}" if name else f"#{reference_index}"
    min_encoder = params.min_encoder_cosine if params.min_encoder_cosine is not None else params.min_cosine
    expected = f"best match decoder cos >= {fmt(params.min_cosine)}, encoder cos >= {fmt(min_encoder)}, activation correlation >= {fmt(params.min_correlation)}"
    if engine.reference_engine is None:
        return Verdict(
            check="matched", where=ctx.where, ok=1.0 >= params.min_cosine, expected=expected,
            observed=1.0, summary="decoder cosine of the feature's best match (no candidate SAE in this run: the reference matches itself)",
            feature=label,
        )
    if engine.matching is None:
        return Verdict(
            check="matched", where=ctx.where, ok=False, expected=expected,
            observed=None, summary=engine.matching_problem, feature=label, error=engine.matching_problem,
        )
    pair = pair_of(engine, reference_index, pair_texts(ctx, params.on))
    ctx.features.pairs[reference_index] = pair
    failing = []
    if pair.decoder_cos < params.min_cosine:
        failing.append(f"decoder cos {pair.decoder_cos:.4f} < {fmt(params.min_cosine)}")
    if pair.encoder_cos < min_encoder:
        failing.append(f"encoder cos {pair.encoder_cos:.4f} < {fmt(min_encoder)}: the candidate reads another direction")
    if pair.correlation is not None and pair.correlation < params.min_correlation:
        failing.append(f"activation correlation {pair.correlation:.4f} < {fmt(params.min_correlation)} over {pair.tokens} tokens")
    correlation = f"{pair.correlation:.4f} over {pair.tokens} tokens" if pair.correlation is not None else f"not measured (neither feature varies over the {pair.tokens} tokens)"
    return Verdict(
        check="matched",
        where=ctx.where,
        ok=not failing,
        expected=expected,
        observed=pair.decoder_cos,
        summary=(
            f"decoder cosine of reference #{reference_index}'s best match in the candidate, #{pair.candidate} "
            f"(encoder cos {pair.encoder_cos:.4f}, activation correlation {correlation})"
        ),
        feature=label,
        notes=tuple(failing),
        extra=(("candidate_index", float(pair.candidate)), ("encoder_cos", pair.encoder_cos), ("activation_correlation", pair.correlation)),
    )


def identity_verdicts(resolver: FeatureResolver, where: str, strict: bool) -> tuple[Verdict, ...]:
    """One verdict per named feature a case resolved on a candidate: does its selector pick the reference
    feature's best match? A feature that rebinds fails when `strict` (--interp-compare), else it is reported."""
    out = []
    for identity in resolver.identities.values():
        out.append(Verdict(
            check="feature_identity",
            where=resolver.case_file.where("features", identity.name),
            ok=identity.same or not strict,
            expected=f"{identity.name} picks #{identity.match_index}, the best match of reference #{identity.reference_index}",
            observed=float(identity.candidate_index),
            summary=identity.describe() + ("" if identity.same else " (rebound: the claim now tests another feature)"),
            feature=f"{identity.name} = #{identity.candidate_index}",
            notes=() if identity.same else (identity.describe(),),
        ))
    return tuple(out)
