"""Every application's health kept in the store, for whoever reads the store alone.

The hub rolls an application's health up from its watch caches (`cached_health`, the rule
`status` and the metrics use), and nothing else can: `kubectl get
applications.flotilla.dev` on a Kubernetes store, or a tool reading the SQLite file, sees
only what is stored. So one supervised task keeps `AppRecord.health` equal to it. It wakes
when the store publishes a change of an application and whenever a watch cache changes,
passes at most once per `INTERVAL` however many changes came, and writes only the
applications whose health moved.

It writes only the applications this hub drives: several hubs may share a store, and the
owner is the one whose caches watch the application's clusters. Its writes are never
published on the store's `changes` (they are derived from what is published, and a
publish would wake this task again). A write the store cannot take now is logged once and
tried again shortly; it never stops the task, nor the other applications' writes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from hub.errors import FlotillaError
from hub.fleet.registry import Registry
from hub.service.status import cached_health
from hub.state.changes import Subscription
from hub.state.interface import AppStore
from hub.tasks import Supervisor, first_line
from hub.workflow.engine import every_app

log = logging.getLogger(__name__)

# The supervised task that keeps the stored healths.
TASK = "health"
# At most one pass a second: a rollout's status updates and a chart's objects come as
# bursts of watch events, and a health a second late is still current to a reader of the
# store, who polls it with `kubectl get` anyway.
INTERVAL = 1.0
# Seconds before a pass whose writes the store refused (a management cluster that does
# not answer) is tried again, though nothing changed meanwhile.
RETRY = 5.0


class StoredHealth:
    def __init__(
        self,
        apps: AppStore,
        registry: Registry,
        *,
        supervisor: Supervisor,
        owns: Callable[[str], bool] = every_app,
        interval: float = INTERVAL,
    ) -> None:
        """`owns` says which applications this hub drives (the engine's): only their
        health is written here."""
        self._apps = apps
        self._registry = registry
        self._supervisor = supervisor
        self._owns = owns
        self._interval = interval
        self._wake = asyncio.Event()
        self._failing = False
        """A write failed and was logged: the next failures are not, until one succeeds."""

    def start(self) -> None:
        """A pass now, and again after every change of an application or a watch cache."""
        self._registry.observer.listen(self.changed)
        self._wake.set()
        self._supervisor.spawn(TASK, self._run)

    def changed(self, _: object = None) -> None:
        """Something a health is rolled up from changed: a pass follows soon. The
        observer's listener (it names the cluster), so it only takes note."""
        self._wake.set()

    def keep(self) -> list[str]:
        """One pass: the stored health of every application this hub drives made what its
        watch caches show. Returns the applications whose health it wrote."""
        written: list[str] = []
        refused: FlotillaError | None = None
        try:
            records = [r for r in self._apps.apps() if self._owns(r.name)]
        except FlotillaError as e:
            records, refused = [], e
        for record in records:
            try:
                targets = self._apps.targets(record.name, record.revision)
                health = cached_health(self._apps, self._registry, record, targets).value
                if health != record.health:
                    self._apps.set_health(record.name, health)
                    written.append(record.name)
            except FlotillaError as e:
                refused = refused or e
        self._tell(refused)
        return written

    def _tell(self, refused: FlotillaError | None) -> None:
        """Say once that the store refuses the writes, and once that it takes them again."""
        if refused is None:
            if self._failing:
                log.info("the applications' health is kept in the store again")
            self._failing = False
            return
        if not self._failing:
            log.warning(
                "cannot keep the applications' health in the store (%s); trying again",
                first_line(refused),
            )
        self._failing = True
        asyncio.get_running_loop().call_later(RETRY, self.changed)

    async def _run(self) -> None:
        subscription = self._apps.changes.subscribe()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._hear(subscription))
                group.create_task(self._passes())
        finally:
            subscription.close()

    async def _hear(self, subscription: Subscription) -> None:
        async for _ in subscription:
            self._wake.set()

    async def _passes(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            self.keep()
            await asyncio.sleep(self._interval)  # what comes meanwhile waits for one pass
