"""One streamed pass of a corpus through a model and its SAEs: batches of windows -> one forward -> encode ->
running sums (corpus_stats.py). With the loss statistics, that forward is the clean one to the logits, and each
SAE adds one forward with its reconstruction spliced in from the hook's block; the zero ablation runs once
per hook (losses.py). No pytest here.

Memory is one batch: windows are read lazily, activations are dropped after each batch; only the legacy
explained variance, which needs the corpus mean before its per-token terms, keeps each token's activations and
errors to the end of the pass, where they fit `LEGACY_KEEP_BYTES` (else it takes a second pass, `legacy_pass`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..common.errors import CaseError
from .bootstrap import x_sums
from .corpus import ContentHash, Corpus, batches
from .corpus_stats import CorpusStats, token_resid
from .engine import encode_and_decode, hooks_activations, padded

if TYPE_CHECKING:
    import torch

    from .engine import SaeEngine

Progress = Callable[[str], None]
PROGRESS_EVERY_S = 5.0
LEGACY_KEEP_BYTES = 256 << 20  # the legacy explained variance's inputs kept through a pass, at most (else a second pass)
REGISTRY_MIN_TOKENS = 10_000  # registry values are dataset-level: compared only on a corpus at least this large


def corpus_key(corpus: Corpus) -> tuple[object, str]:
    return (corpus.spec, str(corpus.base))


def corpus_stats(engine: SaeEngine, corpus: Corpus, *, loss: bool = False, legacy: bool = False, progress: Progress | None = None) -> CorpusStats:
    """The corpus's statistics on the engine's SAE, computed once per corpus (more parts on demand). The
    other SAEs of the session that read this corpus on the same model are computed in the same pass: one
    forward per batch serves every hook."""
    key = corpus_key(corpus)
    cached: CorpusStats | None = engine.corpus_cache.get(key)
    if cached is None or (loss and not cached.predictions and not cached.error):
        peers = [p for p in (engine.corpus_peers(key) if engine.corpus_peers is not None else []) if p is not engine and key not in p.corpus_cache]
        engines = [engine, *peers]
        references = {id(e.reference_engine): e.reference_engine for e in engines if e.pair and e.reference_engine is not None}
        engines += [r for r in references.values() if r not in engines and key not in r.corpus_cache]  # paired: the same windows, one pass
        with_loss = {id(e) for e in engines if key in e.loss_corpora} | ({id(engine)} if loss else set())
        all_stats = run_pass(engines, corpus, with_loss=with_loss, progress=progress)
        for e, stats in zip(engines, all_stats):
            e.corpus_cache[key] = stats
        if engine.pass_log is not None:
            engine.pass_log(corpus, engines, all_stats)
    stats = engine.corpus_cache[key]
    if stats.error:  # this SAE's output went non-finite: its own checks fail, its peers' passes went on
        raise CaseError(stats.error)
    if legacy and stats.legacy_sum is None:  # the second pass the legacy form needs, for every peer that needs it too
        peers = [p for p in (engine.corpus_peers(key) if engine.corpus_peers is not None else []) if p is not engine]
        wanting = [p for p in peers if key in p.legacy_corpora and key in p.corpus_cache and p.corpus_cache[key].legacy_sum is None
                   and not p.corpus_cache[key].error]
        engines = [engine, *wanting]
        legacy_pass(engines, corpus, [e.corpus_cache[key] for e in engines])
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
    engine.check_width(int(act.shape[-1]))
    return act[keep]


def _targets(engine: SaeEngine, act: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """A transcoder's output hook activation at the tokens that count, checked against its d_out."""
    act = act.flatten(2) if act.ndim > 3 else act
    engine.check_out_width(int(act.shape[-1]))
    return act[keep]


