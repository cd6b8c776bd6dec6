"""Wait for applied objects to become healthy (or go away) on a cluster's watch cache.

Polling every object of a release with GETs until it is ready is the load that gets a
hub throttled by many API servers. The cluster's `ClusterCache` already sees every
change, so these waits re-judge only when it reports one in their objects' namespaces
(`ClusterCache.moved`), and never ask the API server anything, nor wake on a timer.

A cache can be behind: right after an apply it may still hold the pre-apply object,
whose status for the old spec looks healthy. So an object counts only once the cache
holds the applied version or a newer one (`clusters.freshness.caught_up`), and only
while the cache is synced: a cache that lost its connection keeps its last objects and
reconnects, and the waits keep waiting for it until their timeout.

Only kinds the cache watches and has listed can be waited for here (`can_wait`); the
caller polls for the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from clusters.apply import AppliedRef
from clusters.freshness import caught_up, gone
from clusters.health import Health, HealthStatus, assess, worst
from clusters.watch import ClusterCache

Judge = Callable[[Mapping[str, Any] | None], Health]

WATCH_LAG = "waiting for the watch to see the applied version"


def can_wait(cache: ClusterCache, refs: Iterable[AppliedRef]) -> bool:
    """Whether `cache` can answer for every one of `refs`: it watches their kinds (of
    their API groups) and has listed them, so an absent object is known to be absent."""
    return all(cache.watches(r.api_version, r.kind) and cache.listed(r.kind) for r in refs)


async def wait_healthy(
    cache: ClusterCache,
    refs: Sequence[AppliedRef],
    *,
    timeout: float,
    judge: Judge = assess,
    on_change: Callable[[Health], None] | None = None,
) -> Health:
    """Wait until every one of `refs` is caught up in `cache` and `judge` finds it
    Healthy, or `timeout` seconds pass; the worst verdict of them all, then.

    An object the cache has not caught up with counts as Progressing (`WATCH_LAG`); a
    cache that is not synced as Unknown, with its last error. Verdicts that are not
    Healthy name their object. `on_change` gets the verdict at the start and whenever
    it differs from the one before, to show what the wait is waiting for.
    """
    _check_watched(cache, refs)
    deadline = asyncio.get_running_loop().time() + timeout
    namespaces = _namespaces(refs)
    reported: Health | None = None
    while True:
        verdict, done = _survey(cache, refs, judge)
        if on_change is not None and verdict != reported:
            on_change(verdict)
        reported = verdict
        if done or not await _next_change(cache, namespaces, deadline):
            return verdict


async def wait_gone(cache: ClusterCache, refs: Sequence[AppliedRef], *, timeout: float) -> bool:
    """Wait until none of `refs` exists any more (`clusters.freshness.gone`) as a synced
    `cache` sees it; False if some still do after `timeout` seconds."""
    _check_watched(cache, refs)

    def done() -> bool:
        # Synced implies every stream has listed: an absent object is known to be absent.
        return cache.synced and all(gone(cache.get(r.kind, r.namespace, r.name), r) for r in refs)

    return await cache.wait_for(done, timeout, _namespaces(refs))


# ---------------------------------------------------------------------------- helpers


def _check_watched(cache: ClusterCache, refs: Iterable[AppliedRef]) -> None:
    """A kind the cache does not watch would never arrive: that is the caller's bug."""
    for ref in refs:
        if not cache.watches(ref.api_version, ref.kind):
            raise ValueError(f"{ref}: {ref.kind} ({ref.api_version}) is not watched by the cache")


def _survey(cache: ClusterCache, refs: Sequence[AppliedRef], judge: Judge) -> tuple[Health, bool]:
    """The worst verdict over `refs` now, and whether all of them are Healthy."""
    verdicts = [_verdict(ref, cache.get(ref.kind, ref.namespace, ref.name), judge) for ref in refs]
    if refs and not cache.synced:
        verdicts.append(Health(HealthStatus.UNKNOWN, cache.last_error or "watch not connected"))
    done = all(v.status is HealthStatus.HEALTHY for v in verdicts)
    return worst(verdicts), done


def _verdict(ref: AppliedRef, cached: Mapping[str, Any] | None, judge: Judge) -> Health:
    if not caught_up(cached, ref):
        return Health(HealthStatus.PROGRESSING, f"{ref}: {WATCH_LAG}")
    return named(ref, judge(cached))


def named(ref: AppliedRef, health: Health) -> Health:
    """`health` with the object it is about in front of its reason, unless all is well."""
    if health.status is HealthStatus.HEALTHY:
        return health
    return Health(health.status, f"{ref}: {health.reason}")


def _namespaces(refs: Iterable[AppliedRef]) -> set[str]:
    """The namespaces of `refs` as the cache names them ("" for cluster-scoped objects):
    a wait wakes only when their objects change."""
    return {ref.namespace or "" for ref in refs}


async def _next_change(cache: ClusterCache, namespaces: set[str], deadline: float) -> bool:
    """Wait for the next change of the objects of `namespaces` or of the cache's state;
    False if `deadline` (loop time) comes first."""
    remaining = deadline - asyncio.get_running_loop().time()
    seen = cache.moved(namespaces)
    return remaining > 0 and await cache.wait_for(
        lambda: cache.moved(namespaces) != seen, remaining, namespaces
    )
