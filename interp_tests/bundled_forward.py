"""The bundled pair without TransformerLens and SAELens: the forward to the SAE's hook, and its encode.

`interp-tests inspect` on the bundled pair must answer in a few seconds, process start included, and
importing TransformerLens and SAELens alone takes 5-7 s on a 2-core CPU (mostly `transformers`, `datasets`
and `wandb`, none of which the bundled pair needs). So for the bundled model and a bundled SAE, on the CPU
in float32, this module computes what the engine computes, with the same torch operations in the same
order, from the same files:

- tokens: the bundled `tokenizer.json` through `tokenizers`, BOS prepended as text (what TransformerLens's
  `to_tokens` does when the tokenizer does not add it), each token decoded alone (`to_str_tokens`);
- the residual stream at `blocks.L.hook_resid_pre`: TransformerLens's `HookedTransformer` blocks for the
  configuration the bundled model has (pre-LN GPT-2: LayerNorm, causal attention, learned absolute
  positions, gelu_new MLP), i.e. `model(tokens, stop_at_layer=L)`;
- the features: SAELens's TopK `encode` (b_dec subtracted from the input when `apply_b_dec_to_input`,
  pre-activations scaled by the decoder norms when `rescale_acts_by_decoder_norm`, the top k kept and
  ReLU'd).

`unsupported()` says why a target is outside this (another model, a local SAE, a GPU, another dtype, a
config field it does not read); such targets go through TransformerLens and SAELens. The equality with
the engine, value for value, is held by tests/test_bundled_forward.py on the bundled cases and held-out
documents, and on SAE configs with each option flipped.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .engine import check_finite, check_length

if TYPE_CHECKING:
    import torch

# The model config keys this forward reads, and the values it implements for the keys that choose an
# architecture; any other key or value means TransformerLens must run the model.
MODEL_SHAPE_KEYS = frozenset({"n_layers", "d_model", "n_heads", "d_head", "d_mlp", "n_ctx", "d_vocab"})
MODEL_FIXED = {
    "act_fn": "gelu_new",
    "normalization_type": "LN",
    "positional_embedding_type": "standard",
    "original_architecture": "GPT2LMHeadModel",
    "tokenizer_prepends_bos": False,
    "default_prepend_bos": True,
}
MODEL_IGNORED_KEYS = frozenset({"model_name", "seed", "init_weights"})  # no effect on a loaded model's forward
LN_EPS = 1e-5  # HookedTransformerConfig.eps's default

# The SAE config keys this encode reads, and the values it implements.
SAE_FIXED = {"architecture": "topk", "normalize_activations": "none", "reshape_activations": "none"}
SAE_FLAGS = ("apply_b_dec_to_input", "rescale_acts_by_decoder_norm")
SAE_KEYS = frozenset({"d_in", "d_sae", "k", "dtype", "device", "metadata", *SAE_FIXED, *SAE_FLAGS})
SAE_WEIGHTS = frozenset({"W_enc", "b_enc", "W_dec", "b_dec"})


def unsupported_model(cfg: dict[str, Any]) -> str | None:
    """Why a bundled model's config.json is outside this forward, or None when it is inside."""
    unknown = sorted(set(cfg) - MODEL_SHAPE_KEYS - set(MODEL_FIXED) - MODEL_IGNORED_KEYS)
    if unknown:
        return f"model config keys {unknown}"
    for key, value in MODEL_FIXED.items():
        if cfg.get(key) != value:
            return f"model {key}={cfg.get(key)!r}"
    missing = sorted(MODEL_SHAPE_KEYS - set(cfg))
    return f"model config lacks {missing}" if missing else None


def unsupported_sae(cfg: dict[str, Any], hook: str) -> str | None:
    """Why a bundled SAE's cfg.json (read at `hook`) is outside this encode, or None when it is inside."""
    unknown = sorted(set(cfg) - SAE_KEYS)
    if unknown:
        return f"SAE config keys {unknown}"
    for key, value in SAE_FIXED.items():
        if cfg.get(key, "none") != value:
            return f"SAE {key}={cfg.get(key)!r}"
    if cfg.get("dtype", "float32") != "float32":
        return f"SAE dtype {cfg.get('dtype')!r}"
    meta = cfg.get("metadata") or {}
    if meta.get("hook_head_index") is not None:
        return "an SAE on one attention head"
    if meta.get("hook_name") != hook or not re.fullmatch(r"blocks\.\d+\.hook_resid_pre", hook):
        return f"hook {hook!r}"
    return None


