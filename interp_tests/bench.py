"""What the benchmarks (benchmarks/) share: the built-in GPT-2-small-shaped target, the targets of the case
files, timing helpers, FLOP counts, the engine workload and the summary table. No pytest here; torch,
TransformerLens and SAELens are imported inside the functions that need them.

Timing follows pytest-benchmark: `time.perf_counter` around a callable that synchronises CUDA before it
returns. A baseline (the bare matmul, unsteered generation, the notebook loop) is timed by `Interleaved`,
which pytest-benchmark calls as the `setup` of every round, so benchmark and baseline alternate round by
round, on the same machine in the same state, and their ratio does not drift with the machine's load.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import random
import re
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InterpTestsError

if TYPE_CHECKING:
    import torch
    from sae_lens import SAE
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from .plan import TargetKey
    from .session import Session

BUILTIN = "gpt2-small-shaped"
# GPT-2 small's shape (TransformerLens "gpt2-small"), with random weights
GPT2_SMALL = {
    "n_layers": 12, "d_model": 768, "n_heads": 12, "d_head": 64, "d_mlp": 3072, "n_ctx": 1024, "d_vocab": 50257,
    "act_fn": "gelu_new", "normalization_type": "LN", "positional_embedding_type": "standard",
    "original_architecture": "GPT2LMHeadModel", "default_prepend_bos": True,
}
# gpt2-small-res-jb, layer 8: a standard (ReLU) SAE, expansion 32
GPT2_SAE_HOOK, GPT2_SAE_WIDTH = "blocks.8.hook_resid_pre", 24576
# mean L0 the random SAE is calibrated to (trained residual SAEs have tens to a few hundred active
# features), so that sparse outputs (the engine's to_sparse) cost what they cost on a trained SAE, not on a
# half-dense random one
GPT2_SAE_L0 = 64
TOKENIZER_DIR = Path(__file__).resolve().parent / "data" / "gpt2-tokenizer"
DEFAULT_ROUNDS = {"cpu": (3, 1), "cuda": (20, 3)}  # (measured rounds, warm-up rounds) per device type


# ----------------------------------------------------------------------------- the built-in target
def gpt2_tokenizer() -> Any:
    """GPT-2's real tokenizer (interp_tests/data/gpt2-tokenizer, MIT) as a PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE.from_file(str(TOKENIZER_DIR / "encoder.json"), str(TOKENIZER_DIR / "vocab.bpe")))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    eot = "<|endoftext|>"
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=eot, eos_token=eot, pad_token=eot, unk_token=eot)
    fast.model_max_length = int(GPT2_SMALL["n_ctx"])  # type: ignore[call-overload]
    return fast


def gpt2_small_shaped(device: str = "cpu", dtype: str = "float32", seed: int = 0) -> HookedTransformer:
    """A HookedTransformer of GPT-2 small's shape with random (seeded) weights and GPT-2's tokenizer.

    Weights are drawn on the CPU in float32, then moved: the same seed gives the same model on every
    device and in every dtype."""
    import warnings

    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformers import PreTrainedTokenizerFast

    from .registry import torch_dtype

    cfg = HookedTransformerConfig(**GPT2_SMALL, seed=seed, device="cpu")  # type: ignore[arg-type]
    # TransformerLens reloads a given tokenizer by its name_or_path (to set add_bos_token), so it has to be
    # a local directory while the model is built, not only an object
    with tempfile.TemporaryDirectory(prefix="interp-tests-gpt2-tokenizer-") as tmp:
        gpt2_tokenizer().save_pretrained(tmp)
        tokenizer = PreTrainedTokenizerFast.from_pretrained(tmp)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # HookedTransformer's deprecation notice
            model = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)
    # HookedTransformer.to takes one device or one dtype, and updates model.cfg
    model.to(device, print_details=False)
    model.to(torch_dtype(dtype), print_details=False)
    model.eval()
    return model


