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
"""

from __future__ import annotations

import asyncio
import logging

from clusters.client import ClusterClient
from hub.fleet.registry import Registry
from hub.service.applications import Applications
from hub.service.health import StoredHealth
from hub.state.kube import KubeStore
from hub.state.shards import Shards, shard_of

log = logging.getLogger(__name__)


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
        the store, and let the keeper and the placement look at them again."""
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
        runners stop, and are gone when this returns."""
        if self._applications is not None:
            await self._applications.engine.let_go(lambda app: shard_of(app) == shard)

    def _app_changed(self, app: str) -> None:
        """Another replica wrote something of `app`: a verb, a new revision, a deletion.
        Its waiters here read the store again (a `delete` sent to this replica waits for
        the owner to finish it); if it is ours, its runner does too (or starts)."""
        if self._applications is not None:
            self._applications.engine.kick(app)  # starts nothing unless owned

    def _cluster_changed(self, name: str) -> None:
        task = asyncio.get_running_loop().create_task(self._sync(name), name=f"sync {name}")
        self._syncing.add(task)
        task.add_done_callback(self._syncing.discard)

    async def _sync(self, name: str) -> None:
        """Take the cluster in, then place the applications on the fleet as it now is."""
        if self._registry is None or self._applications is None:
            return
        try:
            await self._registry.sync(name)
        except Exception:  # logged, never lost; the next change of it tries again
            log.exception("cannot take in cluster %s from the store", name)
            return
        self._applications.enrollment.changed()
