"""95% intervals for dataset-level values: a bootstrap over windows (a corpus) or texts (a case's texts). No pytest.

Tokens in one window are correlated (one document, one context), so the unit resampled is the window (or the
text), never the token. During the pass each window adds its own sums (`UnitSums`: tokens, squared error,
the activations' sum and sum of squares, cosines, active features, the loss sums, which features fired how
often); a resample is a vector of counts c (how often each window was drawn, `RESAMPLES` draws of
multinomial(W, 1/W) from a generator seeded `SEED`), and every statistic of a resample is the statistic's own
formula on the weighted sums c @ sums. So the intervals cost matrix products over per-window numbers, not
another pass, and a resample's value is exactly what the pass would give on that multiset of windows.

The interval is the percentile interval (2.5% and 97.5% quantiles of the resampled values), shifted by the
resamples' median bias (`percentile`). Approximations, each stated where it is used:
- the legacy explained variance keeps the full corpus's mean as its centre (its per-token terms are taken
  against it once the pass knows it);
- `dead_fraction`: a feature that fired in K or more windows counts as alive in every resample (the chance
  that a resample misses all K windows is about e^-K; K = 40);
- `dense_fraction`: a feature whose firing frequency is more than 8 standard errors (the ratio estimator's,
  over windows) from the threshold keeps its side in every resample.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

RESAMPLES = 1000
SEED = 0
LEVEL = 0.95
ALIVE_WINDOWS = 40  # a feature firing in this many windows is alive in every resample (miss chance ~e^-40)
DENSE_MARGIN_SE = 8.0  # a feature this many standard errors from the dense threshold keeps its side


@dataclass
class UnitSums:
    """Per-unit (window or text) sums of one SAE's statistics, in float64, appended batch by batch."""

    d_sae: int
    tokens: list[Any] = field(default_factory=list)  # chunks of [units]
    sse: list[Any] = field(default_factory=list)
    sxx: list[Any] = field(default_factory=list)
    sx: list[Any] = field(default_factory=list)  # chunks of [units, d]
    cos: list[Any] = field(default_factory=list)
    active: list[Any] = field(default_factory=list)
    legacy: list[Any] = field(default_factory=list)
    predictions: list[Any] = field(default_factory=list)
    ce: dict[str, list[Any]] = field(default_factory=lambda: {"orig": [], "sae": [], "zero": []})
    kl: list[Any] = field(default_factory=list)
    fired_unit: list[Any] = field(default_factory=list)  # sparse (unit, feature, count): which features fired how often
    fired_feature: list[Any] = field(default_factory=list)
    fired_count: list[Any] = field(default_factory=list)
    units: int = 0
    _joined: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ adding
    def add(self, x: torch.Tensor, x_hat: torch.Tensor, feats: torch.Tensor, unit: torch.Tensor, n_units: int,
            x_part: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> None:
        """One batch: the tokens that count (x, x_hat [n, d], feats [n, d_sae] float) and each token's unit
        index within the batch (`unit` [n], 0 .. n_units-1). Units of later batches follow. `x_part` is
        `x_sums(x, ...)` when SAEs reading the same activations share it (it is then held once)."""
        import torch

        x64, xh64 = x.double(), x_hat.double()

        def per_unit(values: torch.Tensor) -> torch.Tensor:
            return torch.zeros((n_units, *values.shape[1:]), dtype=torch.float64, device=values.device).index_add_(0, unit, values.double())

        tokens, sxx, sx = x_part if x_part is not None else x_sums(x, unit, n_units)
        self.tokens.append(tokens)
        self.sxx.append(sxx)
        self.sx.append(sx)
        self.sse.append(per_unit((x64 - xh64).pow(2).sum(-1)))
        self.cos.append(per_unit(torch.nn.functional.cosine_similarity(x64, xh64, dim=-1)))
        active = feats > 0
        self.active.append(per_unit(active.sum(-1)))
        counts = torch.zeros((n_units, feats.shape[-1]), dtype=torch.int32, device=feats.device).index_add_(0, unit, active.to(torch.int32))
        u, f = counts.nonzero(as_tuple=True)
        self.fired_unit.append((u + self.units).to(torch.int64))
        self.fired_feature.append(f.to(torch.int64))
        self.fired_count.append(counts[u, f].to(torch.float64))
        self.units += n_units
        self._joined.clear()

    def add_legacy(self, terms: torch.Tensor, unit: torch.Tensor, n_units: int, offset: int) -> None:
        """The legacy explained variance's per-token terms of one batch (`offset`: its first window), in order:
        from the inputs kept through the pass, or from the second pass."""
        import torch

        if offset == 0:
            self.legacy.clear()
        self.legacy.append(torch.zeros(n_units, dtype=torch.float64, device=terms.device).index_add_(0, unit, terms.double()))
        self._joined.pop("legacy", None)

    def add_loss(self, ce: dict[str, torch.Tensor], kl: torch.Tensor, unit: torch.Tensor, n_units: int) -> None:
        """Per-prediction CE (orig, sae, zero) and KL of one batch, with each prediction's unit."""
        import torch

        def per_unit(values: torch.Tensor) -> torch.Tensor:
            return torch.zeros(n_units, dtype=torch.float64, device=values.device).index_add_(0, unit, values.double())

        self.predictions.append(per_unit(torch.ones_like(kl, dtype=torch.float64)))
        for k in self.ce:
            self.ce[k].append(per_unit(ce[k]))
        self.kl.append(per_unit(kl))
        self._joined.clear()

    # ------------------------------------------------------------------ reading
    def column(self, name: str) -> torch.Tensor:
        import torch

        if name not in self._joined:
            parts = self.ce[name[3:]] if name.startswith("ce_") else getattr(self, name)
            self._joined[name] = torch.cat([p.cpu() for p in parts]) if parts else torch.zeros(0, dtype=torch.float64)
        return self._joined[name]  # type: ignore[no-any-return]

    def fired(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        import torch

        if "fired" not in self._joined:
            self._joined["fired"] = tuple(torch.cat([p.cpu() for p in parts]) for parts in (self.fired_unit, self.fired_feature, self.fired_count))
        return self._joined["fired"]  # type: ignore[no-any-return]


def x_sums(x: torch.Tensor, unit: torch.Tensor, n_units: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(tokens, sum ||x||^2, sum x) per unit: what depends on the activations only, not on the SAE."""
    import torch

    x64 = x.double()
    zeros = torch.zeros(n_units, dtype=torch.float64, device=x.device)
    return (
        zeros.clone().index_add_(0, unit, torch.ones_like(unit, dtype=torch.float64)),
        zeros.clone().index_add_(0, unit, x64.pow(2).sum(-1)),
        torch.zeros((n_units, x.shape[-1]), dtype=torch.float64, device=x.device).index_add_(0, unit, x64),
    )


KEPT_COUNTS_BYTES = 16 << 20  # resample matrices up to this size (2,000 windows) are built once per (units, resamples, seed)


def resample_counts(units: int, resamples: int = RESAMPLES, seed: int = SEED) -> torch.Tensor:
    """[resamples, units] float64: how often each unit is drawn in each resample (multinomial, seeded). Every
    value of a corpus resamples the same units with the same seed: the matrix is built once and shared (up to
    KEPT_COUNTS_BYTES), so callers read it and never change it."""
    if resamples * units * 8 <= KEPT_COUNTS_BYTES:
        return _kept_counts(units, resamples, seed)
    return _counts(units, resamples, seed)


def _counts(units: int, resamples: int, seed: int) -> torch.Tensor:
    import torch

    g = torch.Generator().manual_seed(seed)
    draws = torch.randint(0, units, (resamples, units), generator=g)
    return torch.zeros(resamples, units, dtype=torch.float64).scatter_add_(1, draws, torch.ones(resamples, units, dtype=torch.float64))


_kept_counts = functools.lru_cache(maxsize=4)(_counts)


def every_unit_once(units: int) -> torch.Tensor:
    """[1, units] of ones: the one "resample" that is the data itself (the observed value)."""
    import torch

    return torch.ones(1, units, dtype=torch.float64)


def percentile(values: torch.Tensor, level: float = LEVEL, observed: float | None = None) -> tuple[float, float]:
    """The 2.5% and 97.5% quantiles of the resampled values; with `observed`, shifted by the resamples' median
    bias (median - observed), so that a statistic that resampling biases (a dead fraction: a resample holds
    about 63% of the distinct windows) gets an interval around its own value. For an unbiased statistic the
    shift is about zero."""
    import torch

    finite = values[torch.isfinite(values)]
    if finite.numel() == 0:
        return math.nan, math.nan
    q = torch.tensor([(1 - level) / 2, 0.5, 1 - (1 - level) / 2], dtype=torch.float64)
    lo, median, hi = torch.quantile(finite, q).tolist()
    shift = median - observed if observed is not None and math.isfinite(observed) else 0.0
    return float(lo - shift), float(hi - shift)


def resampled(sums: UnitSums, name: str, counts: torch.Tensor, **params: Any) -> torch.Tensor:
    """The statistic `name` on each resample ([resamples] float64), from the per-unit sums."""
    import torch

    c = counts
    n = c @ sums.column("tokens")
    if name == "explained_variance":
        sx = c @ sums.column("sx")
        total = c @ sums.column("sxx") - sx.pow(2).sum(-1) / n
        return 1.0 - (c @ sums.column("sse")) / total
    if name == "explained_variance_legacy":
        return (c @ sums.column("legacy")) / n
    if name == "mse":
        return (c @ sums.column("sse")) / (n * sums.column("sx").shape[-1])
    if name == "cosine":
        return (c @ sums.column("cos")) / n
    if name == "l0":
        return (c @ sums.column("active")) / n
    if name in ("ce_loss_score", "delta_loss", "kl_div", "ce_orig", "ce_sae", "ce_zero"):
        p = c @ sums.column("predictions")
        ce = {k: (c @ sums.column(f"ce_{k}")) / p for k in ("orig", "sae", "zero")}
        if name == "kl_div":
            return (c @ sums.column("kl")) / p
        if name == "delta_loss":
            return ce["sae"] - ce["orig"]
        if name == "ce_loss_score":
            return (ce["zero"] - ce["sae"]) / (ce["zero"] - ce["orig"])
        return ce[name[3:]]
    unit, feature, count = sums.fired()
    if name == "density":
        f = int(params["feature"])
        mine = feature == f
        per_unit = torch.zeros(sums.units, dtype=torch.float64).index_add_(0, unit[mine], count[mine])
        return (c @ per_unit) / n
    if name == "dead_fraction":
        windows_fired = torch.zeros(sums.d_sae, dtype=torch.int64).index_add_(0, feature, torch.ones_like(feature))
        dead_everywhere = int((windows_fired == 0).sum())
        rare = ((windows_fired > 0) & (windows_fired < ALIVE_WINDOWS)).nonzero().flatten()
        dead = torch.full((c.shape[0],), float(dead_everywhere), dtype=torch.float64)
        if rare.numel():
            hits = unit_by_feature(sums, unit, feature, torch.ones_like(count), rare)
            dead += ((c @ hits) == 0).sum(-1).double()
        return dead / sums.d_sae
    if name == "dense_fraction":
        above = float(params["above"])
        n_all = float(sums.column("tokens").sum())
        totals = torch.zeros(sums.d_sae, dtype=torch.float64).index_add_(0, feature, count)
        freq = totals / n_all
        # the ratio estimator's standard error over units (linearised): sum_w (count_wf - freq_f n_w)^2
        n_w = sums.column("tokens")
        sq = torch.zeros(sums.d_sae, dtype=torch.float64).index_add_(0, feature, count.pow(2))
        cross = torch.zeros(sums.d_sae, dtype=torch.float64).index_add_(0, feature, count * n_w[unit])
        var = (sq - 2 * freq * cross + freq.pow(2) * float(n_w.pow(2).sum())).clamp_min(0)
        se = var.sqrt() / n_all
        settled_dense = int(((freq - above) > DENSE_MARGIN_SE * se).sum())
        open_ = ((freq - above).abs() <= DENSE_MARGIN_SE * se).nonzero().flatten()
        dense = torch.full((c.shape[0],), float(settled_dense), dtype=torch.float64)
        if open_.numel():
            per_unit = unit_by_feature(sums, unit, feature, count, open_)
            dense += (((c @ per_unit) / n[:, None]) > above).sum(-1).double()
        return dense / sums.d_sae
    raise KeyError(name)


INTERVAL_CHECKS = frozenset({
    "explained_variance", "explained_variance_legacy", "mse", "cosine", "l0", "dead_fraction", "dense_fraction", "density",
    "ce_loss_score", "delta_loss", "kl_div",
})


def unit_by_feature(sums: UnitSums, unit: torch.Tensor, feature: torch.Tensor, values: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
    """[units, len(selected)] float64: the sparse (unit, feature, value) firings of the selected features,
    dense (the few features whose resamples are counted one by one)."""
    import torch

    index = torch.full((sums.d_sae,), -1, dtype=torch.int64)
    index[selected] = torch.arange(selected.numel())
    mine = index[feature] >= 0
    out = torch.zeros(sums.units, selected.numel(), dtype=torch.float64)
    out[unit[mine], index[feature[mine]]] = values[mine]
    return out


def interval(sums: UnitSums, name: str, **params: Any) -> tuple[float, float] | None:
    """The statistic's 95% percentile-bootstrap interval over units; None with fewer than 2 units (or for a
    value without one)."""
    if name not in INTERVAL_CHECKS or sums.units < 2:
        return None
    if name == "explained_variance_legacy" and not sums.legacy:
        return None
    if name in ("ce_loss_score", "delta_loss", "kl_div") and not sums.predictions:
        return None
    whole = every_unit_once(sums.units)
    observed = float(resampled(sums, name, whole, **params)[0])
    return percentile(resampled(sums, name, resample_counts(sums.units), **params), observed=observed)


def difference_interval(candidate: UnitSums, reference: UnitSums, name: str, **params: Any) -> tuple[float, float] | None:
    """The paired interval of candidate - reference, both measured on the same units (the same windows): each
    resample draws the same units for both."""
    if name not in INTERVAL_CHECKS or candidate.units < 2 or candidate.units != reference.units:
        return None
    counts = resample_counts(candidate.units)
    whole = every_unit_once(candidate.units)
    observed = float(resampled(candidate, name, whole, **params)[0] - resampled(reference, name, whole, **params)[0])
    return percentile(resampled(candidate, name, counts, **params) - resampled(reference, name, counts, **params), observed=observed)


def observed_value(sums: UnitSums, name: str, **params: Any) -> float:
    """The statistic on every unit once: the value the pass reports."""
    return float(resampled(sums, name, every_unit_once(sums.units), **params)[0])
