"""The case-file schema (CASES.md v1 and its extensions) as frozen, strict pydantic v2 models. No pytest here.

Each check's parameters are one model with the check's name in `check`; `expect:` entries validate as a
discriminated union on their single key. Validation of a whole file, with its messages, is `casefile.py`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Union, cast

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    create_model,
    field_validator,
    model_validator,
)

from ..common.files import path_problem
from ..common.hints import suggest


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
        if any(v == "" for v in value):
            raise ValueError("entries must not be empty strings")
        return tuple(value)
    raise ValueError("expected a non-empty list of strings")


MAX_NAME_CHARS = 512  # a release, an SAE id, a model or hook name, a dataset name


def _name(value: Any) -> Any:
    if isinstance(value, str):
        if not value:
            raise ValueError("must not be empty")
        if len(value) > MAX_NAME_CHARS:
            raise ValueError(f"is {len(value):,} characters long, over the {MAX_NAME_CHARS} a name may have")
        bad = next((c for c in value if ord(c) < 32 or ord(c) == 127), None)
        if bad is not None:
            raise ValueError(f"holds the control character {bad!r}: a name is printable text")
    return value


def _path_text(value: Any) -> Any:
    if isinstance(value, str):
        if not value:
            raise ValueError("must not be empty")
        bad = next((c for c in value if ord(c) < 32 or ord(c) == 127), None)
        if bad is not None:
            raise ValueError(f"holds the control character {bad!r}: a path is printable text")
        problem = path_problem(value)
        if problem:
            raise ValueError(f"cannot be a path: it {problem}")
    return value


Name = Annotated[str, BeforeValidator(_name)]
PathText = Annotated[str, BeforeValidator(_path_text)]
Groups = Annotated[tuple[str, ...], BeforeValidator(_groups)]
FeatureRef = Annotated[int | str, BeforeValidator(_feature)]
Strings = Annotated[tuple[str, ...], BeforeValidator(_strings)]
Text = Annotated[str, Field(min_length=1)]
SEED_MAX = 2**63 - 1  # torch.Generator.manual_seed takes a 64-bit integer


# ----------------------------------------------------------------------------- checks
class BaselineSpec(Frozen):
    """Per-check drift bound against the reference's recorded value (see --interp-update):
    |new - old| <= abs + rel * |old|. `tolerance` is `abs` (its v1 spelling); `{}` keeps the check's defaults."""

    tolerance: Annotated[float, Field(ge=0.0)] | None = None
    abs: Annotated[float, Field(ge=0.0)] | None = None
    rel: Annotated[float, Field(ge=0.0)] | None = None

    @model_validator(mode="after")
    def _one_absolute(self) -> BaselineSpec:
        if self.tolerance is not None and self.abs is not None:
            raise ValueError("give abs or tolerance (the same thing), not both")
        return self


AUTO = "auto"


class Check(Frozen):
    """Parameters of one check; `check` is its name in a case file. `baseline: auto` compares by the
    measurements' intervals instead of a fixed tolerance (docs/CASES.md, "Choosing tolerances")."""

    check: ClassVar[str] = ""
    baseline: BaselineSpec | Literal["auto"] | None = None


class Fires(Check):
    check: ClassVar[str] = 'fires'
    feature: FeatureRef
    on: Groups | None = None
    min: float = 0.0
    token: Text | None = None


class Silent(Check):
    check: ClassVar[str] = 'silent'
    feature: FeatureRef
    on: Groups | None = None
    max: float = 0.0
    token: Text | None = None


class Separates(Check):
    check: ClassVar[str] = 'separates'
    feature: FeatureRef
    positive: Groups
    negative: Groups
    min_auroc: float


class TopK(Check):
    check: ClassVar[str] = 'top_k'
    feature: FeatureRef
    token: Text
    k: Annotated[int, Field(ge=1)]
    on: Groups | None = None


class MostActive(Check):
    check: ClassVar[str] = 'most_active'
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
    check: ClassVar[str] = 'logprob_shift'
    tokens: Strings
    min: float


