"""A fake, offline Hugging Face hub cache holding GPT-2 small and the `gpt2-small-res-jb` SAEs.

`build_fake_hub(cache_dir)` lays out, under `cache_dir` (use it as HF_HUB_CACHE with HF_HUB_OFFLINE=1),
the two repos exactly as huggingface_hub caches them (`models--ORG--NAME/{blobs,refs/main,snapshots/REV}`):

- `gpt2`: GPT-2's real tokenizer (interp_tests/data/gpt2-tokenizer, MIT) and config layout, but a tiny random
  model: n_embd 64, 4 heads, the real 12 layers, vocab and context. What
  `HookedTransformer.from_pretrained("gpt2-small")` reads.
- `jbloom/GPT2-Small-SAEs-Reformatted`: `blocks.L.hook_resid_pre/{cfg.json, sae_weights.safetensors,
  sparsity.safetensors}` for L in LAYERS, d_sae 512, cfg.json with the real repo's fields. What
  `SAE.from_pretrained("gpt2-small-res-jb", "blocks.L.hook_resid_pre")` reads.

The numbers are meaningless but built so the seed notebook's claims hold, to exercise passing verdicts:
the transformer blocks are weak, so the residual stream is about token + position embedding; the
embeddings of a few "Golden Gate" tokens (" Bridge", " Golden", ...) carry a shared direction g and a few
code tokens ("def", " print", ...) a direction c, and every other embedding is orthogonal to both. Each SAE
has one feature reading g (the most active one on the Golden Gate text), one reading c, and +/- pairs over
an orthonormal basis of the rest of the (centred) residual space, so it reconstructs almost exactly with
L0 about 61 (one of each pair, plus the concept features where they fire). Embeddings are small, so the
next-token distribution is flat; steering with the g feature at strength 5 makes " Bridge" the next token
with a KL of about 2.
Deterministic (seeded), numpy only, about a second.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

TOKENIZER_DIR = Path(__file__).resolve().parents[1] / "interp_tests" / "data" / "gpt2-tokenizer"
MODEL_REPO = "gpt2"
SAE_REPO = "jbloom/GPT2-Small-SAEs-Reformatted"
LAYERS = (0, 8, 10)

D_MODEL, N_HEAD, N_LAYER, N_CTX, VOCAB = 64, 4, 12, 1024, 50257
D_SAE = 512
SEED = 0

# token -> weight of the shared "Golden Gate" direction in its embedding (" Bridge" strongest)
BRIDGE_TOKENS = {
    "ĠBridge": 1.6,
    "ĠGolden": 1.2,
    "ĠGate": 1.2,
    "Ġbridge": 1.2,
    "ĠSan": 1.2,
    "San": 1.2,
    "ĠFrancisco": 1.2,
    "ĠCalifornia": 1.1,
    "Ġbay": 1.1,
}
# token -> weight of the shared "code" direction
CODE_TOKENS = {
    "def": 1.2,
    "Ġdef": 1.2,
    "():": 1.2,
    "):": 1.2,
    "Ġprint": 1.2,
    "('": 1.2,
    "')": 1.2,
    "Ġreturn": 1.2,
    "import": 1.2,
    "Ġimport": 1.2,
    "_": 1.0,
    "(": 1.0,
    ")": 1.0,
}
# small embeddings keep the next-token distribution flat (logits scale with the embedding norm)
EMBED_STD, POS_STD, BLOCK_STD = 0.1, 0.03, 0.02
# the concept features read k x (x . g - THRESHOLD) and write back g / k
CONCEPT_SCALE, THRESHOLD = 2.0, 0.2

MODEL_CONFIG = {
    "activation_function": "gelu_new",
    "architectures": ["GPT2LMHeadModel"],
    "attn_pdrop": 0.1,
    "bos_token_id": 50256,
    "embd_pdrop": 0.1,
    "eos_token_id": 50256,
    "initializer_range": 0.02,
    "layer_norm_epsilon": 1e-05,
    "model_type": "gpt2",
    "n_ctx": N_CTX,
    "n_embd": D_MODEL,
    "n_head": N_HEAD,
    "n_layer": N_LAYER,
    "n_positions": N_CTX,
    "resid_pdrop": 0.1,
    "summary_activation": None,
    "summary_first_dropout": 0.1,
    "summary_proj_to_labels": True,
    "summary_type": "cls_index",
    "summary_use_proj": True,
    "task_specific_params": {"text-generation": {"do_sample": True, "max_length": 50}},
    "vocab_size": VOCAB,
}
GENERATION_CONFIG = {
    "_from_model_config": True,
    "bos_token_id": 50256,
    "eos_token_id": 50256,
    "transformers_version": "4.26.0.dev0",
}


def sae_cfg(layer: int) -> dict[str, object]:
    """cfg.json as in the real repo (pre-6.0 SAELens training config), with this fake's d_in/d_sae."""
    hook = f"blocks.{layer}.hook_resid_pre"
    return {
        "model_name": "gpt2-small",
        "hook_point": hook,
        "hook_point_layer": layer,
        "hook_point_head_index": None,
        "dataset_path": "Skylion007/openwebtext",
        "is_dataset_tokenized": False,
        "context_size": 128,
        "use_cached_activations": False,
        "cached_activations_path": f"activations/Skylion007_openwebtext/gpt2-small/{hook}",
        "d_in": D_MODEL,
        "n_batches_in_buffer": 128,
        "total_training_tokens": 300000000,
        "store_batch_size": 32,
        "device": "mps",
        "seed": 42,
        "dtype": "torch.float32",
        "b_dec_init_method": "geometric_median",
        "expansion_factor": D_SAE // D_MODEL,
        "from_pretrained_path": None,
        "l1_coefficient": 8e-05,
        "lr": 0.0004,
        "lr_scheduler_name": None,
        "lr_warm_up_steps": 5000,
        "train_batch_size": 4096,
        "use_ghost_grads": False,
        "feature_sampling_window": 1000,
        "feature_sampling_method": None,
        "resample_batches": 1028,
        "feature_reinit_scale": 0.2,
        "dead_feature_window": 5000,
        "dead_feature_estimation_method": "no_fire",
        "dead_feature_threshold": 1e-08,
        "log_to_wandb": True,
        "wandb_project": "mats_sae_training_gpt2_small_resid_pre_5",
        "wandb_entity": None,
        "wandb_log_frequency": 100,
        "n_checkpoints": 10,
        "checkpoint_path": "checkpoints/y1t51byy",
        "d_sae": D_SAE,
        "tokens_per_buffer": 67108864,
        "run_name": f"{D_SAE}-L1-8e-05-LR-0.0004-Tokens-3.000e+08",
    }


