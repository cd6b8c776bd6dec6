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

A single hub watches every registered cluster. A replica of several on one Kubernetes store
watches only the clusters its shards deploy to (`keep_only`, told by hub.service.replicas),
and a deploy holds the cache of its cluster while it runs (`using`), so that what it waits
on is never dropped under it.

Each cluster's cache runs as the supervised task `observe:<cluster>` (hub.tasks). What a
cluster does to a cache (an outage, a 410, a bad event) the cache retries by itself; a
task that dies of anything else is a bug or something unforeseen, and the supervisor
restarts it with backoff and keeps the error, which `cluster list` shows. A restart keeps
the objects last seen, so status goes on answering from them meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

from clusters.client import ClusterClient
from clusters.errors import ClusterError, NotFound
from clusters.health import Health
from clusters.resources import Backoff, ResourceClient
from clusters.watch import RECONNECT, ClusterCache
from hub.errors import NotFound as NotRegistered
from hub.fleet.objects import MANAGED_BY
from hub.tasks import Supervisor

log = logging.getLogger(__name__)

TASK_PREFIX = "observe:"
# The state of a cluster this hub keeps no cache of (`WatchHealth.state`).
NOT_WATCHED = "not watched"

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


class Sighting(NamedTuple):
    """One object as a cache last saw it (`obj` None: it did not exist then).

    `fresh` says the cache is connected now; if not, `seen` (epoch seconds) is when the
    cluster last told it anything. A tuple, made in a third of a frozen dataclass's time:
    `status` makes one for every object on every cluster."""

    obj: dict[str, Any] | None
    health: Health
    """`assess` of `obj`, which the cache keeps until the object changes."""
    fresh: bool
    seen: float | None


@dataclass(frozen=True)
class WatchHealth:
    """How the watch cache of one cluster fares, as `cluster list` shows it."""

    state: str
    """`synced` (every kind listed, every watch connected), `starting` (not connected
    yet), `listing`, `reconnecting` (it was synced; the cluster went away),
    `restarting` (its task died and waits for its restart), `not watched` (detached, or
    a replica's cluster that none of its shards deploys to)."""
    error: str | None
    """Why it is not synced now, if something failed."""
    restarts: int
    """How often its task was restarted after dying of an unexpected error."""
    last_error: str | None
    failed_at: float | None
    """When (epoch seconds) its task last died."""


class WatchBroken(Exception):
    """A task of a watch cache died of something its own retries do not cover."""


