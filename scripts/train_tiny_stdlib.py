"""Train the bundled `tiny-stdlib` model and its `tiny-stdlib-res` SAE, reproducibly, on 2 CPU cores.

    python scripts/train_tiny_stdlib.py            # writes interp_tests/bundled/

Corpus: the Python standard library of the running interpreter (`sysconfig` "stdlib"), read in sorted
order. Each module gives "prose" documents (its module, class and function docstrings, cleaned) and
"code" documents (each top-level function or class with its docstring lines removed). Files whose path
hashes to 0 mod 20 are held out. Training sequences are windows of 128 tokens that start at a document's
beginning: [BOS] doc_i [BOS] doc_i+1 ..., so short texts (BOS + one sentence) are in distribution.

Steps: a byte-level BPE tokenizer (4096 tokens), a 2-layer GPT-2-style HookedTransformer (d_model 128),
then a TopK SAE on blocks.1.hook_resid_pre trained with SAELens's own training runner, then the held-out
evaluation written to metadata.json. Everything is seeded; the corpus depends on the Python version,
which the metadata records.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import inspect
import json
import math
import os
import random
import sys
import sysconfig
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # interp_tests.compute.metrics, for the held-out evaluation
OUT = ROOT / "interp_tests" / "bundled"
BOS = "<|endoftext|>"
CTX = 128
VOCAB = 4096
SEED = 0
HOOK = "blocks.1.hook_resid_pre"
SKIP_DIRS = {"test", "tests", "idlelib", "site-packages", "lib2to3", "tkinter", "turtledemo", "ensurepip"}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ----------------------------------------------------------------------------- corpus
def stdlib_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for p in sorted(root.rglob("*.py")):
        rel = p.relative_to(root)
        if SKIP_DIRS.intersection(rel.parts[:-1]) or rel.parts[0].startswith("config-"):
            continue
        files.append(p)
    return files


def documents_of(source: str) -> list[tuple[str, str]]:
    """(kind, text) documents of one module: docstrings as prose, definitions as code."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    lines = source.splitlines()
    docs: list[tuple[str, str]] = []
    nodes = [tree, *ast.walk(tree)]
    for node in nodes:
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc and len(doc) > 20:
                docs.append(("prose", doc))
    for node in tree.body:
        if not isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        start = min([d.lineno for d in node.decorator_list] + [node.lineno]) - 1
        drop: set[int] = set()
        for sub in ast.walk(node):
            if isinstance(sub, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and sub.body:
                first = sub.body[0]
                if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                    drop.update(range(first.lineno - 1, (first.end_lineno or first.lineno)))
        body = [lines[i] for i in range(start, node.end_lineno or start) if i not in drop]
        text = inspect.cleandoc("\n".join(body))
        if len(text) > 20:
            docs.append(("code", text))
    return docs


def build_corpus() -> tuple[list[tuple[str, str]], list[tuple[str, str]], str]:
    train, held = [], []
    digest = hashlib.sha256()
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in stdlib_files():
        rel = str(path.relative_to(root))
        source = path.read_text(encoding="utf-8", errors="replace")
        digest.update(rel.encode() + b"\0" + source.encode("utf-8", "replace"))
        bucket = int(hashlib.sha256(rel.encode()).hexdigest(), 16) % 20
        (held if bucket == 0 else train).extend(documents_of(source))
    return train, held, digest.hexdigest()


# ----------------------------------------------------------------------------- tokenizer
def train_tokenizer(train_docs: list[tuple[str, str]], out_dir: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=[BOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator((text for _, text in train_docs), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=BOS, pad_token=BOS, unk_token=BOS)
    fast.model_max_length = CTX
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out_dir))
    return PreTrainedTokenizerFast.from_pretrained(str(out_dir))


def windows(token_docs: list[list[int]], bos_id: int, rng: random.Random, n: int) -> torch.Tensor:
    """n windows of CTX tokens, each starting at the beginning of a randomly chosen document."""
    out = torch.empty(n, CTX, dtype=torch.long)
    for row in range(n):
        i = rng.randrange(len(token_docs))
        seq: list[int] = []
        while len(seq) < CTX:
            seq.append(bos_id)
            seq.extend(token_docs[i])
            i = (i + 1) % len(token_docs)
        out[row] = torch.tensor(seq[:CTX])
    return out


# ----------------------------------------------------------------------------- model
def model_config() -> dict:
    return dict(
        n_layers=2, d_model=128, n_heads=4, d_head=32, d_mlp=512, n_ctx=CTX, d_vocab=VOCAB,
        act_fn="gelu_new", normalization_type="LN", positional_embedding_type="standard",
        original_architecture="GPT2LMHeadModel", model_name="tiny-stdlib", tokenizer_prepends_bos=False,
        default_prepend_bos=True, seed=SEED, init_weights=True,
    )


def train_model(model, data: torch.Tensor, held: torch.Tensor, steps: int, batch: int) -> list[float]:
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.99), weight_decay=0.05)
    warm = 100
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    )
    g = torch.Generator().manual_seed(SEED)
    curve = []
    t0 = time.time()
    for step in range(steps):
        idx = torch.randint(len(data), (batch,), generator=g)
        loss = model(data[idx], return_type="loss")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 250 == 0 or step == steps - 1:
            curve.append(round(loss.item(), 4))
            log(f"lm step {step}/{steps} loss {loss.item():.3f} ({time.time() - t0:.0f}s)")
    return curve


