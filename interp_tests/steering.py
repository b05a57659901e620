"""Steering: add/clamp hooks applied through TransformerLens' `model.hooks(...)` context manager,
and a generation loop (greedy, or seeded sampling) with or without a KV cache.

The hook knows the absolute position of every row it sees (it counts positions across KV-cache steps),
so BOS (position 0) is never steered, `positions: prompt` stops at the prompt's end, and
`positions: all` steers every generated token too. `Steerer.seen` records what it steered.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import CaseError

if TYPE_CHECKING:
    import torch
    from sae_lens import SAE
    from transformer_lens import HookedTransformer

    from .checks import Ctx, Verdict


@dataclass
class Steerer:
    """A forward hook that steers one feature at the positions it is asked to."""

    sae: SAE[Any]
    feature: int
    strength: float
    mode: str = "add"
    until: int | None = None  # steer absolute positions 1 .. until-1 (None: every position but BOS)
    offset: int = 0  # absolute position of the next row the hook will see
    seen: list[int] = field(default_factory=list)

    def __call__(self, act: torch.Tensor, hook: Any) -> torch.Tensor:
        import torch

        n = act.shape[1]
        pos = torch.arange(self.offset, self.offset + n, device=act.device)
        self.offset += n
        keep = pos >= 1
        if self.until is not None:
            keep &= pos < self.until
        if not bool(keep.any()):
            return act
        self.seen.extend(int(p) for p in pos[keep])
        shape = act.shape
        flat = act.flatten(2) if act.ndim > 3 else act
        if self.mode == "add":
            delta = (self.strength * self.sae.W_dec[self.feature]).to(flat.dtype)
            new = flat + delta * keep.view(1, n, 1).to(flat.dtype)
        else:
            sub = flat[:, keep].to(self.sae.W_enc.dtype)
            feats = self.sae.encode(sub)
            err = sub - self.sae.decode(feats)
            feats[..., self.feature] = self.strength
            new = flat.clone()
            new[:, keep] = (self.sae.decode(feats) + err).to(flat.dtype)
        return new.reshape(shape)


@contextmanager
def steering(model: HookedTransformer, hook: str, steerer: Steerer | None) -> Iterator[None]:
    """Attach `steerer` at `hook` for the duration of the block; nothing is left behind, even on error."""
    if steerer is None:
        yield
        return
    with model.hooks(fwd_hooks=[(hook, steerer)]):
        yield


def generate(
    model: HookedTransformer,
    tokens: torch.Tensor,
    max_new_tokens: int,
    *,
    hook: str,
    steerer: Steerer | None,
    temperature: float = 0.0,
    seed: int = 0,
    use_kv_cache: bool = True,
) -> torch.Tensor:
    """Token ids generated after `tokens` ([1, n]); stops early at EOS. Greedy at temperature 0."""
    import torch
    from transformer_lens import TransformerLensKeyValueCache

    device = model.cfg.device
    gen = torch.Generator(device="cpu").manual_seed(seed)
    eos = model.tokenizer.eos_token_id if model.tokenizer is not None else None
    seq = tokens.to(device)
    new: list[int] = []
    with torch.inference_mode(), steering(model, hook, steerer):
        cache = TransformerLensKeyValueCache.init_cache(model.cfg, device, 1) if use_kv_cache else None
        step_in = seq
        for _ in range(max_new_tokens):
            if steerer is not None and cache is None:
                steerer.offset = 0  # the whole sequence is recomputed each step
            logits = model(step_in, past_kv_cache=cache, attention_mask=torch.ones_like(step_in))[0, -1]
            if temperature > 0:
                probs = (logits.double() / temperature).softmax(-1).cpu()
                nxt = int(torch.multinomial(probs, 1, generator=gen))
            else:
                nxt = int(logits.argmax())
            new.append(nxt)
            if eos is not None and nxt == eos:
                break
            token = torch.tensor([[nxt]], device=device)
            seq = torch.cat([seq, token], dim=1)
            step_in = token if cache is not None else seq
    return torch.tensor(new, dtype=torch.long)


# ----------------------------------------------------------------------------- checks
@dataclass(frozen=True)
class SteerRun:
    prompt_tokens: tuple[str, ...]
    base_logits: torch.Tensor  # next-token logits after the prompt, float64
    steered_logits: torch.Tensor
    continuations: dict[int, tuple[str, str]]  # max_new_tokens -> (base, steered)


def _steer_run(ctx: Ctx, max_new_tokens: int | None) -> SteerRun:
    import torch

    case = ctx.case
    assert case.steer is not None and case.prompt is not None  # schema validation guarantees both
    s = case.steer
    engine = ctx.engine
    model, hook = engine.model, engine.hooks.hook
    feature = ctx.features(s.feature, ("cases", ctx.case_index, "steer", "feature"))
    key = (case.prompt, s, feature)
    runs: dict[Any, SteerRun] = engine.steer_cache
    tokens = engine.hooks.tokens(case.prompt).unsqueeze(0)
    n = tokens.shape[1]

    def make() -> Steerer:
        return Steerer(engine.sae, feature, s.strength, s.mode, until=n if s.positions == "prompt" else None)

    if key not in runs:
        with torch.inference_mode():
            base = model(tokens.to(model.cfg.device))[0, -1].double().cpu()
            with steering(model, hook, make()):
                steered = model(tokens.to(model.cfg.device))[0, -1].double().cpu()
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
            ids = generate(model, tokens, max_new_tokens, hook=hook, steerer=steerer, temperature=s.temperature, seed=s.seed)
            outs.append(str(model.tokenizer.decode(ids.tolist())) if model.tokenizer is not None else str(ids.tolist()))
        run.continuations[max_new_tokens] = (outs[0], outs[1])
    return run


def _single_token(ctx: Ctx, token: str) -> int:
    model = ctx.engine.model
    ids = model.to_tokens(token, prepend_bos=False)[0]
    if ids.shape[0] != 1:
        split = model.to_str_tokens(ids)
        raise CaseError(f"{ctx.where}: {token!r} is not a single token: the tokenizer splits it into {split!r}; use one of those pieces")
    return int(ids[0])


def run_check(ctx: Ctx, name: str, p: Any) -> Verdict:
    from .checks import Table, Verdict, fmt, short

    s = ctx.case.steer
    assert s is not None
    flabel = ctx.features.label(s.feature, ctx.features(s.feature, ("cases", ctx.case_index, "steer", "feature")))
    steer_desc = f"{s.mode} {flabel} x {s.strength:g} at {s.positions} positions"
    if name == "logprob_shift":
        ids = [_single_token(ctx, t) for t in p.tokens]
        run = _steer_run(ctx, None)
        lb, ls = run.base_logits.log_softmax(-1), run.steered_logits.log_softmax(-1)
        shifts = [float(ls[i] - lb[i]) for i in ids]
        observed = sum(shifts) / len(shifts)
        rows = tuple((repr(t), fmt(float(lb[i])), fmt(float(ls[i])), fmt(d)) for t, i, d in zip(p.tokens, ids, shifts))
        return Verdict(
            name, ctx.where, observed >= p.min, f">= {fmt(p.min)}", observed,
            f"mean log p_steered - log p_base of the target tokens after the prompt ({steer_desc})", flabel,
            Table(("token", "log p base", "log p steered", "shift"), rows),
            (f"prompt {short(ctx.case.prompt or '')}", *_top_tokens(ctx, run)),
        )
    if name == "kl":
        run = _steer_run(ctx, None)
        lb, ls = run.base_logits.log_softmax(-1), run.steered_logits.log_softmax(-1)
        observed = float((lb.exp() * (lb - ls)).sum())
        ok = p.min <= observed <= p.max and not math.isnan(observed)
        return Verdict(
            name, ctx.where, ok, f"in [{fmt(p.min)}, {fmt(p.max)}]", observed,
            f"KL(base || steered) of the next-token distribution after the prompt ({steer_desc})", flabel,
            notes=(f"prompt {short(ctx.case.prompt or '')}", *_top_tokens(ctx, run)),
        )
    # generates
    run = _steer_run(ctx, p.max_new_tokens)
    base, steered = run.continuations[p.max_new_tokens]
    low = steered.lower()
    hits = [w for w in p.any_of or () if w.lower() in low]
    bad = [w for w in p.none_of or () if w.lower() in low]
    ok = (p.any_of is None or bool(hits)) and not bad
    expected = " and ".join(
        x for x in (f"any of {list(p.any_of)!r}" if p.any_of else "", f"none of {list(p.none_of)!r}" if p.none_of else "") if x
    )
    notes = [f"prompt    {ctx.case.prompt!r}", f"base      {base!r}", f"steered   {steered!r}"]
    if p.any_of and not hits:
        notes.append(f"none of {list(p.any_of)!r} occurs in the steered continuation")
    if bad:
        notes.append(f"the steered continuation contains {bad!r}")
    return Verdict(
        name, ctx.where, ok, f"continuation contains {expected} (case-insensitive)", steered,
        f"steered continuation, {p.max_new_tokens} new tokens, {'greedy' if s.temperature == 0 else f'temperature {s.temperature:g}, seed {s.seed}'} ({steer_desc})",
        flabel, notes=tuple(notes), extra=(("base", base),),
    )


def _top_tokens(ctx: Ctx, run: SteerRun, n: int = 5) -> tuple[str, ...]:
    model = ctx.engine.model
    out = []
    for label, logits in (("base", run.base_logits), ("steered", run.steered_logits)):
        lp = logits.log_softmax(-1)
        vals, idx = lp.topk(n)
        toks = ", ".join(f"{model.to_single_str_token(int(i))!r} {float(v):.2f}" for v, i in zip(vals, idx))
        out.append(f"next-token top {n} {label:<8} {toks}")
    return tuple(out)
