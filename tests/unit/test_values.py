"""Layered values: Helm's merge rule as properties, provenance, and `${cluster...}`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from placement.errors import PlacementError
from placement.topology import ClusterInfo
from placement.values import (
    Layer,
    Setting,
    format_path,
    merge_layers,
    parse_path,
    substitute_cluster,
)

Path = tuple[str, ...]

keys = st.sampled_from(["a", "b", "c", "image", "app.kubernetes.io/name"])
scalars = st.one_of(
    st.integers(-3, 3), st.booleans(), st.sampled_from(["", "x", "v1"]), st.lists(st.integers(0, 2))
)
falsy = st.sampled_from([False, 0, "", []])
values_trees = st.recursive(
    st.one_of(scalars, st.none()),
    lambda children: st.dictionaries(keys, children, max_size=4),
    max_leaves=12,
)
maps = st.dictionaries(keys, values_trees, max_size=4)


def strip_nulls(values: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: strip_nulls(v) if isinstance(v, Mapping) else v
        for k, v in values.items()
        if v is not None
    }


def leaves(values: Mapping[str, Any], at: Path = ()) -> dict[Path, Any]:
    found: dict[Path, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            found |= leaves(value, (*at, key))
        else:
            found[(*at, key)] = value
    return found


def lookup(values: Any, path: Path) -> Any:
    for key in path:
        if not isinstance(values, Mapping) or key not in values:
            return None
        values = values[key]
    return values


def merge(*layers: Mapping[str, Any], keep_nulls: bool = False) -> dict[str, Any]:
    named = [Layer(f"L{i}", values) for i, values in enumerate(layers)]
    return merge_layers(named, keep_nulls=keep_nulls).values


@given(maps)
def test_merging_with_nothing_is_identity(values: dict[str, Any]) -> None:
    assert merge(values) == strip_nulls(values)
    assert merge(values, {}) == strip_nulls(values)
    assert merge({}, values) == strip_nulls(values)
    assert merge(values, keep_nulls=True) == values


@given(maps, keys, st.one_of(scalars, falsy))
def test_a_later_scalar_or_list_wins(base: dict[str, Any], key: str, value: Any) -> None:
    assert merge(base, {key: value})[key] == value  # explicit false, 0, "" and [] included


@given(maps, keys)
def test_null_deletes_the_key(base: dict[str, Any], key: str) -> None:
    merged = merge(base, {key: None})
    assert key not in merged
    assert merged == {k: v for k, v in strip_nulls(base).items() if k != key}
    assert merge(base, {key: None}, keep_nulls=True)[key] is None


def untouched(layer: Mapping[str, Any], path: Path) -> bool:
    """Whether `layer` says nothing at `path` nor replaces a map on the way to it."""
    node: Any = layer
    for key in path:
        if not isinstance(node, Mapping):
            return False
        if key not in node:
            return True
        node = node[key]
    return False


@given(maps, maps)
def test_maps_merge_deeply(lower: dict[str, Any], upper: dict[str, Any]) -> None:
    merged = merge(lower, upper)
    for path, value in leaves(strip_nulls(lower)).items():
        assert (lookup(merged, path) == value) is (
            untouched(upper, path) or lookup(upper, path) == value
        )


@given(st.lists(maps, min_size=1, max_size=4))
def test_provenance_names_the_winner_of_every_leaf(layers: list[dict[str, Any]]) -> None:
    named = [Layer(f"L{i}", values) for i, values in enumerate(layers)]
    merged = merge_layers(named)
    sources = merged.provenance.sources()
    result_leaves = leaves(merged.values)
    assert set(sources) == {format_path(path) for path in result_leaves}
    for path, value in result_leaves.items():
        setters = [
            i
            for i, layer in enumerate(layers)
            if (found := lookup(layer, path)) is not None and not isinstance(found, Mapping)
        ]
        assert sources[format_path(path)] == f"L{setters[-1]}"
        assert lookup(layers[setters[-1]], path) == value


@given(st.lists(st.text(st.characters(exclude_characters="\\"), min_size=1), min_size=1))
def test_paths_round_trip_with_dots_in_keys(path: list[str]) -> None:
    assert parse_path(format_path(tuple(path))) == tuple(path)


def test_path_syntax_is_helms() -> None:
    assert format_path(("podAnnotations", "prometheus.io/scrape")) == (
        "podAnnotations.prometheus\\.io/scrape"
    )


DEFAULTS = Layer("chart defaults", {"replicaCount": 5, "image": {"repository": "r", "tag": "v1"}})


def test_history_shows_every_layer_and_the_winner() -> None:
    merged = merge_layers(
        [
            DEFAULTS,
            Layer("component web", {"replicaCount": 3}),
            Layer("policy prod", {"replicaCount": 1}),
        ]
    )
    assert merged.values["replicaCount"] == 1
    assert merged.provenance.explain("replicaCount") == {
        "replicaCount": (
            Setting("chart defaults", 5),
            Setting("component web", 3),
            Setting("policy prod", 1),
        )
    }
    assert merged.provenance.sources() == {
        "replicaCount": "policy prod",
        "image.repository": "chart defaults",
        "image.tag": "chart defaults",
    }


def test_explain_covers_a_map_and_what_replaced_it() -> None:
    merged = merge_layers([DEFAULTS, Layer("policy flat", {"image": "nginx:1.27"})])
    assert merged.values["image"] == "nginx:1.27"
    assert merged.provenance.explain("image") == {
        "image.repository": (Setting("chart defaults", "r"), Setting("policy flat", deleted=True)),
        "image.tag": (Setting("chart defaults", "v1"), Setting("policy flat", deleted=True)),
        "image": (Setting("policy flat", "nginx:1.27"),),
    }
    # asking for a leaf under a scalar finds the scalar that replaced it
    assert "image" in merged.provenance.explain("image.tag")


def test_null_deletion_is_in_the_history() -> None:
    merged = merge_layers([DEFAULTS, Layer("policy slim", {"image": {"tag": None}, "ghost": None})])
    assert merged.values == {"replicaCount": 5, "image": {"repository": "r"}}
    assert merged.provenance.explain("image.tag")["image.tag"][-1] == Setting(
        "policy slim", deleted=True
    )
    assert merged.provenance.explain("ghost") == {"ghost": (Setting("policy slim", deleted=True),)}
    assert "image.tag" not in merged.provenance.sources()


def test_a_map_replacing_a_scalar_retires_the_scalar() -> None:
    merged = merge_layers(
        [Layer("one", {"image": "nginx"}), Layer("two", {"image": {"tag": "v2"}})]
    )
    assert merged.values == {"image": {"tag": "v2"}}
    assert merged.provenance.sources() == {"image.tag": "two"}


def test_inputs_are_not_modified_or_shared() -> None:
    component = {"image": {"tag": "v1"}, "args": ["a"]}
    merged = merge_layers(
        [Layer("component", component), Layer("policy", {"image": {"tag": "v2"}})]
    )
    merged.values["args"].append("b")
    assert component == {"image": {"tag": "v1"}, "args": ["a"]}


PROD_EU = ClusterInfo("prod-eu-1", {"env": "prod", "topology.kubernetes.io/region": "eu-west"})


def test_cluster_placeholders_are_substituted_in_strings_only() -> None:
    values = {
        "name": "${cluster.name}",
        "host": "web.${cluster.labels.topology.kubernetes.io/region}.example.com",
        "args": ["--env=${cluster.labels.env}", 3],
        "${cluster.name}": "keys stay as written",
        "shell": "echo ${HOME} $${cluster",
        "replicas": 2,
    }
    assert substitute_cluster(values, PROD_EU) == {
        "name": "prod-eu-1",
        "host": "web.eu-west.example.com",
        "args": ["--env=prod", 3],
        "${cluster.name}": "keys stay as written",
        "shell": "echo ${HOME} $${cluster",
        "replicas": 2,
    }


def test_a_missing_label_names_the_value_and_the_cluster() -> None:
    values = {
        "image": {"repository": "registry.${cluster.labels.region}/app"},
        "x": "${cluster.zone}",
    }
    with pytest.raises(PlacementError) as raised:
        substitute_cluster(values, PROD_EU)
    assert [p.message for p in raised.value.problems] == [
        "image.repository: cluster 'prod-eu-1' has no label 'region' "
        "(used by ${cluster.labels.region})",
        "x: unknown placeholder ${cluster.zone} (known: ${cluster.name}, ${cluster.labels.<key>})",
    ]
