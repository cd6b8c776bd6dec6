"""Watch caches of the member clusters, so that reading status asks no API server.

Without them `flotilla status` GETs every object of an application on every call: with
64 clusters of ten objects, 640 requests per call, as slow as the slowest cluster, and
the load that gets a client throttled. Instead the hub keeps one `ClusterCache` per
registered cluster (each watched kind listed once, then watched from that
resourceVersion), started when the hub starts or the cluster joins, and status reads
memory. What a cache cannot answer (a kind it does not watch, a cache that has not
listed yet) the caller reads from the cluster, as before.

A cluster that goes away keeps its last-known objects here, so status shows them with
when they were seen instead of waiting for a dead server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from clusters.client import ClusterClient
from clusters.errors import ClusterError, NotFound
from clusters.resources import Backoff, ResourceClient
from clusters.watch import RECONNECT, ClusterCache
from hub.errors import NotFound as NotRegistered
from hub.fleet.objects import MANAGED_BY

log = logging.getLogger(__name__)

# What the status tree shows the health of (clusters.health rules), watched everywhere.
# Pods and ReplicaSets are left out on purpose: workloads' own status says enough, and
# they are the most numerous and most often changing objects of a cluster.
WATCHED_KINDS: tuple[tuple[str, str], ...] = (
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("apps/v1", "DaemonSet"),
    ("v1", "Service"),
    ("networking.k8s.io/v1", "Ingress"),
    ("v1", "ConfigMap"),
    ("batch/v1", "Job"),
    ("v1", "PersistentVolumeClaim"),
)
# Watched only where the cluster serves them when its cache starts (Gateway API is a
# CRD). A cache asked for a kind the cluster lacks would retry discovering it forever;
# objects of a kind installed later are read from the cluster instead.
OPTIONAL_KINDS: tuple[tuple[str, str], ...] = (("gateway.networking.k8s.io/v1", "HTTPRoute"),)
# Everything Flotilla applies carries this label (hub.fleet.objects), and nothing else matters
# to status: the caches stay small on clusters full of other people's objects.
SELECTOR = f"{MANAGED_BY}=flotilla"

Connect = Callable[[str], Awaitable[ClusterClient]]


@dataclass(frozen=True)
class Sighting:
    """One object as a cache last saw it (`obj` None: it did not exist then).

    `fresh` says the cache is connected now; if not, `seen` (epoch seconds) is when the
    cluster last told it anything."""

    obj: dict[str, Any] | None
    fresh: bool
    seen: float | None


@dataclass(frozen=True)
class _Watched:
    cache: ClusterCache
    groups: Mapping[str, str]  # kind -> API group, for the kinds the cache watches


class Observer:
    """One watch cache per member cluster, by the cluster's name in the registry."""

    def __init__(
        self,
        connect: Connect,
        *,
        label_selector: str = SELECTOR,
        kinds: Sequence[tuple[str, str]] = WATCHED_KINDS,
        backoff: Backoff = RECONNECT,
    ) -> None:
        self._connect = connect
        self._selector = label_selector
        self._kinds = kinds
        self._backoff = backoff
        self._watched: dict[str, _Watched] = {}
        self._starting: dict[str, asyncio.Task[None]] = {}

    def watch(self, name: str) -> None:
        """Start watching cluster `name` in the background, unless that is under way.

        Returns at once: a cluster that is down at the moment is retried with backoff,
        and until its cache has listed, reads of it fall back to the cluster."""
        if name in self._watched or name in self._starting:
            return
        task = asyncio.create_task(self._start(name), name=f"observe {name}")
        task.add_done_callback(partial(self._started, name))
        self._starting[name] = task

    async def forget(self, name: str) -> None:
        """Stop watching `name` and drop what was seen (the cluster was detached)."""
        starting = self._starting.pop(name, None)
        if starting is not None:
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
        watched = self._watched.pop(name, None)
        if watched is not None:
            await watched.cache.stop()

    def rename(self, old: str, new: str) -> None:
        """The same cluster under a new name: keep its cache (and its connection)."""
        if old in self._watched:
            self._watched[new] = self._watched.pop(old)
        starting = self._starting.pop(old, None)
        if starting is not None:
            starting.cancel()
            self.watch(new)

    async def close(self) -> None:
        for name in [*self._starting, *self._watched]:
            await self.forget(name)

    def cache(self, cluster: str) -> ClusterCache | None:
        """The cache of `cluster`, to wait on (`wait_for`) instead of polling the cluster."""
        watched = self._watched.get(cluster)
        return watched.cache if watched else None

    def sightings(self, cluster: str, refs: Sequence[Mapping[str, Any]]) -> list[Sighting | None]:
        """What the cache of `cluster` knows of each object `refs` name (inventory entries:
        apiVersion, kind, namespace, name); None for those it cannot tell."""
        watched = self._watched.get(cluster)
        if watched is None:
            return [None] * len(refs)
        cache = watched.cache
        fresh, seen = cache.synced, cache.last_seen  # once per call: they walk every stream
        found: list[Sighting | None] = []
        for ref in refs:
            kind = ref["kind"]
            covered = watched.groups.get(kind) == _group(ref["apiVersion"]) and cache.listed(kind)
            obj = cache.get(kind, ref.get("namespace"), ref["name"]) if covered else None
            found.append(Sighting(obj, fresh, seen) if covered else None)
        return found

    def last_seen(self, cluster: str) -> float | None:
        """When (epoch seconds) `cluster` last answered its cache, if ever."""
        cache = self.cache(cluster)
        return cache.last_seen if cache else None

    async def _start(self, name: str) -> None:
        failures = 0
        while True:
            try:
                client = await self._connect(name)
                kinds = [*self._kinds, *await _served(client, OPTIONAL_KINDS)]
                break
            except NotRegistered:
                return  # detached before we got to it
            except ClusterError as e:
                log.debug("cluster %s: cannot start watching yet: %s", name, e)
                await asyncio.sleep(self._backoff.delay(failures))
                failures += 1
        cache = ClusterCache(client, kinds, label_selector=self._selector, backoff=self._backoff)
        self._watched[name] = _Watched(cache, {kind: _group(v) for v, kind in kinds})
        await cache.start()

    def _started(self, name: str, task: asyncio.Task[None]) -> None:
        """A start that fails is a bug; it must not die quietly."""
        if self._starting.get(name) is task:
            del self._starting[name]
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("cluster %s: watching failed to start", name, exc_info=error)


async def _served(client: ClusterClient, kinds: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Those of `kinds` the cluster serves now (one discovery request per group-version)."""
    rc = ResourceClient(client, attempts=1)
    served = []
    for api_version, kind in kinds:
        try:
            await rc.resolve(api_version, kind)
        except NotFound:
            continue
        served.append((api_version, kind))
    return served


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0]
