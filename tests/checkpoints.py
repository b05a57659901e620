"""Candidate checkpoints of the bundled SAE for gating tests: identical, noisy, permuted, a feature zeroed."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

BUNDLED = ("tiny-stdlib-res", "blocks.1.hook_resid_pre")


def bundled_sae() -> Any:
    from interp_tests.cases.schema import SaeRef
    from interp_tests.compute.registry import Registry

    return Registry().sae(SaeRef(release=BUNDLED[0], id=BUNDLED[1]))


def save_variant(path: Path, change: Callable[[Any], None]) -> Path:
    import torch

    sae = copy.deepcopy(bundled_sae())
    with torch.no_grad():
        change(sae)
    sae.save_model(str(path))
    return path


def identical(sae: Any) -> None:
    pass


def noisy(sae: Any, scale: float = 0.5, seed: int = 0) -> None:
    import torch

    g = torch.Generator().manual_seed(seed)
    for p in (sae.W_enc, sae.W_dec):
        p.add_(torch.randn(p.shape, generator=g) * p.std() * scale)


def permutation(n: int, seed: int = 1) -> Any:
    import torch

    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def permuted(sae: Any) -> None:
    """Feature j of the copy is feature perm[j] of the original."""
    perm = permutation(sae.W_dec.shape[0])
    sae.W_enc.copy_(sae.W_enc[:, perm])
    sae.b_enc.copy_(sae.b_enc[perm])
    sae.W_dec.copy_(sae.W_dec[perm])


def zeroed(feature: int) -> Callable[[Any], None]:
    def change(sae: Any) -> None:
        sae.W_enc[:, feature] = 0
        sae.b_enc[feature] = -100.0  # never among the top k

    return change
