"""A cluster keeps its identity through a rename in the middle of a canary, and a detach
never strands an application: against the real local clusters and a real hub.

canary-demo 1.0.0 -> 2.0.0 with the kruise-rollout trait on prod (prod-eu 3 replicas,
prod-us 5), as test_canary.py runs it; prod-eu is renamed while the canary is paused.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.fleet import Fleet, listed_clusters, phase, until

pytestmark = pytest.mark.cluster

STABLE = "app.kubernetes.io/name=canary-demo,!flotilla.dev/canary"
CANARY = "flotilla.dev/canary=true"
V1, V2 = "registry.local/canary-demo:1.0.0", "registry.local/canary-demo:2.0.0"


def _trait() -> list[dict[str, Any]]:
    canary = {"steps": [{"weight": 20}], "trafficRoutings": [{"type": "nginx"}]}
    return [{"type": "kruise-rollout", "properties": {"canary": canary}}]


def _canary_objects(fleet: Fleet, cluster: str) -> list[str]:
    found = fleet.kubectl(cluster, "get", "deployments,services,ingresses", "-l", CANARY)
    return [f"{o['kind']}/{o['metadata']['name']}" for o in found["items"]]


def _managed(fleet: Fleet, cluster: str) -> list[str]:
    found = fleet.kubectl(
        cluster, "get", "deployments,services,ingresses", "-l", "flotilla.dev/managed-by"
    )
    return sorted(f"{o['kind']}/{o['metadata']['name']}" for o in found["items"])


def _stable_uids(fleet: Fleet, cluster: str) -> set[str]:
    return {p["metadata"]["uid"] for p in fleet.pods(cluster, STABLE)}


def _prod(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    step = next(s for s in status["steps"] if s["name"] == "deploy-prod")
    return {c["name"]: c for c in step["clusters"]}


def _rename(fleet: Fleet, old: str, new: str) -> None:
    """Rename in the hub, and follow it in the fixture's map of kubeconfigs."""
    result = fleet.hub.ok("cluster", "rename", old, new)
    assert f"cluster {old} renamed to {new}" in result.stdout
    fleet.clusters[new] = fleet.clusters.pop(old)


def _paused_canary(fleet: Fleet) -> None:
    """canary-demo 1.0.0 everywhere, then 2.0.0 with its prod canary paused at step 1."""
    assert fleet.up(fleet.app(traits=_trait()), "--wait").code == 0
    upgrade = fleet.up(fleet.app(version="2.0.0", traits=_trait()), "--wait")
    assert upgrade.code == 0, upgrade.stderr
    status = fleet.status()
    assert status["phase"] == "suspended" and "paused at step 1/1" in status["message"]


def test_rename_mid_canary_then_status_resume_and_delete(fleet: Fleet) -> None:
    _paused_canary(fleet)
    before = listed_clusters(fleet.hub)["prod-eu"]
    uids = _stable_uids(fleet, "prod-eu")

    _rename(fleet, "prod-eu", "prod-west")

    after = listed_clusters(fleet.hub)
    assert "prod-eu" not in after and after["prod-west"]["uid"] == before["uid"]
    shown = fleet.hub.ok("cluster", "show", "prod-west", "-o", "json").json()
    assert shown["uid"] == before["uid"]
    until(
        lambda: listed_clusters(fleet.hub)["prod-west"]["watch"]["state"] == "synced", what="watch"
    )
    status = fleet.status()
    prod = _prod(status)
    assert set(prod) == {"prod-west", "prod-us"}
    [release] = prod["prod-west"]["releases"]
    assert (release["rollout"]["step"], release["rollout"]["stage"]) == ("1/1", "paused")
    # Seen by the renamed cluster's watch cache, now: no object missing or as last seen.
    objects = release["objects"]
    assert objects and {o["health"] for o in objects} <= {"Healthy", "Suspended"}, objects
    assert not any(o["reason"].startswith("as last seen") for o in objects), objects
    assert "workflow resume canary-demo" in status["next"]

    fleet.hub.ok("workflow", "resume", "canary-demo", "--wait", timeout=300)
    assert phase(fleet) == "succeeded"
    until(lambda: not _canary_objects(fleet, "prod-west"), what="canary objects gone")
    deployment = fleet.deployment("prod-west")
    assert deployment is not None and not deployment["spec"].get("paused")
    assert deployment["status"].get("updatedReplicas") == 3
    assert fleet.image("prod-west") == V2
    assert _stable_uids(fleet, "prod-west") != uids  # released: the stable pods rolled

    fleet.hub.ok("delete", "canary-demo", "--yes", timeout=300)
    clusters = ("dev", "prod-west", "prod-us")
    until(lambda: not any(_managed(fleet, c) for c in clusters), what="objects gone")
    assert fleet.hub.cli("status", "canary-demo").code == 3


