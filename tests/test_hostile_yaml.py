"""Hostile case files (issue 11): a clean one-line `path:line:` error, never a traceback, at a cost bounded by
the file's size. These call the loader in-process (milliseconds each); one pytester run checks the wiring."""

from __future__ import annotations

import re
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from interp_tests.cases.casefile import load_case_file
from interp_tests.cases.yaml_source import MAX_DEPTH, load_yaml, parse_yaml
from interp_tests.common.echo import echo
from interp_tests.common.errors import CaseFileError

from .helpers import BUNDLED_TARGET

PATH = Path("cases/hostile.yaml")

# Real targets (issue 11): a bad file collects in under 1 s and under 200 MB. The time bound asserted is
# looser (this machine is shared, and a loaded CI runner can be several times slower); memory is not
# affected by load, so its bound is the target itself.
SECONDS = 5.0
PEAK_BYTES = 200 * 2**20


def refused(text: str) -> str:
    """The one-line message `parse_yaml` raises for `text` (fails if it loads, or raises anything else)."""
    with pytest.raises(CaseFileError) as info:
        parse_yaml(text, PATH)
    return one_line(info.value)


def one_line(exc: CaseFileError) -> str:
    lines = str(exc).split("\n")
    assert len(lines) == 1 and exc.problems == lines, lines
    assert re.match(rf"^{re.escape(str(PATH))}:\d+: ", lines[0]), lines[0]
    return lines[0]


def measured(call: Callable[[], Any], memory: bool = False) -> tuple[float, int, BaseException | None]:
    """Seconds, peak bytes Python allocated (with `memory`, else 0), and the exception `call` raised (None if none).

    tracemalloc makes ruamel's character-by-character scanner about ten times slower: the seconds of a call
    that traces memory are not its real cost, and a large input is measured without it (or in a subprocess).
    """
    if memory:
        tracemalloc.start()
    start = time.perf_counter()
    error: BaseException | None = None
    try:
        call()
    except Exception as exc:  # returned to the test, which asserts what it is
        error = exc
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] if memory else 0
    if memory:
        tracemalloc.stop()
    return seconds, peak, error


# ----------------------------------------------------------------------------- aliases
def alias_bomb(levels: int) -> str:
    """`a0` is a list of ten x; each further `aN` is a list of ten `*aN-1`: the last expands to 10**levels x."""
    text = "a0: &a0 [" + ", ".join(["x"] * 10) + "]\n"
    for i in range(1, levels + 1):
        text += f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n"
    return text


@pytest.mark.parametrize("levels", [6, 7, 9])
def test_alias_bomb_is_refused_at_the_alias_that_crosses_the_limit_cheaply(levels: int) -> None:
    text = alias_bomb(levels)  # 6 levels: 393 bytes, 10**6 x once expanded (102 s and 4.9 GB before the fix)
    assert len(text) < 600
    seconds, peak, error = measured(lambda: parse_yaml(text, PATH), memory=True)
    assert isinstance(error, CaseFileError), error
    # a0, a1, a2 expand to 23 + 236 + 2,349 values and characters; a3's fourth alias (line 4) crosses 10,000
    assert one_line(error) == (
        f"{PATH}:4: a3[3]: aliases (*name) and merge keys (<<) expand this file to more than 10,000 values and "
        f"characters (the limit: 10 per byte of this {len(text):,}-byte file, at least 10,000, at most 1,000,000): "
        "stop nesting anchors and aliases, write the values out instead"
    )
    assert seconds < SECONDS and peak < PEAK_BYTES, (seconds, peak)


def test_alias_bomb_in_a_large_file_is_bounded_by_the_cap() -> None:
    text = "# " + "padding " * 20_000 + "\n" + alias_bomb(7)  # 160 kB: 10 per byte would be 1.6 million
    seconds, _, error = measured(lambda: parse_yaml(text, PATH))
    assert isinstance(error, CaseFileError), error
    assert re.fullmatch(rf"{re.escape(str(PATH))}:7: a5\[\d\]: aliases .* more than 1,000,000 values .*", one_line(error))
    assert seconds < SECONDS, seconds


