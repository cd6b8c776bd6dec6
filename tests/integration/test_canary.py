"""Canary upgrades on every prod cluster at once, driven from the hub (issue: canary).

canary-demo 1.0.0 -> 2.0.0 with steps 20% and 90%; prod-eu runs 3 replicas, prod-us 5.
Stable pods must keep their UIDs through every step and through rollback.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.chartrepo import ChartRepo
from e2e.clusters import ClusterInfo
from e2e.gateway import install_gateway_crds
from e2e.hubproc import HubProcess
from tests.fleet import STORES, Fleet, phase, until
from tests.shapes import assert_shape

pytestmark = pytest.mark.cluster

PROD = {"prod-eu": 3, "prod-us": 5}
STABLE = "app.kubernetes.io/name={chart},!flotilla.dev/canary"
CANARY = "flotilla.dev/canary=true"


def _trait(
    provider: str | None = "nginx", steps: tuple[int, ...] = (20, 90)
) -> list[dict[str, Any]]:
    canary: dict[str, Any] = {"steps": [{"weight": w} for w in steps]}
    if provider:
        canary["trafficRoutings"] = [{"type": provider}]
    return [{"type": "kruise-rollout", "properties": {"canary": canary}}]


def _uids(fleet: Fleet, cluster: str, chart: str = "canary-demo") -> set[str]:
    return {p["metadata"]["uid"] for p in fleet.pods(cluster, STABLE.format(chart=chart))}


def _canary_pods(fleet: Fleet, cluster: str) -> list[dict[str, Any]]:
    return [p for p in fleet.pods(cluster, CANARY) if _ready(p)]


def _ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _canary_objects(fleet: Fleet, cluster: str) -> list[str]:
    found = fleet.kubectl(cluster, "get", "deployments,services,ingresses", "-l", CANARY)
    return [f"{o['kind']}/{o['metadata']['name']}" for o in found["items"]]


def _any_canary(fleet: Fleet) -> bool:
    return any(_canary_objects(fleet, cluster) for cluster in PROD)


def _annotations(fleet: Fleet, cluster: str, kind: str, name: str) -> dict[str, str]:
    obj = fleet.kubectl(cluster, "get", kind, name)
    return dict(obj["metadata"].get("annotations") or {})


def _paused_at(fleet: Fleet, step: int) -> None:
    status = fleet.status()
    assert_shape(status, "status")  # with a rollout
    assert status["phase"] == "suspended", status["message"]
    assert f"paused at step {step}/2" in status["message"]
    assert "workflow resume canary-demo" in status["next"]
    prod = next(s for s in status["steps"] if s["name"] == "deploy-prod")
    for cluster in prod["clusters"]:
        rollout = cluster["releases"][0]["rollout"]
        assert (rollout["step"], rollout["stage"]) == (f"{step}/2", "paused")
        assert rollout["weight"] in (20, 90, None)
        assert "new pods" in rollout["canary"]


def _deploy_v1(fleet: Fleet, **app: Any) -> dict[str, set[str]]:
    result = fleet.up(fleet.app(**app), "--wait")
    assert result.code == 0, result.stderr
    return {cluster: _uids(fleet, cluster, app.get("chart", "canary-demo")) for cluster in PROD}


def _upgrade(fleet: Fleet, **app: Any) -> None:
    result = fleet.up(fleet.app(version="2.0.0", **app), "--wait")
    assert result.code == 0, result.stderr


def _assert_v1_everywhere(fleet: Fleet, uids: dict[str, set[str]]) -> None:
    until(lambda: not _any_canary(fleet), what="canary objects gone")
    for cluster, replicas in PROD.items():
        assert fleet.image(cluster) == "registry.local/canary-demo:1.0.0"
        deployment = fleet.deployment(cluster)
        assert deployment is not None
        assert not deployment["spec"].get("paused")
        assert _uids(fleet, cluster) == uids[cluster], "a stable pod was restarted"
        selector = fleet.kubectl(cluster, "get", "service", "canary-demo")["spec"]["selector"]
        assert "pod-template-hash" not in selector
        assert deployment["status"].get("readyReplicas") == replicas


@STORES
def test_nginx_canary_steps_resume_and_finish(fleet: Fleet) -> None:
    uids = _deploy_v1(fleet, traits=_trait())
    _upgrade(fleet, traits=_trait())
    _paused_at(fleet, 1)
    assert fleet.image("dev") == "registry.local/canary-demo:2.0.0"  # dev has no canary
    for cluster in PROD:
        canaries = _canary_pods(fleet, cluster)
        assert len(canaries) == 1, cluster
        assert canaries[0]["spec"]["containers"][0]["image"].endswith(":2.0.0")
        assert _uids(fleet, cluster) == uids[cluster]
        annotations = _annotations(fleet, cluster, "ingress", "canary-demo-canary")
        assert annotations["nginx.ingress.kubernetes.io/canary"] == "true"
        assert annotations["nginx.ingress.kubernetes.io/canary-weight"] == "20"
        assert fleet.deployment(cluster)["spec"]["paused"] is True  # type: ignore[index]

    fleet.hub.ok("workflow", "resume", "canary-demo", "--wait", timeout=300)
    _paused_at(fleet, 2)
    for cluster, replicas in PROD.items():
        assert len(_canary_pods(fleet, cluster)) == math.ceil(0.9 * replicas)
        weight = _annotations(fleet, cluster, "ingress", "canary-demo-canary")
        assert weight["nginx.ingress.kubernetes.io/canary-weight"] == "90"
        assert _uids(fleet, cluster) == uids[cluster]

    fleet.hub.ok("workflow", "resume", "canary-demo", "--wait", timeout=300)
    assert phase(fleet) == "succeeded"
    for cluster, replicas in PROD.items():
        assert _canary_objects(fleet, cluster) == []
        deployment = fleet.deployment(cluster)
        assert deployment is not None and not deployment["spec"].get("paused")
        assert deployment["status"].get("updatedReplicas") == replicas
        assert fleet.image(cluster) == "registry.local/canary-demo:2.0.0"
        selector = fleet.kubectl(cluster, "get", "service", "canary-demo")["spec"]["selector"]
        assert "pod-template-hash" not in selector
        ingresses = fleet.kubectl(cluster, "get", "ingresses")["items"]
        assert [i["metadata"]["name"] for i in ingresses] == ["canary-demo"]


@pytest.mark.parametrize("paused_at", [1, 2])
def test_rollback_while_paused_keeps_stable_pods(fleet: Fleet, paused_at: int) -> None:
    uids = _deploy_v1(fleet, traits=_trait())
    _upgrade(fleet, traits=_trait())
    if paused_at == 2:
        fleet.hub.ok("workflow", "resume", "canary-demo", "--wait", timeout=300)
    _paused_at(fleet, paused_at)
    back = fleet.hub.cli("workflow", "rollback", "canary-demo", "--wait", timeout=300)
    assert back.code == 0, back.stderr
    assert phase(fleet) == "succeeded"
    _assert_v1_everywhere(fleet, uids)


def test_unhealthy_canary_stops_with_the_cluster_named_and_rollback_cleans_up(
    e2e_clusters: list[ClusterInfo], namespace: str, chart_repo: ChartRepo, tmp_path: Path
) -> None:
    hub = HubProcess(tmp_path / "home", serve_args=("--step-timeout", "20"))
    hub.start()
    try:
        fleet = Fleet.join(hub, e2e_clusters, namespace, chart_repo.url, tmp_path)
        uids = _deploy_v1(fleet, traits=_trait(), dev_canary=True)
        dev_uids = _uids(fleet, "dev")
        bad = fleet.up(
            fleet.app(
                version="2.0.0",
                traits=_trait(),
                dev_canary=True,
                values={"image": {"tag": "2.0.0-unhealthy"}},
            ),
            "--wait",
        )
        assert bad.code == 1
        status = fleet.status()
        assert status["phase"] == "failed"
        dev = next(s for s in status["steps"] if s["name"] == "deploy-dev")
        message = dev["clusters"][0]["releases"][0]["message"]
        assert "canary not ready on cluster dev" in message
        assert "CrashLoopBackOff" in message
        assert _uids(fleet, "dev") == dev_uids
        for cluster in PROD:  # the next environment was never touched
            assert fleet.image(cluster) == "registry.local/canary-demo:1.0.0"
            assert _canary_objects(fleet, cluster) == []
        back = fleet.hub.cli("workflow", "rollback", "canary-demo", "--wait", timeout=300)
        assert back.code == 0, back.stderr
        until(lambda: not _canary_objects(fleet, "dev"), what="dev canary cleaned up")
        assert fleet.image("dev") == "registry.local/canary-demo:1.0.0"
        assert _uids(fleet, "dev") == dev_uids
        _assert_v1_everywhere(fleet, uids)
    finally:
        hub.stop()


@pytest.fixture
def gateway_crds(e2e_clusters: list[ClusterInfo]) -> Iterator[None]:
    for info in e2e_clusters:
        install_gateway_crds(info.kubeconfig)
    yield


@pytest.mark.usefixtures("gateway_crds")
def test_gateway_canary_weights_the_httproute(fleet: Fleet) -> None:
    app = {"chart": "canary-demo-gateway", "values": {"fullnameOverride": "canary-demo"}}
    uids = _deploy_v1(fleet, traits=_trait("gateway"), **app)
    _upgrade(fleet, traits=_trait("gateway"), **app)
    _paused_at(fleet, 1)
    for cluster in PROD:
        route = fleet.kubectl(cluster, "get", "httproute", "canary-demo")
        weights = {
            ref["name"]: ref.get("weight")
            for rule in route["spec"]["rules"]
            for ref in rule["backendRefs"]
        }
        assert weights == {"canary-demo": 80, "canary-demo-canary": 20}
        assert _uids(fleet, cluster, "canary-demo-gateway") == uids[cluster]
    fleet.hub.ok("workflow", "resume", "canary-demo", "--wait", timeout=300)
    fleet.hub.ok("workflow", "resume", "canary-demo", "--wait", timeout=300)
    assert phase(fleet) == "succeeded"
    for cluster in PROD:
        route = fleet.kubectl(cluster, "get", "httproute", "canary-demo")
        names = {ref["name"] for rule in route["spec"]["rules"] for ref in rule["backendRefs"]}
        assert names == {"canary-demo"}
        assert _canary_objects(fleet, cluster) == []


def test_statefulset_canary_uses_the_partition(fleet: Fleet) -> None:
    # replicaCount 5 as the other charts have (this chart's default is 3); prod-eu 3.
    app = {
        "chart": "canary-demo-sts",
        "values": {"fullnameOverride": "canary-demo", "replicaCount": 5},
    }
    _deploy_v1(fleet, traits=_trait(None), **app)
    _upgrade(fleet, traits=_trait(None), **app)
    _paused_at(fleet, 1)
    for cluster, replicas in PROD.items():
        sts = fleet.kubectl(cluster, "get", "statefulset", "canary-demo")
        partition = sts["spec"]["updateStrategy"]["rollingUpdate"]["partition"]
        assert partition == replicas - math.ceil(0.2 * replicas)
        assert sts["status"].get("updatedReplicas") == replicas - partition
    fleet.hub.ok("workflow", "resume", "canary-demo", "--wait", timeout=300)
    fleet.hub.ok("workflow", "resume", "canary-demo", "--wait", timeout=300)
    assert phase(fleet) == "succeeded"
    for cluster, replicas in PROD.items():
        sts = fleet.kubectl(cluster, "get", "statefulset", "canary-demo")
        rolling = sts["spec"]["updateStrategy"].get("rollingUpdate") or {}
        assert rolling.get("partition", 0) == 0
        assert sts["status"].get("updatedReplicas") == replicas


@pytest.mark.parametrize("kill_at", ["upgrading", "paused", "finalising"])
@STORES
def test_hub_killed_during_a_canary_ends_the_same(fleet: Fleet, kill_at: str) -> None:
    _deploy_v1(fleet, traits=_trait(steps=(20,)))
    accepted = fleet.up(fleet.app(version="2.0.0", traits=_trait(steps=(20,))))
    assert accepted.code == 0, accepted.stderr
    if kill_at == "upgrading":
        until(lambda: any(_canary_objects(fleet, c) for c in PROD), what="canary started")
        fleet.hub.kill()
        fleet.hub.start()
    until(lambda: phase(fleet) == "suspended", what="paused at step 1", timeout=300)
    if kill_at == "paused":
        fleet.hub.kill()
        fleet.hub.start()
    fleet.hub.ok("workflow", "resume", "canary-demo")
    if kill_at == "finalising":
        until(
            lambda: any(
                not (fleet.deployment(c) or {}).get("spec", {}).get("paused") for c in PROD
            ),
            what="stable released",
        )
        fleet.hub.kill()
        fleet.hub.start()
    until(lambda: phase(fleet) == "succeeded", what="canary finished", timeout=300)
    until(lambda: not _any_canary(fleet), what="canary objects gone")
    for cluster, replicas in PROD.items():
        deployment = fleet.deployment(cluster)
        assert deployment is not None and not deployment["spec"].get("paused")
        assert deployment["status"].get("readyReplicas") == replicas
        assert fleet.image(cluster) == "registry.local/canary-demo:2.0.0"


def test_suspend_freezes_a_canary_and_resume_continues_it(fleet: Fleet) -> None:
    _deploy_v1(fleet, traits=_trait(steps=(20,)))
    accepted = fleet.up(fleet.app(version="2.0.0", traits=_trait(steps=(20,))))
    assert accepted.code == 0, accepted.stderr
    until(lambda: any(_canary_objects(fleet, c) for c in PROD), what="canary started")
    fleet.hub.ok("workflow", "suspend", "canary-demo")
    until(lambda: phase(fleet) == "suspended", what="suspended")
    frozen = {c: fleet.deployment(c)["spec"].get("paused") for c in PROD}  # type: ignore[index]
    assert all(frozen.values()), "the stable Deployments were released while suspended"
    for _ in range(3):  # the suspend, then the canary's own pause
        if phase(fleet) == "succeeded":
            break
        fleet.hub.ok("workflow", "resume", "canary-demo", "--wait", timeout=300)
    assert phase(fleet) == "succeeded"
    until(lambda: not _any_canary(fleet), what="canary objects gone")
    for cluster in PROD:
        assert fleet.image(cluster) == "registry.local/canary-demo:2.0.0"


def test_a_resume_sent_while_the_step_moves_traffic_approves_its_pause(fleet: Fleet) -> None:
    """A resume that comes before the pause is recorded (issue 10, section 3) is neither
    refused nor lost: it approves that pause, every cluster goes on together once all
    have reached it, and the next pause holds as usual."""
    _deploy_v1(fleet, traits=_trait())
    accepted = fleet.up(fleet.app(version="2.0.0", traits=_trait()))
    assert accepted.code == 0, accepted.stderr

    def canary_stages() -> list[str] | None:
        """Each prod cluster's canary stage while deploy-prod runs, once all have one."""
        prod = next(s for s in fleet.status()["steps"] if s["name"] == "deploy-prod")
        rollouts = [r["rollout"] for c in prod["clusters"] for r in c["releases"]]
        if prod["phase"] != "running" or len(rollouts) != len(PROD) or None in rollouts:
            return None
        return [r["stage"] for r in rollouts]

    until(lambda: canary_stages() is not None, what="the canary under way in prod", timeout=300)
    stages = canary_stages()
    assert stages is not None and "paused" not in stages, f"the window was missed: {stages}"
    resumed = fleet.hub.ok("workflow", "resume", "canary-demo")
    assert "canary pause at step 1" in resumed.stdout, resumed.stdout
    until(lambda: phase(fleet) == "suspended", what="the next pause", timeout=300)
    _paused_at(fleet, 2)
    fleet.hub.ok("workflow", "resume", "canary-demo", "--wait", timeout=300)
    assert phase(fleet) == "succeeded"