@torch.inference_mode()
def lm_loss(model, data: torch.Tensor, batch: int = 64) -> float:
    losses = [model(data[i : i + batch], return_type="loss").item() for i in range(0, len(data), batch)]
    return sum(losses) / len(losses)


# ----------------------------------------------------------------------------- SAE
def train_sae(model, data: torch.Tensor, tokens: int, k: int, d_sae: int):
    from datasets import Dataset
    from sae_lens import LanguageModelSAERunnerConfig, LanguageModelSAETrainingRunner, LoggingConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAEConfig

    bos_id = model.tokenizer.bos_token_id
    ds = Dataset.from_dict({"tokens": data.tolist()})
    cfg = LanguageModelSAERunnerConfig(
        sae=TopKTrainingSAEConfig(d_in=model.cfg.d_model, d_sae=d_sae, k=k, dtype="float32", device="cpu"),
        model_name="tiny-stdlib",
        hook_name=HOOK,
        dataset_path="tiny-stdlib-corpus",
        is_dataset_tokenized=True,
        streaming=False,
        context_size=CTX,
        prepend_bos=False,  # every window already starts with BOS
        exclude_special_tokens=[bos_id],
        training_tokens=tokens,
        train_batch_size_tokens=4096,
        store_batch_size_prompts=32,
        n_batches_in_buffer=128,
        lr=4e-4,
        lr_warm_up_steps=100,
        lr_decay_steps=max(1, tokens // 4096 // 5),
        lr_scheduler_name="constant",
        dead_feature_window=100,  # steps without firing before TopK's auxiliary loss revives a latent
        feature_sampling_window=500,
        device="cpu",
        seed=SEED,
        logger=LoggingConfig(log_to_wandb=False),
        n_checkpoints=0,
        checkpoint_path=None,
        output_path=None,
        save_final_checkpoint=False,
        verbose=False,
        n_eval_batches=0,
    )
    runner = LanguageModelSAETrainingRunner(cfg, override_dataset=ds, override_model=model)
    return runner.run()


@torch.inference_mode()
def evaluate_sae(model, sae, data: torch.Tensor, batch: int = 32) -> dict:
    """Held-out metrics, pooled over non-BOS tokens, with the same definitions as the harness."""
    from interp_tests.compute import metrics

    bos_id = model.tokenizer.bos_token_id
    xs, l0s = [], []
    fired = torch.zeros(sae.cfg.d_sae, dtype=torch.bool)
    ce = {"orig": [], "sae": [], "zero": []}
    kls = []
    for i in range(0, len(data), batch):
        toks = data[i : i + batch]
        _, cache = model.run_with_cache(toks, names_filter=HOOK)
        x = cache[HOOK]
        keep = toks != bos_id
        feats = sae.encode(x)
        x_hat = sae.decode(feats)
        xs.append((x[keep].double(), x_hat[keep].double()))
        l0s.append((feats[keep] > 0).sum(-1).double())
        fired |= (feats[keep] > 0).any(0)
        # CE with the hook replaced at every non-BOS position; predictions at positions 1..n-2
        mask = keep.unsqueeze(-1)
        logits = {}
        for name, fn in {
            "orig": lambda a, hook: a,
            "sae": lambda a, hook: torch.where(mask, sae.decode(sae.encode(a)), a),
            "zero": lambda a, hook: torch.where(mask, torch.zeros_like(a), a),
        }.items():
            logits[name] = model.run_with_hooks(toks, fwd_hooks=[(HOOK, fn)])
        for name, lg in logits.items():
            lp = lg[:, 1:-1].log_softmax(-1)
            ce[name].append(-lp.gather(-1, toks[:, 2:].unsqueeze(-1)).squeeze(-1).flatten().double())
        lo = logits["orig"][:, 1:-1].log_softmax(-1)
        ls = logits["sae"][:, 1:-1].log_softmax(-1)
        kls.append((lo.exp() * (lo - ls)).sum(-1).flatten().double())
    x = torch.cat([a for a, _ in xs])
    x_hat = torch.cat([b for _, b in xs])
    ce_m = {k: torch.cat(v).mean().item() for k, v in ce.items()}
    return {
        "tokens": int(x.shape[0]),
        "explained_variance": metrics.explained_variance(x, x_hat),
        "mse": metrics.mse(x, x_hat),
        "l0": torch.cat(l0s).mean().item(),
        "dead_fraction": 1.0 - fired.double().mean().item(),
        "ce_orig": ce_m["orig"],
        "ce_sae": ce_m["sae"],
        "ce_zero": ce_m["zero"],
        "ce_loss_score": (ce_m["zero"] - ce_m["sae"]) / (ce_m["zero"] - ce_m["orig"]),
        "kl_div": torch.cat(kls).mean().item(),
    }


@torch.inference_mode()
def short_text_l0(model, sae, docs: list[tuple[str, str]], n: int = 400) -> float:
    """Mean L0 over non-BOS tokens of short texts: the first <= 24 tokens of held-out documents."""
    counts = []
    for _, text in docs[:n]:
        toks = model.to_tokens(text, prepend_bos=True)[:, :25]
        _, cache = model.run_with_cache(toks, names_filter=HOOK)
        feats = sae.encode(cache[HOOK])[0, 1:]
        counts.append((feats > 0).sum(-1).double())
    return torch.cat(counts).mean().item()


# ----------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--lm-steps", type=int, default=1000)
    ap.add_argument("--lm-batch", type=int, default=32)
    ap.add_argument("--sae-tokens", type=int, default=5_000_000)
    ap.add_argument("--sae-k", type=int, default=24)
    ap.add_argument("--d-sae", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: all cores)")
    ap.add_argument("--sae-only", action="store_true", help="keep the model in --out, retrain the SAE and the metadata")
    args = ap.parse_args()

    import sae_lens
    import transformer_lens
    import transformers
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    torch.manual_seed(SEED)
    torch.set_num_threads(max(1, args.threads))
    t_start = time.time()
    model_dir = args.out / "tiny-stdlib"
    sae_dir = args.out / "tiny-stdlib-res" / HOOK

    log("building corpus")
    train_docs, held_docs, corpus_sha = build_corpus()
    rng = random.Random(SEED)
    rng.shuffle(train_docs)
    rng.shuffle(held_docs)
    log(f"{len(train_docs)} train / {len(held_docs)} held-out documents")

    tok = train_tokenizer(train_docs, model_dir / "tokenizer")
    bos_id = tok.bos_token_id
    enc = lambda docs: [ids for ids in tok([t for _, t in docs])["input_ids"] if ids]  # noqa: E731
    train_tok, held_tok = enc(train_docs), enc(held_docs)
    n_train_tokens = sum(map(len, train_tok))
    log(f"tokenizer done; {n_train_tokens} train tokens")

    lm_data = windows(train_tok, bos_id, rng, args.lm_steps * args.lm_batch // 2)
    held = windows(held_tok, bos_id, random.Random(SEED + 1), 512)

    cfg = HookedTransformerConfig(**model_config())
    model = HookedTransformer(cfg, tokenizer=tok)
    from safetensors.torch import load_file, save_file

    if args.sae_only:
        previous = json.loads((args.out / "metadata.json").read_text())["training"]
        curve, lm_seconds = previous["lm_loss_curve"], previous["lm_seconds"]
        model.load_state_dict(load_file(str(model_dir / "model.safetensors")), strict=False)
    else:
        t0 = time.time()
        curve = train_model(model, lm_data, held, args.lm_steps, args.lm_batch)
        lm_seconds = time.time() - t0
        model_dir.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items() if not k.endswith(("IGNORE", "mask"))}, str(model_dir / "model.safetensors"))
        (model_dir / "config.json").write_text(json.dumps(model_config(), indent=2) + "\n")
    model.eval()
    held_loss = lm_loss(model, held)
    log(f"held-out LM loss {held_loss:.3f}")

    sae_data = windows(train_tok, bos_id, random.Random(SEED + 2), args.sae_tokens // CTX + 64)
    t0 = time.time()
    for p in model.parameters():
        p.requires_grad_(False)
    training_sae = train_sae(model, sae_data, args.sae_tokens, args.sae_k, args.d_sae)
    sae_seconds = time.time() - t0
    sae_dir.mkdir(parents=True, exist_ok=True)
    training_sae.save_inference_model(str(sae_dir))

    from sae_lens import SAE

    sae = SAE.load_from_disk(str(sae_dir), device="cpu")
    cfg_path = sae_dir / "cfg.json"
    sae_cfg = json.loads(cfg_path.read_text())
    sae_cfg.setdefault("metadata", {})
    sae_cfg["metadata"].update({"model_name": "tiny-stdlib", "hook_name": HOOK, "prepend_bos": True, "context_size": CTX, "dataset_path": "tiny-stdlib-corpus", "model_from_pretrained_kwargs": {}})
    cfg_path.write_text(json.dumps(sae_cfg, indent=2) + "\n")
    sae = SAE.load_from_disk(str(sae_dir), device="cpu")

    log("evaluating")
    ev = evaluate_sae(model, sae, held)
    short_l0 = short_text_l0(model, sae, held_docs)
    meta = {
        "model": "tiny-stdlib",
        "sae": {"release": "tiny-stdlib-res", "id": HOOK, "architecture": "topk", "k": args.sae_k, "d_sae": args.d_sae},
        "corpus": {
            "recipe": __doc__.strip().split("\n\n")[1],
            "python": sys.version.split()[0],
            "stdlib_sha256": corpus_sha,
            "train_documents": len(train_docs),
            "heldout_documents": len(held_docs),
            "train_tokens": n_train_tokens,
        },
        "seeds": {"torch": SEED, "corpus_shuffle": SEED, "heldout_windows": SEED + 1, "sae_windows": SEED + 2},
        "versions": {"torch": torch.__version__, "transformer_lens": transformer_lens.__version__ if hasattr(transformer_lens, "__version__") else "unknown", "sae_lens": sae_lens.__version__, "transformers": transformers.__version__},
        "training": {"lm_steps": args.lm_steps, "lm_batch": args.lm_batch, "lm_seconds": round(lm_seconds, 1), "lm_loss_curve": curve, "sae_tokens": args.sae_tokens, "sae_seconds": round(sae_seconds, 1), "total_seconds": round(time.time() - t_start, 1), "run": "sae-only: the model (and lm_seconds) from an earlier full run" if args.sae_only else "full", "threads": args.threads},
        "heldout": {"lm_loss": held_loss, "windows": int(held.shape[0]), **ev, "short_text_l0": short_l0, "short_text_l0_over_heldout_l0": short_l0 / ev["l0"]},
    }
    (args.out / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
    log(json.dumps(meta["heldout"], indent=2))


if __name__ == "__main__":
    main()
