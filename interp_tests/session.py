"""Session state: options, the registry, and one engine per (model, hook, SAE). No pytest here."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import InterpTestsError
from .schema import SaeRef, Target

if TYPE_CHECKING:
    from .engine import HookCache, SaeEngine
    from .registry import Registry

DEFAULT_BATCH_TOKENS = {"cpu": 4096, "cuda": 65536}


@dataclass(frozen=True)
class Options:
    device: str = "auto"
    dtype: str = "float32"
    batch_tokens: int | None = None
    offline: bool = False


@dataclass(frozen=True)
class TargetKey:
    """What one case runs against: a model (with its kwargs), one SAE and an optional hook override."""

    model: str
    model_kwargs: str  # JSON, so the key is hashable
    sae: SaeRef
    hook: str | None

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

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            from .registry import Registry, resolve_device, torch_dtype

            torch_dtype(self.options.dtype)  # validates the name
            self._registry = Registry(device=resolve_device(self.options.device), dtype=self.options.dtype)
        return self._registry

    @property
    def batch_tokens(self) -> int:
        if self.options.batch_tokens is not None:
            return self.options.batch_tokens
        kind = self.registry.device.split(":")[0]
        return DEFAULT_BATCH_TOKENS.get(kind, 4096)

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
        model = reg.model_for_sae(key.model, sae, json.loads(key.model_kwargs))
        hook = key.hook or sae.cfg.metadata.hook_name
        if not hook:
            raise InterpTestsError(f"SAE {key.label} does not name its hook (cfg.metadata.hook_name): set target.hook")
        check_hook(model, hook)
        cache_key = (id(model), hook)
        if cache_key not in self.hook_caches:
            self.hook_caches[cache_key] = HookCache(model, hook, self.batch_tokens)
        return SaeEngine(self.hook_caches[cache_key], sae, key.label)

    def summary(self) -> list[str]:
        if self._registry is None:
            return []
        reg = self._registry
        loads = ", ".join(f"{k} x{v}" for k, v in sorted(reg.loads.items())) or "nothing"
        passes = sum(h.forward_passes for h in self.hook_caches.values())
        texts = sum(len(h.acts) for h in self.hook_caches.values())
        return [f"interp-tests: loaded {loads} on {reg.device}/{reg.dtype}; {texts} texts in {passes} batched forward passes"]


def hooks_left(model: Any) -> int:
    """Hooks still attached to a model (0 after every case: shared models stay clean)."""
    return sum(len(hp.fwd_hooks) + len(hp.bwd_hooks) for hp in model.hook_dict.values())