class Kl(Check):
    check: ClassVar[str] = 'kl'
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
    check: ClassVar[str] = 'generates'
    any_of: Strings | None = None
    none_of: Strings | None = None
    max_new_tokens: Annotated[int, Field(ge=1, le=4096)] = 20

    @model_validator(mode="after")
    def _one_list(self) -> Generates:
        if self.any_of is None and self.none_of is None:
            raise ValueError("give any_of, none_of or both")
        return self


class Density(Check):
    """Firing frequency of one feature (fraction of tokens where it is > 0) within [min, max]."""

    check: ClassVar[str] = "density"
    feature: FeatureRef
    min: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    max: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0
    on: Groups | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Density:
        _ordered(self.min, self.max)
        return self


class DenseFraction(Check):
    """Fraction of features whose firing frequency is above `above` (default 0.1)."""

    check: ClassVar[str] = "dense_fraction"
    max: float
    above: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.1
    on: Groups | None = None


class Matched(Check):
    """The feature survives retraining: its best match in a candidate SAE (by decoder cosine) has decoder cosine
    >= min_cosine, encoder cosine >= min_encoder_cosine (default: min_cosine), and its activations correlate
    with the reference feature's over the check's texts at >= min_correlation."""

    check: ClassVar[str] = "matched"
    feature: FeatureRef
    min_cosine: Annotated[float, Field(ge=-1.0, le=1.0)]
    min_encoder_cosine: Annotated[float, Field(ge=-1.0, le=1.0)] | None = None
    min_correlation: Annotated[float, Field(ge=-1.0, le=1.0)] = 0.5
    on: Groups | None = None


class ExplainedVariance(EvBound):
    check: ClassVar[str] = "explained_variance"


class ExplainedVarianceLegacy(MinBound):
    check: ClassVar[str] = "explained_variance_legacy"


class Mse(MaxBound):
    check: ClassVar[str] = "mse"


class Cosine(MinBound):
    check: ClassVar[str] = "cosine"


class L0(L0Bounds):
    check: ClassVar[str] = "l0"


class DeadFraction(MaxBound):
    check: ClassVar[str] = "dead_fraction"


class CeLossScore(MinBound):
    check: ClassVar[str] = "ce_loss_score"


class DeltaLoss(MaxBound):
    check: ClassVar[str] = "delta_loss"


class KlDiv(MaxBound):
    check: ClassVar[str] = "kl_div"


FEATURE_CHECKS = ("fires", "silent", "separates", "top_k", "most_active", "density")
RECONSTRUCTION_CHECKS = ("explained_variance", "explained_variance_legacy", "mse", "cosine", "l0", "dead_fraction", "dense_fraction")
LOSS_CHECKS = ("ce_loss_score", "delta_loss", "kl_div")
STEERING_CHECKS = ("logprob_shift", "kl", "generates")
IDENTITY_CHECKS = ("matched",)  # about the SAE's weights: no texts
CORPUS_CHECKS = ("fires", "silent", "density", *RECONSTRUCTION_CHECKS, *LOSS_CHECKS)  # checks that take a corpus group
ALL_CHECKS = FEATURE_CHECKS + RECONSTRUCTION_CHECKS + LOSS_CHECKS + STEERING_CHECKS + IDENTITY_CHECKS

PARAMS: dict[str, type[Check]] = {
    cls.check: cls
    for cls in (
        Fires, Silent, Separates, TopK, MostActive,
        ExplainedVariance, ExplainedVarianceLegacy, Mse, Cosine, L0, DeadFraction,
        CeLossScore, DeltaLoss, KlDiv,
        LogprobShift, Kl, Generates, Matched, Density, DenseFraction,
    )
}


class Expectation(Frozen):
    """One entry of `expect:`: a mapping with exactly one key, the check's name (one subclass per check)."""

    @property
    def params(self) -> Check:
        return cast(Check, getattr(self, next(iter(type(self).model_fields))))

    @property
    def name(self) -> str:
        return self.params.check


