"""One streamed pass of a corpus through a model and an SAE: batches of windows -> stopped forward -> encode
-> running sums (corpus_stats.py). With `loss`, the full forward runs three times per batch (original, SAE
reconstruction, zero ablation at the hook) for the loss statistics. No pytest here.

Memory is one batch: windows are read lazily, activations are dropped after each batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..common.errors import CaseError
from .corpus import ContentHash, Corpus, batches
from .corpus_stats import CorpusStats
from .engine import decode, encode_and_decode, hook_activations, hooks_activations, padded

if TYPE_CHECKING:
    import torch

    from .engine import SaeEngine

Progress = Callable[[str], None]
PROGRESS_EVERY_S = 5.0
REGISTRY_MIN_TOKENS = 10_000  # registry values are dataset-level: compared only on a corpus at least this large


def corpus_key(corpus: Corpus) -> tuple[object, str]:
    return (corpus.spec, str(corpus.base))


def corpus_stats(engine: SaeEngine, corpus: Corpus, *, loss: bool = False, legacy: bool = False, progress: Progress | None = None) -> CorpusStats:
    """The corpus's statistics on the engine's SAE, computed once per corpus (more parts on demand). The
    other SAEs of the session that read this corpus on the same model are computed in the same pass: one
    forward per batch serves every hook."""
    key = corpus_key(corpus)
    cached: CorpusStats | None = engine.corpus_cache.get(key)
    if cached is None or (loss and not cached.predictions):
        peers = [p for p in (engine.corpus_peers(key) if engine.corpus_peers is not None else []) if p is not engine and key not in p.corpus_cache]
        engines = [engine, *peers]
        with_loss = {id(e) for e in engines if key in e.loss_corpora} | ({id(engine)} if loss else set())
        for e, stats in zip(engines, run_pass(engines, corpus, with_loss=with_loss, progress=progress)):
            e.corpus_cache[key] = stats
    stats = engine.corpus_cache[key]
    if legacy and stats.legacy_sum is None:  # the second pass the legacy form needs, on top of the cached first
        legacy_pass(engine, corpus, stats)
    return stats


def _windows_batches(engine: SaeEngine, corpus: Corpus) -> Any:
    import torch

    model = engine.model
    bos = model.tokenizer.bos_token_id if model.tokenizer is not None else None
    for group in batches(corpus.windows(model), engine.hooks.batch_tokens):
        ids = [torch.tensor(w.ids, dtype=torch.long) for w in group]
        tokens, mask = padded(model, ids)
        keep = mask.bool() & (tokens != bos)
        yield group, tokens, mask, keep


def _activations(engine: SaeEngine, act: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """The hook activation [batch, pos, ...] at the tokens that count, checked against the SAE's width."""
    act = act.flatten(2) if act.ndim > 3 else act
    d_in = int(engine.sae.cfg.d_in)
    if act.shape[-1] != d_in:
        raise CaseError(
            f"width mismatch: the SAE {engine.label} takes d_in={d_in}, but hook {engine.hooks.hook!r} gives {act.shape[-1]}: "
            "the SAE was trained on another model or hook"
        )
    return act[keep]


