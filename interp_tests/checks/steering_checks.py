"""Steering checks: logprob_shift, kl, generates. The mechanism (hooks, generation) is `steering.py`.

No pytest here. One steered run per (prompt, steer, feature) is cached on the engine and serves every
steering check of the case; continuations are generated once per `max_new_tokens`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..cases import schema
from ..common.errors import CaseError
from ..compute.steering import Steerer, generate, steering
from .context import CheckContext
from .verdict import Table, Verdict, fmt, short

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class SteerRun:
    prompt_tokens: tuple[str, ...]
    base_logits: torch.Tensor  # next-token logits after the prompt, float64
    steered_logits: torch.Tensor
    continuations: dict[int, tuple[str, str]]  # max_new_tokens -> (base, steered)


def _steer(ctx: CheckContext) -> tuple[schema.Steer, str]:
    steer = ctx.case.steer
    if steer is None or ctx.case.prompt is None:  # schema validation gives every steering check both
        raise CaseError(f"{ctx.where}: {ctx.name} is a steering check: the case needs steer: and prompt:")
    return steer, ctx.case.prompt


def _steered_feature(ctx: CheckContext) -> tuple[int, str]:
    steer, _ = _steer(ctx)
    index = ctx.features(steer.feature, ("cases", ctx.case_index, "steer", "feature"))
    return index, ctx.features.label(steer.feature, index)


def _finite(ctx: CheckContext, what: str, tensor: torch.Tensor) -> None:
    import torch

    if not bool(torch.isfinite(tensor).all()):
        raise CaseError(f"{ctx.where}: non-finite values (NaN or inf) in the {what}: check the steering strength and the SAE's weights")


def steer_run(ctx: CheckContext, max_new_tokens: int | None) -> SteerRun:
    import torch

    steer, prompt = _steer(ctx)
    engine = ctx.engine
    model, hook = engine.model, engine.target_hook  # a transcoder steers where it writes: its output hook
    feature, _ = _steered_feature(ctx)
    key = (prompt, steer, feature)
    runs: dict[Any, SteerRun] = engine.steer_cache
    tokens = engine.hooks.tokens(prompt).unsqueeze(0)
    n = tokens.shape[1]

    if engine.out_hook is not None and steer.mode == "clamp":
        raise CaseError(
            f"{ctx.case_file.where('cases', ctx.case_index, 'steer', 'mode')}: mode: clamp re-encodes the steered hook, and a "
            "transcoder reads another hook than it writes: steer a transcoder with mode: add (its decoder row, at its output hook)"
        )

    def make() -> Steerer:
        return Steerer(engine.sae, feature, steer.strength, steer.mode, until=n if steer.positions == "prompt" else None)

    if key not in runs:
        if steer.mode == "add":
            _finite(ctx, f"steering vector (strength {steer.strength!r} x W_dec[{feature}])", steer.strength * engine.sae.W_dec[feature].detach())
        with torch.inference_mode():
            base = model(tokens.to(model.cfg.device))[0, -1].double().cpu()
            with steering(model, hook, make()):
                steered = model(tokens.to(model.cfg.device))[0, -1].double().cpu()
        _finite(ctx, "unsteered next-token logits", base)
        _finite(ctx, "steered next-token logits", steered)
        runs[key] = SteerRun(tuple(model.to_str_tokens(tokens[0])), base, steered, {})  # type: ignore[arg-type]
    run = runs[key]
    if max_new_tokens is not None and max_new_tokens not in run.continuations:
        if n + max_new_tokens > model.cfg.n_ctx:
            raise CaseError(
                f"{ctx.where}: prompt of {n} tokens + max_new_tokens {max_new_tokens} exceeds the model's context of "
                f"{model.cfg.n_ctx}: lower max_new_tokens"
            )
        outs: list[str] = []
        for steerer in (None, make()):
            ids = generate(model, tokens, max_new_tokens, hook=hook, steerer=steerer, temperature=steer.temperature, seed=steer.seed)
            outs.append(str(model.tokenizer.decode(ids.tolist())) if model.tokenizer is not None else str(ids.tolist()))
        run.continuations[max_new_tokens] = (outs[0], outs[1])
    return run


def single_token(ctx: CheckContext, token: str) -> int:
    model = ctx.engine.model
    ids = model.to_tokens(token, prepend_bos=False)[0]
    if ids.shape[0] != 1:
        split = model.to_str_tokens(ids)
        raise CaseError(f"{ctx.where}: {token!r} is not a single token: the tokenizer splits it into {split!r}; use one of those pieces")
    return int(ids[0])


def describe(ctx: CheckContext) -> str:
    steer, _ = _steer(ctx)
    _, feature_label = _steered_feature(ctx)
    return f"{steer.mode} {feature_label} x {steer.strength:g} at {steer.positions} positions"


def top_tokens(ctx: CheckContext, run: SteerRun, n: int = 5) -> tuple[str, ...]:
    model = ctx.engine.model
    out = []
    for label, logits in (("base", run.base_logits), ("steered", run.steered_logits)):
        values, indices = logits.log_softmax(-1).topk(n)
        shown = ", ".join(f"{model.to_single_str_token(int(i))!r} {float(v):.2f}" for v, i in zip(values, indices))
        out.append(f"next-token top {n} {label:<8} {shown}")
    return tuple(out)


def check_logprob_shift(ctx: CheckContext, params: schema.LogprobShift) -> Verdict:
    ids = [single_token(ctx, t) for t in params.tokens]
    run = steer_run(ctx, None)
    base, steered = run.base_logits.log_softmax(-1), run.steered_logits.log_softmax(-1)
    shifts = [float(steered[i] - base[i]) for i in ids]
    observed = sum(shifts) / len(shifts)
    rows = tuple((repr(t), fmt(float(base[i])), fmt(float(steered[i])), fmt(d)) for t, i, d in zip(params.tokens, ids, shifts))
    return Verdict(
        check="logprob_shift",
        where=ctx.where,
        ok=observed >= params.min,
        expected=f">= {fmt(params.min)}",
        observed=observed,
        summary=f"mean log p_steered - log p_base of the target tokens after the prompt ({describe(ctx)})",
        feature=_steered_feature(ctx)[1],
        table=Table(("token", "log p base", "log p steered", "shift"), rows),
        notes=(f"prompt {short(ctx.case.prompt or '')}", *top_tokens(ctx, run)),
    )


def check_kl(ctx: CheckContext, params: schema.Kl) -> Verdict:
    run = steer_run(ctx, None)
    base, steered = run.base_logits.log_softmax(-1), run.steered_logits.log_softmax(-1)
    observed = float((base.exp() * (base - steered)).sum())
    return Verdict(
        check="kl",
        where=ctx.where,
        ok=params.min <= observed <= params.max,  # False for NaN
        expected=f"in [{fmt(params.min)}, {fmt(params.max)}]",
        observed=observed,
        summary=f"KL(base || steered) of the next-token distribution after the prompt ({describe(ctx)})",
        feature=_steered_feature(ctx)[1],
        notes=(f"prompt {short(ctx.case.prompt or '')}", *top_tokens(ctx, run)),
    )


def check_generates(ctx: CheckContext, params: schema.Generates) -> Verdict:
    steer, prompt = _steer(ctx)
    run = steer_run(ctx, params.max_new_tokens)
    base, steered = run.continuations[params.max_new_tokens]
    low = steered.lower()
    hits = [w for w in params.any_of or () if w.lower() in low]
    bad = [w for w in params.none_of or () if w.lower() in low]
    wanted = [f"any of {list(params.any_of)!r}" if params.any_of else "", f"none of {list(params.none_of)!r}" if params.none_of else ""]
    notes = [f"prompt    {prompt!r}", f"base      {base!r}", f"steered   {steered!r}"]
    if params.any_of and not hits:
        notes.append(f"none of {list(params.any_of)!r} occurs in the steered continuation")
    if bad:
        notes.append(f"the steered continuation contains {bad!r}")
    sampling = "greedy" if steer.temperature == 0 else f"temperature {steer.temperature:g}, seed {steer.seed}"
    return Verdict(
        check="generates",
        where=ctx.where,
        ok=(params.any_of is None or bool(hits)) and not bad,
        expected=f"continuation contains {' and '.join(w for w in wanted if w)} (case-insensitive)",
        observed=steered,
        summary=f"steered continuation, {params.max_new_tokens} new tokens, {sampling} ({describe(ctx)})",
        feature=_steered_feature(ctx)[1],
        notes=tuple(notes),
        extra=(("base", base),),
    )