def random_sae(d_in: int, d_sae: int, hook: str, *, device: str = "cpu", dtype: str = "float32", seed: int = 0, model_name: str = BUILTIN) -> SAE[Any]:
    """A standard (ReLU) SAELens SAE built from its config, seeded, with unit-norm decoder rows."""
    import torch
    from sae_lens import StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    meta = SAEMetadata(model_name=model_name, hook_name=hook, prepend_bos=True, model_from_pretrained_kwargs={})
    cfg = StandardSAEConfig(d_in=d_in, d_sae=d_sae, dtype="float32", device="cpu", metadata=meta)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sae = StandardSAE(cfg)
    with torch.no_grad():
        sae.W_dec.div_(sae.W_dec.norm(dim=-1, keepdim=True))
        sae.W_enc.copy_(sae.W_dec.T)
    from .registry import torch_dtype

    return sae.to(device=device, dtype=torch_dtype(dtype))


def calibrate(sae: SAE[Any], acts: torch.Tensor, l0: int) -> None:
    """Set b_dec to the activations' mean and b_enc to one threshold so that the mean L0 on `acts` is ~l0."""
    import torch

    with torch.no_grad():
        x = acts.flatten(1).to(sae.W_enc.dtype)
        sae.b_dec.copy_(x.mean(0))
        pre = ((x - sae.b_dec) @ sae.W_enc).float().flatten()
        k = pre.numel() - l0 * x.shape[0]  # the (1 - l0/d_sae) quantile of the pooled pre-activations
        sae.b_enc.fill_(-float(pre.kthvalue(max(k, 1)).values))


@dataclass(frozen=True)
class Loaded:
    """A model, an SAE and the hook the SAE reads, ready to benchmark."""

    model_name: str
    sae_name: str
    model: HookedTransformer
    sae: SAE[Any]
    hook: str


def builtin_target(device: str = "cpu", dtype: str = "float32", seed: int = 0) -> Loaded:
    """GPT-2-small-shaped model + a gpt2-small-res-jb-shaped SAE at blocks.8.hook_resid_pre (random, seeded)."""
    from .registry import torch_dtype

    model = gpt2_small_shaped(seed=seed)  # CPU float32: built and calibrated the same whatever device and dtype
    sae = random_sae(model.cfg.d_model, GPT2_SAE_WIDTH, GPT2_SAE_HOOK, seed=seed)
    calibrate(sae, hook_acts(model, GPT2_SAE_HOOK, 512, seed=seed + 1), GPT2_SAE_L0)
    model.to(device, print_details=False)
    model.to(torch_dtype(dtype), print_details=False)
    sae.to(device=device, dtype=torch_dtype(dtype))
    return Loaded(BUILTIN, f"random-standard-{GPT2_SAE_WIDTH}", model, sae, GPT2_SAE_HOOK)


# ----------------------------------------------------------------------------- targets of the case files
@dataclass(frozen=True)
class BenchTarget:
    """One (model, SAE, hook) to benchmark: the built-in target (key None) or one from the case files."""

    id: str
    key: TargetKey | None
    sources: tuple[str, ...]
    needs_hub: bool


def case_targets(case_dirs: Sequence[Path]) -> list[BenchTarget]:
    """The built-in target, then every distinct target of the valid case files under `case_dirs`.

    A target needs the hub when its model or SAE release is neither bundled nor a local path. Files that
    do not load are skipped here: the YAML cases report them.
    """
    from .casefile import load_case_file
    from .plan import TargetKey
    from .registry import BUNDLED_MODELS, BUNDLED_RELEASES

    found: dict[TargetKey, list[str]] = {}
    for root in case_dirs:
        files = sorted(p for p in root.rglob("*") if p.suffix in (".yaml", ".yml")) if root.is_dir() else []
        for path in files:
            try:
                cf = load_case_file(path)
            except InterpTestsError:
                continue
            target = cf.model.target
            for ref in target.sae_list:
                found.setdefault(TargetKey.of(target, ref), []).append(str(path))
    out = [BenchTarget(BUILTIN, None, ("built-in",), False)]
    for key, sources in found.items():
        hub = key.model not in BUNDLED_MODELS or (key.sae.path is None and key.sae.release not in BUNDLED_RELEASES)
        kwargs = "" if key.model_kwargs == "{}" else f"{key.model_kwargs}"
        ident = f"{key.model}{kwargs}@{key.sae.label}" + (f"@{key.hook}" if key.hook else "")
        out.append(BenchTarget(ident, key, tuple(sources), hub))
    return out


