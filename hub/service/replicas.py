"""This hub as one of several replicas on one Kubernetes store (`serve --store kubernetes`).

The work is split into shards owned through Leases (`hub.state.shards`); this module
joins that ownership to the parts that act on member clusters. The engine, the placement
that follows the fleet and the drift keeper ask `owns(app)` before they act, so only the
replica that holds an application's shard drives it. When a shard comes to this replica,
its active applications are resumed from the store, exactly as a restarted hub resumes
them; when it goes, their runners are stopped before its Lease is handed back.

Every replica serves the whole API, so a verb can land on a replica that does not drive
the application: it writes its decision to the store, as every verb does, and the owner
hears of it from the store's watch (another hub's write) and wakes or starts its runner.
Clusters joined, relabelled or detached through another replica reach this one's registry
the same way. Replicas never call each other.

A replica keeps watch caches only of the clusters its shards deploy to (`scope`), and
drops them when it loses the shards: each replica watches its share of the fleet, not all
of it.
"""

from __future__ import annotations

import asyncio
import logging

from clusters.client import ClusterClient
from hub.errors import FlotillaError
from hub.fleet.registry import Registry
from hub.service.applications import Applications
from hub.service.health import StoredHealth
from hub.state.changes import Subscription
from hub.state.kube import KubeStore
from hub.state.shards import Shards, shard_of
from hub.tasks import first_line

log = logging.getLogger(__name__)

# The supervised task that keeps this replica's watch caches to its scope.
SCOPE_TASK = "watch scope"
# Seconds the scope is left to settle after a change before it is computed again: a deploy
# writes its state many times a second, and one computation reads every owned application.
# Nothing waits on it: a deploy holds its own cluster's cache from its first step.
SCOPE_DELAY = 1.0


