"""Safe YAML 1.2 loading that keeps the line of every key path and rejects duplicate keys.

`load_yaml(path)` returns `Source(data, lines)`: `data` is plain Python (dict, list, str, int, float,
bool, None) and `lines` maps a key path such as `("cases", 0, "expect", 1, "fires", "min")` to its
1-based line in the file.

No input makes this module raise anything but `CaseFileError`, one `path:line: location: message` line
per problem, and its cost is bounded by the file's size:
- characters YAML does not allow (control characters, U+FFFE) are found before parsing, with their line;
- lists and mappings nest at most `MAX_DEPTH` levels (deeper input would exhaust Python's recursion);
- aliases (`*name`) are resolved once: an aliased list or mapping is one shared plain object whose lines
  are recorded once, under the path of its anchor (`line_of` gives an alias's own line for the paths
  below it). Shared objects are still walked in full by validation, so the file's size *expanded* (each
  value 1, each string and key its length more) is limited to `expansion_limit(size)`, and so are the
  keys that merge keys (`<<`) copy;
- any exception the YAML library raises while loading becomes the file's error, with the line of the
  node being built when the library gives none.
"""

from __future__ import annotations

import copy
import datetime
import functools
import re
import threading
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from ..common.echo import clip, echo
from ..common.errors import CaseFileError
from ..common.files import PathError, checked_file

KeyPath = tuple[str | int, ...]

MAX_TAG_CHARS = 256  # a YAML tag's length: case files need none but !!str
CUT_TAG = "... ({:,} characters in all)"  # what stands for the rest of a tag cut at MAX_TAG_CHARS
MAX_DEPTH = 64  # levels of nested lists and mappings; a case file needs about 8
MAX_INT_DIGITS = 4_000  # below Python's limit for turning an int into text (4,300 digits)
_INT_LIMIT = 10**MAX_INT_DIGITS
EXPANSION_PER_BYTE = 10  # expanded values and characters allowed per byte of the file ...
EXPANSION_MIN = 10_000  # ... but at least this many ...
EXPANSION_MAX = 1_000_000  # ... and at most this many (or 3 per byte: an alias-free file never needs more)

# what the YAML reader refuses (ruamel.yaml's Reader.NON_PRINTABLE): C0 controls but tab, LF and CR,
# DEL, C1 controls but NEL, surrogates, U+FFFE and U+FFFF
_NOT_PRINTABLE = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")  # what YAML (and so every mark's line) counts


@dataclass(frozen=True)
class Source:
    path: Path
    data: Any
    lines: Mapping[KeyPath, int] = field(default_factory=dict)

    def line_of(self, loc: KeyPath) -> int:
        """Line of the longest prefix of `loc` that has one (1 for the file itself)."""
        for end in range(len(loc), 0, -1):
            line = self.lines.get(tuple(loc[:end]))
            if line is not None:
                return line
        return 1


def format_loc(loc: KeyPath) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<file>"


def expansion_limit(size: int) -> tuple[int, str]:
    """The most values and characters a file of `size` characters may expand to, and how that is worked out."""
    scaled = EXPANSION_PER_BYTE * size
    if 3 * size > EXPANSION_MAX:
        return 3 * size, f"3 per byte of this {size:,}-byte file"
    limit = min(max(EXPANSION_MIN, scaled), EXPANSION_MAX)
    return limit, f"{EXPANSION_PER_BYTE} per byte of this {size:,}-byte file, at least {EXPANSION_MIN:,}, at most {EXPANSION_MAX:,}"


class _Refused(Exception):
    """A problem found while loading, already worded, at `line` (1-based)."""

    def __init__(self, line: int, what: str) -> None:
        super().__init__(what)
        self.line, self.what = line, what


class _Unsupported(Exception):
    """A value a case file cannot hold, at `loc` (on `line`, when the line of `loc` is not the one)."""

    def __init__(self, loc: KeyPath, what: str, line: int | None = None) -> None:
        super().__init__(what)
        self.loc, self.what, self.line = loc, what, line


def _expansion_message(limit: int, why: str) -> str:
    return (
        f"aliases (*name) and merge keys (<<) expand this file to more than {limit:,} values and characters "
        f"(the limit: {why}): stop nesting anchors and aliases, write the values out instead"
    )


