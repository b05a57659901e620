"""Train the bundled `tiny-stdlib-tc` transcoder for the bundled model's second MLP, reproducibly, on CPU.

    python scripts/train_tiny_transcoder.py        # writes interp_tests/bundled/tiny-stdlib-tc/

A transcoder reads the MLP's input (`blocks.1.ln2.hook_normalized`) and predicts the MLP's output
(`blocks.1.hook_mlp_out`) through sparse features. It is SAELens's own JumpReLU transcoder
(`jumprelu_transcoder`), so SAELens alone loads it. SAELens trains SAEs but not transcoders, so the loop
here is written out: activation pairs from the bundled model on the same training windows as the bundled
SAE (the standard-library corpus of scripts/train_tiny_stdlib.py, tokenized with the bundled tokenizer),
a JumpReLU trained with straight-through estimators (SAELens's own `JumpReLU` and `Step` functions,
Rajamanoharan et al. 2024), an L0 penalty whose coefficient is steered toward a target L0, and Adam.
Everything is seeded; the held-out evaluation is written to the release's metadata.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from train_tiny_stdlib import BOS, CTX, SEED, build_corpus, log, windows  # noqa: E402

RELEASE = "tiny-stdlib-tc"
LAYER = 1
HOOK_IN = f"blocks.{LAYER}.ln2.hook_normalized"
HOOK_OUT = f"blocks.{LAYER}.hook_mlp_out"
SAE_ID = f"blocks.{LAYER}.mlp"


@torch.inference_mode()
def pairs(model, data: torch.Tensor, batch: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """(MLP input, MLP output) at every non-BOS token of the windows."""
    bos_id = model.tokenizer.bos_token_id
    xs, ys = [], []
    for i in range(0, data.shape[0], batch):
        toks = data[i : i + batch]
        _, cache = model.run_with_cache(toks, names_filter=[HOOK_IN, HOOK_OUT], stop_at_layer=LAYER + 1)
        keep = toks != bos_id
        xs.append(cache[HOOK_IN][keep].clone())
        ys.append(cache[HOOK_OUT][keep].clone())
    return torch.cat(xs), torch.cat(ys)


def train(x: torch.Tensor, y: torch.Tensor, d_sae: int, target_l0: float, steps: int, batch: int, lr: float) -> tuple[dict, list[dict]]:
    """A JumpReLU transcoder x -> y; returns its state dict (SAELens's names) and a training curve."""
    from sae_lens.saes.jumprelu_sae import JumpReLU, Step

    g = torch.Generator().manual_seed(SEED)
    d_in, d_out = x.shape[1], y.shape[1]
    w_dec = torch.randn(d_sae, d_out, generator=g)
    w_dec = w_dec / w_dec.norm(dim=-1, keepdim=True) * 0.1
    params = {
        "W_enc": torch.nn.Parameter(w_dec.T.clone() * (d_out / d_in) ** 0.5),
        "b_enc": torch.nn.Parameter(torch.zeros(d_sae)),
        "W_dec": torch.nn.Parameter(w_dec),
        "b_dec": torch.nn.Parameter(y.mean(0).clone()),
    }
    with torch.no_grad():  # thresholds that start each feature firing on target_l0 / d_sae of the tokens
        sample = x[torch.randint(0, x.shape[0], (8192,), generator=g)] @ params["W_enc"]
        start = sample.quantile(1 - target_l0 / d_sae, dim=0).clamp_min(1e-3)
    params["log_threshold"] = torch.nn.Parameter(start.log())
    opt = torch.optim.Adam(params.values(), lr=lr, betas=(0.0, 0.999))
    bandwidth, coef = 0.02, 1e-4
    y_var = y.var(0).sum()
    curve: list[dict] = []
    for step in range(steps):
        idx = torch.randint(0, x.shape[0], (batch,), generator=g)
        xb, yb = x[idx], y[idx]
        pre = xb @ params["W_enc"] + params["b_enc"]
        threshold = params["log_threshold"].exp()
        acts = JumpReLU.apply(pre, threshold, bandwidth, False)
        pred = acts @ params["W_dec"] + params["b_dec"]
        mse = (pred - yb).pow(2).sum(-1).mean() / y_var
        l0 = Step.apply(pre, threshold, bandwidth, False).sum(-1).mean()
        loss = mse + coef * l0
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / 200) * min(1.0, 5 * (steps - step) / steps)
        opt.step()
        seen = float((acts > 0).float().sum(-1).mean())
        coef = min(10.0, max(1e-4, coef * (1.005 if seen > target_l0 else 1 / 1.005)))  # steer the penalty toward the target L0
        if step % max(1, steps // 20) == 0 or step == steps - 1:
            curve.append({"step": step, "fvu": round(float(mse.detach()), 4), "l0": round(seen, 2), "coef": coef})
            log(f"step {step}: FVU {float(mse.detach()):.4f}, L0 {seen:.1f}, coef {coef:.2e}")
    state = {k: v.detach().clone() for k, v in params.items() if k != "log_threshold"}
    state["threshold"] = params["log_threshold"].detach().exp()
    return state, curve


@torch.inference_mode()
def evaluate(model, transcoder, data: torch.Tensor, batch: int = 32) -> dict:
    """Held-out metrics with the harness's definitions (docs/CASES.md, transcoders): explained variance and
    MSE of the predicted MLP output against the true one, L0 and dead features of the encoder, and the
    CE-loss score with the prediction spliced into the MLP output (zero ablation of the MLP output as the
    floor)."""
    from interp_tests.compute import metrics

    bos_id = model.tokenizer.bos_token_id
    ys, preds, l0s = [], [], []
    fired = torch.zeros(transcoder.cfg.d_sae, dtype=torch.bool)
    ce: dict[str, list[float]] = {"orig": [], "sae": [], "zero": []}
    for i in range(0, data.shape[0], batch):
        toks = data[i : i + batch]
        keep = toks[:, 1:] != bos_id
        _, cache = model.run_with_cache(toks, names_filter=[HOOK_IN, HOOK_OUT])
        acts = transcoder.encode(cache[HOOK_IN])
        pred = transcoder.decode(acts)
        mask = toks != bos_id
        ys.append(cache[HOOK_OUT][mask])
        preds.append(pred[mask])
        l0s.append((acts[mask] > 0).sum(-1).float())
        fired |= (acts[mask] > 0).any(0)

        def nll(logits: torch.Tensor) -> torch.Tensor:
            lp = logits[:, :-1].log_softmax(-1).gather(-1, toks[:, 1:, None])[..., 0]
            return -lp[keep]

        ce["orig"].append(nll(model(toks)))
        ce["sae"].append(nll(model.run_with_hooks(toks, fwd_hooks=[(HOOK_OUT, lambda a, hook: pred)])))
        ce["zero"].append(nll(model.run_with_hooks(toks, fwd_hooks=[(HOOK_OUT, lambda a, hook: torch.zeros_like(a))])))
    y, p = torch.cat(ys).double(), torch.cat(preds).double()
    c = {k: float(torch.cat(v).double().mean()) for k, v in ce.items()}
    return {
        "explained_variance": metrics.explained_variance(y, p),
        "mse": metrics.mse(y, p),
        "l0": float(torch.cat(l0s).mean()),
        "dead_fraction": float((~fired).float().mean()),
        "ce_orig": c["orig"],
        "ce_sae": c["sae"],
        "ce_zero": c["zero"],
        "ce_loss_score": (c["zero"] - c["sae"]) / (c["zero"] - c["orig"]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "interp_tests" / "bundled")
    ap.add_argument("--tokens", type=int, default=1_000_000, help="training activation pairs")
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=2048)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--d-sae", type=int, default=512)
    ap.add_argument("--target-l0", type=float, default=16.0)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()

    import sae_lens
    from sae_lens import SAE
    from safetensors.torch import save_file

    from interp_tests.compute.registry import Registry

    torch.manual_seed(SEED)
    torch.set_num_threads(max(1, args.threads))
    t_start = time.time()
    model = Registry().model("tiny-stdlib")
    tok = model.tokenizer
    assert tok.bos_token == BOS
    log("building corpus")
    train_docs, held_docs, corpus_sha = build_corpus()
    rng = random.Random(SEED)
    rng.shuffle(train_docs)
    rng.shuffle(held_docs)
    enc = lambda docs: [ids for ids in tok([t for _, t in docs])["input_ids"] if ids]  # noqa: E731
    train_tok, held_tok = enc(train_docs), enc(held_docs)
    data = windows(train_tok, tok.bos_token_id, random.Random(SEED + 2), args.tokens // CTX + 64)
    held = windows(held_tok, tok.bos_token_id, random.Random(SEED + 1), 512)
    x, y = pairs(model, data)
    x, y = x[: args.tokens], y[: args.tokens]
    log(f"{x.shape[0]} activation pairs")
    t0 = time.time()
    state, curve = train(x, y, args.d_sae, args.target_l0, args.steps, args.batch, args.lr)
    seconds = time.time() - t0

    out = args.out / RELEASE / SAE_ID
    out.mkdir(parents=True, exist_ok=True)
    cfg = {
        "architecture": "jumprelu_transcoder", "d_in": x.shape[1], "d_out": y.shape[1], "d_sae": args.d_sae,
        "dtype": "float32", "device": "cpu", "apply_b_dec_to_input": False, "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {"sae_lens_version": sae_lens.__version__, "model_name": "tiny-stdlib", "hook_name": HOOK_IN, "hook_name_out": HOOK_OUT,
                     "hook_head_index": None, "prepend_bos": True, "context_size": CTX, "dataset_path": "tiny-stdlib-corpus",
                     "model_from_pretrained_kwargs": {}},
    }
    save_file({k: v.contiguous() for k, v in state.items()}, str(out / "sae_weights.safetensors"))
    (out / "cfg.json").write_text(json.dumps(cfg, indent=2) + "\n")
    transcoder = SAE.load_from_disk(str(out), device="cpu")
    transcoder.eval()
    log("evaluating")
    ev = evaluate(model, transcoder, held)
    meta = {
        "model": "tiny-stdlib",
        "sae": {"release": RELEASE, "id": SAE_ID, "architecture": "jumprelu_transcoder", "hook_name": HOOK_IN, "hook_name_out": HOOK_OUT, "d_sae": args.d_sae},
        "recipe": "    python scripts/train_tiny_transcoder.py        # writes interp_tests/bundled/tiny-stdlib-tc/",
        "corpus": {"python": sys.version.split()[0], "stdlib_sha256": corpus_sha, "activation_pairs": int(x.shape[0])},
        "seeds": {"torch": SEED, "windows": SEED + 2, "heldout_windows": SEED + 1},
        "training": {"steps": args.steps, "batch": args.batch, "lr": args.lr, "target_l0": args.target_l0, "seconds": round(seconds, 1),
                     "total_seconds": round(time.time() - t_start, 1), "threads": args.threads, "curve": curve},
        "versions": {"torch": torch.__version__, "sae_lens": sae_lens.__version__},
        "heldout": {"windows": int(held.shape[0]), **ev},
    }
    (args.out / RELEASE / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
    log(json.dumps(meta["heldout"], indent=2))


if __name__ == "__main__":
    main()
