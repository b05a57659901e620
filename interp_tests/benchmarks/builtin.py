"""The built-in benchmark target: a GPT-2-small-shaped model with random weights and GPT-2's real tokenizer,
and a gpt2-small-res-jb-shaped standard SAE calibrated to a trained SAE's sparsity. Random inputs too.
torch, TransformerLens and SAELens are imported inside the functions that need them."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from sae_lens import SAE
    from transformer_lens import HookedTransformer

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
TOKENIZER_DIR = Path(__file__).resolve().parent.parent / "data" / "gpt2-tokenizer"


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

    from ..compute.registry import torch_dtype

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

    from ..compute.registry import torch_dtype

    meta = SAEMetadata(model_name=model_name, hook_name=hook, prepend_bos=True, model_from_pretrained_kwargs={})
    cfg = StandardSAEConfig(d_in=d_in, d_sae=d_sae, dtype="float32", device="cpu", metadata=meta)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sae = StandardSAE(cfg)
    with torch.no_grad():
        sae.W_dec.div_(sae.W_dec.norm(dim=-1, keepdim=True))
        sae.W_enc.copy_(sae.W_dec.T)
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


def hook_acts(model: HookedTransformer, hook: str, n_tokens: int, seed: int = 0) -> torch.Tensor:
    """[n_tokens, ...] hook activations (the hook's own trailing shape) of random token ids, BOS rows
    dropped: 4 rows of 128 tokens through the engine's stopped forward once, then tiled up to n_tokens."""
    import torch

    from ..compute.engine import hook_activations

    seq = min(128, model.cfg.n_ctx)
    acts = hook_activations(model, hook, random_tokens(model, 4, seq, seed), None)[:, 1:].flatten(0, 1)
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
