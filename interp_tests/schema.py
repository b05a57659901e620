"""The case-file schema (CASES.md v1) as frozen, strict pydantic v2 models, and its validation.

`load_case_file(path)` returns a `CaseFile` or raises `CaseFileError` whose lines read
`path:line: dotted.location: message (got value)`.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

from .errors import CaseFileError
from .yaml_source import KeyPath, Source, format_loc, load_yaml


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    @model_validator(mode="after")
    def _no_nan(self) -> Frozen:
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, float) and math.isnan(value):
                raise ValueError(f"{name} is NaN: give a number (.inf is allowed where a bound may be infinite)")
        return self


def _groups(value: Any) -> Any:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError("expected a text-group name or a non-empty list of group names")


def _feature(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError("expected a feature name from `features:` or a plain feature index")
    return value


def _strings(value: Any) -> Any:
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError("expected a non-empty list of strings")


Groups = Annotated[tuple[str, ...], BeforeValidator(_groups)]
FeatureRef = Annotated[int | str, BeforeValidator(_feature)]
Strings = Annotated[tuple[str, ...], BeforeValidator(_strings)]
Text = Annotated[str, Field(min_length=1)]


# ----------------------------------------------------------------------------- checks
class BaselineSpec(Frozen):
    """Per-check drift bound against the recorded baseline (see --interp-update)."""

    tolerance: Annotated[float, Field(ge=0.0)]


class Check(Frozen):
    baseline: BaselineSpec | None = None


class Fires(Check):
    feature: FeatureRef
    on: Groups | None = None
    min: float = 0.0
    token: Text | None = None


class Silent(Check):
    feature: FeatureRef
    on: Groups | None = None
    max: float = 0.0
    token: Text | None = None


class Separates(Check):
    feature: FeatureRef
    positive: Groups
    negative: Groups
    min_auroc: float


class TopK(Check):
    feature: FeatureRef
    token: Text
    k: Annotated[int, Field(ge=1)]
    on: Groups | None = None


class MostActive(Check):
    feature: FeatureRef
    on: Groups | None = None


class MinBound(Check):
    min: float
    on: Groups | None = None


class MaxBound(Check):
    max: float
    on: Groups | None = None


class RegistryBound(Check):
    """`registry: true, tolerance: T` takes the expected value from the SAE's registry entry."""

    registry: bool = False
    tolerance: Annotated[float, Field(ge=0.0)] | None = None

    @model_validator(mode="after")
    def _registry_form(self) -> RegistryBound:
        bounds = [k for k in ("min", "max") if getattr(self, k, None) is not None]
        if self.registry:
            if self.tolerance is None:
                raise ValueError("registry: true needs tolerance: how far the observed value may be from the registry's")
            if bounds:
                raise ValueError(f"give either registry: true with tolerance, or {'/'.join(bounds)}, not both")
        elif self.tolerance is not None:
            raise ValueError("tolerance is only used with registry: true")
        elif not bounds:
            raise ValueError(f"give {' or '.join(self._bound_names())}, or registry: true with tolerance")
        _ordered(getattr(self, "min", None), getattr(self, "max", None))
        return self

    def _bound_names(self) -> tuple[str, ...]:
        return tuple(k for k in ("min", "max") if k in type(self).model_fields)


class L0Bounds(RegistryBound):
    """l0: {min?, max?} or {registry: true, tolerance}: |observed - registry l0| <= tolerance."""

    min: float | None = None
    max: float | None = None
    on: Groups | None = None


class EvBound(RegistryBound):
    """explained_variance: {min} or {registry: true, tolerance}: observed >= registry value - tolerance."""

    min: float | None = None
    on: Groups | None = None


class LogprobShift(Check):
    tokens: Strings
    min: float


class Kl(Check):
    min: float = 0.0
    max: float = math.inf

    @model_validator(mode="after")
    def _ordered(self) -> Kl:
        _ordered(self.min, self.max)
        return self


