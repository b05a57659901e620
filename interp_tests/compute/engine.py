"""Batched forward to the hook + encode, cached per (model, hook, text) and per (SAE, text).

Every number the checks use comes from here. Texts are tokenized one by one with BOS prepended; a batch
right-pads them (sorted by length, bounded by a token budget) and the forward stops after the hook's
block. Right padding cannot change a real position under causal attention, and BOS is dropped before
anything is stored, so every stored tensor covers exactly the tokens that count.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..common.errors import CaseError

if TYPE_CHECKING:
    import torch
    from sae_lens import SAE
    from transformer_lens import HookedTransformer


@dataclass(frozen=True)
class TextActs:
    """One text at one hook through one SAE, BOS excluded: n = number of text tokens."""

    text: str
    tokens: tuple[str, ...]  # token strings as the tokenizer prints them
    x: torch.Tensor  # [n, d_in] the hook activation
    x_hat: torch.Tensor  # [n, d_in] the SAE reconstruction
    feats: torch.Tensor  # [n, d_sae] sparse COO: the SAE's encode output

    def dense(self) -> torch.Tensor:
        return self.feats.to_dense()

    def positions(self, token: str) -> list[int]:
        return [i for i, t in enumerate(self.tokens) if t == token]


@dataclass(frozen=True)
class TextLoss:
    """Per-prediction values at positions 1 .. n-2 of one text (BOS at 0), float64 on the CPU."""

    ce_orig: torch.Tensor
    ce_sae: torch.Tensor
    ce_zero: torch.Tensor
    kl: torch.Tensor  # KL(orig || sae)


def stop_layer(hook: str) -> int | None:
    """The stop_at_layer that still runs `hook`: blocks.L.* needs L+1; embeddings need 0; others None."""
    m = re.match(r"blocks\.(\d+)\.", hook)
    if m:
        return int(m.group(1)) + 1
    if hook in ("hook_embed", "hook_pos_embed", "hook_tokens"):
        return 0
    return None


def check_hook(model: HookedTransformer, hook: str) -> None:
    if hook not in model.hook_dict:
        close = difflib.get_close_matches(hook, list(model.hook_dict), n=3)
        raise CaseError(
            f"the model has no hook {hook!r}"
            + (f" (close: {', '.join(close)})" if close else "")
            + "; hook names look like blocks.8.hook_resid_pre"
        )


def hook_width(model: HookedTransformer, hook: str) -> int | None:
    """The width (trailing dims flattened) of a hook's activation, from the model's config alone; None for a
    hook whose width the name does not tell."""
    cfg = model.cfg
    heads = int(cfg.n_heads) * int(cfg.d_head)
    name = hook.rsplit(".", 1)[-1] if hook.startswith("blocks.") else hook
    widths: dict[str, int | None] = {
        "hook_resid_pre": cfg.d_model, "hook_resid_mid": cfg.d_model, "hook_resid_post": cfg.d_model, "hook_mlp_out": cfg.d_model,
        "hook_attn_out": cfg.d_model, "hook_embed": cfg.d_model, "hook_pos_embed": cfg.d_model, "hook_normalized": cfg.d_model,
        "hook_z": heads, "hook_q": heads, "hook_v": heads, "hook_k": heads, "hook_post": cfg.d_mlp, "hook_pre": cfg.d_mlp,
    }
    width = widths.get(name)
    kv_heads = getattr(cfg, "n_key_value_heads", None)
    if hook.endswith(("attn.hook_k", "attn.hook_v")) and kv_heads:
        width = int(kv_heads) * int(cfg.d_head)
    return int(width) if width else None


def batches(lengths: Sequence[int], budget_tokens: int) -> list[list[int]]:
    """Indices grouped into padded batches of at most `budget_tokens` (padded) tokens, longest first."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    out: list[list[int]] = []
    for i in order:
        if out and (len(out[-1]) + 1) * lengths[out[-1][0]] <= budget_tokens:
            out[-1].append(i)
        else:
            out.append([i])
    return out


