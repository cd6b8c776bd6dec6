"""Every wait of a deploy: objects healthy, a canary's pods ready, canary objects gone.

One mechanism for all of them: the member cluster's watch cache (`hub.fleet.observer`),
which sees every change anyway. An object counts only once the cache holds the version
the apply returned, or a newer one (`clusters.waiting`), so a cached pre-apply object
whose old status looks healthy never passes. The API server is asked nothing while a
wait runs.

GETs are the fallback, for what no cache can answer: a cluster whose credentials cannot
hold a cluster-wide watch (its cache reports an error instead of listing), and kinds the
caches do not watch (a Secret, a Role: objects whose health is their existence, so one
GET each usually settles them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence

from clusters.apply import AppliedRef, get
from clusters.errors import ClusterError
from clusters.freshness import gone
from clusters.health import Health, HealthStatus, assess, worst
from clusters.resources import Connection
from clusters.waiting import Judge, named, wait_gone, wait_healthy
from clusters.watch import ClusterCache

# A cache that is still starting (a cluster joined a moment ago, a hub just started) lists
# within a fraction of a second; waiting this long for it beats falling back to polling.
CACHE_START = 5.0
# Polling, where it must be: soon at first (pods on a healthy cluster are ready within a
# second or so), then once a second, so a slow rollout costs its API server little.
POLL_FIRST = 0.1
POLL_INTERVAL = 1.0

Caches = Callable[[str], ClusterCache | None]
Report = Callable[[Health], None]


class Waits:
    """Waits on the watch cache of a cluster, by its name in the registry."""

    def __init__(self, caches: Caches, *, timeout: float) -> None:
        self._caches = caches
        self.timeout = timeout

    async def healthy(
        self,
        cluster: str,
        client: Connection,
        refs: Sequence[AppliedRef],
        *,
        judge: Judge = assess,
        on_change: Report | None = None,
    ) -> Health:
        """Wait until every one of `refs` is healthy by `judge`, at most `timeout`
        seconds; the worst verdict then (Healthy when all are)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        watched, polled = await self._split(cluster, refs)
        verdicts = []
        if watched:
            cache = self._caches(cluster)
            assert cache is not None  # _split found it
            verdicts.append(
                await wait_healthy(
                    cache, watched, timeout=deadline - loop.time(), judge=judge, on_change=on_change
                )
            )
        if polled and all(v.status is HealthStatus.HEALTHY for v in verdicts):
            verdicts.append(await _poll_healthy(client, polled, judge, deadline, on_change))
        return worst(verdicts)

    async def gone(self, cluster: str, client: Connection, refs: Sequence[AppliedRef]) -> bool:
        """Wait until none of `refs` exists any more, at most `timeout` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        watched, polled = await self._split(cluster, refs)
        cache = self._caches(cluster)
        if (
            watched
            and cache is not None
            and not await wait_gone(cache, watched, timeout=deadline - loop.time())
        ):
            return False
        return not polled or await _poll_gone(client, polled, deadline)

    async def _split(
        self, cluster: str, refs: Sequence[AppliedRef]
    ) -> tuple[list[AppliedRef], list[AppliedRef]]:
        """`refs` the cluster's cache can answer for, and those to poll for."""
        cache = self._caches(cluster)
        if cache is None:
            return [], list(refs)
        # Starting: give it a moment to list. Failing (no right to watch cluster-wide, or
        # the cluster is away right now): poll, which reports the failure in its own words.
        await cache.wait_for(lambda: cache.synced or cache.last_error is not None, CACHE_START, ())
        if not cache.synced:
            return [], list(refs)
        watched = [r for r in refs if cache.watches(r.api_version, r.kind) and cache.listed(r.kind)]
        return watched, [r for r in refs if r not in watched]


def poll_delays() -> Iterator[float]:
    """Seconds between two polls: 0.1, 0.2, 0.4, 0.8, then 1 for good."""
    delay = POLL_FIRST
    while True:
        yield delay
        delay = min(delay * 2, POLL_INTERVAL)


async def _poll_healthy(
    client: Connection,
    refs: Sequence[AppliedRef],
    judge: Judge,
    deadline: float,
    on_change: Report | None,
) -> Health:
    loop = asyncio.get_running_loop()
    delays = poll_delays()
    reported: Health | None = None
    while True:
        try:
            objects = await asyncio.gather(*(get(client, ref) for ref in refs))
            verdict = worst(named(ref, judge(obj)) for ref, obj in zip(refs, objects, strict=True))
        except ClusterError as e:  # a blip of the API server is not a failed deploy
            verdict = Health(HealthStatus.UNKNOWN, str(e))
        if on_change is not None and verdict != reported:
            on_change(verdict)
        reported = verdict
        delay = next(delays)
        if verdict.status is HealthStatus.HEALTHY or loop.time() + delay > deadline:
            return verdict
        await asyncio.sleep(delay)


async def _poll_gone(client: Connection, refs: Sequence[AppliedRef], deadline: float) -> bool:
    loop = asyncio.get_running_loop()
    delays = poll_delays()
    while True:
        try:
            objects = await asyncio.gather(*(get(client, ref) for ref in refs))
            if all(gone(obj, ref) for obj, ref in zip(objects, refs, strict=True)):
                return True
        except ClusterError:
            pass  # asked again below, until the deadline
        delay = next(delays)
        if loop.time() + delay > deadline:
            return False
        await asyncio.sleep(delay)
