"""Cluster labels and label selectors, with exactly Kubernetes' syntax and semantics.

Users already know how `kubectl get -l` and a Deployment's selector behave; a selector that
behaves almost like them is a trap. So: an empty selector matches every cluster, `NotIn`
matches a cluster without the key, `In`/`NotIn` need values and `Exists`/`DoesNotExist` take
none, and keys and values obey the apimachinery rules (`validation.IsQualifiedName`,
`IsValidLabelValue`).

A `clusterLabelSelector` is written either KubeVela's way, a plain map of labels that must all
match, or Kubernetes' way, `{matchLabels, matchExpressions}`; both parse into `LabelSelector`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, Field, GetJsonSchemaHandler, model_validator
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError

from placement.errors import PlacementError
from placement.names import QUALIFIED_NAME
from placement.strict import StrictModel

# apimachinery's limits: a label name and a label value fit in 63 characters, a key's prefix
# is a DNS subdomain of at most 253.
NAME_MAX = 63
PREFIX_MAX = 253

_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_NAME_RULE = (
    "at most 63 characters: letters, digits, '-', '_' or '.', starting and ending with a "
    "letter or digit"
)
_SELECTOR_FIELDS = frozenset(
    {"matchLabels", "matchExpressions", "match_labels", "match_expressions"}
)


def validate_label_key(key: str) -> str:
    """Return `key` if it is a valid label key (`[prefix/]name`), else raise `PlacementError`."""
    prefix, slash, name = key.rpartition("/")
    if slash and not (prefix and len(prefix) <= PREFIX_MAX and _DNS_SUBDOMAIN.fullmatch(prefix)):
        raise PlacementError(
            f"label key {key!r}: the prefix before '/' must be a DNS subdomain (lower-case "
            f"letters, digits, '-' and '.', at most {PREFIX_MAX} characters)"
        )
    if not (name and len(name) <= NAME_MAX and QUALIFIED_NAME.fullmatch(name)):
        raise PlacementError(f"label key {key!r}: the name must be {_NAME_RULE}")
    return key


def validate_label_value(value: str) -> str:
    """Return `value` if it is a valid label value (possibly empty), else raise `PlacementError`."""
    if value and not (len(value) <= NAME_MAX and QUALIFIED_NAME.fullmatch(value)):
        raise PlacementError(f"label value {value!r}: must be empty or {_NAME_RULE}")
    return value


def parse_labels(text: str) -> dict[str, str]:
    """Parse `k=v,k2=v2` (the CLI's form) into validated labels; "" is no labels."""
    labels: dict[str, str] = {}
    for item in text.split(",") if text else ():
        key, equals, value = item.partition("=")
        if not equals:
            raise PlacementError(f"label {item!r}: expected key=value")
        if key in labels:
            raise PlacementError(f"label {key!r} is given twice")
        labels[validate_label_key(key)] = validate_label_value(value)
    return labels


LabelKey = Annotated[str, AfterValidator(validate_label_key)]
LabelValue = Annotated[str, AfterValidator(validate_label_value)]


class Requirement(StrictModel):
    """One `matchExpressions` entry."""

    key: LabelKey
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[LabelValue] = Field(default_factory=list)

    @model_validator(mode="after")
    def _values_fit_operator(self) -> Self:
        if self.operator in ("In", "NotIn") and not self.values:
            raise PydanticCustomError(
                "selector_values",
                "operator {operator} needs at least one value",
                {"operator": self.operator},
            )
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise PydanticCustomError(
                "selector_values",
                "operator {operator} takes no values",
                {"operator": self.operator},
            )
        return self

    def matches(self, labels: Mapping[str, str]) -> bool:
        match self.operator:
            case "In":
                return labels.get(self.key) in self.values
            case "NotIn":
                return labels.get(self.key) not in self.values
            case "Exists":
                return self.key in labels
            case "DoesNotExist":
                return self.key not in labels

    def __str__(self) -> str:
        match self.operator:
            case "Exists":
                return self.key
            case "DoesNotExist":
                return f"!{self.key}"
            case _:
                operator = "in" if self.operator == "In" else "notin"
                return f"{self.key} {operator} ({','.join(sorted(self.values))})"


class LabelSelector(StrictModel):
    """matchLabels AND matchExpressions; the empty selector matches every cluster."""

    match_labels: dict[LabelKey, LabelValue] = Field(default_factory=dict)
    match_expressions: list[Requirement] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _accept_plain_labels(cls, data: Any) -> Any:
        """KubeVela's form: a map of labels. A map holding only the Kubernetes fields is not it."""
        if isinstance(data, LabelSelector) or (
            isinstance(data, dict) and data.keys() <= _SELECTOR_FIELDS
        ):
            return data
        if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in data.items()
        ):
            raise PydanticCustomError("label_selector", "expected a map of label values")
        problems = []
        for key, value in data.items():
            try:
                validate_label_key(key)
                validate_label_value(value)
            except PlacementError as e:
                problems.append(str(e))
        if problems:
            raise PydanticCustomError("label_selector", "; ".join(problems))
        return {"matchLabels": data}

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """Editors must accept KubeVela's plain map too, not only the Kubernetes form."""
        schema = handler.resolve_ref_schema(handler(core_schema))
        kubernetes = dict(schema)
        schema.clear()
        schema["anyOf"] = [
            {"type": "object", "additionalProperties": {"type": "string"}, "title": "Labels"},
            kubernetes,
        ]
        return schema

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match_labels.items()) and all(
            requirement.matches(labels) for requirement in self.match_expressions
        )

    def __str__(self) -> str:
        """kubectl's `-l` syntax, for messages."""
        terms = [f"{k}={v}" for k, v in sorted(self.match_labels.items())]
        terms += [str(requirement) for requirement in self.match_expressions]
        return ",".join(terms) or "(everything)"
