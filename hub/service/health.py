"""Every application's health kept in the store, for whoever reads the store alone.

The hub rolls an application's health up from its watch caches (`cached_health`, the rule
`status` and the metrics use), and nothing else can: `kubectl get
applications.flotilla.dev` on a Kubernetes store, or a tool reading the SQLite file, sees
only what is stored. So one supervised task keeps `AppRecord.health` equal to it. It wakes
when the store publishes a change of an application and whenever a watch cache changes,
passes at most once per `INTERVAL` however many changes came, and writes only the
applications whose health moved. An application nothing moved under since the last pass
(hub.service.memo's `Inputs`: its rows, its clusters' records and caches, its drift) is
not rolled up again: a change of one cluster's cache wakes a pass over every application,
and rolling up a thousand targets took a quarter of a second.

It writes only the applications this hub drives: several hubs may share a store, and the
owner is the one whose caches watch the application's clusters. So, given the drift
keeper's `observe`, it also keeps what those caches and the keeper show of each object
(`ObservedRecord`): a replica that does not drive the application keeps no cache of its
clusters, and answers `status` from that (hub.service.status). An observation is written
only when it changed, ignoring when it was taken.

Its writes are never published on the store's `changes` (they are derived from what is
published, and a publish would wake this task again); other hubs sharing the store see
them through their own watch of it. A write the store cannot take now is logged once and
tried again shortly; it never stops the task, nor the other applications' writes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import NamedTuple

from hub.errors import FlotillaError
from hub.fleet.registry import Registry
from hub.model.records import AppRecord
from hub.service.memo import Fingerprint, Inputs
from hub.service.status import (
    DriftOf,
    Judged,
    Placed,
    cached_health,
    cached_objects,
    observed_record,
    placed,
)
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
# The most of the hub's time the passes take: after a pass of t seconds the next waits
# t / SHARE, when that is longer than INTERVAL (the health of a thousand targets comes a
# few seconds late, not the hub's other work).
SHARE = 0.1
# Seconds before a pass whose writes the store refused (a management cluster that does
# not answer) is tried again, though nothing changed meanwhile.
RETRY = 5.0
# Seconds before a pass that keeps observations comes again by itself while the drift
# keeper shows drift of an application driven here, or after a watch cache changed: the
# keeper looks at a change after this task does (a GET and a dry run on the cluster), and
# what it shows moves (found, healed, contested) without another cache event.
RECHECK = 3.0


class _Rolled(NamedTuple):
    """What the last pass rolled up an application from, and whether it showed drift."""

    placed: Placed
    fingerprint: Fingerprint
    drifting: bool


class StoredHealth:
    def __init__(
        self,
        apps: AppStore,
        registry: Registry,
        *,
        supervisor: Supervisor,
        owns: Callable[[str], bool] = every_app,
        observe: DriftOf | None = None,
        interval: float = INTERVAL,
        recheck: float = RECHECK,
    ) -> None:
        """`owns` says which applications this hub drives (the engine's): only theirs is
        written here. `observe`, the drift keeper's `drift`: keep observations too (hubs
        sharing a store); None: only the health (a hub alone on its store)."""
        self._apps = apps
        self._registry = registry
        self._supervisor = supervisor
        self._owns = owns
        self._observe = observe
        self._interval = interval
        self._recheck = recheck
        self._wake = asyncio.Event()
        self._failing = False
        """A write failed and was logged: the next failures are not, until one succeeds."""
        self._settling = False
        """A watch cache changed since the last pass: the keeper may show more soon."""
        self._drifting = False
        """The last pass observed drift."""
        self._again: asyncio.TimerHandle | None = None
        self._inputs = Inputs(apps, registry, observe)
        self._rolled: dict[str, _Rolled] = {}

    def start(self) -> None:
        """A pass now, and again after every change of an application or a watch cache."""
        self._registry.observer.listen(self._cache_changed)
        self._wake.set()
        self._supervisor.spawn(TASK, self._run)

    def changed(self, _: object = None) -> None:
        """Something a health is rolled up from changed: a pass follows soon."""
        self._wake.set()

    def _cache_changed(self, _: str) -> None:
        """The observer's listener (it names the cluster), so it only takes note."""
        self._settling = True
        self._wake.set()

    def keep(self) -> list[str]:
        """One pass: the stored health (and, with `observe`, observation) of every
        application this hub drives made what its watch caches show. Returns the
        applications it wrote something of."""
        written: list[str] = []
        refused: FlotillaError | None = None
        observe, self._drifting = self._observe, False
        try:
            records = [r for r in self._apps.apps() if self._owns(r.name)]
        except FlotillaError as e:
            records, refused = [], e
        rolled, self._rolled = self._rolled, {}
        for record in records:
            try:
                last = rolled.get(record.name)
                if last is not None and self._inputs.of(record.name, last.placed) == (
                    last.fingerprint
                ):
                    self._rolled[record.name] = last
                    self._drifting |= last.drifting
                    continue
                if self._roll_up(record, observe):
                    written.append(record.name)
            except FlotillaError as e:
                refused = refused or e
        self._tell(refused)
        return written

    def _roll_up(self, record: AppRecord, observe: DriftOf | None) -> bool:
        """Keep `record`'s health (and observation) as its caches show it now; whether
        anything was written."""
        targets = self._apps.targets(record.name, record.revision)
        inventory = self._apps.inventory(record.name)
        cached = cached_objects(self._registry, targets, inventory)
        health = cached_health(self._apps, self._registry, record, targets, cached).value
        wrote = health != record.health
        if wrote:
            self._apps.set_health(record.name, health)
        drifting = False
        if observe is not None:
            observed, drifting = self._keep_observed(observe, record, cached)
            wrote |= observed
        self._drifting |= drifting
        where = placed(targets, inventory)
        # After the writes, which move the store's count: the next pass finds it as it is.
        fingerprint = self._inputs.of(record.name, where)
        if fingerprint is not None:
            self._rolled[record.name] = _Rolled(where, fingerprint, drifting)
        return wrote

    def _keep_observed(
        self, observe: DriftOf, record: AppRecord, cached: Judged
    ) -> tuple[bool, bool]:
        """Store what the caches (`cached`) and the keeper show of `record`'s objects, if
        it changed; whether it did, and whether any of them drifted."""
        now = observed_record(observe, record, cached)
        drifting = any(o.drift for objects in now.releases.values() for o in objects)
        if now == self._apps.observed(record.name):
            return False, drifting
        self._apps.set_observed(record.name, now)
        return True, drifting

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
            settling, self._settling = self._settling, False
            started = time.perf_counter()
            self.keep()
            took = time.perf_counter() - started
            if self._observe is not None and (settling or self._drifting):
                self._come_again()
            # What comes meanwhile waits for one pass, and passes take at most a SHARE of
            # the hub's loop: a pass reads every target of every application it drives,
            # a quarter of a second at a thousand, which once a second during a deploy
            # to them all was a quarter of the hub's CPU.
            await asyncio.sleep(max(self._interval, took / SHARE))

    def _come_again(self) -> None:
        """One more pass `recheck` seconds from now, unless one is due already."""
        if self._again is None:
            self._again = asyncio.get_running_loop().call_later(self._recheck, self._due)

    def _due(self) -> None:
        self._again = None
        self.changed()
