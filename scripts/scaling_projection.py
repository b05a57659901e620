"""The tables of docs/SCALING.md: time and GPU-hours to gate 1,000 checkpoints on 8, 64 and 512 GPUs through
`--interp-ray`, from FLOP counts, stated GPU assumptions and the costs measured on this project's machine.

    .venv/bin/python scripts/scaling_projection.py

Change an assumption below and rerun; every number in the doc comes from here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# ----------------------------------------------------------------------------- assumptions (docs/SCALING.md)
GPU_PEAK_FLOPS = 989e12  # H100 SXM, dense bf16 (NVIDIA H100 datasheet)
GPU_MEMORY_GB = 80.0
LOAD_GB_PER_S = 2.0  # a node reading a checkpoint or model from local NVMe or a parallel filesystem, per GPU
TOKENS = 100_000  # tokens per checkpoint: the corpus of a gating run with loss checks
CONTEXT = 128
CHECKPOINTS = 1_000
CASES_PER_CHECKPOINT = 10  # pytest items per checkpoint (a case file of ten cases)

# ----------------------------------------------------------------------------- measured here (docs/benchmarks.md)
WORKER_START_S = 7.0  # a fresh Ray worker importing torch, TransformerLens and SAELens (6-7 s on this machine)
RAY_SUBMIT_TO_START_S = 5.5  # benchmarks/test_ray.py, one worker node: includes fetching 1.7 GB (model + checkpoints) from the object store
DRIVER_COLLECT_S_PER_ITEM = 0.00014  # 2,000 items collected in 0.27 s (docs/SCALING.md, "Where the driver ...")
DRIVER_ITEM_S = 0.0024  # pytest's protocol, the baseline comparison and the terminal report of one item
DRIVER_FILES_S_PER_ITEM = 0.0025  # JUnit, Markdown, JSON and HTML, per item (5 s for 2,000 items)


@dataclass(frozen=True)
class Shape:
    name: str
    d_model: int
    layers: int
    attn_dim: int  # n_heads * d_head
    kv_dim: int  # n_kv_heads * d_head (grouped-query attention)
    d_mlp: int
    gated_mlp: bool
    vocab: int
    params: float  # the model's parameters, for its load
    hook_layer: int  # blocks before the SAE's hook (L for blocks.L.hook_resid_pre, L + 1 for resid_post): the splice runs the rest
    d_sae: int
    sae_bytes: float  # the checkpoint as published (float32)
    efficiency: float  # achieved / peak FLOP/s on this shape (assumption)


GPT2 = Shape("GPT-2 small, 24,576-feature SAE at layer 8 (resid_pre)", 768, 12, 768, 768, 3072, False, 50_257, 124e6, 8, 24_576, 2 * 768 * 24_576 * 4, 0.10)
GEMMA = Shape("Gemma-2-9B, 131,072-feature SAE at layer 20 (resid_post)", 3584, 42, 4096, 2048, 14_336, True, 256_000, 9.24e9, 21, 131_072, 2 * 3584 * 131_072 * 4, 0.40)


def block_flops(s: Shape) -> float:
    """Matmul FLOPs per token of one block: Q and O projections at attn_dim, K and V at kv_dim, attention over
    the window (full square, CONTEXT keys), the MLP (three matrices when gated)."""
    proj = 2 * s.d_model * (2 * s.attn_dim + 2 * s.kv_dim)
    attn = 2 * 2 * CONTEXT * s.attn_dim
    mlp = 2 * s.d_model * s.d_mlp * (3 if s.gated_mlp else 2)
    return proj + attn + mlp


def per_token(s: Shape) -> dict[str, float]:
    unembed = 2 * s.d_model * s.vocab
    return {
        "clean": s.layers * block_flops(s) + unembed,  # once per group: every SAE's clean logits and activations
        "zero": (s.layers - s.hook_layer) * block_flops(s) + unembed,  # the zero ablation, once per hook per group
        "sae": 4 * s.d_model * s.d_sae,  # encode and decode
        "splice": (s.layers - s.hook_layer) * block_flops(s) + unembed,  # each SAE's reconstruction spliced in
    }


def group_size(s: Shape) -> int:
    """SAEs per load group: what fits next to the model (bf16) and 8 GB of activations, SAEs in float32."""
    free = GPU_MEMORY_GB * 1e9 - 2 * s.params - 8e9
    return max(1, min(CHECKPOINTS, int(free // s.sae_bytes)))


def project(s: Shape, gpus: int) -> dict[str, float]:
    f = per_token(s)
    rate = GPU_PEAK_FLOPS * s.efficiency
    per_gpu = math.ceil(CHECKPOINTS / gpus)  # the units: one per GPU (units_of splits a load group over slots)
    k = min(group_size(s), per_gpu)
    groups = math.ceil(per_gpu / k)
    compute = TOKENS * (groups * (f["clean"] + f["zero"]) + per_gpu * (f["sae"] + f["splice"])) / rate
    load = (2 * s.params + per_gpu * s.sae_bytes) / (LOAD_GB_PER_S * 1e9)
    task = WORKER_START_S + RAY_SUBMIT_TO_START_S + load + compute
    items = CHECKPOINTS * CASES_PER_CHECKPOINT
    # the units (one per GPU) finish together, so the items report after them, one after another
    driver = items * (DRIVER_COLLECT_S_PER_ITEM + DRIVER_ITEM_S + DRIVER_FILES_S_PER_ITEM)
    return {"per_gpu": per_gpu, "compute_s": compute, "load_s": load, "task_s": task, "driver_s": driver,
            "wall_s": task + driver, "gpu_hours": gpus * task / 3600}


def main() -> None:
    for s in (GPT2, GEMMA):
        f = per_token(s)
        print(f"### {s.name}")
        print()
        print(f"Per token: clean forward {f['clean'] / 1e9:.3f} GFLOP, zero ablation {f['zero'] / 1e9:.3f}, SAE encode + decode "
              f"{f['sae'] / 1e9:.3f}, spliced forward {f['splice'] / 1e9:.3f}; checkpoint {s.sae_bytes / 1e9:.2f} GB; "
              f"{group_size(s)} SAEs per load group on one {GPU_MEMORY_GB:.0f} GB GPU; efficiency assumed {s.efficiency:.0%}.")
        print()
        print("| GPUs | checkpoints per GPU | compute per GPU | loading per GPU | one task | GPU-hours | driver | the gate, wall |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for gpus in (8, 64, 512):
            p = project(s, gpus)
            print(f"| {gpus} | {p['per_gpu']} | {p['compute_s']:,.1f} s | {p['load_s']:,.1f} s | {p['task_s']:,.1f} s | "
                  f"{p['gpu_hours']:,.2f} | {p['driver_s']:,.1f} s | {p['wall_s']:,.1f} s |")
        print()


if __name__ == "__main__":
    main()
