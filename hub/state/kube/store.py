"""The registry's clusters and the chart repositories' credentials in a management
cluster: the Kubernetes store's `ClusterStore`, and its installation.

A Cluster object is named after its cluster and carries no credential: the kubeconfig,
the credential's kind and the cluster's Prometheus credentials are in a Secret keyed by
the cluster's uid, so that a rename (a new Cluster object with the same uid, the commit
point, then the old one deleted) moves no credential and no child object.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from clusters.errors import ClusterError
from clusters.errors import Conflict as ApiConflict
from hub.errors import Conflict, NotFound
from hub.model.records import ClusterRecord, RepositoryRecord
from hub.model.settings import DEFAULTS, Settings
from hub.state.interface import StoreUnavailable
from hub.state.kube.apps import KubeAppStore, drop_children
from hub.state.kube.backend import (
    Backend,
    StoreRefused,
    connect,
    install_with,
    unavailable,
)
from hub.state.kube.mirror import Mirror
from hub.state.kube.resources import (
    CLUSTER,
    REPOSITORY,
    SECRET,
    Object,
    app_of,
    cluster_name,
    cluster_object,
    cluster_record,
    cluster_secret,
    cluster_secret_name,
    current_clusters,
    repository_name,
    repository_object,
    repository_record,
    repository_secret_name,
    secret,
    secret_data,
    spec_of,
)

# How stale a cluster's stored last_seen may grow while its probes find it unchanged.
LAST_SEEN_EVERY = 30.0
# Bounds `flotilla install`'s round trips and the wait for the CRDs to be served.
INSTALL_TIMEOUT = 30.0


def install(kubeconfig: Path, namespace: str, *, context: str | None = None) -> None:
    """The store's namespace and every CRD, created or updated, served when this returns."""

    async def work() -> None:
        client = await connect(Path(kubeconfig), context, INSTALL_TIMEOUT)
        try:
            await install_with(client, namespace, INSTALL_TIMEOUT)
        except (ClusterError, TimeoutError) as e:
            raise unavailable(client.server, e, at_start=True) from e
        finally:
            await client.close()

    asyncio.run(work())