def _short_tag(tag: str | None) -> str | None:
    if tag and tag.startswith("tag:yaml.org,2002:"):
        return "!!" + tag[len("tag:yaml.org,2002:") :]
    return tag


# ----------------------------------------------------------------------------- the YAML library, guarded
def _loader(limit: int, why: str) -> Any:
    """A round-trip YAML 1.2 loader with the guards below; merge keys may copy at most `limit` keys."""
    from ruamel.yaml import YAML

    scanner, composer, constructor = _guarded_classes()
    yaml = YAML(typ="rt", pure=True)
    yaml.version = (1, 2)
    yaml.Scanner, yaml.Composer, yaml.Constructor = scanner, composer, constructor
    yaml.constructor.merge_limit = (limit, why)
    return yaml


@functools.cache
def _guarded_classes() -> tuple[Any, Any, Any]:
    """ruamel.yaml's round-trip scanner, composer and constructor, each with a guard (built once, on first use)."""
    from ruamel.yaml.composer import Composer
    from ruamel.yaml.constructor import RoundTripConstructor
    from ruamel.yaml.error import YAMLError
    from ruamel.yaml.events import AliasEvent, MappingStartEvent, SequenceStartEvent
    from ruamel.yaml.nodes import SequenceNode
    from ruamel.yaml.scanner import RoundTripScanner

    class FlowDepthScanner(RoundTripScanner):  # type: ignore[misc]
        """Refuses `[[[[...` at the token: ruamel's scanner looks up to 1,024 characters ahead for a simple
        key at every open flow level, so 1,000 levels cost a second before the composer sees one."""

        def fetch_flow_sequence_start(self) -> None:
            self._deeper()
            super().fetch_flow_sequence_start()

        def fetch_flow_mapping_start(self) -> None:
            self._deeper()
            super().fetch_flow_mapping_start()

        def _deeper(self) -> None:
            if self.flow_level >= MAX_DEPTH:
                raise _Refused(self.reader.line + 1, _too_deep())

        def scan_tag(self) -> Any:
            """Cuts a tag longer than MAX_TAG_CHARS as it is read: ruamel decodes a tag's suffix one character
            at a time into a growing string (a 1 MB tag cost seconds), and a tag that long is refused all the
            same (case files hold no tag but !!str), with its first characters in the message."""
            token = super().scan_tag()
            handle, suffix = token.value
            if suffix is not None and len(suffix) > MAX_TAG_CHARS:
                token.value = (handle, suffix[:60] + CUT_TAG.format(len(suffix) + len(handle or "")))
            return token

    class DepthComposer(Composer):  # type: ignore[misc]
        """Caps nesting (block and flow) before ruamel's recursive composer and constructor go deeper, refuses
        an alias inside its own anchor, and keeps the line of each alias in a list."""

        def __init__(self, loader: Any = None) -> None:
            super().__init__(loader)
            self.nesting = 0
            self.open_anchors: list[Any] = []  # anchors of the lists and mappings being composed
            # id(list node) -> {index: line of the alias there}: ruamel gives an aliased item its anchor's line
            self.alias_lines: dict[int, dict[int, int]] = {}

        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.parser.peek_event()
            if isinstance(event, AliasEvent):
                if event.anchor in self.open_anchors:  # ruamel would quietly make it null
                    raise _Refused(
                        event.start_mark.line + 1,
                        f"the alias *{clip(str(event.anchor), 40)} is used inside the value it names: a value cannot contain itself",
                    )
                if isinstance(parent, SequenceNode) and isinstance(index, int):
                    self.alias_lines.setdefault(id(parent), {})[index] = event.start_mark.line + 1
            if not isinstance(event, (MappingStartEvent, SequenceStartEvent)):
                return super().compose_node(parent, index)
            if self.nesting >= MAX_DEPTH:
                raise _Refused(event.start_mark.line + 1, _too_deep())
            self.nesting += 1
            self.open_anchors.append(event.anchor)
            try:
                return super().compose_node(parent, index)
            finally:
                self.nesting -= 1
                self.open_anchors.pop()

    class GuardedConstructor(RoundTripConstructor):  # type: ignore[misc]
        """Turns any exception of a node's constructor into a `_Refused` at the node's line, bounds the keys
        merge keys copy, and hands the aliases' lines on to `_Plain`."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.merge_limit = (0, "")  # set per load
            self.merged = 0  # keys copied by merge keys so far
            self.alias_item_lines: dict[int, dict[int, int]] = {}  # id(CommentedSeq) -> {index: line of an alias}

        def construct_non_recursive_object(self, node: Any, tag: Any = None) -> Any:
            pending = len(self.state_generators)
            try:
                data = super().construct_non_recursive_object(node, tag)
            except (YAMLError, _Refused):
                raise
            except Exception as exc:  # ValueError from `!!float abc`, KeyError from `!!bool maybe`, ...
                raise _Refused(node.start_mark.line + 1, _node_problem(node, exc)) from None
            # a list or mapping is filled in later, by a generator: its errors get this node's line too
            self.state_generators[pending:] = [_named(g, node) for g in self.state_generators[pending:]]
            return data

        def construct_rt_sequence(self, node: Any, seqtyp: Any, deep: bool = False) -> Any:
            out = super().construct_rt_sequence(node, seqtyp, deep=deep)
            aliased = self.composer.alias_lines.get(id(node))
            if aliased:
                self.alias_item_lines[id(seqtyp)] = aliased
            return out

        def flatten_mapping(self, node: Any) -> Any:
            merge_line = next((k.start_mark.line + 1 for k, _ in node.value if k.tag == "tag:yaml.org,2002:merge"), None)
            try:
                merged = super().flatten_mapping(node)
            except YAMLError as exc:
                if merge_line is None:
                    raise
                _, what = _yaml_problem(exc)
                raise _Refused(merge_line, f"a merge key (<<) takes a mapping or a list of mappings ({what})") from None
            if merge_line is not None:
                if any(m is None for m in merged):  # a mapping that merges itself: ruamel has built it as None
                    raise _Refused(merge_line, "a merge key (<<) refers to the mapping that contains it: merge another mapping")
                self.merged += sum(len(m) for m in merged if hasattr(m, "__len__"))
                limit, why = self.merge_limit
                if self.merged > limit:  # ruamel copies merged keys: a chain of merges costs its length squared
                    raise _Refused(merge_line, _expansion_message(limit, why))
            return merged

    def _named(generator: Any, node: Any) -> Any:
        try:
            yield from generator
        except (YAMLError, _Refused):
            raise
        except Exception as exc:
            raise _Refused(node.start_mark.line + 1, _node_problem(node, exc)) from None

    return FlowDepthScanner, DepthComposer, GuardedConstructor


def _too_deep() -> str:
    return f"lists and mappings nested more than {MAX_DEPTH} levels deep: a case file needs a few levels; remove the extra nesting"


def _node_problem(node: Any, exc: BaseException) -> str:
    tag = _short_tag(str(node.tag))
    why = clip(f"{type(exc).__name__}: {exc}")
    if node.id == "scalar":
        digits = sum(c.isdigit() for c in str(node.value))
        if (tag or "").endswith("int") and isinstance(exc, ValueError) and digits > MAX_INT_DIGITS:  # past Python's int-to-text limit
            return f"an integer of {digits:,} digits is too large for a case file (at most {MAX_INT_DIGITS:,} digits)"
        return f"cannot read {echo(node.value)} as {tag} ({why}): remove the tag or fix the value"
    kind = "mapping" if node.id == "mapping" else "list"
    return f"cannot build this {kind} ({why}): check its tag, anchors (&), aliases (*) and merge keys (<<)"


def _line_at(text: str, pos: int) -> int:
    return sum(1 for _ in _LINE_BREAK.finditer(text, 0, pos)) + 1


def _check_characters(text: str, path: Path) -> None:
    bad = _NOT_PRINTABLE.search(text)
    if bad is None:
        return
    ch = bad.group()
    kind = "control character" if ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F else "character"
    line = _line_at(text, bad.start())
    raise CaseFileError(
        [f"{path}:{line}: <file>: invalid YAML: {kind} {ch!r} (U+{ord(ch):04X}) is not allowed in a YAML file: remove it"]
    )


def _yaml_problem(exc: Any) -> tuple[int | None, str]:
    """Line (or None) and one-line wording of an error raised by ruamel.yaml."""
    problem = getattr(exc, "problem", None)
    context = getattr(exc, "context", None)
    problem_mark = getattr(exc, "problem_mark", None)
    context_mark = getattr(exc, "context_mark", None)
    mark = problem_mark or context_mark
    if context_mark is not None and "<stream end>" in str(problem or ""):
        mark = context_mark  # an unclosed bracket or quote: point at where it opened
    what = str(problem or context or exc)
    if problem and context:  # "found ... while scanning ...", "expected a single document ..., but found ..."
        what = f"{problem} {context}" if str(context).startswith("while") else f"{context}, {problem}"
    dup = re.match(r'found duplicate key "(.*?)" with value', what, re.DOTALL)
    if dup:
        what = f"duplicate key {echo(dup.group(1))} (each key may appear once per mapping: remove or rename one)"
    line = getattr(mark, "line", None)
    return (line + 1 if isinstance(line, int) else None), clip(what, 300)


# ----------------------------------------------------------------------------- plain Python values
class _Plain:
    """Converts ruamel's round-trip values to plain ones, sharing aliased lists and mappings."""

    def __init__(self, lines: dict[KeyPath, int], limit: int, why: str, alias_lines: Mapping[int, Mapping[int, int]]) -> None:
        self.lines = lines
        self.alias_lines = alias_lines  # id(CommentedSeq) -> {index: line of the alias there}
        self.limit, self.why = limit, why
        self.spent = 0  # expanded values and characters so far
        self.done: dict[int, tuple[Any, int]] = {}  # id(ruamel list/mapping) -> (plain object, its expanded size)
        self.active: set[int] = set()

    def spend(self, amount: int, loc: KeyPath) -> None:
        self.spent += amount
        if self.spent > self.limit:
            raise _Unsupported(loc, _expansion_message(self.limit, self.why))

    def value(self, node: Any, loc: KeyPath) -> tuple[Any, int]:
        """The plain value of `node` and its expanded size."""
        from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
        from ruamel.yaml.scalarbool import ScalarBoolean

        tag = getattr(getattr(node, "tag", None), "value", None)
        if isinstance(node, TaggedScalar) and tag == "tag:yaml.org,2002:str":
            out = str(node.value)  # `!!str 12`: an explicit string
            self.spend(1 + len(out), loc)
            return out, 1 + len(out)
        if tag is not None:
            _unsupported(loc, node, tag)
        if isinstance(node, (CommentedMap, CommentedSeq)):
            key = id(node)
            if key in self.done:  # an alias, or a value a merge key copied: shared, but counted again
                plain, size = self.done[key]
                self.spend(size, loc)
                return plain, size
            if key in self.active:
                raise _Unsupported(loc, "an alias (*name) refers to a list or mapping that contains it: write the value out instead")
            self.active.add(key)
            self.spend(1, loc)
            plain, size = self.mapping(node, loc) if isinstance(node, CommentedMap) else self.sequence(node, loc)
            self.active.discard(key)
            self.done[key] = (plain, size)
            return plain, size
        if isinstance(node, ScalarBoolean):  # an anchored true/false (an int subclass)
            out_b = bool(node)
            self.spend(1, loc)
            return out_b, 1
        if isinstance(node, bool) or node is None:
            self.spend(1, loc)
            return node, 1
        if isinstance(node, int):
            if abs(node) >= _INT_LIMIT:  # `0xfff...`: Python could not even print it in a message
                raise _Unsupported(loc, _too_large(node))
            self.spend(1, loc)
            return int(node), 1
        if isinstance(node, float):
            self.spend(1, loc)
            return float(node), 1
        if isinstance(node, str):
            out_s = str(node)
            self.spend(1 + len(out_s), loc)
            return out_s, 1 + len(out_s)
        if isinstance(node, (datetime.date, datetime.datetime)):
            out_s = node.isoformat()
            self.spend(1 + len(out_s), loc)
            return out_s, 1 + len(out_s)
        _unsupported(loc, node, None)

    def mapping(self, node: Any, loc: KeyPath) -> tuple[dict[str, Any], int]:
        out: dict[str, Any] = {}
        size = 1
        for key, value in node.items():
            try:
                line: int | None = node.lc.key(key)[0] + 1
            except (KeyError, TypeError, AttributeError):
                line = None  # a key a merge key (<<) copied: its line is the mapping's
            k = _key(key, loc, line)
            if line is not None:
                self.lines[(*loc, k)] = line
            self.spend(len(k), (*loc, k))
            out[k], item_size = self.value(value, (*loc, k))
            size += len(k) + item_size
        return out, size

    def sequence(self, node: Any, loc: KeyPath) -> tuple[list[Any], int]:
        out: list[Any] = []
        size = 1
        aliased = self.alias_lines.get(id(node), {})
        for i, value in enumerate(node):
            if i in aliased:
                self.lines[(*loc, i)] = aliased[i]
            else:
                try:
                    line, _ = node.lc.item(i)
                    self.lines[(*loc, i)] = line + 1
                except (KeyError, TypeError, IndexError, AttributeError):
                    pass
            item, item_size = self.value(value, (*loc, i))
            out.append(item)
            size += item_size
        return out, size


