"""Status from the hub's watch caches, against real clusters: a cluster whose API server
is gone still shows its objects, as last seen, and when it was last seen."""

from __future__ import annotations

from typing import Any

import pytest

from e2e import clusters as e2e
from tests.fleet import Fleet, until

pytestmark = pytest.mark.cluster


def _cluster(status: dict[str, Any], name: str) -> dict[str, Any]:
    step = next(s for s in status["steps"] if s["name"] == "deploy-prod")
    view: dict[str, Any] = next(c for c in step["clusters"] if c["name"] == name)
    return view


def test_a_dead_cluster_shows_its_objects_as_last_seen(fleet: Fleet) -> None:
    assert fleet.up(fleet.app(), "--wait").code == 0
    victim = fleet.clusters["prod-us"].name
    e2e.stop_apiserver(victim)
    try:

        def last_seen() -> bool:
            view = _cluster(fleet.status(), "prod-us")
            objects = [o for r in view["releases"] for o in r["objects"]]
            return not view["reachable"] and all(
                o["health"] == "Healthy" and o["reason"].startswith("as last seen") for o in objects
            )

        until(last_seen, what="prod-us unreachable, its objects shown as last seen")
        view = _cluster(fleet.status(), "prod-us")
        assert view["lastSeen"] is not None
        assert view["health"] != "Healthy", "an unreachable cluster is not vouched for"
        assert _cluster(fleet.status(), "prod-eu")["reachable"]
    finally:
        e2e.start_apiserver(victim)