def _expectation_model(name: str, params: type[Check]) -> type[Expectation]:
    cls_name = "".join(part.title() for part in name.split("_")) + "Expectation"
    return cast(type[Expectation], create_model(cls_name, __base__=Expectation, __module__=__name__, **{name: (params, ...)}))  # type: ignore[call-overload]


EXPECTATIONS: dict[str, type[Expectation]] = {name: _expectation_model(name, PARAMS[name]) for name in ALL_CHECKS}
globals().update({cls.__name__: cls for cls in EXPECTATIONS.values()})  # importable by name: plans pickle (to Ray workers)


def _one_check(data: Any) -> Any:
    if not isinstance(data, dict) or not data:
        raise ValueError("expected a mapping with one check name as its key, e.g. {l0: {max: 50}}")
    unknown = [k for k in data if k not in PARAMS]
    if unknown:
        raise ValueError(f"unknown check {unknown[0]!r}{suggest(unknown[0], ALL_CHECKS)}; checks: {', '.join(ALL_CHECKS)}")
    if len(data) != 1:
        raise ValueError(f"one check per list entry, got {len(data)}: {', '.join(map(str, data))}; write each as its own '- name: {{...}}' entry")
    return data


def _check_tag(data: Any) -> str | None:
    return f"#{next(iter(data))}" if isinstance(data, dict) and len(data) == 1 else None


if TYPE_CHECKING:
    AnyExpectation = Expectation
else:  # a discriminated union of the per-check models, tagged by the entry's one key
    AnyExpectation = Annotated[
        Union[tuple(Annotated[cls, Tag(f"#{name}")] for name, cls in EXPECTATIONS.items())],  # noqa: UP007
        Discriminator(_check_tag),
        BeforeValidator(_one_check),
    ]


# ----------------------------------------------------------------------------- cases
class Steer(Frozen):
    feature: FeatureRef
    strength: float
    mode: Literal["add", "clamp"] = "add"
    positions: Literal["all", "prompt"] = "all"
    temperature: Annotated[float, Field(ge=0.0)] = 0.0
    seed: Annotated[int, Field(ge=0, le=SEED_MAX)] = 0


class Case(Frozen):
    id: Annotated[str, Field(min_length=1)]
    description: str | None = None
    on: Groups | None = None
    text: Text | None = None
    texts: Annotated[tuple[Text, ...], BeforeValidator(_strings)] | None = None
    prompt: Text | None = None
    steer: Steer | None = None
    expect: Annotated[tuple[AnyExpectation, ...], Field(min_length=1)]

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


SAE_FORMATS = ("saelens", "sparsify", "dictionary_learning", "gemma_scope")  # compute/formats.py reads them


class SaeRef(Frozen):
    release: Name | None = None
    id: Name | None = None
    path: PathText | None = None
    format: Literal["saelens", "sparsify", "dictionary_learning", "gemma_scope"] | None = None  # a local checkpoint's format, when its files do not tell

    @model_validator(mode="after")
    def _form(self) -> SaeRef:
        if self.path is not None and (self.release is not None or self.id is not None):
            raise ValueError("give either release + id, or path, not both")
        if self.path is None and (self.release is None or self.id is None):
            raise ValueError("give release and id (a SAELens or bundled release), or path (a local SAE directory)")
        if self.format is not None and self.path is None:
            raise ValueError("format goes with path: a registry SAE's format is the registry's")
        return self

    @property
    def label(self) -> str:
        return self.path if self.path is not None else f"{self.release}/{self.id}"


# TransformerLens `from_pretrained` options a case file (or a checkpoint's model_from_pretrained_kwargs) may set:
# how the weights are processed, never where code or weights come from (no trust_remote_code, revision, hf_model)
MODEL_KWARGS: dict[str, tuple[type, ...]] = {
    "fold_ln": (bool,),
    "center_writing_weights": (bool,),
    "center_unembed": (bool,),
    "fold_value_biases": (bool,),
    "refactor_factored_attn_matrices": (bool,),
    "default_prepend_bos": (bool,),
    "default_padding_side": (str,),
    "first_n_layers": (int,),
}


