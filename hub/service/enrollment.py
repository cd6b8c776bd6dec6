"""Placement follows the fleet: a cluster that joins or is relabelled so that it matches an
application gets its releases, one that stops matching loses them, and the blast-radius
guard holds a removal that would empty an environment.

`up` places a revision once, on the clusters registered then. The fleet changes under it:
a cluster joins with `env=prod`, another is relabelled or renamed. So after each such
change (`hub.service.clusters`), and once when the hub starts (for changes made while it
was down), the latest revision of every application is placed again: its stored spec
against the registry as it is now, with the charts the revision pinned, as a rollback
plans it. What differs from the targets the revision stored is acted on without a new
revision:

- a new target in a step that succeeded is stored in the revision and deployed at once,
  with no approval gate and without running the step or earlier environments again: it
  is "enrolled". A canary trait installs directly, as on any first deploy;
- a new target in a step not started yet (waiting at its gate, or failed and to be
  retried) is stored pending; the runner reads a step's targets when it runs it;
- a target to add or drop in the step that runs now, or whose canary is paused, waits
  for that step to end: changing a step under its runner would race the runner, and a
  cluster that joins a canary midway would skip its earlier steps. The step's end (a
  change in the store) starts another pass, and the hub's start-up pass covers a restart;
- a stored target whose cluster no longer matches is dropped from the revision and its
  release removed through the prune path (`Deployer.remove`).

The guard: removals that would take an application off more than half of an
environment's (a deploy step's) clusters, or off its last one, are not made. They are
stored as a hold (so a restarted hub neither forgets nor acts on them), the status says
why, and `workflow resume` confirms them. The garbage collection after a new revision
succeeded (a selector changed in the file) passes the same guard.

Passes run in one supervised task, coalesced (one pass after a burst of changes), never
in the API call that reported the change. Applications being deleted, or suspended by the
operator, are left alone until they are resumed.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clusters.errors import ClusterError
from hub.charts import ChartCache
from hub.errors import FlotillaError, NotFound
from hub.fleet.registry import Registry
from hub.format import Application
from hub.model.phases import AppPhase, Outcome, StepPhase, TargetPhase
from hub.model.records import AppRecord, TargetRecord
from hub.service.planner import PlannedTarget, RevisionPins, plan
from hub.state.changes import Subscription
from hub.state.interface import AppStore, Hold
from hub.tasks import Supervisor, first_line
from hub.workflow.deploy import Deployer
from hub.workflow.engine import every_app
from placement.targets import Target

log = logging.getLogger(__name__)

# The supervised task that runs the passes.
TASK = "enrollment"
# Seconds a burst of fleet changes (a script labelling ten clusters) settles for before
# the pass, so that the burst costs one pass and not ten.
SETTLE = 0.5
# Steps whose targets only their runner changes: new or dropped ones wait for the end.
BUSY = frozenset({StepPhase.RUNNING, StepPhase.PAUSED, StepPhase.RESUMED})

Key = tuple[str, str, str]
"""(step, cluster, component): one target of a revision."""


@dataclass(frozen=True)
class Release:
    """One release to remove: `unmatched` when its cluster no longer matches the topology,
    else the revision no longer targets it (a changed file)."""

    cluster: str
    component: str
    unmatched: bool


def target_record(app: str, revision: int, planned: PlannedTarget) -> TargetRecord:
    """The stored, not yet deployed, target of a planned one."""
    target = planned.target
    return TargetRecord(
        app=app,
        revision=revision,
        step=target.step,
        cluster=target.cluster,
        component=target.component,
        namespace=target.namespace,
        release=target.release_name,
        chart=planned.chart_label,
        spec=planned.spec,
        phase=TargetPhase.PENDING,
    )


def blast_radius(before: Mapping[str, set[str]], after: Mapping[str, set[str]]) -> list[str]:
    """Why going from the clusters in `before` to those in `after` (by deploy step) removes
    too much: more than half of a step's clusters, or its last one. Empty: it may go on."""
    reasons = []
    for step, clusters in sorted(before.items()):
        gone = clusters - after.get(step, set())
        if not gone:
            continue
        names = ", ".join(sorted(gone))
        if not after.get(step):
            reasons.append(f"step {step} would be left on no cluster (removed from {names})")
        elif 2 * len(gone) > len(clusters):
            reasons.append(
                f"step {step} would lose {len(gone)} of its {len(clusters)} clusters ({names})"
            )
    return reasons


