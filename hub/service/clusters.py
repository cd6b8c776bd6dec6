"""The verbs behind `flotilla cluster ...` that concern applications too: list (with how
each cluster's watch fares), rename and detach.

A cluster is known by its uid; its name is what users, topology policies and the store's
rows say. A rename keeps the uid and re-points every row in one transaction
(`Store.rename_cluster`), and so that no runner writes the old name back, the runners of
the applications on the cluster are stopped first and started again after: what a hub
restart does, and safe for the same reason (state is in the store, every action an
idempotent apply).

A detach never strands an application silently. A cluster that still holds releases is
refused with their names unless the user says what becomes of them: deleted from the
cluster first, or forgotten (the hub's records go, the objects stay running there).
"""

from __future__ import annotations

import enum
import logging
from typing import Any

from clusters.kubeconfig import redact
from hub.errors import ClusterUnavailable, Conflict
from hub.fleet.observer import WatchHealth
from hub.fleet.registry import Registry, check_name
from hub.model.records import ClusterRecord
from hub.model.timestamps import timestamp
from hub.model.views import MemberDetail, MemberList, MemberView, ProberView, WatchView
from hub.service.applications import Applications
from hub.state.interface import Holding

log = logging.getLogger(__name__)


class HeldReleases(enum.StrEnum):
    """What a detach does with the releases applications still have on the cluster."""

    REFUSE = "refuse"  # detach only a cluster that holds nothing
    DELETE = "delete"  # delete every inventory object of every app there, then detach
    FORGET = "forget"  # drop the hub's records of them; the objects stay on the cluster