def task_name(cluster: str) -> str:
    return f"{TASK_PREFIX}{cluster}"


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
        supervisor: Supervisor,
        label_selector: str = SELECTOR,
        kinds: Sequence[tuple[str, str]] = WATCHED_KINDS,
        backoff: Backoff = RECONNECT,
    ) -> None:
        self._connect = connect
        self._supervisor = supervisor
        self._selector = label_selector
        self._kinds = kinds
        self._backoff = backoff
        self._watched: dict[str, _Watched] = {}
        self._waiting: dict[str, str] = {}  # cluster -> why its cache has not started yet
        self._listeners: list[Callable[[str], None]] = []
        self._using: Counter[str] = Counter()  # cluster -> deploys that hold its cache

    def listen(self, listener: Callable[[str], None]) -> None:
        """Call `listener(cluster)` whenever a cluster's cache changes (an object, or its
        sync state): how the drift keeper learns of a `kubectl edit` without polling.
        Called synchronously from the cache's task, so it must only take note."""
        self._listeners.append(listener)

    def watch(self, name: str) -> None:
        """Start watching cluster `name` in the background, unless that is under way.

        Returns at once: a cluster that is down at the moment is retried with backoff,
        and until its cache has listed, reads of it fall back to the cluster."""
        self._supervisor.spawn(task_name(name), partial(self._observe, name))

    def watching(self) -> set[str]:
        """The clusters watched now (a cache kept, or its task under way)."""
        tasks = (s.name for s in self._supervisor.states(TASK_PREFIX))
        running = {n.removeprefix(TASK_PREFIX) for n in tasks if self._supervisor.running(n)}
        return running | set(self._watched)

    async def keep_only(self, names: Collection[str]) -> None:
        """Watch exactly `names`, and the clusters a deploy holds (`using`): start the
        caches missing, stop and drop the others (what was seen is forgotten, and their
        state is `not watched`).

        What to drop is decided at once, before the first await, so a cluster watched
        after the call began is not dropped by it; one a deploy took hold of while its
        drop was under way is watched again at once."""
        for name in names:
            self.watch(name)
        for name in sorted(self.watching() - set(names)):
            if self._using[name]:
                continue
            await self.forget(name)
            if self._using[name]:
                self.watch(name)

    @contextlib.contextmanager
    def using(self, name: str) -> Iterator[None]:
        """Watch `name` and keep its cache for the block, whatever `keep_only` is told
        meanwhile: for a deploy, whose waits and hooks read the cache. Once no block holds
        it, the next `keep_only` drops it if it is not among its names."""
        self.watch(name)
        self._using[name] += 1
        try:
            yield
        finally:
            self._using[name] -= 1
            if not self._using[name]:
                del self._using[name]

    async def forget(self, name: str) -> None:
        """Stop watching `name` and drop what was seen (the cluster was detached, or none
        of a replica's shards deploys to it any more)."""
        await self._supervisor.cancel(task_name(name))
        self._waiting.pop(name, None)
        watched = self._watched.pop(name, None)
        if watched is not None:
            await watched.cache.stop()

    async def rename(self, old: str, new: str) -> None:
        """The same cluster under a new name: its cache (and connection) go along, and
        its watches keep running; only the task that minds them changes its name. A
        cluster not watched stays so.

        The cache moves before the first await, so a reader asking for `new` meanwhile
        finds it rather than starting a second one."""
        watched = old in self.watching()
        if old in self._watched:
            self._watched[new] = self._watched.pop(old)
        self._waiting.pop(old, None)
        await self._supervisor.cancel(task_name(old))  # leaves the cache running
        if watched:
            self.watch(new)

    async def close(self) -> None:
        await self._supervisor.cancel_prefix(TASK_PREFIX)
        watched, self._watched = list(self._watched.values()), {}
        self._waiting.clear()
        for entry in watched:
            await entry.cache.stop()

    def health(self, cluster: str) -> WatchHealth:
        """The cache of `cluster` as `cluster list` shows it: synced or why not, and the
        deaths of its task."""
        task = self._supervisor.state(task_name(cluster))
        watched = self._watched.get(cluster)
        cache = watched.cache if watched else None
        error = cache.last_error if cache else self._waiting.get(cluster)
        if task is None:
            state = NOT_WATCHED
        elif not task.running:
            state, error = "restarting", task.last_error
        elif cache is None:
            state = "starting"
        elif cache.synced:
            state, error = "synced", None
        else:
            state = "listing" if cache.last_seen is None else "reconnecting"
        return WatchHealth(
            state=state,
            error=error,
            restarts=task.restarts if task else 0,
            last_error=task.last_error if task else None,
            failed_at=task.failed_at if task else None,
        )

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
        fresh, seen = cache.synced, cache.last_seen  # the same for every object: once per call
        found: list[Sighting | None] = []
        # Whether the cache covers a kind, once per kind and call: `listed` walks its streams.
        covers: dict[tuple[str, str], bool] = {}
        for ref in refs:
            kind, api_version = ref["kind"], ref["apiVersion"]
            covered = covers.get((kind, api_version))
            if covered is None:
                covered = watched.groups.get(kind) == _group(api_version) and cache.listed(kind)
                covers[kind, api_version] = covered
            if not covered:
                found.append(None)
                continue
            obj, health = cache.judged(kind, ref.get("namespace"), ref["name"])
            found.append(Sighting(obj, health, fresh, seen))
        return found

    def last_seen(self, cluster: str) -> float | None:
        """When (epoch seconds) `cluster` last answered its cache, if ever."""
        cache = self.cache(cluster)
        return cache.last_seen if cache else None

    async def _observe(self, name: str) -> None:
        """The supervised task of one cluster: start its cache and mind it. Runs until
        cancelled; raises (so the supervisor restarts it) when a task of the cache died."""
        watched = self._watched.get(name) or await self._open(name)
        if watched is None:
            return  # detached before its cache could start
        await watched.cache.start()  # nothing to do when it runs already (a rename)
        try:
            task = await watched.cache.died()
            error = task.exception()
            raise WatchBroken(f"{task.get_name()}: {type(error).__name__}: {error}") from error
        except Exception:
            await watched.cache.stop()  # the restart starts its watches afresh
            raise

    def _tell(self, name: str) -> None:
        for listener in self._listeners:
            listener(name)

    async def _open(self, name: str) -> _Watched | None:
        """Connect and make the cache; a cluster that does not answer is retried with
        backoff (an outage is no failure of the task), one that was detached is not."""
        failures = 0
        while True:
            try:
                client = await self._connect(name)
                kinds = [*self._kinds, *await _served(client, OPTIONAL_KINDS)]
                break
            except NotRegistered:
                return None
            except ClusterError as e:
                self._waiting[name] = f"cannot start watching: {e}"
                log.debug(
                    "cluster %s: cannot start watching yet: %s", name, e, extra={"cluster": name}
                )
                await asyncio.sleep(self._backoff.delay(failures))
                failures += 1
        self._waiting.pop(name, None)
        cache = ClusterCache(
            client,
            kinds,
            label_selector=self._selector,
            backoff=self._backoff,
            on_moved=partial(self._tell, name),
        )
        watched = self._watched[name] = _Watched(cache, {kind: _group(v) for v, kind in kinds})
        return watched


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
