"""The loss forwards: one clean forward per batch, the reconstruction and the zero ablation spliced in from the
block that holds the hook. No pytest here.

For a batch of (right-padded) token ids the clean forward runs once, to the logits, and captures every hook
that some SAE reads together with the residual stream entering each of those hooks' blocks. A spliced
forward then starts at the hook's block from that captured residual (TransformerLens's `start_at_layer`,
with the attention mask) and replaces the hook's activation there:
- `blocks.L.hook_resid_pre`: the replaced activation is the residual that enters block L;
- `blocks.L.hook_resid_post`: the replaced activation is the residual that enters block L+1 (no block of L);
- any other hook inside block L (`hook_mlp_out`, `attn.hook_z`, ...): block L runs from its captured
  `hook_resid_pre` with a forward hook that replaces the activation;
- a hook outside the blocks (the embeddings, `ln_final`): a full forward with the forward hook.
Causal attention means the positions before the hook's block are what the clean forward computed, so the
spliced logits equal a full forward with the same hook edit (tested, with padding, for each kind of hook).

Cross-entropy and KL are computed for the whole batch at once, in the logits' precision (at least float32)
with every sum over the vocabulary accumulated in float64 (`LossBatch`): no float64 copy of the [tokens,
vocab] logits.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from transformer_lens import HookedTransformer

CHUNK_ELEMENTS = 1 << 22  # elements of [rows, vocab] per step of the elementwise work (16 MB in float32)
SUM_BLOCK = 1024  # vocabulary entries summed in the logits' precision before the float64 sum


def splice_point(hook: str, n_layers: int) -> tuple[int, str] | None:
    """(block to start at, hook whose clean activation is that block's input) for a spliced forward, or None
    when the hook is outside the blocks (the forward then runs from the embeddings)."""
    m = re.match(r"blocks\.(\d+)\.(.+)$", hook)
    if not m:
        return None
    layer, name = int(m.group(1)), m.group(2)
    if name == "hook_resid_post" and layer + 1 <= n_layers:
        return layer + 1, hook
    return layer, f"blocks.{layer}.hook_resid_pre"


def input_hooks(hooks: Sequence[str], n_layers: int) -> list[str]:
    """Every hook a clean forward must capture so that each of `hooks` can be spliced: the hooks themselves
    and the residual entering each one's block."""
    out = dict.fromkeys(hooks)
    for hook in hooks:
        point = splice_point(hook, n_layers)
        if point is not None:
            out[point[1]] = None
    return list(out)


def clean_forward(model: HookedTransformer, hooks: Sequence[str], tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(logits, {hook: activation}) of one full forward that captures `hooks` (see `input_hooks`)."""
    store: dict[str, torch.Tensor] = {}

    def keep(act: torch.Tensor, hook: Any) -> None:
        store[hook.name] = act.detach()

    logits = model.run_with_hooks(tokens, attention_mask=mask, fwd_hooks=[(h, keep) for h in hooks])
    return logits, store


def spliced_logits(model: HookedTransformer, hook: str, clean: dict[str, torch.Tensor], tokens: torch.Tensor, mask: torch.Tensor, keep: torch.Tensor, values: torch.Tensor | None) -> torch.Tensor:
    """The logits of a forward in which `hook`'s activation at the positions of `keep` [batch, pos] is `values`
    [n_kept, width] (the SAE's reconstruction), or zero when `values` is None, run from the hook's block (see
    the module's docstring). `clean` holds the clean forward's captures (`input_hooks`)."""

    def replace(act: torch.Tensor) -> torch.Tensor:
        return positions_replaced(act, keep, values)

    point = splice_point(hook, int(model.cfg.n_layers))
    if point is None or getattr(model.cfg, "positional_embedding_type", "") == "shortformer":
        return model.run_with_hooks(tokens, attention_mask=mask, fwd_hooks=[(hook, lambda act, hook: replace(act))])
    start, entry = point
    if entry == hook:  # the replaced activation is the residual the starting block reads
        return model(replace(clean[hook]), start_at_layer=start, tokens=tokens, attention_mask=mask)
    with model.hooks(fwd_hooks=[(hook, lambda act, hook: replace(act))]):
        return model(clean[entry], start_at_layer=start, tokens=tokens, attention_mask=mask)


def positions_replaced(act: torch.Tensor, keep: torch.Tensor, values: torch.Tensor | None) -> torch.Tensor:
    """`act` [batch, pos, ...] with the rows of `keep` [batch, pos] replaced by `values` [n_kept, width] (the
    hook's trailing dims flattened, as the SAE reads them; None: zeros), in `act`'s dtype."""
    flat = act.flatten(2) if act.ndim > 3 else act
    out = flat.clone()
    out[keep] = 0 if values is None else values.to(flat.dtype)
    return out.reshape(act.shape)


def prediction_mask(mask: torch.Tensor) -> torch.Tensor:
    """[batch, pos - 1] bool: the predictions that count, positions 1 .. n-2 of each right-padded row of length n
    (position p predicts token p + 1; BOS's own prediction and the row's last position are left out)."""
    import torch

    lengths = mask.sum(-1, keepdim=True)
    position = torch.arange(mask.shape[1] - 1, device=mask.device).unsqueeze(0)
    return (position >= 1) & (position <= lengths - 2)


@dataclass
class LossBatch:
    """A batch's clean logits, and the CE / KL of any other logits of the same batch against them, at the
    predictions that count. Values are float64 [n_predictions], in row-major order.

    Every [batch * pos, vocab] reduction runs over all rows, views of the logits as the forward returned them
    (copying out the rows that count costs more than reducing the few others: windows are nearly full), and
    the per-row results are then picked. Precision without a float64 copy: the log-sum-exp exponentiates in the
    logits' precision (at least float32) and sums in float64 (`row_sums`); CE is lse - logit[target];
    KL(clean || other) is sum_v p_v (a_v - b_v) - (lse_a - lse_b) sum_v p_v with p = exp(a - lse_a)."""

    targets: torch.Tensor  # [batch * pos] the next token at each position (0 at the last)
    index: torch.Tensor  # [n] the rows of [batch * pos] that are predictions that count
    counts: list[int]  # predictions per row of the batch
    clean: torch.Tensor  # [batch * pos, vocab] the clean logits, at least float32
    clean_lse: torch.Tensor  # [batch * pos] float64

    @classmethod
    def of(cls, clean_logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> LossBatch:
        import torch

        where = prediction_mask(mask)
        batch, pos = tokens.shape
        rows = where.nonzero()
        index = rows[:, 0] * pos + rows[:, 1]
        targets = torch.cat([tokens[:, 1:], torch.zeros_like(tokens[:, :1])], 1).reshape(-1)
        clean = rows_of(clean_logits)
        return cls(targets, index, where.sum(-1).tolist(), clean, log_sum_exp(clean))

    def _ce(self, logits: torch.Tensor, lse: torch.Tensor) -> torch.Tensor:
        picked = logits.gather(-1, self.targets.unsqueeze(-1)).squeeze(-1)
        return (lse - picked.double()).index_select(0, self.index)

    @property
    def clean_ce(self) -> torch.Tensor:
        return self._ce(self.clean, self.clean_lse)

    def ce(self, logits: torch.Tensor) -> torch.Tensor:
        other = rows_of(logits)
        return self._ce(other, log_sum_exp(other))

    def ce_and_kl(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """CE of `logits`, and KL(clean || logits) per prediction (in chunks of rows: see `chunks`)."""
        import torch

        other = rows_of(logits)
        lse = log_sum_exp(other)
        kl = torch.empty(other.shape[0], dtype=torch.float64, device=other.device)
        for part in chunks(other):
            a, lse_a = self.clean[part], self.clean_lse[part]
            p = (a - lse_a.unsqueeze(-1).to(a.dtype)).exp_()
            diff = torch.sub(a, other[part]).mul_(p)
            kl[part] = row_sums(diff) - (lse_a - lse[part]) * row_sums(p)
        return self._ce(other, lse), kl.index_select(0, self.index)

    def rows(self, values: torch.Tensor) -> list[torch.Tensor]:
        """Per-row pieces of a [n_predictions] tensor (rows without predictions give empty tensors)."""
        return list(values.split(self.counts))


def rows_of(logits: torch.Tensor) -> torch.Tensor:
    """[batch, pos, vocab] logits as [batch * pos, vocab] rows in at least float32 (a view when they are)."""
    return _widened(logits.reshape(-1, logits.shape[-1]))


def log_sum_exp(logits: torch.Tensor) -> torch.Tensor:
    """[n, vocab] -> [n] float64: max + log(sum exp(logits - max)), the exponentials summed in float64."""
    import torch

    top = logits.amax(-1, keepdim=True)
    out = torch.empty(logits.shape[0], dtype=torch.float64, device=logits.device)
    for part in chunks(logits):
        out[part] = row_sums((logits[part] - top[part]).exp_())
    return top.squeeze(-1).double() + out.log()


def chunks(rows: torch.Tensor) -> list[slice]:
    """Row slices of [n, vocab] holding about CHUNK_ELEMENTS each: the elementwise work runs on temporaries
    small enough for the allocator to reuse (a fresh tensor of hundreds of MB costs a page fault per 4 kB on
    a CPU, more than the arithmetic)."""
    step = max(1, CHUNK_ELEMENTS // max(1, rows.shape[-1]))
    return [slice(i, i + step) for i in range(0, rows.shape[0], step)]


def row_sums(x: torch.Tensor) -> torch.Tensor:
    """[n, vocab] -> [n] float64: each block of SUM_BLOCK columns summed in x's precision (torch's cascade
    summation: error about that precision's epsilon), the blocks' sums added in float64. A float64 sum of the
    whole row costs 30 times more on a CPU (float64 reductions are not vectorized there)."""
    import torch

    return torch.stack([x[:, i : i + SUM_BLOCK].sum(-1) for i in range(0, x.shape[-1], SUM_BLOCK)], -1).double().sum(-1)


def _widened(logits: torch.Tensor) -> torch.Tensor:
    """Logits in at least float32 (half-precision logits are widened first)."""
    import torch

    return logits.to(torch.promote_types(logits.dtype, torch.float32))
