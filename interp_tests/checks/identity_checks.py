"""Feature identity across checkpoints: the `matched` check, and the identity verdicts of named features
on a candidate SAE. No pytest here. The matching itself is `matching.py`."""

from __future__ import annotations

from ..cases import schema
from .context import CheckContext, FeatureResolver
from .verdict import Verdict, fmt


def check_matched(ctx: CheckContext, params: schema.Matched) -> Verdict:
    loc = (*ctx.loc, "matched", "feature")
    reference_index = ctx.features.reference_index(params.feature, loc)
    engine = ctx.engine
    name = params.feature if isinstance(params.feature, str) else None
    label = f"{name} = #{reference_index}" if name else f"#{reference_index}"
    if engine.reference_engine is None:
        return Verdict(
            check="matched", where=ctx.where, ok=1.0 >= params.min_cosine, expected=f"best match decoder cos >= {fmt(params.min_cosine)}",
            observed=1.0, summary="decoder cosine of the feature's best match (no candidate SAE in this run: the reference matches itself)",
            feature=label,
        )
    if engine.matching is None:
        return Verdict(
            check="matched", where=ctx.where, ok=False, expected=f"best match decoder cos >= {fmt(params.min_cosine)}",
            observed=None, summary=engine.matching_problem, feature=label, error=engine.matching_problem,
        )
    match, dec_cos, enc_cos = engine.matching.of(reference_index)
    return Verdict(
        check="matched",
        where=ctx.where,
        ok=dec_cos >= params.min_cosine,
        expected=f"best match decoder cos >= {fmt(params.min_cosine)}",
        observed=dec_cos,
        summary=f"decoder cosine of reference #{reference_index}'s best match in the candidate, #{match} (encoder cos {enc_cos:.4f})",
        feature=label,
        extra=(("candidate_index", float(match)), ("encoder_cos", enc_cos)),
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
