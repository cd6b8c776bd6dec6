"""Watch caches follow the shards (issue 15 §2): a replica on a Kubernetes store watches
only the clusters its shards deploy to, and drops them when it loses the shards.

Real `flotilla serve` replicas share a store namespace on e2e-1 (a member cluster too).
Only `cluster list`, `up` and `delete` are asked of them: `status` reads objects through
the caches, and starts a watch of its own where it finds none.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e import clusters
from e2e.chartrepo import ChartRepo
from e2e.clusters import ClusterInfo
from e2e.hubproc import HubProcess, kubernetes_store
from hub.fleet.observer import NOT_WATCHED
from tests.fleet import NAMES, Fleet, listed_clusters, owned_by, until

pytestmark = pytest.mark.cluster

FIRST, SECOND = "scope-0", "scope-1"
PROD = ("prod-eu", "prod-us")
# A replica's scope follows a change a second later, and shards move to a replica that
# joins within a few renew periods (1 s): bounded generously for a machine others share.
SETTLE = 60.0


@pytest.fixture
def replicas(tmp_path: Path, e2e_clusters: list[ClusterInfo]) -> Iterator[list[HubProcess]]:
    """Two replicas, not started, on a fresh store namespace deleted afterwards."""
    management = e2e_clusters[0]
    store = f"fs-{secrets.token_hex(4)}"
    hubs = [
        HubProcess(
            tmp_path / f"home-{identity}",
            serve_args=(
                *kubernetes_store(management.kubeconfig, store),
                "--replica-id",
                identity,
            ),
        )
        for identity in (FIRST, SECOND)
    ]
    try:
        yield hubs
    finally:
        for hub in hubs:
            if hub.running:
                hub.stop()
        clusters.delete_namespace(store, [management])


def _watching(hub: HubProcess, *names: str) -> bool:
    """Whether `hub` has a synced cache of exactly the clusters `names`, none of the others."""
    states = {name: entry["watch"]["state"] for name, entry in listed_clusters(hub).items()}
    return states == {n: "synced" if n in names else NOT_WATCHED for n in NAMES}


def _probed_since(hub: HubProcess, seen: dict[str, Any]) -> bool:
    return all(entry["lastSeen"] != seen[name] for name, entry in listed_clusters(hub).items())


def test_a_replica_watches_only_the_clusters_its_shards_deploy_to(
    replicas: list[HubProcess],
    e2e_clusters: list[ClusterInfo],
    namespace: str,
    chart_repo: ChartRepo,
    tmp_path: Path,
) -> None:
    first, second = replicas
    first.start()
    fleet = Fleet.join(first, e2e_clusters, namespace, chart_repo.url, tmp_path)

    assert _watching(first), "a replica that drives nothing watches nothing"
    seen = {name: entry["lastSeen"] for name, entry in listed_clusters(first).items()}
    until(lambda: _probed_since(first, seen), SETTLE, "clusters not watched probed all the same")

    # The first replica's while it runs alone, the second's once both run.
    app = owned_by({(FIRST, SECOND): SECOND}, set())
    result = fleet.up(fleet.app_on({"env": "prod"}, name=app), "--wait")
    assert result.code == 0, result.stderr
    until(lambda: _watching(first, *PROD), SETTLE, "the first replica watching prod only")

    second.start()

    until(lambda: _watching(second, *PROD), SETTLE, "the second watching prod, its shard's")
    until(lambda: _watching(first), SETTLE, "the first dropping prod with the shard")

    second.ok("delete", app, "--yes")

    until(lambda: _watching(second), SETTLE, "the second dropping prod with the application")