def test_rename_mid_canary_then_rollback(fleet: Fleet) -> None:
    _paused_canary(fleet)
    uids = _stable_uids(fleet, "prod-eu")
    _rename(fleet, "prod-eu", "prod-west")

    back = fleet.hub.cli("workflow", "rollback", "canary-demo", "--wait", timeout=300)
    assert back.code == 0, back.stderr
    assert phase(fleet) == "succeeded"
    until(lambda: not _canary_objects(fleet, "prod-west"), what="canary rolled back")
    deployment = fleet.deployment("prod-west")
    assert deployment is not None and not deployment["spec"].get("paused")
    assert fleet.image("prod-west") == V1
    assert _stable_uids(fleet, "prod-west") == uids, "a stable pod was restarted"
    selector = fleet.kubectl("prod-west", "get", "service", "canary-demo")["spec"]["selector"]
    assert "pod-template-hash" not in selector
    assert set(_prod(fleet.status())) == {"prod-west", "prod-us"}


def test_detach_refuses_forgets_or_deletes_the_releases(fleet: Fleet) -> None:
    assert fleet.up(fleet.app(), "--wait").code == 0
    everywhere = {c: _managed(fleet, c) for c in ("dev", "prod-eu", "prod-us")}
    assert all(everywhere.values())

    refused = fleet.hub.cli("cluster", "detach", "prod-us")
    assert refused.code == 4, refused.stderr
    assert "cluster 'prod-us' still holds application canary-demo (" in refused.stderr
    assert "nothing was detached" in refused.stderr and "--forget-releases" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "prod-us" in listed_clusters(fleet.hub) and "prod-us" in _prod(fleet.status())
    assert _managed(fleet, "prod-us") == everywhere["prod-us"]

    both = fleet.hub.cli("cluster", "detach", "prod-us", "--delete-releases", "--forget-releases")
    assert both.code == 2 and "exclude each other" in both.stderr

    forgot = fleet.hub.ok("cluster", "detach", "prod-us", "--forget-releases")
    assert "forgot canary-demo on prod-us:" in forgot.stdout and "left running" in forgot.stdout
    assert "cluster prod-us detached" in forgot.stdout
    assert "prod-us" not in listed_clusters(fleet.hub) and "prod-us" not in _prod(fleet.status())
    assert _managed(fleet, "prod-us") == everywhere["prod-us"]  # left where they were
    ready = fleet.deployment("prod-us")
    assert ready is not None and ready["status"].get("readyReplicas") == 5

    deleted = fleet.hub.ok("cluster", "detach", "prod-eu", "--delete-releases", "-o", "json")
    answer = deleted.json()
    assert answer["detached"] == "prod-eu" and answer["releases"] == "delete"
    [held] = answer["applications"]
    assert held["name"] == "canary-demo" and held["objects"] >= len(everywhere["prod-eu"])
    assert _managed(fleet, "prod-eu") == []  # deleted before the detach answered
    until(lambda: not fleet.pods("prod-eu"), what="prod-eu pods gone")
    assert set(listed_clusters(fleet.hub)) == {"dev"}
    assert _managed(fleet, "dev") == everywhere["dev"]
    history = fleet.hub.ok("history", "canary-demo", "-o", "json").json()
    messages = [e["message"] for e in history["events"]]
    assert any("cluster prod-us detached" in m and "left running" in m for m in messages)
    assert any("cluster prod-eu detached" in m and "deleted from it" in m for m in messages)
    # The forgotten release is nobody's now: the hub neither deletes nor upgrades it.
    fleet.hub.ok("delete", "canary-demo", "--yes", timeout=300)
    until(lambda: not _managed(fleet, "dev"), what="dev objects gone")
    assert _managed(fleet, "prod-us") == everywhere["prod-us"]
