"""The bundled pair without TransformerLens and SAELens: the forward to the SAE's hook, and its encode.

`interp-tests inspect` on the bundled pair must answer in a few seconds, process start included, and
importing TransformerLens and SAELens alone takes 6-8 s on a 2-core CPU (mostly `transformers`, `datasets`
and `wandb`, none of which the bundled pair needs). So for the bundled model and a bundled SAE, on the CPU
in float32, this module computes what the engine computes, with the same torch operations in the same
order, from the same files:

- tokens: the bundled `tokenizer.json` through `tokenizers`: BOS's id, then the text's ids without
  special tokens (what TransformerLens's tokenizer gives: `set_tokenizer` reloads it with
  `add_bos_token=True`, whose post-processor is `BOS $A`), each token decoded alone (`to_str_tokens`);
- the residual stream at `blocks.L.hook_resid_pre`: TransformerLens's `HookedTransformer` blocks for the
  configuration the bundled model has (pre-LN GPT-2: LayerNorm, causal attention, learned absolute
  positions, gelu_new MLP), i.e. `model(tokens, stop_at_layer=L)`;
- the features: SAELens's TopK `encode` (b_dec subtracted from the input when `apply_b_dec_to_input`,
  pre-activations scaled by the decoder norms when `rescale_acts_by_decoder_norm`, the top k kept and
  ReLU'd).

`unsupported()` says why a pair is outside this (a config key or value it does not read, a hook other than
a block's resid_pre, weights of other names or shapes, a missing file); such pairs go through
TransformerLens and SAELens, which also give the errors. One text at a time the values are the
libraries', bit for bit; against the engine's padded batches they agree up to float rounding. Both are
held by tests/test_bundled_forward.py, on the bundled cases and held-out documents, at every block, and on
SAE configs with each option flipped.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..common.errors import LoadError
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


def unsupported_model(cfg: dict[str, Any]) -> str | None:
    """Why a bundled model's config.json is outside this forward, or None when it is inside."""
    unknown = sorted(set(cfg) - MODEL_SHAPE_KEYS - set(MODEL_FIXED) - MODEL_IGNORED_KEYS)
    if unknown:
        return f"model config keys {unknown}"
    for key, value in MODEL_FIXED.items():
        if cfg.get(key) != value:
            return f"model {key}={cfg.get(key)!r}"
    missing = sorted(MODEL_SHAPE_KEYS - set(cfg))
    if missing:
        return f"model config lacks {missing}"
    if not all(isinstance(cfg[k], int) and cfg[k] > 0 for k in MODEL_SHAPE_KEYS):
        return "model shapes that are not positive integers"
    return None


def unsupported_sae(cfg: dict[str, Any]) -> str | None:
    """Why a bundled SAE's cfg.json is outside this encode, or None when it is inside."""
    unknown = sorted(set(cfg) - SAE_KEYS)
    if unknown:
        return f"SAE config keys {unknown}"
    missing = sorted({"d_in", "d_sae", "k", "metadata"} - set(cfg))
    if missing:
        return f"SAE config lacks {missing}"  # SAELens would fill in defaults
    for key, value in SAE_FIXED.items():
        if cfg.get(key, "none") != value:
            return f"SAE {key}={cfg.get(key)!r}"
    if cfg.get("dtype", "float32") != "float32":
        return f"SAE dtype {cfg.get('dtype')!r}"
    meta = cfg["metadata"] if isinstance(cfg["metadata"], dict) else {}
    version = str(meta.get("sae_lens_version") or "0")
    if not version.split(".")[0].isdigit() or int(version.split(".")[0]) < 6:
        return f"an SAE config of SAELens {version} (SAELens converts configs older than 6.0)"
    if meta.get("hook_head_index") is not None:
        return "an SAE on one attention head"
    if not all(isinstance(cfg[k], int) and cfg[k] > 0 for k in ("d_in", "d_sae", "k")):
        return "SAE d_in, d_sae or k that are not positive integers"
    return None


def model_shapes(cfg: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Every tensor of the model's state dict (TransformerLens names) and its shape."""
    d, h, dh, m, v = cfg["d_model"], cfg["n_heads"], cfg["d_head"], cfg["d_mlp"], cfg["d_vocab"]
    shapes: dict[str, tuple[int, ...]] = {"embed.W_E": (v, d), "pos_embed.W_pos": (cfg["n_ctx"], d)}
    for layer in range(cfg["n_layers"]):
        p = f"blocks.{layer}."
        shapes |= {p + f"ln{i}.{w}": (d,) for i in (1, 2) for w in ("w", "b")}
        shapes |= {p + f"attn.W_{x}": (h, d, dh) for x in "QKV"} | {p + f"attn.b_{x}": (h, dh) for x in "QKV"}
        shapes |= {p + "attn.W_O": (h, dh, d), p + "attn.b_O": (d,)}
        shapes |= {p + "mlp.W_in": (d, m), p + "mlp.b_in": (m,), p + "mlp.W_out": (m, d), p + "mlp.b_out": (d,)}
    return shapes | {"ln_final.w": (d,), "ln_final.b": (d,), "unembed.W_U": (d, v), "unembed.b_U": (v,)}


def _shapes(path: Path) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}


def _read_json(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text(encoding="utf-8")))


