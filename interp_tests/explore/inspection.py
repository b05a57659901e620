"""What the command line computes: the target, per-token top features, and one feature's card.

No printing here (that is `cli.py`); every function returns frozen values. The target comes from a case
file, from a model name and an SAE spec, or defaults to the bundled pair. A feature card streams its
input: documents are read one at a time, cut into windows, run in padded batches through the forward
stopped at the hook and the SAE's `encode`, and only running counts, a histogram and the top-N heap are
kept, so memory does not grow with the size of the input.
"""

from __future__ import annotations

import contextlib
import heapq
import math
import re
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..cases.schema import SaeRef
from ..common.errors import InputError, LoadError
from ..compute.neuronpedia import feature_url, neuronpedia_id
from ..compute.registry import BUNDLED_DIR, BUNDLED_MODELS, BUNDLED_RELEASES, Registry

if TYPE_CHECKING:
    import torch
    from sae_lens import SAE
    from transformer_lens import HookedTransformer

    from ..cases.casefile import CaseFile
    from ..compute.bundled_forward import BundledPair
    from ..compute.engine import SaeEngine

DEFAULT_MODEL = "tiny-stdlib"
DEFAULT_SAE = SaeRef(release="tiny-stdlib-res", id="blocks.1.hook_resid_pre")


# ----------------------------------------------------------------------------- the target
@dataclass(frozen=True)
class TargetSpec:
    """What to load: a model name, one SAE, an optional hook, and the case file it came from (if any)."""

    model: str
    sae: SaeRef
    hook: str | None = None
    model_kwargs: tuple[tuple[str, Any], ...] = ()
    case: CaseFile | None = None


def parse_sae_spec(value: str, cwd: Path) -> SaeRef:
    """`PATH` (a SAELens-format directory) or `RELEASE:ID`."""
    path = (cwd / value).expanduser()
    if value and path.is_dir():
        return SaeRef(path=str(path.resolve()))
    release, sep, sae_id = value.partition(":")
    if sep and release and sae_id:
        return SaeRef(release=release, id=sae_id)
    raise InputError(
        f"Could not parse value: {value!r} for --sae: not a directory, and not RELEASE:ID "
        "(e.g. --sae tiny-stdlib-res:blocks.1.hook_resid_pre or --sae ./my-checkpoint)"
    )


def target_spec(model: str | None = None, sae: str | None = None, case: str | None = None, cwd: Path | None = None) -> TargetSpec:
    """The target: `case`'s (its first SAE unless `sae` is given), else `model` + `sae`, else the bundled pair."""
    from ..cases.casefile import load_case_file

    cwd = cwd or Path.cwd()
    ref = parse_sae_spec(sae, cwd) if sae is not None else None
    if case is not None:
        cf = load_case_file(cwd / case, display=Path(case))
        target = cf.model.target
        if ref is None:
            ref = target.sae_list[0]
            if ref.path is not None:  # a local SAE path is relative to the case file's directory
                ref = SaeRef(path=str((cf.path.parent / ref.path).resolve()))
        return TargetSpec(model or target.model, ref, target.hook, tuple(sorted(target.model_kwargs.items())), cf)
    name = model or DEFAULT_MODEL
    if ref is None:
        if name not in BUNDLED_MODELS:
            raise InputError(f"--model {name!r} needs an SAE: pass --sae RELEASE:ID or --sae PATH (or --case FILE)")
        ref = DEFAULT_SAE
    return TargetSpec(name, ref)


@dataclass(frozen=True)
class Target:
    """A loaded model and SAE at one hook; the model and SAE are shared and read-only."""

    spec: TargetSpec
    model: HookedTransformer
    sae: SAE[Any]
    hook: str
    np_id: str | None  # the SAE's Neuronpedia id, if its registry entry has one

    @property
    def label(self) -> str:
        return self.spec.sae.label

    @property
    def d_sae(self) -> int:
        return int(self.sae.cfg.d_sae)

    def url(self, feature: int) -> str | None:
        return feature_url(self.np_id, feature)

    def check_feature(self, feature: int) -> int:
        if not 0 <= feature < self.d_sae:
            raise InputError(f"feature {feature} is outside [0, {self.d_sae}): d_sae of SAE {self.label} is {self.d_sae}")
        return feature

    def engine(self, batch_tokens: int = 4096) -> SaeEngine:
        from ..compute.engine import HookCache, SaeEngine

        return SaeEngine(HookCache(self.model, self.hook, batch_tokens), self.sae, self.label, ref=self.spec.sae)

    def encoded(self, texts: list[str]) -> list[Encoded]:
        """Per text: its token strings, their bytes and its features [n, d_sae] (BOS excluded), from the engine."""
        engine = self.engine()
        tokenizer = self.model.tokenizer
        out = []
        for a in engine.acts(texts):
            ids = engine.hooks.tokens(a.text)[1:].tolist()
            raw = tokenizer.convert_ids_to_tokens(ids) if tokenizer is not None else [None] * len(ids)
            out.append(Encoded.of(a.text, a.tokens, raw, a.dense()))
        return out


