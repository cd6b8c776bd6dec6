"""Placement follows the fleet (issue 13 §2), on the real clusters: a cluster that joins
matching an environment gets the revision it runs without gates or a new revision (at
once, by the runner when its step comes, or once a canary under way ends), a relabelled
cluster loses its release, and the blast-radius guard holds removals that would empty an
environment or take more than half of it (after a relabel or a changed selector), across
a hub restart, until `workflow resume`. What is on a cluster is read with kubectl."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.chartrepo import ChartRepo
from e2e.clusters import ClusterInfo
from e2e.hubproc import HubProcess
from tests.fleet import NAMES, Fleet, phase, until

pytestmark = pytest.mark.cluster

APP = "canary-demo"
HELD = "held by the blast-radius guard"


@pytest.fixture
def two(
    hub: HubProcess,
    e2e_clusters: list[ClusterInfo],
    namespace: str,
    chart_repo: ChartRepo,
    tmp_path: Path,
) -> Fleet:
    """dev and prod-eu joined; prod-us not yet, though the fleet can read it with kubectl."""
    Fleet.join(hub, e2e_clusters[:2], namespace, chart_repo.url, tmp_path)
    infos = dict(zip(NAMES, e2e_clusters, strict=False))
    return Fleet(hub, infos, namespace, chart_repo.url, tmp_path)


def _join_prod_us(fleet: Fleet) -> None:
    kubeconfig = str(fleet.clusters["prod-us"].kubeconfig)
    fleet.hub.ok("cluster", "join", kubeconfig, "--name", "prod-us", "--labels", "env=prod")


def _relabel(fleet: Fleet, cluster: str, env: str) -> None:
    fleet.hub.ok("cluster", "labels", "add", cluster, f"env={env}")


def _release(fleet: Fleet, step: str, cluster: str) -> dict[str, Any] | None:
    status = fleet.status()
    found = next(s for s in status["steps"] if s["name"] == step)
    releases = [c["releases"][0] for c in found["clusters"] if c["name"] == cluster]
    return releases[0] if releases else None


def _events(fleet: Fleet) -> list[str]:
    """The application's event messages (`events -o json` writes one object a line)."""
    lines = fleet.hub.ok("events", APP, "--limit", "500", "-o", "json").stdout.splitlines()
    return [json.loads(line)["message"] for line in lines]


def _revisions(fleet: Fleet) -> list[int]:
    history = fleet.hub.ok("history", APP, "-o", "json").json()
    return [r["revision"] for r in history["revisions"]]


def _ready(fleet: Fleet, cluster: str) -> bool:
    deployment = fleet.deployment(cluster)
    if deployment is None:
        return False
    return bool(deployment["status"].get("readyReplicas") == deployment["spec"]["replicas"])


def _enrolled(fleet: Fleet, cluster: str) -> bool:
    release = _release(fleet, "deploy-prod", cluster)
    return (
        release is not None
        and release["phase"] == "healthy"
        and release["message"].startswith("enrolled")
    )


def test_a_joining_cluster_is_enrolled_and_relabelled_ones_leave_or_are_held(two: Fleet) -> None:
    fleet = two
    assert fleet.up(fleet.app(suspend=True), "--wait").code == 0
    fleet.hub.ok("workflow", "resume", APP)
    until(lambda: phase(fleet) == "succeeded", what="revision 1 everywhere")
    assert fleet.deployment("prod-us") is None

    # A new prod cluster gets revision 1 at once: no approval, no step run again.
    _join_prod_us(fleet)
    until(lambda: _enrolled(fleet, "prod-us"), what="prod-us enrolled")
    until(lambda: _ready(fleet, "prod-us"), what="canary-demo ready on prod-us")
    assert fleet.image("prod-us") == "registry.local/canary-demo:1.0.0"
    status = fleet.status()
    assert (status["phase"], status["revision"]) == ("succeeded", 1)
    assert _revisions(fleet) == [1]
    events = _events(fleet)
    assert f"prod-us/{APP}: enrolled at revision 1, without a new revision" in events
    assert events.count("step approve suspended") == 1
    assert events.count("step deploy-prod started") == 1

    # Relabelled out of prod: its release goes (one of two prod clusters: not held).
    _relabel(fleet, "prod-us", "staging")
    until(lambda: fleet.deployment("prod-us") is None, what="release gone from prod-us")
    assert "removed from prod-us: no longer matches the topology" in _events(fleet)
    assert _release(fleet, "deploy-prod", "prod-us") is None
    assert fleet.deployment("prod-eu") is not None
    assert _revisions(fleet) == [1]

    # The last dev cluster relabelled out: held, and said so.
    _relabel(fleet, "dev", "retired")
    until(lambda: HELD in fleet.status()["message"], what="the guard holds dev")
    status = fleet.status()
    assert "step deploy-dev would be left on no cluster (removed from dev)" in status["message"]
    assert status["next"] == f"run `flotilla workflow resume {APP}`"
    assert fleet.deployment("dev") is not None

    # The hold outlives a restart, and the restarted hub's passes (here one that enrols
    # prod-us again) keep holding it.
    assert fleet.hub.stop() == 0
    fleet.hub.start()
    assert HELD in fleet.status()["message"]
    _relabel(fleet, "prod-us", "prod")
    until(lambda: _enrolled(fleet, "prod-us"), what="prod-us enrolled again")
    assert HELD in fleet.status()["message"]
    assert fleet.deployment("dev") is not None
    assert [m for m in _events(fleet) if HELD in m] == [status["message"]]

    # `workflow resume` confirms: the release leaves dev.
    fleet.hub.ok("workflow", "resume", APP)
    until(lambda: fleet.deployment("dev") is None, what="release gone from dev")
    status = fleet.status()
    assert HELD not in status["message"] and status["next"] is None
    events = _events(fleet)
    assert "removal from dev confirmed by the operator" in events
    assert "removed from dev: no longer matches the topology" in events
    assert _revisions(fleet) == [1]


