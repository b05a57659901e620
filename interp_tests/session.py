"""Session state: options, the registry, and one engine per (model, hook, SAE). No pytest here."""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InterpTestsError
from .schema import SaeRef, Target

if TYPE_CHECKING:
    from .engine import HookCache, SaeEngine
    from .registry import Registry

DEFAULT_BATCH_TOKENS = {"cpu": 4096, "cuda": 65536}


@dataclass(frozen=True)
class Override:
    """--interp-sae [HOOK=]SPEC: a replacement SAE for every target, or for the targets at HOOK."""

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
    update: bool = False  # --interp-update: record every observed value as the new baseline
    compare: bool = False  # --interp-compare: fail on drift from the baseline beyond `tolerance`
    tolerance: float = 1e-3
    worker: int | None = None  # xdist worker index (gw3 -> 3): spreads workers over GPUs


@dataclass(frozen=True)
class TargetKey:
    """What one case runs against: a model (with its kwargs), one SAE and an optional hook override."""

    model: str
    model_kwargs: str  # JSON, so the key is hashable
    sae: SaeRef
    hook: str | None
    replaced: SaeRef | None = None  # the case file's SAE, when --interp-sae replaced it

    @classmethod
    def of(cls, target: Target, sae: SaeRef) -> TargetKey:
        return cls(target.model, json.dumps(target.model_kwargs, sort_keys=True), sae, target.hook)

    @property
    def label(self) -> str:
        return self.sae.label


@dataclass
class Session:
    options: Options = field(default_factory=Options)
    _registry: Registry | None = None
    hook_caches: dict[tuple[int, str], HookCache] = field(default_factory=dict)
    engines: dict[TargetKey, SaeEngine | InterpTestsError] = field(default_factory=dict)
    wanted: dict[TargetKey, set[str]] = field(default_factory=lambda: defaultdict(set))
    baselines: dict[Path, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def baseline(self, path: Path) -> dict[str, dict[str, Any]]:
        """A baseline file's entries, read once per session (read-only: writes happen at session end)."""
        from . import baseline

        if path not in self.baselines:
            self.baselines[path] = baseline.load(path)
        return self.baselines[path]

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            from .registry import Registry, resolve_device, torch_dtype

            torch_dtype(self.options.dtype)  # validates the name
            device = resolve_device(self.options.device)
            self._registry = Registry(device=spread(device, self.options.worker), dtype=self.options.dtype)
        return self._registry

    @property
    def batch_tokens(self) -> int:
        if self.options.batch_tokens is not None:
            return self.options.batch_tokens
        kind = self.registry.device.split(":")[0]
        return DEFAULT_BATCH_TOKENS.get(kind, 4096)

    def target(self, target: Target, sae: SaeRef) -> TargetKey:
        """The key a case runs against: the file's SAE, or the --interp-sae replacement for every target."""
        key = TargetKey.of(target, sae)
        for o in self.options.overrides:
            if o.hook is None:
                return dataclasses.replace(key, sae=o.sae, replaced=sae)
        return key

    def want(self, key: TargetKey, texts: list[str]) -> None:
        """Texts a collected case will encode; they are computed together on first use of the target."""
        self.wanted[key].update(texts)

    def engine(self, key: TargetKey) -> SaeEngine:
        if key not in self.engines:
            try:
                self.engines[key] = self._build(key)
            except InterpTestsError as exc:
                self.engines[key] = exc
        got = self.engines[key]
        if isinstance(got, InterpTestsError):
            raise got
        got.want(self.wanted.pop(key, ()))
        return got

    def _build(self, key: TargetKey) -> SaeEngine:
        from .engine import HookCache, SaeEngine, check_hook

        reg = self.registry
        sae = reg.sae(key.sae)
        hook = key.hook or sae.cfg.metadata.hook_name
        if not hook:
            raise InterpTestsError(f"SAE {key.label} does not name its hook (cfg.metadata.hook_name): set target.hook")
        ref, label, replaces = key.sae, key.label, key.replaced.label if key.replaced is not None else None
        for o in self.options.overrides:
            if o.hook is not None and o.hook == hook:  # --interp-sae HOOK=SPEC: this target's hook matches
                sae, ref, label, replaces = reg.sae(o.sae), o.sae, o.sae.label, key.label
        model = reg.model_for_sae(key.model, sae, json.loads(key.model_kwargs))
        check_hook(model, hook)
        cache_key = (id(model), hook)
        if cache_key not in self.hook_caches:
            self.hook_caches[cache_key] = HookCache(model, hook, self.batch_tokens)
        return SaeEngine(self.hook_caches[cache_key], sae, label, replaces=replaces, ref=ref)

    def summary(self) -> list[str]:
        if self._registry is None:
            return []
        reg = self._registry
        loads = ", ".join(f"{k} x{v}" for k, v in sorted(reg.loads.items())) or "nothing"
        passes = sum(h.forward_passes for h in self.hook_caches.values())
        texts = sum(len(h.acts) for h in self.hook_caches.values())
        return [f"interp-tests: loaded {loads} on {reg.device}/{reg.dtype}; {texts} texts in {passes} batched forward passes"]


def spread(device: str, worker: int | None) -> str:
    """Plain 'cuda' on xdist worker k with several GPUs -> 'cuda:{k mod count}'; anything else unchanged."""
    if device != "cuda" or worker is None:
        return device
    import torch

    count = torch.cuda.device_count()
    return f"cuda:{worker % count}" if count > 1 else device


def hooks_left(model: Any) -> int:
    """Hooks still attached to a model (0 after every case: shared models stay clean)."""
    return sum(len(hp.fwd_hooks) + len(hp.bwd_hooks) for hp in model.hook_dict.values())