class KubeStore:
    """Every call waits for the store's own loop (see `backend`): reads on the mirror,
    writes on the API server."""

    def __init__(
        self,
        kubeconfig: Path,
        namespace: str = DEFAULTS.store_namespace,
        *,
        context: str | None = None,
        timed: Callable[[float], None] | None = None,
        timeout: float = 10.0,
        identity: str | None = None,
    ) -> None:
        """Installs the CRDs (idempotent) and returns once every kind is listed;
        StoreUnavailable, in one line naming the server, when the management cluster
        cannot be reached or refuses the kubeconfig. `timed` is told the seconds of
        each committed write; `identity` (default: random) names this hub among those
        that share the store."""
        self.namespace = namespace
        self.identity = identity or f"hub-{secrets.token_hex(6)}"
        self._b = Backend(
            kubeconfig,
            namespace,
            context=context,
            timed=timed,
            timeout=timeout,
            identity=self.identity,
        )

    def __repr__(self) -> str:
        return f"KubeStore({self._b.server}, namespace={self.namespace!r})"

    def apps(self, settings: Settings = DEFAULTS) -> KubeAppStore:
        return KubeAppStore(self._b, settings)

    def close(self) -> None:
        self._b.close()

    @property
    def synced(self) -> bool:
        """Every kind of the store listed and watched right now: the mirror is the store as
        it is. False while the management cluster does not answer and until its watches
        are back (read without a hop: a few flags that only the store's loop sets)."""
        return self._b.view.cache.synced

    def others(self, *, app: Callable[[str], None], cluster: Callable[[str], None]) -> None:
        """From now on, tell `app` (an application's name) and `cluster` (a cluster's) of
        every change another hub sharing the store makes, on the caller's event loop:
        what other replicas wrote is for this hub to act on when it drives the
        application, and for its registry to know."""
        loop = asyncio.get_running_loop()

        def told(obj: Object) -> None:
            if obj.get("kind") == CLUSTER.kind:
                name = str(spec_of(obj).get("name") or obj["metadata"]["name"])
                loop.call_soon_threadsafe(cluster, name)
            elif (about := app_of(obj)) is not None:
                loop.call_soon_threadsafe(app, about)

        self._b.others(told)

    # ------------------------------------------------------------------ clusters

    def add_cluster(self, record: ClusterRecord) -> None:
        """The Secret (invisible without its Cluster), then the Cluster: the commit point."""

        async def work() -> None:
            m = self._b.view
            if _current(m, record.name) is not None:
                raise Conflict(f"cluster {record.name!r} is already registered")
            created = await self._b.create(cluster_secret(record, m.namespace))
            try:
                await self._b.create(cluster_object(record, m.namespace))
            except ApiConflict:
                await self._b.delete(SECRET, created["metadata"]["name"])
                raise Conflict(f"cluster {record.name!r} is already registered") from None

        self._b.write(work)

    def clusters(self) -> list[ClusterRecord]:
        def look(m: Mirror) -> list[ClusterRecord]:
            current, leftovers = current_clusters(m.objects(CLUSTER.kind))
            if leftovers:
                self._b.spawn(self._b.delete_all(leftovers), "finish a rename")
            return [_record(m, obj) for obj in current.values()]

        return sorted(self._b.read(look), key=lambda c: c.name)

    def cluster(self, name: str) -> ClusterRecord:
        found = self._b.read(lambda m: _record(m, obj) if (obj := _current(m, name)) else None)
        if found is None:
            raise NotFound(f"cluster {name!r} is not registered")
        return found

    def set_labels(self, name: str, labels: dict[str, str]) -> None:
        def change(obj: Object) -> None:
            obj["spec"]["labels"] = dict(labels)

        self._update_cluster(name, change)

    def set_prometheus(self, name: str, prometheus: dict[str, str]) -> None:
        """The cluster's own Prometheus (URL and credentials); `{}`: none. In its Secret."""

        async def work() -> None:
            obj = _current(self._b.view, name)
            if obj is None:
                raise NotFound(f"cluster {name!r} is not registered")

            def change(found: Object | None) -> Object | None:
                data = secret_data(found) | {"prometheus": orjson.dumps(prometheus).decode()}
                fresh = secret(cluster_secret_name(spec_of(obj)["uid"]), self.namespace, data)
                if found is not None:
                    fresh["metadata"] = found["metadata"]
                return fresh

            await self._b.update(SECRET, cluster_secret_name(spec_of(obj)["uid"]), change)

        self._b.write(work)

    def rename_cluster(self, old: str, new: str) -> None:
        """A Cluster `new` with the same uid and `renamedFrom` (the commit point: readers
        take it over the old one), then the old one deleted. Nothing else moves."""

        async def work() -> None:
            m = self._b.view
            obj = _current(m, old)
            if obj is None:
                raise NotFound(f"cluster {old!r} is not registered")
            taken = Conflict(f"cluster {new!r} is already registered; pick another name")
            if _current(m, new) is not None:
                raise taken
            renamed: Object = {
                "apiVersion": obj["apiVersion"],
                "kind": CLUSTER.kind,
                "metadata": {
                    "name": cluster_name(new),
                    "namespace": m.namespace,
                    "labels": obj["metadata"].get("labels") or {},
                },
                "spec": {
                    **spec_of(obj),
                    "name": new,
                    "renamedFrom": old,
                    "renames": int(spec_of(obj).get("renames") or 0) + 1,
                },
                "status": obj.get("status") or {},
            }
            try:
                await self._b.create(renamed)
            except ApiConflict:
                raise taken from None
            await self._b.delete(CLUSTER.kind, obj["metadata"]["name"])

        self._b.write(work)

    def delete_cluster(self, name: str) -> None:
        """The Cluster (the commit point: what names its uid is invisible from then on),
        then its Secret and the children in the background."""

        async def work() -> None:
            obj = _current(self._b.view, name)
            if obj is None:
                raise NotFound(f"cluster {name!r} is not registered")
            await self._b.delete(CLUSTER.kind, obj["metadata"]["name"])
            uid = str(spec_of(obj)["uid"])
            self._b.spawn(self._forget(uid), f"forget cluster {name}")

        self._b.write(work)

    async def _forget(self, uid: str) -> None:
        await self._b.delete(SECRET, cluster_secret_name(uid))
        await drop_children(self._b, uid)

    def record_probe(
        self, name: str, *, health: str, reason: str, version: str | None, seen: bool
    ) -> None:
        """A verdict the store cannot keep now is dropped: the next probe makes it again.
        A verdict like the last one is not written at all, and last_seen only moves once
        it is LAST_SEEN_EVERY old: every replica probes every cluster every few seconds,
        and writing each unchanged verdict was most of an idle hub's writes to the
        management cluster. (The registry's last_seen is also the watches', which hear
        from a healthy cluster far more often.)"""

        def change(obj: Object) -> None:
            status = obj.setdefault("status", {})
            status.update(health=health, reason=reason)
            if version is not None:
                status["version"] = version
            now = time.time()
            if seen and now - float(status.get("lastSeen") or 0) >= LAST_SEEN_EVERY:
                status["lastSeen"] = now

        with contextlib.suppress(StoreUnavailable, StoreRefused, NotFound):
            self._update_cluster(name, change, missing_ok=True)

    def _update_cluster(
        self, name: str, change: Callable[[Object], None], *, missing_ok: bool = False
    ) -> None:
        def mutate(obj: Object | None) -> Object | None:
            if obj is None:
                if missing_ok:
                    return None
                raise NotFound(f"cluster {name!r} is not registered")
            change(obj)
            return obj

        async def work() -> None:
            if _current(self._b.view, name) is None and not missing_ok:
                raise NotFound(f"cluster {name!r} is not registered")
            await self._b.update(CLUSTER.kind, cluster_name(name), mutate)

        self._b.write(work)

    # ------------------------------------------------------------------ repositories

    def add_repository(self, record: RepositoryRecord) -> None:
        """The Secret, then the Repository: the commit point."""
        taken = Conflict(
            f"repository {record.name!r} is already registered; remove it first "
            f"(`flotilla repo remove {record.name}`) to change its URL or credentials"
        )

        async def work() -> None:
            m = self._b.view
            if m.get(REPOSITORY.kind, repository_name(record.name)) is not None:
                raise taken
            held = secret(
                repository_secret_name(record.name), m.namespace, {"secret": record.secret}
            )
            await self._b.update(SECRET, held["metadata"]["name"], lambda _: held)
            try:
                await self._b.create(repository_object(record, m.namespace))
            except ApiConflict:
                raise taken from None

        self._b.write(work)

    def repositories(self) -> list[RepositoryRecord]:
        def look(m: Mirror) -> list[RepositoryRecord]:
            return [
                repository_record(
                    obj, secret_data(m.get(SECRET, repository_secret_name(spec_of(obj)["name"])))
                )
                for obj in m.objects(REPOSITORY.kind)
            ]

        return sorted(self._b.read(look), key=lambda r: r.name)

    def delete_repository(self, name: str) -> None:
        async def work() -> None:
            if self._b.view.get(REPOSITORY.kind, repository_name(name)) is None:
                raise NotFound(f"repository {name!r} is not registered")
            await self._b.delete(REPOSITORY.kind, repository_name(name))
            await self._b.delete(SECRET, repository_secret_name(name))

        self._b.write(work)


def _current(m: Mirror, name: str) -> Object | None:
    """The Cluster called `name` now: not a leftover that a rename has superseded."""
    obj = m.get(CLUSTER.kind, cluster_name(name))
    if obj is None:
        return None
    current, _ = current_clusters(
        o for o in m.objects(CLUSTER.kind) if spec_of(o).get("uid") == spec_of(obj).get("uid")
    )
    held = current.get(spec_of(obj).get("uid", ""))
    return obj if held is not None and held["metadata"]["name"] == obj["metadata"]["name"] else None


def _record(m: Mirror, obj: Object) -> ClusterRecord:
    credentials = secret_data(m.get(SECRET, cluster_secret_name(spec_of(obj)["uid"])))
    return cluster_record(obj, credentials)
