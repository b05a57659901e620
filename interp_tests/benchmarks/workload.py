"""The engine workload: a realistic offline suite on the built-in target, run three ways. The engine as the
plugin runs it, the seed notebook's loop, and the bare compute, which calls the engine's own tokenizer,
batching, padding and stopped forward (`engine.HookCache.tokens`, `batches`, `padded`, `hook_activations`)
and leaves out only the engine's bookkeeping: caching, slicing per text, checks, sparse storage."""

from __future__ import annotations

import functools
import json
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .builtin import TOKENIZER_DIR

if TYPE_CHECKING:
    import torch

    from .targets import Loaded


@functools.lru_cache(maxsize=1)
def common_words(n: int = 2000) -> tuple[str, ...]:
    """The n lowest-id (earliest merged, so most common) GPT-2 tokens that are a space and 3-10 lowercase
    letters: each word is one token after a space."""
    vocab = json.loads((TOKENIZER_DIR / "encoder.json").read_text())
    words = sorted((i, t[1:]) for t, i in vocab.items() if re.fullmatch(r"\u0120[a-z]{3,10}", t))
    return tuple(w for _, w in words[:n])


def workload(n_cases: int = 50, texts_per_case: int = 4, min_words: int = 10, max_words: int = 60, seed: int = 0) -> list[tuple[str, ...]]:
    """Cases of random common words, each text `min_words`..`max_words` words (one GPT-2 token each)."""
    words = common_words()
    rng = random.Random(seed)
    return [
        tuple(" ".join(rng.choices(words, k=rng.randint(min_words, max_words))) for _ in range(texts_per_case))
        for _ in range(n_cases)
    ]


@dataclass(frozen=True)
class CaseStats:
    """What a case's feature and reconstruction checks read: pooled explained variance and L0, the most
    active feature of the first text (a `most_active_on` reference) and its max activation on each text."""

    explained_variance: float
    l0: float
    feature: int
    feature_max: tuple[float, ...]


def case_stats(xs: Sequence[torch.Tensor], x_hats: Sequence[torch.Tensor], feats: Sequence[torch.Tensor]) -> CaseStats:
    import torch

    from ..compute import metrics

    feature = int(feats[0].max(0).values.argmax())
    return CaseStats(
        metrics.explained_variance(torch.cat(list(xs)), torch.cat(list(x_hats))),
        metrics.l0(torch.cat(list(feats))),
        feature,
        tuple(float(f[:, feature].max()) for f in feats),
    )


def engine_suite(loaded: Loaded, cases: Sequence[Sequence[str]], batch_tokens: int) -> list[CaseStats]:
    """The suite as the plugin runs it: every text registered up front, then each case reads its TextActs."""
    from ..compute.engine import HookCache, SaeEngine

    engine = SaeEngine(HookCache(loaded.model, loaded.hook, batch_tokens), loaded.sae, loaded.sae_name)
    engine.want([t for case in cases for t in case])
    out = []
    for case in cases:
        acts = engine.acts(list(case))
        out.append(case_stats([a.x for a in acts], [a.x_hat for a in acts], [a.dense() for a in acts]))
    return out


def notebook_suite(loaded: Loaded, cases: Sequence[Sequence[str]]) -> list[CaseStats]:
    """The seed notebook's loop: per text, a full run_with_cache, then encode and decode at the hook."""
    model, sae, hook = loaded.model, loaded.sae, loaded.hook
    out = []
    for case in cases:
        xs, x_hats, feats = [], [], []
        for text in case:
            _, cache = model.run_with_cache(model.to_tokens(text))
            x = cache[hook][0, 1:].flatten(1)
            f = sae.encode(x)
            xs.append(x)
            feats.append(f)
            x_hats.append(sae.decode(f))
        out.append(case_stats(xs, x_hats, feats))
    return out


def padded_batches(loaded: Loaded, texts: Sequence[str], batch_tokens: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(tokens, mask) of `texts` in the padded batches the engine builds: its tokenizer (`HookCache.tokens`),
    its grouping (`engine.batches`) and its padding (`engine.padded`), on the model's device."""
    from ..compute.engine import HookCache, batches, padded

    hooks = HookCache(loaded.model, loaded.hook, batch_tokens)
    ids = [hooks.tokens(t) for t in texts]
    return [padded(loaded.model, [ids[i] for i in group]) for group in batches([len(i) for i in ids], batch_tokens)]


def bare_compute(loaded: Loaded, batches: Sequence[tuple[torch.Tensor, torch.Tensor]], sync: Callable[[], None]) -> dict[str, float]:
    """The engine's stopped forward (`engine.hook_activations`) over pre-tokenized padded batches, then one
    encode of every real non-BOS token; then (timed apart) one decode. Returns seconds per part."""
    import torch

    from ..compute.engine import hook_activations

    t0 = time.perf_counter()
    rows = []
    for toks, mask in batches:
        act = hook_activations(loaded.model, loaded.hook, toks, mask)
        keep = mask.bool().clone()
        keep[:, 0] = False
        rows.append(act[keep].flatten(1))
    x = torch.cat(rows)
    sync()
    t1 = time.perf_counter()
    f = loaded.sae.encode(x)
    sync()
    t2 = time.perf_counter()
    loaded.sae.decode(f)
    sync()
    t3 = time.perf_counter()
    return {"forward": t1 - t0, "encode": t2 - t1, "decode": t3 - t2, "forward+encode": t2 - t0}
