"""Metric analysis in the file: the canary's `analysis` (our extension of the
`kruise-rollout` trait, which has none) and the properties of KubeVela's `check-metrics`
workflow step.

A condition is KubeVela's: the step's CUE template evaluates `<value> <condition>`, so a
condition is a comparison with a number (`>=0.95`, `<0.05`, `==1`, `!=0`), and here several
may be joined by CUE's `&` for "and" (`>0.5 & <2`). Queries are PromQL with placeholders
filled in before each measurement (`${cluster.name}`, `${canary.workload}`, ...); which
placeholders exist is known when the file is read, so an unknown one is refused then, not
by Prometheus halfway through a canary.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Self
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

from hub.format.types import Duration, Name, NonEmpty, duration_seconds
from placement.errors import PlacementError
from placement.selectors import validate_label_key
from placement.strict import StrictModel

# --- fields described in the schema -------------------------------------------------------------


class Described(StrictModel):
    """A model whose field docstrings become the descriptions `flotilla schema` prints."""

    model_config = ConfigDict(use_attribute_docstrings=True)


# --- conditions ----------------------------------------------------------------------------------

_COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_COMPARISON = re.compile(
    r"\s*(" + "|".join(map(re.escape, _COMPARISONS)) + r")\s*(" + _NUMBER + r")\s*"
)
_CONDITION_PATTERN = f"^{_COMPARISON.pattern}(&{_COMPARISON.pattern})*$"
_CONDITION_RULE = (
    "one of >=, <=, >, <, ==, != and a number, such as >=0.95; join several with &, "
    "such as >0.5 & <2"
)


@dataclass(frozen=True)
class Condition:
    """What a measured value must satisfy, as KubeVela writes it: `>=0.95`, `>0.5 & <2`.

    Read from (and written back as) its text, which messages quote as the user wrote it.
    In YAML, quote a condition starting with `>` or `!`: unquoted, YAML reads those as a
    block scalar and a tag.
    """

    text: str
    comparisons: tuple[tuple[str, float], ...] = field(repr=False)

    @classmethod
    def parse(cls, text: str) -> Condition:
        """Raise `ValueError` naming the part that is no comparison."""
        comparisons = []
        for part in text.split("&"):
            match = _COMPARISON.fullmatch(part)
            if match is None:
                wrong = (
                    f"{part.strip()!r} is not a comparison"
                    if part.strip()
                    else "a comparison is missing around &"
                    if "&" in text
                    else "it is empty"
                )
                raise ValueError(f"{text!r} is not a condition: {wrong} ({_CONDITION_RULE})")
            comparisons.append((match[1], float(match[2])))
        return cls(text, tuple(comparisons))

    def holds(self, value: float) -> bool:
        return all(_COMPARISONS[op](value, bound) for op, bound in self.comparisons)

    def __str__(self) -> str:
        return self.text

    @classmethod
    def _validate(cls, value: Any) -> Condition:
        if isinstance(value, Condition):
            return value
        if not isinstance(value, str):
            raise PydanticCustomError(
                "condition_type", "expected a condition in quotes, such as '>=0.95'"
            )
        return cls.parse(value)

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[Any], handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._validate, serialization=core_schema.plain_serializer_function_ser_schema(str)
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "pattern": _CONDITION_PATTERN, "description": _CONDITION_RULE}


# --- query placeholders --------------------------------------------------------------------------

# A placeholder's name stops at a quote or brace, so that `${cluster.name"}` is found
# unclosed rather than read up to the `}` closing a label matcher.
_PLACEHOLDER = re.compile(r"\$\{([^${}\"']*)\}")
_UNCLOSED = re.compile(r"\$\{[^${}\"'\s]*")
_LABELS = "cluster.labels."
CLUSTER_NAME = "cluster.name"
STEP_PLACEHOLDERS = (CLUSTER_NAME, f"{_LABELS}<key>", "app")
"""What a `check-metrics` step's query may use: the cluster measured, the application."""
CANARY_PLACEHOLDERS = (
    *STEP_PLACEHOLDERS,
    "namespace",
    "component",
    "workload",
    "canary.workload",
    "stable.hash",
)
"""What a canary's query may use besides: the workload's namespace and component, the
stable workload's name, the canary Deployment's (`<name>-canary`), the stable pods'
pod-template-hash."""


class MissingPlaceholder(Exception):
    """A query's placeholder has no value, e.g. a cluster without the label it names."""

    def __init__(self, placeholder: str) -> None:
        self.placeholder = placeholder
        label = placeholder.removeprefix(_LABELS)
        why = f": the cluster has no label {label!r}" if label != placeholder else ""
        super().__init__(f"no value for ${{{placeholder}}}{why}")


def placeholders(query: str) -> set[str]:
    """The placeholders a query uses, without `${}`: `{"cluster.name", "app"}`."""
    return set(_PLACEHOLDER.findall(query))


def per_cluster(query: str) -> bool:
    """Whether a query asks something of one cluster, so is measured on each."""
    return any(name.startswith("cluster.") for name in placeholders(query))


def cluster_values(name: str, labels: Mapping[str, str]) -> dict[str, str]:
    """The values of a cluster's placeholders, for `expand`."""
    return {CLUSTER_NAME: name, **{f"{_LABELS}{key}": value for key, value in labels.items()}}


def expand(query: str, values: Mapping[str, str]) -> str:
    """The query with every placeholder replaced; raises `MissingPlaceholder` naming the first
    that `values` (keyed by placeholder, without `${}`) lacks."""

    def value(match: re.Match[str]) -> str:
        if match[1] not in values:
            raise MissingPlaceholder(match[1])
        return values[match[1]]

    return _PLACEHOLDER.sub(value, query)


