"""The hub's waits: on the watch cache where it can answer (no request to the API server),
by polling GETs where it cannot (no cache, or a cache its credentials cannot fill)."""

from __future__ import annotations

from typing import Any

import pytest

from clusters.apply import AppliedRef
from clusters.health import HealthStatus
from clusters.watch import ClusterCache
from hub.workflow.waiting import Waits
from tests.unit.fakeapi import CONFIG_MAPS, FAST, WAIT, FakeApi, serving

SETTINGS = AppliedRef("v1", "ConfigMap", "ns", "settings", uid="uid-1", resource_version="7")


def settings(version: str, uid: str = "uid-1") -> dict[str, Any]:
    metadata = {"name": "settings", "namespace": "ns", "uid": uid, "resourceVersion": version}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata}


async def test_a_synced_cache_answers_without_a_request() -> None:
    fake = FakeApi(lists=[[settings("7")]])
    async with (
        serving(fake) as client,
        ClusterCache(client, CONFIG_MAPS, backoff=FAST) as cache,
    ):
        waits = Waits(lambda name: cache, timeout=WAIT)
        verdict = await waits.healthy("eu", client, [SETTINGS])
        assert verdict.status is HealthStatus.HEALTHY
        assert await waits.gone("eu", client, []) is True
    assert fake.count("get") == 0


async def test_without_a_cache_it_polls() -> None:
    fake = FakeApi(lists=[[settings("7")]])
    async with serving(fake) as client:
        waits = Waits(lambda name: None, timeout=WAIT)
        verdict = await waits.healthy("eu", client, [SETTINGS])
    assert verdict.status is HealthStatus.HEALTHY
    assert fake.count("get") == 1


async def test_a_cache_its_credentials_cannot_fill_falls_back_to_polling() -> None:
    fake = FakeApi(lists=[[settings("7")]], failures=[403] * 50)
    async with (
        serving(fake) as client,
        ClusterCache(client, CONFIG_MAPS, backoff=FAST) as cache,
    ):
        waits = Waits(lambda name: cache, timeout=WAIT)
        assert await cache.wait_for(lambda: cache.last_error is not None, WAIT)
        fake.failures.clear()
        verdict = await waits.healthy("eu", client, [SETTINGS])
    assert verdict.status is HealthStatus.HEALTHY
    assert fake.count("get") == 1


@pytest.mark.looptime
async def test_another_uid_in_the_cache_is_not_the_applied_object() -> None:
    fake = FakeApi(lists=[[settings("9", uid="uid-other")]])
    async with (
        serving(fake) as client,
        ClusterCache(client, CONFIG_MAPS, backoff=FAST) as cache,
    ):
        waits = Waits(lambda name: cache, timeout=30)
        verdict = await waits.healthy("eu", client, [SETTINGS])
    assert verdict.status is HealthStatus.PROGRESSING
    assert "waiting for the watch to see the applied version" in verdict.reason
