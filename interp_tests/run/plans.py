"""Which cases run against what: every case of a case file, on each of its SAEs, or on each `--interp-sae`
candidate in their place, with the name the run gives it. No pytest here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..cases.casefile import CaseFile
from ..cases.plan import CasePlan, resolve_sae

if TYPE_CHECKING:
    from .session import Session


def case_plans(session: Session, spec: CaseFile, path: Path) -> Iterator[tuple[str, CasePlan]]:
    """(name, plan) of every case run: `case-id`, `case-id[SAE]` when the file names several SAEs, and
    `...[LABEL]` on a candidate (`claims.yaml::case-id[LABEL]`, so `-k LABEL` selects a checkpoint)."""
    saes = spec.model.target.sae_list
    for i, case in enumerate(spec.model.cases):
        for ref in saes:
            for key in session.targets(spec.model.target, resolve_sae(ref, path.parent)):
                name = case.id if len(saes) == 1 else f"{case.id}[{ref.label}]"
                if key.reference is not None:
                    name += f"[{key.checkpoint}]"
                yield name, CasePlan(spec, i, key, path, ref.label)