@dataclass(frozen=True)
class Encoded:
    """One text through a target, BOS excluded."""

    text: str
    tokens: tuple[str, ...]  # each token decoded alone (as TransformerLens's to_str_tokens)
    token_bytes: tuple[bytes | None, ...]  # a token's bytes where it is part of a character (see token_bytes)
    feats: torch.Tensor  # [n, d_sae]

    @classmethod
    def of(cls, text: str, tokens: tuple[str, ...], raw: Sequence[str | None], feats: torch.Tensor) -> Encoded:
        """From the tokens as decoded and as the tokenizer writes them (`raw`, for `token_bytes`)."""
        return cls(text, tokens, tuple(token_bytes(t, r) for t, r in zip(tokens, raw)), feats)

    def positions(self, token: str) -> list[int]:
        return [i for i, t in enumerate(self.tokens) if t == token]


def _byte_level_alphabet() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet: the printable character that stands for each byte in a token."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("\xa1"), ord("\xac") + 1), *range(ord("\xae"), ord("\xff") + 1)]
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[chr(byte)] = byte
        else:
            chars[chr(256 + extra)] = byte
            extra += 1
    return chars


BYTE_LEVEL = _byte_level_alphabet()


SENTENCEPIECE_BYTE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def token_bytes(decoded: str, raw: str | None) -> bytes | None:
    """The bytes of a token that decodes, alone, to U+FFFD: part of a multi-byte character, which only the
    bytes tell apart ('\\xe2\\x98' and '\\x95' of '☕'). Read from the tokenizer's own string for it (`raw`):
    GPT-2's byte-level form, or SentencePiece's byte fallback `<0xE2>`; kept only when those bytes decode
    (with replacement) to what the token decodes to. None for a token that decodes to text, or any other form."""
    if "\ufffd" not in decoded or not raw:
        return None
    piece = SENTENCEPIECE_BYTE.fullmatch(raw)
    if piece is not None:
        got = bytes([int(piece.group(1), 16)])
    elif all(c in BYTE_LEVEL for c in raw):
        got = bytes(BYTE_LEVEL[c] for c in raw)
    else:
        return None
    return got if got.decode("utf-8", errors="replace") == decoded else None


@dataclass(frozen=True)
class BundledTarget:
    """The bundled pair computed by `bundled_forward` (no TransformerLens, no SAELens): what `inspect` needs,
    with the same values as a Target's engine."""

    spec: TargetSpec
    pair: BundledPair
    np_id: str | None  # the SAE's Neuronpedia id (bundled releases have none today)

    @property
    def hook(self) -> str:
        return self.pair.hook

    @property
    def label(self) -> str:
        return self.spec.sae.label

    @property
    def d_sae(self) -> int:
        return self.pair.d_sae

    def url(self, feature: int) -> str | None:
        return feature_url(self.np_id, feature)

    def encoded(self, texts: list[str]) -> list[Encoded]:
        out = []
        for text in texts:
            ids = self.pair.token_ids(text)  # tokenized once: for the features, the strings and the raw forms
            raw = [self.pair.tokenizer.id_to_token(i) for i in ids[1:]]
            out.append(Encoded.of(text, self.pair.str_tokens(ids[1:]), raw, self.pair.features(text, ids)))
        return out


