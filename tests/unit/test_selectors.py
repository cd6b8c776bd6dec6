"""Label syntax and selectors, against Kubernetes' documented rules (apimachinery's
`IsQualifiedName`, `IsValidLabelValue` and `labels.Selector`)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from placement.errors import PlacementError
from placement.selectors import (
    LabelSelector,
    parse_labels,
    validate_label_key,
    validate_label_value,
)

EU_PROD = {"env": "prod", "region": "eu"}
US_PROD = {"env": "prod", "region": "us"}
DEV = {"env": "dev"}
BARE: dict[str, str] = {}


@pytest.mark.parametrize(
    "key",
    [
        "env",
        "a",
        "A1",
        "app.kubernetes.io/name",
        "topology.kubernetes.io/region",
        "x_y-z.w",
        "n" * 63,
        f"{'p' * 253}/name",
        "example.com/" + "n" * 63,
    ],
)
def test_valid_label_keys(key: str) -> None:
    assert validate_label_key(key) == key


@pytest.mark.parametrize(
    ("key", "complaint"),
    [
        ("", "the name must be"),
        ("-env", "the name must be"),
        ("env-", "the name must be"),
        ("env!", "the name must be"),
        ("n" * 64, "the name must be"),
        ("example.com/", "the name must be"),
        ("/name", "the prefix"),
        ("Example.com/name", "the prefix"),
        ("a/b/c", "the prefix"),
        (f"{'p' * 254}/name", "the prefix"),
        ("under_score.com/name", "the prefix"),
    ],
)
def test_invalid_label_keys(key: str, complaint: str) -> None:
    with pytest.raises(PlacementError, match=complaint):
        validate_label_key(key)


@pytest.mark.parametrize("value", ["", "prod", "v1.2.3", "a_b-c", "v" * 63, "Eu"])
def test_valid_label_values(value: str) -> None:
    assert validate_label_value(value) == value


@pytest.mark.parametrize("value", ["-prod", "prod.", "a b", "v" * 64, "eu/west", "é"])
def test_invalid_label_values(value: str) -> None:
    with pytest.raises(PlacementError, match="must be empty or"):
        validate_label_value(value)


def test_parse_labels() -> None:
    assert parse_labels("") == {}
    assert parse_labels("env=prod,region=eu") == EU_PROD
    assert parse_labels("tier=") == {"tier": ""}


def test_parse_labels_splits_at_the_first_equals_sign() -> None:
    # "v=w" is then the value, which is not a valid label value.
    with pytest.raises(PlacementError, match="label value 'v=w'"):
        parse_labels("k=v=w")


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("env", "expected key=value"),
        ("env=prod,", "expected key=value"),
        ("env=prod,env=dev", "given twice"),
        ("bad key=x", "label key 'bad key'"),
    ],
)
def test_parse_labels_refuses(text: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):  # the CLI catches ValueError
        parse_labels(text)


def _selector(data: Any) -> LabelSelector:
    return LabelSelector.model_validate(data)


def _expression(key: str, operator: str, *values: str) -> dict[str, Any]:
    return {"matchExpressions": [{"key": key, "operator": operator, "values": list(values)}]}


# (selector as written, labels, matches?) — the semantics of k8s.io/apimachinery/pkg/labels.
SEMANTICS = [
    ({}, BARE, True),  # the empty selector matches everything
    ({}, EU_PROD, True),
    ({"env": "prod"}, EU_PROD, True),  # KubeVela's plain map
    ({"env": "prod"}, DEV, False),
    ({"env": "prod"}, BARE, False),
    ({"env": "prod", "region": "eu"}, US_PROD, False),  # every label must match
    ({"matchLabels": {"env": "prod"}}, US_PROD, True),
    ({"matchLabels": {"tier": ""}}, {"tier": ""}, True),
    ({"matchLabels": {"tier": ""}}, BARE, False),  # an empty value still needs the key
    (_expression("region", "In", "eu", "us"), US_PROD, True),
    (_expression("region", "In", "eu"), US_PROD, False),
    (_expression("region", "In", "eu"), DEV, False),  # In needs the key
    (_expression("region", "NotIn", "eu"), US_PROD, True),
    (_expression("region", "NotIn", "eu"), EU_PROD, False),
    (_expression("region", "NotIn", "eu"), DEV, True),  # NotIn matches when the key is absent
    (_expression("region", "Exists"), EU_PROD, True),
    (_expression("region", "Exists"), DEV, False),
    (_expression("region", "DoesNotExist"), DEV, True),
    (_expression("region", "DoesNotExist"), EU_PROD, False),
    (
        {
            "matchLabels": {"env": "prod"},
            "matchExpressions": [
                {"key": "region", "operator": "NotIn", "values": ["us"]},
                {"key": "canary", "operator": "DoesNotExist"},
            ],
        },
        EU_PROD,
        True,
    ),
    (
        {
            "matchLabels": {"env": "prod"},
            "matchExpressions": [{"key": "region", "operator": "NotIn", "values": ["eu"]}],
        },
        EU_PROD,
        False,
    ),
]


@pytest.mark.parametrize(("written", "labels", "expected"), SEMANTICS)
def test_selector_semantics(written: Any, labels: dict[str, str], expected: bool) -> None:
    assert _selector(written).matches(labels) is expected


@pytest.mark.parametrize(
    ("written", "complaint"),
    [
        (["env=prod"], "expected a map of label values"),
        ("env=prod", "expected a map of label values"),
        ({"env": {"nested": "map"}}, "expected a map of label values"),
        ({"replicas": 3}, "expected a map of label values"),
        ({"Bad!": "x"}, "label key 'Bad!'"),
        ({"env": "not valid"}, "label value 'not valid'"),
        (_expression("region", "In"), "operator In needs at least one value"),
        (_expression("region", "NotIn"), "operator NotIn needs at least one value"),
        (_expression("region", "Exists", "eu"), "operator Exists takes no values"),
        (_expression("region", "DoesNotExist", "eu"), "operator DoesNotExist takes no values"),
        (_expression("region", "Gt", "1"), "literal_error"),
        (_expression("-bad", "Exists"), "label key '-bad'"),
        (_expression("region", "In", "a b"), "label value 'a b'"),
        ({"matchLabels": {"env": "prod"}, "extra": 1}, "expected a map of label values"),
        ({"matchLabels": ["env"]}, "dict_type"),
    ],
)
def test_selector_refusals(written: Any, complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        _selector(written)


def test_selector_string_form_is_kubectls() -> None:
    selector = _selector(
        {
            "matchLabels": {"region": "eu", "env": "prod"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["web", "api"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "gpu", "operator": "Exists"},
                {"key": "zone", "operator": "NotIn", "values": ["a"]},
            ],
        }
    )
    assert str(selector) == "env=prod,region=eu,tier in (api,web),!canary,gpu,zone notin (a)"
    assert str(_selector({})) == "(everything)"
