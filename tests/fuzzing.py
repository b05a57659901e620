"""A structured fuzzer for runs (not only for reading case files): every string field of a seed case file gets huge,
empty, NUL-holding and path-like values, every number huge, negative, non-finite; every `--interp-*` option gets
hostile values. Each batch runs through pytest in-process; an outcome other than a pass, a clean failure, a clean
error or a usage error is an internal error: the text `internal error`, a Python traceback, INTERNALERROR, or a
run stopped by one file."""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .helpers import ROOT

HOSTILE_STRINGS = [
    "", " ", "x" * 5000, "a\x00b", "\x00", "/dev/zero", "/dev/stdin", "/dev/full", "/proc/self/fd/0", "../" * 60 + "etc/passwd",
    "d/" * 2200, "n" * 300, "~", "*", "**/*", "runs/*/final", "[a-z]", "-", "--interp-update", "\x1b]0;t\x07\x1b[2J", "\u202e\u2066",
    "é" * 200, "<script>alert(1)</script>", "${HOME}", "%s%n%x", "C:\\Windows", "\\\\server\\share", "nul", "con", ".", "..",
    "blocks.999.hook_resid_pre", "gpt2", "tiny-stdlib", "tiny-stdlib-res", "sparsify:x", "saelens:.", "a" * 512, "a" * 513,
]
HOSTILE_NUMBERS: list[Any] = [0, -1, 1, 10**9, 10**30, 2**63, -(2**63), 1e308, -1e308, float("inf"), float("-inf"), float("nan"), -0.0, 1e-300, 0.5]


def seeds() -> list[dict[str, Any]]:
    """The project's bundled-model case files, their corpora cut to a few hundred tokens (a run stays quick)."""
    out = []
    for path in sorted((ROOT / "cases").glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        for group in (data.get("texts") or {}).values():
            if isinstance(group, dict) and isinstance(group.get("corpus"), dict):
                group["corpus"]["tokens"] = 300
        out.append(data)
    return out


def leaves(node: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from leaves(v, (*at, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from leaves(v, (*at, i))
    else:
        yield at, node


def set_at(node: Any, at: tuple[Any, ...], value: Any) -> None:
    for key in at[:-1]:
        node = node[key]
    node[at[-1]] = value


def hostile_for(value: Any, rng: random.Random) -> Any:
    if isinstance(value, bool):
        return rng.choice([*HOSTILE_STRINGS[:6], *HOSTILE_NUMBERS[:4], None])
    if isinstance(value, (int, float)):
        return rng.choice(HOSTILE_NUMBERS) if rng.random() < 0.8 else rng.choice(HOSTILE_STRINGS)
    if isinstance(value, str):
        return rng.choice(HOSTILE_STRINGS) if rng.random() < 0.85 else rng.choice(HOSTILE_NUMBERS)
    return rng.choice(HOSTILE_STRINGS + HOSTILE_NUMBERS)


def mutated_case_file(rng: random.Random, base: list[dict[str, Any]]) -> str:
    data = copy.deepcopy(rng.choice(base))
    spots = list(leaves(data))
    for _ in range(rng.randint(1, 3)):
        at, value = rng.choice(spots)
        set_at(data, at, hostile_for(value, rng))
    if rng.random() < 0.15:  # a key renamed to a hostile string
        at, _ = rng.choice(spots)
        parent = data
        for key in at[:-1]:
            parent = parent[key]
        if isinstance(parent, dict) and at[-1] in parent:
            parent[rng.choice(HOSTILE_STRINGS) or "k"] = parent.pop(at[-1])
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=10**9)


OPTIONS = {
    "--interp-device": ["auto", "cpu", "cuda", "cuda:99", "tpu", "", "cpu:0", "meta", "\x00", "x" * 3000],
    "--interp-dtype": ["float32", "float64", "int8", "", "bfloat16"],
    "--interp-batch-tokens": ["1", "0", "-5", "1e9", "99999999999999999999", "nan", "x", "2"],
    "--interp-sae": ["", "=", "blocks.1.hook_resid_pre=", "x:y", "tiny-stdlib-res:blocks.9.x", "/dev/zero", "/dev/stdin", "\x00", "lr=3e-4", "*", "nope/*", "sae" * 2000, "sparsify:/dev/null"],
    "--interp-tolerance": ["0", "-1", "inf", "nan", "1e309", "x", ""],
    "--interp-md": ["-", "/dev/full", "/dev/null", "out.md", "", "dir/", "x" * 300, "a\x00b", "/proc/version"],
    "--interp-html": ["-", "/dev/full", "out.html", "", "/", "x" * 300],
}
FLAGS = ["--interp-update", "--interp-compare", "--interp-promote", "--interp-prefetch", "--interp-offline", "-q", "-x", "--collect-only"]


def fuzzed_command_line(rng: random.Random) -> list[str]:
    args: list[str] = []
    for _ in range(rng.randint(1, 4)):
        if rng.random() < 0.7:
            option = rng.choice(list(OPTIONS))
            value = rng.choice(OPTIONS[option] + HOSTILE_STRINGS[:12])
            args += [option, value] if rng.random() < 0.8 else [f"{option}={value}"]
        else:
            args.append(rng.choice(FLAGS))
    return args


@dataclass(frozen=True)
class Outcome:
    internal: bool
    why: str


INTERNAL = re.compile(r"internal error|Traceback \(most recent call last\)|INTERNALERROR|Interrupted: \d+ error")


def judge(output: str, ret: int) -> Outcome:
    """An internal error, or not: anything the harness did not say in its own words."""
    found = INTERNAL.search(output)
    if found:
        line = next(ln for ln in output.splitlines() if found.group(0) in ln)
        return Outcome(True, line[:400])
    if ret not in (0, 1, 2, 4, 5):
        return Outcome(True, f"exit status {ret}")
    return Outcome(False, "")


def write_batch(root: Path, texts: list[str]) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, text in enumerate(texts):
        path = root / f"fuzz_{i:04d}.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        paths.append(path)
    return paths