def _ordered(lo: float | None, hi: float | None) -> None:
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"min {lo!r} is greater than max {hi!r}: no value can pass (swap them?)")


class Generates(Check):
    any_of: Strings | None = None
    none_of: Strings | None = None
    max_new_tokens: Annotated[int, Field(ge=1, le=4096)] = 20

    @model_validator(mode="after")
    def _one_list(self) -> Generates:
        if self.any_of is None and self.none_of is None:
            raise ValueError("give any_of, none_of or both")
        return self


FEATURE_CHECKS = ("fires", "silent", "separates", "top_k", "most_active")
RECONSTRUCTION_CHECKS = (
    "explained_variance",
    "explained_variance_legacy",
    "mse",
    "cosine",
    "l0",
    "dead_fraction",
)
LOSS_CHECKS = ("ce_loss_score", "delta_loss", "kl_div")
STEERING_CHECKS = ("logprob_shift", "kl", "generates")
ALL_CHECKS = FEATURE_CHECKS + RECONSTRUCTION_CHECKS + LOSS_CHECKS + STEERING_CHECKS


class Expectation(Frozen):
    """One entry of `expect:`: a mapping with exactly one key, the check's name."""

    fires: Fires | None = None
    silent: Silent | None = None
    separates: Separates | None = None
    top_k: TopK | None = None
    most_active: MostActive | None = None
    explained_variance: EvBound | None = None
    explained_variance_legacy: MinBound | None = None
    mse: MaxBound | None = None
    cosine: MinBound | None = None
    l0: L0Bounds | None = None
    dead_fraction: MaxBound | None = None
    ce_loss_score: MinBound | None = None
    delta_loss: MaxBound | None = None
    kl_div: MaxBound | None = None
    logprob_shift: LogprobShift | None = None
    kl: Kl | None = None
    generates: Generates | None = None

    @model_validator(mode="before")
    @classmethod
    def _exactly_one(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError("expected a mapping with one check name as its key, e.g. {l0: {max: 50}}")
        unknown = [k for k in data if k not in ALL_CHECKS]
        if unknown:
            hint = difflib.get_close_matches(str(unknown[0]), ALL_CHECKS, n=1)
            did = f"did you mean {hint[0]!r}? " if hint else ""
            raise ValueError(f"unknown check {unknown[0]!r} ({did}checks: {', '.join(ALL_CHECKS)})")
        if len(data) != 1:
            raise ValueError(f"one check per list entry, got {len(data)}: {', '.join(map(str, data))}; write each as its own '- name: {{...}}' entry")
        return data

    @property
    def name(self) -> str:
        return next(k for k in ALL_CHECKS if getattr(self, k) is not None)

    @property
    def params(self) -> Any:
        return getattr(self, self.name)


# ----------------------------------------------------------------------------- cases
class Steer(Frozen):
    feature: FeatureRef
    strength: float
    mode: Literal["add", "clamp"] = "add"
    positions: Literal["all", "prompt"] = "all"
    temperature: Annotated[float, Field(ge=0.0)] = 0.0
    seed: int = 0


class Case(Frozen):
    id: Annotated[str, Field(min_length=1)]
    description: str | None = None
    on: Groups | None = None
    text: Text | None = None
    texts: Annotated[tuple[Text, ...], BeforeValidator(_strings)] | None = None
    prompt: Text | None = None
    steer: Steer | None = None
    expect: Annotated[tuple[Expectation, ...], Field(min_length=1)]

    @model_validator(mode="before")
    @classmethod
    def _lists(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("expect"), list):
            data = {**data, "expect": tuple(data["expect"])}
        return data

    @model_validator(mode="after")
    def _one_text_source(self) -> Case:
        given = [k for k in ("on", "text", "texts") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one of on, text, texts (got {', '.join(given)})")
        return self


class SaeRef(Frozen):
    release: str | None = None
    id: str | None = None
    path: str | None = None

    @model_validator(mode="after")
    def _form(self) -> SaeRef:
        if self.path is not None and (self.release is not None or self.id is not None):
            raise ValueError("give either release + id, or path, not both")
        if self.path is None and (self.release is None or self.id is None):
            raise ValueError("give release and id (a SAELens or bundled release), or path (a local SAE directory)")
        return self

    @property
    def label(self) -> str:
        return self.path if self.path is not None else f"{self.release}/{self.id}"


class Target(Frozen):
    model: Annotated[str, Field(min_length=1)]
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    sae: SaeRef | None = None
    saes: Annotated[tuple[SaeRef, ...], Field(min_length=1)] | None = None
    hook: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _lists(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("saes"), list):
            data = {**data, "saes": tuple(data["saes"])}
        return data

    @model_validator(mode="after")
    def _one_sae_form(self) -> Target:
        if (self.sae is None) == (self.saes is None):
            raise ValueError("give exactly one of sae (one SAE) or saes (a list; every case runs once per SAE)")
        return self

    @property
    def sae_list(self) -> tuple[SaeRef, ...]:
        return self.saes if self.saes is not None else (self.sae,)  # type: ignore[return-value]


class MostActiveOn(Frozen):
    most_active_on: Text
    token: str | None = None


def _feature_kind(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return "#index"
    if isinstance(value, dict):
        return "#selector"
    return None


FeatureDef = Annotated[
    Annotated[int, Tag("#index")] | Annotated[MostActiveOn, Tag("#selector")],
    Discriminator(
        _feature_kind,
        custom_error_type="feature_definition",
        custom_error_message="expected a feature index or {most_active_on: TEXT, token?: T}",
    ),
]


class CaseFileModel(Frozen):
    target: Target
    texts: dict[str, Annotated[tuple[Text, ...], BeforeValidator(_strings)]] = Field(default_factory=dict)
    features: dict[str, FeatureDef] = Field(default_factory=dict)
    cases: Annotated[tuple[Case, ...], Field(min_length=1)]

    @model_validator(mode="before")
    @classmethod
    def _lists(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError("a case file is a mapping with the keys target, texts, features, cases")
        if isinstance(data.get("cases"), list):
            data = {**data, "cases": tuple(data["cases"])}
        return data


# ----------------------------------------------------------------------------- loading
@dataclass(frozen=True)
class CaseFile:
    """A validated case file with the line of every key path."""

    path: Path
    model: CaseFileModel
    source: Source

    def line(self, *loc: str | int) -> int:
        return self.source.line_of(loc)

    def where(self, *loc: str | int) -> str:
        return f"{self.path}:{self.line(*loc)}"


_KNOWN_KEYS = sorted(
    {name for m in Frozen.__subclasses__() for name in m.model_fields} | set(ALL_CHECKS)
)


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
    import typing

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
    import typing

    tp: Any = CaseFileModel
    for part in loc:
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
    import typing

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
        hint = difflib.get_close_matches(key, allowed or _KNOWN_KEYS, n=1)
        did = f" (did you mean {hint[0]!r}?)" if hint else ""
        keys = f"; allowed keys: {', '.join(allowed)}" if allowed else ""
        return f"unknown key {key!r}{did}{keys}"
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
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if "input" in err and kind not in ("missing",):
        value = err["input"]
        if not isinstance(value, (dict, list, tuple)):
            msg += f" (got {value!r})"
    return msg


def _validation_problems(exc: ValidationError, source: Source) -> list[str]:
    problems = []
    seen = set()
    errors = exc.errors(include_url=False)
    cleaned = [_clean_loc(e["loc"], source.data) for e in errors]
    for err, loc in zip(errors, cleaned):
        if err["type"] == "too_short" and any(o != loc and o[: len(loc)] == loc for o in cleaned):
            continue  # a list whose items failed: the items' errors say more
        line_loc = loc[:-1] if err["type"] == "missing" else loc
        text = f"{source.path}:{source.line_of(line_loc)}: {format_loc(loc)}: {_message(err, loc)}"
        if text not in seen:
            seen.add(text)
            problems.append(text)
    return problems


def _reference_problems(cf: CaseFile) -> list[str]:
    """Cross-references pydantic cannot see: group and feature names, ids, texts for each check."""
    m = cf.model
    problems: list[str] = []

    def bad(loc: tuple[str | int, ...], msg: str) -> None:
        problems.append(f"{cf.where(*loc)}: {format_loc(loc)}: {msg}")

    def check_groups(groups: tuple[str, ...] | None, loc: tuple[str | int, ...]) -> None:
        for g in groups or ():
            if g not in m.texts:
                hint = difflib.get_close_matches(g, list(m.texts), n=1)
                did = f" (did you mean {hint[0]!r}?)" if hint else ""
                known = ", ".join(m.texts) or "none: add a top-level texts: mapping"
                bad(loc, f"unknown text group {g!r}{did}; groups: {known}")

    def check_feature(ref: int | str, loc: tuple[str | int, ...]) -> None:
        if isinstance(ref, str) and ref not in m.features:
            hint = difflib.get_close_matches(ref, list(m.features), n=1)
            did = f" (did you mean {hint[0]!r}?)" if hint else ""
            known = ", ".join(m.features) or "none: add a top-level features: mapping or use an index"
            bad(loc, f"unknown feature {ref!r}{did}; features: {known}")

    ids: dict[str, int] = {}
    for i, case in enumerate(m.cases):
        if case.id in ids:
            bad(("cases", i, "id"), f"duplicate case id {case.id!r} (first at line {cf.line('cases', ids[case.id], 'id')}): ids must be unique per file")
        else:
            ids[case.id] = i
        check_groups(case.on, ("cases", i, "on"))
        has_texts = case.on is not None or case.text is not None or case.texts is not None
        if case.steer is not None:
            check_feature(case.steer.feature, ("cases", i, "steer", "feature"))
            if case.prompt is None:
                bad(("cases", i, "steer"), "a steering case needs prompt: the text to steer")
        elif case.prompt is not None and not any(e.name in STEERING_CHECKS for e in case.expect):
            bad(("cases", i, "prompt"), "prompt is only used by steering cases: add steer: {feature, strength}")
        for j, exp in enumerate(case.expect):
            name, p = exp.name, exp.params
            loc = ("cases", i, "expect", j, name)
            if hasattr(p, "feature"):
                check_feature(p.feature, (*loc, "feature"))
            if name in STEERING_CHECKS:
                if case.steer is None or case.prompt is None:
                    bad(loc, f"{name} is a steering check: the case needs steer: {{feature, strength}} and prompt:")
                continue
            if name == "separates":
                check_groups(p.positive, (*loc, "positive"))
                check_groups(p.negative, (*loc, "negative"))
                continue
            check_groups(p.on, (*loc, "on"))
            if p.on is None and not has_texts:
                bad(loc, f"{name} needs texts: give the case on:, text: or texts:, or the check its own on:")
    for name, fdef in m.features.items():
        if isinstance(fdef, MostActiveOn) and fdef.token == "":
            bad(("features", name, "token"), "token must not be empty")
    return problems


def parse_case_file(source: Source) -> CaseFile:
    try:
        model = CaseFileModel.model_validate(source.data)
    except ValidationError as exc:
        raise CaseFileError(_validation_problems(exc, source)) from None
    cf = CaseFile(source.path, model, source)
    problems = _reference_problems(cf)
    if problems:
        raise CaseFileError(problems)
    return cf


def load_case_file(path: Path, display: Path | None = None) -> CaseFile:
    """Parse and validate a case file; messages name it as `display` (default: `path`)."""
    return parse_case_file(load_yaml(path, display))
