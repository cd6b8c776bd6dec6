"""The last run of each hook of a release, as the store keeps it (schema version 8)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from hub.model.phases import HookPhase
from hub.model.records import ClusterRecord, HookRunRecord
from hub.state.apps import SqliteAppStore
from hub.state.store import SqliteStore
from tests.unit.hubparts import deploy


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    """A store with cluster `a` registered."""
    store = SqliteStore(tmp_path / "db")
    store.add_cluster(ClusterRecord(name="a", server="https://a", kubeconfig={}, credential="x"))
    return store


@pytest.fixture
def apps(store: SqliteStore) -> SqliteAppStore:
    """The applications of `store`: `shop`, deploying `web` to cluster `a`."""
    apps = SqliteAppStore(store)
    deploy(apps, "shop", "a")
    return apps


def run(name: str, event: str, phase: HookPhase, at: float, revision: int = 1) -> HookRunRecord:
    return HookRunRecord(
        app="shop",
        cluster="a",
        component="web",
        revision=revision,
        event=event,
        kind="Job",
        namespace="ns",
        name=name,
        phase=phase,
        started_at=at,
    )


def test_runs_go_with_their_application_and_their_cluster(
    store: SqliteStore, apps: SqliteAppStore
) -> None:
    apps.put_hook_run(run("migrate", "pre-upgrade", HookPhase.SUCCEEDED, 1.0))
    store.rename_cluster("a", "b")
    assert [r.cluster for r in apps.hook_runs("shop", "b", "web")] == ["b"]
    store.delete_cluster("b")
    assert apps.hook_runs("shop", "b", "web") == []
    deploy(apps, "blog", "c")
    apps.put_hook_run(
        replace(run("m", "pre-delete", HookPhase.RUNNING, 1.0), app="blog", cluster="c")
    )
    apps.delete_app("blog")
    assert apps.hook_runs("blog", "c", "web") == []