def bundled_target(spec: TargetSpec, registry: Registry) -> BundledTarget | None:
    """The target through `bundled_forward` when it can run it: the bundled model with its bundled SAE, on
    the CPU in float32, at a hook and with configs it reads (`bundled_forward.unsupported`); else None."""
    from ..compute import bundled_forward

    ref = spec.sae
    if (
        spec.model not in BUNDLED_MODELS
        or ref.path is not None
        or ref.release is None
        or ref.id is None
        or BUNDLED_RELEASES.get(ref.release) != spec.model
        or spec.model_kwargs
        or registry.device != "cpu"
        or registry.dtype != "float32"
    ):
        return None
    sae_dir, model_dir = BUNDLED_DIR / ref.release / ref.id, BUNDLED_DIR / spec.model
    if not (sae_dir / "cfg.json").is_file():
        return None  # the libraries' path gives the error that names the release's ids
    hook = spec.hook or bundled_forward.sae_hook(sae_dir)
    try:
        pair = bundled_forward.load(model_dir, sae_dir, hook, ref.label)
    except LoadError:
        return None  # what `unsupported` refuses, non-finite weights, a BOS the tokenizer lacks: the libraries' path
    return BundledTarget(spec, pair, neuronpedia_id(ref.release, ref.id))


def load_quick_target(spec: TargetSpec, registry: Registry) -> Target | BundledTarget:
    """For the commands that only encode texts (inspect, draft): the bundled pair without TransformerLens and
    SAELens where `bundled_target` can run it (their imports alone take longer than `inspect` may), any other
    target through them."""
    return bundled_target(spec, registry) or load_target(spec, registry)


def load_target(spec: TargetSpec, registry: Registry) -> Target:
    """Load the SAE, then its model (the loaders' chatter goes to stderr, keeping stdout for results)."""
    from ..compute.engine import check_hook

    with contextlib.redirect_stdout(sys.stderr):
        sae = registry.sae(spec.sae)
        for p in sae.parameters():
            p.requires_grad_(False)
        model = registry.model_for_sae(spec.model, sae, dict(spec.model_kwargs))
        hook = spec.hook or str(sae.cfg.metadata.hook_name or "")
        if not hook:
            raise InputError(f"SAE {spec.sae.label} names no hook in its config: give the hook with a case file's target.hook")
        check_hook(model, hook)
        np_id = neuronpedia_id(spec.sae.release, spec.sae.id) if spec.sae.path is None else None
    return Target(spec, model, sae, hook, np_id)


def check_texts(texts: Iterable[str], what: str = "text") -> list[str]:
    out = list(texts)
    for t in out:
        if not t.strip():
            raise InputError(f"empty {what} {t!r}: every text needs at least one token besides BOS")
    return out


# ----------------------------------------------------------------------------- inspect
@dataclass(frozen=True)
class TokenTop:
    position: int  # index in the tokenized text, BOS at 0
    token: str
    features: tuple[tuple[int, float], ...]  # (feature, activation), most active first, activation > 0
    token_bytes: bytes | None = None  # the token's bytes when it is part of a character (token is then '\ufffd')

    @property
    def shown(self) -> str:
        """How a terminal shows the token: repr of its text, or of its bytes when it is part of a character."""
        return repr(self.token_bytes) if self.token_bytes is not None else repr(self.token)


@dataclass(frozen=True)
class Inspected:
    text: str
    n_tokens: int  # BOS excluded
    l0: float  # mean number of features > 0 per token
    rows: tuple[TokenTop, ...]


def inspect_texts(target: Target | BundledTarget, texts: list[str], k: int) -> list[Inspected]:
    """Per token of each text (BOS excluded), the `k` most active features that are > 0."""
    import torch

    if k < 1:
        raise InputError(f"Could not parse value: {k!r} for -k: give a number of features >= 1")
    texts = check_texts(texts)
    out = []
    for enc in target.encoded(texts):
        dense = enc.feats
        values, index = torch.topk(dense, min(k, dense.shape[1]), dim=1)
        rows = []
        for i, (tok, raw) in enumerate(zip(enc.tokens, enc.token_bytes)):
            feats = tuple((int(f), float(v)) for v, f in zip(values[i].tolist(), index[i].tolist()) if v > 0)
            rows.append(TokenTop(i + 1, tok, feats, raw))
        l0 = float((dense > 0).sum(-1).double().mean())
        out.append(Inspected(enc.text, len(enc.tokens), l0, tuple(rows)))
    return out


# ----------------------------------------------------------------------------- documents
def iter_documents(path: Path, per_line: bool = False, max_chars: int = 100_000) -> Iterator[str]:
    """Documents of a text file, read line by line: blank lines separate documents (or, with `per_line`,
    every non-blank line is one). No read takes more than `max_chars` characters: a longer document is cut
    at line ends (a longer line, anywhere) into pieces of at most that much, each its own document."""
    try:
        handle = open(path, encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"cannot read --file {str(path)!r}: {exc.strerror or exc}") from None
    with handle:
        lines: list[str] = []
        size = 0
        while line := handle.readline(max_chars):
            if per_line:
                if line.strip():
                    yield line.rstrip("\n")
                continue
            if not line.strip() and line.endswith("\n"):
                if lines:
                    yield "".join(lines).rstrip("\n")
                lines, size = [], 0
                continue
            if lines and size + len(line) > max_chars:
                yield "".join(lines).rstrip("\n")
                lines, size = [], 0
            lines.append(line)
            size += len(line)
        if lines:
            yield "".join(lines).rstrip("\n")


