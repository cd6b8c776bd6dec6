"""The status path reads the clusters' watch caches: no request per call, and a cluster
that went away answers at once with what was last seen. Driven by a scripted API server,
so requests are counted exactly."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestServer

from clusters.watch import ClusterCache
from hub.fleet.observer import NOT_WATCHED
from hub.fleet.registry import PROBE_TASK, Registry
from hub.format import Application
from hub.model.phases import TargetPhase
from hub.redaction import Scrubber
from hub.service.status import status_tree
from hub.state.apps import SqliteAppStore
from hub.state.store import SqliteStore
from hub.tasks import Supervisor
from hub.workflow.analysis import Analyses
from hub.workflow.signals import Signals
from tests.unit.fakeapi import CONFIG_MAPS, WAIT, FakeApi, address, config_map, started
from tests.unit.hubparts import deploy, observing, store_on, until

CLUSTER, APP = "edge", "shop"
NAMES = ["settings", "gone"]  # the second was deleted behind our back
THREE = ("a", "b", "held")  # clusters on the one fake: the last one a deploy holds


@dataclass
class Hub:
    fake: FakeApi
    server: TestServer
    store: SqliteStore
    registry: Registry

    async def cache(self) -> ClusterCache:
        """The cluster's cache once it has listed what it watches."""
        observer = self.registry.observer
        assert await until(lambda: observer.cache(CLUSTER) is not None)
        cache = observer.cache(CLUSTER)
        assert cache is not None
        assert await cache.wait_for(lambda: cache.listed("ConfigMap") and cache.synced, WAIT)
        return cache

    async def status(self) -> Any:
        apps = SqliteAppStore(self.store)
        analyses = Analyses(apps, self.registry, signals=Signals(), application=_no_spec)
        tree = await status_tree(apps, self.registry, analyses, lambda *release: {}, APP)
        return tree.view

    def requests(self) -> list[str]:
        return [kind for kind, _ in self.fake.seen if kind in ("list", "get")]


def _no_spec(app: str, revision: int) -> Application:
    raise AssertionError("status of an application without analysis reads no spec")


@asynccontextmanager
async def hub_with_app(tmp_path: Path) -> AsyncIterator[Hub]:
    """A registry and store with one cluster (the fake) and one application deployed to
    it, whose inventory holds two ConfigMaps; the fake has only the first."""
    fake = FakeApi(lists=[[config_map("settings", "1")]])
    async with started(fake) as server:
        store = store_on(tmp_path / "store.db", address(server), CLUSTER)
        store.record_probe(CLUSTER, health="Healthy", reason="", version=None, seen=True)
        deploy(SqliteAppStore(store), APP, CLUSTER, objects=NAMES, phase=TargetPhase.HEALTHY)
        supervisor = Supervisor(first_restart=0.01)
        async with observing(store, tmp_path, supervisor, kinds=CONFIG_MAPS) as registry:
            yield Hub(fake, server, store, registry)