def _no_grad_method(fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import torch

        with torch.inference_mode():
            return fn(*args, **kwargs)

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


@dataclass
class ModelCache:
    """Token ids of texts, and the activations of every registered hook of one model: one forward pass,
    stopped after the deepest hook, serves every hook (and so every SAE) the session reads on that model."""

    model: HookedTransformer
    batch_tokens: int
    hooks: set[str] = field(default_factory=set)
    ids: dict[str, torch.Tensor] = field(default_factory=dict)
    acts: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)  # hook -> text -> activation (BOS included)
    forward_passes: int = 0

    def register(self, hook: str) -> None:
        check_hook(self.model, hook)
        self.hooks.add(hook)
        self.acts.setdefault(hook, {})

    def tokens(self, text: str) -> torch.Tensor:
        """[n+1] token ids with BOS, checked against the model's context length (a text too long to fit in
        any tokenization is refused before it is tokenized)."""
        if text not in self.ids:
            n_ctx = int(self.model.cfg.n_ctx)
            if len(text) > n_ctx * max_token_chars(self.model.tokenizer):
                raise CaseError(f"text {_short(text)} is {len(text):,} characters, more than the model's context of {n_ctx} tokens can hold: shorten it or split it")
            ids = self.model.to_tokens(text, prepend_bos=True, truncate=False)[0]
            check_length(text, int(ids.shape[0]), int(self.model.cfg.n_ctx))
            self.ids[text] = ids
        return self.ids[text]

    def fetch(self, texts: Iterable[str]) -> None:
        """Compute, in padded batches, every registered hook's activation of each text that lacks one."""
        hooks = sorted(self.hooks)
        todo = [t for t in dict.fromkeys(texts) if any(t not in self.acts[h] for h in hooks)]
        if not todo:
            return
        ids = [self.tokens(t) for t in todo]
        for group in batches([len(i) for i in ids], self.batch_tokens):
            acts = hooks_activations(self.model, hooks, *padded(self.model, [ids[i] for i in group]))
            self.forward_passes += 1
            for hook, act in acts.items():
                for row, i in enumerate(group):
                    self.acts[hook][todo[i]] = act[row, : len(ids[i])]


class HookCache:
    """One hook's view of a ModelCache: token ids and that hook's activations of texts (BOS included)."""

    def __init__(self, model: HookedTransformer, hook: str, batch_tokens: int, shared: ModelCache | None = None) -> None:
        self.shared = shared if shared is not None else ModelCache(model, batch_tokens)
        self.hook = hook
        self.shared.register(hook)

    @property
    def model(self) -> HookedTransformer:
        return self.shared.model

    @property
    def batch_tokens(self) -> int:
        return self.shared.batch_tokens

    @property
    def acts(self) -> dict[str, torch.Tensor]:
        return self.shared.acts[self.hook]

    @property
    def forward_passes(self) -> int:
        return self.shared.forward_passes

    def tokens(self, text: str) -> torch.Tensor:
        return self.shared.tokens(text)

    def str_tokens(self, text: str) -> tuple[str, ...]:
        return tuple(self.model.to_str_tokens(self.tokens(text)[1:]))  # type: ignore[arg-type]

    def fetch(self, texts: Iterable[str]) -> None:
        self.shared.fetch(texts)


def _depth(hook: str) -> tuple[float, int]:
    """Where a hook sits in the forward: (block, 0) for blocks.L.hook_resid_pre, (block, 1) inside block L,
    (-1, 0) for the embeddings, (inf, 0) after the last block."""
    m = re.match(r"blocks\.(\d+)\.(.*)", hook)
    if m:
        return float(m.group(1)), 0 if m.group(2) == "hook_resid_pre" else 1
    if hook in ("hook_embed", "hook_pos_embed", "hook_tokens"):
        return -1.0, 0
    return float("inf"), 0


