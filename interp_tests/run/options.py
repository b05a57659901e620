"""Option values: their strict parsers, the session's `Options`, and `--interp-sae` overrides. No pytest here.

Parsers raise `ValueError("Could not parse value: ...")`; the pytest layer turns that into a usage error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..baselines.protocol import ComparePolicy
from ..cases.schema import SaeRef
from ..compute.registry import DTYPES


def positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n <= 0:
        raise ValueError(f"Could not parse value: {value!r} (expected a positive integer)")
    return n


def non_negative_float(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        x = float("nan")
    if not x >= 0:
        raise ValueError(f"Could not parse value: {value!r} (expected a number >= 0)")
    return x


def dtype_name(value: str) -> str:
    if value not in DTYPES:
        raise ValueError(f"Could not parse value: {value!r} (expected one of {', '.join(DTYPES)})")
    return value


@dataclass(frozen=True)
class Override:
    """--interp-sae [HOOK=]SPEC: a candidate SAE for every target, or for the targets at HOOK."""

    sae: SaeRef
    hook: str | None = None


def parse_override(value: str, cwd: Path) -> Override:
    """`PATH`, `RELEASE:ID`, or either behind `HOOK=`; raises ValueError with the reason."""
    hook, _, spec = value.rpartition("=") if "=" in value else (None, "", value)
    if not spec:
        raise ValueError(f"Could not parse value: {value!r} (expected PATH, RELEASE:ID, HOOK=PATH or HOOK=RELEASE:ID)")
    path = (cwd / spec).resolve()
    if path.is_dir():
        return Override(SaeRef(path=str(path)), hook or None)
    release, sep, sae_id = spec.partition(":")
    if sep and release and sae_id:
        return Override(SaeRef(release=release, id=sae_id), hook or None)
    raise ValueError(f"Could not parse value: {value!r} (not a directory, and not RELEASE:ID)")


@dataclass(frozen=True)
class Options:
    device: str = "auto"
    dtype: str = "float32"
    batch_tokens: int | None = None
    offline: bool = False
    overrides: tuple[Override, ...] = ()
    update: bool = False  # --interp-update: record every observed value as the reference's baseline
    compare: bool = False  # --interp-compare: fail on drift from the baseline
    tolerance: float | None = None  # --interp-tolerance: one absolute tolerance for every compared value
    worker: int | None = None  # xdist worker index (gw3 -> 3): spreads workers over GPUs

    @property
    def policy(self) -> ComparePolicy:
        """What the baselines compare and record in this run."""
        return ComparePolicy(update=self.update, compare=self.compare, tolerance=self.tolerance)
