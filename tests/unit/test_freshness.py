"""Waiting on the watch cache: a cached copy counts only once it is the applied version or
newer, and the waits are woken by the cache alone.

The waits run against a ClusterCache fed by a scripted API server whose Deployment watch
streams exactly what a test puts into it, when it puts it: so a test can hold the cache
on the pre-apply object and check that the wait does not take it for the applied one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from kubernetes_asyncio.client import ApiClient, Configuration

from clusters.apply import AppliedRef
from clusters.freshness import caught_up, gone
from clusters.health import Health, HealthStatus, assess
from clusters.waiting import WATCH_LAG, can_wait, wait_gone, wait_healthy
from clusters.watch import ClusterCache
from tests.unit.fakeapi import FAST, WAIT, FakeApi, event, serving

H = HealthStatus
DEPLOYMENTS = [("apps/v1", "Deployment")]
APPS = {
    "kind": "APIResourceList",
    "groupVersion": "apps/v1",
    "resources": [
        {"name": "deployments", "namespaced": True, "kind": "Deployment", "verbs": ["watch"]},
        {"name": "deployments/status", "namespaced": True, "kind": "Deployment", "verbs": []},
    ],
}


def deployment(
    generation: int, observed: int, version: str, *, uid: str = "uid-web", ready: int = 3
) -> dict[str, Any]:
    """Deployment ns/web as the API server has it; healthy once `observed` is `generation`."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "ns",
            "uid": uid,
            "generation": generation,
            "resourceVersion": version,
        },
        "spec": {"replicas": 3},
        "status": {
            "observedGeneration": observed,
            "replicas": 3,
            "updatedReplicas": ready,
            "readyReplicas": ready,
            "availableReplicas": ready,
        },
    }


def config_map(version: str, *, uid: str = "uid-settings") -> dict[str, Any]:
    metadata = {"name": "settings", "namespace": "ns", "uid": uid, "resourceVersion": version}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata}


def deleting(obj: dict[str, Any]) -> dict[str, Any]:
    """`obj` once deleted, while finalizers hold it."""
    metadata = {**obj["metadata"], "deletionTimestamp": "2026-01-01T00:00:00Z"}
    return {**obj, "metadata": metadata}


def stream_error(code: int) -> dict[str, Any]:
    return event("ERROR", {"kind": "Status", "code": code, "message": f"scripted {code}"})


