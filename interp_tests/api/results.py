"""`Results`: what `evaluate` returns. Reading only: the run's JSON document (`document`, `to_json()`), whether
it passed (`ok`), its failures, its leaderboard (as dicts, or a pandas DataFrame), and an HTML view for
notebooks. No pytest here."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..common.errors import InputError


@dataclass(frozen=True)
class Failure:
    """One check that failed (or could not be evaluated) on one checkpoint."""

    case_id: str
    check: str
    checkpoint: str
    where: str
    observed: Any
    expected: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.case_id} [{self.checkpoint}] {self.check}: {self.message}"


@dataclass
class Results:
    document: dict[str, Any]  # the run's JSON document (docs/JSON.md)
    failed_writes: bool = False  # a baseline or report could not be written
    problems: list[str] = field(default_factory=list)  # what the run says went wrong besides failing checks
    tasks: list[dict[str, float]] = field(default_factory=list)  # on a Ray cluster: each task's submit-to-start, run and result-transfer seconds

    @property
    def ok(self) -> bool:
        """Every case passed and everything was written."""
        return not self.failed_writes and all(case["ok"] for case in self.document["cases"])

    def failures(self) -> list[Failure]:
        out = []
        for case in self.document["cases"]:
            label = str(case.get("checkpoint") or case.get("sae"))
            for v in [*case.get("verdicts", ()), *case.get("drift", ())]:
                if v.get("ok"):
                    continue
                message = f"could not be evaluated: {v['error']}" if v.get("error") else f"observed {v.get('observed')!r}, expected {v.get('expected')}"
                out.append(Failure(str(case["case_id"]), str(v["check"]), label, str(v["where"]), v.get("observed"), str(v.get("expected")), message))
        return out

    def leaderboard(self) -> list[dict[str, Any]]:
        """One dict per checkpoint (and per (model, hook) it ran at): the leaderboard's rows, with model and hook."""
        return [{"model": board["model"], "hook": board["hook"], **row} for board in self.document["leaderboard"] for row in board["rows"]]

    def checks(self) -> list[dict[str, Any]]:
        """One dict per (case, checkpoint, check): the long form, for filtering and plotting."""
        rows = []
        for case in self.document["cases"]:
            for j, v in enumerate(case.get("verdicts", ())):
                rows.append({
                    "file": case.get("file"), "case_id": case["case_id"], "checkpoint": case.get("checkpoint") or case.get("sae"),
                    "model": case.get("model"), "hook": case.get("hook"), "index": j, "check": v["check"], "ok": v["ok"],
                    "observed": v.get("observed"), "expected": v.get("expected"), "where": v.get("where"), "error": v.get("error") or None,
                })
        return rows

    def to_pandas(self, what: str = "leaderboard") -> Any:
        """A pandas DataFrame of the leaderboard (`what="leaderboard"`) or of every check (`what="checks"`)."""
        try:
            import pandas
        except ImportError:
            raise InputError("Results.to_pandas() needs pandas: pip install pandas") from None
        if what not in ("leaderboard", "checks"):
            raise InputError(f"Results.to_pandas(what={what!r}): what is 'leaderboard' or 'checks'")
        return pandas.DataFrame(self.leaderboard() if what == "leaderboard" else self.checks())

    def to_json(self, indent: int | None = 1) -> str:
        """The run's JSON document, the same as `--interp-json` writes."""
        return json.dumps(self.document, indent=indent, allow_nan=False) + "\n"

    def _repr_html_(self) -> str:
        from ..report.notebook import results_html

        return results_html(self.document, self.failures())

    def __repr__(self) -> str:
        run = self.document["run"]
        return f"<Results: {run['passed']} of {run['cases']} cases passed, {len(self.document['leaderboard'])} leaderboards{'' if self.ok else ', NOT ok'}>"