def _known(names: Collection[str]) -> Callable[[str], str]:
    """A check that a query uses only the placeholders `names` and writes each whole."""
    others = [name for name in CANARY_PLACEHOLDERS if name not in names]
    known = ", ".join(f"${{{name}}}" for name in names)

    def check(query: str) -> str:
        unknown = []
        for name in sorted(placeholders(query)):
            label = name.removeprefix(_LABELS)
            if label != name:
                try:
                    validate_label_key(label)
                except PlacementError as e:
                    raise ValueError(f"placeholder ${{{name}}}: {e}") from None
            elif name in others:
                unknown.append(f"${{{name}}} (only a canary's analysis has it)")
            elif name not in names:
                unknown.append(f"${{{name}}}")
        if unknown:
            plural = "s" if len(unknown) > 1 else ""
            raise ValueError(f"unknown placeholder{plural} {', '.join(unknown)}; known: {known}")
        if unclosed := _UNCLOSED.search(_PLACEHOLDER.sub("", query)):
            raise ValueError(f"placeholder {unclosed[0]} is not closed with }}")
        return query

    return check


CanaryQuery = Annotated[NonEmpty, AfterValidator(_known(CANARY_PLACEHOLDERS))]
StepQuery = Annotated[NonEmpty, AfterValidator(_known(STEP_PLACEHOLDERS))]


# --- endpoints and intervals ---------------------------------------------------------------------


def _http_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PydanticCustomError(
            "url", "expected an http:// or https:// URL of Prometheus, such as http://prom:9090"
        )
    return url


def _positive(duration: int | str) -> int | str:
    if duration_seconds(duration) <= 0:
        raise PydanticCustomError("interval", "must be more than 0")
    return duration


PrometheusUrl = Annotated[
    str,
    AfterValidator(_http_url),
    WithJsonSchema({"type": "string", "format": "uri", "pattern": "^https?://"}),
]
Interval = Annotated[Duration, AfterValidator(_positive)]


# --- a canary's analysis -------------------------------------------------------------------------


class MetricCheck(Described):
    """One metric of a canary's analysis, measured on every cluster of the canary."""

    name: Name
    """Names the metric in status and messages."""
    query: CanaryQuery
    """PromQL returning one number (a scalar or a one-series vector), with placeholders such
    as ${cluster.name}, ${namespace}, ${canary.workload}, ${stable.hash}."""
    condition: Condition
    """What the value must satisfy to pass, such as '<0.05' or '>0.5 & <2'."""
    metric_endpoint: PrometheusUrl | None = None
    """The Prometheus to ask; absent: the analysis's metricEndpoint, else each cluster's
    Prometheus registered with the hub."""


class CanaryAnalysis(Described):
    """Metrics that must hold on every cluster before a canary step's pause passes (our
    extension: kruise's canary has none). Counted as Argo Rollouts counts."""

    metrics: list[MetricCheck] = Field(min_length=1)
    """Each is measured on every cluster of the canary, every interval."""
    interval: Interval = "30s"
    """Time between two measurements of a metric on a cluster."""
    success_count: int = Field(default=3, ge=1)
    """Successful measurements of every metric on every cluster that pass a step's pause."""
    failure_limit: int = Field(default=0, ge=0)
    """Failed measurements (the condition broken) tolerated per metric per cluster; one
    more aborts the canary. Argo Rollouts' failureLimit."""
    consecutive_error_limit: int = Field(default=4, ge=0)
    """Measurement errors in a row (no value: Prometheus unreachable, a PromQL error, no
    series) tolerated per metric per cluster; one more aborts the canary. Argo Rollouts'
    consecutiveErrorLimit."""
    metric_endpoint: PrometheusUrl | None = None
    """The Prometheus of metrics that name none; absent: each cluster's Prometheus
    registered with the hub."""

    @model_validator(mode="after")
    def _names_once(self) -> Self:
        first: dict[str, int] = {}
        for index, metric in enumerate(self.metrics):
            earlier = first.setdefault(metric.name, index)
            if earlier != index:
                raise PydanticCustomError(
                    "analysis",
                    "metrics[{index}].name {name} is already used by metrics[{earlier}]",
                    {"index": index, "name": repr(metric.name), "earlier": earlier},
                )
        return self

    def endpoint_of(self, metric: MetricCheck) -> str | None:
        """The Prometheus URL a metric is measured at; `None`: the cluster's own."""
        return metric.metric_endpoint or self.metric_endpoint


# --- the check-metrics step ----------------------------------------------------------------------


class CheckMetricsProperties(Described):
    """KubeVela's `check-metrics` step (`metrics.#PromCheck`), plus `interval`."""

    query: StepQuery
    """PromQL returning one number; with ${cluster.name} or ${cluster.labels.<key>} it is
    measured on each cluster of the deploy step it follows."""
    metric_endpoint: PrometheusUrl | None = None
    """The Prometheus to ask. KubeVela defaults it to an in-cluster URL the hub cannot
    reach; absent here: each cluster's Prometheus registered with the hub, for every
    cluster of the deploy step the check follows."""
    condition: Condition
    """What the value must satisfy, such as '>=0.95'."""
    duration: Duration = "5m"
    """How long the condition must hold, without a failed measurement, for the step to
    succeed."""
    fail_duration: Duration = "2m"
    """How long the condition may stay broken (or measurements fail) before the step
    fails."""
    interval: Interval = "10s"
    """Time between two measurements (our extension)."""

    @property
    def measures_each_cluster(self) -> bool:
        """Whether the step is measured on each cluster of the deploy step it follows."""
        return self.metric_endpoint is None or per_cluster(self.query)
