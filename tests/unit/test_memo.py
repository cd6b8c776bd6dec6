"""A status tree is answered again only while nothing it is made of moved: each thing that
can move it (an object in a watch cache, a row in the store, the cluster's record, the
drift keeper) is moved here in turn, and the next answer must show it. Driven by the
scripted API server of test_observer, on a real store."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import hub.state.store as store_module
from hub.model.phases import TargetPhase
from hub.service.memo import StatusMemo
from hub.state.apps import SqliteAppStore
from hub.workflow.analysis import Analyses
from hub.workflow.signals import Signals
from tests.unit.fakeapi import event
from tests.unit.hubparts import Drifts, until
from tests.unit.test_observer import APP, CLUSTER, Hub, _no_spec, hub_with_app, objects


@dataclass
class Memoized:
    hub: Hub
    apps: SqliteAppStore
    drifts: Drifts
    memo: StatusMemo
    reads: list[str]
    """Every read of the application's targets from the store: a tree built anew."""

    async def status(self) -> dict[str, Any]:
        return dict(await self.memo.status(APP, owned=True))

    async def built(self) -> bool:
        """Whether the next status is built anew (rather than answered from the memo)."""
        before = len(self.reads)
        await self.status()
        return len(self.reads) > before


@asynccontextmanager
async def memoized(tmp_path: Path) -> AsyncIterator[Memoized]:
    async with hub_with_app(tmp_path) as hub:
        await hub.cache()
        apps = SqliteAppStore(hub.store)
        reads: list[str] = []
        targets = apps.targets

        def counted(app: str, revision: int) -> Any:
            reads.append(app)
            return targets(app, revision)

        apps.targets = counted  # type: ignore[method-assign]
        drifts = Drifts()
        analyses = Analyses(apps, hub.registry, signals=Signals(), application=_no_spec)
        yield Memoized(hub, apps, drifts, StatusMemo(apps, hub.registry, analyses, drifts), reads)


def cluster_of(status: dict[str, Any]) -> dict[str, Any]:
    [step] = status["steps"]
    [cluster] = step["clusters"]
    return dict(cluster)


async def test_an_unchanged_tree_is_answered_again_with_when_its_cluster_answered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with memoized(tmp_path) as m:
        first = await m.status()
        assert await m.built() is False
        # A probe two minutes on (the store stamps it) moves when the cluster last answered.
        later = SimpleNamespace(
            time=lambda: time.time() + 120, perf_counter=time.perf_counter, monotonic=time.monotonic
        )
        monkeypatch.setattr(store_module, "time", later)
        await m.hub.registry.probe_one(CLUSTER)
        again = await m.status()
        assert m.reads == [APP], "an unchanged tree was built again"
        assert _without_steps(again) == _without_steps(first)
        seen = cluster_of(again)["lastSeen"]
        assert seen is not None and seen > (cluster_of(first)["lastSeen"] or "")
        assert cluster_of(again) == cluster_of(first) | {"lastSeen": seen}
        assert cluster_of(first)["lastSeen"] != seen, "the kept answer was changed"


async def test_each_thing_a_tree_is_made_of_moves_it(tmp_path: Path) -> None:
    async with memoized(tmp_path) as m:
        assert objects(await m.status())["settings"] == ("Healthy", "")

        # An object deleted on the cluster: its watch tells the cache.
        cache = await m.hub.cache()
        version = cache.version
        m.hub.fake.pushed.put_nowait(event("DELETED", _config_map("settings")))
        assert await cache.wait_for(lambda: cache.version != version, 10)
        assert objects(await m.status())["settings"][0] == "Missing"

        # A row of the application in the store.
        [target] = m.apps.targets(APP, 1)
        target.phase, target.message = TargetPhase.FAILED, "scripted failure"
        m.apps.put_target(target)
        assert cluster_of(await m.status())["releases"][0]["health"] == "Degraded"

        # The drift keeper's view of a release.
        m.drifts.edit(APP, CLUSTER, "gone")
        assert await m.built()
        shown = cluster_of(await m.status())["releases"][0]["objects"]
        assert [o["sync"] for o in shown if o["name"] == "gone"] == ["OutOfSync"]
        m.drifts.heal()
        assert await m.built()

        # The cluster's record: a probe that finds it not ready.
        m.hub.fake.failures.append(500)
        await m.hub.registry.probe_one(CLUSTER)
        assert cluster_of(await m.status())["clusterHealth"] == "NotReady"
        assert await m.built() is False


async def test_a_change_elsewhere_in_the_cluster_moves_no_tree(tmp_path: Path) -> None:
    """Another application's objects (another namespace) change on the cluster: its cache
    moves, and the tree, made of none of them, is answered again."""
    async with memoized(tmp_path) as m:
        first = await m.status()
        cache = await m.hub.cache()
        version = cache.version
        m.hub.fake.pushed.put_nowait(event("ADDED", _config_map("theirs", "elsewhere")))
        assert await cache.wait_for(lambda: cache.version != version, 10)
        assert await m.built() is False
        assert objects(await m.status()) == objects(first)


async def test_a_tree_with_objects_read_from_their_cluster_is_not_kept(tmp_path: Path) -> None:
    async with memoized(tmp_path) as m:
        await m.hub.registry.observer.forget(CLUSTER)
        assert objects(await m.status())["settings"] == ("Healthy", "")
        gets = m.hub.fake.count("get")
        await m.status()
        assert m.hub.fake.count("get") > gets, "a live read was answered from the memo"
        # Once the cache is back and listed, its trees are kept again.
        m.hub.registry.observer.watch(CLUSTER)
        assert await until(lambda: m.hub.registry.observer.cache(CLUSTER) is not None)
        await m.hub.cache()
        await m.status()
        assert await m.built() is False


def _without_steps(status: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in status.items() if k != "steps"}


def _config_map(name: str, namespace: str = "ns") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace, "resourceVersion": "7"}}
