"""The canary's objects and phases, against manifests shaped like the demo charts' renders.

`release()` builds what `e2e/charts/canary-demo*` render for a release named like the chart
in namespace `demo` with 5 replicas, labelled as `hub.fleet.objects.labelled` labels them; chart
version 2.0.0 differs from 1.0.0 in its image, as the e2e chart repository packages them.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from hub.canary import (
    CANARY_LABEL,
    CANARY_OF,
    POD_TEMPLATE_HASH,
    SERVICE_NAME_MAX,
    CanaryError,
    CanaryPlan,
    CanaryState,
    CanaryStatus,
    Event,
    Phase,
    Stage,
    Wait,
    advance,
    canary_ingress,
    canary_name,
    canary_replicas,
    stable_pod_template_hash,
    template_changed,
)
from hub.format import Canary, CanaryStep
from placement.selectors import LabelSelector

Manifest = dict[str, Any]

NS = "demo"
STABLE_HASH = "5d4f8b7c9"
CANARY_HASH = "7b9c6d5f4"
NGINX = "nginx.ingress.kubernetes.io/"


# --- what the demo charts render ------------------------------------------------------------------


def chart_labels(chart: str, version: str) -> dict[str, str]:
    return {
        "helm.sh/chart": f"{chart}-{version}",
        **selector_labels(chart),
        "app.kubernetes.io/version": version,
        "app.kubernetes.io/managed-by": "Helm",
    }


def selector_labels(chart: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": chart, "app.kubernetes.io/instance": chart}


def metadata(chart: str, version: str, name: str | None = None) -> Manifest:
    flotilla = {
        "app.oam.dev/name": "shop",
        "app.oam.dev/component": "web",
        "flotilla.dev/revision": "2" if version == "2.0.0" else "1",
        "flotilla.dev/managed-by": "flotilla",
    }
    return {"name": name or chart, "labels": {**chart_labels(chart, version), **flotilla}}


def pod_template(chart: str, version: str) -> Manifest:
    return {
        "metadata": {"labels": chart_labels(chart, version)},
        "spec": {
            "containers": [
                {
                    "name": "web",
                    "image": f"registry.local/canary-demo:{version}",
                    "imagePullPolicy": "IfNotPresent",
                    "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                    "envFrom": [{"configMapRef": {"name": chart}}],
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                }
            ]
        },
    }


def workload(chart: str, version: str, replicas: int = 5) -> Manifest:
    spec: Manifest = {
        "replicas": replicas,
        "selector": {"matchLabels": selector_labels(chart)},
        "template": pod_template(chart, version),
    }
    kind = "Deployment"
    if chart == "canary-demo-sts":
        kind = "StatefulSet"
        spec = {
            "serviceName": f"{chart}-headless",
            "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "RollingUpdate"},
            **spec,
        }
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": metadata(chart, version),
        "spec": spec,
    }


def service(chart: str, version: str, name: str | None = None) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(chart, version, name),
        "spec": {
            "type": "ClusterIP",
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
            "selector": selector_labels(chart),
        },
    }


def ingress(chart: str, version: str) -> Manifest:
    backend = {"service": {"name": chart, "port": {"name": "http"}}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata(chart, version),
        "spec": {
            "ingressClassName": "nginx",
            "rules": [
                {
                    "host": "canary-demo.com",
                    "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]},
                }
            ],
        },
    }


def http_route(chart: str, version: str) -> Manifest:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": metadata(chart, version),
        "spec": {
            "parentRefs": [{"name": "public-gateway"}],
            "hostnames": ["canary-demo.com"],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [{"name": chart, "port": 80}],
                }
            ],
        },
    }


def configmap(chart: str, version: str, greeting: str) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(chart, version),
        "data": {"GREETING": greeting},
    }


def release(
    chart: str = "canary-demo", version: str = "2.0.0", greeting: str | None = None
) -> list[Manifest]:
    """The objects of one revision of a demo chart, in the order Helm renders them."""
    objects = [configmap(chart, version, greeting or f"hello from {chart}")]
    objects.append(workload(chart, version))
    if chart == "canary-demo":
        objects.append(ingress(chart, version))
    elif chart == "canary-demo-gateway":
        objects.append(http_route(chart, version))
    else:
        headless = service(chart, version, f"{chart}-headless")
        headless["spec"] = {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
            "selector": selector_labels(chart),
        }
        objects.append(headless)
    objects.append(service(chart, version))
    return objects


NGINX_ROUTING = {"type": "nginx"}
GATEWAY_ROUTING = {"type": "gateway"}


def canary(*steps: dict[str, Any], routing: dict[str, Any] | None = None) -> Canary:
    return Canary.model_validate(
        {"steps": list(steps), "trafficRoutings": [routing] if routing else []}
    )


def plan(
    *steps: dict[str, Any],
    chart: str = "canary-demo",
    routing: dict[str, Any] | None = NGINX_ROUTING,
) -> CanaryPlan:
    kind = "StatefulSet" if chart == "canary-demo-sts" else "Deployment"
    return CanaryPlan.of(release(chart), kind, chart, canary(*steps, routing=routing), NS)


def summary(phases: list[Phase]) -> list[tuple[list[str], list[str], Wait]]:
    """Each phase as (applied Kind/name, deleted Kind/name, wait), to compare orders."""
    return [
        (
            [f"{o['kind']}/{o['metadata']['name']}" for o in phase.apply],
            [f"{r['kind']}/{r['name']}" for r in phase.delete],
            phase.wait,
        )
        for phase in phases
    ]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """A Service selector: every pair present."""
    return all(labels.get(k) == v for k, v in selector.items())


def applied(phases: list[Phase], kind: str, name: str) -> Manifest:
    (found,) = [
        o for p in phases for o in p.apply if o["kind"] == kind and o["metadata"]["name"] == name
    ]
    return found


# --- sizes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "total", "pods"),
    [
        ({"weight": 20}, 5, 1),
        ({"weight": 90}, 5, 5),
        ({"weight": 50}, 5, 3),
        ({"weight": 1}, 5, 1),
        ({"weight": 100}, 5, 5),
        ({"weight": 20, "replicas": 2}, 5, 2),
        ({"replicas": "40%"}, 5, 2),
        ({"replicas": "1%"}, 5, 1),
        ({"replicas": 9}, 5, 5),
        ({"weight": 20}, 0, 0),
    ],
)
def test_canary_pods_round_up_and_never_outnumber_the_workload(
    step: dict[str, Any], total: int, pods: int
) -> None:
    assert canary_replicas(CanaryStep.model_validate(step), total) == pods


def test_canary_names_fit_where_names_are_short() -> None:
    assert canary_name("canary-demo") == "canary-demo-canary"
    long_a, long_b = "a" * 60, "a" * 59 + "b"
    for name in (long_a, long_b):
        short = canary_name(name, SERVICE_NAME_MAX)
        assert len(short) <= SERVICE_NAME_MAX and short.endswith("-canary")
    assert canary_name(long_a, SERVICE_NAME_MAX) != canary_name(long_b, SERVICE_NAME_MAX)
    assert canary_name(long_a) == long_a + "-canary"


# --- a Deployment step ----------------------------------------------------------------------------


@pytest.mark.parametrize(("weight", "pods"), [(20, 1), (90, 5)])
def test_a_step_holds_the_stable_deployment_and_runs_the_canary(weight: int, pods: int) -> None:
    new = workload("canary-demo", "2.0.0")
    phases = plan({"weight": weight}).upgrade(0, STABLE_HASH)

    assert summary(phases) == [
        (["Deployment/canary-demo", "Service/canary-demo"], [], Wait.NOTHING),
        (["Deployment/canary-demo-canary", "Service/canary-demo-canary"], [], Wait.READY),
    ]
    hold, run = phases
    stable, pinned = hold.apply
    assert stable["spec"]["paused"] is True
    assert stable["spec"]["template"] == new["spec"]["template"]
    assert stable["spec"]["selector"] == new["spec"]["selector"]  # immutable
    assert pinned["spec"]["selector"] == {
        **selector_labels("canary-demo"),
        POD_TEMPLATE_HASH: STABLE_HASH,
    }
    assert hold.grace == 3.0
    canary_deployment = run.apply[0]
    assert canary_deployment["spec"]["replicas"] == pods
    assert "paused" not in canary_deployment["spec"]
    assert canary_deployment["spec"]["template"]["spec"] == new["spec"]["template"]["spec"]
    assert run.wait_for == (
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "namespace": NS,
            "name": "canary-demo-canary",
        },
    )


def test_canary_objects_are_marked_and_namespaced() -> None:
    phases = plan({"weight": 20}).upgrade(0, STABLE_HASH) + plan({"weight": 20}).route_traffic(0)
    derived = [o for p in phases for o in p.apply if o["metadata"]["name"].endswith("-canary")]
    assert sorted(o["kind"] for o in derived) == ["Deployment", "Ingress", "Service"]
    for obj in derived:
        assert obj["metadata"]["namespace"] == NS
        assert obj["metadata"]["labels"][CANARY_LABEL] == "true"
        assert obj["metadata"]["labels"]["app.oam.dev/name"] == "shop"
        assert obj["metadata"]["annotations"][CANARY_OF] == f"{obj['kind']}/canary-demo"


def test_stable_and_canary_selectors_never_share_a_pod() -> None:
    old = workload("canary-demo", "1.0.0")
    phases = plan({"weight": 20}).upgrade(0, STABLE_HASH)
    stable = applied(phases, "Deployment", "canary-demo")
    pinned = applied(phases, "Service", "canary-demo")
    canary_deployment = applied(phases, "Deployment", "canary-demo-canary")
    canary_service = applied(phases, "Service", "canary-demo-canary")

    template_labels = canary_deployment["spec"]["template"]["metadata"]["labels"]
    stable_pod = {**old["spec"]["template"]["metadata"]["labels"], POD_TEMPLATE_HASH: STABLE_HASH}
    canary_pod = {**template_labels, POD_TEMPLATE_HASH: CANARY_HASH}

    assert selects(pinned["spec"]["selector"], stable_pod)
    assert not selects(pinned["spec"]["selector"], canary_pod)
    assert selects(canary_service["spec"]["selector"], canary_pod)
    assert not selects(canary_service["spec"]["selector"], stable_pod)
    canary_selector = LabelSelector.model_validate(canary_deployment["spec"]["selector"])
    assert canary_selector.matches(template_labels)  # the API server insists on it
    assert not canary_selector.matches(stable_pod)
    # The stable selector is immutable and takes in canary pods; their pod-template-hash
    # keeps the stable ReplicaSet (and the pinned Service) from them.
    assert LabelSelector.model_validate(stable["spec"]["selector"]).matches(canary_pod)


def test_the_canary_service_is_a_plain_backend() -> None:
    phases = plan({"weight": 20}).upgrade(0, STABLE_HASH)
    assert applied(phases, "Service", "canary-demo-canary")["spec"] == {
        "type": "ClusterIP",
        "selector": {**selector_labels("canary-demo"), CANARY_LABEL: "true"},
        "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
    }


def test_a_step_needs_the_stable_hash_to_pin_the_service() -> None:
    with pytest.raises(CanaryError, match="not all of one ReplicaSet"):
        plan({"weight": 20}).upgrade(0, None)


# --- traffic --------------------------------------------------------------------------------------

HEADER = {"headers": [{"name": "x-canary", "value": "on"}]}
PATTERN = {"headers": [{"name": "user-agent", "value": ".*Android.*", "type": "RegularExpression"}]}
COOKIE = {"headers": [{"name": "canary-by-cookie", "value": "beta"}]}


@pytest.mark.parametrize(
    ("step", "annotations"),
    [
        (
            {"weight": 20},
            {"canary": "true", "canary-weight": "20", "canary-weight-total": "100"},
        ),
        (
            {"weight": 20, "matches": [HEADER]},
            {
                "canary": "true",
                "canary-weight": "20",
                "canary-weight-total": "100",
                "canary-by-header": "x-canary",
                "canary-by-header-value": "on",
            },
        ),
        (
            {"replicas": 1, "matches": [PATTERN]},
            {
                "canary": "true",
                "canary-by-header": "user-agent",
                "canary-by-header-pattern": ".*Android.*",
            },
        ),
        ({"replicas": 1, "matches": [COOKIE]}, {"canary": "true", "canary-by-cookie": "beta"}),
    ],
)
def test_nginx_canary_ingress(step: dict[str, Any], annotations: dict[str, str]) -> None:
    (phase,) = plan(step).route_traffic(0)
    (split,) = phase.apply
    assert split["metadata"]["name"] == "canary-demo-canary"
    assert split["metadata"]["annotations"] == {
        CANARY_OF: "Ingress/canary-demo",
        **{NGINX + k: v for k, v in annotations.items()},
    }
    assert split["spec"] == {
        "ingressClassName": "nginx",
        "rules": [
            {
                "host": "canary-demo.com",
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {
                                "service": {"name": "canary-demo-canary", "port": {"name": "http"}}
                            },
                        }
                    ]
                },
            }
        ],
    }
    assert phase.grace == 3.0


def test_the_canary_ingress_keeps_the_stable_annotations_but_not_old_canary_ones() -> None:
    stable = ingress("canary-demo", "2.0.0")
    stable["metadata"]["annotations"] = {
        NGINX + "proxy-read-timeout": "60",
        NGINX + "canary-by-header": "left-over",
    }
    other: Manifest = {
        "host": "admin.canary-demo.com",
        "http": {"paths": [copy.deepcopy(stable["spec"]["rules"][0]["http"]["paths"][0])]},
    }
    other["http"]["paths"][0]["backend"]["service"]["name"] = "admin"
    stable["spec"]["rules"].append(other)

    split = canary_ingress(stable, "canary-demo", 30)

    assert split["metadata"]["annotations"] == {
        NGINX + "proxy-read-timeout": "60",
        CANARY_OF: "Ingress/canary-demo",
        NGINX + "canary": "true",
        NGINX + "canary-weight": "30",
        NGINX + "canary-weight-total": "100",
    }
    assert [rule["host"] for rule in split["spec"]["rules"]] == ["canary-demo.com"]


def test_gateway_weights_split_the_stable_backend() -> None:
    route = http_route("canary-demo-gateway", "2.0.0")
    (phase,) = plan(
        {"weight": 20}, chart="canary-demo-gateway", routing=GATEWAY_ROUTING
    ).route_traffic(0)
    (split,) = phase.apply
    assert split["metadata"] == {**route["metadata"], "namespace": NS}
    assert split["spec"]["parentRefs"] == route["spec"]["parentRefs"]
    assert split["spec"]["rules"] == [
        {
            "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
            "backendRefs": [
                {"name": "canary-demo-gateway", "port": 80, "weight": 80},
                {"name": "canary-demo-gateway-canary", "port": 80, "weight": 20},
            ],
        }
    ]


@pytest.mark.parametrize("weight", [None, 40])
def test_gateway_header_matches_add_a_rule_to_the_canary(weight: int | None) -> None:
    step: dict[str, Any] = {"replicas": 1, "matches": [HEADER]}
    if weight is not None:
        step["weight"] = weight
    (phase,) = plan(step, chart="canary-demo-gateway", routing=GATEWAY_ROUTING).route_traffic(0)
    (split,) = phase.apply
    stable, matched = split["spec"]["rules"]
    if weight is None:
        assert stable == http_route("canary-demo-gateway", "2.0.0")["spec"]["rules"][0]
    else:
        assert [ref["weight"] for ref in stable["backendRefs"]] == [60, 40]
    assert matched == {
        "matches": [
            {
                "path": {"type": "PathPrefix", "value": "/"},
                "headers": [{"type": "Exact", "name": "x-canary", "value": "on"}],
            }
        ],
        "backendRefs": [{"name": "canary-demo-gateway-canary", "port": 80}],
    }


def test_a_step_without_weight_lets_traffic_follow_pods() -> None:
    """As in kruise: the previous step's split is undone and canary pods join the stable
    Service (they carry its selector's labels), so they get their share by number."""
    steps = plan({"weight": 20}, {"replicas": 3})
    assert summary(steps.upgrade(1, STABLE_HASH)) == [
        (["Deployment/canary-demo"], [], Wait.NOTHING),
        (["Service/canary-demo"], [], Wait.NOTHING),
        ([], ["Ingress/canary-demo-canary"], Wait.NOTHING),
        ([], ["Service/canary-demo-canary"], Wait.NOTHING),
        (["Deployment/canary-demo-canary"], [], Wait.READY),
    ]
    unpinned = applied(steps.upgrade(1, STABLE_HASH), "Service", "canary-demo")
    assert unpinned["spec"]["selector"] == selector_labels("canary-demo")
    assert (
        applied(steps.upgrade(1, None), "Deployment", "canary-demo-canary")["spec"]["replicas"] == 3
    )
    assert steps.route_traffic(1) == []


def test_without_traffic_routings_traffic_follows_pods() -> None:
    bare = plan({"weight": 20}, routing=None)
    assert summary(bare.upgrade(0, None)) == [
        (["Deployment/canary-demo"], [], Wait.NOTHING),
        (["Deployment/canary-demo-canary"], [], Wait.READY),
    ]
    assert bare.route_traffic(0) == []
    assert summary(bare.finalise()) == [
        (["Deployment/canary-demo"], [], Wait.READY),
        ([], ["Deployment/canary-demo-canary"], Wait.NOTHING),
    ]


# --- finalising and rolling back ------------------------------------------------------------------


def test_finalising_restores_traffic_before_the_stable_deployment_rolls() -> None:
    phases = plan({"weight": 20}).finalise()
    assert summary(phases) == [
        (["Service/canary-demo"], [], Wait.NOTHING),
        ([], ["Ingress/canary-demo-canary"], Wait.NOTHING),
        ([], ["Service/canary-demo-canary"], Wait.NOTHING),
        (["Deployment/canary-demo"], [], Wait.READY),
        ([], ["Deployment/canary-demo-canary"], Wait.NOTHING),
    ]
    unpinned, released = phases[0].apply[0], phases[3].apply[0]
    assert unpinned["spec"]["selector"] == selector_labels("canary-demo")
    assert released["spec"]["paused"] is False
    assert released["spec"]["template"] == workload("canary-demo", "2.0.0")["spec"]["template"]
    assert [p.grace for p in phases] == [3.0, 3.0, 0.0, 0.0, 0.0]


def test_finalising_a_gateway_canary_puts_the_rendered_route_back() -> None:
    phases = plan({"weight": 20}, chart="canary-demo-gateway", routing=GATEWAY_ROUTING).finalise()
    assert summary(phases)[1] == (["HTTPRoute/canary-demo-gateway"], [], Wait.NOTHING)
    route = http_route("canary-demo-gateway", "2.0.0")
    assert phases[1].apply[0] == {**route, "metadata": {**route["metadata"], "namespace": NS}}


def test_rolling_back_routes_to_the_stable_pods_first_and_unpins_last() -> None:
    previous = release(version="1.0.0")
    phases = plan({"weight": 20}).rollback(previous, STABLE_HASH)
    assert summary(phases) == [
        (["Service/canary-demo"], [], Wait.NOTHING),
        ([], ["Ingress/canary-demo-canary"], Wait.NOTHING),
        (["Deployment/canary-demo"], [], Wait.READY),
        ([], ["Deployment/canary-demo-canary"], Wait.GONE),
        (["Service/canary-demo"], ["Service/canary-demo-canary"], Wait.NOTHING),
    ]
    pinned, restored, unpinned = phases[0].apply[0], phases[2].apply[0], phases[4].apply[0]
    assert pinned["spec"]["selector"][POD_TEMPLATE_HASH] == STABLE_HASH
    assert restored["spec"]["paused"] is False
    assert restored["spec"]["template"] == workload("canary-demo", "1.0.0")["spec"]["template"]
    assert POD_TEMPLATE_HASH not in unpinned["spec"]["selector"]
    assert phases[3].wait_for == phases[3].delete
    # Without the stable hash nothing is pinned; the rest is the same.
    assert summary(plan({"weight": 20}).rollback(previous, None)) == summary(phases)[1:]


def test_rolling_back_a_gateway_canary_applies_the_previous_route() -> None:
    previous = release("canary-demo-gateway", version="1.0.0")
    gateway = plan({"weight": 20}, chart="canary-demo-gateway", routing=GATEWAY_ROUTING)
    phases = gateway.rollback(previous, STABLE_HASH)
    route = phases[1].apply[0]
    assert route["kind"] == "HTTPRoute"
    assert route["metadata"]["labels"]["helm.sh/chart"] == "canary-demo-gateway-1.0.0"
    assert route["spec"]["rules"] == http_route("canary-demo-gateway", "1.0.0")["spec"]["rules"]


def test_rolling_back_needs_the_workload_in_the_previous_revision() -> None:
    previous = [o for o in release(version="1.0.0") if o["kind"] != "Deployment"]
    with pytest.raises(CanaryError, match="not in the previous revision"):
        plan({"weight": 20}).rollback(previous, STABLE_HASH)


# --- StatefulSets ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("weight", "partition"), [(20, 4), (50, 2), (90, 0)])
def test_statefulset_steps_are_partitions(weight: int, partition: int) -> None:
    sts_plan = plan({"weight": weight}, chart="canary-demo-sts", routing=NGINX_ROUTING)
    (phase,) = sts_plan.upgrade(0, None)
    (sts,) = phase.apply
    assert sts["spec"]["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"partition": partition},
    }
    assert sts["spec"]["template"] == workload("canary-demo-sts", "2.0.0")["spec"]["template"]
    assert (phase.wait, phase.wait_for[0]["name"]) == (Wait.READY, "canary-demo-sts")
    assert sts_plan.traffic is None  # by pods only, whatever trafficRoutings say
    assert sts_plan.route_traffic(0) == []


def test_statefulset_finalise_and_rollback_end_at_partition_zero() -> None:
    sts_plan = plan({"weight": 20}, chart="canary-demo-sts")
    (finalise,) = sts_plan.finalise()
    (rollback,) = sts_plan.rollback(release("canary-demo-sts", version="1.0.0"), None)
    for phase, version in ((finalise, "2.0.0"), (rollback, "1.0.0")):
        (sts,) = phase.apply
        assert sts["spec"]["updateStrategy"]["rollingUpdate"] == {"partition": 0}
        assert sts["spec"]["template"] == workload("canary-demo-sts", version)["spec"]["template"]
        assert phase.wait is Wait.READY


# --- the trait against the release ----------------------------------------------------------------


def test_what_the_plan_applies_itself_during_a_canary() -> None:
    nginx = plan({"weight": 20})
    kinds = {o["kind"]: nginx.manages(o) for o in release()}
    assert kinds == {"ConfigMap": False, "Deployment": True, "Ingress": False, "Service": True}
    gateway = plan({"weight": 20}, chart="canary-demo-gateway", routing=GATEWAY_ROUTING)
    assert gateway.manages(http_route("canary-demo-gateway", "2.0.0"))
    bare = plan({"weight": 20}, routing=None)
    assert [o["kind"] for o in release() if bare.manages(o)] == ["Deployment"]


@pytest.mark.parametrize(
    ("chart", "steps", "routings", "message"),
    [
        (
            "canary-demo-sts",
            [{"weight": 20, "matches": [HEADER]}],
            [NGINX_ROUTING],
            "StatefulSet canary-demo-sts: canary.steps[0].matches: header matches need",
        ),
        (
            "canary-demo",
            [{"weight": 20}, {"weight": 50, "matches": [HEADER]}],
            [],
            "Deployment canary-demo: canary.steps[1].matches: header matches need",
        ),
        (
            "canary-demo",
            [{"weight": 20, "matches": [HEADER, COOKIE]}],
            [NGINX_ROUTING],
            "canary.steps[0].matches: ingress-nginx routes a canary by one header",
        ),
        (
            "canary-demo",
            [{"weight": 20}],
            [{"type": "nginx", "ingressName": "www"}],
            "trafficRoutings: no Ingress of that name in the release",
        ),
        (
            "canary-demo",
            [{"weight": 20}],
            [{"type": "nginx", "service": "nope"}],
            "trafficRoutings: Service nope is not in the release",
        ),
        (
            "canary-demo",
            [{"weight": 20}],
            [GATEWAY_ROUTING],
            "trafficRoutings: no HTTPRoute of that name in the release",
        ),
        (
            "canary-demo",
            [{"weight": 20}],
            [NGINX_ROUTING, NGINX_ROUTING],
            "canary.trafficRoutings: one entry per workload is supported",
        ),
    ],
)
def test_what_cannot_be_honoured_is_refused_before_anything_is_applied(
    chart: str, steps: list[dict[str, Any]], routings: list[dict[str, Any]], message: str
) -> None:
    kind = "StatefulSet" if chart == "canary-demo-sts" else "Deployment"
    trait = Canary.model_validate({"steps": steps, "trafficRoutings": routings})
    with pytest.raises(CanaryError) as raised:
        CanaryPlan.of(release(chart), kind, chart, trait, NS)
    assert message in str(raised.value)


def test_a_route_that_misses_the_service_is_refused() -> None:
    objects = release()
    objects[2]["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] = "else"
    with pytest.raises(
        CanaryError, match="Ingress canary-demo sends nothing to Service canary-demo"
    ):
        CanaryPlan.of(
            objects, "Deployment", "canary-demo", canary({"weight": 20}, routing=NGINX_ROUTING), NS
        )


def test_an_unknown_workload_is_refused() -> None:
    with pytest.raises(CanaryError, match="no such Deployment or StatefulSet"):
        CanaryPlan.of(release(), "Deployment", "web", canary({"weight": 20}), NS)


def test_phases_are_pure_and_repeatable() -> None:
    objects, previous = release(), release(version="1.0.0")
    before = copy.deepcopy((objects, previous))
    trait = canary({"weight": 20, "matches": [HEADER]}, {"weight": 60}, routing=NGINX_ROUTING)

    def every_phase() -> list[list[Phase]]:
        canary_plan = CanaryPlan.of(objects, "Deployment", "canary-demo", trait, NS)
        states = [CanaryState(stage, step) for stage in Stage for step in (0, 1)]
        return [
            canary_plan.phases(state, stable_hash=STABLE_HASH, previous=previous)
            for state in states
        ]

    assert every_phase() == every_phase()
    assert (objects, previous) == before


def test_phases_follow_the_stage() -> None:
    canary_plan = plan({"weight": 20})
    assert canary_plan.phases(CanaryState(), stable_hash=STABLE_HASH) == canary_plan.upgrade(
        0, STABLE_HASH
    )
    assert canary_plan.phases(CanaryState(Stage.TRAFFIC_ROUTING)) == canary_plan.route_traffic(0)
    assert canary_plan.phases(CanaryState(Stage.FINALISING)) == canary_plan.finalise()
    for idle in (Stage.PAUSED, Stage.COMPLETED, Stage.ROLLED_BACK):
        assert canary_plan.phases(CanaryState(idle)) == []


# --- the state machine ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "event", "after"),
    [
        (CanaryState(), Event.DONE, CanaryState(Stage.TRAFFIC_ROUTING, 0)),
        (CanaryState(Stage.TRAFFIC_ROUTING, 0), Event.DONE, CanaryState(Stage.PAUSED, 0)),
        (CanaryState(Stage.PAUSED, 0), Event.RESUME, CanaryState(Stage.UPGRADING, 1)),
        (CanaryState(Stage.PAUSED, 2), Event.RESUME, CanaryState(Stage.FINALISING, 2)),
        (CanaryState(Stage.FINALISING, 2), Event.DONE, CanaryState(Stage.COMPLETED, 2)),
        (CanaryState(Stage.UPGRADING, 1), Event.RESUME, CanaryState(Stage.UPGRADING, 1)),
        (CanaryState(Stage.PAUSED, 1), Event.ROLLBACK, CanaryState(Stage.ROLLING_BACK, 1)),
        (CanaryState(Stage.UPGRADING, 0), Event.ROLLBACK, CanaryState(Stage.ROLLING_BACK, 0)),
        (CanaryState(Stage.FINALISING, 2), Event.ROLLBACK, CanaryState(Stage.ROLLING_BACK, 2)),
        (CanaryState(Stage.ROLLING_BACK, 1), Event.ROLLBACK, CanaryState(Stage.ROLLING_BACK, 1)),
        (CanaryState(Stage.ROLLING_BACK, 1), Event.DONE, CanaryState(Stage.ROLLED_BACK, 1)),
    ],
)
def test_advance(state: CanaryState, event: Event, after: CanaryState) -> None:
    assert advance(state, event, step_count=3) == after


def test_a_finished_canary_cannot_be_rolled_back() -> None:
    for stage in (Stage.COMPLETED, Stage.ROLLED_BACK):
        with pytest.raises(CanaryError, match=f"is {stage}"):
            advance(CanaryState(stage, 2), Event.ROLLBACK, 3)


def test_a_paused_step_has_no_work_to_finish() -> None:
    with pytest.raises(ValueError, match="no work"):
        advance(CanaryState(Stage.PAUSED, 0), Event.DONE, 3)


# --- does the pod template change? ----------------------------------------------------------------


def live_deployment(version: str = "1.0.0", env: list[dict[str, str]] | None = None) -> Manifest:
    """The Deployment as the API server returns it after our apply: defaults added, a
    creationTimestamp in the template, and our field manager's fields."""
    live = workload("canary-demo", version)
    container = live["spec"]["template"]["spec"]["containers"][0]
    container |= {
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }
    if env:
        container["env"] = env
    live["spec"]["template"]["metadata"]["creationTimestamp"] = None
    live["spec"]["template"]["spec"] |= {
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
        "securityContext": {},
        "schedulerName": "default-scheduler",
    }
    live["spec"] |= {
        "revisionHistoryLimit": 10,
        "progressDeadlineSeconds": 600,
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
        },
    }
    owned_container: Manifest = {
        ".": {},
        "f:name": {},
        "f:image": {},
        "f:imagePullPolicy": {},
        "f:envFrom": {},
        "f:ports": {
            'k:{"containerPort":8080,"protocol":"TCP"}': {
                ".": {},
                "f:containerPort": {},
                "f:name": {},
                "f:protocol": {},
            }
        },
        "f:resources": {"f:requests": {"f:cpu": {}, "f:memory": {}}},
    }
    if env:
        owned_container["f:env"] = {
            f'k:{{"name":"{e["name"]}"}}': {".": {}, "f:name": {}, "f:value": {}} for e in env
        }
    template_labels: Manifest = {f"f:{k}": {} for k in chart_labels("canary-demo", version)}
    live["metadata"] |= {
        "uid": "0b5d3c4e-8d3f-4f5a-9a53-2f0c7f1d9e11",
        "generation": 1,
        "managedFields": [
            {
                "manager": "flotilla",
                "operation": "Apply",
                "apiVersion": "apps/v1",
                "fieldsType": "FieldsV1",
                "fieldsV1": {
                    "f:spec": {
                        "f:replicas": {},
                        "f:selector": {},
                        "f:template": {
                            "f:metadata": {"f:labels": template_labels},
                            "f:spec": {"f:containers": {'k:{"name":"web"}': owned_container}},
                        },
                    }
                },
            },
            {
                "manager": "kube-controller-manager",
                "operation": "Update",
                "apiVersion": "apps/v1",
                "subresource": "status",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:status": {"f:replicas": {}}},
            },
        ],
    }
    return live


