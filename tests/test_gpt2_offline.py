"""The GPT-2 small suite (cases/gpt2-small/) runs end to end from a local hub cache, without network.

A fake cache (tests/fakehub.py: GPT-2's real tokenizer, tiny random weights of the real layout, and the
`gpt2-small-res-jb` SAEs at layers 0, 8, 10) stands in for the hub. pytest runs the case files in a
subprocess, because huggingface_hub reads HF_HUB_OFFLINE and HF_HUB_CACHE when it is imported. The
weights are meaningless, so these tests assert loading and verdict mechanics, not the published values.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

from .fakehub import build_fake_hub
from .helpers import ROOT

pytestmark = pytest.mark.slow  # builds a local hub cache and runs the suite in a subprocess
SUITE = ROOT / "cases" / "gpt2-small"
FILES = ("reconstruction.yaml", "golden-gate.yaml", "code-feature.yaml", "layers.yaml")
# case id -> the checks it runs; layers.yaml runs its case once per SAE
EXPECTED = {
    "reconstruction.yaml": {"sparsity-and-reconstruction": {"l0", "explained_variance", "mse"}},
    "golden-gate.yaml": {
        "gg-fires-on-related-texts": {"fires"},
        "gg-silent-on-unrelated-texts": {"silent"},
        "gg-separates-related-from-unrelated": {"separates"},
        "gg-is-a-top-feature-on-bridge": {"top_k"},
        "steer-toward-golden-gate": {"kl", "generates"},
    },
    "code-feature.yaml": {
        "code-feature-fires-on-code": {"fires"},
        "code-feature-separates-code-from-prose": {"separates"},
    },
}
LAYER_IDS = [f"gpt2-small-res-jb/blocks.{n}.hook_resid_pre" for n in (0, 8, 10)]
LAYER_CHECKS = {"l0", "explained_variance", "mse"}


@dataclass(frozen=True)
class Run:
    rc: int
    output: str
    seconds: float  # the pytest session's time as junit reports it (interpreter start-up excluded)
    cases: dict[tuple[str, str], ET.Element]  # (file name, test name) -> <testcase>


def start_suite(cache: Path, junit: Path, files: list[str], preimport: bool = False, flag: bool = False) -> subprocess.Popen[str]:
    """pytest on `files` in a subprocess that sees only the cache at `cache`, offline. With `preimport`,
    torch/transformer_lens/sae_lens are imported before the session starts, so that the session's time
    (junit) is the time spent loading and checking, without the ~10 s of imports. With `flag`, offline
    comes from --interp-offline alone (after huggingface_hub was imported, when preimport is set)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "HF_", "TRANSFORMERS_"))}
    env |= {"HF_HUB_CACHE": str(cache), "HF_HUB_DISABLE_TELEMETRY": "1"} | ({} if flag else {"HF_HUB_OFFLINE": "1"})
    runner = ["-c", "import sys, sae_lens, pytest; sys.exit(pytest.main(sys.argv[1:]))"] if preimport else ["-m", "pytest"]
    args = [sys.executable, *runner, *files, "-p", "no:cacheprovider", "--interp-device", "cpu", f"--junitxml={junit}", "-rA"]
    args += ["--interp-offline"] if flag else []
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish_suite(proc: subprocess.Popen[str], junit: Path) -> Run:
    try:
        output, _ = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        pytest.fail(f"pytest on the gpt2-small suite ran over 600 s:\n{output[-3000:]}")
    assert junit.is_file(), f"no junit xml (exit {proc.returncode}):\n{output[-3000:]}"
    root = ET.parse(junit).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    assert suite is not None, ET.tostring(root)[:500]
    cases = {}
    for tc in suite.iter("testcase"):
        file = tc.get("classname", "").rsplit(".", 2)[-2] + ".yaml"  # cases.gpt2-small.NAME.yaml
        cases[(file, tc.get("name", ""))] = tc
    return Run(proc.returncode, output, float(suite.get("time", "nan")), cases)


def properties(tc: ET.Element) -> dict[str, str]:
    return {p.get("name", ""): p.get("value", "") for p in tc.iter("property")}


def outcome(tc: ET.Element) -> str:
    for kind in ("error", "failure", "skipped"):
        if tc.find(kind) is not None:
            return kind
    return "passed"


def expected_items() -> dict[tuple[str, str], set[str]]:
    items = {(f, case): checks for f, cases in EXPECTED.items() for case, checks in cases.items()}
    items |= {("layers.yaml", f"sparsity-and-reconstruction[{sae}]"): LAYER_CHECKS for sae in LAYER_IDS}
    return items


@pytest.fixture(scope="session")
def fake_hub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fake_hub(tmp_path_factory.mktemp("hf-hub"))


