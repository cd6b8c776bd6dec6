"""Topology selection and target resolution: who gets what, and why."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from pydantic import ValidationError

from placement.errors import PlacementError
from placement.overrides import Override
from placement.targets import AppSpec, ComponentSpec, Target, resolve
from placement.topology import ClusterInfo, Topology
from placement.workflow import Step, Workflow

DEV = ClusterInfo("dev-1", {"env": "dev"})
PROD_EU = ClusterInfo("prod-eu-1", {"env": "prod", "region": "eu"})
PROD_US = ClusterInfo("prod-us-1", {"env": "prod", "region": "us"})
CLUSTERS = [PROD_US, DEV, PROD_EU]
REGISTERED = {c.name: c for c in CLUSTERS}


def topology(**properties: Any) -> Topology:
    return Topology.model_validate(properties)


def override(**properties: Any) -> Override:
    return Override.model_validate(properties)


def names(clusters: list[ClusterInfo]) -> list[str]:
    return [c.name for c in clusters]


# --- topology ----------------------------------------------------------------------------------


def test_selector_picks_matching_clusters_sorted_by_name() -> None:
    chosen = topology(clusterLabelSelector={"env": "prod"}).select("prod", REGISTERED)
    assert names(chosen) == ["prod-eu-1", "prod-us-1"]


def test_empty_selector_picks_every_cluster() -> None:
    assert names(topology(clusterLabelSelector={}).select("all", REGISTERED)) == [
        "dev-1",
        "prod-eu-1",
        "prod-us-1",
    ]


def test_kubernetes_style_selector() -> None:
    selector = {"matchExpressions": [{"key": "region", "operator": "NotIn", "values": ["us"]}]}
    chosen = topology(clusterLabelSelector=selector).select("not-us", REGISTERED)
    assert names(chosen) == ["dev-1", "prod-eu-1"]  # NotIn matches dev-1, which has no region


def test_clusters_win_over_the_selector_and_keep_their_order() -> None:
    chosen = topology(clusters=["prod-us-1", "dev-1"], clusterLabelSelector={"env": "prod"}).select(
        "mixed", REGISTERED
    )
    assert names(chosen) == ["prod-us-1", "dev-1"]


def test_deprecated_cluster_selector_still_selects() -> None:
    chosen = topology(clusterSelector={"region": "eu"}).select("eu", REGISTERED)
    assert names(chosen) == ["prod-eu-1"]


def test_every_named_cluster_must_exist() -> None:
    with pytest.raises(PlacementError) as raised:
        topology(clusters=["dev-1", "dev-2", "prod-ap-1"]).select("dev", REGISTERED)
    assert str(raised.value) == (
        "topology 'dev': 'dev-2', 'prod-ap-1' are not a registered cluster "
        "(registered: 'dev-1', 'prod-eu-1', 'prod-us-1')"
    )


def test_a_long_list_of_registered_clusters_is_cut_short() -> None:
    many = {f"c{i:02}": ClusterInfo(f"c{i:02}") for i in range(12)}
    with pytest.raises(PlacementError) as raised:
        topology(clusters=["x"]).select("t", many)
    assert str(raised.value).endswith("'c08', 'c09', and 2 more)")


def test_a_selector_matching_nothing_is_an_error_unless_allowed() -> None:
    with pytest.raises(PlacementError) as raised:
        topology(clusterLabelSelector={"env": "staging"}).select("staging", REGISTERED)
    assert str(raised.value) == (
        "topology 'staging': no registered cluster matches env=staging "
        "(set allowEmpty: true if an empty environment is expected)"
    )
    allowed = topology(clusterLabelSelector={"env": "staging"}, allowEmpty=True)
    assert allowed.select("staging", REGISTERED) == []


@pytest.mark.parametrize(
    ("properties", "complaint"),
    [
        ({"clusters": []}, "clusters is empty"),
        ({"clusters": ["a", "a"]}, "clusters names a cluster twice"),
        (
            {"clusterSelector": {"a": "b"}, "clusterLabelSelector": {"a": "b"}},
            "clusterSelector is the deprecated name of clusterLabelSelector",
        ),
        ({"clusters": ["a"], "namespace": "Apps"}, "'Apps' is not a DNS label"),
        ({"clusters": ["a"], "allowEmpty": "yes"}, "bool_type"),
        ({"clusters": ["a"], "placement": {}}, "extra_forbidden"),
    ],
)
def test_topology_refusals(properties: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValidationError) as raised:
        topology(**properties)
    assert complaint in str(raised.value)


def test_override_applies_to_named_or_selected_clusters() -> None:
    by_name = override(clusters=["prod-eu-1"])
    by_label = override(clusterLabelSelector={"region": "eu"})
    everywhere = override()
    for cluster in CLUSTERS:
        assert by_name.applies_to(cluster) is (cluster is PROD_EU)
        assert by_label.applies_to(cluster) is (cluster is PROD_EU)
        assert everywhere.applies_to(cluster)
    with pytest.raises(ValidationError, match="set clusters or clusterLabelSelector, not both"):
        override(clusters=["a"], clusterLabelSelector={"a": "b"})


# --- resolve -----------------------------------------------------------------------------------

WEB = ComponentSpec(
    "web",
    "helm",
    {"chart": "web", "values": {"image": {"repository": "registry/web"}}},
    {"kruise-rollout": {"canary": {"steps": [{"weight": 20}]}}},
)
CHART_DEFAULTS = {"web": {"replicaCount": 5, "image": {"repository": "default", "tag": "v1"}}}


def app(
    policies: Mapping[str, Topology | Override],
    steps: list[Step],
    *components: ComponentSpec,
    namespace: str | None = None,
) -> AppSpec:
    return AppSpec(
        "shop", namespace, components or (WEB,), policies, Workflow(steps, policies, "DAG")
    )


THREE_ENVS: dict[str, Topology | Override] = {
    "dev": topology(clusterLabelSelector={"env": "dev"}),
    "prod": topology(clusterLabelSelector={"env": "prod"}),
    "dev-values": override(components=[{"properties": {"values": {"replicaCount": 1}}}]),
    "eu-values": override(
        clusterLabelSelector={"region": "eu"},
        components=[{"name": "web", "properties": {"values": {"replicaCount": 3}}}],
    ),
}
THREE_ENV_STEPS = [
    Step("deploy-dev", policies=("dev", "dev-values")),
    Step("approve", depends_on=("deploy-dev",)),
    Step("deploy-prod", depends_on=("approve",), policies=("prod", "eu-values")),
]


def by_cluster(targets: list[Target]) -> dict[str, Target]:
    return {t.cluster: t for t in targets}


def test_three_environments_get_their_values_and_provenance() -> None:
    targets = resolve(app(THREE_ENVS, THREE_ENV_STEPS), CLUSTERS, CHART_DEFAULTS)
    assert [(t.step, t.topology, t.cluster) for t in targets] == [
        ("deploy-dev", "dev", "dev-1"),
        ("deploy-prod", "prod", "prod-eu-1"),
        ("deploy-prod", "prod", "prod-us-1"),
    ]
    dev, eu, us = by_cluster(targets).values()
    assert [dev.values["replicaCount"], eu.values["replicaCount"], us.values["replicaCount"]] == [
        1,
        3,
        5,
    ]
    assert eu.values["image"] == {"repository": "registry/web", "tag": "v1"}
    assert eu.provenance.sources() == {
        "values.replicaCount": "policy eu-values",
        "values.image.repository": "component web",
        "values.image.tag": "chart defaults",
        "chart": "component web",
        "traits.kruise-rollout.canary.steps": "component web",
    }
    assert us.provenance.sources()["values.replicaCount"] == "chart defaults"
    assert all(
        (t.namespace, t.release_name, t.component_type) == ("default", "web", "helm")
        for t in targets
    )


def test_override_policies_apply_in_the_order_the_step_lists_them() -> None:
    policies: dict[str, Topology | Override] = {
        "all": topology(clusters=["dev-1"]),
        "one": override(components=[{"properties": {"values": {"replicaCount": 1}}}]),
        "two": override(components=[{"properties": {"values": {"replicaCount": 2}}}]),
    }
    first = resolve(app(policies, [Step("s", policies=("all", "one", "two"))]), CLUSTERS)
    second = resolve(app(policies, [Step("s", policies=("two", "all", "one"))]), CLUSTERS)
    assert first[0].values["replicaCount"] == 2
    assert second[0].values["replicaCount"] == 1
    assert first[0].provenance.explain("values.replicaCount")["values.replicaCount"][0].layer == (
        "policy one"
    )


def test_namespace_precedence() -> None:
    with_target_ns = ComponentSpec("web", "helm", {"targetNamespace": "web-ns"})
    policies: dict[str, Topology | Override] = {
        "plain": topology(clusters=["dev-1"]),
        "namespaced": topology(clusters=["prod-eu-1"], namespace="eu-ns"),
    }
    steps = [Step("a", policies=("plain",)), Step("b", policies=("namespaced",))]
    assert [t.namespace for t in resolve(app(policies, steps, with_target_ns), CLUSTERS)] == [
        "web-ns",
        "eu-ns",  # the topology's namespace wins over the component's
    ]
    bare = ComponentSpec("web", "helm", {})
    assert [
        t.namespace for t in resolve(app(policies, steps, bare, namespace="shop"), CLUSTERS)
    ] == [
        "shop",
        "eu-ns",
    ]
    assert [t.namespace for t in resolve(app(policies, steps, bare), CLUSTERS)] == [
        "default",
        "eu-ns",
    ]


def test_release_name_defaults_to_the_component_name() -> None:
    named = ComponentSpec("api", "helm", {"releaseName": "api-v2"})
    policies: dict[str, Topology | Override] = {"dev": topology(clusters=["dev-1"])}
    targets = resolve(app(policies, [Step("s", policies=("dev",))], WEB, named), CLUSTERS)
    assert [(t.component, t.release_name) for t in targets] == [("web", "web"), ("api", "api-v2")]


def test_one_cluster_in_two_topologies_of_a_step_is_deployed_once() -> None:
    policies: dict[str, Topology | Override] = {
        "eu": topology(clusters=["prod-eu-1"]),
        "prod": topology(clusterLabelSelector={"env": "prod"}),
    }
    targets = resolve(app(policies, [Step("s", policies=("eu", "prod"))]), CLUSTERS)
    assert [(t.topology, t.cluster) for t in targets] == [
        ("eu", "prod-eu-1"),
        ("prod", "prod-us-1"),
    ]


ADMIN = ComponentSpec("web-admin", "helm", {"values": {"replicaCount": 7}})
CONFIG = ComponentSpec("config", "k8s-objects", {"objects": [{"kind": "ConfigMap"}]})


def _values_after(patch: dict[str, Any]) -> dict[str, Any]:
    policies: dict[str, Topology | Override] = {
        "dev": topology(clusters=["dev-1"]),
        "patch": override(components=[patch]),
    }
    targets = resolve(
        app(policies, [Step("s", policies=("dev", "patch"))], WEB, ADMIN, CONFIG), CLUSTERS
    )
    return {t.component: dict(t.properties) for t in targets}


def test_override_matches_components_by_glob_and_type() -> None:
    by_glob = _values_after({"name": "web-*", "properties": {"values": {"tier": "admin"}}})
    assert "tier" in by_glob["web-admin"]["values"]
    assert "tier" not in by_glob["web"]["values"]
    by_type = _values_after({"type": "k8s-objects", "properties": {"objects": []}})
    assert by_type["config"]["objects"] == []
    assert "objects" not in by_type["web"]
    everything = _values_after({"name": "*", "properties": {"note": "x"}})
    assert all(p["note"] == "x" for p in everything.values())


def test_override_traits_merge_add_and_disable() -> None:
    policies: dict[str, Topology | Override] = {
        "dev": topology(clusters=["dev-1"]),
        "fast": override(
            components=[
                {
                    "name": "web",
                    "traits": [{"type": "kruise-rollout", "properties": {"auto": True}}],
                }
            ]
        ),
        "off": override(components=[{"traits": [{"type": "kruise-rollout", "disable": True}]}]),
    }
    [fast_web, fast_admin] = resolve(
        app(policies, [Step("s", policies=("dev", "fast"))], WEB, ADMIN), CLUSTERS
    )
    assert fast_web.traits == {
        "kruise-rollout": {"canary": {"steps": [{"weight": 20}]}, "auto": True}
    }
    assert fast_web.provenance.sources()["traits.kruise-rollout.auto"] == "policy fast"
    assert fast_admin.traits == {}
    [off_web] = resolve(app(policies, [Step("s", policies=("dev", "off"))]), CLUSTERS)
    assert off_web.traits == {}
    assert off_web.provenance.explain("traits.kruise-rollout.canary.steps")[
        "traits.kruise-rollout.canary.steps"
    ][-1].deleted


def test_override_selector_limits_the_components_of_a_step() -> None:
    policies: dict[str, Topology | Override] = {
        "prod": topology(clusterLabelSelector={"env": "prod"}),
        "admin-in-eu-only": override(clusterLabelSelector={"region": "eu"}, selector=["web-admin"]),
    }
    targets = resolve(
        app(policies, [Step("s", policies=("prod", "admin-in-eu-only"))], WEB, ADMIN), CLUSTERS
    )
    assert [(t.cluster, t.component) for t in targets] == [
        ("prod-eu-1", "web-admin"),
        ("prod-us-1", "web"),
        ("prod-us-1", "web-admin"),
    ]


def test_override_naming_an_unregistered_cluster_is_refused() -> None:
    policies: dict[str, Topology | Override] = {
        "dev": topology(clusters=["dev-1"]),
        "eu": override(clusters=["prod-eu-9"], components=[{"properties": {"x": 1}}]),
    }
    with pytest.raises(PlacementError) as raised:
        resolve(app(policies, [Step("s", policies=("dev", "eu"))]), CLUSTERS)
    assert str(raised.value) == (
        "step 's': override 'eu': 'prod-eu-9' is not a registered cluster "
        "(registered: 'dev-1', 'prod-eu-1', 'prod-us-1')"
    )


def test_nulls_reach_helm_when_chart_defaults_are_unknown() -> None:
    policies: dict[str, Topology | Override] = {
        "dev": topology(clusters=["dev-1"]),
        "no-tag": override(components=[{"properties": {"values": {"image": {"tag": None}}}}]),
    }
    spec = app(policies, [Step("s", policies=("dev", "no-tag"))])
    [known] = resolve(spec, CLUSTERS, CHART_DEFAULTS)
    assert known.values["image"] == {"repository": "registry/web"}
    [unknown] = resolve(spec, CLUSTERS)
    assert unknown.values["image"] == {"repository": "registry/web", "tag": None}


def test_placeholders_are_filled_per_cluster() -> None:
    policies: dict[str, Topology | Override] = {
        "prod": topology(clusterLabelSelector={"env": "prod"}),
        "regional": override(
            components=[
                {
                    "properties": {
                        "values": {"region": "${cluster.labels.region}", "id": "${cluster.name}"}
                    }
                }
            ]
        ),
    }
    targets = resolve(app(policies, [Step("s", policies=("prod", "regional"))]), CLUSTERS)
    assert [(t.values["region"], t.values["id"]) for t in targets] == [
        ("eu", "prod-eu-1"),
        ("us", "prod-us-1"),
    ]


def test_a_missing_label_names_step_cluster_component_and_layer() -> None:
    policies: dict[str, Topology | Override] = {
        "all": topology(clusterLabelSelector={}),
        "regional": override(
            components=[{"properties": {"values": {"args": ["--region=${cluster.labels.region}"]}}}]
        ),
    }
    with pytest.raises(PlacementError) as raised:
        resolve(app(policies, [Step("s", policies=("all", "regional"))]), CLUSTERS)
    assert str(raised.value) == (
        "step 's', cluster 'dev-1', component 'web': values.args.0: cluster 'dev-1' has no label "
        "'region' (used by ${cluster.labels.region}) (set by policy regional)"
    )


def test_the_same_release_twice_is_refused() -> None:
    policies: dict[str, Topology | Override] = {
        "dev": topology(clusters=["dev-1"]),
        "all": topology(clusterLabelSelector={}),
    }
    steps = [Step("canary", policies=("dev",)), Step("everywhere", policies=("all",))]
    with pytest.raises(PlacementError) as raised:
        resolve(app(policies, steps), CLUSTERS)
    assert str(raised.value) == (
        "release 'web' in cluster 'dev-1', namespace 'default' is deployed twice: by step "
        "'canary' (component 'web') and by step 'everywhere' (component 'web')"
    )


def test_problems_of_every_step_come_together() -> None:
    policies: dict[str, Topology | Override] = {
        "staging": topology(clusterLabelSelector={"env": "staging"}),
        "lost": topology(clusters=["gone"]),
    }
    steps = [Step("a", policies=("staging",)), Step("b", policies=("lost",))]
    with pytest.raises(PlacementError) as raised:
        resolve(app(policies, steps), CLUSTERS)
    assert [p.message.split(":")[0] for p in raised.value.problems] == ["step 'a'", "step 'b'"]


def test_clusters_with_one_name_are_refused() -> None:
    policies: dict[str, Topology | Override] = {"dev": topology(clusters=["dev-1"])}
    with pytest.raises(PlacementError, match="two registered clusters have the same name"):
        resolve(app(policies, [Step("s", policies=("dev",))]), [DEV, DEV])


def test_namespace_and_release_name_may_be_per_cluster() -> None:
    per_cluster = ComponentSpec(
        "api",
        "helm",
        {"targetNamespace": "api-${cluster.name}", "releaseName": "api-${cluster.labels.env}"},
    )
    policies: dict[str, Topology | Override] = {"all": topology(clusterLabelSelector={})}
    targets = resolve(app(policies, [Step("s", policies=("all",))], per_cluster), CLUSTERS)
    assert [(t.cluster, t.namespace, t.release_name) for t in targets] == [
        ("dev-1", "api-dev-1", "api-dev"),
        ("prod-eu-1", "api-prod-eu-1", "api-prod"),
        ("prod-us-1", "api-prod-us-1", "api-prod"),
    ]


def test_a_filled_in_name_is_checked_per_cluster() -> None:
    shouting = ClusterInfo("loud", {"env": "PROD"})
    per_cluster = ComponentSpec("api", "helm", {"targetNamespace": "api-${cluster.labels.env}"})
    policies: dict[str, Topology | Override] = {"loud": topology(clusters=["loud"])}
    with pytest.raises(PlacementError, match=r"cluster 'loud'.*targetNamespace: 'api-PROD' is not"):
        resolve(app(policies, [Step("s", policies=("loud",))], per_cluster), [shouting])
