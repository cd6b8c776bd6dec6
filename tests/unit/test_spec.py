"""The Application file: what is accepted, and every refusal with its exact path and message."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from hub.format import (
    Application,
    DeployStep,
    HelmComponent,
    SpecError,
    SuspendStep,
    component_properties,
    duration_seconds,
    json_schema,
    load_application,
    trait_properties,
)
from placement.targets import resolve
from placement.topology import ClusterInfo
from tests.unit.documents import edited

EXAMPLES = Path(__file__).parents[2] / "examples"

# The issue's example, verbatim.
CANARY_DEMO = """\
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: canary-demo
  annotations:
    app.oam.dev/publishVersion: v1
spec:
  components:
    - name: canary-demo
      type: helm
      properties:
        repoType: helm
        url: http://127.0.0.1:8879/
        chart: canary-demo
        version: "1.0.0"
      traits:
        - type: kruise-rollout
          properties:
            canary:
              steps:
                - weight: 20
                - weight: 90
              trafficRoutings:
                - type: nginx
"""
TOPOLOGY = """\
  policies:
    - name: all
      type: topology
      properties:
        clusterLabelSelector: {}
"""
BASE: dict[str, Any] = yaml.safe_load(CANARY_DEMO + TOPOLOGY)

CLUSTERS = [
    ClusterInfo("dev-1", {"env": "dev"}),
    ClusterInfo("prod-eu-1", {"env": "prod", "region": "eu"}),
    ClusterInfo("prod-us-1", {"env": "prod", "region": "us"}),
]
CHART_DEFAULTS = {
    "canary-demo": {
        "replicaCount": 5,
        "image": {"repository": "registry.local/canary-demo", "tag": ""},
        "config": {"GREETING": "hello from canary-demo"},
    }
}


def test_the_issue_example_is_accepted_with_a_topology() -> None:
    app = load_application(CANARY_DEMO + TOPOLOGY, "canary.yaml")
    assert app.metadata.name == "canary-demo"
    assert app.publish_version == "v1"
    [component] = app.spec.components
    assert isinstance(component, HelmComponent)
    assert component.properties.location == "http://127.0.0.1:8879/"
    assert component.properties.version == "1.0.0"
    [trait] = component.traits
    assert [step.weight for step in trait.properties.canary.steps] == [20, 90]
    assert [step.pause_seconds for step in trait.properties.canary.steps] == [None, None]
    [routing] = trait.properties.canary.traffic_routings
    assert (routing.provider, routing.route_name) == ("nginx", None)


def test_the_issue_example_alone_deploys_to_kubevelas_local_cluster() -> None:
    workflow = load_application(CANARY_DEMO, "canary.yaml").to_placement().workflow
    assert [(s.name, s.policies) for s in workflow.steps] == [("deploy", ())]
    assert workflow.generated


def test_without_a_workflow_each_topology_gets_kubevelas_deploy_step() -> None:
    workflow = load_application(CANARY_DEMO + TOPOLOGY, "canary.yaml").to_placement().workflow
    assert [(s.name, s.policies) for s in workflow.steps] == [("deploy-all", ("all",))]


def test_the_three_environment_example_resolves() -> None:
    text = (EXAMPLES / "three-envs.yaml").read_text()
    app = load_application(text, "three-envs.yaml")
    assert [type(step) for step in app.spec.workflow.steps] == [  # type: ignore[union-attr]
        DeployStep,
        SuspendStep,
        DeployStep,
    ]
    targets = {t.cluster: t for t in resolve(app.to_placement(), CLUSTERS, CHART_DEFAULTS)}
    dev, eu, us = targets["dev-1"], targets["prod-eu-1"], targets["prod-us-1"]
    assert [dev.step, eu.step, us.step] == ["deploy-dev", "deploy-prod", "deploy-prod"]
    assert [t.values["replicaCount"] for t in (dev, eu, us)] == [1, 3, 5]
    assert eu.values["config"] == {"GREETING": "hello from prod-eu-1", "REGION": "eu"}
    assert us.values["config"] == {"GREETING": "hello from prod-us-1"}
    assert dev.traits == {}
    assert set(eu.traits) == {"kruise-rollout"}
    assert eu.provenance.sources()["values.replicaCount"] == "policy prod-eu-values"
    assert us.provenance.sources()["values.replicaCount"] == "chart defaults"
    rollout = trait_properties("kruise-rollout", eu.traits["kruise-rollout"])
    assert [s.pause_seconds for s in rollout.canary.steps] == [None, 30.0, None]
    helm = component_properties(eu.component_type, eu.properties)
    assert helm.model_dump(include={"chart", "version"}) == {
        "chart": "canary-demo",
        "version": "1.0.0",
    }


def test_kruise_and_kubevela_trait_spellings_are_both_read() -> None:
    doc = copy.deepcopy(BASE)
    doc["spec"]["components"][0]["traits"][0]["properties"] = {
        "auto": True,
        "workloadType": {"apiVersion": "apps/v1", "kind": "StatefulSet"},
        "canary": {
            "steps": [
                {"weight": 10, "replicas": "10%", "pause": {"duration": 30}},
                {"weight": 40, "replicas": 2, "duration": 90},
                {"weight": 60, "pause": {"duration": "1m30s"}},
                {"weight": 80, "matches": [{"headers": [{"name": "x-canary", "value": "1"}]}]},
            ],
            "trafficRoutings": [
                {"ingress": {"name": "web", "classType": "nginx"}, "service": "web-stable"},
                {"type": "gateway", "gatewayHTTPRouteName": "web-route"},
                {"gateway": {"httpRouteName": "api-route"}, "gracePeriodSeconds": 0},
                {"type": "ingress", "ingressName": "legacy"},
            ],
        },
    }
    app = load_application(yaml.safe_dump(doc), "a.yaml")
    rollout = app.spec.components[0].traits[0].properties
    assert [s.pause_seconds for s in rollout.canary.steps] == [30.0, 90.0, 90.0, None]
    assert rollout.canary.steps[3].matches[0].headers[0].type == "Exact"
    assert [(r.provider, r.route_name) for r in rollout.canary.traffic_routings] == [
        ("nginx", "web"),
        ("gateway", "web-route"),
        ("gateway", "api-route"),
        ("nginx", "legacy"),
    ]


@pytest.mark.parametrize(
    ("written", "seconds"),
    [
        (0, 0.0),
        (45, 45.0),
        ("0", 0.0),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("2m15s", 135.0),
        ("1.5h", 5400.0),
        ("500ms", 0.5),
        ("250\u00b5s", 0.00025),
    ],
)
def test_durations_read_as_go_does(written: int | str, seconds: float) -> None:
    doc = workflow(
        {"name": "wait", "type": "suspend", "properties": {"duration": written}}, deploy("d", "all")
    )
    [suspend, _] = load_application(yaml.safe_dump(doc), "a.yaml").spec.workflow.steps  # type: ignore[union-attr]
    assert isinstance(suspend, SuspendStep)
    assert suspend.properties.seconds == pytest.approx(seconds)
    assert duration_seconds(written) == pytest.approx(seconds)


def test_local_charts_and_k8s_objects() -> None:
    doc = copy.deepcopy(BASE)
    doc["spec"]["components"] = [
        {
            "name": "from-disk",
            "type": "helm",
            "properties": {"repoType": "local", "url": "file:///srv/charts", "chart": "web"},
        },
        {
            "name": "relative",
            "type": "helm",
            "properties": {"repoType": "local", "url": "./charts", "chart": "web"},
        },
        {
            "name": "namespace",
            "type": "k8s-objects",
            "properties": {
                "objects": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "web"}}]
            },
        },
    ]
    app = load_application(yaml.safe_dump(doc), "a.yaml")
    from_disk, relative, objects = app.spec.components
    assert isinstance(from_disk, HelmComponent) and isinstance(relative, HelmComponent)
    assert from_disk.properties.location == "/srv/charts"
    assert relative.properties.location == "./charts"
    assert objects.properties.model_dump()["objects"][0]["kind"] == "Namespace"


def test_yaml_dates_stay_strings_as_in_kubernetes() -> None:
    text = (CANARY_DEMO + TOPOLOGY).replace(
        'version: "1.0.0"', 'version: "1.0.0"\n        values:\n          since: 2024-01-31'
    )
    app = load_application(text, "a.yaml")
    assert app.spec.components[0].properties.model_dump()["values"] == {"since": "2024-01-31"}


def test_a_round_trip_through_placement_keeps_what_was_written() -> None:
    app = load_application(CANARY_DEMO + TOPOLOGY, "a.yaml")
    [component] = app.to_placement().components
    assert component.properties == BASE["spec"]["components"][0]["properties"]
    assert component.traits == {
        "kruise-rollout": BASE["spec"]["components"][0]["traits"][0]["properties"]
    }
    assert Application.model_validate(app.model_dump(exclude_unset=True)) == app


def at(path: str, value: Any) -> dict[str, Any]:
    """BASE with `value` at a dotted `path` (list indexes as numbers); `...` deletes."""
    return edited(BASE, path, value)


COMPONENT = "spec.components.0"
PROPS = f"{COMPONENT}.properties"
TRAIT = f"{COMPONENT}.traits.0.properties"
STEPS = f"{TRAIT}.canary.steps"
NAME_RULE = (
    "(lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 "
    "characters)"
)
OVERRIDE = {"name": "tune", "type": "override", "properties": {"components": []}}


def override(*patches: dict[str, Any], **properties: Any) -> dict[str, Any]:
    return at(
        "spec.policies.1", {**OVERRIDE, "properties": {"components": list(patches), **properties}}
    )


def workflow(*steps: dict[str, Any], mode: str | None = None) -> dict[str, Any]:
    return at(
        "spec.workflow", {"steps": list(steps), **({"mode": {"steps": mode}} if mode else {})}
    )


def deploy(name: str, *policies: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "type": "deploy", "properties": {"policies": list(policies)}, **fields}


REFUSALS: list[tuple[str, dict[str, Any], list[str]]] = [
    # the document
    (
        "api version",
        at("apiVersion", "core.oam.dev/v1alpha2"),
        ['apiVersion: "core.oam.dev/v1alpha2" is not supported (supported: core.oam.dev/v1beta1)'],
    ),
    (
        "kind",
        at("kind", "Deployment"),
        ['kind: "Deployment" is not supported (supported: Application)'],
    ),
    (
        "status",
        at("status", {}),
        ["status: field not supported (supported: apiVersion, kind, metadata, spec)"],
    ),
    ("no spec", at("spec", ...), ["spec: required"]),
    (
        "name",
        at("metadata.name", "Canary_Demo"),
        [f"metadata.name: 'Canary_Demo' is not a DNS label {NAME_RULE}"],
    ),
    (
        "label key",
        at("metadata.labels", {"team name": "a"}),
        [
            "metadata.labels[\"team name\"]: label key 'team name': the name must be at most 63 "
            "characters: letters, digits, '-', '_' or '.', starting and ending with a letter or "
            "digit"
        ],
    ),
    (
        "annotation value",
        at("metadata.annotations", {"app.oam.dev/publishVersion": 1}),
        [
            'metadata.annotations["app.oam.dev/publishVersion"]: expected a string (put numbers '
            "such as versions in quotes)"
        ],
    ),
    ("no components", at("spec.components", []), ["spec.components: must not be empty"]),
    (
        "spec field",
        at("spec.policy", []),
        ["spec.policy: field not supported (supported: components, policies, workflow)"],
    ),
    # components
    (
        "component type",
        at(f"{COMPONENT}.type", "webservice"),
        ['spec.components[0].type: "webservice" is not supported (supported: helm, k8s-objects)'],
    ),
    ("component without type", at(f"{COMPONENT}.type", ...), ["spec.components[0].type: required"]),
    ("component not a map", at(COMPONENT, "canary-demo"), ["spec.components[0]: expected a map"]),
    (
        "component dependsOn",
        at(f"{COMPONENT}.dependsOn", ["db"]),
        [
            "spec.components[0].dependsOn: field not supported (supported: name, properties, "
            "traits, type)"
        ],
    ),
    (
        "duplicate component",
        at("spec.components.1", BASE["spec"]["components"][0]),
        ["spec.components[1].name: 'canary-demo' is already used by spec.components[0]"],
    ),
    (
        "flux-only field",
        at(f"{PROPS}.pullInterval", "5m"),
        [
            "spec.components[0].properties.pullInterval: field not supported (supported: chart, "
            "releaseName, repoType, secretRef, targetNamespace, url, values, version)"
        ],
    ),
    (
        "git repository",
        at(f"{PROPS}.repoType", "git"),
        [
            'spec.components[0].properties.repoType: "git" is not supported (supported: helm, oci, '
            "local)"
        ],
    ),
    (
        "oci url",
        at(f"{PROPS}.repoType", "oci"),
        ["spec.components[0].properties.url: repoType oci needs an oci:// URL"],
    ),
    (
        "helm url",
        at(f"{PROPS}.url", "127.0.0.1:8879"),
        ["spec.components[0].properties.url: repoType helm needs an http:// or https:// URL"],
    ),
    (
        "unquoted version",
        at(f"{PROPS}.version", 1.0),
        [
            "spec.components[0].properties.version: expected a string (put numbers such as "
            "versions in quotes)"
        ],
    ),
    ("no chart", at(f"{PROPS}.chart", ...), ["spec.components[0].properties.chart: required"]),
    (
        "empty chart",
        at(f"{PROPS}.chart", ""),
        ["spec.components[0].properties.chart: must not be empty"],
    ),
    (
        "release name",
        at(f"{PROPS}.releaseName", "r" * 54),
        [
            f"spec.components[0].properties.releaseName: '{'r' * 54}' is not a Helm release name "
            "(lower-case letters, digits, '-' and '.', at most 53 characters)"
        ],
    ),
    (
        "values",
        at(f"{PROPS}.values", ["replicaCount=1"]),
        ["spec.components[0].properties.values: expected a map"],
    ),
    (
        "objects",
        at(
            COMPONENT,
            {
                "name": "o",
                "type": "k8s-objects",
                "properties": {"objects": [{"kind": "Namespace"}]},
            },
        ),
        [
            "spec.components[0].properties.objects[0]: expected a Kubernetes object with "
            "apiVersion, kind and metadata.name"
        ],
    ),
    # traits
    (
        "trait type",
        at(f"{COMPONENT}.traits.0.type", "scaler"),
        [
            'spec.components[0].traits[0].type: "scaler" is not supported (supported: '
            "kruise-rollout)"
        ],
    ),
    (
        "trait twice",
        at(f"{COMPONENT}.traits.1", BASE["spec"]["components"][0]["traits"][0]),
        [
            "spec.components[0].traits[1].type: 'kruise-rollout' is already used by "
            "spec.components[0].traits[0]"
        ],
    ),
    (
        "trait not a map",
        at(f"{COMPONENT}.traits.0", "kruise-rollout"),
        ["spec.components[0].traits[0]: expected a map"],
    ),
    (
        "weight",
        at(f"{STEPS}.1.weight", 190),
        ["spec.components[0].traits[0].properties.canary.steps[1].weight: must be 1..100"],
    ),
    (
        "weight as text",
        at(f"{STEPS}.1.weight", "90"),
        ["spec.components[0].traits[0].properties.canary.steps[1].weight: expected an integer"],
    ),
    (
        "shrinking canary",
        at(f"{STEPS}.1.weight", 10),
        [
            "spec.components[0].traits[0].properties.canary: steps[1].weight 10 is below "
            "steps[0].weight 20: a canary only grows"
        ],
    ),
    (
        "empty step",
        at(f"{STEPS}.1", {}),
        ["spec.components[0].traits[0].properties.canary.steps[1]: set weight, replicas or both"],
    ),
    (
        "no steps",
        at(f"{STEPS}", []),
        ["spec.components[0].traits[0].properties.canary.steps: must not be empty"],
    ),
    (
        "replicas",
        at(f"{STEPS}.1.replicas", "150%"),
        [
            "spec.components[0].traits[0].properties.canary.steps[1].replicas: expected a number "
            "of pods (at least "
            '1) or a percentage such as "20%"'
        ],
    ),
    (
        "pause",
        at(f"{STEPS}.1.pause", {"duration": "5 minutes"}),
        [
            "spec.components[0].traits[0].properties.canary.steps[1].pause.duration: expected a "
            "duration such as 30s, 5m or 1h30m, or a number of seconds"
        ],
    ),
    (
        "two pauses",
        at(f"{STEPS}.1", {"weight": 90, "duration": 5, "pause": {"duration": 5}}),
        [
            "spec.components[0].traits[0].properties.canary.steps[1]: duration and pause.duration "
            "say the same thing: set one"
        ],
    ),
    (
        "header match",
        at(f"{STEPS}.1.matches", [{"headers": [{"name": "x", "value": "y", "type": "Prefix"}]}]),
        [
            "spec.components[0].traits[0].properties.canary.steps[1].matches[0].headers[0].type: "
            '"Prefix" is not '
            "supported (supported: Exact, RegularExpression)"
        ],
    ),
    (
        "routing type",
        at(f"{TRAIT}.canary.trafficRoutings.0.type", "istio"),
        [
            'spec.components[0].traits[0].properties.canary.trafficRoutings[0].type: "istio" is '
            "not supported (supported: nginx, ingress, gateway)"
        ],
    ),
    (
        "ingress class",
        at(f"{TRAIT}.canary.trafficRoutings.0", {"ingress": {"name": "w", "classType": "traefik"}}),
        [
            "spec.components[0].traits[0].properties.canary.trafficRoutings[0].ingress.classType: "
            '"traefik" is not '
            "supported (supported: nginx)"
        ],
    ),
    (
        "mixed routing",
        at(f"{TRAIT}.canary.trafficRoutings.0", {"type": "gateway", "ingress": {"name": "w"}}),
        [
            "spec.components[0].traits[0].properties.canary.trafficRoutings[0]: mixes an nginx "
            "Ingress and a Gateway API route: use one per trafficRoutings entry"
        ],
    ),
    (
        "batch release",
        at(f"{TRAIT}.releaseMode", "batch"),
        [
            'spec.components[0].traits[0].properties.releaseMode: "batch" is not supported '
            "(supported: canary)"
        ],
    ),
    (
        "auto as text",
        at(f"{TRAIT}.auto", "yes"),
        ["spec.components[0].traits[0].properties.auto: expected true or false"],
    ),
    # policies
    (
        "policy type",
        at("spec.policies.0.type", "garbage-collect"),
        [
            'spec.policies[0].type: "garbage-collect" is not supported (supported: topology, '
            "override, apply-once)"
        ],
    ),
    (
        "selector as a list",
        at("spec.policies.0.properties.clusterLabelSelector", ["env=prod"]),
        ["spec.policies[0].properties.clusterLabelSelector: expected a map of label values"],
    ),
    (
        "selector value",
        at("spec.policies.0.properties.clusterLabelSelector", {"env": {"in": ["a"]}}),
        ["spec.policies[0].properties.clusterLabelSelector: expected a map of label values"],
    ),
    (
        "selector expression",
        at(
            "spec.policies.0.properties.clusterLabelSelector",
            {"matchExpressions": [{"key": "env", "operator": "In"}]},
        ),
        [
            "spec.policies[0].properties.clusterLabelSelector.matchExpressions[0]: operator In "
            "needs at least one value"
        ],
    ),
    (
        "topology without properties",
        at("spec.policies.0.properties", ...),
        ["spec.policies[0].properties: required"],
    ),
    (
        "duplicate policy",
        at("spec.policies.1", BASE["spec"]["policies"][0]),
        ["spec.policies[1].name: 'all' is already used by spec.policies[0]"],
    ),
    (
        "override matching nothing",
        override({"name": "web-*"}),
        [
            "spec.policies[1].properties.components[0]: name 'web-*' matches no component "
            "(components: canary-demo)"
        ],
    ),
    (
        "override component type",
        override({"type": "webservice"}),
        [
            'spec.policies[1].properties.components[0].type: "webservice" is not supported '
            "(supported: helm, k8s-objects)"
        ],
    ),
    (
        "override property type",
        override({"properties": {"version": 2}}),
        [
            "spec.policies[1].properties.components[0].properties.version: expected a string (put "
            "numbers such as versions in quotes)"
        ],
    ),
    (
        "override unknown property",
        override({"properties": {"chartVersion": "2"}}),
        [
            "spec.policies[1].properties.components[0].properties.chartVersion: field not "
            "supported (supported: chart, releaseName, repoType, secretRef, targetNamespace, url, "
            "values, version)"
        ],
    ),
    (
        "override deleting a required property",
        override({"properties": {"chart": None}}),
        ["spec.policies[1].properties.components[0].properties.chart: required"],
    ),
    (
        "override trait",
        override(
            {
                "traits": [
                    {"type": "kruise-rollout", "properties": {"canary": {"steps": [{"weight": 0}]}}}
                ]
            }
        ),
        [
            "spec.policies[1].properties.components[0].traits[0].properties.canary.steps[0]"
            ".weight: must be 1..100"
        ],
    ),
    (
        "override trait type",
        override({"traits": [{"type": "scaler", "properties": {}}]}),
        [
            'spec.policies[1].properties.components[0].traits[0].type: "scaler" is not supported '
            "(supported: kruise-rollout)"
        ],
    ),
    (
        "override trait disable with properties",
        override({"traits": [{"type": "kruise-rollout", "disable": True, "properties": {}}]}),
        [
            "spec.policies[1].properties.components[0].traits[0]: disable: true removes the "
            "trait, so properties would be ignored"
        ],
    ),
    (
        "override selector",
        override(selector=["canary-demo", "ghost"]),
        [
            "spec.policies[1].properties.selector[1]: 'ghost' is not a component (components: "
            "canary-demo)"
        ],
    ),
    (
        "override cluster filters",
        override(clusters=["a"], clusterLabelSelector={"a": "b"}),
        ["spec.policies[1].properties: set clusters or clusterLabelSelector, not both"],
    ),
    # workflow
    (
        "step type",
        workflow({"name": "tell", "type": "notification"}),
        [
            'spec.workflow.steps[0].type: "notification" is not supported (supported: deploy, '
            "suspend, check-metrics)"
        ],
    ),
    (
        "step field",
        workflow({**deploy("d", "all"), "if": "always"}),
        [
            "spec.workflow.steps[0].if: field not supported (supported: dependsOn, name, "
            "properties, type)"
        ],
    ),
    (
        "unknown policy",
        workflow(deploy("d", "all", "nope")),
        [
            "spec.workflow.steps[0].properties.policies[1]: step 'd' names policy 'nope', which "
            "does not exist (policies: all)"
        ],
    ),
    (
        "unknown dependency",
        workflow(deploy("a", "all"), {"name": "b", "type": "suspend", "dependsOn": ["zzz"]}),
        ["spec.workflow.steps[1].dependsOn[0]: step 'b' depends on 'zzz', which is not a step"],
    ),
    (
        "cycle",
        workflow(
            deploy("a", "all", dependsOn=["b"]),
            {"name": "b", "type": "suspend", "dependsOn": ["a"]},
            mode="DAG",
        ),
        [
            "spec.workflow.steps: workflow has a cycle: a -> b -> a (each step waits for the one "
            "before it)"
        ],
    ),
    (
        "duplicate step",
        workflow(deploy("a", "all"), {"name": "a", "type": "suspend"}),
        ["spec.workflow.steps[1].name: step name 'a' is used twice"],
    ),
    (
        "mode",
        workflow(deploy("a", "all"), mode="Parallel"),
        ['spec.workflow.mode.steps: "Parallel" is not supported (supported: StepByStep, DAG)'],
    ),
    (
        "suspend duration",
        workflow(
            {"name": "wait", "type": "suspend", "properties": {"duration": "1min"}},
            deploy("d", "all"),
        ),
        [
            "spec.workflow.steps[0].properties.duration: expected a duration such as 30s, 5m or "
            "1h30m, or a number of seconds"
        ],
    ),
    (
        "parallelism",
        workflow({**deploy("d", "all"), "properties": {"policies": ["all"], "parallelism": 0}}),
        ["spec.workflow.steps[0].properties.parallelism: must be at least 1"],
    ),
    ("no steps", workflow(), ["spec.workflow.steps: must not be empty"]),
]


@pytest.mark.parametrize(
    ("document", "expected"),
    [(d, e) for _, d, e in REFUSALS],
    ids=[name for name, _, _ in REFUSALS],
)
def test_refusals_name_the_path(document: dict[str, Any], expected: list[str]) -> None:
    with pytest.raises(SpecError) as raised:
        load_application(yaml.safe_dump(document), "app.yaml")
    assert str(raised.value).splitlines() == [f"app.yaml: {line}" for line in expected]


def test_every_problem_is_reported_at_once() -> None:
    document = at(f"{STEPS}.0.weight", 0)
    document["spec"]["components"][0]["properties"]["repoType"] = "oss"
    document["metadata"]["name"] = "x" * 64
    with pytest.raises(SpecError) as raised:
        load_application(yaml.safe_dump(document), "app.yaml")
    assert [p.path[-1] for p in raised.value.problems] == ["name", "repoType", "weight"]
    assert len(str(raised.value).splitlines()) == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "metadata: {name: a}\nmetadata: {name: b}\n",
            "app.yaml: line 2, column 1: duplicate key 'metadata'",
        ),
        (
            "spec: [\n",
            "app.yaml: line 2, column 1: while parsing a flow node, expected the node content, "
            "but found '<stream end>'",
        ),
        (
            "a: 1\n---\nb: 2\n",
            "app.yaml: line 2, column 1: expected a single document in the stream, but found "
            "another document",
        ),
        (
            "- apiVersion: core.oam.dev/v1beta1\n",
            "app.yaml: expected an Application: a map with apiVersion, kind, metadata, spec",
        ),
        ("", "app.yaml: expected an Application: a map with apiVersion, kind, metadata, spec"),
    ],
)
def test_yaml_problems(text: str, expected: str) -> None:
    with pytest.raises(SpecError) as raised:
        load_application(text, "app.yaml")
    assert str(raised.value) == expected


def test_yaml_merge_keys_are_not_duplicates() -> None:
    text = (CANARY_DEMO + TOPOLOGY).replace(
        "  name: canary-demo\n  annotations:",
        "  <<: {name: other}\n  name: canary-demo\n  annotations:",
        1,
    )
    assert load_application(text, "a.yaml").metadata.name == "canary-demo"


def test_json_schema_describes_the_file_for_editors() -> None:
    schema = json_schema()
    json.dumps(schema)  # an editor reads it as JSON
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["required"] == ["apiVersion", "kind", "metadata", "spec"]
    assert schema["additionalProperties"] is False
    defs = schema["$defs"]
    component_types = [
        defs[ref["$ref"].rsplit("/", 1)[1]]["properties"]["type"]["const"]
        for ref in defs["ApplicationSpec"]["properties"]["components"]["items"]["oneOf"]
    ]
    assert component_types == ["helm", "k8s-objects"]
    assert defs["CanaryStep"]["properties"]["weight"]["anyOf"][0] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 100,
    }
    plain, kubernetes = defs["LabelSelector"]["anyOf"]
    assert plain["additionalProperties"] == {"type": "string"}
    assert set(kubernetes["properties"]) == {"matchLabels", "matchExpressions"}
    assert "gatewayHTTPRouteName" in defs["TrafficRouting"]["properties"]


def test_namespace_and_release_name_may_hold_cluster_placeholders() -> None:
    document = copy.deepcopy(BASE)
    properties = document["spec"]["components"][0]["properties"]
    properties |= {"targetNamespace": "demo-${cluster.name}", "releaseName": "demo-${cluster.name}"}
    load_application(yaml.safe_dump(document), "app.yaml")
    properties["targetNamespace"] = "Demo_${cluster.name}"
    with pytest.raises(
        SpecError, match=r"targetNamespace: 'Demo_\$\{cluster.name\}' is not a DNS label"
    ):
        load_application(yaml.safe_dump(document), "app.yaml")