def model_kwargs_problem(kwargs: dict[str, Any]) -> str | None:
    """Why these model kwargs are refused (a key outside MODEL_KWARGS, a value of the wrong type), or None."""
    for key, value in kwargs.items():
        if key not in MODEL_KWARGS:
            return f"{key!r} is not passed to the model loader (allowed: {', '.join(MODEL_KWARGS)})"
        types = MODEL_KWARGS[key]
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            return f"{key!r} takes a {' or '.join(t.__name__ for t in types)}, got {type(value).__name__}"
        if key == "default_padding_side" and value not in ("left", "right"):
            return "'default_padding_side' is 'left' or 'right'"
        if key == "first_n_layers" and isinstance(value, int) and not 1 <= value <= 10_000:
            return "'first_n_layers' is a positive number of layers"
    return None


def _model_kwargs(value: Any) -> Any:
    if isinstance(value, dict):
        problem = model_kwargs_problem(value)
        if problem:
            raise ValueError(problem)
    return value


class Target(Frozen):
    model: Name
    model_kwargs: Annotated[dict[str, Any], BeforeValidator(_model_kwargs)] = Field(default_factory=dict)
    sae: SaeRef | None = None
    saes: Annotated[tuple[SaeRef, ...], Field(min_length=1)] | None = None
    hook: Name | None = None

    @model_validator(mode="before")
    @classmethod
    def _lists(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("saes"), list):
            data = {**data, "saes": tuple(data["saes"])}
        return data

    @field_validator("saes")
    @classmethod
    def _each_sae_once(cls, saes: tuple[SaeRef, ...] | None) -> tuple[SaeRef, ...] | None:
        labels = [s.label for s in saes or ()]
        twice = next((label for i, label in enumerate(labels) if label in labels[:i]), None)
        if twice is not None:
            raise ValueError(f"lists {twice!r} twice: name each SAE once (every case runs once per SAE)")
        return saes

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


class CorpusSpec(Frozen):
    """A corpus as a text group: a local file (path, relative to the case file) or a Hugging Face dataset."""

    path: PathText | None = None
    dataset: Name | None = None
    bundled: Literal["tiny-stdlib-heldout"] | None = None  # a corpus shipped with interp-tests
    split: Name | None = None
    field: Name = "text"
    tokens: Annotated[int, Field(ge=1, le=10**10)] = 50_000
    context: Annotated[int, Field(ge=2, le=1_000_000)] = 128
    seed: Annotated[int, Field(ge=0, le=SEED_MAX)] = 0

    @model_validator(mode="after")
    def _one_source(self) -> CorpusSpec:
        if sum(x is not None for x in (self.path, self.dataset, self.bundled)) != 1:
            raise ValueError("give exactly one of path (a .txt, .jsonl or .parquet file), dataset (a Hugging Face dataset name) or bundled (tiny-stdlib-heldout)")
        if self.split is not None and self.dataset is None:
            raise ValueError("split goes with dataset")
        return self

    @property
    def dataset_split(self) -> str:
        return self.split or "train"


class CorpusGroup(Frozen):
    corpus: CorpusSpec


def _group_kind(value: Any) -> str:
    return "#corpus" if isinstance(value, dict) else "#texts"


TextGroup = Annotated[
    Union[Annotated[Annotated[tuple[Text, ...], BeforeValidator(_strings)], Tag("#texts")], Annotated[CorpusGroup, Tag("#corpus")]],  # noqa: UP007
    Discriminator(_group_kind),
]


class CaseFileModel(Frozen):
    target: Target
    texts: dict[str, TextGroup] = Field(default_factory=dict)
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

    def corpus(self, group: str) -> CorpusSpec | None:
        found = self.texts.get(group)
        return found.corpus if isinstance(found, CorpusGroup) else None

    def text_list(self, group: str) -> tuple[str, ...]:
        """The texts of a list group (() for a corpus group or an unknown name)."""
        found = self.texts.get(group)
        return found if isinstance(found, tuple) else ()