class LegacyInputs:
    """What the legacy explained variance needs of each batch, kept through the first pass so that it needs no
    second one (`legacy_pass`): the activations compared at each hook (in the model's dtype, on the CPU) and
    each SAE's per-token squared error (and each token's window). Kept only when the corpus's token budget makes
    them fit `LEGACY_KEEP_BYTES`; the sums are the second pass's, term for term (`CorpusStats.legacy_terms_of`)."""

    def __init__(self, engines: list[SaeEngine], corpus: Corpus) -> None:
        key = corpus_key(corpus) if any(e.legacy_corpora for e in engines) else None  # a pass outside a session's plan wants none
        wanting = [e for e in engines if key in e.legacy_corpora]
        self.engines: set[int] = set()
        if wanting:
            widths = {e.target_hook: int(e.sae.W_dec.shape[-1]) for e in wanting}  # what each compares: d_in (d_out for a transcoder)
            size = next(iter(engines[0].model.parameters())).element_size()  # the activations' dtype
            tokens = int(corpus.spec.tokens) + int(corpus.spec.context)  # the last window may end past the budget
            cost = tokens * (size * sum(widths.values()) + 8 * len(wanting) + 8)  # each SAE's float64 errors, each token's window
            if cost <= LEGACY_KEEP_BYTES:
                self.engines = {id(e) for e in wanting}
        self.x: dict[str, list[torch.Tensor]] = {}  # hook -> each batch's activations there
        self.resid: dict[int, list[torch.Tensor]] = {i: [] for i in self.engines}  # id(engine) -> each batch's errors
        self.batches: list[tuple[torch.Tensor | None, int, int]] = []  # each batch's (token -> window, windows, first window)

    def add_batch(self, unit: torch.Tensor | None, n_units: int, offset: int) -> None:
        if self.engines:
            self.batches.append((unit.cpu() if unit is not None else None, n_units, offset))

    def add(self, engine: SaeEngine, hook: str, x: torch.Tensor, x_hat: torch.Tensor) -> None:
        if id(engine) not in self.engines:
            return
        rows = self.x.setdefault(hook, [])
        if len(rows) < len(self.batches):  # the first SAE at this hook this batch keeps its activations
            rows.append(x.cpu())  # a tensor of its own (the rows at the tokens that count), not a view of the batch
        self.resid[id(engine)].append(token_resid(x, x_hat).cpu())

    def finish(self, engine: SaeEngine, stats: CorpusStats) -> None:
        """Sets the legacy sum of an SAE whose inputs were kept (and whose output stayed finite)."""
        kept = self.resid.get(id(engine))
        if kept is None or stats.error or len(kept) != len(self.batches):
            return
        total = 0.0
        for x, resid, (unit, n_units, offset) in zip(self.x[engine.target_hook], kept, self.batches):
            total += stats.legacy_terms_of(x, resid, unit, n_units, offset)
        stats.legacy_sum = total


