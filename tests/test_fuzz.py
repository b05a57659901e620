"""Fuzzing the collection path in-process: mutated case files either load or raise CaseFileError whose every
line is `path:line: ...`; any other exception is an internal error and fails the test (with its input).

A seeded mutator over the project's case files and docs/CASES.md's example: 200 inputs in the normal run; `pytest -m fuzz tests/test_fuzz.py` runs 10,000 (INTERP_FUZZ_N to change it).
"""

from __future__ import annotations

import os
import random
import re
import time
from pathlib import Path

import pytest

from interp_tests.common.echo import echo

from .helpers import ROOT

SEEDS = [p.read_text() for p in sorted((ROOT / "cases").rglob("*.yaml"))]
SEEDS.append(re.search(r"```yaml\n(.*?)```", (ROOT / "docs" / "CASES.md").read_text(), re.S).group(1))  # type: ignore[union-attr]

SCALARS = [
    "", "0", "-1", "1e400", ".nan", ".inf", "-.inf", "true", "null", "~", "[]", "{}", "'x'", '"\\x01"', "!!float abc", "!!int abc",
    "!!bool maybe", "!!python/object/apply:os.system [ls]", "!!binary aGk=", "*missing", "&a x", "<<: *a", "'" + "a" * 5000 + "'",
    "10000000000000000000000000", "[[[[[[[[[[", "{a: {b: {c: [1, 2, {d: e}]}}}", "\x01", "\ufffe", "é", "'\\ud800'", "?", "- - -",
]


def mutate(text: str, rng: random.Random) -> str:
    lines = text.splitlines()
    for _ in range(rng.randint(1, 4)):
        if not lines:
            lines = [""]
        i = rng.randrange(len(lines))
        op = rng.randrange(10)
        if op == 0:
            del lines[i]
        elif op == 1:
            lines.insert(i, lines[rng.randrange(len(lines))])
        elif op == 2:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == 3 and ":" in lines[i]:  # replace a value
            key = lines[i].split(":", 1)[0]
            lines[i] = f"{key}: {rng.choice(SCALARS)}"
        elif op == 4:  # replace a token inside the line
            tokens = re.split(r"(\W)", lines[i])
            tokens[rng.randrange(len(tokens))] = rng.choice(SCALARS)
            lines[i] = "".join(tokens)
        elif op == 5:  # indentation
            lines[i] = " " * rng.choice([0, 1, 3, 8]) + lines[i].lstrip() if rng.random() < 0.8 else "\t" + lines[i]
        elif op == 6:  # anchors and aliases
            lines.insert(i, rng.choice(["x: &a [1, 2, 3]", "y: [*a, *a, *a, *a]", "<<: *a", "z: &b {<<: *a}", "w: *b"]))
        elif op == 7:  # nesting
            depth = rng.choice([10, 60, 300])
            lines.insert(i, "deep: " + "[" * depth + "]" * depth)
        elif op == 8:  # truncate
            return "\n".join(lines[:i]) + "\n" + lines[i][: rng.randrange(len(lines[i]) + 1)]
        else:  # random bytes-ish characters
            chars = [chr(rng.randrange(1, 0x3000)) for _ in range(rng.randint(1, 5))]
            pos = rng.randrange(len(lines[i]) + 1)
            lines[i] = lines[i][:pos] + "".join(chars) + lines[i][pos:]
    return "\n".join(lines) + "\n"


def check_inputs(n: int, seed: int, tmp_path: Path) -> tuple[int, int]:
    from interp_tests.cases.casefile import load_case_file
    from interp_tests.common.errors import CaseFileError

    rng = random.Random(seed)
    path = tmp_path / "fuzzed.yaml"
    loaded = rejected = 0
    for k in range(n):
        text = mutate(rng.choice(SEEDS), rng)
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            load_case_file(path)
            loaded += 1
        except CaseFileError as exc:
            rejected += 1
            bad = [line for line in str(exc).splitlines() if not re.match(rf"^{re.escape(str(path))}:\d+: ", line)]
            assert not bad, f"input {k} (seed {seed}): a message line without path:line: {bad[0]!r}\n--- input ---\n{text[:2000]}"
        except Exception as exc:  # an internal error: the point of this test
            raise AssertionError(f"input {k} (seed {seed}): internal error {type(exc).__name__}: {exc}\n--- input ---\n{text[:2000]}") from exc
    return loaded, rejected


