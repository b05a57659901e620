"""TopK transcoders as SAELens SAE classes (registered as `topk_transcoder` and `topk_skip_transcoder`). No pytest here.

SAELens 6.54 has transcoders (ReLU, JumpReLU, with and without a skip connection) and TopK SAEs, but no TopK
transcoder, which is what sparsify trains (`transcode: true`). These are SAELens's own `Transcoder` and
`SkipTranscoder` with SAELens's own `TopK` activation: the only code written here is the pairing.

A transcoder reads one hook (`metadata.hook_name`, e.g. an MLP's input `blocks.L.ln2.hook_normalized`) and
predicts another (`metadata.hook_name_out`, the MLP's output `blocks.L.hook_mlp_out`); its decoder rows
live in the output hook's space (`W_dec` is [d_sae, d_out]).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_registered = False


def register() -> None:
    """Register the TopK transcoder architectures with SAELens (once per process)."""
    global _registered
    if _registered:
        return
    from sae_lens.registry import SAE_CLASS_REGISTRY, register_sae_class
    from sae_lens.saes.topk_sae import TopK
    from sae_lens.saes.transcoder import SkipTranscoder, SkipTranscoderConfig, Transcoder, TranscoderConfig

    @dataclass
    class TopKTranscoderConfig(TranscoderConfig):
        k: int = 100

        @classmethod
        def architecture(cls) -> str:
            return "topk_transcoder"

    class TopKTranscoder(Transcoder):
        cfg: TopKTranscoderConfig  # type: ignore[assignment]

        def get_activation_fn(self) -> Any:
            return TopK(self.cfg.k)

    @dataclass
    class TopKSkipTranscoderConfig(SkipTranscoderConfig):
        k: int = 100

        @classmethod
        def architecture(cls) -> str:
            return "topk_skip_transcoder"

    class TopKSkipTranscoder(SkipTranscoder):
        cfg: TopKSkipTranscoderConfig  # type: ignore[assignment]

        def get_activation_fn(self) -> Any:
            return TopK(self.cfg.k)

    for name, sae_class, cfg_class in (("topk_transcoder", TopKTranscoder, TopKTranscoderConfig), ("topk_skip_transcoder", TopKSkipTranscoder, TopKSkipTranscoderConfig)):
        if name not in SAE_CLASS_REGISTRY:
            register_sae_class(name, sae_class, cfg_class)
    _registered = True


def is_transcoder(sae: Any) -> bool:
    """A transcoder: it predicts another hook than it reads."""
    return bool(getattr(sae.cfg.metadata, "hook_name_out", None)) and "transcoder" in sae.cfg.architecture()


def output_hook(sae: Any) -> str | None:
    return getattr(sae.cfg.metadata, "hook_name_out", None) if is_transcoder(sae) else None
