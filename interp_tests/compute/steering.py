"""Steering: add/clamp hooks applied through TransformerLens' `model.hooks(...)` context manager,
and a generation loop (greedy, or seeded sampling) with or without a KV cache.

The hook knows the absolute position of every row it sees (it counts positions across KV-cache steps),
so BOS (position 0) is never steered, `positions: prompt` stops at the prompt's end, and
`positions: all` steers every generated token too. `Steerer.seen` records what it steered.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..common.errors import CaseError

if TYPE_CHECKING:
    import torch
    from sae_lens import SAE
    from transformer_lens import HookedTransformer


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
        width = int(self.sae.W_dec.shape[-1])
        if flat.shape[-1] != width:
            raise CaseError(
                f"width mismatch: the SAE takes d_in={width}, but the steered hook gives {flat.shape[-1]}: "
                "the SAE was trained on another model or hook (set target.hook or pick the matching SAE)"
            )
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
            if not bool(torch.isfinite(logits).all()):
                raise CaseError(f"non-finite next-token logits (NaN or inf) at generated token {len(new) + 1}: check the steering strength and the SAE's weights")
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