def hooks_activations(model: HookedTransformer, hooks: Sequence[str], tokens: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The activations at every hook of `hooks` of a (padded) batch of token ids [batch, pos], from one forward
    stopped as early as the deepest hook allows: when that is `blocks.L.hook_resid_pre`, it is what
    `model(stop_at_layer=L)` returns (one block less than any other hook of block L); other hooks run to the
    end of their block. Runs under inference mode; `mask` is the attention mask of right-padded rows."""
    import torch

    deepest = max(hooks, key=_depth)
    block, inside = _depth(deepest)
    store: dict[str, torch.Tensor] = {}

    def keep(act: torch.Tensor, hook: Any) -> None:
        store[hook.name] = act.detach()

    with torch.inference_mode():
        if inside == 0 and block >= 0 and block != float("inf"):  # the deepest is a resid_pre: the stopped forward returns it
            others: list[Any] = [(h, keep) for h in hooks if h != deepest]
            with model.hooks(fwd_hooks=others):
                store[deepest] = model(tokens, attention_mask=mask, stop_at_layer=int(block)).detach()
        else:
            stops = [stop_layer(h) for h in hooks]
            stop = None if any(s is None for s in stops) else max(s for s in stops if s is not None)
            model.run_with_hooks(tokens, attention_mask=mask, fwd_hooks=[(h, keep) for h in hooks], stop_at_layer=stop, return_type=None)
    missing = [h for h in hooks if h not in store]
    if missing:
        raise CaseError(f"hook {missing[0]!r} did not fire on the forward pass")
    return {h: store[h] for h in hooks}


def hook_activations(model: HookedTransformer, hook: str, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The activation at one hook of a (padded) batch (see hooks_activations)."""
    return hooks_activations(model, [hook], tokens, mask)[hook]


def padded(model: HookedTransformer, ids: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded token ids [batch, longest] and their attention mask, on the model's device."""
    import torch

    width = max(len(i) for i in ids)
    toks = torch.full((len(ids), width), _pad_id(model), dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, i in enumerate(ids):
        toks[row, : len(i)] = i
        mask[row, : len(i)] = 1
    return toks.to(model.cfg.device), mask.to(model.cfg.device)


def _pad_id(model: HookedTransformer) -> int:
    tok = model.tokenizer
    if tok is not None and tok.pad_token_id is not None:
        return int(tok.pad_token_id)
    return 0


SPARSE_DECODE_ARCHITECTURES = frozenset({"standard", "topk", "jumprelu"})  # decode: acts @ W_dec + b_dec, sparse-safe
SPARSE_DECODE_MAX_DENSITY = 0.05


def decode(sae: Any, feats: torch.Tensor) -> torch.Tensor:
    """`sae.decode(feats)`; on the CPU, when at most 5% of the activations are non-zero, SAELens's own decode
    is handed them as a sparse tensor: the same `acts @ W_dec + b_dec`, its hooks and output normalization,
    on a sparse matmul (3x faster at L0 64 of 24,576; equal to the dense result up to float rounding).
    Only for the architectures whose decode is that product (and without decoder-norm rescaling), and in
    float32 or float64: in float16 and bfloat16 the sparse matmul also accumulates in half precision,
    several times less accurate than the dense one, which accumulates in float32."""
    import torch

    if (
        feats.device.type == "cpu"
        and feats.dtype in (torch.float32, torch.float64)  # a half-precision sparse matmul also sums in half precision
        and feats.ndim == 2
        and feats.numel()
        and sae.cfg.architecture() in SPARSE_DECODE_ARCHITECTURES
        and not getattr(sae.cfg, "rescale_acts_by_decoder_norm", False)
        and int(torch.count_nonzero(feats)) <= SPARSE_DECODE_MAX_DENSITY * feats.numel()
    ):
        return sae.decode(feats.to_sparse())
    return sae.decode(feats)


def encode_and_decode(sae: Any, x: torch.Tensor, chunk_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Features [n, d_sae] and reconstruction [n, d_in] of activations x [n, d_in], `chunk_tokens` rows at a
    time, in the SAE's dtype (the reconstruction's decode: `decode` above)."""
    import torch

    feats, recon = [], []
    for start in range(0, x.shape[0], chunk_tokens):
        f = sae.encode(x[start : start + chunk_tokens].to(sae.W_enc.dtype))
        feats.append(f)
        recon.append(decode(sae, f))
    if not feats:
        return x.new_zeros((0, int(sae.cfg.d_sae))), x.new_zeros(x.shape)
    return torch.cat(feats), torch.cat(recon)


@functools.lru_cache(maxsize=16)
def max_token_chars(tokenizer: Any) -> int:
    """The most characters one token can stand for: the longest token as the tokenizer writes it (byte-level
    BPE writes one character per byte, so no token decodes to more characters than that). n_ctx times this
    bounds a text that can fit in the context; 64 when the tokenizer cannot list its tokens."""
    try:
        vocab = tokenizer.get_vocab()
        return max(max((len(str(tok)) for tok in vocab), default=1), 1)
    except Exception:  # a tokenizer without a readable vocabulary: a generous bound
        return 64


def _short(text: str, width: int = 60) -> str:
    return repr(text if len(text) <= width else text[: width - 3] + "...")


def check_length(text: str, n_tokens: int, n_ctx: int) -> None:
    """A text's token count (BOS included) must fit the context and hold a token besides BOS."""
    if n_tokens > n_ctx:
        raise CaseError(f"text {_short(text)} is {n_tokens} tokens with BOS, longer than the model's context of {n_ctx}: shorten it or split it")
    if n_tokens < 2:
        raise CaseError(f"text {text!r} has no tokens besides BOS")


def check_finite(text: str, what: str, tensor: torch.Tensor, whose: str) -> None:
    import torch

    if not torch.isfinite(tensor).all():
        raise CaseError(f"non-finite values (NaN or inf) in the {what} on text {_short(text)} with {whose}: check the model/SAE weights and --interp-dtype")


@dataclass
class SaeEngine:
    """Encodes cached hook activations with one SAE and serves every check of that (model, hook, SAE)."""

    hooks: HookCache
    sae: SAE[Any]
    label: str
    replaces: str | None = None  # label of the case file's SAE when --interp-sae swapped this one in
    ref: Any = None  # the SaeRef it was loaded from
    reference: Any = None  # the case file's SaeRef when this engine runs a candidate (registry values are its)
    reference_engine: SaeEngine | None = None  # the reference SAE on the same activations (candidates only)
    pair: bool = False  # tolerance auto: the reference's values are measured on the same windows, for paired intervals
    matching: Any = None  # matching.Matching of reference features to this SAE's (candidates only)
    matching_problem: str = ""  # why there is no matching, when a candidate has none
    encode_tokens: int = 8192
    acts_cache: dict[str, TextActs] = field(default_factory=dict)
    loss_cache: dict[str, TextLoss] = field(default_factory=dict)
    pending: set[str] = field(default_factory=set)
    steer_cache: dict[Any, Any] = field(default_factory=dict)
    corpus_cache: dict[Any, Any] = field(default_factory=dict)  # (corpus spec, base) -> corpus_stats.CorpusStats
    progress: Callable[[str], None] | None = None  # where a long corpus pass reports how far it is
    loss_corpora: set[Any] = field(default_factory=set)  # corpus keys whose pass also computes the loss statistics
    legacy_corpora: set[Any] = field(default_factory=set)  # corpus keys a legacy explained variance reads (its inputs kept through the pass)
    corpus_peers: Callable[[Any], list[SaeEngine]] | None = None  # other SAEs on this model that read a corpus
    pass_log: Callable[[Any, list[SaeEngine], list[Any]], None] | None = None  # told of each corpus pass this engine leads
    checkpoint: str = ""  # the short label reports show (a candidate's label); "" for the SAE's full label
    out_hook: str | None = None  # a transcoder's output hook (its prediction's place); None for an SAE

    @property
    def model(self) -> HookedTransformer:
        return self.hooks.model

    @property
    def d_sae(self) -> int:
        return int(self.sae.cfg.d_sae)

    @property
    def target_hook(self) -> str:
        """The hook the SAE's output stands for: its own for an SAE, the output hook for a transcoder (where its
        prediction is compared, spliced in and steered)."""
        return self.out_hook or self.hooks.hook

    def check_out_width(self, width: int) -> None:
        """A transcoder's output hook width (trailing dims flattened) must be its d_out."""
        if self.out_hook is None:
            return
        d_out = int(getattr(self.sae.cfg, "d_out", self.sae.W_dec.shape[-1]))
        if width != d_out:
            raise CaseError(
                f"width mismatch: the transcoder {self.label} writes d_out={d_out}, but its output hook {self.out_hook!r} "
                f"gives {width}: it was trained on another model or hook"
            )

    def check_width(self, width: int) -> None:
        """The hook's activation width (trailing dims flattened) must be the SAE's d_in."""
        d_in = int(self.sae.cfg.d_in)
        if width != d_in:
            raise CaseError(
                f"width mismatch: the SAE {self.label} takes d_in={d_in}, but hook {self.hooks.hook!r} of the model "
                f"gives {width}: the SAE was trained on another model or hook (set target.hook or pick the matching SAE)"
            )

    def want(self, texts: Iterable[str]) -> None:
        """Register texts to compute together with the next request (the suite's texts, up front)."""
        self.pending.update(texts)

    def acts(self, texts: Sequence[str]) -> list[TextActs]:
        import torch

        todo = [t for t in dict.fromkeys([*texts, *sorted(self.pending)]) if t not in self.acts_cache]
        self.pending.clear()
        if todo:
            # a pending text that fails (too long, say) must not break the cases that do not use it
            ok = []
            for t in todo:
                try:
                    self.hooks.tokens(t)
                    ok.append(t)
                except CaseError:
                    if t in texts:
                        raise
            self.hooks.fetch(ok)
            with torch.inference_mode():
                self._encode(ok)
        return [self.acts_cache[t] for t in texts]

    def _encode(self, texts: list[str]) -> None:
        import torch

        raw = [self.hooks.acts[t][1:] for t in texts]  # BOS dropped here
        targets = [self.hooks.shared.acts[self.out_hook][t][1:] for t in texts] if self.out_hook else raw
        if raw:
            self.check_width(raw[0].flatten(1).shape[-1])
            self.check_out_width(targets[0].flatten(1).shape[-1])
        lengths = [r.shape[0] for r in raw]
        flat = torch.cat(raw) if raw else torch.empty(0)
        f_all, r_all = encode_and_decode(self.sae, flat, self.encode_tokens)
        offset = 0
        for t, n, x in zip(texts, lengths, targets):
            f = f_all[offset : offset + n]
            r = r_all[offset : offset + n]
            offset += n
            for what, tensor in (("hook activation", x), ("SAE activations", f), ("SAE reconstruction", r)):
                check_finite(t, what, tensor, f"SAE {self.label}")
            self.acts_cache[t] = TextActs(
                text=t,
                tokens=self.hooks.str_tokens(t),
                x=x.flatten(1),
                x_hat=r.flatten(1),
                feats=f.to_sparse(),
            )

    # ------------------------------------------------------------------ losses
    def losses(self, texts: Sequence[str]) -> list[TextLoss]:
        todo = [t for t in dict.fromkeys(texts) if t not in self.loss_cache]
        if todo:
            self._losses(todo)
        return [self.loss_cache[t] for t in texts]

    @_no_grad_method
    def _losses(self, texts: list[str]) -> None:
        """Per-prediction CE (clean, SAE, zero) and KL of texts: one clean forward per batch, the SAE's
        reconstruction and the zero ablation spliced in from the hook's block (losses.py); BOS is never replaced."""
        from .losses import LossBatch, clean_forward, input_hooks, spliced_logits

        hook, target = self.hooks.hook, self.target_hook
        check_hook(self.model, hook)
        ids = [self.hooks.tokens(t) for t in texts]
        vocab = int(self.model.cfg.d_vocab_out)
        budget = max(self.model.cfg.n_ctx, self.hooks.batch_tokens * 8192 // max(vocab, 8192))
        sae = self.sae
        captured = input_hooks(list(dict.fromkeys([hook, target])), int(self.model.cfg.n_layers))
        for group in batches([len(i) for i in ids], budget):
            toks, mask = padded(self.model, [ids[i] for i in group])
            keep = mask.bool()
            keep[:, 0] = False  # BOS
            logits, acts = clean_forward(self.model, captured, toks, mask)
            batch = LossBatch.of(logits, toks, mask)
            del logits
            act = acts[hook]
            x = (act.flatten(2) if act.ndim > 3 else act)[keep]
            self.check_width(int(x.shape[-1]))
            recon = decode(sae, sae.encode(x.to(sae.W_enc.dtype)))
            if self.out_hook:
                out = acts[target]
                self.check_out_width(int((out.flatten(2) if out.ndim > 3 else out).shape[-1]))
            sae_ce, kl = batch.ce_and_kl(spliced_logits(self.model, target, acts, toks, mask, keep, recon))
            zero_ce = batch.ce(spliced_logits(self.model, target, acts, toks, mask, keep, None))
            pieces = [batch.rows(v.cpu()) for v in (batch.clean_ce, sae_ce, zero_ce, kl)]
            for row, i in enumerate(group):
                self.loss_cache[texts[i]] = TextLoss(*(p[row] for p in pieces))
