"""Discovery and retried calls, against a scripted API server."""

from __future__ import annotations

import pytest

from clusters.client import ClusterClient
from clusters.errors import ApiError, Invalid, NotFound
from clusters.resources import Backoff, ObjectRef, ResourceClient, ResourceType
from tests.unit.fakeapi import FakeApi, serving

FAST = Backoff(first=0.001, factor=2.0, cap=0.01)
SETTINGS = ObjectRef("v1", "ConfigMap", "ns", "settings")
BODY = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}}


async def apply_settings(rc: ResourceClient) -> object:
    return await rc.call(
        "PATCH", await rc.path(SETTINGS), what=f"apply {SETTINGS}", body=BODY, query={"force": True}
    )


@pytest.mark.parametrize(
    ("api_version", "kind", "path"),
    [
        ("v1", "ConfigMap", "/api/v1/namespaces/ns/configmaps/x"),
        ("v1", "Namespace", "/api/v1/namespaces/x"),
        ("apps/v1", "Deployment", "/apis/apps/v1/namespaces/ns/deployments/x"),
    ],
)
def test_paths(api_version: str, kind: str, path: str) -> None:
    plural = {"ConfigMap": "configmaps", "Namespace": "namespaces"}.get(kind, "deployments")
    resource = ResourceType(api_version, kind, plural, namespaced=kind != "Namespace")
    assert resource.path("ns", "x") == path


def test_collection_paths() -> None:
    deployments = ResourceType("apps/v1", "Deployment", "deployments", namespaced=True)
    assert deployments.path() == "/apis/apps/v1/deployments"
    assert deployments.path("ns") == "/apis/apps/v1/namespaces/ns/deployments"


async def test_discovery_is_cached_and_skips_subresources() -> None:
    fake = FakeApi()
    async with serving(fake) as api:
        rc = ResourceClient(api)
        assert await rc.resolve("v1", "ConfigMap") == ResourceType(
            "v1", "ConfigMap", "configmaps", namespaced=True
        )
        assert (await ResourceClient(api).resolve("v1", "Namespace")).namespaced is False
        with pytest.raises(NotFound, match=r"Pod \(v1\): the cluster does not serve this kind"):
            await rc.resolve("v1", "Pod")
    # One fetch for the group-version, one refresh for the miss; the second client reused it.
    assert fake.count("discovery") == 2


async def test_transient_failures_are_retried() -> None:
    fake = FakeApi()
    async with serving(fake) as api:
        rc = ResourceClient(api, backoff=FAST)
        await rc.resolve("v1", "ConfigMap")
        fake.failures = [503, 429]
        await apply_settings(rc)
    assert fake.seen[-3:] == [("patch", {"force": "true"})] * 3


async def test_a_rejected_request_is_not_retried_and_names_the_object() -> None:
    fake = FakeApi()
    async with serving(fake) as api:
        rc = ResourceClient(api, backoff=FAST)
        await rc.resolve("v1", "ConfigMap")
        fake.failures = [422]
        with pytest.raises(Invalid) as caught:
            await apply_settings(rc)
    assert fake.count("patch") == 1
    assert str(caught.value) == "apply ConfigMap ns/settings: scripted 422"
    assert caught.value.status == 422


async def test_retries_give_up_with_the_last_error() -> None:
    fake = FakeApi()
    async with serving(fake) as api:
        rc = ResourceClient(api, backoff=FAST, attempts=3)
        await rc.resolve("v1", "ConfigMap")
        fake.failures = [503, 503, 503, 503]
        with pytest.raises(ApiError, match=r"^apply ConfigMap ns/settings: scripted 503$"):
            await apply_settings(rc)
    assert fake.count("patch") == 3


async def test_server_advice_is_preferred_to_our_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    fake = FakeApi()
    async with serving(fake) as api:
        client = ClusterClient(api, server="fake")
        answers: list[object] = [
            ApiError("throttled", status=429, retry_after=7.0),
            ApiError("busy", status=503),
            {"ok": True},
        ]

        async def request(*args: object, **kwargs: object) -> object:
            answer = answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer

        monkeypatch.setattr(client, "request", request)
        monkeypatch.setattr("clusters.resources.asyncio.sleep", sleep)
        slow = Backoff(first=100.0, factor=1.0, cap=100.0)
        assert await ResourceClient(client, backoff=slow).call("GET", "/x", what="get x") == {
            "ok": True
        }
    assert slept[0] == 7.0
    assert 50.0 <= slept[1] <= 100.0


def test_backoff_grows_to_its_cap_with_jitter() -> None:
    backoff = Backoff(first=1.0, factor=2.0, cap=8.0)
    for attempt, ceiling in enumerate([1.0, 2.0, 4.0, 8.0, 8.0]):
        assert ceiling / 2 <= backoff.delay(attempt) <= ceiling
