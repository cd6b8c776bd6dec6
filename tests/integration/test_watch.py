"""The watch-fed cache against real API servers, including one that goes away."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.config import new_client_from_config

from clusters.apply import apply, delete
from clusters.health import HealthStatus, assess
from clusters.resources import Backoff
from clusters.watch import ClusterCache
from e2e.clusters import ClusterInfo, start_apiserver, stop_apiserver

pytestmark = pytest.mark.cluster

DEADLINE = 90.0
# Reconnect quickly: the test waits for recovery, it does not measure it.
FAST = Backoff(first=0.1, factor=2.0, cap=1.0)
LABELS = {"flotilla.test/watched": "yes"}


@pytest.fixture
async def api(e2e_clusters: list[ClusterInfo]) -> AsyncIterator[ApiClient]:
    client = await new_client_from_config(config_file=str(e2e_clusters[-1].kubeconfig))
    try:
        yield client
    finally:
        await client.close()


def config_map(name: str, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": LABELS},
        "data": data,
    }


def deployment(name: str) -> dict[str, Any]:
    labels = {**LABELS, "app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]},
            },
        },
    }


async def test_cache_sees_create_update_and_delete(api: ApiClient, namespace: str) -> None:
    kinds = [("v1", "ConfigMap"), ("apps/v1", "Deployment")]
    async with ClusterCache(api, kinds, namespaces=[namespace], backoff=FAST) as cache:
        assert await cache.wait_for(lambda: cache.synced, DEADLINE), cache.last_error
        assert cache.last_error is None
        assert cache.list("ConfigMap", namespace, LABELS) == []

        [ref] = await apply(api, [config_map("settings", mode="a")], default_namespace=namespace)

        def data() -> dict[str, str] | None:
            obj = cache.get("ConfigMap", namespace, "settings")
            return obj["data"] if obj else None

        assert await cache.wait_for(lambda: data() == {"mode": "a"}, DEADLINE)
        listed = cache.list("ConfigMap", namespace, LABELS)
        assert [(o["kind"], o["metadata"]["name"]) for o in listed] == [("ConfigMap", "settings")]
        assert "managedFields" not in listed[0]["metadata"]

        await apply(api, [config_map("settings", mode="b")], default_namespace=namespace)
        assert await cache.wait_for(lambda: data() == {"mode": "b"}, DEADLINE)

        await delete(api, [ref])
        assert await cache.wait_for(lambda: data() is None, DEADLINE)


async def test_an_object_larger_than_aiohttps_line_buffer_comes_by_watch(
    api: ApiClient, namespace: str
) -> None:
    """A watch event is one line, read with `readline`: aiohttp refuses a line longer
    than twice its session's read buffer (by default 128 KiB in all), and a ConfigMap of
    dashboards can be a megabyte. kubernetes_asyncio's session reads 2 MiB at a time."""
    async with ClusterCache(api, [("v1", "ConfigMap")], namespaces=[namespace]) as cache:
        assert await cache.wait_for(lambda: cache.synced, DEADLINE), cache.last_error
        dashboards = "x" * (700 * 1024)
        await apply(api, [config_map("dashboards", json=dashboards)], default_namespace=namespace)
        await apply(api, [config_map("after")], default_namespace=namespace)
        assert await cache.wait_for(
            lambda: cache.get("ConfigMap", namespace, "after") is not None, DEADLINE
        ), cache.last_error
        big = cache.get("ConfigMap", namespace, "dashboards")
        assert big is not None and big["data"]["json"] == dashboards
        assert cache.synced and cache.last_error is None


async def test_the_engine_can_wait_for_health_without_polling(
    api: ApiClient, namespace: str
) -> None:
    async with ClusterCache(
        api, [("apps/v1", "Deployment")], label_selector="flotilla.test/watched=yes"
    ) as cache:
        await apply(api, [deployment("web")], default_namespace=namespace)

        def health() -> HealthStatus:
            return assess(cache.get("Deployment", namespace, "web")).status

        assert await cache.wait_for(lambda: health() is HealthStatus.HEALTHY, DEADLINE), assess(
            cache.get("Deployment", namespace, "web")
        )


async def test_a_kind_without_its_crd_is_reported_not_fatal(api: ApiClient, namespace: str) -> None:
    kinds = [("v1", "ConfigMap"), ("absent.flotilla.test/v1", "Ghost")]
    async with ClusterCache(api, kinds, namespaces=[namespace], backoff=FAST) as cache:
        assert await cache.wait_for(lambda: cache.last_error is not None, DEADLINE)
        assert "Ghost" in (cache.last_error or "")
        assert not cache.synced
        await apply(api, [config_map("still-works")], default_namespace=namespace)
        assert await cache.wait_for(
            lambda: cache.get("ConfigMap", namespace, "still-works") is not None, DEADLINE
        )


async def test_a_timed_out_wait_answers_false(api: ApiClient, namespace: str) -> None:
    async with ClusterCache(api, [("v1", "ConfigMap")], namespaces=[namespace]) as cache:
        assert not await cache.wait_for(
            lambda: cache.get("ConfigMap", namespace, "x") is not None, 0.2
        )


async def test_cache_survives_its_api_server_going_away(
    api: ApiClient,
    namespace: str,
    e2e_clusters: list[ClusterInfo],
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert len(e2e_clusters) >= 2, "needs a second cluster to move the shared etcd revision"
    caplog.set_level(logging.INFO, logger="clusters.watch")
    cluster = e2e_clusters[-1]
    await apply(api, [config_map("before")], default_namespace=namespace)
    async with (
        await new_client_from_config(config_file=str(e2e_clusters[0].kubeconfig)) as elsewhere,
        ClusterCache(api, [("v1", "ConfigMap")], namespaces=[namespace], backoff=FAST) as cache,
    ):

        def has(name: str) -> bool:
            return cache.get("ConfigMap", namespace, name) is not None

        assert await cache.wait_for(lambda: cache.synced and has("before"), DEADLINE)
        seen = cache.last_seen

        await asyncio.to_thread(stop_apiserver, cluster.name)
        try:
            assert await cache.wait_for(lambda: not cache.synced, DEADLINE)
            assert cache.last_error
            assert has("before"), "the cache keeps what it knew while the cluster is away"
            # The local clusters share one etcd, so a write to another one moves the
            # revision past ours: the restarted server's watch cache starts there and
            # answers our resumed watch with 410 Gone, which must lead to a re-list.
            await apply(elsewhere, [config_map("tick")], default_namespace=namespace)
        finally:
            await asyncio.to_thread(start_apiserver, cluster.name)

        assert await cache.wait_for(lambda: cache.synced, DEADLINE), cache.last_error
        await apply(api, [config_map("after")], default_namespace=namespace)
        assert await cache.wait_for(lambda: has("after"), DEADLINE)
        assert has("before")
        assert cache.last_error is None
        assert seen is not None and (cache.last_seen or 0) > seen
    assert any("re-listing" in r.getMessage() for r in caplog.records)
