"""Pure tensor -> number functions, exactly as CASES.md defines them. No pytest here.

Inputs are already restricted to the tokens that count (BOS removed): `x` and `x_hat` are
[tokens, d_in], `feats` is [tokens, d_sae]. Sums are taken in float64.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def explained_variance(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """1 - sum ||x - x_hat||^2 / sum ||x - mu||^2, mu the per-dimension mean over tokens."""
    x, x_hat = x.double(), x_hat.double()
    resid = (x - x_hat).pow(2).sum()
    total = (x - x.mean(0, keepdim=True)).pow(2).sum()
    return float(1.0 - resid / total) if total > 0 else float("nan")


def explained_variance_legacy(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Mean over tokens of 1 - ||x - x_hat||^2 / ||x - mu||^2 (SAELens's legacy per-token form)."""
    x, x_hat = x.double(), x_hat.double()
    resid = (x - x_hat).pow(2).sum(-1)
    total = (x - x.mean(0, keepdim=True)).pow(2).sum(-1)
    return float((1.0 - resid / total).mean())


def mse(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Mean over all elements of (x - x_hat)^2."""
    return float((x.double() - x_hat.double()).pow(2).mean())


def cosine(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Mean over tokens of cos(x, x_hat)."""
    import torch

    return float(torch.nn.functional.cosine_similarity(x.double(), x_hat.double(), dim=-1).mean())


def l0(feats: torch.Tensor) -> float:
    """Mean over tokens of the number of features with activation > 0."""
    return float((feats > 0).sum(-1).double().mean())


def dead_fraction(feats: torch.Tensor) -> float:
    """Fraction of features that never activate (> 0) on any token."""
    return float(1.0 - (feats > 0).any(0).double().mean())


def auroc(positive: list[float], negative: list[float]) -> float:
    """Probability that a positive scores above a negative, ties counting one half (Mann-Whitney U)."""
    if not positive or not negative:
        return float("nan")
    wins = 0.0
    for p in positive:
        for n in negative:
            wins += 1.0 if p > n else 0.5 if p == n else 0.0
    return wins / (len(positive) * len(negative))


def cross_entropy(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Per-prediction next-token CE at positions 1 .. n-2 of one text: logits [n, vocab], tokens [n]."""
    logp = logits[1:-1].double().log_softmax(-1)
    return -logp.gather(-1, tokens[2:].unsqueeze(-1)).squeeze(-1)


def kl_per_position(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) of next-token distributions, one value per row of [n, vocab] logits."""
    lp = logits_p.double().log_softmax(-1)
    lq = logits_q.double().log_softmax(-1)
    return (lp.exp() * (lp - lq)).sum(-1)
