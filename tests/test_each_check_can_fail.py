"""The project's own cases use every check, and each check fails when its claim is made impossible (that they pass
as written is what the test command's own run of cases/ shows)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from interp_tests.cases.schema import ALL_CHECKS

from . import checkpoints
from .helpers import ROOT

BUNDLED = sorted((ROOT / "cases").glob("*.yaml"))


def _rt() -> Any:
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.width = 4096
    return yaml


def _occurrences() -> dict[str, tuple[Path, int, int]]:
    """First (file, case index, check index) of every check name in the project's bundled cases."""
    found: dict[str, tuple[Path, int, int]] = {}
    for path in BUNDLED:
        data = _rt().load(path.read_text())
        for i, case in enumerate(data["cases"]):
            for j, exp in enumerate(case["expect"]):
                found.setdefault(next(iter(exp)), (path, i, j))
    return found


OCCURRENCES = _occurrences()


def test_the_bundled_cases_use_every_check() -> None:
    assert sorted(OCCURRENCES) == sorted(ALL_CHECKS)


def _inactive_feature(registry: Any, texts: list[str]) -> int:
    """A feature of the bundled SAE that is zero on every token of `texts`."""
    from interp_tests.cases.schema import SaeRef
    from interp_tests.compute.engine import HookCache, SaeEngine

    sae = registry.sae(SaeRef(release="tiny-stdlib-res", id="blocks.1.hook_resid_pre"))
    eng = SaeEngine(HookCache(registry.model("tiny-stdlib"), "blocks.1.hook_resid_pre", 4096), sae, "bundled")
    import torch

    peak = torch.stack([a.dense().max(0).values for a in eng.acts(texts)]).max(0).values
    return int((peak <= 0).nonzero()[0])


def _texts_of(data: Any, case: Any, params: Any) -> list[str]:
    groups = params.get("on") or case.get("on")
    if groups is not None:
        groups = [groups] if isinstance(groups, str) else list(groups)
        return [t for g in groups for t in data["texts"][g]]
    return [case["text"]] if "text" in case else list(case.get("texts", []))


def _make_impossible(name: str, params: Any, data: Any, case: Any, registry: Any) -> None:
    for key in ("registry", "tolerance", "baseline"):
        params.pop(key, None)
    if name in ("top_k", "most_active"):
        params["feature"] = _inactive_feature(registry, _texts_of(data, case, params))
    elif name == "generates":
        params.pop("none_of", None)
        params["any_of"] = ["zq-never-generated-zq"]
    else:
        impossible = {
            "fires": ("min", 1e9), "silent": ("max", -1.0), "separates": ("min_auroc", 1.01),
            "explained_variance": ("min", 1.01), "explained_variance_legacy": ("min", 1.01), "cosine": ("min", 1.01),
            "mse": ("max", -1.0), "l0": ("min", 1e9), "dead_fraction": ("max", -1.0), "ce_loss_score": ("min", 1e9),
            "delta_loss": ("max", -1e9), "kl_div": ("max", -1.0), "logprob_shift": ("min", 1e9), "kl": ("min", 1e9),
            "dense_fraction": ("max", -1.0), "density": ("max", 0.0), "matched": ("min_cosine", 1.0),
        }[name]
        if name in ("l0", "kl"):
            params.pop("max", None)  # min > max would be a schema error: the huge min alone is impossible
        if name == "density":
            params.pop("min", None)  # a feature that fires is above a density of 0
        params[impossible[0]] = impossible[1]


def test_each_check_fails_with_an_impossible_claim(pytester: pytest.Pytester, interp_registry: Any) -> None:
    """One case per check kind, each a copy of the bundled case that uses the check with that claim made
    impossible, all in one file and one run; `matched` (a claim about a candidate) in a second run."""
    import copy

    yaml = _rt()
    (pytester.path / "cases").mkdir()
    runs: dict[str, list[str]] = {"reference": [], "candidate": []}
    files: dict[str, Any] = {}
    for name in sorted(ALL_CHECKS):
        path, i, j = OCCURRENCES[name]
        data = yaml.load(path.read_text())
        case = copy.deepcopy(data["cases"][i])
        params = case["expect"][j][name]
        _make_impossible(name, params, data, case, interp_registry)
        case["id"] = f"impossible-{name}"
        kind = "candidate" if name == "matched" else "reference"
        key = f"{kind}-{path.stem}"
        if key not in files:
            files[key] = data
            data["cases"] = []
        files[key]["cases"].append(case)
        runs[kind].append(name)
    for key, data in files.items():
        for group in data.get("texts", {}).values():  # a smaller corpus fails the same claims, in a fraction of the time
            if isinstance(group, dict) and "corpus" in group:
                group["corpus"]["tokens"] = 600
        out = io.StringIO()
        yaml.dump(data, out)
        (pytester.path / "cases" / f"{key}.yaml").write_text(out.getvalue())
    noisy = str(checkpoints.save_variant(pytester.path / "noisy", checkpoints.noisy))
    for kind, names in runs.items():
        extra = ["--interp-sae", noisy] if kind == "candidate" else []  # the reference matches itself at cos 1
        result = pytester.runpytest("-p", "no:cacheprovider", *extra, *[f"cases/{k}.yaml" for k in files if k.startswith(kind)])
        report = result.stdout.str()
        result.assert_outcomes(failed=len(names))
        for name in names:
            section = report.split(f"case impossible-{name} ")[1].split("\n_")[0]
            fail_rows = [line for line in section.splitlines() if line.strip().startswith("FAIL ") and f"  {name}" in line]
            assert fail_rows, section
            assert "observed " in fail_rows[0] and "observed -," not in fail_rows[0], fail_rows[0]


STEERING_CASES = [
    (path, i) for path in BUNDLED for i, case in enumerate(_rt().load(path.read_text())["cases"]) if "steer" in case
]


@pytest.mark.parametrize(("path", "index"), STEERING_CASES, ids=[f"{p.stem}-{i}" for p, i in STEERING_CASES])
def test_bundled_steering_cases_depend_on_the_steering(pytester: pytest.Pytester, path: Path, index: int) -> None:
    """The same steering case at strength 0 fails: its verdict comes from the steering, not the prompt."""
    yaml = _rt()
    data = yaml.load(path.read_text())
    data["cases"] = [data["cases"][index]]
    (pytester.path / "cases").mkdir()
    for strength, outcome in ((None, {"passed": 1}), (0.0, {"failed": 1})):
        if strength is not None:
            data["cases"][0]["steer"]["strength"] = strength
        out = io.StringIO()
        yaml.dump(data, out)
        (pytester.path / "cases" / path.name).write_text(out.getvalue())
        pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(**outcome)
