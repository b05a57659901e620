"""The one table that maps each check name to the function that runs it. No pytest here.

Every function takes (CheckContext, the check's params) and returns a Verdict.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..cases import schema
from ..common.errors import InterpTestsError
from .context import CheckContext
from .feature_checks import check_density, check_fires, check_most_active, check_separates, check_silent, check_top_k
from .identity_checks import check_matched
from .recon_checks import check_loss, check_reconstruction
from .steering_checks import check_generates, check_kl, check_logprob_shift
from .verdict import Verdict

CheckFunction = Callable[[CheckContext, Any], Verdict]

CHECKS: dict[str, CheckFunction] = {
    "fires": check_fires,
    "silent": check_silent,
    "separates": check_separates,
    "top_k": check_top_k,
    "most_active": check_most_active,
    "density": check_density,
    **{name: check_reconstruction for name in schema.RECONSTRUCTION_CHECKS},
    **{name: check_loss for name in schema.LOSS_CHECKS},
    "logprob_shift": check_logprob_shift,
    "kl": check_kl,
    "generates": check_generates,
    "matched": check_matched,
}


def run_check(ctx: CheckContext) -> Verdict:
    """The check's verdict; one that cannot be evaluated fails alone, with the reason, and the others still run."""
    expectation = ctx.case.expect[ctx.check_index]
    try:
        return CHECKS[expectation.name](ctx, expectation.params)
    except InterpTestsError as exc:
        return Verdict(
            check=expectation.name, where=ctx.where, ok=False, expected="a value", observed=None,
            summary=f"could not be evaluated: {exc}", error=str(exc),
        )
