"""Loads each model and SAE once per process, keyed by what identifies it (name, device, dtype, kwargs).

Bundled names (`tiny-stdlib`, release `tiny-stdlib-res`) load from `interp_tests/bundled/`; other names
go through TransformerLens `HookedTransformer.from_pretrained` and SAELens `SAE.from_pretrained`, local
SAE directories through `SAE.load_from_disk`. A failed load is remembered, so every case that needs it
fails at once with the same message instead of retrying the hub.
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..cases.schema import model_kwargs_problem
from ..common.errors import InputError, LoadError
from ..common.files import PathError, checked_dir, checked_file
from ..common.memo import Memo

if TYPE_CHECKING:
    import torch
    from sae_lens import SAE
    from transformer_lens import HookedTransformer

    from ..cases.schema import SaeRef

DTYPES = ("float32", "float16", "bfloat16", "float64")
BUNDLED_DIR = Path(__file__).resolve().parent.parent / "bundled"
BUNDLED_MODELS = ("tiny-stdlib",)
BUNDLED_RELEASES = {"tiny-stdlib-res": "tiny-stdlib", "tiny-stdlib-tc": "tiny-stdlib"}  # release -> its model


def torch_dtype(name: str) -> torch.dtype:
    import torch

    if name not in DTYPES:
        raise InputError(f"Could not parse value: {name!r} (dtype is one of {', '.join(DTYPES)})")
    return getattr(torch, name)


def resolve_device(name: str) -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'; anything else is checked by torch."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise InputError(f"Could not parse value: {name!r} (--interp-device takes auto, cpu, cuda or cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--interp-device {name!r}: no CUDA device is visible; use --interp-device cpu or auto")
    return name


def go_offline() -> None:
    """Never contact the hub from now on: the env vars for libraries not imported yet, and the constant
    for a huggingface_hub already imported (it reads HF_HUB_OFFLINE once, at import)."""
    import sys

    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        setattr(constants, "HF_HUB_OFFLINE", True)  # noqa: B010


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")


def _hub_hint() -> str:
    if offline():
        return (
            "HF_HUB_OFFLINE is set, so only the local cache is used (HF_HUB_CACHE, default "
            "~/.cache/huggingface/hub): download it there on a machine with network access first, "
            "or use a bundled model (tiny-stdlib)"
        )
    return (
        "if this machine has no network, pass --interp-offline (or set HF_HUB_OFFLINE=1) with a local "
        "cache in HF_HUB_CACHE, or use a bundled model (tiny-stdlib)"
    )


def _model_repo(name: str) -> str:
    try:
        from transformer_lens.loading_from_pretrained import get_official_model_name

        return f" (hub repo {get_official_model_name(name)!r})"
    except Exception:  # the lookup is only for the message
        return ""


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first[:300]}"


@dataclass
class Registry:
    """Process-wide cache of loaded models and SAEs. The only mutable state besides the session summary."""

    device: str = "cpu"
    dtype: str = "float32"
    models: Memo[Any] = field(default_factory=Memo)
    saes: Memo[Any] = field(default_factory=Memo)
    loads: Counter[str] = field(default_factory=Counter)
    injected_saes: dict[Any, Any] = field(default_factory=dict)  # SaeRef -> an SAE object (the Python API's saes=)
    injected_model: Any = None  # a HookedTransformer object (the Python API's model=)

    # ------------------------------------------------------------------ SAEs
    def sae(self, spec: SaeRef) -> SAE[Any]:
        if spec in self.injected_saes:  # an SAE handed over as an object (a training loop's): used as it is, never changed
            return self.injected_saes[spec]
        key = (spec.release, spec.id, spec.path, self.device, self.dtype, spec.format)
        return self.saes.get(key, lambda: self._counted(f"sae:{spec.label}", read_only(self._load_sae(spec))))

    def release(self, spec: SaeRef) -> None:
        """Forget a loaded SAE (a finished load group's), so that its memory can be freed."""
        for key in [k for k in self.saes.values if isinstance(k, tuple) and k[:3] == (spec.release, spec.id, spec.path)]:
            self.saes.values.pop(key, None)

    def _counted(self, what: str, loaded: Any) -> Any:
        self.loads[what] += 1
        return loaded

    def _load_sae(self, spec: SaeRef) -> SAE[Any]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from sae_lens import SAE

            if spec.path is not None:
                return self._load_local(SAE, Path(spec.path), spec.format)
            assert spec.release is not None and spec.id is not None
            if spec.release in BUNDLED_RELEASES:
                path = BUNDLED_DIR / spec.release / spec.id
                if not (path / "cfg.json").is_file():
                    ids = sorted(p.name for p in (BUNDLED_DIR / spec.release).iterdir() if p.is_dir())
                    raise LoadError(f"bundled release {spec.release!r} has no SAE id {spec.id!r}; ids: {', '.join(ids)}")
                return SAE.load_from_disk(str(path), device=self.device, dtype=self.dtype)
            from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

            directory = get_pretrained_saes_directory()
            if spec.release not in directory and "/" not in spec.release:
                import difflib

                hint = difflib.get_close_matches(spec.release, list(directory) + list(BUNDLED_RELEASES), n=3)
                raise LoadError(
                    f"unknown SAE release {spec.release!r}: not bundled and not in the SAELens registry"
                    + (f" (close: {', '.join(hint)})" if hint else "")
                    + "; use path: for a local SAE directory"
                )
            if spec.release in directory and spec.id not in directory[spec.release].saes_map:
                ids = list(directory[spec.release].saes_map)
                shown = ", ".join(ids[:8]) + (f", ... ({len(ids)} in all)" if len(ids) > 8 else "")
                raise LoadError(f"release {spec.release!r} has no SAE id {spec.id!r}; ids: {shown}")
            try:
                return checked_sae(SAE.from_pretrained(spec.release, spec.id, device=self.device, dtype=self.dtype), f"{spec.release}/{spec.id}")
            except LoadError:
                raise
            except Exception as exc:  # hub, cache or format failures
                where = ""
                try:
                    from sae_lens.loading.pretrained_saes_directory import get_repo_id_and_folder_name

                    repo, folder = get_repo_id_and_folder_name(spec.release, spec.id)
                    where = f" (hub repo {repo!r}, folder {folder!r})"
                except Exception:  # the registry lookup is only for the message
                    pass
                raise LoadError(f"cannot load SAE {spec.release!r} / {spec.id!r}{where}: {_reason(exc)}; {_hub_hint()}") from None

    def _load_local(self, sae_class: Any, path: Path, fmt: str | None) -> SAE[Any]:
        """A local checkpoint directory in any format interp-tests reads (formats.py), as a SAELens SAE."""
        from ..common.shipped import on_this_node
        from .formats import converter, detect, saelens_training_converter, training_only_architecture
        from .transcoders import register

        path = on_this_node(path)
        try:
            checked_dir(path, "SAE directory")
        except PathError as exc:
            raise LoadError(f"cannot load SAE: {exc}") from None
        fmt = fmt or detect(path)
        register()  # the TopK transcoder architectures a sparsify transcoder loads as
        try:
            if fmt == "saelens":
                cfg_path, _ = saelens_files(path)
                if training_only_architecture(cfg_path):
                    return checked_sae(sae_class.load_from_disk(str(path), device=self.device, dtype=self.dtype, converter=saelens_training_converter), str(cfg_path))
                return checked_sae(sae_class.load_from_disk(str(path), device=self.device, dtype=self.dtype), str(path / "cfg.json"))
            return checked_sae(sae_class.load_from_disk(str(path), device=self.device, dtype=self.dtype, converter=converter(fmt)), f"{path} ({fmt})")
        except LoadError:
            raise
        except Exception as exc:  # third-party loader: any failure becomes one clear message
            raise LoadError(f"cannot load SAE from {str(path)!r} ({fmt} format): {_reason(exc)}") from None

    # ------------------------------------------------------------------ models
    def model(self, name: str, kwargs: dict[str, Any] | None = None) -> HookedTransformer:
        if self.injected_model is not None:  # a model handed over as an object: it stands in for every model named
            return self.injected_model
        kwargs = dict(kwargs or {})
        key = (name, json.dumps(kwargs, sort_keys=True, default=str), self.device, self.dtype)
        return self.models.get(key, lambda: self._counted(f"model:{name}", self._load_model(name, kwargs)))

    def model_for_sae(self, name: str, sae: SAE[Any], kwargs: dict[str, Any] | None) -> HookedTransformer:
        """The target's model; kwargs default to the SAE's own model_from_pretrained_kwargs, which pass only
        when every key is one the schema allows (MODEL_KWARGS: never trust_remote_code and the like)."""
        if kwargs is None or kwargs == {}:
            kwargs = {} if name in BUNDLED_MODELS else dict(sae.cfg.metadata.model_from_pretrained_kwargs or {})
            problem = model_kwargs_problem(kwargs)
            if problem:
                raise LoadError(
                    f"the SAE's config asks for model_from_pretrained_kwargs that interp-tests does not pass on: {problem}; "
                    "set target.model_kwargs in the case file to load the model without them"
                )
        return self.model(name, kwargs)

    def _load_model(self, name: str, kwargs: dict[str, Any]) -> HookedTransformer:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if name in BUNDLED_MODELS:
                if kwargs:
                    raise LoadError(f"bundled model {name!r} takes no model_kwargs (got {kwargs!r}): remove model_kwargs")
                return load_bundled_model(name, self.device, self.dtype)
            from transformer_lens import HookedTransformer

            try:
                model = HookedTransformer.from_pretrained(name, device=self.device, dtype=torch_dtype(self.dtype), **kwargs)
            except Exception as exc:  # hub, cache or unknown-name failures
                msg = _reason(exc)
                if "not found" in msg.lower() and "valid official model names" in str(exc).lower():
                    raise LoadError(f"unknown model {name!r}: not bundled ({', '.join(BUNDLED_MODELS)}) and not a TransformerLens model name") from None
                raise LoadError(f"cannot load model {name!r}{_model_repo(name)}: {msg}; {_hub_hint()}") from None
        model.eval()
        return read_only(model)


def read_only(module: Any) -> Any:
    """Parameters that never need gradients: shared models and SAEs are only read."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module


MAX_CONFIG_BYTES = 16 << 20  # an SAE's cfg.json
MAX_WEIGHTS_BYTES = 1 << 40  # an SAE's weights file (1 TB)
SAELENS_FILES = ("cfg.json", "sae_weights.safetensors")


def saelens_files(path: Path) -> tuple[Path, Path]:
    """(cfg.json, sae_weights.safetensors) of a SAELens-format SAE directory, each checked to be a regular file
    within its size limit; else one LoadError that says what was expected and what the directory holds."""
    try:
        checked_dir(path, "SAE directory")
    except PathError as exc:
        raise LoadError(f"cannot load SAE: {exc}") from None
    missing = [name for name in SAELENS_FILES if not os.path.lexists(path / name)]
    if missing:
        try:
            found = sorted(p.name for p in path.iterdir())
        except OSError:
            found = []
        shown = ", ".join(found[:12]) + (f", ... ({len(found)} in all)" if len(found) > 12 else "") if found else "nothing"
        raise LoadError(
            f"cannot load SAE from {str(path)!r}: no {' or '.join(missing)} there (it holds {shown}). A local SAE is a "
            "SAELens-format directory (cfg.json + sae_weights.safetensors), as written by sae.save_model(dir)"
        )
    try:
        return checked_file(path / "cfg.json", "SAE config", MAX_CONFIG_BYTES), checked_file(path / "sae_weights.safetensors", "SAE weights", MAX_WEIGHTS_BYTES)
    except PathError as exc:
        raise LoadError(f"cannot load SAE: {exc}") from None


def same_model(case_file_model: str, checkpoint_model: str | None) -> bool:
    """Whether a checkpoint trained on `checkpoint_model` (its config's name) fits the case file's model, names
    compared as TransformerLens resolves them (`gpt2-small` and `gpt2` are one model); True when the checkpoint
    names none."""
    if not checkpoint_model:
        return True

    def official(name: str) -> str:
        if name in BUNDLED_MODELS:
            return name
        try:
            from transformer_lens.loading_from_pretrained import get_official_model_name

            return str(get_official_model_name(name)).lower()
        except Exception:  # not a name TransformerLens knows: compare as written
            return name.lower().rsplit("/", 1)[-1]

    return official(case_file_model) == official(checkpoint_model) or case_file_model.lower().rsplit("/", 1)[-1] == checkpoint_model.lower().rsplit("/", 1)[-1]


def declared_hook(ref: SaeRef) -> str | None:
    """The hook an SAE reads, from its config without loading its weights (a bundled or local SAE's cfg.json),
    or from its SAE id when that is a hook name (registry releases mostly name SAEs by hook); None when it
    cannot be told without loading."""
    import re

    if ref.path is not None:
        from .formats import declared_hook_of

        found = declared_hook_of(Path(ref.path), ref.format)
        if found is not None:
            return found
    if ref.path is not None or ref.release in BUNDLED_RELEASES:
        cfg_path = Path(ref.path) / "cfg.json" if ref.path is not None else BUNDLED_DIR / str(ref.release) / str(ref.id) / "cfg.json"
        try:
            cfg = json.loads(checked_file(cfg_path, "SAE config", MAX_CONFIG_BYTES).read_text(encoding="utf-8"))
        except (PathError, OSError, ValueError):
            return None
        meta = cfg.get("metadata") if isinstance(cfg, dict) else None
        hook = (meta or {}).get("hook_name") if isinstance(meta, dict) else None
        hook = hook or (cfg.get("hook_name") if isinstance(cfg, dict) else None)
        return hook if isinstance(hook, str) else None
    if ref.id is not None and re.fullmatch(r"blocks\.\d+\.[\w.]*hook_\w+", ref.id):
        return ref.id
    return None


MAX_D_SAE = 1 << 26  # 67M features: far past any SAE trained so far


def checked_sae(sae: SAE[Any], where: str) -> SAE[Any]:
    """An SAE whose config the checks can run on: positive widths, and a TopK `k` within [1, d_sae]."""
    cfg = sae.cfg
    d_in, d_sae = int(getattr(cfg, "d_in", 0)), int(getattr(cfg, "d_sae", 0))
    if not (0 < d_in <= MAX_D_SAE and 0 < d_sae <= MAX_D_SAE):
        raise LoadError(f"SAE {where}: d_in {d_in} and d_sae {d_sae} must be positive widths (at most {MAX_D_SAE:,}): check its config")
    k = getattr(cfg, "k", None)
    if k is not None and not (isinstance(k, int) and 1 <= k <= d_sae):
        raise LoadError(f"SAE {where}: its TopK k is {k!r}, outside [1, d_sae = {d_sae}]: check its config's k")
    return sae


REGISTRY_KEYS = {"l0": "l0", "explained_variance": "variance_explained"}  # our name -> pretrained_saes.yaml's


@functools.cache
def raw_sae_registry() -> dict[str, Any]:
    """SAELens's pretrained_saes.yaml as written: its loader fills a missing `l0` with 0.0 and a missing
    `variance_explained` with 1.0, so whether an entry publishes a value must be read from the file itself."""
    from importlib.resources import files

    import yaml

    text = files("sae_lens").joinpath("pretrained_saes.yaml").read_text(encoding="utf-8")
    return dict(yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))


def published(ref: SaeRef, registry: Mapping[str, Any] | None = None) -> dict[str, float]:
    """The values an SAE's registry entry really publishes: `l0` and `explained_variance`, where it has them.

    SAELens releases: the entry's own `l0` / `variance_explained` keys in pretrained_saes.yaml (`registry`
    defaults to that file, parsed raw); bundled releases: the held-out values in bundled/metadata.json; a
    local path has no registry entry.
    """
    if ref.path is not None or ref.release is None or ref.id is None:
        return {}
    if ref.release in BUNDLED_RELEASES:
        for file in (BUNDLED_DIR / ref.release / "metadata.json", BUNDLED_DIR / "metadata.json"):
            meta = json.loads(file.read_text()) if file.is_file() else {}
            if (meta.get("sae", {}).get("release"), meta.get("sae", {}).get("id")) == (ref.release, ref.id):
                held = meta.get("heldout", {})
                return {k: float(held[k]) for k in REGISTRY_KEYS if k in held}
        return {}
    release = (registry if registry is not None else raw_sae_registry()).get(ref.release)
    if not isinstance(release, dict):
        return {}
    for entry in release.get("saes") or ():
        if isinstance(entry, dict) and entry.get("id") == ref.id:
            return {ours: float(entry[theirs]) for ours, theirs in REGISTRY_KEYS.items() if isinstance(entry.get(theirs), (int, float))}
    return {}


def load_bundled_model(name: str, device: str = "cpu", dtype: str = "float32") -> HookedTransformer:
    """A bundled model from its config.json, tokenizer/ and model.safetensors."""
    from safetensors.torch import load_file
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformers import PreTrainedTokenizerFast

    root = BUNDLED_DIR / name
    if not (root / "model.safetensors").is_file():
        raise LoadError(f"bundled model {name!r} is missing its weights at {root}: reinstall interp-tests or run scripts/train_tiny_stdlib.py")
    cfg = json.loads((root / "config.json").read_text())
    cfg.update(device=device, dtype=torch_dtype(dtype))
    # TransformerLens reloads a tokenizer without add_bos_token=True from its files: loaded so, once suffices
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(root / "tokenizer"), add_bos_token=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # every weight comes from the file (a missing one is an error below): no random initialisation first
        model = HookedTransformer(HookedTransformerConfig(**{**cfg, "init_weights": False}), tokenizer=tokenizer, move_to_device=False)
    model.cfg.init_weights = cfg.get("init_weights", model.cfg.init_weights)  # the config as written
    state = load_file(str(root / "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith(("IGNORE", "mask"))]
    if missing or unexpected:
        raise LoadError(f"bundled model {name!r}: weights do not match its config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    if _placed_elsewhere(model, device, torch_dtype(dtype)):  # TransformerLens's .to walks the whole model
        model.to(device, print_details=False)
        model.to(torch_dtype(dtype), print_details=False)
    model.eval()
    return model


def _placed_elsewhere(model: Any, device: str, dtype: Any) -> bool:
    """Whether a tensor of `model` is on another device, or a floating-point one in another dtype."""
    import torch

    want = torch.device(device)
    return any(t.device != want or (t.is_floating_point() and t.dtype != dtype) for t in (*model.parameters(), *model.buffers()))