def run_pass(engines: list[SaeEngine], corpus: Corpus, *, with_loss: set[int], progress: Progress | None) -> list[CorpusStats]:
    """One streamed pass for SAEs on one model (`engines[0]`'s); `with_loss` holds the ids of the engines
    whose loss statistics are computed too."""
    import torch

    lead = engines[0]
    hooks = sorted({e.hooks.hook for e in engines})
    all_stats = [CorpusStats(d_sae=e.d_sae) for e in engines]
    hasher = ContentHash()
    start = last = time.perf_counter()
    with torch.inference_mode():
        for group, tokens, mask, keep in _windows_batches(lead, corpus):
            hasher.update(tokens * mask)
            acts = hooks_activations(lead.model, hooks, tokens, mask)
            for engine, stats in zip(engines, all_stats):
                x = _activations(engine, acts[engine.hooks.hook], keep)
                feats, x_hat = encode_and_decode(engine.sae, x, engine.encode_tokens)
                # a NaN or inf in feats always reaches x_hat (inf * 0 is NaN), so x_hat's check covers it: on
                # [n, d_sae], isfinite().all() cost more than the encode
                if not (torch.isfinite(x).all() and torch.isfinite(x_hat).all()):
                    raise CaseError(f"non-finite values (NaN or inf) in the activations or the SAE {engine.label}'s output on {corpus.describe()}: check the weights and --interp-dtype")
                stats.add(x, x_hat, feats)
                stats.windows += len(group)
                if id(engine) in with_loss:
                    _add_loss(engine, stats, tokens, mask, keep)
            now = time.perf_counter()
            if progress is not None and now - last >= PROGRESS_EVERY_S:
                last = now
                done = all_stats[0].tokens
                progress(f"interp-tests: {corpus.describe()} on {', '.join(e.label for e in engines)}: {done:,} tokens, {done / (now - start):,.0f} tokens/s")
    if all_stats[0].tokens == 0:
        raise CaseError(f"{corpus.describe()} has no tokens: the source holds no documents")
    seconds = time.perf_counter() - start
    for stats in all_stats:
        stats.content_hash = hasher.hexdigest()
        stats.seconds = seconds
    return all_stats


def legacy_pass(engine: SaeEngine, corpus: Corpus, stats: CorpusStats) -> None:
    """The per-token (legacy) explained variance needs the corpus mean: a second pass over the same windows."""
    import torch

    total = 0.0
    with torch.inference_mode():
        for _, tokens, mask, keep in _windows_batches(engine, corpus):
            x = _activations(engine, hook_activations(engine.model, engine.hooks.hook, tokens, mask), keep)
            _, x_hat = encode_and_decode(engine.sae, x, engine.encode_tokens)
            total += stats.legacy_terms(x, x_hat)
    stats.legacy_sum = total  # set only once the pass is complete: an interrupted pass leaves no partial sum


def _add_loss(engine: SaeEngine, stats: CorpusStats, tokens: torch.Tensor, mask: torch.Tensor, keep: torch.Tensor) -> None:
    """CE and KL at each window's prediction positions 1 .. n-2 (n its length), the hook replaced at every
    non-BOS position (the reconstruction, or zeros); BOS positions are never replaced."""
    import torch

    from . import metrics

    model, sae, hook = engine.model, engine.sae, engine.hooks.hook
    dtype = sae.W_enc.dtype
    where = keep.unsqueeze(-1)

    def replace_sae(act: torch.Tensor, hook: Any) -> torch.Tensor:
        flat = act.flatten(2) if act.ndim > 3 else act
        feats = sae.encode(flat.to(dtype))
        recon = decode(sae, feats.reshape(-1, feats.shape[-1])).reshape(flat.shape).to(flat.dtype)
        return torch.where(where, recon, flat).reshape(act.shape)

    def replace_zero(act: torch.Tensor, hook: Any) -> torch.Tensor:
        flat = act.flatten(2) if act.ndim > 3 else act
        return torch.where(where, torch.zeros_like(flat), flat).reshape(act.shape)

    logits = {
        "orig": model(tokens, attention_mask=mask),
        "sae": model.run_with_hooks(tokens, attention_mask=mask, fwd_hooks=[(hook, replace_sae)]),
        "zero": model.run_with_hooks(tokens, attention_mask=mask, fwd_hooks=[(hook, replace_zero)]),
    }
    lengths = mask.sum(-1).tolist()
    ce: dict[str, list[torch.Tensor]] = {k: [] for k in logits}
    kl = []
    for row, n in enumerate(lengths):
        if n < 3:
            continue
        for k, v in logits.items():
            ce[k].append(metrics.cross_entropy(v[row, :n], tokens[row, :n]))
        kl.append(metrics.kl_per_position(logits["orig"][row, 1 : n - 1], logits["sae"][row, 1 : n - 1]))
    if kl:
        stats.add_loss({k: torch.cat(v) for k, v in ce.items()}, torch.cat(kl))