def _key(key: Any, loc: KeyPath, line: int | None) -> str:
    """A mapping key as a string: keys are strings in a case file; a number, true/false or null is kept as its text."""
    from ruamel.yaml.comments import TaggedScalar
    from ruamel.yaml.scalarbool import ScalarBoolean

    tag = getattr(getattr(key, "tag", None), "value", None)
    if isinstance(key, TaggedScalar) and tag == "tag:yaml.org,2002:str":
        return str(key.value)
    if tag is not None:
        _unsupported(loc, key, tag, line)
    if isinstance(key, ScalarBoolean):
        return str(bool(key))
    if isinstance(key, (str, bool, float)) or key is None:
        return str(key)
    if isinstance(key, int):
        if abs(key) >= _INT_LIMIT:
            raise _Unsupported(loc, _too_large(key), line)
        return str(int(key))
    if isinstance(key, (datetime.date, datetime.datetime)):
        return key.isoformat()
    what = "a list" if isinstance(key, tuple) else "a mapping" if isinstance(key, Mapping) else f"a {type(key).__name__} value"
    raise _Unsupported(loc, f"a key must be a string, not {what}: a case file's keys are names such as 'target' or 'min'", line)


def _too_large(value: int) -> str:
    return f"an integer of about {int(value.bit_length() * 0.30103):,} digits is too large for a case file (at most {MAX_INT_DIGITS:,} digits)"


