"""Shared helpers for the plugin's own tests: case files on the bundled model, written with pytester."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

BUNDLED_TARGET = """\
target:
  model: tiny-stdlib
  sae: {release: tiny-stdlib-res, id: blocks.1.hook_resid_pre}
"""

ROOT = Path(__file__).resolve().parents[1]


def case_file(pytester: pytest.Pytester, name: str, body: str, target: str = BUNDLED_TARGET) -> Path:
    """Write cases/<name>.yaml under the pytester dir: the bundled target, then `body` (dedented)."""
    path = pytester.path / "cases" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(target + textwrap.dedent(body))
    return path


def line_of(path: Path, needle: str) -> int:
    """1-based line of the first line containing `needle`."""
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if needle in line:
            return i
    raise AssertionError(f"{needle!r} not in {path}")


def save_random_sae(path: Path, d_in: int = 128, d_sae: int = 64, hook: str = "blocks.1.hook_resid_pre", nan: bool = False, seed: int = 0) -> Path:
    """A SAELens-format StandardSAE directory with random weights (optionally NaN) at `path`."""
    import torch
    from sae_lens import StandardSAE, StandardSAEConfig

    torch.manual_seed(seed)
    cfg = StandardSAEConfig(d_in=d_in, d_sae=d_sae, dtype="float32", device="cpu")
    cfg.metadata.hook_name = hook
    cfg.metadata.model_name = "tiny-stdlib"
    cfg.metadata.prepend_bos = True
    sae = StandardSAE(cfg)
    with torch.no_grad():
        sae.W_enc.normal_(0, 0.1)
        sae.W_dec.copy_(sae.W_enc.T)
        if nan:
            sae.W_enc.fill_(float("nan"))
    sae.save_model(str(path))
    return path