# ----------------------------------------------------------------------------- feature card
@dataclass
class Histogram:
    """Streaming histogram of positive values: `bins` fine bins of width 2**e over [0, bins * 2**e); when a
    value does not fit, neighbouring bins merge pairwise (the width doubles). Exact counts per fine bin."""

    bins: int = 1024
    width: float = 0.0
    counts: list[int] = field(default_factory=list)

    def add(self, values: torch.Tensor) -> None:
        import torch

        if values.numel() == 0:
            return
        top = float(values.max())
        if not self.counts:
            self.width = 2.0 ** math.ceil(math.log2(max(top, 1e-30) / self.bins))
            self.counts = [0] * self.bins
        while top >= self.bins * self.width:
            self.counts = [self.counts[i] + self.counts[i + 1] for i in range(0, self.bins, 2)] + [0] * (self.bins // 2)
            self.width *= 2
        idx = torch.clamp((values.double() / self.width).floor().long(), 0, self.bins - 1)
        for i, c in zip(*torch.unique(idx, return_counts=True)):
            self.counts[int(i)] += int(c)

    def coarse(self, n: int, top: float) -> tuple[tuple[float, ...], tuple[int, ...]]:
        """About `n` bins of whole fine bins from 0 up to past `top`: (edges, counts); exact counts."""
        if not self.counts:
            return (), ()
        last = min(int(top / self.width), self.bins - 1)
        group = math.ceil((last + 1) / n)
        edges = [i * group * self.width for i in range(math.ceil((last + 1) / group) + 1)]
        counts = [sum(self.counts[i : i + group]) for i in range(0, last + 1, group)]
        return tuple(edges), tuple(counts)


@dataclass(frozen=True)
class Context:
    activation: float
    tokens: tuple[str, ...]  # the window's tokens, BOS at 0
    position: int  # index of the max token in `tokens`
    document: int  # 0-based index of the document
    start: int  # index of the window's first token after BOS among the document's tokens


@dataclass(frozen=True)
class FeatureCard:
    feature: int
    url: str | None
    source: str
    documents: int
    windows: int
    context: int
    tokens: int  # tokens seen, BOS excluded
    active: int  # tokens where the feature is > 0
    max_activation: float
    top: tuple[Context, ...]
    edges: tuple[float, ...]
    counts: tuple[int, ...]
    promoted: tuple[tuple[str, float], ...] | None  # W_dec[F] @ W_U: most positive logits
    suppressed: tuple[tuple[str, float], ...] | None  # most negative, most negative first
    seconds: float

    @property
    def density(self) -> float:
        return self.active / self.tokens if self.tokens else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def windows(ids: list[int], bos: int, context: int) -> Iterator[tuple[int, list[int]]]:
    """(start, [BOS] + up to context-1 tokens) for consecutive, non-overlapping slices of a document."""
    step = context - 1
    for start in range(0, len(ids), step):
        yield start, [bos, *ids[start : start + step]]


def feature_card(
    target: Target,
    feature: int,
    documents: Iterable[str],
    source: str,
    top_n: int = 10,
    context: int = 128,
    batch_tokens: int = 4096,
    bins: int = 10,
) -> FeatureCard:
    """One feature over a stream of documents: top-N windows by max activation, density, histogram, logits."""
    import torch

    from ..compute.engine import batches, hook_activations, padded

    target.check_feature(feature)
    n_ctx = int(target.model.cfg.n_ctx)
    if not 2 <= context <= n_ctx:
        raise InputError(f"Could not parse value: {context!r} for --context: give 2 to {n_ctx} tokens (the model's n_ctx, BOS included)")
    if top_n < 0:
        raise InputError(f"Could not parse value: {top_n!r} for --top: give a number of contexts >= 0")
    tokenizer = target.model.tokenizer
    if tokenizer is None or tokenizer.bos_token_id is None:
        raise InputError(f"model {target.spec.model!r} has no tokenizer with a BOS token: the feature card needs one")
    bos = int(tokenizer.bos_token_id)
    d_in = int(target.sae.cfg.d_in)
    dtype = target.sae.W_enc.dtype

    heap: list[tuple[float, int, int, int, list[int], int]] = []  # (act, -seq, doc, start, ids, pos)
    hist = Histogram()
    seen = {"tokens": 0, "active": 0, "windows": 0, "docs": 0}
    top_act = 0.0
    pending: list[tuple[int, int, int, list[int]]] = []  # (seq, doc, start, ids) of windows not run yet
    pending_tokens = 0

    def run(batch: list[tuple[int, int, int, list[int]]]) -> None:
        nonlocal top_act
        toks, mask = padded(target.model, [torch.tensor(ids) for *_, ids in batch])
        with torch.inference_mode():
            x = hook_activations(target.model, target.hook, toks, mask)[:, 1:].flatten(2)
            if x.shape[-1] != d_in:
                raise InputError(f"width mismatch: SAE {target.label} takes d_in={d_in}, hook {target.hook!r} gives {x.shape[-1]}")
            valid = mask[:, 1:].bool()
            acts = torch.full(valid.shape, -math.inf, dtype=torch.float32, device=x.device)
            acts[valid] = target.sae.encode(x[valid].to(dtype))[:, feature].float()
        acts = acts.cpu()
        real = acts[valid.cpu()]
        on = real[real > 0]
        seen["tokens"] += real.numel()
        seen["active"] += on.numel()
        hist.add(on)
        best, where = acts.max(dim=1)
        for row, (seq, doc, start, ids) in enumerate(batch):
            act = float(best[row])
            if act <= 0:
                continue
            top_act = max(top_act, act)
            item = (act, -seq, doc, start, ids, int(where[row]) + 1)
            if len(heap) < top_n:
                heapq.heappush(heap, item)
            elif top_n and item[:2] > heap[0][:2]:
                heapq.heapreplace(heap, item)

    def flush() -> None:
        # windows of similar length share a batch (less padding); the buffer stays under 8 batches of tokens
        for group in batches([len(w[-1]) for w in pending], batch_tokens):
            run([pending[i] for i in group])

    began = time.perf_counter()
    for doc_index, doc in enumerate(documents):
        seen["docs"] += 1
        ids = tokenizer(doc, add_special_tokens=False, verbose=False)["input_ids"]
        for start, window in windows(ids, bos, context):
            pending.append((seen["windows"], doc_index, start, window))
            seen["windows"] += 1
            pending_tokens += len(window)
            if pending_tokens >= 8 * batch_tokens:
                flush()
                pending, pending_tokens = [], 0
    flush()
    seconds = time.perf_counter() - began

    top = []
    for act, _, doc_at, start_at, ids_at, pos in sorted(heap, key=lambda item: item[:2], reverse=True):
        strs = tuple(str(t) for t in target.model.to_str_tokens(torch.tensor(ids_at)))
        top.append(Context(act, strs, pos, doc_at, start_at))
    edges, counts = hist.coarse(bins, top_act if top_act > 0 else 0.0)
    promoted, suppressed = logit_effects(target, feature)
    return FeatureCard(
        feature=feature,
        url=target.url(feature),
        source=source,
        documents=seen["docs"],
        windows=seen["windows"],
        context=context,
        tokens=seen["tokens"],
        active=seen["active"],
        max_activation=top_act,
        top=tuple(top),
        edges=edges,
        counts=counts,
        promoted=promoted,
        suppressed=suppressed,
        seconds=seconds,
    )


def logit_effects(target: Target, feature: int, n: int = 10) -> tuple[Any, Any]:
    """The tokens whose logits the decoder direction raises and lowers most directly: `W_dec[F] @ W_U`.
    (None, None) when the decoder row does not live in the residual stream (d_in != d_model)."""
    import torch

    w_u = target.model.W_U
    with torch.inference_mode():
        row = target.sae.W_dec[feature]
        if row.shape[0] != w_u.shape[0]:
            return None, None
        logits = row.to(w_u.dtype) @ w_u
        up = torch.topk(logits, min(n, logits.shape[0]))
        down = torch.topk(-logits, min(n, logits.shape[0]))

    def named(ids: torch.Tensor, values: list[float]) -> tuple[tuple[str, float], ...]:
        strs = target.model.to_str_tokens(ids)
        return tuple((str(s), float(v)) for s, v in zip(strs, values))

    return named(up.indices, up.values.tolist()), named(down.indices, [-v for v in down.values.tolist()])