@dataclass
class Apps(FakeApi):
    """The fake API server, serving apps/v1 Deployments too: every list answers with
    `deployments`, and a watch streams what the test puts into `feed`. A None, or an
    ERROR event (after sending it), ends that watch connection."""

    deployments: list[dict[str, Any]] = field(default_factory=list)
    feed: asyncio.Queue[dict[str, Any] | None] = field(default_factory=asyncio.Queue)

    def app(self) -> web.Application:
        app = super().app()
        app.router.add_get("/apis/apps/v1", self._apps)
        app.router.add_get("/apis/apps/v1/deployments", self._deployments)
        return app

    async def _apps(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(APPS)

    async def _deployments(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") != "true":
            self.seen.append(("list deployments", dict(request.query)))
            listing = {"metadata": {"resourceVersion": "100"}, "items": self.deployments}
            return web.json_response(listing)
        self.seen.append(("watch deployments", dict(request.query)))
        response = web.StreamResponse()
        await response.prepare(request)
        while (line := await self._next()) is not None:
            await response.write(json.dumps(line).encode() + b"\n")
            if line["type"] == "ERROR":
                break
        return response

    async def _next(self) -> dict[str, Any] | None:
        """The next event fed, or None when the server stops first."""
        getting = asyncio.ensure_future(self.feed.get())
        stopping = asyncio.ensure_future(self.stopping.wait())
        await asyncio.wait({getting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if getting.done():
            return getting.result()
        getting.cancel()
        return None


class Reports:
    """An `on_change` that remembers the verdicts, and lets a test wait for one."""

    def __init__(self) -> None:
        self.seen: list[Health] = []
        self._changed = asyncio.Event()

    def __call__(self, verdict: Health) -> None:
        self.seen.append(verdict)
        self._changed.set()

    async def until(self, reason: str) -> None:
        async with asyncio.timeout(WAIT):
            while not self.seen or reason not in self.seen[-1].reason:
                self._changed.clear()
                await self._changed.wait()


@asynccontextmanager
async def synced_cache(fake: Apps) -> AsyncIterator[ClusterCache]:
    """A cache of the fake's Deployments, once it has listed them and watches."""
    async with serving(fake) as api, ClusterCache(api, DEPLOYMENTS, backoff=FAST) as cache:
        assert await cache.wait_for(lambda: cache.synced, WAIT)
        yield cache


# ---------------------------------------------------------------------------- the inventory


def test_an_applied_ref_records_the_version_the_apply_returned() -> None:
    assert AppliedRef.of(deployment(2, 1, "120")) == AppliedRef(
        "apps/v1", "Deployment", "ns", "web", uid="uid-web", generation=2, resource_version="120"
    )
    settings = AppliedRef.of(config_map("77"))
    assert (settings.generation, settings.resource_version) == (None, "77")


# ---------------------------------------------------------------------------- pure rules

APPLIED_WEB = AppliedRef.of(deployment(2, 1, "120"))
APPLIED_SETTINGS = AppliedRef.of(config_map("120"))


@pytest.mark.parametrize(
    ("cached", "applied", "expected"),
    [
        pytest.param(None, APPLIED_WEB, False, id="not seen yet"),
        pytest.param(deployment(1, 1, "100"), APPLIED_WEB, False, id="the pre-apply generation"),
        pytest.param(deployment(2, 1, "120"), APPLIED_WEB, True, id="the applied generation"),
        pytest.param(deployment(3, 3, "150"), APPLIED_WEB, True, id="a later generation"),
        pytest.param(
            deployment(2, 1, "90"), APPLIED_WEB, True, id="generation decides, not resourceVersion"
        ),
        pytest.param(
            deployment(5, 5, "900", uid="uid-other"), APPLIED_WEB, False, id="another incarnation"
        ),
        pytest.param(
            {"metadata": {"uid": "uid-web"}}, APPLIED_WEB, False, id="no generation to compare"
        ),
        pytest.param(config_map("100"), APPLIED_SETTINGS, False, id="an older resourceVersion"),
        pytest.param(config_map("120"), APPLIED_SETTINGS, True, id="the applied resourceVersion"),
        pytest.param(config_map("1000"), APPLIED_SETTINGS, True, id="compared as integers"),
        pytest.param(
            config_map("130", uid="uid-other"),
            APPLIED_SETTINGS,
            False,
            id="recreated: newer, not ours",
        ),
        pytest.param(
            config_map("b"), AppliedRef.of(config_map("a")), False, id="opaque versions: differ"
        ),
        pytest.param(
            config_map("a"), AppliedRef.of(config_map("a")), True, id="opaque versions: equal"
        ),
        pytest.param(
            config_map("1000"), AppliedRef.of(config_map("x9")), False, id="one is not decimal"
        ),
        pytest.param(
            config_map("1"),
            AppliedRef("v1", "ConfigMap", "ns", "settings", uid="uid-settings"),
            True,
            id="the apply's answer unknown: the uid decides",
        ),
    ],
)
def test_caught_up(cached: dict[str, Any] | None, applied: AppliedRef, expected: bool) -> None:
    assert caught_up(cached, applied) is expected


@pytest.mark.parametrize(
    ("cached", "expected"),
    [
        pytest.param(None, True, id="nothing under the name"),
        pytest.param(deployment(9, 9, "999", uid="uid-new"), True, id="re-created by someone"),
        pytest.param(deployment(1, 1, "100"), False, id="still there"),
        pytest.param(deleting(deployment(1, 1, "130")), False, id="pending deletion"),
    ],
)
def test_gone(cached: dict[str, Any] | None, expected: bool) -> None:
    assert gone(cached, APPLIED_WEB) is expected


def workload(kind: str, generation: int, observed: int) -> dict[str, Any]:
    """A workload whose status is all healthy, for the spec of generation `observed`."""
    status: dict[str, Any] = {"observedGeneration": observed}
    if kind == "DaemonSet":
        status |= {"desiredNumberScheduled": 2, "updatedNumberScheduled": 2, "numberAvailable": 2}
    else:
        status |= {"replicas": 2, "updatedReplicas": 2, "readyReplicas": 2}
        status |= {"availableReplicas": 2, "currentRevision": "r1", "updateRevision": "r1"}
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": "web", "namespace": "ns", "generation": generation},
        "spec": {"replicas": 2},
        "status": status,
    }


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet", "DaemonSet"])
def test_a_status_for_an_older_spec_is_progressing_whatever_it_says(kind: str) -> None:
    """What the waits rely on once the cache has caught up (Argo CD's rule)."""
    assert assess(workload(kind, 3, 3)).status is H.HEALTHY
    lagging = assess(workload(kind, 3, 2))
    assert lagging == Health(H.PROGRESSING, "waiting for the controller to observe generation 3")


# ---------------------------------------------------------------------------- waits


async def test_the_pre_apply_object_is_not_taken_for_the_applied_one() -> None:
    fake = Apps(deployments=[deployment(1, 1, "100")])
    reports = Reports()
    async with synced_cache(fake) as cache:
        applied = AppliedRef.of(deployment(2, 1, "120"))
        assert can_wait(cache, [applied])
        before = cache.get("Deployment", "ns", "web")
        assert assess(before).status is H.HEALTHY, "what a wait that only judged would take"
        waiting = asyncio.create_task(
            wait_healthy(cache, [applied], timeout=WAIT, on_change=reports)
        )
        await reports.until(WATCH_LAG)
        fake.feed.put_nowait(event("MODIFIED", deployment(2, 1, "120")))
        await reports.until("observe generation 2")
        assert not waiting.done()
        fake.feed.put_nowait(event("BOOKMARK", {"metadata": {"resourceVersion": "125"}}))
        fake.feed.put_nowait(event("MODIFIED", deployment(2, 2, "130", ready=1)))
        await reports.until("1/3")
        fake.feed.put_nowait(event("MODIFIED", deployment(2, 2, "140")))
        verdict = await waiting
    assert verdict == Health(H.HEALTHY, "3/3 replicas available")
    assert reports.seen == [
        Health(H.PROGRESSING, f"Deployment ns/web: {WATCH_LAG}"),
        Health(
            H.PROGRESSING, "Deployment ns/web: waiting for the controller to observe generation 2"
        ),
        Health(H.PROGRESSING, "Deployment ns/web: 1/3 replicas updated"),
        verdict,
    ], "one report per new verdict, none for the bookmark"
    seen = [kind for kind, _ in fake.seen]
    assert seen == ["list deployments", "watch deployments"], "and the API server was not asked"


async def test_a_cache_past_the_applied_version_counts_at_once() -> None:
    fake = Apps(deployments=[deployment(3, 3, "150")])
    async with synced_cache(fake) as cache:
        applied = AppliedRef.of(deployment(2, 1, "120"))
        assert (await wait_healthy(cache, [applied], timeout=WAIT)).status is H.HEALTHY


async def test_a_wait_rides_out_a_lost_connection() -> None:
    fake = Apps(deployments=[deployment(1, 1, "100")])
    reports = Reports()
    async with synced_cache(fake) as cache:
        fake.feed.put_nowait(stream_error(500))
        assert await cache.wait_for(lambda: not cache.synced, WAIT)
        # The cached object is caught up and healthy, but a cache that is not synced
        # cannot say it still is: the wait waits for the reconnect.
        applied = AppliedRef.of(deployment(1, 1, "100"))
        verdict = await wait_healthy(cache, [applied], timeout=WAIT, on_change=reports)
    assert verdict.status is H.HEALTHY
    [disconnected, _] = reports.seen
    assert disconnected.status is H.UNKNOWN
    assert "watch Deployment: scripted 500" in disconnected.reason
    assert len([kind for kind, _ in fake.seen if kind == "watch deployments"]) == 2
    assert fake.count("list deployments") == 1, "resumed, not re-listed"


async def test_a_wait_keeps_waiting_through_a_disconnect_for_the_new_version() -> None:
    fake = Apps(deployments=[deployment(1, 1, "100")])
    reports = Reports()
    async with synced_cache(fake) as cache:
        applied = AppliedRef.of(deployment(2, 1, "120"))
        waiting = asyncio.create_task(
            wait_healthy(cache, [applied], timeout=WAIT, on_change=reports)
        )
        await reports.until(WATCH_LAG)
        fake.feed.put_nowait(stream_error(503))
        await reports.until("scripted 503")
        await reports.until(WATCH_LAG)  # reconnected, resumed, and still behind
        fake.feed.put_nowait(event("MODIFIED", deployment(2, 2, "130")))
        verdict = await waiting
    assert verdict.status is H.HEALTHY
    statuses = [r.status for r in reports.seen]
    assert statuses == [H.PROGRESSING, H.UNKNOWN, H.PROGRESSING, H.HEALTHY]


@pytest.mark.looptime
async def test_at_the_timeout_the_verdict_says_what_was_awaited() -> None:
    """Someone re-created the object after our apply: that one is not what we applied."""
    fake = Apps(deployments=[deployment(1, 1, "300", uid="uid-other")])
    async with synced_cache(fake) as cache:
        loop = asyncio.get_running_loop()
        start = loop.time()
        applied = AppliedRef.of(deployment(1, 1, "200"))
        verdict = await wait_healthy(cache, [applied], timeout=60)
        assert loop.time() - start == pytest.approx(60)
    assert verdict == Health(H.PROGRESSING, f"Deployment ns/web: {WATCH_LAG}")


@pytest.mark.looptime
async def test_a_degraded_verdict_is_returned_at_the_timeout() -> None:
    def judge(obj: Any) -> Health:
        return Health(H.DEGRADED, "crash looping")

    fake = Apps(deployments=[deployment(2, 2, "120")])
    async with synced_cache(fake) as cache:
        applied = AppliedRef.of(deployment(2, 1, "120"))
        verdict = await wait_healthy(cache, [applied], timeout=60, judge=judge)
    assert verdict == Health(H.DEGRADED, "Deployment ns/web: crash looping")


@pytest.mark.parametrize(
    "events",
    [
        pytest.param([event("DELETED", deployment(1, 1, "130"))], id="deleted"),
        pytest.param(
            [
                event("DELETED", deployment(1, 1, "130")),
                event("ADDED", deployment(1, 0, "140", uid="uid-new")),
            ],
            id="deleted and re-created",
        ),
    ],
)
async def test_wait_gone(events: list[dict[str, Any]]) -> None:
    fake = Apps(deployments=[deployment(1, 1, "100")])
    async with synced_cache(fake) as cache:
        applied = AppliedRef.of(deployment(1, 1, "100"))
        waiting = asyncio.create_task(wait_gone(cache, [applied], timeout=WAIT))
        for line in events:
            fake.feed.put_nowait(line)
        assert await waiting


@pytest.mark.looptime
async def test_wait_gone_times_out_while_the_object_stays() -> None:
    fake = Apps(deployments=[deployment(1, 1, "100")])
    async with synced_cache(fake) as cache:
        fake.feed.put_nowait(event("MODIFIED", deployment(2, 1, "130")))
        applied = AppliedRef.of(deployment(1, 1, "100"))
        assert not await wait_gone(cache, [applied], timeout=60)


@pytest.mark.looptime
async def test_an_unsynced_cache_proves_nothing() -> None:
    """A cache that never listed answers None for everything: not "gone", not "healthy"."""
    applied = AppliedRef.of(deployment(1, 1, "100"))
    async with ApiClient(Configuration(host="http://127.0.0.1:9")) as api:
        cache = ClusterCache(api, DEPLOYMENTS)
        assert cache.get("Deployment", "ns", "web") is None
        assert not await wait_gone(cache, [applied], timeout=60)
        assert await wait_healthy(cache, [applied], timeout=60) == Health(
            H.UNKNOWN, "watch not connected"
        )
        assert await wait_healthy(cache, [], timeout=60) == Health(H.HEALTHY)


async def test_what_a_cache_cannot_wait_for() -> None:
    web_ref = AppliedRef.of(deployment(1, 1, "100"))
    legacy = AppliedRef("extensions/v1beta1", "Deployment", "ns", "web", uid="uid-web")
    settings = AppliedRef.of(config_map("1"))
    fake = Apps(deployments=[deployment(1, 1, "100")])
    async with serving(fake) as api:
        cache = ClusterCache(api, DEPLOYMENTS, backoff=FAST)
        assert not can_wait(cache, [web_ref]), "not listed yet"
        async with cache:
            assert await cache.wait_for(lambda: cache.listed("Deployment"), WAIT)
            assert can_wait(cache, [web_ref])
            assert can_wait(cache, [])
            assert not can_wait(cache, [web_ref, settings]), "a kind it does not watch"
            assert not can_wait(cache, [legacy]), "another group's kind of that name"
            for refs in ([settings], [legacy]):
                with pytest.raises(ValueError, match="not watched by the cache"):
                    await wait_healthy(cache, refs, timeout=WAIT)
                with pytest.raises(ValueError, match="not watched by the cache"):
                    await wait_gone(cache, refs, timeout=WAIT)
