"""The SQLite store: private file, one transaction per change, conflicts named."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from hub.errors import Conflict, NotFound
from hub.model.phases import Stage
from hub.model.records import ClusterRecord, RolloutRecord
from hub.state.apps import SqliteAppStore
from hub.state.schema import SCHEMA, SCHEMA_VERSION
from hub.state.store import SqliteStore, StoreTooNew
from tests.unit.hubparts import deploy


def _record(name: str) -> ClusterRecord:
    return ClusterRecord(name=name, server="https://x", kubeconfig={"k": 1}, credential="token")


def test_store_file_is_private_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "home" / "flotilla.db"
    store = SqliteStore(path)
    store.add_cluster(_record("a"))
    store.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    reopened = SqliteStore(path)
    assert [c.name for c in reopened.clusters()] == ["a"]
    assert reopened.cluster("a").kubeconfig == {"k": 1}


def test_duplicate_rename_and_missing(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db")
    store.add_cluster(_record("a"))
    store.add_cluster(_record("b"))
    with pytest.raises(Conflict, match="'a' is already registered"):
        store.add_cluster(_record("a"))
    with pytest.raises(Conflict, match="'b' is already registered"):
        store.rename_cluster("a", "b")
    store.rename_cluster("a", "c")
    assert [c.name for c in store.clusters()] == ["b", "c"]
    with pytest.raises(NotFound):
        store.delete_cluster("a")


def test_failed_transaction_changes_nothing(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db")
    store.add_cluster(_record("a"))
    with pytest.raises(RuntimeError), store.transaction() as db:
        db.execute("DELETE FROM clusters")
        raise RuntimeError("boom")
    assert [c.name for c in store.clusters()] == ["a"]


def test_probe_moves_last_seen_only_when_seen(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db")
    store.add_cluster(_record("a"))
    store.record_probe("a", health="Healthy", reason="", version=None, seen=True)
    seen = store.cluster("a").last_seen
    store.record_probe("a", health="Unreachable", reason="down", version=None, seen=False)
    record = store.cluster("a")
    assert (record.health, record.reason, record.last_seen) == ("Unreachable", "down", seen)


def _version_1_store(path: Path, clusters: list[str]) -> None:
    """A store as Flotilla wrote it before clusters had a uid (schema version 1)."""
    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    db.execute("PRAGMA user_version=1")
    for name in clusters:
        db.execute(
            "INSERT INTO clusters (name, server, kubeconfig, credential, joined_at)"
            " VALUES (?, 'https://x', '{}', 'token', 0)",
            (name,),
        )
    db.commit()
    db.close()


def _tables(path: Path) -> list[tuple[str, str]]:
    db = sqlite3.connect(path)
    rows = db.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()
    db.close()
    return rows


def test_a_version_1_store_gets_cluster_uids_and_keeps_working(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _version_1_store(path, ["a", "b"])
    store = SqliteStore(path)
    assert store.version == SCHEMA_VERSION >= 2
    uids = {c.name: c.uid for c in store.clusters()}
    assert len(set(uids.values())) == 2 and all(len(uid) == 36 for uid in uids.values())
    store.add_cluster(_record("c"))
    store.rename_cluster("a", "a2")
    assert store.cluster("a2").uid == uids["a"]
    store.close()
    reopened = SqliteStore(path)  # migrated once: the uids stay
    after = {c.name: c.uid for c in reopened.clusters()}
    assert (after["a2"], after["b"]) == (uids["a"], uids["b"]) and sorted(after) == ["a2", "b", "c"]
    reopened.close()
    fresh = tmp_path / "fresh.db"
    SqliteStore(fresh).close()
    assert _tables(path) == _tables(fresh), "a migrated store differs from a new one"


def test_uids_are_unique(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db")
    first = _record("a")
    store.add_cluster(first)
    twin = _record("b")
    twin.uid = first.uid
    with pytest.raises(Conflict):
        store.add_cluster(twin)


def test_a_store_from_a_newer_flotilla_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "db"
    SqliteStore(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreTooNew, match="newer than this Flotilla's"):
        SqliteStore(path)


def _app_on(apps: SqliteAppStore, app: str, cluster: str, *, canary: bool = True) -> None:
    """An application whose current revision targets `cluster`, with objects there (and a
    canary under way, unless `canary` is False)."""
    revision = deploy(apps, app, cluster)
    if canary:
        apps.put_rollout(
            RolloutRecord(
                app=app,
                cluster=cluster,
                component="web",
                revision=revision,
                kind="Deployment",
                name="web",
                stage=Stage.PAUSED,
                step=0,
            )
        )


def test_rename_repoints_targets_inventory_and_canaries(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db")
    apps = SqliteAppStore(store)
    store.add_cluster(_record("a"))
    _app_on(apps, "shop", "a")
    # Rows a detach by an older Flotilla left under the new name must not collide.
    store.connection.execute(
        "INSERT INTO inventory (app, cluster, component, revision, objects)"
        " VALUES ('shop', 'b', 'web', 1, '[]')"
    )
    uid = store.cluster("a").uid
    store.rename_cluster("a", "b")
    assert store.cluster("b").uid == uid
    [target] = apps.targets("shop", 1)
    assert target.cluster == "b"
    assert apps.inventory("shop") == {("b", "web"): (1, apps.inventory("shop")[("b", "web")][1])}
    assert len(apps.inventory("shop")[("b", "web")][1]) == 2
    assert apps.rollout("shop", "b", "web") is not None
    assert apps.rollout("shop", "a", "web") is None
    assert [h.app for h in apps.holdings("b")] == ["shop"] and apps.holdings("a") == []


def test_a_failed_rename_changes_nothing(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db")
    apps = SqliteAppStore(store)
    store.add_cluster(_record("a"))
    store.add_cluster(_record("b"))
    _app_on(apps, "shop", "a")
    with pytest.raises(Conflict, match="'b' is already registered; pick another name"):
        store.rename_cluster("a", "b")
    assert [t.cluster for t in apps.targets("shop", 1)] == ["a"]
    assert set(apps.inventory("shop")) == {("a", "web")}
    with pytest.raises(NotFound, match="cluster 'nope' is not registered"):
        store.rename_cluster("nope", "c")


def test_holdings_name_what_applications_have_on_a_cluster(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db")
    apps = SqliteAppStore(store)
    for name in "ab":
        store.add_cluster(_record(name))
    _app_on(apps, "shop", "a")
    _app_on(apps, "blog", "b", canary=False)
    apps.drop_inventory("blog", "b", "web")  # targeted, nothing applied yet
    _app_on(apps, "old", "a", canary=False)
    _app_on(apps, "old", "b", canary=False)  # revision 2 moved it to b; its objects on a stay
    holdings = {h.app: h for h in apps.holdings("a")}
    assert sorted(holdings) == ["old", "shop"]
    assert (holdings["shop"].components, holdings["shop"].objects) == (["web"], 2)
    assert holdings["shop"].targeted and not holdings["old"].targeted
    [blog, old] = apps.holdings("b")
    assert (blog.app, blog.components, blog.objects, blog.targeted) == ("blog", [], 0, True)
    assert (old.app, old.targeted) == ("old", True)


def test_deleting_a_cluster_drops_every_row_naming_it(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db")
    apps = SqliteAppStore(store)
    store.add_cluster(_record("a"))
    _app_on(apps, "shop", "a")
    store.delete_cluster("a")
    assert apps.targets("shop", 1) == [] and apps.inventory("shop") == {}
    assert apps.rollouts("shop") == [] and apps.holdings("a") == []
    store.add_cluster(_record("a"))  # a new cluster of the old name inherits nothing
    assert apps.holdings("a") == []