def _read_json(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text(encoding="utf-8")))


@dataclass(frozen=True)
class BundledPair:
    """The bundled model's weights up to one `blocks.L.hook_resid_pre`, its tokenizer, and one TopK SAE."""

    layer: int  # the hook's block: the forward runs blocks 0 .. layer-1
    n_ctx: int
    tokenizer: Any  # tokenizers.Tokenizer
    bos: str
    weights: dict[str, torch.Tensor]  # the model's, by TransformerLens state-dict name
    sae_cfg: dict[str, Any]
    sae: dict[str, torch.Tensor]  # W_enc, b_enc, W_dec, b_dec

    @property
    def d_sae(self) -> int:
        return int(self.sae_cfg["d_sae"])

    # ------------------------------------------------------------------ tokens
    def token_ids(self, text: str) -> list[int]:
        """BOS + text, as `HookedTransformer.to_tokens(text, prepend_bos=True, truncate=False)` gives them."""
        return list(self.tokenizer.encode(self.bos + text, add_special_tokens=True).ids)

    def str_tokens(self, ids: list[int]) -> tuple[str, ...]:
        """Each id decoded alone, as `to_str_tokens` does."""
        return tuple(self.tokenizer.decode([i], skip_special_tokens=False) for i in ids)

    # ------------------------------------------------------------------ the forward (TransformerLens's ops)
    def resid_pre(self, ids: list[int]) -> torch.Tensor:
        """[n, d_model]: the residual stream entering block `layer` for one text (BOS included)."""
        import torch

        w = self.weights
        tokens = torch.tensor([ids], dtype=torch.long)
        with torch.inference_mode():
            resid = w["embed.W_E"][tokens, :] + w["pos_embed.W_pos"][0 : tokens.size(-1), :].unsqueeze(0)
            for block in range(self.layer):
                resid = self._block(resid, f"blocks.{block}.")
        return resid[0]

    def _block(self, resid_pre: torch.Tensor, p: str) -> torch.Tensor:
        attn_out = self._attention(_layer_norm(resid_pre, self.weights[p + "ln1.w"], self.weights[p + "ln1.b"]), p + "attn.")
        resid_mid = resid_pre + attn_out
        mlp_out = self._mlp(_layer_norm(resid_mid, self.weights[p + "ln2.w"], self.weights[p + "ln2.b"]), p + "mlp.")
        return resid_mid + mlp_out

    def _attention(self, x: torch.Tensor, p: str) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        w = self.weights

        def project(name: str) -> torch.Tensor:  # simple_attn_linear
            weight, bias = w[p + "W_" + name], w[p + "b_" + name]
            flat = weight.permute(0, 2, 1).reshape(-1, weight.shape[1])
            return F.linear(x, flat, bias.reshape(-1)).reshape(x.shape[0], x.shape[1], bias.shape[0], bias.shape[1])

        q, k, v = project("Q"), project("K"), project("V")  # [batch, pos, head, d_head]
        scores = q.permute(0, 2, 1, 3) @ k.permute(0, 2, 3, 1) / math.sqrt(q.shape[-1])
        positions = torch.arange(scores.size(-1))
        causal = (positions[None, :] <= positions[:, None])[None, None, :, :]
        scores = torch.where(causal, scores, torch.tensor(-torch.inf))
        pattern = F.softmax(scores, dim=-1)
        pattern = torch.where(torch.isnan(pattern), torch.zeros_like(pattern), pattern)
        z = (pattern @ v.permute(0, 2, 1, 3)).permute(0, 2, 1, 3)  # [batch, pos, head, d_head]
        W_O = w[p + "W_O"]
        out_weight = W_O.permute(2, 0, 1).reshape(W_O.shape[2], -1).contiguous()
        return F.linear(z.reshape(z.shape[0], z.shape[1], -1), out_weight, w[p + "b_O"])

    def _mlp(self, x: torch.Tensor, p: str) -> torch.Tensor:
        w = self.weights
        pre = _addmm(w[p + "b_in"], w[p + "W_in"], x)
        return _addmm(w[p + "b_out"], w[p + "W_out"], _gelu_new(pre))

    # ------------------------------------------------------------------ the encode (SAELens's TopK)
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """[n, d_sae] features of activations x [n, d_in]."""
        import torch

        s, cfg = self.sae, self.sae_cfg
        with torch.inference_mode():
            sae_in = x.to(torch.float32) - s["b_dec"] * bool(cfg.get("apply_b_dec_to_input", True))
            hidden_pre = sae_in @ s["W_enc"] + s["b_enc"]
            if cfg.get("rescale_acts_by_decoder_norm", False):
                hidden_pre = hidden_pre * s["W_dec"].norm(dim=-1)
            values, index = torch.topk(hidden_pre, k=int(cfg["k"]), dim=-1, sorted=False)
            return torch.zeros_like(hidden_pre).scatter_(-1, index, values.relu())

    def encoded(self, text: str) -> tuple[tuple[str, ...], torch.Tensor]:
        """One text's token strings and its features [n, d_sae], BOS excluded (what the engine stores)."""
        ids = self.token_ids(text)
        check_length(text, len(ids), self.n_ctx)
        x = self.resid_pre(ids)[1:]
        feats = self.encode(x)
        check_finite(text, "SAE activations", feats, "the bundled SAE")
        return self.str_tokens(ids[1:]), feats


