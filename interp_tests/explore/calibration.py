"""`interp-tests calibrate`: what tolerance a token budget supports. No pytest here.

The case file's dataset-level checks run as in a test run (its SAE, or `--sae` in its place), and each value
is given with its 95% interval (compute/bootstrap.py). From the interval's half-width h at N tokens, and the
interval's 1/sqrt(N) scaling (the measured values are means over windows):
- the budget at which the half-width is a drift d:                 N (h / d)^2;
- the budget at which a drift d between two checkpoints is detected with 80% power at the 5% level:
  unpaired (two independent measurements, each as noisy as this one)  N (2.8 sqrt(2) se / d)^2, se = h / 1.96;
  paired (with --sae: the candidate against the case file's SAE on the same windows, from the interval of
  their difference)                                                   N (2.8 se_diff / d)^2.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..common.errors import InputError

Z95, Z80 = 1.959963984540054, 0.8416212335729143
SCORES = frozenset({"explained_variance", "explained_variance_legacy", "cosine", "ce_loss_score", "dead_fraction", "dense_fraction"})
DEFAULT_SCORE_DRIFT = 0.005  # bounded scores: an absolute drift
DEFAULT_RELATIVE_DRIFT = 0.01  # the other values: a drift of 1% of the observed value


@dataclass(frozen=True)
class Calibrated:
    case_id: str
    check: str
    where: str
    sae: str
    observed: float
    interval: tuple[float, float]
    tokens: int  # the budget that measured it (tokens of the corpus, or of the case's texts)
    drift: float
    paired_se: float | None = None  # with a candidate: the se of candidate - reference on the same units

    @property
    def half_width(self) -> float:
        return (self.interval[1] - self.interval[0]) / 2

    def tokens_for_half_width(self) -> int | None:
        return budget(self.tokens, self.half_width, self.drift)

    def tokens_to_detect_unpaired(self) -> int | None:
        return budget(self.tokens, (Z95 + Z80) * math.sqrt(2) * self.half_width / Z95, self.drift)

    def tokens_to_detect_paired(self) -> int | None:
        return None if self.paired_se is None else budget(self.tokens, (Z95 + Z80) * self.paired_se, self.drift)

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out |= {"half_width": self.half_width, "tokens_for_half_width": self.tokens_for_half_width(),
                "tokens_to_detect_unpaired": self.tokens_to_detect_unpaired(), "tokens_to_detect_paired": self.tokens_to_detect_paired()}
        return out


def budget(tokens: int, spread: float, drift: float) -> int | None:
    """Tokens at which `spread` (measured at `tokens`, shrinking as 1/sqrt(tokens)) equals `drift`; None when
    that is undefined (a drift of 0, as 1% of an observed 0, or a spread that is not finite)."""
    if not drift > 0 or not math.isfinite(spread) or not math.isfinite(drift):
        return None
    return max(1, math.ceil(tokens * (spread / drift) ** 2))


def drift_for(check: str, observed: float, given: dict[str, float]) -> float:
    if check in given:
        return given[check]
    return DEFAULT_SCORE_DRIFT if check in SCORES else abs(observed) * DEFAULT_RELATIVE_DRIFT


def parse_drifts(values: list[str]) -> dict[str, float]:
    """`--drift CHECK=VALUE` (repeatable), or `--drift VALUE` for every check."""
    from ..compute.bootstrap import INTERVAL_CHECKS

    out: dict[str, float] = {}
    for value in values:
        name, sep, number = value.rpartition("=")
        try:
            x = float(number)
        except ValueError:
            x = float("nan")
        if not x > 0 or not math.isfinite(x):
            raise InputError(f"Could not parse value: {value!r} for --drift: give CHECK=DRIFT or DRIFT, a number > 0 (e.g. explained_variance=0.005)")
        if not sep:
            out.update(dict.fromkeys(INTERVAL_CHECKS, x))
        elif name not in INTERVAL_CHECKS:
            raise InputError(f"--drift {value}: {name!r} has no interval; the checks that have one: {', '.join(sorted(INTERVAL_CHECKS))}")
        else:
            out[name] = x
    return out


def calibrate(case_file: Path, sae: str | None, drifts: dict[str, float], device: str = "cpu", dtype: str = "float32") -> list[Calibrated]:
    """Run the case file's checks that have an interval and calibrate each value."""
    from ..cases.casefile import load_case_file
    from ..compute.bootstrap import INTERVAL_CHECKS
    from ..run.candidates import expand
    from ..run.options import Options
    from ..run.plans import case_plans
    from ..run.session import Session

    spec = load_case_file(case_file, case_file)
    try:
        candidates = expand([sae], Path.cwd()) if sae else ()
    except ValueError as exc:
        raise InputError(f"--sae: {exc}") from None
    session = Session(Options(device=device, dtype=dtype, candidates=candidates, compare=bool(candidates), tolerance="auto" if candidates else None))
    plans = [plan for _, plan in case_plans(session, spec, case_file) if any(e.name in INTERVAL_CHECKS for e in plan.case.expect)]
    if not plans:
        raise InputError(f"{case_file}: no case has a check with an interval ({', '.join(sorted(INTERVAL_CHECKS))})")
    out: list[Calibrated] = []
    seen: set[tuple[Any, ...]] = set()
    for i in session.prepare(plans):
        plan = plans[i]
        outcome = session.compute(plan)
        if outcome.problem is not None or outcome.result is None:
            raise InputError(outcome.problem or f"case {plan.case_id!r} did not run")
        for verdict in outcome.result.verdicts:
            if verdict.interval is None or not isinstance(verdict.observed, (int, float)):
                continue
            key = (plan.case_id, plan.target.checkpoint, verdict.check, float(verdict.observed), verdict.interval)
            if key in seen:  # the same value claimed twice (a bound and a registry comparison): calibrated once
                continue
            seen.add(key)
            out.append(Calibrated(
                plan.case_id, verdict.check, verdict.where, plan.target.checkpoint, float(verdict.observed), verdict.interval,
                tokens_of(verdict), drift_for(verdict.check, float(verdict.observed), drifts), paired_se(verdict),
            ))
    session.close()
    return out


