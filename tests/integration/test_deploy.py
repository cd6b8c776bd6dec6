"""`flotilla up` across three real clusters: environments in order, revisions, prune,
rollback, suspend, a dead cluster, a killed hub, and files that must change nothing."""

from __future__ import annotations

from typing import Any

import pytest

from e2e import clusters as e2e
from tests.fleet import STORES, Fleet, phase, until
from tests.shapes import assert_shape

pytestmark = pytest.mark.cluster

EXPECTED_REPLICAS = {"dev": 1, "prod-eu": 3, "prod-us": 5}


def _assert_running(fleet: Fleet, version: str) -> None:
    for cluster, replicas in EXPECTED_REPLICAS.items():
        deployment = fleet.deployment(cluster)
        assert deployment is not None, cluster
        assert deployment["spec"]["replicas"] == replicas, cluster
        assert deployment["status"].get("readyReplicas") == replicas, cluster
        assert fleet.image(cluster) == f"registry.local/canary-demo:{version}"


def _all_healthy(status: dict) -> bool:  # type: ignore[type-arg]
    objects = [
        obj
        for step in status["steps"]
        for cluster in step["clusters"]
        for release in cluster["releases"]
        for obj in release["objects"]
    ]
    return bool(objects) and all(o["health"] == "Healthy" for o in objects)


@STORES
def test_up_upgrade_prune_and_rollback(fleet: Fleet) -> None:
    first = fleet.up(fleet.app(publish="v1"), "--wait")
    assert first.code == 0, first.stderr
    _assert_running(fleet, "1.0.0")
    status = fleet.status()
    assert (status["phase"], status["health"], status["revision"]) == ("succeeded", "Healthy", 1)
    assert _all_healthy(status)
    assert_shape(status, "status")
    tree = fleet.hub.ok("status", "canary-demo", "--tree").stdout
    assert "Deployment" in tree and "prod-eu" in tree
    assert fleet.up(fleet.app(publish="v1")).stdout.strip().endswith("nothing to do")

    upgraded = fleet.up(
        fleet.app(version="2.0.0", publish="v2", values={"ingress": {"enabled": False}}), "--wait"
    )
    assert upgraded.code == 0, upgraded.stderr
    _assert_running(fleet, "2.0.0")
    for cluster in EXPECTED_REPLICAS:
        assert "Ingress" not in fleet.kinds(cluster), "the dropped Ingress was not pruned"
        assert {"Deployment", "Service", "ConfigMap"} <= fleet.kinds(cluster)

    back = fleet.hub.cli("workflow", "rollback", "canary-demo", "--revision", "1", "--wait")
    assert back.code == 0, back.stderr
    _assert_running(fleet, "1.0.0")
    for cluster in EXPECTED_REPLICAS:
        assert "Ingress" in fleet.kinds(cluster)
    answer = fleet.hub.ok("history", "canary-demo", "-o", "json").json()
    assert_shape(answer, "history")
    history = answer["revisions"]
    assert [(r["revision"], r["outcome"], r["rollbackOf"]) for r in history] == [
        (1, "succeeded", None),
        (2, "succeeded", None),
        (3, "succeeded", 1),
    ]
    listing = fleet.hub.ok("ls", "-o", "json").json()
    assert_shape(listing, "ls")
    listed = listing["applications"]
    assert [(a["name"], a["revision"], a["health"]) for a in listed] == [
        ("canary-demo", 3, "Healthy")
    ]

    fleet.hub.ok("delete", "canary-demo", "--yes")

    def gone() -> bool:
        return not any(fleet.kinds(cluster) for cluster in EXPECTED_REPLICAS)

    until(gone, what="objects gone from every cluster")
    assert fleet.hub.ok("ls", "-o", "json").json()["applications"] == []