def _unsupported(loc: KeyPath, node: Any, tag: str | None, line: int | None = None) -> NoReturn:
    tag = _short_tag(tag)
    cut = tag is not None and tag.endswith(" characters in all)") and "... (" in tag  # cut by the scanner already
    shown = f"a value tagged {tag if cut else clip(tag or '', 60)}" if tag else f"a {type(node).__name__} value"
    what = f"{shown} is not supported: case files hold strings, numbers, true/false, lists and mappings (remove the tag or quote the value)"
    raise _Unsupported(loc, what, line)


# ----------------------------------------------------------------------------- entry points
class _ParsedTexts:
    """The sources of texts parsed lately, by (path, text): a run reads each case file at collection and again
    at its end (for stale baseline entries), and the YAML library, in pure Python, takes about 30 ms for a
    5 KB file. Each caller gets its own copy of the values. Only files that parsed are kept, texts of at most
    `MAX_TEXT` characters, about `MAX_BYTES` in all (`_kept_bytes`: a deeply nested file's key paths weigh
    more than its text)."""

    MAX_BYTES = 16 << 20
    MAX_TEXT = 64 << 10

    def __init__(self) -> None:
        self.sources: OrderedDict[tuple[str, str], tuple[Source, int]] = OrderedDict()
        self.bytes = 0
        self.lock = threading.Lock()

    def get(self, path: Path, text: str) -> Source | None:
        with self.lock:
            kept = self.sources.get((str(path), text))
            if kept is None:
                return None
            self.sources.move_to_end((str(path), text))
        source = kept[0]
        return Source(path, copy.deepcopy(source.data), dict(source.lines))

    def put(self, path: Path, text: str, source: Source) -> None:
        if len(text) > self.MAX_TEXT:
            return
        size = _kept_bytes(text, source)
        with self.lock:
            old = self.sources.pop((str(path), text), None)
            self.bytes -= old[1] if old is not None else 0
            self.sources[(str(path), text)] = (Source(path, copy.deepcopy(source.data), dict(source.lines)), size)
            self.bytes += size
            while self.bytes > self.MAX_BYTES:
                _, (_, dropped) = self.sources.popitem(last=False)
                self.bytes -= dropped