class Enrollment:
    def __init__(
        self,
        apps: AppStore,
        registry: Registry,
        charts: ChartCache,
        deployer: Deployer,
        *,
        supervisor: Supervisor,
        settle: float = SETTLE,
        owns: Callable[[str], bool] = every_app,
    ) -> None:
        """`owns` says which applications this hub drives (the engine's): it places only
        theirs."""
        self.apps = apps
        self._owns = owns
        self.registry = registry
        self.charts = charts
        self.deployer = deployer
        self._supervisor = supervisor
        self._settle = settle
        self._everyone = False
        self._due: set[str] = set()
        self._wake = asyncio.Event()
        self._waiting: dict[str, tuple[int, frozenset[str]]] = {}
        """Applications with a change that waits for busy steps: its revision, the steps."""
        self._said: set[tuple[str, int, str]] = set()
        """(application, revision, message) of events that every pass would repeat."""

    def changed(self, app: str | None = None) -> None:
        """The fleet changed (None: any application may be concerned), or `app` was
        resumed: a pass follows soon, in the background."""
        if app is None:
            self._everyone = True
        else:
            self._due.add(app)
        self._wake.set()
        self._supervisor.spawn(TASK, self._serve)

    async def stop(self) -> None:
        await self._supervisor.cancel(TASK)

    # the guard's holds: what `workflow resume` confirms

    def confirm(self, name: str) -> bool:
        """Confirm the removals held for `name` (they run in the next pass); False when
        nothing is held."""
        hold = self.apps.hold(name)
        if hold is None:
            return False
        self.apps.confirm_hold(name)
        self.apps.add_event(
            name,
            f"removal from {_clusters(hold.removals)} confirmed by the operator",
            revision=hold.revision,
        )
        self.changed(name)
        return True

    # the passes

    async def _serve(self) -> None:
        subscription = self.apps.changes.subscribe()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._watch_steps(subscription))
                group.create_task(self._passes())
        finally:
            subscription.close()

    async def _passes(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self._settle)
            self._wake.clear()
            names = [a.name for a in self.apps.apps()] if self._everyone else sorted(self._due)
            self._everyone, self._due = False, set()
            for name in names:
                try:
                    await self.reconcile(name)
                except NotFound:
                    continue  # deleted meanwhile
                except Exception:  # a bug with one application must not stop the others'
                    log.exception("placement of %s could not follow the fleet", name)

    async def _watch_steps(self, subscription: Subscription) -> None:
        """Another pass for an application whose change waited for busy steps, once one
        of them is no longer busy or a newer revision replaced them."""
        async for change in subscription:
            waiting = self._waiting.get(change.app)
            if waiting is None or self._still_busy(change.app, *waiting):
                continue
            del self._waiting[change.app]
            self._due.add(change.app)
            self._wake.set()

    def _still_busy(self, app: str, revision: int, steps: frozenset[str]) -> bool:
        try:
            if self.apps.app(app).revision != revision:
                return False
        except NotFound:
            return False
        phases = {s.name: s.phase for s in self.apps.steps(app, revision)}
        return all(phases.get(step) in BUSY for step in steps)

    async def reconcile(self, name: str) -> None:
        """Place the latest revision of `name` on the fleet as it is now, and act on what
        differs from the targets it stored (the module docstring)."""
        record = self.apps.app(name)
        if _left_alone(record) or not self._owns(name):
            return
        revision = record.revision
        placed = await self._place(name, revision)
        record = self.apps.app(name)  # as it is now, after the await
        if placed is None or _left_alone(record) or record.revision != revision:
            return  # a newer revision `up` stored was placed on this same fleet
        # Nothing is awaited from here until every record is written: no runner can start
        # a step between this read of its phase and the change of what it deploys.
        phases = {s.name: s.phase for s in self.apps.steps(name, revision)}
        stored = {_key(t): t for t in self.apps.targets(name, revision)}
        busy = {step for step, phase in phases.items() if phase in BUSY}
        new = [p for key, p in placed.items() if key not in stored]
        gone = [t for key, t in stored.items() if key not in placed]
        self._wait_for(name, revision, busy, new, gone)
        self._store(name, revision, [p for p in new if p.target.step not in busy], phases)
        releases = self._collect(
            name,
            revision,
            [t for t in gone if t.step not in busy],
            everything=self.apps.revision(name, revision).outcome is Outcome.SUCCEEDED,
        )
        due = [
            t
            for t in self.apps.targets(name, revision)
            if phases.get(t.step) is StepPhase.SUCCEEDED and t.phase is not TargetPhase.HEALTHY
        ]
        async with asyncio.TaskGroup() as group:
            for target in due:
                group.create_task(self._enrol(target))
        await self._remove(name, revision, releases)

    async def collect_garbage(self, name: str, revision: int) -> None:
        """After `revision` succeeded: remove what the application has on clusters (or of
        components) that the revision no longer targets, through the guard."""
        await self._remove(name, revision, self._collect(name, revision, [], everything=True))

    async def _place(self, name: str, revision: int) -> dict[Key, PlannedTarget] | None:
        """The revision's targets on the fleet as it is now; None (said in an event) when
        its spec no longer places, e.g. a topology naming a cluster that was detached."""
        stored = self.apps.revision(name, revision)
        app = Application.model_validate_json(json.dumps(_allowing_empty(stored.spec)))
        pins = RevisionPins.of(revision, self.apps.targets(name, revision))
        try:
            planned = await plan(
                app,
                f"revision {revision}",
                self.registry.clusters(),
                self.charts,
                base=Path(stored.base),
                revision=revision,
                pins=pins,
                capabilities=self.registry.capabilities,
            )
        except FlotillaError as e:
            self._say_once(
                name, f"placement cannot follow the fleet: {first_line(e)}", revision=revision
            )
            return None
        return {_key(p.target): p for p in planned}

    def _wait_for(
        self,
        name: str,
        revision: int,
        busy: set[str],
        new: list[PlannedTarget],
        gone: list[TargetRecord],
    ) -> None:
        """Remember (and say) what waits for a busy step to end."""
        waits = [(p.target.step, p.target.cluster, p.target.component, True) for p in new]
        waits += [(t.step, t.cluster, t.component, False) for t in gone]
        steps = frozenset(step for step, *_ in waits if step in busy)
        if not steps:
            self._waiting.pop(name, None)
            return
        self._waiting[name] = (revision, steps)
        for step, cluster, component, joins in waits:
            if step in steps:
                what = "enrolled" if joins else "removed from it (no longer matches)"
                self._say_once(
                    name,
                    f"{cluster}/{component}: {what} once step {step} ends; it is under way",
                    revision=revision,
                    step=step,
                    cluster=cluster,
                    component=component,
                )

    def _store(
        self,
        name: str,
        revision: int,
        new: list[PlannedTarget],
        phases: Mapping[str, StepPhase],
    ) -> None:
        """Store the new targets in the revision: pending, the ones in a succeeded step to
        be deployed by this pass and the others by the runner when it gets there."""
        records, pending = [], []
        for planned in new:
            target = planned.target
            if planned.error:
                self._say_once(
                    name,
                    f"{target.cluster}/{target.component}: cannot be enrolled: {planned.error}",
                    revision=revision,
                    step=target.step,
                    cluster=target.cluster,
                    component=target.component,
                )
                continue
            record = target_record(name, revision, planned)
            if phases.get(target.step) is StepPhase.SUCCEEDED:
                record.message = "enrolling"
            else:
                record.message = f"enrolled: deployed when step {target.step} runs"
                pending.append(record)
            records.append(record)
        if records:
            self.apps.add_targets(name, revision, records)
        for record in pending:
            self.apps.add_target_event(
                record, f"{record.cluster}/{record.component}: {record.message}"
            )

    async def _enrol(self, target: TargetRecord) -> None:
        """Deploy a target of a succeeded step: no gate, no step run again."""
        where = f"{target.cluster}/{target.component}"
        try:
            deployed = await self.deployer(target)
        except (FlotillaError, ClusterError) as e:
            message = str(e) if isinstance(e, FlotillaError) else first_line(e)
            self.apps.fail_target(target, f"enrolment failed: {message}")
            return
        if not deployed:
            # A canary started: the cluster still has objects of an older revision of the
            # application (a removal that failed). No step of the workflow will resume it.
            self.apps.add_target_event(
                target, f"{where}: enrolled, but its canary waits (an older release is there)"
            )
            return
        target.message = f"enrolled at revision {target.revision}"
        self.apps.put_target(target)
        self.apps.add_target_event(
            target, f"{where}: enrolled at revision {target.revision}, without a new revision"
        )

    def _collect(
        self, name: str, revision: int, gone: list[TargetRecord], *, everything: bool
    ) -> list[Release]:
        """Decide the removals: the `gone` targets' releases, and with `everything` any
        release of the application that the revision does not target. The guard holds
        them; or else the records go now, before anything is awaited, and the releases
        to remove from their clusters are returned."""
        targets = self.apps.targets(name, revision)
        dropped = {_key(t) for t in gone}
        kept = [t for t in targets if _key(t) not in dropped]
        wanted = {(t.cluster, t.component) for t in kept}
        unmatched = {(t.cluster, t.component) for t in gone}
        stale = {
            key: held_at
            for key, (held_at, _) in self.apps.inventory(name).items()
            if key not in wanted and (everything or key in unmatched)
        }
        removals = frozenset(stale) | unmatched
        hold = self.apps.hold(name)
        if not removals:
            if hold is not None:
                self.apps.drop_hold(name)
                self.apps.add_event(name, "hold lifted: nothing is to be removed any more")
            return []
        before = _by_step((t.step, t.cluster) for t in targets)
        for (cluster, component), held_at in stale.items():
            step = self._step_of(name, revision, held_at, cluster, component, targets)
            before.setdefault(step, set()).add(cluster)
        reasons = blast_radius(before, _by_step((t.step, t.cluster) for t in kept))
        if reasons and not (hold and hold.confirmed and removals <= hold.removals):
            self._hold(name, revision, removals, reasons, hold)
            return []
        if hold is not None:
            self.apps.drop_hold(name)
        for target in gone:
            self.apps.drop_target(target)
            if (target.cluster, target.component) not in stale:  # nothing deployed there
                self._removed(name, target.cluster, target.component, revision)
        return [Release(c, k, (c, k) in unmatched) for c, k in sorted(stale)]

    async def _remove(self, name: str, revision: int, releases: list[Release]) -> None:
        for release in releases:
            cluster, component = release.cluster, release.component
            try:
                await self.deployer.remove(name, cluster, component)
            except (FlotillaError, ClusterError) as e:  # kept in the inventory: retried
                self.apps.add_event(
                    name,
                    f"could not remove {component} from {cluster}: {first_line(e)}",
                    revision=revision,
                    cluster=cluster,
                    component=component,
                )
                continue
            if release.unmatched:
                self._removed(name, cluster, component, revision)
            else:
                self.apps.add_event(
                    name,
                    f"removed {component} from {cluster} (no longer targeted)",
                    revision=revision,
                    cluster=cluster,
                    component=component,
                )

    def _removed(self, name: str, cluster: str, component: str, revision: int) -> None:
        self.apps.add_event(
            name,
            f"removed from {cluster}: no longer matches the topology",
            revision=revision,
            cluster=cluster,
            component=component,
        )

    def _hold(
        self,
        name: str,
        revision: int,
        removals: frozenset[tuple[str, str]],
        reasons: list[str],
        previous: Hold | None,
    ) -> None:
        if previous is not None and (previous.revision, previous.removals) == (revision, removals):
            return  # held already, and said so
        reason = (
            f"held by the blast-radius guard: {'; '.join(reasons)}; "
            f"`flotilla workflow resume {name}` confirms the removal"
        )
        self.apps.put_hold(Hold(name, revision, removals, reason))
        self.apps.add_event(name, reason, revision=revision)

    def _step_of(
        self,
        name: str,
        revision: int,
        held_at: int,
        cluster: str,
        component: str,
        targets: list[TargetRecord],
    ) -> str:
        """The environment a release belongs to: the step of its target, in this
        revision, or else in the revision its inventory says the cluster runs."""
        if held_at != revision:
            targets = self.apps.targets(name, held_at)
        found = (t.step for t in targets if (t.cluster, t.component) == (cluster, component))
        return next(found, f"of revision {held_at}")

    def _say_once(self, name: str, message: str, *, revision: int, **where: Any) -> None:
        if (name, revision, message) not in self._said:
            self._said.add((name, revision, message))
            self.apps.add_event(name, message, revision=revision, **where)


def _left_alone(record: AppRecord) -> bool:
    """Being deleted, or suspended by the operator: no pass touches it until resumed."""
    return record.phase is AppPhase.DELETING or record.suspend


def _key(target: TargetRecord | Target) -> Key:
    return (target.step, target.cluster, target.component)


def _by_step(pairs: Iterable[tuple[str, str]]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for step, cluster in pairs:
        found.setdefault(step, set()).add(cluster)
    return found


def _clusters(removals: Iterable[tuple[str, str]]) -> str:
    return ", ".join(sorted({cluster for cluster, _ in removals}))


def _allowing_empty(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec with every topology allowed to match no cluster: a fleet change that
    empties an environment is for the guard to hold, not a spec error."""
    document = copy.deepcopy(spec)
    for policy in document.get("spec", {}).get("policies") or []:
        if policy.get("type") == "topology":
            policy.setdefault("properties", {})["allowEmpty"] = True
    return document
