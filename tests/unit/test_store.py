"""The SQLite store: private file, one transaction per change, conflicts named."""

from __future__ import annotations

import math
import sqlite3
import stat
from pathlib import Path

import pytest

from hub.errors import Conflict, NotFound
from hub.model.records import ClusterRecord
from hub.model.targets import ChartSpec, TargetSpec
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


def test_values_of_nan_and_infinity_are_read_back_as_written(tmp_path: Path) -> None:
    """Revisions and targets are decoded by orjson, which refuses what `json.dumps` writes
    for a YAML `.nan` or `.inf`; those must still read back, not fail every status."""
    apps = SqliteStore(tmp_path / "db").apps()
    values = {"ratio": math.nan, "limit": math.inf}
    deploy(
        apps,
        "shop",
        "a",
        objects=(),
        spec=TargetSpec("helm", ChartSpec("helm", "https://charts", "web", "1.0.0"), values),
        document={"spec": {"components": [{"properties": {"values": values}}]}},
    )
    read = apps.revision("shop", 1).spec["spec"]["components"][0]["properties"]["values"]
    [stored] = apps.targets("shop", 1)
    for found in (read, stored.spec.values):
        assert math.isnan(found["ratio"]) and found["limit"] == math.inf
