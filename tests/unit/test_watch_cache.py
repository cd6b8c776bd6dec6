"""The cache's failure paths, driven by a scripted API server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes_asyncio.client import ApiClient, Configuration

from clusters.health import HealthStatus
from clusters.watch import ClusterCache
from tests.unit.fakeapi import CONFIG_MAPS, FAST, WAIT, FakeApi, config_map, event, gone, serving
from tests.unit.hubparts import until


def watch_versions(fake: FakeApi) -> list[str]:
    return [query["resourceVersion"] for kind, query in fake.seen if kind == "watch"]


async def test_a_410_re_lists_and_replaces_the_stale_view() -> None:
    fake = FakeApi(
        lists=[[config_map("old", "1")], [config_map("new", "150")]],
        watches=[[gone()]],
    )
    async with (
        serving(fake) as api,
        ClusterCache(api, CONFIG_MAPS, namespaces=["ns"], backoff=FAST) as cache,
    ):
        # The cache announces no request it sends: poll for the watch.
        assert await until(lambda: len(watch_versions(fake)) == 2)
        assert cache.get("ConfigMap", "ns", "new") is not None
        assert cache.get("ConfigMap", "ns", "old") is None
        assert fake.count("list") == 2
        assert watch_versions(fake) == ["100", "200"]


async def test_a_watch_that_ends_resumes_from_the_last_version_without_a_list() -> None:
    fake = FakeApi(
        lists=[[config_map("a", "1")]],
        watches=[
            [
                event("MODIFIED", config_map("a", "150")),
                event("BOOKMARK", {"kind": "ConfigMap", "metadata": {"resourceVersion": "160"}}),
            ],
            [event("ADDED", config_map("b", "170")), event("DELETED", config_map("a", "180"))],
        ],
    )
    async with (
        serving(fake) as api,
        ClusterCache(api, CONFIG_MAPS, label_selector="app=web", backoff=FAST) as cache,
    ):
        assert await until(lambda: len(watch_versions(fake)) == 3)
        assert cache.get("ConfigMap", "ns", "a") is None
        assert [o["metadata"]["name"] for o in cache.list("ConfigMap")] == ["b"]
    assert fake.count("list") == 1
    assert watch_versions(fake) == ["100", "160", "180"]
    [(_, first)] = [entry for entry in fake.seen if entry[0] == "watch"][:1]
    assert first["allowWatchBookmarks"] == "true"
    assert first["labelSelector"] == "app=web"


async def test_a_restarted_cache_forgets_what_was_deleted_while_it_was_stopped() -> None:
    fake = FakeApi(lists=[[config_map("a", "1"), config_map("b", "2")], [config_map("b", "3")]])
    async with serving(fake) as api:
        cache = ClusterCache(api, CONFIG_MAPS, namespaces=["ns"], backoff=FAST)
        async with cache:
            assert await cache.wait_for(lambda: len(cache.list("ConfigMap")) == 2, WAIT)
        assert not cache.synced
        assert len(cache.list("ConfigMap")) == 2, "a stopped cache keeps what it saw"
        async with cache:
            assert await cache.wait_for(lambda: fake.count("list") == 2 and cache.synced, WAIT)
            assert [o["metadata"]["name"] for o in cache.list("ConfigMap")] == ["b"]


async def test_objects_are_stored_with_kind_and_without_managed_fields() -> None:
    fake = FakeApi(lists=[[config_map("a", "1")]])
    async with (
        serving(fake) as api,
        ClusterCache(api, CONFIG_MAPS, backoff=FAST) as cache,
    ):
        assert await cache.wait_for(lambda: cache.synced, WAIT)
        assert cache.listed("ConfigMap")
        obj: dict[str, Any] = cache.get("ConfigMap", "ns", "a") or {}
        assert (obj["apiVersion"], obj["kind"]) == ("v1", "ConfigMap")
        assert "managedFields" not in obj["metadata"]
        assert cache.list("ConfigMap", "elsewhere") == []
        assert cache.list("ConfigMap", selector={"app": "web"}) == []


async def test_an_unreachable_cluster_is_reported_and_retried() -> None:
    async with (
        ApiClient(Configuration(host="http://127.0.0.1:9")) as api,
        ClusterCache(api, CONFIG_MAPS, backoff=FAST) as cache,
    ):
        assert await cache.wait_for(lambda: cache.last_error is not None, WAIT)
        assert "cannot connect" in (cache.last_error or "")
        assert not cache.synced
        assert cache.last_seen is None
        assert not cache.listed("ConfigMap"), "None from get means 'not looked yet' here"
        assert cache.get("ConfigMap", "ns", "a") is None


async def test_a_task_that_dies_is_logged_and_shown(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def bug(*args: object) -> None:
        raise RuntimeError("a bug in event handling")

    monkeypatch.setattr(ClusterCache, "_apply_event", bug)
    fake = FakeApi(watches=[[event("ADDED", config_map("a", "150"))]])
    async with (
        serving(fake) as api,
        ClusterCache(api, CONFIG_MAPS, backoff=FAST) as cache,
    ):
        assert await cache.wait_for(lambda: "stopped" in (cache.last_error or ""), WAIT)
        assert not cache.synced
    assert "a bug in event handling" in (cache.last_error or "")
    died = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in died] == ["watch ConfigMap: task died"]


async def test_a_kind_may_be_listed_once() -> None:
    twice = [("networking.k8s.io/v1", "Ingress"), ("extensions/v1beta1", "Ingress")]
    async with ApiClient(Configuration(host="http://127.0.0.1:9")) as api:
        with pytest.raises(ValueError, match="listed twice"):
            ClusterCache(api, twice)


async def test_reading_a_kind_that_is_not_watched_is_a_clear_error() -> None:
    async with ApiClient(Configuration(host="http://127.0.0.1:9")) as api:
        cache = ClusterCache(api, CONFIG_MAPS)
        with pytest.raises(KeyError, match="Secret is not watched"):
            cache.get("Secret", "ns", "a")


def deleting(obj: dict[str, Any]) -> dict[str, Any]:
    obj["metadata"]["deletionTimestamp"] = "2026-12-04T00:00:00Z"
    return obj


async def test_an_objects_judged_health_follows_every_change_of_it() -> None:
    """`judged` keeps each object's health between reads, so every change must drop it: a stale
    health would show a deleted object as present, or a settled one as still going. The
    listener reads `a` as each event lands, so each read follows one kept before it."""
    fake = FakeApi(
        lists=[[deleting(config_map("a", "1"))], [config_map("a", "6"), config_map("b", "2")]],
        watches=[
            [
                event("ADDED", config_map("b", "2")),
                event("MODIFIED", config_map("a", "3")),
                event("DELETED", config_map("a", "4")),
                event("ADDED", deleting(config_map("a", "5"))),
            ],
            [gone()],
        ],
    )
    read: list[HealthStatus] = []
    async with serving(fake) as api:
        cache = ClusterCache(
            api,
            CONFIG_MAPS,
            namespaces=["ns"],
            backoff=FAST,
            on_change=lambda _: read.append(cache.judged("ConfigMap", "ns", "a")[1].status),
        )
        async with cache:
            assert await cache.wait_for(lambda: fake.count("list") == 2 and cache.synced, WAIT)
            final = cache.judged("ConfigMap", "ns", "a")[1].status
    assert read == [
        HealthStatus.MISSING,  # the first list, told before it is stored
        HealthStatus.PROGRESSING,  # b added: a as listed, pending deletion
        HealthStatus.HEALTHY,  # a modified: no longer being deleted
        HealthStatus.MISSING,  # a deleted
        HealthStatus.PROGRESSING,  # a created again, being deleted
        HealthStatus.PROGRESSING,  # the second list, told before it is stored
    ]
    assert final == HealthStatus.HEALTHY  # what the second list stored


@contextlib.asynccontextmanager
async def listed_in_ns() -> AsyncIterator[tuple[FakeApi, ClusterCache, dict[str, Any]]]:
    """A synced cache that listed ConfigMap `a` in `ns`, and a ConfigMap of namespace
    `theirs` for the test to push."""
    theirs = config_map("b", "2")
    theirs["metadata"]["namespace"] = "theirs"
    fake = FakeApi(lists=[[config_map("a", "1")]])
    async with (
        serving(fake) as api,
        ClusterCache(api, CONFIG_MAPS, label_selector="app=web", backoff=FAST) as cache,
    ):
        assert await cache.wait_for(lambda: cache.synced, WAIT)
        yield fake, cache, theirs


async def test_moved_tells_the_namespaces_whose_objects_changed_apart() -> None:
    """A status tree is kept while `moved` of its namespaces holds (hub.service.memo): an
    object changed in another namespace must leave it, one changed in its own, or the
    cache's state changing, must move it."""
    async with listed_in_ns() as (fake, cache, theirs):
        listed = cache.moved(["ns", "theirs"])
        assert listed[1] > 0 and listed[2] == 0, "the list brought ns's object only"
        version = cache.version
        fake.pushed.put_nowait(event("ADDED", theirs))
        assert await cache.wait_for(lambda: cache.version != version, WAIT)
        assert cache.moved(["ns"]) == listed[:2]
        assert cache.moved(["theirs"])[1] > listed[1]
        fake.pushed.put_nowait(event("MODIFIED", config_map("a", "3")))
        assert await cache.wait_for(lambda: cache.moved(["ns"]) != listed[:2], WAIT)
        assert cache.moved([])[0] == listed[0], "an object's change moved the state"
    assert cache.moved([])[0] > listed[0], "stopping the cache did not move its state"