def test_a_cluster_joining_before_its_step_runs_is_deployed_by_the_runner(two: Fleet) -> None:
    fleet = two
    assert fleet.up(fleet.app(suspend=True), "--wait").code == 0
    assert phase(fleet) == "suspended"
    _join_prod_us(fleet)

    def pending() -> bool:
        release = _release(fleet, "deploy-prod", "prod-us")
        return release is not None and release["phase"] == "pending"

    until(pending, what="prod-us pending in deploy-prod")
    release = _release(fleet, "deploy-prod", "prod-us")
    assert release is not None
    assert release["message"] == "enrolled: deployed when step deploy-prod runs"
    assert fleet.deployment("prod-us") is None
    fleet.hub.ok("workflow", "resume", APP)
    until(lambda: phase(fleet) == "succeeded", what="the workflow finished")
    assert _ready(fleet, "prod-us") and _ready(fleet, "prod-eu")
    assert _revisions(fleet) == [1]


def _with_selectors(fleet: Fleet, **selectors: dict[str, str]) -> Path:
    """The application's file with these topologies selecting these labels (maybe none)."""
    path = fleet.app()
    document = yaml.safe_load(path.read_text())
    for topology in document["spec"]["policies"]:
        if topology["name"] in selectors:
            selector = selectors[topology["name"]]
            topology["properties"] |= {"clusterLabelSelector": selector, "allowEmpty": True}
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def test_selector_changes_that_empty_or_halve_an_environment_wait_for_confirmation(
    fleet: Fleet,
) -> None:
    assert fleet.up(fleet.app(), "--wait").code == 0
    assert fleet.deployment("dev") is not None

    # Revision 2 selects no dev cluster: it succeeds, and the clean-up of dev is held.
    assert fleet.up(_with_selectors(fleet, dev={"env": "nowhere"}), "--wait").code == 0
    status = fleet.status()
    assert (status["revision"], status["phase"]) == (2, "succeeded")
    assert HELD in status["message"]
    assert "step deploy-dev would be left on no cluster (removed from dev)" in status["message"]
    assert fleet.deployment("dev") is not None
    fleet.hub.ok("workflow", "resume", APP)
    until(lambda: fleet.deployment("dev") is None, what="release gone from dev")
    assert f"removed {APP} from dev (no longer targeted)" in _events(fleet)
    assert all(fleet.deployment(c) is not None for c in ("prod-eu", "prod-us"))

    # The dev cluster relabelled into prod is enrolled there: prod has three clusters.
    _relabel(fleet, "dev", "prod")
    until(lambda: _enrolled(fleet, "dev"), what="dev enrolled in deploy-prod")
    assert fleet.deployment("dev") is not None

    # Revision 3 keeps one of the three: two of three go only once confirmed.
    eu_only = _with_selectors(fleet, dev={"env": "nowhere"}, prod={"env": "prod", "region": "eu"})
    assert fleet.up(eu_only, "--wait").code == 0
    status = fleet.status()
    assert status["revision"] == 3
    assert "step deploy-prod would lose 2 of its 3 clusters (dev, prod-us)" in status["message"]
    assert all(fleet.deployment(c) is not None for c in ("dev", "prod-eu", "prod-us"))
    fleet.hub.ok("workflow", "resume", APP)
    until(
        lambda: fleet.deployment("dev") is None and fleet.deployment("prod-us") is None,
        what="releases gone from dev and prod-us",
    )
    assert fleet.deployment("prod-eu") is not None
    assert HELD not in fleet.status()["message"]


def test_a_cluster_joining_mid_canary_is_enrolled_once_the_step_ends(two: Fleet) -> None:
    fleet = two
    traits = [{"type": "kruise-rollout", "properties": {"canary": {"steps": [{"weight": 50}]}}}]
    assert fleet.up(fleet.app(traits=traits), "--wait").code == 0
    assert fleet.up(fleet.app(version="2.0.0", traits=traits), "--wait").code == 0
    assert phase(fleet) == "suspended"  # the prod canary pauses at its step
    _join_prod_us(fleet)
    waiting = f"prod-us/{APP}: enrolled once step deploy-prod ends; it is under way"
    until(lambda: waiting in _events(fleet), what="prod-us waiting for the canary")
    assert fleet.deployment("prod-us") is None
    assert _release(fleet, "deploy-prod", "prod-us") is None

    fleet.hub.ok("workflow", "resume", APP)
    until(lambda: _enrolled(fleet, "prod-us"), what="prod-us enrolled after the canary")
    until(lambda: _ready(fleet, "prod-us"), what="canary-demo ready on prod-us")
    assert fleet.image("prod-us") == "registry.local/canary-demo:2.0.0"
    assert phase(fleet) == "succeeded"
    assert _revisions(fleet) == [1, 2]
