"""Feature identity across checkpoints: each reference feature's best match among a candidate's features.

No pytest here. A feature's identity is its decoder direction (the direction it writes into the model);
two SAEs trained on the same activations learn many of the same directions, in another order. For each
reference feature i the match is the candidate feature j with the largest cosine between decoder rows,
cos(W_dec_ref[i], W_dec_cand[j]); the cosine of their encoder directions (columns of W_enc) is reported
beside it. Suite-level figures, as in the literature on SAE reproducibility and feature universality
(Sharkey et al. 2022, "Taking features out of superposition with sparse autoencoders", interim report;
Paulo & Belrose 2025, "Sparse autoencoders trained on the same data learn different features"):
- mean max cosine similarity (MMCS): the mean over reference features of their best match's decoder cosine;
- the fraction of reference features whose best match has decoder cosine >= a threshold (default 0.7).

The cosine matrix is computed in row chunks of the reference in the SAE's own dtype (float32 by default),
so two 24,576-feature SAEs match without a dense float64 square: memory is one [chunk, n_candidate] block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..common.errors import CaseError

if TYPE_CHECKING:
    import torch

MATCH_THRESHOLD = 0.7
CHUNK_ROWS = 2048


@dataclass(frozen=True)
class Matching:
    """Best candidate match of every reference feature."""

    index: torch.Tensor  # [n_ref] long: candidate index of each reference feature's best match
    decoder_cos: torch.Tensor  # [n_ref] float: decoder cosine of that match
    encoder_cos: torch.Tensor  # [n_ref] float: encoder cosine of the same pair
    threshold: float = MATCH_THRESHOLD

    def of(self, reference_index: int) -> tuple[int, float, float]:
        """(candidate index, decoder cosine, encoder cosine) of one reference feature's best match."""
        i = reference_index
        return int(self.index[i]), float(self.decoder_cos[i]), float(self.encoder_cos[i])

    @property
    def mmcs(self) -> float:
        return float(self.decoder_cos.double().mean())

    @property
    def matched_fraction(self) -> float:
        return float((self.decoder_cos >= self.threshold).double().mean())

    def summary(self, reference: str, candidate: str) -> str:
        n = int(self.index.shape[0])
        same = int((self.index == _arange(n, self.index)).sum()) if n else 0
        return (
            f"feature matching {reference} -> {candidate}: MMCS {self.mmcs:.4f}, "
            f"{self.matched_fraction:.1%} of {n} reference features matched at decoder cos >= {self.threshold:g}, "
            f"{same} keep their index"
        )


def _arange(n: int, like: torch.Tensor) -> torch.Tensor:
    import torch

    return torch.arange(n, device=like.device)


def unit_rows(w: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit norm (a zero row stays zero, so its cosine with anything is 0)."""
    return w / w.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def best_matches(reference: torch.Tensor, candidate: torch.Tensor, chunk_rows: int = CHUNK_ROWS) -> tuple[torch.Tensor, torch.Tensor]:
    """For each row of `reference` [n_ref, d]: (index, cosine) of the most similar row of `candidate` [n_cand, d]."""
    import torch

    ref, cand = unit_rows(reference), unit_rows(candidate)
    index = torch.empty(ref.shape[0], dtype=torch.long, device=ref.device)
    cos = torch.empty(ref.shape[0], dtype=ref.dtype, device=ref.device)
    cand_t = cand.T.contiguous()
    for start in range(0, ref.shape[0], chunk_rows):
        block = ref[start : start + chunk_rows] @ cand_t
        values, idx = block.max(dim=1)
        index[start : start + chunk_rows] = idx
        cos[start : start + chunk_rows] = values
        del block
    return index, cos


def match_features(reference_sae: Any, candidate_sae: Any, threshold: float = MATCH_THRESHOLD, chunk_rows: int = CHUNK_ROWS) -> Matching:
    """Match two SAEs trained on the same hook (same d_in); raises CaseError when the widths differ."""
    import torch

    with torch.inference_mode():
        dec_ref, dec_cand = reference_sae.W_dec.detach(), candidate_sae.W_dec.detach()
        if dec_ref.shape[-1] != dec_cand.shape[-1]:
            raise CaseError(f"the reference and the candidate read different widths (d_in {dec_ref.shape[-1]} vs {dec_cand.shape[-1]}): their features cannot be matched")
        dec_cand = dec_cand.to(dec_ref.dtype)
        index, dec_cos = best_matches(dec_ref, dec_cand, chunk_rows)
        enc_ref = unit_rows(reference_sae.W_enc.detach().T)
        enc_cand = unit_rows(candidate_sae.W_enc.detach().T.to(enc_ref.dtype))
        enc_cos = (enc_ref * enc_cand[index]).sum(-1)
    return Matching(index.cpu(), dec_cos.float().cpu(), enc_cos.float().cpu(), threshold)


def activation_correlation(reference: torch.Tensor, candidate: torch.Tensor) -> float | None:
    """Pearson correlation of two features' activations over the same tokens ([n] each), in float64; 0.0 when
    exactly one of them never varies (one fires, the other is dead), None when neither does (no evidence)."""
    import torch

    a, b = reference.double().flatten(), candidate.double().flatten()
    if a.numel() < 2:
        return None
    a, b = a - a.mean(), b - b.mean()
    na, nb = float(a.norm()), float(b.norm())
    if na == 0.0 and nb == 0.0:
        return None
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(torch.dot(a, b) / (na * nb))