@dataclass
class Loader:
    """Loads each benchmark target once per process: case targets through the session's registry."""

    session: Session
    loaded: dict[str, Loaded] = field(default_factory=dict)

    def __call__(self, target: BenchTarget) -> Loaded:
        if target.id not in self.loaded:
            if target.key is None:
                reg = self.session.registry
                self.loaded[target.id] = builtin_target(reg.device, reg.dtype)
            else:
                engine = self.session.engine(target.key)
                self.loaded[target.id] = Loaded(target.key.model, target.key.label, engine.model, engine.sae, engine.hooks.hook)
        return self.loaded[target.id]


# ----------------------------------------------------------------------------- inputs
def hook_acts(model: HookedTransformer, hook: str, n_tokens: int, seed: int = 0) -> torch.Tensor:
    """[n_tokens, ...] hook activations (the hook's own trailing shape) of random token ids, BOS rows
    dropped: 4 rows of 128 tokens computed once, then tiled up to n_tokens, so any size costs one forward."""
    import torch

    seq = min(128, model.cfg.n_ctx)
    with torch.no_grad():
        acts = forward_to_hook(model, random_tokens(model, 4, seq, seed), hook)[:, 1:].flatten(0, 1)
    reps = -(-n_tokens // acts.shape[0])
    return torch.cat([acts] * reps)[:n_tokens].contiguous()


def random_tokens(model: HookedTransformer, batch: int, seq: int, seed: int = 0) -> torch.Tensor:
    """[batch, seq] random token ids on the model's device, BOS first, never BOS/EOS elsewhere."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    specials = {t for t in (model.tokenizer.bos_token_id, model.tokenizer.eos_token_id)} if model.tokenizer is not None else set()
    vocab = int(model.cfg.d_vocab)
    ids = torch.randint(0, vocab - len(specials), (batch, seq), generator=gen)
    for s in sorted(x for x in specials if x is not None):
        ids[ids >= s] += 1  # skip over the special ids
    bos = model.tokenizer.bos_token_id if model.tokenizer is not None and model.tokenizer.bos_token_id is not None else 0
    ids[:, 0] = bos
    return ids.to(model.cfg.device)


def forward_to_hook(model: HookedTransformer, tokens: torch.Tensor, hook: str, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The hook's activation, with the forward stopped after the hook's block (as HookCache does)."""

    from .engine import stop_layer

    store: dict[str, torch.Tensor] = {}

    def keep(act: torch.Tensor, hook: Any) -> None:
        store["act"] = act

    model.run_with_hooks(tokens, attention_mask=mask, fwd_hooks=[(hook, keep)], stop_at_layer=stop_layer(hook), return_type=None)
    return store["act"]


# ----------------------------------------------------------------------------- timing
@dataclass(frozen=True)
class BenchEnv:
    """Where and how the benchmarks run (from the pytest options)."""

    device: str
    dtype: str
    rounds: int
    warmup: int

    def info(self, loaded: Loaded) -> dict[str, Any]:
        """The extra_info every benchmark carries: what ran, where, in which dtype."""
        import torch

        return {
            "model": loaded.model_name,
            "sae": loaded.sae_name,
            "hook": loaded.hook,
            "d_in": int(loaded.sae.cfg.d_in),
            "d_sae": int(loaded.sae.cfg.d_sae),
            "device": self.device,
            "device_name": device_name(self.device),
            "dtype": self.dtype,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "allocator": allocator(),
            "rounds": self.rounds,
            "warmup_rounds": self.warmup,
        } | ({"float32_matmul_precision": torch.get_float32_matmul_precision()} if self.device.startswith("cuda") else {})


def allocator() -> str:
    """The process's malloc as it bears on CPU timings: a preloaded jemalloc/tcmalloc (with MALLOC_CONF), else the C library's."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        maps = ""
    for name in ("jemalloc", "tcmalloc", "mimalloc"):
        if f"lib{name}" in maps:
            conf = os.environ.get("MALLOC_CONF", "") if name == "jemalloc" else ""
            return name + (f" ({conf})" if conf else "")
    return "libc"


def benchmark_median(benchmark: Any) -> float | None:
    """The median seconds of a finished pytest-benchmark fixture; None when benchmarks are disabled."""
    stats = getattr(benchmark, "stats", None)
    return None if stats is None else float(stats.stats.median)


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def synchronizer(device: str) -> Callable[[], None]:
    """A function that waits for the device's queued work: torch.cuda.synchronize on CUDA, nothing on CPU."""
    import torch

    if device.startswith("cuda"):
        dev = torch.device(device)
        return lambda: torch.cuda.synchronize(dev)
    return lambda: None


def synced(fn: Callable[[], Any], device: str) -> Callable[[], None]:
    """fn, then a device synchronisation, returning nothing (outputs are freed at once)."""
    sync = synchronizer(device)

    def run() -> None:
        fn()
        sync()

    run.__name__ = getattr(fn, "__name__", "run")
    return run


@dataclass
class Interleaved:
    """Baselines timed once each before every round of a benchmark: pass it as pedantic's `setup`.

    pytest-benchmark calls `setup` before each warm-up and each measured round; the first `warmup` calls
    are dropped, so baseline and benchmark get the same number of rounds. A baseline may return a dict of
    its own sub-timings (seconds), kept as `name.part`.
    """

    baselines: dict[str, Callable[[], dict[str, float] | None]]
    warmup: int
    times: dict[str, list[float]] = field(default_factory=dict)
    calls: int = 0

    def __call__(self) -> None:
        self.calls += 1
        for name, fn in self.baselines.items():
            t0 = time.perf_counter()
            parts = fn()
            self._add(name, time.perf_counter() - t0)
            for part, seconds in (parts or {}).items():
                self._add(f"{name}.{part}", seconds)

    def _add(self, name: str, seconds: float) -> None:
        if self.calls > self.warmup:
            self.times.setdefault(name, []).append(seconds)

    def median(self, name: str) -> float | None:
        got = self.times.get(name)
        return statistics.median(got) if got else None


def default_rounds(device: str) -> tuple[int, int]:
    return DEFAULT_ROUNDS.get(device.split(":")[0], DEFAULT_ROUNDS["cpu"])


# ----------------------------------------------------------------------------- FLOP counts
def encode_flops(n_tokens: int, d_in: int, d_sae: int) -> int:
    """Multiply-adds of x @ W_enc, counted as 2 FLOPs (bias, ReLU and the b_dec subtraction not counted)."""
    return 2 * n_tokens * d_in * d_sae


def forward_flops(cfg: HookedTransformerConfig, layers: int, batch: int, seq: int) -> int:
    """Matmul FLOPs of `layers` transformer blocks on [batch, seq] tokens: QKV/O projections, the MLP, and
    attention scores and values counted in full (the causal half is not subtracted). No unembed."""
    n = batch * seq
    d, hd = cfg.d_model, cfg.n_heads * cfg.d_head
    proj = 2 * n * d * 3 * hd + 2 * n * hd * d
    attn = 2 * 2 * batch * seq * seq * hd
    mlp = 2 * 2 * n * d * (cfg.d_mlp or 0)
    return layers * (proj + attn + mlp)


# ----------------------------------------------------------------------------- engine workload
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

    from . import metrics

    feature = int(feats[0].max(0).values.argmax())
    return CaseStats(
        metrics.explained_variance(torch.cat(list(xs)), torch.cat(list(x_hats))),
        metrics.l0(torch.cat(list(feats))),
        feature,
        tuple(float(f[:, feature].max()) for f in feats),
    )


def engine_suite(loaded: Loaded, cases: Sequence[Sequence[str]], batch_tokens: int) -> list[CaseStats]:
    """The suite as the plugin runs it: every text registered up front, then each case reads its TextActs."""
    from .engine import HookCache, SaeEngine

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


def padded_batches(model: HookedTransformer, texts: Sequence[str], batch_tokens: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(tokens, mask) of `texts` in the padded batches HookCache would build (BOS prepended, on device)."""
    import torch

    from .engine import batches

    ids = [model.to_tokens(t, prepend_bos=True)[0].cpu() for t in texts]
    out = []
    for group in batches([len(i) for i in ids], batch_tokens):
        width = len(ids[group[0]])
        toks = torch.zeros((len(group), width), dtype=torch.long)  # the pad id is masked, so any id will do
        mask = torch.zeros((len(group), width), dtype=torch.long)
        for row, i in enumerate(group):
            toks[row, : len(ids[i])] = ids[i]
            mask[row, : len(ids[i])] = 1
        out.append((toks.to(model.cfg.device), mask.to(model.cfg.device)))
    return out


def bare_compute(loaded: Loaded, batches: Sequence[tuple[torch.Tensor, torch.Tensor]], sync: Callable[[], None]) -> dict[str, float]:
    """The irreducible work: stopped forwards over pre-tokenized padded batches, then one encode of every
    real non-BOS token; then (timed apart) one decode. Returns seconds per part."""
    import torch

    t0 = time.perf_counter()
    rows = []
    for toks, mask in batches:
        act = forward_to_hook(loaded.model, toks, loaded.hook, mask)
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


# ----------------------------------------------------------------------------- summary
@dataclass
class BenchReport:
    """Rows for the end-of-session summary and the ceilings later benchmarks compare against."""

    rows: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    ceilings: dict[tuple[str, int], float] = field(default_factory=dict)  # (target id, tokens) -> GFLOP/s

    def add(self, name: str, info: dict[str, Any]) -> None:
        self.rows.append((name, dict(info)))

    def lines(self) -> list[str]:
        if not self.rows:
            return []
        header = ("benchmark", "device/dtype", "median", "tokens/s", "GFLOP/s", "of ceiling", "notes")
        table = [header]
        for name, i in self.rows:
            table.append((
                name,
                f"{i.get('device', '?')}/{i.get('dtype', '?')}",
                seconds(i.get("median_s")),
                _per_s(i.get("tokens_per_s")),
                _num(i.get("gflops"), ".1f"),
                _num(i.get("fraction_of_ceiling"), ".0%"),
                i.get("note", ""),
            ))
        widths = [max(len(str(r[c])) for r in table) for c in range(len(header))]
        fmt = lambda r: "  ".join(str(v).ljust(w) if c in (0, 1, 6) else str(v).rjust(w) for c, (v, w) in enumerate(zip(r, widths)))  # noqa: E731
        return [fmt(table[0]), "  ".join("-" * w for w in widths), *(fmt(r).rstrip() for r in table[1:])]


def _num(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _per_s(value: float | None, grouped: bool = False) -> str:
    """A rate: whole numbers from 100 up (with thousands separators when `grouped`), one decimal below."""
    if value is None:
        return "-"
    return format(value, (",.0f" if grouped else ".0f") if value >= 100 else ".1f")


def seconds(value: float | None) -> str:
    """A duration for people: `12.3 ms` under a second, `1.23 s` above."""
    if value is None:
        return "-"
    return f"{value * 1e3:.1f} ms" if value < 1 else f"{value:.2f} s"


def markdown_table(runs: Sequence[dict[str, Any]]) -> str:
    """The benchmarks of pytest-benchmark JSON runs (`--benchmark-json`) as one markdown table for the docs."""
    header = ("benchmark", "device", "dtype", "median", "tokens/s", "GFLOP/s", "of ceiling", "notes")
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for run in runs:
        for b in run.get("benchmarks", []):
            i = b.get("extra_info", {})
            median = i.get("median_s", b.get("stats", {}).get("median"))
            cells = (
                f"`{b.get('name', '?')}`",
                i.get("device_name", i.get("device", "?")),
                i.get("dtype", "?"),
                seconds(median),
                _per_s(i.get("tokens_per_s"), grouped=True),
                _num(i.get("gflops"), ",.1f"),
                _num(i.get("fraction_of_ceiling"), ".2f"),
                str(i.get("note", "")).replace("|", "/"),
            )
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
