"""pydantic's validation errors in the words of a case file: `path:line: dotted.location: message (got value)`.

No pytest here. Locations drop pydantic's internal parts (union tags, validator names); unknown keys get a
"did you mean" and the keys allowed there; wrong types say what was expected in plain words.
"""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from ..common.echo import echo
from ..common.hints import suggest
from .schema import ALL_CHECKS, EXPECTATIONS, AnyExpectation, CaseFileModel, Frozen
from .yaml_source import KeyPath, Source, format_loc


def _all_subclasses(cls: type[BaseModel]) -> list[type[BaseModel]]:
    out: list[type[BaseModel]] = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


KNOWN_KEYS = sorted({name for m in _all_subclasses(Frozen) for name in m.model_fields} | set(ALL_CHECKS))


def _clean_loc(loc: tuple[Any, ...], data: Any) -> KeyPath:
    """Drop pydantic's internal parts (union tags, function-validator names) from an error location."""
    out: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(part, str) and (part.startswith("#") or part.startswith("function-")):
            continue
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
        out.append(part)
    return tuple(out)


def _model_in(tp: Any) -> Any:
    """The pydantic model inside Optional/Annotated/Union wrappers, else `tp` itself."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    if typing.get_origin(tp) is typing.Annotated:
        return _model_in(typing.get_args(tp)[0])
    if typing.get_origin(tp) is typing.Union or type(tp).__name__ == "UnionType":
        for arg in typing.get_args(tp):
            found = _model_in(arg)
            if isinstance(found, type) and issubclass(found, BaseModel):
                return found
    return tp


def _fields_at(loc: KeyPath) -> list[str]:
    """Field names of the schema model at `loc` (a mapping's location), or [] when there is none."""
    tp: Any = CaseFileModel
    for part in loc:
        if tp == AnyExpectation and part in EXPECTATIONS:  # the union's member is named by the check
            tp = EXPECTATIONS[str(part)]
        tp = _model_in(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if not isinstance(part, str) or part not in tp.model_fields:
                return []
            tp = tp.model_fields[part].annotation
        else:  # a tuple's item or a dict's value
            args = [a for a in typing.get_args(_unannotated(tp)) if a is not Ellipsis]
            if not args:
                return []
            tp = args[-1]
    tp = _model_in(tp)
    if not (isinstance(tp, type) and issubclass(tp, BaseModel)):
        return []
    fields = list(tp.model_fields)
    return [f for f in fields if f != "baseline"] + [f for f in fields if f == "baseline"]  # the extension last


def _unannotated(tp: Any) -> Any:
    while True:
        if typing.get_origin(tp) is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif typing.get_origin(tp) is typing.Union or type(tp).__name__ == "UnionType":
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = args[0]
        else:
            return tp


_PLAIN_TYPES = {  # pydantic's wording of a wrong type, in the words of a case file
    "tuple_type": "expected a list",
    "list_type": "expected a list",
    "string_type": "expected a string",
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "int_from_float": "expected an integer",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "string_too_short": "must not be empty",
}


def _message(err: Any, loc: KeyPath) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1]) if loc else "?"
        allowed = _fields_at(loc[:-1])
        did = suggest(key, allowed or KNOWN_KEYS)
        keys = f"; allowed keys: {', '.join(allowed)}" if allowed else ""
        return f"unknown key {echo(key)}{did}{keys}"
    if kind == "missing":
        return f"missing required key {str(loc[-1])!r}" if loc else "missing required key"
    msg = _PLAIN_TYPES.get(kind) or err["msg"]
    bound = {"greater_than_equal": ">=", "less_than_equal": "<=", "greater_than": ">", "less_than": "<"}.get(kind)
    if bound:
        ctx = err.get("ctx", {})
        msg = f"must be {bound} {next(iter(ctx.values()), '?')}"
    if kind == "too_short":
        msg = f"needs at least {err.get('ctx', {}).get('min_length', 1)} entry"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        fields = _fields_at(loc)
        msg = f"expected a mapping of {', '.join(fields)}" if fields else "expected a mapping"
        if loc and loc[-1] == "baseline":
            msg = f"expected auto or a mapping of {', '.join(fields)}"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if "input" in err and kind not in ("missing",):
        value = err["input"]
        if not isinstance(value, (dict, list, tuple)):
            msg += f" (got {echo(value)})"
    return msg


def validation_problems(exc: ValidationError, source: Source) -> list[str]:
    problems = []
    seen = set()
    errors = exc.errors(include_url=False)
    cleaned = [_clean_loc(e["loc"], source.data) for e in errors]
    for err, loc in zip(errors, cleaned):
        if err["type"] == "too_short" and any(o != loc and o[: len(loc)] == loc for o in cleaned):
            continue  # a list whose items failed: the items' errors say more
        if loc and isinstance(loc[-1], str) and loc[-1].startswith("literal[") and loc[:-1] in cleaned:
            continue  # a union's literal member (baseline: auto): the mapping member's error says both
        line_loc = loc[:-1] if err["type"] == "missing" else loc
        text = f"{source.path}:{source.line_of(line_loc)}: {format_loc(loc)}: {_message(err, loc)}"
        if text not in seen:
            seen.add(text)
            problems.append(text)
    return problems