def test_full_collection_path_of_an_alias_bomb_case_file_is_cheap(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    bomb = "".join("  " + line + "\n" for line in alias_bomb(6).splitlines())  # as text groups
    path.write_text(BUNDLED_TARGET + "texts:\n" + bomb + "cases:\n  - {id: c, on: a6, expect: [{l0: {max: 1}}]}\n")
    seconds, peak, error = measured(lambda: load_case_file(path), memory=True)
    assert isinstance(error, CaseFileError), error
    assert "aliases (*name) and merge keys (<<) expand this file to more than 10,000" in str(error)
    assert seconds < SECONDS and peak < PEAK_BYTES, (seconds, peak)


def test_aliases_within_the_limit_are_shared_and_errors_below_them_point_at_the_alias() -> None:
    text = BUNDLED_TARGET + (
        "texts:\n"
        "  a: &t [one, two]\n"
        "  b: *t\n"
        "defaults: &bad {max: lots}\n"
        "cases:\n"
        "  - id: c\n"
        "    on: a\n"
        "    expect:\n"
        "      - l0: *bad\n"
    )
    source = parse_yaml(text, PATH)
    assert source.data["texts"] == {"a": ["one", "two"], "b": ["one", "two"]}
    assert source.data["texts"]["a"] is source.data["texts"]["b"]  # resolved once, not copied
    assert source.line_of(("cases", 0, "expect", 0, "l0", "max")) == 12  # the alias's line, not the anchor's (7)
    assert source.line_of(("defaults", "max")) == 7


def test_a_text_read_again_is_not_parsed_again_and_each_reader_gets_its_own_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run reads each case file at collection and at its end: the second read of the same text (at the same
    path) costs no parse. Each reader gets values of its own, aliases still shared; another text, another
    path or a text that fails is parsed each time."""
    from interp_tests.cases import yaml_source

    parses: list[str] = []
    real = yaml_source._parse
    monkeypatch.setattr(yaml_source, "_parse", lambda text, path: parses.append(text) or real(text, path))
    text = BUNDLED_TARGET + "texts:\n  a: &t [one, two]\n  b: *t\ncases:\n  - {id: c, on: a, expect: [{l0: {max: 1}}]}\n  # read-again\n"
    first = parse_yaml(text, PATH)
    first.data["texts"]["a"].append("changed by its reader")
    second = parse_yaml(text, PATH)
    assert parses == [text]
    assert second.data["texts"] == {"a": ["one", "two"], "b": ["one", "two"]}
    assert second.data["texts"]["a"] is second.data["texts"]["b"]
    assert second.lines == first.lines and second.path == PATH
    parse_yaml(text.replace("max: 1", "max: 2"), PATH)  # the file edited
    other = Path("cases/other.yaml")
    assert parse_yaml(text, other).path == other
    assert len(parses) == 3
    for _ in range(2):
        refused(text + "oops: [\n")
    assert len(parses) == 5
    another = text + "# another\n"
    monkeypatch.setattr(yaml_source._PARSED, "MAX_BYTES", yaml_source._kept_bytes(another, first))  # room for it alone
    parse_yaml(another, PATH)  # keeping it drops the least recently read
    parse_yaml(text, PATH)
    assert len(parses) == 7


def test_an_aliased_list_item_has_the_line_of_the_alias() -> None:
    source = parse_yaml("a: &a {k: 1}\nb:\n  - *a\n  - x\n  - *a\n", PATH)
    assert [source.line_of(("b", i)) for i in range(3)] == [3, 4, 5]


def test_an_alias_inside_its_own_anchor_is_refused() -> None:
    assert refused("x: 1\na: &a [1, *a]\n") == (
        f"{PATH}:2: <file>: invalid YAML: the alias *a is used inside the value it names: a value cannot contain itself"
    )


def test_merge_keys_work() -> None:
    source = parse_yaml("base: &b {min: 1, max: 5}\nl0: {<<: *b, max: 9}\nl1: {<<: [*b, {on: x}]}\n", PATH)
    assert source.data["l0"] == {"min": 1, "max": 9}
    assert source.data["l1"] == {"min": 1, "max": 5, "on": "x"}


def test_a_merge_chain_is_refused_before_its_copies_grow_with_its_square() -> None:
    # each mapping merges the one before: ruamel copies 1 + 2 + ... + 800 keys; the limit here is 259,490
    text = "m0: &m0 {a0: 1}\n" + "".join(f"m{i}: &m{i} {{<<: *m{i - 1}, a{i}: 1}}\n" for i in range(1, 800))
    seconds, _, error = measured(lambda: parse_yaml(text, PATH))
    assert isinstance(error, CaseFileError), error
    assert one_line(error).startswith(
        f"{PATH}:721: <file>: invalid YAML: aliases (*name) and merge keys (<<) expand this file to more than 259,490 values"
    )
    assert seconds < SECONDS, seconds


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("e: &e [1, 2]\nb:\n  <<: *e\n", 3, "a merge key (<<) takes a mapping or a list of mappings (expected a mapping for merging, but found scalar"),
        ("b:\n  <<: 3\n", 2, "a merge key (<<) takes a mapping or a list of mappings"),
        ("x: 1\nb: &b\n  <<: *b\n", 3, "the alias *b is used inside the value it names"),
    ],
    ids=["list", "scalar", "itself"],
)
def test_a_bad_merge_key_is_a_clean_error_at_its_line(text: str, line: int, message: str) -> None:
    assert refused(text).startswith(f"{PATH}:{line}: <file>: invalid YAML: {message}")


# ----------------------------------------------------------------------------- nesting
NESTING = [(style, depth) for style in ("flow", "block", "block-list", "flow-in-block") for depth in (246, 300, 100_000) if not (style == "block" and depth > 1000)]


@pytest.mark.parametrize(("style", "depth"), NESTING)  # no 100,000-level block file: it would be 5 GB of indentation
def test_deep_nesting_is_refused_at_the_line_where_it_crosses_the_limit(style: str, depth: int) -> None:
    if style == "flow":
        text, line = "a: 1\nb: " + "[" * depth + "]" * depth + "\n", 2
    elif style == "block":
        text, line = "".join(" " * i + "k:\n" for i in range(depth)) + " " * depth + "k: 1\n", MAX_DEPTH + 1
    elif style == "block-list":
        text, line = "- " * depth + "x\n", 1
    else:
        text, line = "a:\n  b:\n    c: " + "{k: " * depth + "1" + "}" * depth + "\n", 3
    seconds, _, error = measured(lambda: parse_yaml(text, PATH))
    assert isinstance(error, CaseFileError), error
    assert one_line(error) == (
        f"{PATH}:{line}: <file>: invalid YAML: lists and mappings nested more than {MAX_DEPTH} levels deep: "
        "a case file needs a few levels; remove the extra nesting"
    )
    assert seconds < SECONDS, seconds


def test_nesting_up_to_the_limit_loads() -> None:
    source = parse_yaml("a: " + "[" * (MAX_DEPTH - 1) + "x" + "]" * (MAX_DEPTH - 1) + "\n", PATH)  # with the root: 64
    assert source.data["a"] == eval("[" * (MAX_DEPTH - 1) + "'x'" + "]" * (MAX_DEPTH - 1))
    refused("a: " + "[" * MAX_DEPTH + "x" + "]" * MAX_DEPTH + "\n")


# ----------------------------------------------------------------------------- exceptions ruamel does not wrap
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("!!float abc", "cannot read 'abc' as !!float (ValueError: could not convert string to float: 'abc')"),
        ("!!int abc", "cannot read 'abc' as !!int (ValueError: invalid literal for int() with base 10: 'abc')"),
        ("!!bool maybe", "cannot read 'maybe' as !!bool (KeyError: 'maybe')"),
    ],
    ids=["float", "int", "bool"],
)
def test_a_value_its_tag_cannot_read_is_a_clean_error_at_its_line(value: str, message: str) -> None:
    text = BUNDLED_TARGET + f"cases:\n  - id: a\n    text: x\n    expect:\n      - l0: {{max: {value}}}\n"
    line = refused(text)
    assert line.startswith(f"{PATH}:8: <file>: invalid YAML: {message}"), line
    assert line.endswith("remove the tag or fix the value"), line
    assert len(line) < 500, len(line)


def test_an_integer_too_large_to_print_is_refused_where_it_is() -> None:
    line = refused("a: 1\nb: 0x" + "f" * 5000 + "\n")
    assert line == f"{PATH}:2: b: an integer of about 6,020 digits is too large for a case file (at most 4,000 digits)"


@pytest.mark.parametrize("digits", [4001, 4100, 4299, 5000])
def test_an_integer_beyond_4000_digits_is_refused_at_its_line(digits: int) -> None:
    """CASES.md: an integer beyond 4,000 digits is refused (below 4,300 digits Python reads it; beyond, the
    YAML reader cannot): either way a short message at its line."""
    text = BUNDLED_TARGET + f"cases:\n  - id: a\n    text: x\n    expect:\n      - fires: {{feature: {'9' * digits}}}\n"
    line = refused(text)
    assert line.startswith(f"{PATH}:8: ") and line.endswith(f"an integer of {'about ' if digits < 4300 else ''}{digits:,} digits is too large for a case file (at most 4,000 digits)"), line


def test_an_integer_of_4000_digits_loads_and_its_runtime_message_is_short() -> None:
    from interp_tests.common.echo import echo

    assert echo(int("9" * 4000)) == "<an integer of about 4,000 digits>"
    text = BUNDLED_TARGET + f"cases:\n  - id: a\n    text: x\n    expect:\n      - fires: {{feature: {'9' * 4000}}}\n"
    assert parse_yaml(text, PATH).data["cases"][0]["expect"][0]["fires"]["feature"] == int("9" * 4000)  # refused only beyond 4,000 digits


def test_a_key_that_is_a_list_is_refused_at_its_line() -> None:
    assert refused("a: 1\n? [x, y]\n: 2\n") == (
        f"{PATH}:2: <file>: a key must be a string, not a list: a case file's keys are names such as 'target' or 'min'"
    )


# ----------------------------------------------------------------------------- characters
@pytest.mark.parametrize("char", ["\x01", "\x08", "\x0b", "\x1f", "\x7f", "\x9f", "\ufffe", "\uffff"])
def test_a_control_character_is_named_on_its_own_line(char: str) -> None:
    text = "target:\n  model: m\ncases:\n  - id: a" + char + "b\n"
    name = "control character" if ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F else "character"
    assert refused(text) == f"{PATH}:4: <file>: invalid YAML: {name} {char!r} (U+{ord(char):04X}) is not allowed in a YAML file: remove it"


def test_lines_count_crlf_and_cr_line_ends_once(tmp_path: Path) -> None:
    path = tmp_path / "crlf.yaml"
    path.write_bytes(b"a: 1\r\nb: 2\rc: 3\r\nd: x\x01\r\n")
    with pytest.raises(CaseFileError) as info:
        load_yaml(path, PATH)
    assert str(info.value).startswith(f"{PATH}:4: <file>: invalid YAML: control character '\\x01' (U+0001)")


def test_a_byte_that_is_not_utf8_is_named_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("a: 1\nb: 2\nc: caf\xe9\n".encode("latin-1"))
    with pytest.raises(CaseFileError) as info:
        load_yaml(path, PATH)
    assert one_line(info.value) == f"{PATH}:3: <file>: not UTF-8: byte b'\\xe9' cannot be decoded (invalid continuation byte): save the file as UTF-8"


# ----------------------------------------------------------------------------- huge values
MB = 1_000_000


@pytest.mark.parametrize(
    ("text", "line", "start"),
    [
        ("a: 1\n? " + "k" * MB + "\n: 1\n? " + "k" * MB + "\n: 2\n", 4, "<file>: invalid YAML: duplicate key 'kkkk"),
        ("a: 1\nb: !!float " + "9" * MB + "x\n", 2, "<file>: invalid YAML: cannot read '9999"),
        ("a: 1\nb: *" + "u" * MB + "\n", 2, "<file>: invalid YAML: found undefined alias 'uuuu"),
        ("a: 1\nb: !" + "t" * MB + " x\n", 2, "b: a value tagged !tttt"),
    ],
    ids=["duplicate-key", "tagged-value", "alias-name", "tag"],
)
def test_a_message_about_a_huge_value_is_short(text: str, line: int, start: str) -> None:
    seconds, _, error = measured(lambda: parse_yaml(text, PATH))
    assert isinstance(error, CaseFileError), error
    message = one_line(error)
    assert message.startswith(f"{PATH}:{line}: {start}"), message[:300]
    assert len(message) < 600, len(message)
    assert re.search(r"\(1,0\d\d,\d\d\d characters", message), message  # says how long the value (or message) was
    assert seconds < SECONDS, seconds


def test_a_1mb_string_value_loads_cheaply(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(BUNDLED_TARGET + "texts: {big: ['" + "a" * MB + "']}\ncases:\n  - {id: a, on: big, expect: [{l0: {max: 1}}]}\n")
    seconds, _, error = measured(lambda: load_case_file(path))
    assert error is None, error
    assert seconds < SECONDS, seconds


def test_schema_message_about_a_1mb_value_is_short(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(BUNDLED_TARGET + "cases:\n  - id: a\n    text: x\n    expect: " + "a" * MB + "\n")
    seconds, _, error = measured(lambda: load_case_file(path))
    assert isinstance(error, CaseFileError), error
    assert seconds < SECONDS, seconds
    assert str(error).startswith(f"{path}:7: cases[0].expect: expected a list (got 'aaaa"), str(error)[:200]
    assert len(str(error)) < 600, len(str(error))


COST_SCRIPT = """
import json, resource, sys, time
from pathlib import Path
from interp_tests.common.errors import CaseFileError
from interp_tests.cases.casefile import load_case_file

warm = Path(sys.argv[2])
warm.write_text("a: [")
try:
    load_case_file(warm)  # imports and builds the loader's classes: not the cost of a file
except CaseFileError:
    pass
def status_kib(field):  # Linux: this process's own memory (ru_maxrss would carry the parent's peak across exec)
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field))
with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")  # reset the peak (VmHWM) to the resident memory now
before = status_kib("VmRSS:")
start = time.perf_counter()
try:
    load_case_file(Path(sys.argv[1]))
    outcome = "loaded"