def test_suspend_step_holds_prod_until_resume(fleet: Fleet) -> None:
    result = fleet.up(fleet.app(suspend=True), "--wait")
    assert result.code == 0, result.stderr
    assert "flotilla workflow resume canary-demo" in result.stdout
    status = fleet.status()
    assert status["phase"] == "suspended"
    assert "workflow resume" in status["next"]
    assert fleet.deployment("dev") is not None
    assert fleet.deployment("prod-eu") is None and fleet.deployment("prod-us") is None
    fleet.hub.ok("workflow", "resume", "canary-demo")
    until(lambda: phase(fleet) == "succeeded", what="workflow finished")
    _assert_running(fleet, "1.0.0")


def test_dead_cluster_holds_its_step_and_the_step_completes_once_it_returns(
    fleet: Fleet,
) -> None:
    victim = fleet.clusters["prod-us"].name

    def releases() -> dict[str, dict[str, Any]]:
        prod = next(s for s in fleet.status()["steps"] if s["name"] == "deploy-prod")
        return {c["name"]: c["releases"][0] for c in prod["clusters"]}

    e2e.stop_apiserver(victim)
    try:
        until(
            lambda: (
                fleet.hub.ok("cluster", "list", "-o", "json").json()["clusters"][2]["health"]
                == "Unreachable"
            ),
            what="prod-us unreachable",
        )
        accepted = fleet.up(fleet.app())
        assert accepted.code == 0, accepted.stderr
        seen: list[dict[str, Any]] = []

        def waiting_for_it() -> bool:
            # One read per look: each retry's attempt shows its own message while it lasts.
            seen.append(releases().get("prod-us", {"message": ""}))
            return "unreachable" in seen[-1]["message"]

        until(waiting_for_it, what="the step waiting for prod-us")
        waiting = seen[-1]
        assert waiting["phase"] != "failed", waiting
        assert waiting["message"].startswith(
            "cluster prod-us unreachable: waiting for it to answer again"
        ), waiting
        assert fleet.status()["phase"] == "running"
        until(lambda: releases()["prod-eu"]["phase"] == "healthy", what="prod-eu deployed")
        assert fleet.deployment("prod-eu") is not None
    finally:
        e2e.start_apiserver(victim)
    until(lambda: phase(fleet) == "succeeded", what="the step completed by itself")
    _assert_running(fleet, "1.0.0")


@STORES
def test_hub_killed_mid_step_resumes_to_the_same_end(fleet: Fleet) -> None:
    accepted = fleet.up(fleet.app())
    assert accepted.code == 0, accepted.stderr
    until(
        lambda: any(
            r["phase"] in ("applying", "waiting", "healthy")
            for s in fleet.status()["steps"]
            for c in s["clusters"]
            for r in c["releases"]
        ),
        what="the deploy to start",
    )
    fleet.hub.kill()
    fleet.hub.start()
    until(lambda: phase(fleet) == "succeeded", what="resumed workflow finished")
    _assert_running(fleet, "1.0.0")
    assert _all_healthy(fleet.status())


def test_bad_files_change_nothing(fleet: Fleet) -> None:
    assert fleet.up(fleet.app(), "--wait").code == 0
    before = {c: fleet.deployment(c)["metadata"]["resourceVersion"] for c in EXPECTED_REPLICAS}  # type: ignore[index]

    invalid = fleet.workdir / "invalid.yaml"
    invalid.write_text(fleet.app().read_text().replace("type: topology", "type: topologyy", 1))
    missing_version = fleet.app(version="9.9.9")
    bad_values = fleet.app(values={"replicaCount": "many"})
    for path, message in (
        (invalid, "topologyy"),
        (missing_version, "9.9.9"),
        (bad_values, "replicaCount"),
    ):
        result = fleet.up(path)
        assert result.code != 0, path
        assert message in result.stderr
        assert "Traceback" not in result.stderr
    assert (
        fleet.hub.ok("history", "canary-demo", "-o", "json").json()["revisions"][-1]["revision"]
        == 1
    )
    after = {c: fleet.deployment(c)["metadata"]["resourceVersion"] for c in EXPECTED_REPLICAS}  # type: ignore[index]
    assert after == before