class Clusters:
    def __init__(self, registry: Registry, applications: Applications) -> None:
        """Built once as the hub starts, which is when placement catches up with the fleet
        changes made while the hub was down (`Enrollment`, in the background)."""
        self.registry = registry
        self.applications = applications
        self._apps = applications.apps
        self._enrollment = applications.enrollment
        self._enrollment.changed()

    # reads

    def ls(self) -> MemberList:
        prober = self.registry.prober_state()
        return MemberList(
            clusters=[self.view(record) for record in self.registry.clusters()],
            prober=ProberView(
                running=bool(prober and prober.running),
                restarts=prober.restarts if prober else 0,
                lastError=self._scrub(prober.last_error) if prober else None,
                lastErrorAt=timestamp(prober.failed_at) if prober else None,
            ),
        )

    def show(self, name: str) -> MemberDetail:
        record = self.registry.store.cluster(name)
        return MemberDetail(**self.view(record), kubeconfig=redact(record.kubeconfig))

    def view(self, record: ClusterRecord) -> MemberView:
        """The public shape of a cluster: never the raw kubeconfig."""
        return MemberView(
            name=record.name,
            uid=record.uid,
            labels=record.labels,
            server=record.server,
            version=record.version,
            apiVersions=len(known.api_versions)
            if (known := self.registry.known_capabilities(record.name))
            else None,
            health=record.health,
            reason=record.reason,
            lastSeen=timestamp(self.registry.last_seen(record)),
            joinedAt=timestamp(record.joined_at),
            credential=record.credential,
            prometheus=record.prometheus.get("url"),
            warnings=record.warnings,
            watch=self._watch_view(self.registry.watch_health(record.name)),
        )

    def _watch_view(self, watch: WatchHealth) -> WatchView:
        return WatchView(
            state=watch.state,
            error=self._scrub(watch.error),
            restarts=watch.restarts,
            lastError=self._scrub(watch.last_error),
            lastErrorAt=timestamp(watch.failed_at),
        )

    def _scrub(self, text: str | None) -> str | None:
        return self.registry.scrubber.scrub(text) if text else text

    # join and labels: the registry's, answered in the public shape

    async def join(
        self,
        document: dict[str, Any],
        *,
        source: str,
        name: str | None,
        labels: dict[str, str],
        prometheus: dict[str, str] | None = None,
    ) -> MemberView:
        record = await self.registry.join(
            document, source=source, name=name, labels=labels, prometheus=prometheus
        )
        self._enrollment.changed()
        return self.view(record)

    def set_prometheus(self, name: str, prometheus: dict[str, str]) -> MemberView:
        return self.view(self.registry.set_prometheus(name, prometheus))

    def label(self, name: str, add: dict[str, str], remove: list[str]) -> MemberView:
        record = self.registry.label(name, add, remove)
        self._enrollment.changed()
        return self.view(record)

    # rename

    async def rename(self, old: str, new: str) -> MemberView:
        """Rename `old`, keeping its uid, and everything the hub knows of it attached."""
        check_name(new)
        self.registry.store.cluster(old)  # NotFound before anything stops
        if new != old and new in {c.name for c in self.registry.clusters()}:
            raise Conflict(f"cluster {new!r} is already registered; pick another name")
        holdings = self._apps.holdings(old)
        stopped = await self._stop_runners(holdings)
        try:
            record = await self.registry.rename(old, new)
        finally:
            self._start_runners(stopped)
        for holding in holdings:
            self._apps.add_event(holding.app, f"cluster {old} renamed to {new}")
        self._enrollment.changed()  # a topology that names clusters may no longer match
        return self.view(record)

    # detach

    async def detach(self, name: str, releases: HeldReleases) -> dict[str, Any]:
        """Detach `name`; what applications hold there is refused, deleted or forgotten."""
        record = self.registry.store.cluster(name)
        holdings = self._apps.holdings(name)
        if holdings and releases is HeldReleases.REFUSE:
            raise Conflict(
                f"cluster {name!r} still holds {_describe(holdings)}; nothing was detached. "
                "Detach with --delete-releases to delete them from the cluster first, or "
                "--forget-releases to leave them running there and drop the hub's records"
            )
        stopped = await self._stop_runners(holdings)
        try:
            if releases is HeldReleases.DELETE:
                await self._delete_releases(name, holdings)
            late = sorted({h.app for h in self._apps.holdings(name)} - {h.app for h in holdings})
            if late:  # an `up` placed something there while we were deleting
                raise Conflict(
                    f"cluster {name!r} got releases of {', '.join(late)} meanwhile; nothing "
                    "more was done, run the detach again"
                )
            await self.registry.detach(name)
        finally:
            self._start_runners(stopped)
        done = {
            HeldReleases.DELETE: "deleted from it",
            HeldReleases.FORGET: "forgotten, left running on it",
        }.get(releases)
        for holding in holdings:
            what = f"{holding.objects} object(s)"
            self._apps.add_event(holding.app, f"cluster {name} detached; {what} {done}")
        log.info("cluster %s (uid %s) detached, releases %s", name, record.uid, releases)
        self._enrollment.changed()
        return {
            "detached": name,
            "uid": record.uid,
            "releases": releases.value if holdings else None,
            "applications": [
                {"name": h.app, "components": h.components, "objects": h.objects} for h in holdings
            ],
        }

    async def _delete_releases(self, name: str, holdings: list[Holding]) -> None:
        """Delete every inventory object of every application on `name`, each component's
        records going only once its objects are deleted; the first that fails stops it."""
        for holding in holdings:
            for component in holding.components:
                try:
                    await self.applications.deployer.remove(holding.app, name, component)
                except Exception as e:  # a cluster error, a timeout: all stop the detach
                    raise ClusterUnavailable(
                        f"cluster {name!r}: could not delete {holding.app}/{component} from "
                        f"it ({e}); nothing was detached. Retry when it answers, or detach "
                        "with --forget-releases to leave the objects there"
                    ) from e

    async def _stop_runners(self, holdings: list[Holding]) -> list[str]:
        """Stop the runners of these applications that are running; returns their names.

        A runner in the middle of a step holds the targets it deploys under the cluster's
        old name, and would write them back under it; stopped here and started again it
        reads them afresh, as after a hub restart."""
        engine = self.applications.engine
        stopped = [h.app for h in holdings if engine.running(h.app)]
        for app in stopped:
            await engine.cancel(app)
        return stopped

    def _start_runners(self, apps: list[str]) -> None:
        for app in apps:
            self.applications.engine.kick(app)


def _describe(holdings: list[Holding]) -> str:
    """`applications shop (7 objects), web (not deployed yet)`"""
    parts = [
        f"{h.app} ({h.objects} objects)" if h.components else f"{h.app} (not deployed yet)"
        for h in holdings
    ]
    return f"application{'s' if len(parts) > 1 else ''} {', '.join(parts)}"