except CaseFileError as exc:
    outcome = str(exc)[:300]
seconds = time.perf_counter() - start
grown = status_kib("VmHWM:") - before
print(json.dumps({"seconds": seconds, "grown_kib": grown, "outcome": outcome}))
"""


@pytest.mark.parametrize("kind", ["alias-bomb", "1mb-value"])
def test_collecting_a_hostile_file_costs_under_a_second_and_200mb(kind: str, tmp_path: Path) -> None:
    """Max RSS, measured in a fresh process: this one already holds torch (conftest), so its peak says nothing."""
    import json
    import os
    import subprocess
    import sys

    from .helpers import ROOT

    path = tmp_path / f"{kind}.yaml"
    if kind == "alias-bomb":
        path.write_text(BUNDLED_TARGET + "texts:\n" + "".join("  " + line + "\n" for line in alias_bomb(7).splitlines()))
        expected = ":8: texts.a3[3]: aliases (*name) and merge keys (<<) expand this file to more than 10,000 values"
    else:
        path.write_text(BUNDLED_TARGET + "cases:\n  - id: a\n    text: x\n    expect: " + "a" * MB + "\n")
        expected = ":7: cases[0].expect: expected a list (got 'aaaa"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}, "PYTHONPATH": str(ROOT)}  # glibc's defaults
    run = subprocess.run(
        [sys.executable, "-c", COST_SCRIPT, str(path), str(tmp_path / "warm.yaml")],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )
    assert run.returncode == 0, run.stderr
    cost = json.loads(run.stdout)
    assert cost["outcome"].startswith(f"{path}{expected}"), cost
    assert cost["grown_kib"] * 1024 < PEAK_BYTES, cost  # the peak above what the process held: the target itself
    assert cost["seconds"] < SECONDS, cost  # target: under 1 s (0.1 s and 0.7 s here, on an idle machine)


# ----------------------------------------------------------------------------- echo
def test_echo_is_repr_for_short_values() -> None:
    for value in ["x", " Bridge", "a\nb", "", 3, -2.5, True, None, [1, "a"], {"k": [1]}, (1,), ("a", 2), float("inf")]:
        assert echo(value) == repr(value), value


def test_echo_caps_long_strings_with_their_length() -> None:
    assert echo("a" * 1_000_000) == "'" + "a" * 60 + "...' (1,000,000 characters)"
    assert echo("é\x01" * 100, limit=4) == "'é\\x01é\\x01...' (200 characters)"
    assert echo(b"z" * 100, limit=3) == "b'zzz...' (100 bytes)"


def test_echo_caps_numbers_and_collections() -> None:
    assert echo(int("7" * 100)) == "7" * 60 + "... (100 digits)"
    assert echo(16 ** 5000) == "<an integer of about 6,020 digits>"  # str() of it would raise ValueError
    assert echo(list(range(1000))) == "[0, 1, 2, 3, ... 1,000 entries]"
    assert echo({"k": ["x" * 100]}) == "{'k': ['" + "x" * 15 + "...' (100 characters)]}"  # nested: a shorter cut
    assert echo([[[[1]]]]) == "[[[...]]]"
    nested: list[Any] = []
    nested.append(nested)
    assert echo(nested) == "[[[...]]]"


def test_echo_survives_a_failing_repr() -> None:
    class Bad:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    assert echo(Bad()) == "<Bad object: repr() failed with RuntimeError>"


# ----------------------------------------------------------------------------- the wiring, once
def test_hostile_files_are_collection_errors_without_traceback(pytester: pytest.Pytester) -> None:
    cases = pytester.path / "cases"
    cases.mkdir()
    (cases / "bomb.yaml").write_text(alias_bomb(7))
    (cases / "control.yaml").write_text(BUNDLED_TARGET + "cases:\n  - id: a\x01\n")
    (cases / "deep.yaml").write_text("a: " + "[" * 300 + "]" * 300 + "\n")
    (cases / "tag.yaml").write_text("a: 1\nb: !!bool maybe\n")
    start = time.perf_counter()
    result = pytester.runpytest("-p", "no:cacheprovider")
    out = result.stdout.str()
    assert "Traceback" not in out, out
    for expected in [
        "cases/bomb.yaml:4: a3[3]: aliases (*name) and merge keys (<<) expand this file to more than 10,000",
        "cases/control.yaml:5: <file>: invalid YAML: control character '\\x01' (U+0001)",
        "cases/deep.yaml:1: <file>: invalid YAML: lists and mappings nested more than 64 levels deep",
        "cases/tag.yaml:2: <file>: invalid YAML: cannot read 'maybe' as !!bool",
    ]:
        assert expected in out, out
    result.assert_outcomes(errors=4)
    assert time.perf_counter() - start < 4 * SECONDS
