"""The SQLite store: private file, one transaction per change, conflicts named."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from hub.errors import Conflict, NotFound
from hub.model.records import ClusterRecord
from hub.state.store import Store


def _record(name: str) -> ClusterRecord:
    return ClusterRecord(name=name, server="https://x", kubeconfig={"k": 1}, credential="token")


def test_store_file_is_private_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "home" / "flotilla.db"
    store = Store(path)
    store.add_cluster(_record("a"))
    store.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    reopened = Store(path)
    assert [c.name for c in reopened.clusters()] == ["a"]
    assert reopened.cluster("a").kubeconfig == {"k": 1}


def test_duplicate_rename_and_missing(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
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
    store = Store(tmp_path / "db")
    store.add_cluster(_record("a"))
    with pytest.raises(RuntimeError), store.transaction() as db:
        db.execute("DELETE FROM clusters")
        raise RuntimeError("boom")
    assert [c.name for c in store.clusters()] == ["a"]


def test_probe_moves_last_seen_only_when_seen(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    store.add_cluster(_record("a"))
    store.record_probe("a", health="Healthy", reason="", version=None, seen=True)
    seen = store.cluster("a").last_seen
    store.record_probe("a", health="Unreachable", reason="down", version=None, seen=False)
    record = store.cluster("a")
    assert (record.health, record.reason, record.last_seen) == ("Unreachable", "down", seen)