async def test_a_wait_on_namespaces_wakes_for_their_objects_and_the_state_only() -> None:
    """A release's health wait names its namespaces: on a cluster where other releases
    roll out it must not judge its objects again at each of their events, yet must see
    its own objects change and the cache lose its connection."""
    async with listed_in_ns() as (fake, cache, theirs):
        checks: list[str] = []

        def updated() -> bool:
            obj = cache.get("ConfigMap", "ns", "a")
            checks.append(obj["metadata"]["resourceVersion"] if obj else "")
            return checks[-1] == "3"

        waiter = asyncio.create_task(cache.wait_for(updated, WAIT, ["ns"]))
        assert await until(lambda: checks == ["1"])
        version = cache.version
        fake.pushed.put_nowait(event("ADDED", theirs))
        assert await cache.wait_for(lambda: cache.version != version, WAIT)
        fake.pushed.put_nowait(event("MODIFIED", config_map("a", "3")))
        assert await waiter
        assert checks == ["1", "3"], "the change in another namespace woke the wait"

        # Bounded by `until`, not by its own timeout, which would answer True as well.
        lost = asyncio.create_task(cache.wait_for(lambda: not cache.synced, 3600, ["elsewhere"]))
        await cache.stop()
        assert await until(lost.done), "losing the connection did not wake the wait"
        assert lost.result()