# ----------------------------------------------------------------------------- weights
def _basis(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Orthonormal g, c, and a basis Q (rows) of the residual space orthogonal to 1, g and c."""
    ones = np.ones((D_MODEL, 1)) / np.sqrt(D_MODEL)
    q, _ = np.linalg.qr(np.concatenate([ones, rng.standard_normal((D_MODEL, D_MODEL - 1))], axis=1))
    return q[:, 1], q[:, 2], q[:, 3:].T


def _ids(names: dict[str, float], vocab: dict[str, int]) -> dict[int, float]:
    return {vocab[t]: w for t, w in names.items()}


def model_weights(vocab: dict[str, int]) -> dict[str, np.ndarray]:
    """A GPT-2 state dict under the original checkpoint's names (wte, wpe, h.N.*, ln_f), float32."""
    rng = np.random.default_rng(SEED)
    g, c, rest = _basis(rng)
    wte = EMBED_STD * rng.standard_normal((VOCAB, rest.shape[0])) @ rest
    for i, w in _ids(BRIDGE_TOKENS, vocab).items():
        wte[i] += w * g
    for i, w in _ids(CODE_TOKENS, vocab).items():
        wte[i] += w * c
    sd = {"wte.weight": wte, "wpe.weight": POS_STD * rng.standard_normal((N_CTX, rest.shape[0])) @ rest}
    d, proj_std = D_MODEL, BLOCK_STD / np.sqrt(2 * N_LAYER)
    for layer in range(N_LAYER):
        p = f"h.{layer}."
        sd |= {
            p + "ln_1.weight": np.ones(d),
            p + "ln_1.bias": np.zeros(d),
            p + "attn.c_attn.weight": BLOCK_STD * rng.standard_normal((d, 3 * d)),
            p + "attn.c_attn.bias": np.zeros(3 * d),
            p + "attn.c_proj.weight": proj_std * rng.standard_normal((d, d)),
            p + "attn.c_proj.bias": np.zeros(d),
            p + "ln_2.weight": np.ones(d),
            p + "ln_2.bias": np.zeros(d),
            p + "mlp.c_fc.weight": BLOCK_STD * rng.standard_normal((d, 4 * d)),
            p + "mlp.c_fc.bias": np.zeros(4 * d),
            p + "mlp.c_proj.weight": proj_std * rng.standard_normal((4 * d, d)),
            p + "mlp.c_proj.bias": np.zeros(d),
        }
    sd |= {"ln_f.weight": np.ones(d), "ln_f.bias": np.zeros(d)}
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sd.items()}