@pytest.fixture(scope="session")
def runs(fake_hub: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """The suite on the fake cache, and two of its files on an empty cache, run side by side."""
    out = tmp_path_factory.mktemp("runs")
    empty = out / "empty-hub"
    empty.mkdir()
    started = {
        "fake": start_suite(fake_hub, out / "fake.xml", [str(SUITE / f) for f in FILES]),
        "empty": start_suite(
            empty, out / "empty.xml", [str(SUITE / "reconstruction.yaml"), str(SUITE / "layers.yaml")], preimport=True, flag=True
        ),
    }
    return {name: finish_suite(proc, out / f"{name}.xml") for name, proc in started.items()}


@pytest.fixture(scope="session")
def suite_run(runs: dict[str, Run]) -> Run:
    return runs["fake"]


def test_fake_hub_has_the_real_cache_layout(fake_hub: Path) -> None:
    for repo, files in {
        "models--gpt2": ["config.json", "model.safetensors", "tokenizer.json", "vocab.json", "merges.txt"],
        "models--jbloom--GPT2-Small-SAEs-Reformatted": [
            f"blocks.{n}.hook_resid_pre/{f}"
            for n in (0, 8, 10)
            for f in ("cfg.json", "sae_weights.safetensors", "sparsity.safetensors")
        ],
    }.items():
        rev = (fake_hub / repo / "refs" / "main").read_text()
        missing = [f for f in files if not (fake_hub / repo / "snapshots" / rev / f).is_file()]
        assert not missing, f"{repo}@{rev} lacks {missing}"
    # GPT-2's own ids (" Bridge" is one token), from the tokenizer.json that transformers reads
    from tokenizers import Tokenizer

    rev = (fake_hub / "models--gpt2" / "refs" / "main").read_text()
    tok = Tokenizer.from_file(str(fake_hub / "models--gpt2" / "snapshots" / rev / "tokenizer.json"))
    encoded = tok.encode("The Golden Gate Bridge")
    assert (encoded.tokens, encoded.ids) == (["The", "ĠGolden", "ĠGate", "ĠBridge"], [464, 8407, 12816, 10290])


def test_every_case_is_collected_and_runs(suite_run: Run) -> None:
    got = {key: outcome(tc) for key, tc in suite_run.cases.items()}
    assert set(got) == set(expected_items()), f"collected {sorted(got)}\n{suite_run.output[-3000:]}"
    not_run = {k: v for k, v in got.items() if v not in ("passed", "failure")}
    assert not not_run, f"cases that did not run to a verdict: {not_run}\n{suite_run.output[-3000:]}"
    for bad in ("cannot load", "internal error", "Traceback"):
        assert bad not in suite_run.output, f"{bad!r} in the output:\n{suite_run.output[-3000:]}"
    assert "loaded model:gpt2-small x1" in suite_run.output, "the model must load once for the whole suite"


def test_every_check_records_its_observed_value(suite_run: Run) -> None:
    for key, checks in expected_items().items():
        props = properties(suite_run.cases[key])
        for check in checks:
            value = props.get(f"{check}.observed")
            assert value not in (None, "", "none"), f"{key}: no {check}.observed property (has {sorted(props)})"
            if check != "generates":
                assert math.isfinite(float(value)), f"{key}: {check}.observed = {value!r}"


def test_top_k_finds_the_bridge_token(suite_run: Run) -> None:
    tc = suite_run.cases[("golden-gate.yaml", "gg-is-a-top-feature-on-bridge")]
    observed = properties(tc).get("top_k.observed")  # the worst rank of gg at " Bridge": 1 = most active
    assert observed not in (None, "none"), f"top_k.observed = {observed!r}"
    rank = float(observed)
    assert rank.is_integer() and 1 <= rank <= 24576, f"top_k.observed = {observed!r} is not a rank among 24,576 features"
    failure = tc.find("failure")
    report = "" if failure is None else (failure.get("message", "") + (failure.text or ""))
    assert "does not occur" not in report and "token missing" not in report, report
    # the verdict agrees with the rank: k is 3 in golden-gate.yaml (random weights decide which side it falls on)
    top_k_line = next((line for line in report.splitlines() if "  top_k [" in line), "")
    if rank <= 3:
        assert not top_k_line.lstrip().startswith("FAIL"), report
    else:
        assert top_k_line.lstrip().startswith("FAIL") and f"observed {rank:.4f}" in top_k_line, report


def test_saes_list_runs_each_case_once_per_layer(suite_run: Run) -> None:
    names = sorted(name for (file, name) in suite_run.cases if file == "layers.yaml")
    assert names == sorted(f"sparsity-and-reconstruction[{sae}]" for sae in LAYER_IDS)


def test_without_the_cache_cases_fail_fast_and_say_why(runs: dict[str, Run]) -> None:
    run = runs["empty"]
    assert run.rc == 1, run.output[-3000:]  # failed tests, not a usage or internal error
    # a load that waits on the network (timeouts, retries) takes 10-20 s or more; offline, 3 SAEs fail at once
    assert run.seconds < 20, f"took {run.seconds:.1f}s (imports excluded): offline loads must not retry\n{run.output[-2000:]}"
    assert len(run.cases) == 4 and all(outcome(tc) == "failure" for tc in run.cases.values()), run.output[-3000:]
    for (file, name), tc in run.cases.items():
        failure = tc.find("failure")
        assert failure is not None
        report = failure.get("message", "") + (failure.text or "")
        sae_id = name.split("/")[-1].rstrip("]") if "[" in name else "blocks.8.hook_resid_pre"
        for needed in ("gpt2-small-res-jb", sae_id, "HF_HUB_OFFLINE", "HF_HUB_CACHE"):
            assert needed in report, f"{file}::{name}: {needed!r} not in the failure:\n{report}"
        assert "Traceback" not in report, report