def test_a_few_hundred_mutated_case_files_load_or_give_clean_errors(tmp_path: Path) -> None:
    loaded, rejected = check_inputs(200, seed=0, tmp_path=tmp_path)
    assert loaded + rejected == 200 and rejected > 50 and loaded > 5  # the mutator both breaks and keeps files


@pytest.mark.fuzz
def test_ten_thousand_mutated_case_files(tmp_path: Path) -> None:
    """Deselected unless `-m fuzz` (see the repository's conftest.py)."""
    n = int(os.environ.get("INTERP_FUZZ_N", "10000"))
    start = time.perf_counter()
    loaded, rejected = check_inputs(n, seed=int(os.environ.get("INTERP_FUZZ_SEED", "1")), tmp_path=tmp_path)
    print(f"fuzz: {n} inputs, {loaded} loaded, {rejected} rejected cleanly, 0 internal errors, {time.perf_counter() - start:.1f} s")


# ----------------------------------------------------------------------------- runs, not only reading
def fuzzed_runs(pytester: pytest.Pytester, n_files: int, seed: int, batch: int = 200) -> tuple[int, int]:
    """`n_files` structurally fuzzed case files run through pytest in batches; returns (runs, outcomes seen)."""
    from .fuzzing import judge, mutated_case_file, seeds, write_batch

    rng = random.Random(seed)
    base = seeds()
    runs = 0
    for start in range(0, n_files, batch):
        texts = [mutated_case_file(rng, base) for _ in range(min(batch, n_files - start))]
        paths = write_batch(pytester.path / f"batch{start}", texts)
        result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-q", *(str(p) for p in paths))
        outcome = judge(result.stdout.str() + result.stderr.str(), int(result.ret))
        runs += 1
        if outcome.internal:
            culprit = next((t for p, t in zip(paths, texts) if p.name in outcome.why), "\n---\n".join(texts[:3]))
            raise AssertionError(f"batch at {start} (seed {seed}): {outcome.why}\n--- input ---\n{culprit[:3000]}")
    return runs, n_files


def fuzzed_command_lines(pytester: pytest.Pytester, n: int, seed: int) -> int:
    import yaml

    from .fuzzing import fuzzed_command_line, judge, seeds, write_batch

    rng = random.Random(seed)
    suite = write_batch(pytester.path / "suite", [yaml.safe_dump(s, sort_keys=False) for s in seeds()])
    for k in range(n):
        args = fuzzed_command_line(rng)
        result = pytester.runpytest_inprocess("-p", "no:cacheprovider", *args, *(str(p) for p in suite))
        outcome = judge(result.stdout.str() + result.stderr.str(), int(result.ret))
        assert not outcome.internal, f"command line {k} (seed {seed}): {echo(args, 200)}: {outcome.why}"
    return n


def test_fuzzed_case_files_run_without_internal_errors(pytester: pytest.Pytester) -> None:
    """Every string field huge, empty, NUL-holding or path-like, every number huge, negative or non-finite: a run
    of them (one pytest session, as a user's CI would run them) has no internal error and is not stopped."""
    fuzzed_runs(pytester, 24, seed=0, batch=24)


def test_fuzzed_command_lines_give_no_internal_error(pytester: pytest.Pytester) -> None:
    fuzzed_command_lines(pytester, 12, seed=0)


@pytest.mark.fuzz
def test_ten_thousand_fuzzed_case_files_run(pytester: pytest.Pytester) -> None:
    """Deselected unless `-m fuzz`: INTERP_FUZZ_RUN_N files (default 10,000) in runs of 200."""
    n = int(os.environ.get("INTERP_FUZZ_RUN_N", "10000"))
    start = time.perf_counter()
    runs, files = fuzzed_runs(pytester, n, seed=int(os.environ.get("INTERP_FUZZ_SEED", "1")))
    print(f"fuzz: {files} fuzzed case files in {runs} runs, 0 internal errors, {time.perf_counter() - start:.1f} s")


@pytest.mark.fuzz
def test_a_thousand_fuzzed_command_lines(pytester: pytest.Pytester) -> None:
    """Deselected unless `-m fuzz`: INTERP_FUZZ_CLI_N command lines (default 1,000)."""
    n = int(os.environ.get("INTERP_FUZZ_CLI_N", "1000"))
    start = time.perf_counter()
    fuzzed_command_lines(pytester, n, seed=int(os.environ.get("INTERP_FUZZ_SEED", "1")))
    print(f"fuzz: {n} fuzzed command lines, 0 internal errors, {time.perf_counter() - start:.1f} s")