@dataclass(frozen=True)
class BundledPair:
    """The bundled model's weights up to one `blocks.L.hook_resid_pre`, its tokenizer, and one TopK SAE."""

    hook: str  # blocks.L.hook_resid_pre
    layer: int  # L: the forward runs blocks 0 .. L-1
    n_ctx: int
    tokenizer: Any  # tokenizers.Tokenizer
    bos_id: int
    weights: dict[str, torch.Tensor]  # the model's, by TransformerLens state-dict name
    sae_cfg: dict[str, Any]
    sae: dict[str, torch.Tensor]  # W_enc, b_enc, W_dec, b_dec
    label: str  # the SAE, as messages name it

    @property
    def d_sae(self) -> int:
        return int(self.sae_cfg["d_sae"])

    # ------------------------------------------------------------------ tokens
    def token_ids(self, text: str) -> list[int]:
        """BOS + text, as `HookedTransformer.to_tokens(text, prepend_bos=True, truncate=False)` gives them."""
        return [self.bos_id, *self.tokenizer.encode(text, add_special_tokens=False).ids]

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
        return self.str_tokens(ids[1:]), self.features(text, ids)

    def features(self, text: str, ids: list[int]) -> torch.Tensor:
        """[n, d_sae] features of `text` from its token ids (`token_ids`, BOS first), BOS excluded."""
        check_length(text, len(ids), self.n_ctx)
        x = self.resid_pre(ids)[1:]
        check_finite(text, "hook activation", x, f"SAE {self.label}")
        feats = self.encode(x)
        check_finite(text, "SAE activations", feats, f"SAE {self.label}")
        return feats


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


MODEL_FILES = ("config.json", "model.safetensors", "tokenizer/tokenizer.json", "tokenizer/tokenizer_config.json")
SAE_FILES = ("cfg.json", "sae_weights.safetensors")


def sae_hook(sae_dir: Path) -> str:
    """The hook an SAE directory's cfg.json names ('' when it names none)."""
    meta = _read_json(sae_dir / "cfg.json").get("metadata")
    return str((meta if isinstance(meta, dict) else {}).get("hook_name") or "")


def unsupported(model_dir: Path, sae_dir: Path, hook: str) -> str | None:
    """Why this model directory, SAE directory and hook are outside this module, or None when `load` takes
    them: the files, the configs, the hook, and the weights' names and shapes (read from the headers)."""
    missing = [str(d / f) for d, files in ((model_dir, MODEL_FILES), (sae_dir, SAE_FILES)) for f in files if not (d / f).is_file()]
    if missing:
        return f"missing {missing}"
    try:
        cfg, sae_cfg = _read_json(model_dir / "config.json"), _read_json(sae_dir / "cfg.json")
        bos = _read_json(model_dir / "tokenizer" / "tokenizer_config.json").get("bos_token")
        model_weights, sae_weights = _shapes(model_dir / "model.safetensors"), _shapes(sae_dir / "sae_weights.safetensors")
    except (OSError, ValueError) as exc:
        return f"unreadable files ({type(exc).__name__})"
    reason = unsupported_model(cfg) or unsupported_sae(sae_cfg)
    if reason:
        return reason
    m = re.fullmatch(r"blocks\.(\d+)\.hook_resid_pre", hook)
    if m is None or int(m.group(1)) >= cfg["n_layers"]:
        return f"hook {hook!r} (only blocks.L.hook_resid_pre of a block the model has)"
    if not isinstance(bos, str) or not bos:
        return f"a tokenizer whose bos_token is {bos!r}"
    if model_weights != model_shapes(cfg):
        return "model weights of other names or shapes than its config gives"
    d_in, d_sae = sae_cfg["d_in"], sae_cfg["d_sae"]
    if sae_weights != {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}:
        return "SAE weights of other names or shapes than W_enc, b_enc, W_dec, b_dec of its d_in and d_sae"
    if d_in != cfg["d_model"]:
        return f"an SAE of d_in {d_in} on a residual stream of width {cfg['d_model']}"
    if sae_cfg["k"] > d_sae:
        return f"k {sae_cfg['k']} > d_sae {d_sae}"
    return None


def load(model_dir: Path, sae_dir: Path, hook: str, label: str) -> BundledPair:
    """The pair from a bundled model directory and a SAELens-format SAE directory (`label` names the SAE in
    messages). A pair `unsupported` refuses, weights that are not all finite, or a BOS the tokenizer does
    not know raise LoadError: the libraries run such a pair, and say what is wrong with it."""
    import torch
    from safetensors.torch import load_file
    from tokenizers import Tokenizer

    reason = unsupported(model_dir, sae_dir, hook)
    if reason is not None:
        raise LoadError(f"bundled_forward cannot run this pair: {reason}")
    cfg = _read_json(model_dir / "config.json")
    layer = int(hook.split(".")[1])
    weights = load_file(str(model_dir / "model.safetensors"))
    sae = load_file(str(sae_dir / "sae_weights.safetensors"))
    if not all(bool(torch.isfinite(t).all()) for t in (*weights.values(), *sae.values())):
        raise LoadError("bundled_forward cannot run this pair: weights that are not all finite")
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer" / "tokenizer.json"))
    bos_id = tokenizer.token_to_id(_read_json(model_dir / "tokenizer" / "tokenizer_config.json")["bos_token"])
    if bos_id is None:
        raise LoadError("bundled_forward cannot run this pair: the tokenizer has no id for its bos_token")
    return BundledPair(
        hook, layer, int(cfg["n_ctx"]), tokenizer, int(bos_id), {k: v.to(torch.float32) for k, v in weights.items()},
        _read_json(sae_dir / "cfg.json"), {k: v.to(torch.float32) for k, v in sae.items()}, label,
    )