def _kept_bytes(text: str, source: Source) -> int:
    """About what a kept source holds: its text twice (the key and the values' strings), and each line entry's
    key path (a tuple of 8-byte references) with the dict's share."""
    return 2 * len(text) + sum(120 + 8 * len(loc) for loc in source.lines)


_PARSED = _ParsedTexts()


def parse_yaml(text: str, path: Path) -> Source:
    """The values of a YAML text and the line of each key path; any problem is a `CaseFileError`."""
    source = _PARSED.get(path, text)
    if source is None:
        source = _parse(text, path)
        _PARSED.put(path, text, source)
    return source


def _parse(text: str, path: Path) -> Source:
    from ruamel.yaml.error import YAMLError

    _check_characters(text, path)
    limit, why = expansion_limit(len(text))
    yaml = _loader(limit, why)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. a reused anchor: legal YAML, and no concern of the user's
            raw = yaml.load(text)
    except _Refused as exc:
        raise CaseFileError([f"{path}:{exc.line}: <file>: invalid YAML: {exc.what}"]) from None
    except YAMLError as exc:
        line, what = _yaml_problem(exc)
        raise CaseFileError([f"{path}:{line or 1}: <file>: invalid YAML: {what}"]) from None
    except RecursionError:  # not expected (nesting is capped first), but never a traceback
        raise CaseFileError(
            [f"{path}:{_reader_line(yaml)}: <file>: invalid YAML: nested too deeply to read: remove the extra nesting"]
        ) from None
    except Exception as exc:  # the YAML library failed in a way it does not document: still the file's error
        raise CaseFileError(
            [f"{path}:{_reader_line(yaml)}: <file>: invalid YAML: {clip(f'{type(exc).__name__}: {exc}')}"]
        ) from None
    lines: dict[KeyPath, int] = {}
    try:
        data, _ = _Plain(lines, limit, why, yaml.constructor.alias_item_lines).value(raw, ())
    except _Unsupported as exc:
        line = exc.line or Source(path, None, lines).line_of(exc.loc)
        raise CaseFileError([f"{path}:{line}: {format_loc(exc.loc)}: {exc.what}"]) from None
    return Source(path, data, lines)


def _reader_line(yaml: Any) -> int:
    """The line the YAML reader had got to (1 when it cannot be told)."""
    line = getattr(getattr(yaml, "_reader", None), "line", None)
    return line + 1 if isinstance(line, int) else 1


MAX_CASE_FILE_BYTES = 64 << 20  # a case file is text a person writes: 64 MB is far beyond any


def load_yaml(path: Path, display: Path | None = None) -> Source:
    shown = display or path
    try:
        checked_file(path, "case file", MAX_CASE_FILE_BYTES)
        raw = path.read_bytes()
    except PathError as exc:
        raise CaseFileError([f"{shown}:1: <file>: {exc}"]) from None
    except OSError as exc:
        raise CaseFileError([f"{shown}:1: <file>: cannot read the file: {clip(str(exc))}"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        byte = raw[exc.start : exc.start + 1]
        raise CaseFileError(
            [f"{shown}:{line}: <file>: not UTF-8: byte {byte!r} cannot be decoded ({exc.reason}): save the file as UTF-8"]
        ) from None
    # as Path.read_text does: universal newlines
    return parse_yaml(text.replace("\r\n", "\n").replace("\r", "\n"), shown)