def run_pass(engines: list[SaeEngine], corpus: Corpus, *, with_loss: set[int], progress: Progress | None, per_window: bool = True) -> list[CorpusStats]:
    """One streamed pass for SAEs on one model (`engines[0]`'s); `with_loss` holds the ids of the engines
    whose loss statistics are computed too. `per_window=False` keeps the totals only, no window's own sums
    (and so no interval): what the intervals' benchmark compares the pass with.

    Per batch of windows: one forward serves every hook (stopped after the deepest one, or, when a loss
    statistic is wanted, one clean forward to the logits, whose log-probabilities serve every SAE); each SAE
    encodes and decodes once, and that reconstruction is what its spliced forward puts at the hook
    (`losses.spliced_logits`, from the hook's block); the zero ablation runs once per hook, shared by the
    SAEs that read it.

    An SAE whose output goes non-finite (NaN or inf: broken weights, an overflowing dtype) leaves the pass with
    its `error` set, and the pass goes on for the others: one broken checkpoint of a sweep fails its own
    checks only. Non-finite activations (the model's, shared by every SAE at the hook) stop the pass."""
    import torch

    from .losses import LossBatch, clean_forward, input_hooks, spliced_logits

    lead = engines[0]
    model = lead.model
    hooks = sorted({h for e in engines for h in (e.hooks.hook, e.target_hook)})
    loss = any(id(e) in with_loss for e in engines)
    captured = input_hooks(hooks, int(model.cfg.n_layers))
    all_stats = [CorpusStats(d_sae=e.d_sae) for e in engines]
    if not per_window:
        for stats in all_stats:
            stats.units = None
    hasher = ContentHash()
    legacy = LegacyInputs(engines, corpus)
    seen_tokens = first_window = 0
    start = last = time.perf_counter()
    with torch.inference_mode():
        for group, tokens, mask, keep in _windows_batches(lead, corpus):
            hasher.update(tokens * mask)
            if loss:
                logits, acts = clean_forward(model, captured, tokens, mask)
                batch = LossBatch.of(logits, tokens, mask)
                del logits
                clean_ce = batch.clean_ce
                zero_ce: dict[str, torch.Tensor] = {}
            else:
                acts = hooks_activations(model, hooks, tokens, mask)
            n_units = int(tokens.shape[0])
            unit = torch.arange(n_units, device=keep.device).unsqueeze(1).expand_as(keep)[keep] if per_window else None  # each token's window
            pred_unit = torch.repeat_interleave(torch.arange(n_units), torch.tensor(batch.counts)).to(keep.device) if loss and per_window else None
            x_parts: dict[str, Any] = {}  # per hook: the windows' sums of the activations alone, shared by its SAEs
            seen_tokens += int(keep.sum())
            legacy.add_batch(unit, n_units, first_window)
            first_window += n_units
            if all(stats.error for stats in all_stats):
                break  # every SAE of the pass went non-finite: nothing left to compute
            for engine, stats in zip(engines, all_stats):
                if stats.error:
                    continue
                hook = engine.target_hook  # where the SAE's output is compared and spliced in (a transcoder's output hook)
                x_in = _activations(engine, acts[engine.hooks.hook], keep)
                x = _targets(engine, acts[hook], keep) if engine.out_hook else x_in
                feats, x_hat = encode_and_decode(engine.sae, x_in, engine.encode_tokens)
                # a NaN or inf in feats always reaches x_hat (inf * 0 is NaN), so x_hat's check covers it: on
                # [n, d_sae], isfinite().all() cost more than the encode
                if not (torch.isfinite(x).all() and (x_in is x or torch.isfinite(x_in).all())):
                    raise CaseError(f"non-finite values (NaN or inf) in the model's activations at {hook} on {corpus.describe()}: check the model and --interp-dtype")
                if not torch.isfinite(x_hat).all():
                    stats.error = f"non-finite values (NaN or inf) in the SAE {engine.label}'s output on {corpus.describe()}: check its weights and --interp-dtype"
                    continue
                if hook not in x_parts and unit is not None:
                    x_parts[hook] = x_sums(x, unit, n_units)
                stats.add(x, x_hat, feats, unit, n_units, x_parts.get(hook))
                stats.windows += len(group)
                legacy.add(engine, hook, x, x_hat)
                if id(engine) in with_loss:
                    if hook not in zero_ce:  # the zero ablation does not depend on the SAE: once per hook
                        zero_ce[hook] = batch.ce(spliced_logits(model, hook, acts, tokens, mask, keep, None))
                    sae_ce, kl = batch.ce_and_kl(spliced_logits(model, hook, acts, tokens, mask, keep, x_hat))
                    stats.add_loss({"orig": clean_ce, "sae": sae_ce, "zero": zero_ce[hook]}, kl, pred_unit, n_units)
            now = time.perf_counter()
            if progress is not None and now - last >= PROGRESS_EVERY_S:
                last = now
                done = seen_tokens
                progress(f"interp-tests: {corpus.describe()} on {', '.join(e.label for e in engines)}: {done:,} tokens, {done / (now - start):,.0f} tokens/s")
    if seen_tokens == 0:
        raise CaseError(f"{corpus.describe()} has no tokens: the source holds no documents")
    seconds = time.perf_counter() - start
    for engine, stats in zip(engines, all_stats):
        stats.content_hash = hasher.hexdigest()
        stats.seconds = seconds
        legacy.finish(engine, stats)
    return all_stats


def legacy_pass(engines: list[SaeEngine], corpus: Corpus, all_stats: list[CorpusStats]) -> None:
    """The per-token (legacy) explained variance needs the corpus mean: a second pass over the same windows,
    one forward per batch for every SAE of `engines` (on `engines[0]`'s model)."""
    import torch

    lead = engines[0]
    hooks = sorted({h for e in engines for h in (e.hooks.hook, e.target_hook)})
    totals = [0.0] * len(engines)
    offset = 0
    with torch.inference_mode():
        for _, tokens, mask, keep in _windows_batches(lead, corpus):
            acts = hooks_activations(lead.model, hooks, tokens, mask)
            n_units = int(tokens.shape[0])
            unit = torch.arange(n_units, device=keep.device).unsqueeze(1).expand_as(keep)[keep]
            for i, (engine, stats) in enumerate(zip(engines, all_stats)):
                x_in = _activations(engine, acts[engine.hooks.hook], keep)
                x = _targets(engine, acts[engine.target_hook], keep) if engine.out_hook else x_in
                _, x_hat = encode_and_decode(engine.sae, x_in, engine.encode_tokens)
                totals[i] += stats.legacy_terms(x, x_hat, unit, n_units, offset)
            offset += n_units
    for stats, total in zip(all_stats, totals):
        stats.legacy_sum = total  # set only once the pass is complete: an interrupted pass leaves no partial sum