def with_container(obj: Manifest, **fields: Any) -> Manifest:
    out = copy.deepcopy(obj)
    out["spec"]["template"]["spec"]["containers"][0] |= fields
    return out


DEBUG = [{"name": "LOG_LEVEL", "value": "debug"}]


@pytest.mark.parametrize(
    ("live", "new", "changed"),
    [
        # the same spec again: the server's defaults and fields are no change
        (live_deployment(), workload("canary-demo", "1.0.0"), False),
        # a new chart version: image and version labels
        (live_deployment(), workload("canary-demo", "2.0.0"), True),
        # quantities compare by value, as the API server rewrites them
        (
            live_deployment(),
            with_container(
                workload("canary-demo", "1.0.0"),
                resources={"requests": {"cpu": "0.01", "memory": "16Mi"}},
            ),
            False,
        ),
        (
            live_deployment(),
            with_container(
                workload("canary-demo", "1.0.0"),
                resources={"requests": {"cpu": "20m", "memory": "16Mi"}},
            ),
            True,
        ),
        # omitempty: false and empty values are what the server leaves out
        (
            live_deployment(),
            with_container(workload("canary-demo", "1.0.0"), stdin=False, args=[]),
            False,
        ),
        # an env var added, changed or removed
        (live_deployment(), with_container(workload("canary-demo", "1.0.0"), env=DEBUG), True),
        (
            live_deployment(env=DEBUG),
            with_container(workload("canary-demo", "1.0.0"), env=[{**DEBUG[0], "value": "info"}]),
            True,
        ),
        (live_deployment(env=DEBUG), workload("canary-demo", "1.0.0"), True),
        # nothing to compare against: a first deploy
        (None, workload("canary-demo", "1.0.0"), False),
    ],
)
def test_template_changed(live: Manifest | None, new: Manifest, changed: bool) -> None:
    assert template_changed(live, new) is changed