class Replicas:
    """Ownership (`owns`) for the services, and what follows from its changes."""

    def __init__(
        self,
        client: ClusterClient,
        namespace: str,
        identity: str,
        *,
        lease_seconds: float,
        renew_seconds: float,
    ) -> None:
        """`client` reaches the management cluster, on the hub's loop."""
        self.shards = Shards(
            client,
            namespace,
            identity,
            lease_seconds=lease_seconds,
            renew_seconds=renew_seconds,
            on_acquired=self.acquired,
            on_lost=self.lost,
        )
        self._applications: Applications | None = None
        self._registry: Registry | None = None
        self._health: StoredHealth | None = None
        self._store: KubeStore | None = None
        self._renew_seconds = renew_seconds
        self._syncing: set[asyncio.Task[None]] = set()
        self._rescope = asyncio.Event()

    def owns(self, app: str) -> bool:
        """This replica holds the application's shard, and its mirror of the store is the
        store as it is: after a partition, a replica that got its shards back acts only
        once its store watches are back, never on the state from before the cut."""
        return self.shards.owns(app) and self._store is not None and self._store.synced

    def drive(
        self,
        store: KubeStore,
        applications: Applications,
        registry: Registry,
        health: StoredHealth,
    ) -> None:
        """From now on: act on shards as they come and go, and on what other replicas
        write to the store. Called on the hub's loop, before the shards' task starts."""
        self._applications, self._registry, self._health = applications, registry, health
        self._store = store
        store.others(app=self._app_changed, cluster=self._cluster_changed)
        registry.supervisor.spawn(SCOPE_TASK, self.keep_scope)
        self._rescope.set()

    def scope(self) -> set[str]:
        """The registered clusters this replica must watch: for every application whose
        shard it holds (one being deleted included, until it is gone), the clusters of
        its current revision's targets and every cluster its inventory names."""
        assert self._applications is not None and self._registry is not None, "drive() first"
        apps = self._applications.apps
        wanted: set[str] = set()
        for record in apps.apps():
            if self.shards.owns(record.name):
                wanted.update(t.cluster for t in apps.targets(record.name, record.revision))
                wanted.update(cluster for cluster, _ in apps.inventory(record.name))
        return wanted & {c.name for c in self._registry.clusters()}

    async def keep_scope(self) -> None:
        """A long-lived task: watch exactly the clusters of `scope`, computed again
        SCOPE_DELAY after each change that may move it: a shard acquired or lost, a write
        to an application (this hub's, on the store's `changes`, or another replica's),
        a cluster joined, renamed or detached.

        It never drops a cache that a running deploy waits on. A cluster enters the scope
        in the store before anything acts on it there: a revision's targets are stored
        before any of them deploys, and an inventory entry before anything is applied
        (hub.workflow.deploy), and it stays until the last object of the application is
        removed from it. Each computation reads the store after the writes it was woken
        by, and `keep_only` decides what to drop from that reading before it awaits
        anything, so a write made meanwhile wakes a later computation that includes it.
        Besides, every deploy, rollback and removal holds its cluster's cache while it
        runs (`Observer.using`), which `keep_only` never drops: a deploy of a superseded
        revision whose cluster the new one no longer names keeps its cache too."""
        assert self._applications is not None and self._registry is not None, "drive() first"
        changes = self._applications.apps.changes.subscribe()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._hear(changes))
                while True:
                    await self._rescope.wait()
                    await asyncio.sleep(SCOPE_DELAY)
                    self._rescope.clear()
                    await self._keep_to_scope(self._registry)
        finally:
            changes.close()

    async def _hear(self, changes: Subscription) -> None:
        """This hub's own writes: those to an application it drives may move the scope."""
        async for change in changes:
            if self.shards.owns(change.app):
                self._rescope.set()

    async def _keep_to_scope(self, registry: Registry) -> None:
        try:
            wanted = self.scope()
        except FlotillaError as e:  # the store did not answer: keep what is watched
            log.warning("cannot tell which clusters to watch (%s): asking again", first_line(e))
            self._rescope.set()
            return
        await registry.observer.keep_only(wanted)

    async def follow_store(self) -> None:
        """A long-lived task: when the store's watches come back after an outage, resume
        the owned applications, since nothing was driven while they were away (`owns`).
        Looked at once per renew period, the Leases' own pace."""
        assert self._store is not None, "drive() first"
        synced = True
        while True:
            await asyncio.sleep(self._renew_seconds)
            if self._store.synced and not synced:
                log.info("the store's watches are back: resuming the applications held here")
                await self.acquired(None)
            synced = self._store.synced

    async def acquired(self, shard: int | None) -> None:
        """The shard is ours (None: every shard held): resume its active applications from
        the store, and let the keeper and the placement look at them again; its clusters
        are watched from the next scope on."""
        self._rescope.set()
        if self._applications is None:
            return
        self._applications.engine.adopt(lambda app: shard is None or shard_of(app) == shard)
        self._applications.enrollment.changed()
        if self._health is not None:
            self._health.changed()  # its finished applications' health is now ours to keep
        if self._registry is not None:
            for cluster in self._registry.clusters():
                self._applications.keeper.look(cluster.name)

    async def lost(self, shard: int) -> None:
        """The shard is no longer ours (handed on, or its Lease not renewed in time): its
        runners stop, and are gone when this returns; the watch caches of its clusters
        that no other shard here deploys to are dropped by the next scope."""
        if self._applications is not None:
            await self._applications.engine.let_go(lambda app: shard_of(app) == shard)
        self._rescope.set()

    def _app_changed(self, app: str) -> None:
        """Another replica wrote something of `app`: a verb, a new revision, a deletion.
        Its waiters here read the store again (a `delete` sent to this replica waits for
        the owner to finish it); if it is ours, its runner does too (or starts), and the
        clusters to watch are looked at again."""
        self._rescope.set()
        if self._applications is not None:
            self._applications.engine.kick(app)  # starts nothing unless owned

    def _cluster_changed(self, name: str) -> None:
        task = asyncio.get_running_loop().create_task(self._sync(name), name=f"sync {name}")
        self._syncing.add(task)
        task.add_done_callback(self._syncing.discard)

    async def _sync(self, name: str) -> None:
        """Take the cluster in, then place the applications on the fleet as it now is and
        look at the clusters to watch again (a cluster renamed elsewhere is a new name)."""
        if self._registry is None or self._applications is None:
            return
        try:
            await self._registry.sync(name)
        except Exception:  # logged, never lost; the next change of it tries again
            log.exception("cannot take in cluster %s from the store", name)
            return
        self._applications.enrollment.changed()
        self._rescope.set()