def tokens_of(verdict: Any) -> int:
    extra = dict(verdict.extra)
    if "corpus_tokens" in extra:
        return int(extra["corpus_tokens"])
    digits = verdict.summary.split(" tokens of ")[0].rsplit("(", 1)[-1]  # "(123 tokens of 4 texts)"
    return int(digits) if digits.isdigit() else 0


def paired_se(verdict: Any) -> float | None:
    if verdict.paired is None:
        return None
    _, lo, hi = verdict.paired
    return (hi - lo) / (2 * Z95)


def render(rows: list[Calibrated]) -> str:
    case_w = max([4, *(len(r.case_id) for r in rows)])
    check_w = max([5, *(len(r.check) for r in rows)])

    def count(n: int | None, width: int) -> str:
        return f"{'-' if n is None else 'any' if n <= 1 else format(n, ','):>{width}}"

    lines = [
        "95% intervals (bootstrap over windows or texts) and the token budgets a drift needs (80% power, 5% level):",
        f"  {'case':<{case_w}}  {'check':<{check_w}} {'observed':>10}  {'95% CI':<21} {'+/- now':>8} {'tokens':>9}  {'drift':>8}  {'+/- = drift at':>15}  {'detect, unpaired':>16}  {'detect, paired':>14}",
    ]
    for r in rows:
        ci = f"[{r.interval[0]:.4f}, {r.interval[1]:.4f}]"
        lines.append(
            f"  {r.case_id:<{case_w}}  {r.check:<{check_w}} {r.observed:>10.4f}  {ci:<21} {r.half_width:>8.4f} {r.tokens:>9,}  {r.drift:>8.4g}  "
            f"{count(r.tokens_for_half_width(), 15)}  {count(r.tokens_to_detect_unpaired(), 16)}  {count(r.tokens_to_detect_paired(), 14)}"
        )
    lines.append("(drift: --drift CHECK=VALUE; by default 0.005 for bounded scores, 1% of the value for the others; paired needs --sae;"
                 " any: the value does not vary between windows, or paired, the two SAEs give the same value on every window)")
    return "\n".join(lines) + "\n"
