"""Which targets the benchmarks time: the built-in GPT-2-small-shaped one, then every distinct (model, SAE,
hook) of the case files, with the SAE that `--interp-sae` puts in its place, as the plugin does."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..common.errors import InterpTestsError
from .builtin import BUILTIN, GPT2_SAE_HOOK, GPT2_SAE_L0, GPT2_SAE_WIDTH, calibrate, gpt2_small_shaped, hook_acts, random_sae

if TYPE_CHECKING:
    from sae_lens import SAE
    from transformer_lens import HookedTransformer

    from ..cases.plan import TargetKey
    from ..cases.schema import SaeRef, Target
    from ..run.session import Session


@dataclass(frozen=True)
class Loaded:
    """A model, an SAE and the hook the SAE reads, ready to benchmark."""

    model_name: str
    sae_name: str
    model: HookedTransformer
    sae: SAE[Any]
    hook: str
    replaces: str | None = None  # the case file's SAE when --interp-sae put this one in its place


def builtin_target(device: str = "cpu", dtype: str = "float32", seed: int = 0) -> Loaded:
    """GPT-2-small-shaped model + a gpt2-small-res-jb-shaped SAE at blocks.8.hook_resid_pre (random, seeded)."""
    from ..compute.registry import torch_dtype

    model = gpt2_small_shaped(seed=seed)  # CPU float32: built and calibrated the same whatever device and dtype
    sae = random_sae(model.cfg.d_model, GPT2_SAE_WIDTH, GPT2_SAE_HOOK, seed=seed)
    calibrate(sae, hook_acts(model, GPT2_SAE_HOOK, 512, seed=seed + 1), GPT2_SAE_L0)
    model.to(device, print_details=False)
    model.to(torch_dtype(dtype), print_details=False)
    sae.to(device=device, dtype=torch_dtype(dtype))
    return Loaded(BUILTIN, f"random-standard-{GPT2_SAE_WIDTH}", model, sae, GPT2_SAE_HOOK)


@dataclass(frozen=True)
class BenchTarget:
    """One (model, SAE, hook) to benchmark: the built-in target (key None) or one from the case files."""

    id: str
    key: TargetKey | None
    sources: tuple[str, ...]
    needs_hub: bool


BUILTIN_TARGET = BenchTarget(BUILTIN, None, ("built-in",), False)


def case_targets(case_dirs: Sequence[Path], resolve: Callable[[Target, SaeRef], list[TargetKey]]) -> list[BenchTarget]:
    """The built-in target, then every distinct target of the valid case files under `case_dirs`.

    `resolve` is the session's `targets`: the keys a case runs against, the `--interp-sae` candidates in place
    of the file's SAE when they are given (case files that name different SAEs then share one target). A
    target needs the hub when its model or SAE release is neither bundled nor a local path. Files that do
    not load are skipped here: the YAML cases report them.
    """
    from ..cases.casefile import load_case_file
    from ..cases.plan import resolve_sae
    from ..compute.registry import BUNDLED_MODELS, BUNDLED_RELEASES

    found: dict[TargetKey, tuple[TargetKey, list[str]]] = {}  # what runs -> (the first full key, sources)
    for root in case_dirs:
        files = sorted(p for p in root.rglob("*") if p.suffix in (".yaml", ".yml")) if root.is_dir() else []
        for path in files:
            try:
                cf = load_case_file(path)
            except InterpTestsError:
                continue
            target = cf.model.target
            for ref in target.sae_list:
                for key in resolve(target, resolve_sae(ref, path.parent)):
                    found.setdefault(dataclasses.replace(key, reference=None, name="", only_at=None), (key, []))[1].append(str(path))
    out = [BUILTIN_TARGET]
    for key, sources in found.values():
        hub = key.model not in BUNDLED_MODELS or (key.sae.path is None and key.sae.release not in BUNDLED_RELEASES)
        kwargs = "" if key.model_kwargs == "{}" else f"{key.model_kwargs}"
        ident = f"{key.model}{kwargs}@{key.sae.label}" + (f"@{key.hook}" if key.hook else "")
        out.append(BenchTarget(ident, key, tuple(sources), hub))
    return out


@dataclass
class Loader:
    """Loads each benchmark target once per process: case targets through the session's engines, so the
    registry, the device, the dtype and `--interp-sae` (also its HOOK= form) apply as they do to cases."""

    session: Session
    loaded: dict[str, Loaded] = field(default_factory=dict)

    def __call__(self, target: BenchTarget) -> Loaded:
        if target.id not in self.loaded:
            if target.key is None:
                reg = self.session.registry
                self.loaded[target.id] = builtin_target(reg.device, reg.dtype)
            else:
                engine = self.session.engine(target.key)
                self.loaded[target.id] = Loaded(target.key.model, engine.label, engine.model, engine.sae, engine.hooks.hook, engine.replaces)
        return self.loaded[target.id]
