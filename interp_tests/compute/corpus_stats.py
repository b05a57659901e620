"""Running sums over a corpus, batch by batch, in float64: memory does not grow with the token budget.

No pytest here. Every statistic means exactly what docs/CASES.md defines for texts, over the non-BOS tokens
of all windows (a window's BOS tokens, at its start and between documents, are excluded everywhere):
explained variance 1 - sum||x - x_hat||^2 / sum||x - mu||^2 with sum||x - mu||^2 = sum||x||^2 - N||mu||^2;
the legacy form needs mu first: its inputs are kept through the pass, or it takes a second pass (corpus_pass.py:
`LegacyInputs`, `legacy_pass`). Each window's own sums are kept
too (`units`, compute/bootstrap.py): a value's 95% interval is a bootstrap over windows from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .bootstrap import UnitSums, interval

if TYPE_CHECKING:
    import torch


def token_resid(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Each token's squared reconstruction error ||x - x_hat||^2, float64 [n]."""
    return (x.double() - x_hat.double()).pow(2).sum(-1)


@dataclass
class CorpusStats:
    d_sae: int
    tokens: int = 0  # non-BOS tokens
    windows: int = 0
    sum_x: torch.Tensor | None = None  # [d_in] float64
    sum_x_sq: float = 0.0
    sum_resid_sq: float = 0.0
    sum_cos: float = 0.0
    sum_active: float = 0.0
    fired: torch.Tensor | None = None  # [d_sae] int64: tokens where each feature is > 0
    max_act: torch.Tensor | None = None  # [d_sae] float64: each feature's largest activation
    legacy_sum: float | None = None  # sum over tokens of 1 - ||x - x_hat||^2 / ||x - mu||^2 (once mu is known)
    predictions: int = 0
    sum_ce: dict[str, float] = field(default_factory=lambda: {"orig": 0.0, "sae": 0.0, "zero": 0.0})
    sum_kl: float = 0.0
    content_hash: str = ""
    seconds: float = 0.0
    units: UnitSums | None = None  # each window's sums, for the intervals
    error: str = ""  # why this SAE's statistics are missing (its output went non-finite): its checks fail with it

    def __post_init__(self) -> None:
        if self.units is None:
            self.units = UnitSums(self.d_sae)

    def add(self, x: torch.Tensor, x_hat: torch.Tensor, feats: torch.Tensor, unit: torch.Tensor | None = None, n_units: int = 0,
            x_part: Any = None) -> None:
        """Tokens that count, flattened: x, x_hat [n, d_in]; feats [n, d_sae]; each token's window within the
        batch (`unit`, of `n_units` windows), whose own sums the intervals read."""
        import torch

        if unit is not None and self.units is not None:
            self.units.add(x, x_hat, feats, unit, n_units, x_part)

        x64, xh64 = x.double(), x_hat.double()
        if self.sum_x is None:
            self.sum_x = torch.zeros(x.shape[-1], dtype=torch.float64, device=x.device)
            self.fired = torch.zeros(self.d_sae, dtype=torch.int64, device=x.device)
            self.max_act = torch.full((self.d_sae,), float("-inf"), dtype=torch.float64, device=x.device)
        assert self.fired is not None and self.max_act is not None  # set together with sum_x
        self.tokens += int(x.shape[0])
        self.sum_x += x64.sum(0)
        self.sum_x_sq += float(x64.pow(2).sum())
        self.sum_resid_sq += float((x64 - xh64).pow(2).sum())
        self.sum_cos += float(torch.nn.functional.cosine_similarity(x64, xh64, dim=-1).sum())
        fired = (feats > 0).sum(0, dtype=torch.int32)  # per call at most n tokens; int32 sums faster than int64
        self.sum_active += float(fired.sum())
        self.fired += fired
        if x.shape[0]:  # amax: max without indices; taken in the SAE's dtype, then widened (exact)
            self.max_act = torch.maximum(self.max_act, torch.amax(feats, 0).double())

    def legacy_terms(self, x: torch.Tensor, x_hat: torch.Tensor, unit: torch.Tensor | None = None, n_units: int = 0, offset: int = 0) -> float:
        """One batch's sum of 1 - ||x - x_hat||^2 / ||x - mu||^2 (mu: the corpus mean from the first pass);
        with `unit`, each window's share is kept for the interval (`offset`: the batch's first window)."""
        return self.legacy_terms_of(x, token_resid(x, x_hat), unit, n_units, offset)

    def legacy_terms_of(self, x: torch.Tensor, resid: torch.Tensor, unit: torch.Tensor | None = None, n_units: int = 0, offset: int = 0) -> float:
        """`legacy_terms` from each token's ||x - x_hat||^2 (`token_resid`), taken before the mean was known."""
        x64 = x.double()
        total = (x64 - self.mean.to(x64.device)).pow(2).sum(-1)
        terms = 1.0 - resid.to(x64.device) / total
        if unit is not None and self.units is not None:
            self.units.add_legacy(terms, unit, n_units, offset)
        return float(terms.sum())

    def value(self, name: str, **params: Any) -> float:
        """A statistic by its check's name (`dense_fraction` takes `above`, `density` its `feature`)."""
        if name == "dense_fraction":
            return self.dense_fraction(float(params["above"]))
        if name == "density":
            return self.density(int(params["feature"]))
        return float(getattr(self, name))

    def interval(self, name: str, **params: Any) -> tuple[float, float] | None:
        """The value's 95% interval, a bootstrap over the corpus's windows (compute/bootstrap.py)."""
        return interval(self.units, name, **params) if self.units is not None else None

    def add_loss(self, ce: dict[str, torch.Tensor], kl: torch.Tensor, unit: torch.Tensor | None = None, n_units: int = 0) -> None:
        """Per-prediction values of a batch (already restricted to the predictions that count), with each
        prediction's window within the batch."""
        if unit is not None and self.units is not None:
            self.units.add_loss(ce, kl, unit, n_units)
        self.predictions += int(kl.numel())
        for k in self.sum_ce:
            self.sum_ce[k] += float(ce[k].double().sum())
        self.sum_kl += float(kl.double().sum())

    # ------------------------------------------------------------------ the statistics
    @property
    def mean(self) -> torch.Tensor:
        assert self.sum_x is not None
        return self.sum_x / self.tokens

    @property
    def explained_variance(self) -> float:
        assert self.sum_x is not None
        total = self.sum_x_sq - float(self.sum_x.pow(2).sum()) / self.tokens
        return 1.0 - self.sum_resid_sq / total if total > 0 else float("nan")

    @property
    def explained_variance_legacy(self) -> float:
        return (self.legacy_sum or 0.0) / self.tokens

    @property
    def mse(self) -> float:
        assert self.sum_x is not None
        return self.sum_resid_sq / (self.tokens * int(self.sum_x.shape[0]))

    @property
    def cosine(self) -> float:
        return self.sum_cos / self.tokens

    @property
    def l0(self) -> float:
        return self.sum_active / self.tokens

    @property
    def dead_fraction(self) -> float:
        assert self.fired is not None
        return float((self.fired == 0).double().mean())

    def dense_fraction(self, above: float) -> float:
        assert self.fired is not None
        return float((self.fired.double() / self.tokens > above).double().mean())

    def density(self, feature: int) -> float:
        assert self.fired is not None
        return float(self.fired[feature]) / self.tokens

    def ce(self, which: str) -> float:
        return self.sum_ce[which] / self.predictions

    @property
    def kl_div(self) -> float:
        return self.sum_kl / self.predictions

    @property
    def ce_loss_score(self) -> float:
        denominator = self.ce("zero") - self.ce("orig")
        return (self.ce("zero") - self.ce("sae")) / denominator if denominator != 0 else float("nan")

    @property
    def delta_loss(self) -> float:
        return self.ce("sae") - self.ce("orig")

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else float("nan")