def objects(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    [step] = status["steps"]
    [cluster] = step["clusters"]
    [release] = cluster["releases"]
    return {o["name"]: (o["health"], o["reason"]) for o in release["objects"]}


async def test_status_answers_from_the_cache_without_a_request(tmp_path: Path) -> None:
    async with hub_with_app(tmp_path) as hub:
        await hub.cache()
        before = hub.requests()
        for _ in range(5):
            status = await hub.status()
        assert hub.requests() == before == ["list"], "status asked the cluster"
        assert objects(status) == {
            "settings": ("Healthy", ""),
            "gone": ("Missing", objects(status)["gone"][1]),
        }


async def test_an_unreachable_cluster_answers_with_what_was_last_seen(tmp_path: Path) -> None:
    async with hub_with_app(tmp_path) as hub:
        cache = await hub.cache()
        seen = cache.last_seen
        hub.fake.stopping.set()
        await hub.server.close()
        assert await cache.wait_for(lambda: not cache.synced, WAIT)
        await hub.registry.probe_one(CLUSTER)

        status = await hub.status()

        [cluster] = status["steps"][0]["clusters"]
        assert cluster["reachable"] is False
        assert cluster["lastSeen"] is not None and seen is not None
        health, reason = objects(status)["settings"]
        assert health == "Healthy" and reason.startswith("as last seen ")
        assert objects(status)["gone"][0] == "Missing"
        assert "get" not in hub.requests()


async def test_a_cluster_without_a_listed_cache_is_read_directly(tmp_path: Path) -> None:
    async with hub_with_app(tmp_path) as hub:
        await hub.registry.observer.forget(CLUSTER)
        status = await hub.status()
        assert objects(status)["settings"] == ("Healthy", "")
        assert sorted(hub.requests()).count("get") == len(NAMES)


async def test_rename_and_detach_take_the_cache_along(tmp_path: Path) -> None:
    renamed = "edge-2"
    async with hub_with_app(tmp_path) as hub:
        cache = await hub.cache()
        lists = hub.fake.count("list")
        supervisor = hub.registry.supervisor
        await hub.registry.rename(CLUSTER, renamed)
        assert hub.registry.observer.cache(renamed) is cache
        assert hub.registry.observer.cache(CLUSTER) is None
        # The same watches go on under a task of the new name: nothing re-lists.
        assert supervisor.running(f"observe:{renamed}")
        assert not supervisor.running(f"observe:{CLUSTER}")
        assert cache.synced and hub.fake.count("list") == lists
        assert hub.registry.watch_health(renamed).state == "synced"
        assert objects(await hub.status())["settings"] == ("Healthy", "")
        await hub.registry.detach(renamed)
        assert hub.registry.observer.cache(renamed) is None
        assert not supervisor.running(f"observe:{renamed}")
        assert not cache.synced


async def test_keep_only_watches_its_names_and_what_a_deploy_holds(tmp_path: Path) -> None:
    """The replica's scope narrowing and widening: a cluster left out is dropped (not
    watched, nothing of it kept), one held by a deploy is not, one kept is not restarted."""
    async with started(FakeApi()) as server:
        store = store_on(tmp_path / "store.db", address(server), "a", "b", "held")
        supervisor = Supervisor(first_restart=0.01)
        async with observing(store, tmp_path, supervisor, kinds=CONFIG_MAPS) as registry:
            observer = registry.observer
            assert await until(lambda: _states(registry) == dict.fromkeys(THREE, "synced"))
            kept, dropped = observer.cache("a"), observer.cache("b")
            assert kept is not None and dropped is not None

            with observer.using("held"):
                await observer.keep_only({"a"})
                assert _states(registry) == {"a": "synced", "b": NOT_WATCHED, "held": "synced"}
            assert observer.cache("a") is kept and kept.synced
            assert observer.cache("b") is None and not dropped.synced
            # Nothing heard from it any more, so the prober does not leave it quiet.
            assert observer.last_seen("b") is None

            await observer.keep_only({"b"})
            assert await until(lambda: _states(registry)["b"] == "synced")
            assert _states(registry) == {"a": NOT_WATCHED, "b": "synced", "held": NOT_WATCHED}
            assert observer.watching() == {"b"}


async def test_a_registry_not_watching_all_starts_only_its_prober(tmp_path: Path) -> None:
    async with started(FakeApi()) as server:
        store = store_on(tmp_path / "store.db", address(server), "a", "b")
        supervisor = Supervisor(first_restart=0.01)
        registry = Registry(
            store, Scrubber(), temp_dir=tmp_path, supervisor=supervisor, watch_all=False
        )
        try:
            registry.start()
            assert supervisor.running(PROBE_TASK)
            await registry.rename("a", "c")
            assert registry.observer.watching() == set()
            assert _states(registry) == {"b": NOT_WATCHED, "c": NOT_WATCHED}
        finally:
            await supervisor.close()
            await registry.close()
            store.close()


def _states(registry: Registry) -> dict[str, str]:
    return {c.name: registry.watch_health(c.name).state for c in registry.clusters()}