def test_a_configmap_change_is_no_template_change() -> None:
    before, after = release(version="1.0.0"), release(version="1.0.0", greeting="bonjour")
    assert [o["kind"] for o in before if o not in after] == ["ConfigMap"]
    assert not template_changed(live_deployment(), after[1])


def test_fields_others_added_are_no_template_change() -> None:
    live = live_deployment()
    live["spec"]["template"]["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z"
    }
    assert not template_changed(live, workload("canary-demo", "1.0.0"))
    assert not template_changed(live, {**workload("canary-demo", "1.0.0"), "kind": "DaemonSet"})


# --- readiness ------------------------------------------------------------------------------------


def live_status(
    obj: Manifest, *, generation: int = 2, observed: int = 2, **counts: int
) -> Manifest:
    """`obj` with a status as the API server reports it: zero counts left out."""
    out = copy.deepcopy(obj)
    out["metadata"]["generation"] = generation
    out["status"] = {"observedGeneration": observed, **{k: v for k, v in counts.items() if v}}
    return out


CANARY_DEPLOYMENT = plan({"weight": 20}).upgrade(0, STABLE_HASH)[1].apply[0]
STS = plan({"weight": 40}, chart="canary-demo-sts").upgrade(0, None)[0].apply[0]


@pytest.mark.parametrize(
    ("live", "ready", "text"),
    [
        (
            live_status(CANARY_DEPLOYMENT, replicas=1, updatedReplicas=1, availableReplicas=1),
            True,
            "1/1 new pods, 1/1 available",
        ),
        (
            live_status(CANARY_DEPLOYMENT, replicas=1, updatedReplicas=1, readyReplicas=1),
            False,
            "1/1 new pods, 0/1 available",
        ),
        (
            live_status(
                CANARY_DEPLOYMENT, observed=1, replicas=1, updatedReplicas=1, availableReplicas=1
            ),
            False,
            "1/1 new pods, 1/1 available, the latest spec not yet observed",
        ),
        (
            # the released stable Deployment mid-rollout: old pods still there
            live_status(
                workload("canary-demo", "2.0.0"),
                replicas=6,
                updatedReplicas=5,
                availableReplicas=5,
            ),
            False,
            "5/5 new pods, 5/5 available",
        ),
        (
            live_status(STS, replicas=5, updatedReplicas=1, availableReplicas=5),
            False,
            "1/2 new pods, 5/5 available",
        ),
        (
            live_status(STS, replicas=5, updatedReplicas=2, availableReplicas=4),
            False,
            "2/2 new pods, 4/5 available",
        ),
        (
            live_status(STS, replicas=5, updatedReplicas=2, availableReplicas=5),
            True,
            "2/2 new pods, 5/5 available",
        ),
    ],
)
def test_canary_status(live: Manifest, ready: bool, text: str) -> None:
    status = CanaryStatus.of(live)
    assert (status.ready, str(status)) == (ready, text)


def replicaset(
    pod_hash: str, replicas: int, owner: str = "0b5d3c4e-8d3f-4f5a-9a53-2f0c7f1d9e11"
) -> Manifest:
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"canary-demo-{pod_hash}",
            "labels": {**selector_labels("canary-demo"), POD_TEMPLATE_HASH: pod_hash},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": "canary-demo",
                    "uid": owner,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {"replicas": replicas},
        "status": {"replicas": replicas} if replicas else {},
    }


@pytest.mark.parametrize(
    ("replicasets", "found"),
    [
        ([replicaset(STABLE_HASH, 5), replicaset("68c9f7d6b", 0)], STABLE_HASH),
        # the canary's ReplicaSet belongs to the canary Deployment
        ([replicaset(STABLE_HASH, 5), replicaset(CANARY_HASH, 1, owner="other")], STABLE_HASH),
        # mid-rollout: no single hash names the stable pods
        ([replicaset(STABLE_HASH, 3), replicaset("68c9f7d6b", 3)], None),
        ([replicaset(STABLE_HASH, 0)], None),
    ],
)
def test_stable_pod_template_hash(replicasets: list[Manifest], found: str | None) -> None:
    assert stable_pod_template_hash(live_deployment(), replicasets) == found