def _layer_norm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    x = x - x.mean(-1, keepdim=True)
    scale = (x.pow(2).mean(-1, keepdim=True) + LN_EPS).sqrt()
    return (x / scale) * w + b


def _addmm(bias: torch.Tensor, weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # batch_addmm
    import torch

    return torch.addmm(bias, x.view(-1, x.size(-1)), weight).view(*x.shape[:-1], weight.shape[-1])


def _gelu_new(x: torch.Tensor) -> torch.Tensor:
    import torch

    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def unsupported(model_dir: Path, sae_dir: Path, hook: str) -> str | None:
    """Why this model and SAE directory pair is outside this module, or None when `load` can take it."""
    if not (model_dir / "config.json").is_file() or not (sae_dir / "cfg.json").is_file():
        return "no config.json / cfg.json"
    return unsupported_model(_read_json(model_dir / "config.json")) or unsupported_sae(_read_json(sae_dir / "cfg.json"), hook)


def load(model_dir: Path, sae_dir: Path, hook: str) -> BundledPair:
    """The pair from a bundled model directory and a SAELens-format SAE directory; `unsupported` must be None."""
    import torch
    from safetensors.torch import load_file
    from tokenizers import Tokenizer

    reason = unsupported(model_dir, sae_dir, hook)
    if reason is not None:
        raise ValueError(f"bundled_forward cannot run this pair: {reason}")
    cfg = _read_json(model_dir / "config.json")
    sae_cfg = _read_json(sae_dir / "cfg.json")
    m = re.fullmatch(r"blocks\.(\d+)\.hook_resid_pre", hook)
    assert m is not None
    layer = int(m.group(1))
    if layer >= int(cfg["n_layers"]):
        raise ValueError(f"bundled_forward: the model has no block {layer}")
    weights = load_file(str(model_dir / "model.safetensors"))
    sae = load_file(str(sae_dir / "sae_weights.safetensors"))
    if set(sae) != SAE_WEIGHTS:
        raise ValueError(f"bundled_forward: SAE weights {sorted(sae)}, expected {sorted(SAE_WEIGHTS)}")
    weights = {k: v.to(torch.float32) for k, v in weights.items()}
    sae = {k: v.to(torch.float32) for k, v in sae.items()}
    tok_cfg = _read_json(model_dir / "tokenizer" / "tokenizer_config.json")
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer" / "tokenizer.json"))
    return BundledPair(layer, int(cfg["n_ctx"]), tokenizer, str(tok_cfg["bos_token"]), weights, sae_cfg, sae)