def sae_weights(layer: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(W_enc, b_enc, W_dec, b_dec) of a standard ReLU SAE at `layer`, and log10 feature densities."""
    g, c, rest = _basis(np.random.default_rng(SEED))  # the model's directions
    rng = np.random.default_rng(SEED + 1 + layer)
    n = rest.shape[0]
    dirs = np.zeros((D_SAE, D_MODEL))
    bias = np.full(D_SAE, -100.0)  # unused features never fire (dead)
    dirs[:n], dirs[n : 2 * n], bias[: 2 * n] = rest, -rest, 0.0  # +/- pairs: exact reconstruction off g, c
    dirs[2 * n], dirs[2 * n + 1], bias[2 * n : 2 * n + 2] = g, c, -CONCEPT_SCALE * THRESHOLD
    dead = rng.standard_normal((D_SAE - 2 * n - 2, D_MODEL))
    dirs[2 * n + 2 :] = dead / np.linalg.norm(dead, axis=1, keepdims=True)
    scale = np.ones(D_SAE)
    scale[2 * n : 2 * n + 2] = CONCEPT_SCALE
    log_density = np.concatenate([np.full(2 * n, np.log10(0.5)), [-3.0, -3.0], np.full(D_SAE - 2 * n - 2, -10.0)])
    order = rng.permutation(D_SAE)  # so the concept features sit at arbitrary indices
    dirs, bias, scale, log_density = dirs[order], bias[order], scale[order], log_density[order]
    b_dec = 0.02 * rng.standard_normal(n) @ rest  # a "geometric median", off the concept directions
    weights = {"W_enc": (dirs * scale[:, None]).T, "b_enc": bias, "W_dec": dirs / scale[:, None], "b_dec": b_dec}
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in weights.items()}, log_density.astype(np.float32)


# ----------------------------------------------------------------------------- files
def tokenizer_json() -> str:
    """GPT-2's tokenizer.json, built from its vocab and merges as the real repo's file is."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    tok = Tokenizer(models.BPE.from_file(str(TOKENIZER_DIR / "encoder.json"), str(TOKENIZER_DIR / "vocab.bpe")))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken("<|endoftext|>", special=True)])
    return tok.to_str()


def _safetensors(tensors: dict[str, np.ndarray]) -> bytes:
    from safetensors.numpy import save

    return save(tensors, metadata={"format": "pt"})


def _repo(cache_dir: Path, repo_id: str, files: dict[str, bytes]) -> Path:
    """One repo in the cache layout: blobs named by hash, snapshot entries linking to them, refs/main."""
    root = cache_dir / ("models--" + repo_id.replace("/", "--"))
    rev = hashlib.sha1(b"".join(hashlib.sha256(files[k]).digest() for k in sorted(files))).hexdigest()
    snap = root / "snapshots" / rev
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    (root / "refs").mkdir(exist_ok=True)
    for name, data in files.items():
        # LFS files are named by their sha256, git files by their git blob sha1, as the hub's ETags are
        if name.endswith(".safetensors"):
            digest = hashlib.sha256(data).hexdigest()
        else:
            digest = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        blob = root / "blobs" / digest
        blob.write_bytes(data)
        target = snap / name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            target.symlink_to(os.path.relpath(blob, target.parent))
        except OSError:  # no symlinks (Windows without developer mode): huggingface_hub copies too
            shutil.copyfile(blob, target)
    (root / "refs" / "main").write_text(rev)
    return snap


def build_fake_hub(cache_dir: Path) -> Path:
    """Writes the fake `gpt2` and `jbloom/GPT2-Small-SAEs-Reformatted` repos under cache_dir; returns it."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    encoder = (TOKENIZER_DIR / "encoder.json").read_bytes()
    vocab: dict[str, int] = json.loads(encoder)

    def js(obj: object) -> bytes:
        return (json.dumps(obj, indent=2) + "\n").encode()

    _repo(
        cache_dir,
        MODEL_REPO,
        {
            "config.json": js(MODEL_CONFIG),
            "generation_config.json": js(GENERATION_CONFIG),
            "model.safetensors": _safetensors(model_weights(vocab)),
            "tokenizer_config.json": js({"model_max_length": N_CTX}),
            "tokenizer.json": tokenizer_json().encode(),
            "vocab.json": encoder,
            "merges.txt": (TOKENIZER_DIR / "vocab.bpe").read_bytes(),
        },
    )
    files = {}
    for layer in LAYERS:
        folder = f"blocks.{layer}.hook_resid_pre"
        weights, log_density = sae_weights(layer)
        files[f"{folder}/cfg.json"] = js(sae_cfg(layer))
        files[f"{folder}/sae_weights.safetensors"] = _safetensors(weights)
        files[f"{folder}/sparsity.safetensors"] = _safetensors({"sparsity": log_density})
    _repo(cache_dir, SAE_REPO, files)
    return cache_dir


if __name__ == "__main__":  # python tests/fakehub.py DIR
    import sys

    print(build_fake_hub(Path(sys.argv[1])))
