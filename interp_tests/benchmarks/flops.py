"""FLOP counts of what the benchmarks time, and the blocks the engine's stopped forward really runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformer_lens import HookedTransformer, HookedTransformerConfig


def encode_flops(n_tokens: int, d_in: int, d_sae: int) -> int:
    """Multiply-adds of x @ W_enc, counted as 2 FLOPs (bias, activation and the b_dec subtraction not counted)."""
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


def blocks_run(model: HookedTransformer, hook: str) -> int:
    """The transformer blocks that `engine.hook_activations` starts for `hook`, counted on a 2-token forward
    (every started block fires its hook_resid_pre), not derived from the hook's name: a started block is
    counted in full. For blocks.L.hook_resid_pre that is L; for another blocks.L.* hook, L + 1."""
    import torch

    from ..compute.engine import hook_activations

    started = 0

    def count(act: torch.Tensor, hook: Any) -> None:
        nonlocal started
        started += 1

    tokens = torch.zeros((1, 2), dtype=torch.long, device=model.cfg.device)
    with model.hooks(fwd_hooks=[(lambda name: name.startswith("blocks.") and name.endswith(".hook_resid_pre"), count)]):
        hook_activations(model, hook, tokens, None)
    return started
