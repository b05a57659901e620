"""Checkpoints from the major SAE libraries, read into SAELens's own SAE classes. No pytest here.

A local checkpoint directory is one of these formats, found from what it holds (or named: `format:` in a case
file, `FORMAT:DIR` on the command line):

| format | files | written by |
| --- | --- | --- |
| `saelens` | cfg.json + sae_weights.safetensors | SAELens `sae.save_model(dir)` |
| `sparsify` | cfg.json + sae.safetensors (the run's config.json one folder up) | EleutherAI sparsify `SparseCoder.save_to_disk` |
| `dictionary_learning` | ae.pt + config.json | dictionary_learning's `trainSAE` (one `trainer_N` folder per trainer) |
| `gemma_scope` | params.npz | Gemma Scope's released JumpReLU SAEs |

Each converter returns a SAELens config dict and state dict; `SAE.load_from_disk(dir, converter=...)` builds
the SAELens class the architecture names (standard, topk, gated, jumprelu, transcoder, ...). SAELens's own
`sparsify_disk_loader` is not used: on sparsify 1.3's layout it returns `W_dec` transposed and reads
`normalize_decoder` as `apply_b_dec_to_input` (sparsify subtracts `b_dec` unless it transcodes); its
dictionary_learning loader reads the hub only and unpickles without `weights_only`. The conversions here are
tested against each library's own forward (sparsify, dictionary_learning where it installs) or an independent
numpy implementation of the documented architecture (Gemma Scope).

Nothing from a checkpoint runs code: `.pt` files are read with `torch.load(weights_only=True)` (a pickle that
needs more is refused), `.npz` with `allow_pickle=False`, configs as JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..common.errors import LoadError
from ..common.files import PathError, checked_file

if TYPE_CHECKING:
    pass

FORMATS = ("saelens", "sparsify", "dictionary_learning", "gemma_scope")
SIGNATURES = {  # format -> the files that make a directory that format, its weights file last (memory.checkpoint_bytes)
    "saelens": ("cfg.json", "sae_weights.safetensors"),
    "sparsify": ("cfg.json", "sae.safetensors"),
    "dictionary_learning": ("ae.pt",),
    "gemma_scope": ("params.npz",),
}
DESCRIBED = {
    "saelens": "SAELens (cfg.json + sae_weights.safetensors)",
    "sparsify": "sparsify (cfg.json + sae.safetensors)",
    "dictionary_learning": "dictionary_learning (ae.pt + config.json)",
    "gemma_scope": "Gemma Scope (params.npz)",
}
MAX_CONFIG_BYTES = 16 << 20
MAX_WEIGHTS_BYTES = 1 << 40
SAELENS_VERSION_FOR_CONFIGS = "6.54.0"  # the configs built here are in the SAELens 6 layout


def detect(path: Path) -> str:
    """The format of a checkpoint directory, from the files it holds; one LoadError line listing what it
    holds and the formats accepted when none (or several) match."""
    try:
        names = {p.name for p in path.iterdir()}
    except OSError as exc:
        raise LoadError(f"cannot load SAE: cannot list {path}: {exc.strerror or exc}") from None
    found = [fmt for fmt, files in SIGNATURES.items() if all(f in names for f in files)]
    if len(found) == 1:
        return found[0]
    held = ", ".join(sorted(names)[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12 else "") if names else "nothing"
    accepted = "; ".join(DESCRIBED.values())
    if not found:
        raise LoadError(f"cannot load SAE from {str(path)!r}: it holds {held}, which is no checkpoint format interp-tests reads ({accepted})")
    raise LoadError(f"cannot load SAE from {str(path)!r}: it holds {held}, which looks like {' and '.join(found)}: name the format (sae: {{path: DIR, format: {found[0]}}}, or --interp-sae {found[0]}:DIR)")


def looks_like_checkpoint(path: Path) -> bool:
    """Whether a directory holds the files of a checkpoint format and nothing pytest collects (no case file, no
    Python file): no file is read."""
    if not path.is_dir():
        return False
    names = {p.name for p in path.iterdir()}
    if any(n.endswith((".yaml", ".yml", ".py")) for n in names):
        return False
    return any(all(f in names for f in files) for files in SIGNATURES.values())


def converter(fmt: str) -> Callable[..., tuple[dict[str, Any], dict[str, Any]]]:
    return {"sparsify": sparsify_converter, "dictionary_learning": dictionary_learning_converter, "gemma_scope": gemma_scope_converter}[fmt]


def _json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(checked_file(path, what, MAX_CONFIG_BYTES).read_text(encoding="utf-8"))
    except PathError as exc:
        raise LoadError(f"cannot load SAE: {exc}") from None
    except (OSError, ValueError) as exc:
        raise LoadError(f"cannot load SAE: {path} is not a JSON object ({type(exc).__name__}: {str(exc)[:200]})") from None
    if not isinstance(data, dict):
        raise LoadError(f"cannot load SAE: {path} is not a JSON object")
    return data


def _need(cfg: dict[str, Any], key: str, path: Path, kind: type | tuple[type, ...] = int) -> Any:
    value = cfg.get(key)
    if value is None or not isinstance(value, kind) or isinstance(value, bool):
        raise LoadError(f"cannot load SAE: {path} has no {key!r} of the right type (got {value!r}): the checkpoint's config is incomplete")
    return value


def _shape(tensors: dict[str, Any], key: str, shape: tuple[int, ...], path: Path) -> Any:
    if key not in tensors:
        raise LoadError(f"cannot load SAE: {path} has no tensor {key!r} (it has {', '.join(sorted(tensors)[:8])})")
    tensor = tensors[key]
    if tuple(tensor.shape) != shape:
        raise LoadError(f"cannot load SAE: {path}: {key!r} is {tuple(tensor.shape)}, expected {shape} from its config (a transposed or truncated weight?)")
    return tensor


def _metadata(hook: str | None, model: str | None, hook_out: str | None = None, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"sae_lens_version": SAELENS_VERSION_FOR_CONFIGS, "sae_lens_training_version": None,
                            "hook_name": hook, "model_name": model, "prepend_bos": True, **extra}
    if hook_out is not None:
        meta["hook_name_out"] = hook_out
    return meta


# ----------------------------------------------------------------------------- hook names
def hook_of_module(name: str) -> tuple[str | None, str | None]:
    """(input hook, output hook) of a module path as the training libraries name hookpoints (`layers.8`,
    `gpt_neox.layers.8.mlp`, `h.8.attn`, `embed_tokens`), in TransformerLens's names. A module's output is
    what an SAE there reads; a transcoder of an MLP reads the MLP's input (ln2's output) and writes its output."""
    if name in ("embed_tokens", "embed_in", "wte", "embed"):
        return "hook_embed", None
    m = re.search(r"(?:^|\.)(?:layers|h|blocks|layer)[._](\d+)(?:\.(\w+))?$", name)
    if m is None:
        return None, None
    layer, sub = int(m.group(1)), m.group(2)
    if sub is None:
        return f"blocks.{layer}.hook_resid_post", None
    if sub in ("mlp",):
        return f"blocks.{layer}.hook_mlp_out", f"blocks.{layer}.ln2.hook_normalized"
    if sub in ("attn", "self_attn", "attention"):
        return f"blocks.{layer}.hook_attn_out", None
    return None, None


SUBMODULES = {  # dictionary_learning's submodule names -> TransformerLens hooks
    "resid_post": "blocks.{layer}.hook_resid_post",
    "resid_pre": "blocks.{layer}.hook_resid_pre",
    "mlp_out": "blocks.{layer}.hook_mlp_out",
    "mlp": "blocks.{layer}.hook_mlp_out",
    "attn_out": "blocks.{layer}.hook_attn_out",
    "attn": "blocks.{layer}.hook_attn_out",
}


def dictionary_learning_hook(trainer: dict[str, Any]) -> str | None:
    layer = trainer.get("layer")
    if not isinstance(layer, int) or isinstance(layer, bool):
        return None
    sub = str(trainer.get("submodule_name") or "resid_post")
    for name, hook in SUBMODULES.items():
        if sub.startswith(name):
            return hook.format(layer=layer)
    return None


# ----------------------------------------------------------------------------- sparsify
def sparsify_converter(path: str | Path, device: str = "cpu", cfg_overrides: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """A sparsify `SparseCoder` folder: cfg.json (d_in, num_latents or expansion_factor, k, activation,
    transcode, skip_connection) and sae.safetensors (encoder.weight [n, d_in], encoder.bias, W_dec [n, d_out],
    b_dec, W_skip). Its encode is top-k of ReLU(W (x - b_dec) + b), b_dec subtracted unless it transcodes."""
    from safetensors.torch import load_file

    path = Path(path)
    cfg = _json(path / "cfg.json", "sparsify config")
    d_in = _need(cfg, "d_in", path / "cfg.json")
    n = cfg.get("num_latents") or d_in * _need(cfg, "expansion_factor", path / "cfg.json")
    k = _need(cfg, "k", path / "cfg.json")
    if cfg.get("activation", "topk") != "topk":
        raise LoadError(f"cannot load SAE: {path / 'cfg.json'}: activation {cfg.get('activation')!r} has no SAELens architecture (topk has)")
    weights = checked_file(path / "sae.safetensors", "SAE weights", MAX_WEIGHTS_BYTES)
    tensors = load_file(str(weights), device="cpu")
    encoder = _shape(tensors, "encoder.weight", (n, d_in), path / "sae.safetensors")
    w_dec = tensors.get("W_dec")
    if w_dec is None:
        raise LoadError(f"cannot load SAE: {path / 'sae.safetensors'} has no decoder (W_dec): it was saved without one")
    transcode = bool(cfg.get("transcode"))
    # A transcoder's output width is the decoder's, and only the decoder says it; an SAE's is its input's.
    d_out = int(w_dec.shape[-1]) if transcode and w_dec.dim() == 2 and int(w_dec.shape[0]) == n else d_in
    _shape(tensors, "W_dec", (n, d_out), path / "sae.safetensors")
    run = path.parent / "config.json"
    model = None
    if run.is_file():
        try:
            model = json.loads(run.read_text(encoding="utf-8")).get("model")
        except (OSError, ValueError):
            model = None
    hook, transcoder_in = hook_of_module(path.name)
    state = {
        "W_enc": encoder.T.contiguous(),
        "b_enc": _shape(tensors, "encoder.bias", (n,), path / "sae.safetensors"),
        "W_dec": w_dec,
        "b_dec": _shape(tensors, "b_dec", (d_out,), path / "sae.safetensors"),
    }
    common = {"d_in": d_in, "d_sae": n, "dtype": str(encoder.dtype).removeprefix("torch."), "device": device, "normalize_activations": "none",
              "reshape_activations": "none"}
    if transcode:
        architecture = "topk_skip_transcoder" if "W_skip" in tensors else "topk_transcoder"
        if "W_skip" in tensors:
            state["W_skip"] = _shape(tensors, "W_skip", (d_out, d_in), path / "sae.safetensors")
        out = {**common, "architecture": architecture, "k": k, "d_out": d_out, "apply_b_dec_to_input": False,
               "metadata": _metadata(transcoder_in, model, hook, format="sparsify")}
    else:
        if "W_skip" in tensors:
            raise LoadError(f"cannot load SAE: {path}: a sparsify SAE with a skip connection has no SAELens architecture")
        out = {**common, "architecture": "topk", "k": k, "apply_b_dec_to_input": True, "rescale_acts_by_decoder_norm": False,
               "metadata": _metadata(hook, model, format="sparsify")}
    out.update(cfg_overrides or {})
    return out, state


# ----------------------------------------------------------------------------- SAELens training checkpoints
def training_only_architecture(cfg_path: Path) -> bool:
    """Whether a SAELens cfg.json names an architecture SAELens has only a training class for (BatchTopK,
    Matryoshka BatchTopK: a training checkpoint, which becomes another architecture at inference)."""
    from sae_lens.registry import SAE_CLASS_REGISTRY, SAE_TRAINING_CLASS_REGISTRY

    architecture = _json(cfg_path, "SAE config").get("architecture")
    return architecture not in SAE_CLASS_REGISTRY and architecture in SAE_TRAINING_CLASS_REGISTRY


def saelens_training_converter(path: str | Path, device: str = "cpu", cfg_overrides: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """A checkpoint SAELens's trainer wrote (`TrainingSAE.save_model`) whose architecture exists only for
    training, as the inference SAE SAELens itself would save (`save_inference_model`): SAELens's own training
    class and its own conversion, in memory (a BatchTopK's running threshold becomes a JumpReLU's)."""
    from sae_lens.saes.sae import TrainingSAE

    training = TrainingSAE.load_from_disk(str(path), device=device)
    state = training.state_dict()
    training.process_state_dict_for_saving_inference(state)
    cfg = training.cfg.get_inference_sae_cfg_dict()
    cfg.update(cfg_overrides or {})
    return cfg, state


# ----------------------------------------------------------------------------- dictionary_learning
def safe_torch_load(path: Path) -> dict[str, Any]:
    """A state dict from a .pt file, never running code: `weights_only=True`; anything that needs more is refused."""
    import torch

    file = checked_file(path, "SAE weights", MAX_WEIGHTS_BYTES)
    try:
        data = torch.load(str(file), map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for a pickle that needs code, or a broken file: one line either way
        raise LoadError(
            f"cannot load SAE: {path} cannot be read as plain tensors ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}): "
            "interp-tests reads .pt files with torch.load(weights_only=True) only, so a checkpoint that needs arbitrary unpickling is refused; "
            "save its state_dict() instead"
        ) from None
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise LoadError(f"cannot load SAE: {path} holds {type(data).__name__}, not a state dict of tensors")
    return data


DL_ARCHITECTURES = {  # dictionary_learning class -> (SAELens architecture, b_dec subtracted before encoding)
    "AutoEncoder": ("standard", True),
    "AutoEncoderTopK": ("topk", True),
    "GatedAutoEncoder": ("gated", True),
    "JumpReluAutoEncoder": ("jumprelu", False),  # its encode reads x, not x - b_dec
    "BatchTopKSAE": ("jumprelu", True),  # at inference: ReLU(W (x - b_dec) + b) kept where above one threshold
    "MatryoshkaBatchTopKSAE": ("jumprelu", True),
}


def dictionary_learning_converter(path: str | Path, device: str = "cpu", cfg_overrides: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """A dictionary_learning trainer folder: ae.pt (the state dict `trainSAE` saves, the norm factor already
    folded in) and config.json ({"trainer": {dict_class, activation_dim, dict_size, layer, lm_name,
    submodule_name, k, ...}, "buffer": {...}})."""
    import torch

    path = Path(path)
    config = _json(path / "config.json", "dictionary_learning config") if (path / "config.json").exists() else {}
    found = config.get("trainer")
    trainer: dict[str, Any] = found if isinstance(found, dict) else {}
    state = safe_torch_load(path / "ae.pt")
    cls = str(trainer.get("dict_class") or _guess_dictionary_class(state))
    if cls not in DL_ARCHITECTURES:
        raise LoadError(f"cannot load SAE: {path / 'config.json'}: dict_class {cls!r} is not one interp-tests reads ({', '.join(DL_ARCHITECTURES)})")
    architecture, subtract = DL_ARCHITECTURES[cls]
    where = path / "ae.pt"
    if "encoder.weight" in state:
        n, d = (int(x) for x in state["encoder.weight"].shape)
        w_enc = state["encoder.weight"].T.contiguous()
    else:
        d, n = (int(x) for x in _shape(state, "W_enc", tuple(state.get("W_enc", torch.empty(0, 0)).shape), where).shape)
        w_enc = state["W_enc"]
    for key, expected in (("activation_dim", d), ("dict_size", n)):
        if trainer.get(key) is not None and trainer.get(key) != expected:
            raise LoadError(f"cannot load SAE: {path / 'config.json'}: {key} is {trainer.get(key)}, but ae.pt's encoder is {n} x {d}")
    w_dec = state["decoder.weight"].T.contiguous() if "decoder.weight" in state else state.get("W_dec")
    if w_dec is None:
        raise LoadError(f"cannot load SAE: {where} has no decoder (decoder.weight or W_dec)")
    _shape({"W_dec": w_dec}, "W_dec", (n, d), where)
    b_dec = next((state[k] for k in ("b_dec", "bias", "decoder_bias") if k in state), None)
    if b_dec is None:
        raise LoadError(f"cannot load SAE: {where} has no decoder bias (b_dec, bias or decoder_bias)")
    out_state: dict[str, Any] = {"W_enc": w_enc, "W_dec": w_dec, "b_dec": _shape({"b_dec": b_dec}, "b_dec", (d,), where)}
    extra: dict[str, Any] = {}
    if architecture == "gated":
        out_state |= {"b_gate": state["gate_bias"], "r_mag": state["r_mag"], "b_mag": state["mag_bias"]}
    else:
        out_state["b_enc"] = state.get("encoder.bias", state.get("b_enc", torch.zeros(n)))
    if architecture == "topk":
        k: Any = trainer.get("k", state.get("k"))
        extra["k"] = int(k.item()) if hasattr(k, "item") else int(_need({"k": k}, "k", path / "config.json"))
        extra["rescale_acts_by_decoder_norm"] = False
    if architecture == "jumprelu":
        threshold = state.get("threshold")
        if threshold is None:
            raise LoadError(f"cannot load SAE: {where} has no threshold, which {cls} needs at inference")
        threshold = threshold.float()
        if cls != "JumpReluAutoEncoder" and float(threshold.max()) < 0:
            raise LoadError(f"cannot load SAE: {where}: its threshold was never set in training (it is {float(threshold.max())}): this BatchTopK checkpoint cannot run at inference")
        out_state["threshold"] = threshold.expand(n).clone() if threshold.ndim == 0 else threshold
    hook = dictionary_learning_hook(trainer)
    model = trainer.get("lm_name") if isinstance(trainer.get("lm_name"), str) else None
    context = config.get("buffer", {}).get("ctx_len") if isinstance(config.get("buffer"), dict) else None
    out = {
        "architecture": architecture, "d_in": d, "d_sae": n, "dtype": str(w_enc.dtype).removeprefix("torch."), "device": device,
        "apply_b_dec_to_input": subtract, "normalize_activations": "none", "reshape_activations": "none", **extra,
        "metadata": _metadata(hook, model, format="dictionary_learning", context_size=context),
    }
    out.update(cfg_overrides or {})
    return out, out_state


def _guess_dictionary_class(state: dict[str, Any]) -> str:
    if "gate_bias" in state:
        return "GatedAutoEncoder"
    if "k" in state and "threshold" in state:
        return "AutoEncoderTopK"
    if "W_enc" in state and "threshold" in state:
        return "JumpReluAutoEncoder"
    return "AutoEncoder"


# ----------------------------------------------------------------------------- Gemma Scope
def gemma_scope_converter(path: str | Path, device: str = "cpu", cfg_overrides: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """A Gemma Scope params.npz (W_enc [d_in, n], W_dec [n, d_out], b_enc, b_dec, threshold): JumpReLU,
    pre = x W_enc + b_enc (b_dec not subtracted), kept where pre > threshold. The hook and the model are read
    from the release's folder names where the path has them (`gemma-scope-2b-pt-res/layer_12/width_16k/...`);
    a folder under `gemma-scope-*-transcoders` is a JumpReLU transcoder of that layer's MLP, as SAELens's own
    hub loader for those releases reads it."""
    import numpy as np
    import torch

    path = Path(path)
    file = checked_file(path / "params.npz", "SAE weights", MAX_WEIGHTS_BYTES)
    try:
        with np.load(str(file), allow_pickle=False) as params:
            arrays = {k.lower(): torch.from_numpy(np.array(params[k])) for k in params.files}
    except Exception as exc:  # not an npz, or one that would need pickles: refused, one line
        raise LoadError(f"cannot load SAE: {file} is not a readable .npz of arrays ({type(exc).__name__}: {str(exc)[:200]})") from None
    if "w_enc" not in arrays:
        raise LoadError(f"cannot load SAE: {file} has no W_enc (it has {', '.join(sorted(arrays))})")
    d, n = (int(x) for x in arrays["w_enc"].shape)
    hook, model, hook_out = _gemma_scope_names(path)
    transcoder = hook_out is not None
    w_dec = arrays.get("w_dec")
    d_out = int(w_dec.shape[1]) if transcoder and w_dec is not None and w_dec.dim() == 2 and int(w_dec.shape[0]) == n else d
    state = {
        "W_enc": arrays["w_enc"],
        "W_dec": _shape(arrays, "w_dec", (n, d_out), file),
        "b_enc": _shape(arrays, "b_enc", (n,), file),
        "b_dec": _shape(arrays, "b_dec", (d_out,), file),
        "threshold": _shape(arrays, "threshold", (n,), file),
    }
    out = {
        "architecture": "jumprelu_transcoder" if transcoder else "jumprelu", "d_in": d, "d_sae": n,
        "dtype": str(state["W_enc"].dtype).removeprefix("torch."), "device": device,
        "apply_b_dec_to_input": False, "normalize_activations": "none", "reshape_activations": "none",
        "metadata": _metadata(hook, model, hook_out, format="gemma_scope"),
    }
    if transcoder:
        out["d_out"] = d_out
    out.update(cfg_overrides or {})
    return out, state


def _gemma_scope_names(path: Path) -> tuple[str | None, str | None, str | None]:
    """(hook, model, output hook or None) from a Gemma Scope folder path."""
    text = "/".join(path.resolve().parts)
    layer = re.search(r"layer_(\d+)", text)
    release = re.search(r"gemma-scope-(?:(\d+b)-(pt|it)-)?(res|mlp|att|transcoders)\b", text)
    site = release.group(3) if release else None
    hook = hook_out = None
    if layer is not None and site is not None:
        sites = {"res": "blocks.{}.hook_resid_post", "mlp": "blocks.{}.hook_mlp_out", "att": "blocks.{}.attn.hook_z", "transcoders": "blocks.{}.ln2.hook_normalized"}
        hook = sites[site].format(int(layer.group(1)))
        if site == "transcoders":
            hook_out = f"blocks.{int(layer.group(1))}.hook_mlp_out"
    model = None
    if release is not None and release.group(1):
        model = f"gemma-2-{release.group(1)}" + ("-it" if release.group(2) == "it" else "")
    return hook, model, hook_out


def declared_hook_of(path: Path, fmt: str | None) -> str | None:
    """The hook a local checkpoint of another library reads, from its config and names alone (no weights);
    None for SAELens's own format (its cfg.json says) or when it cannot be told."""
    try:
        fmt = fmt or detect(path)
    except LoadError:
        return None
    try:
        if fmt == "sparsify":
            cfg = _json(path / "cfg.json", "sparsify config")
            hook, transcoder_in = hook_of_module(path.name)
            return transcoder_in if cfg.get("transcode") else hook
        if fmt == "dictionary_learning" and (path / "config.json").exists():
            trainer = _json(path / "config.json", "dictionary_learning config").get("trainer")
            return dictionary_learning_hook(trainer) if isinstance(trainer, dict) else None
        if fmt == "gemma_scope":
            return _gemma_scope_names(path)[0]
    except LoadError:
        return None
    return None


def format_of(path: Path) -> str | None:
    """A local checkpoint's format, or None when its files say none (or several)."""
    try:
        return detect(path)
    except LoadError:
        return None
