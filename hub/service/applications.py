"""Applications: the verbs behind `plan`, `up`, `workflow ...`, `history`, `delete`, `ls`.

A file is checked completely before anything is stored: the spec, placement against the
registered clusters, the charts, every target's values against its chart's schema, and a
render of every target. Only a file that passes becomes a revision; the engine then drives
that revision in the background.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from clusters.errors import ClusterError
from hub.charts import ChartCache, ChartPin, ChartRef
from hub.errors import ClusterUnavailable, Conflict, FlotillaError, InvalidInput, NotFound
from hub.fleet.registry import Registry
from hub.format import Application, DeployStep, SuspendStep, load_application
from hub.model.phases import AppPhase, Outcome, StepPhase, StepType, Verdict
from hub.model.records import EventRecord, StepRecord, TargetRecord
from hub.model.settings import DEFAULTS, Settings
from hub.model.timestamps import timestamp
from hub.model.views import (
    AppList,
    AppRow,
    DiffView,
    EventList,
    EventView,
    HistoryView,
    PlanView,
    StatusView,
)
from hub.service.diff import Differ
from hub.service.enrollment import Enrollment, target_record
from hub.service.memo import StatusMemo
from hub.service.ownership import Takeover, takeovers
from hub.service.planner import (
    Inventory,
    PlannedTarget,
    RevisionPins,
    failures,
    plan,
    prune_refusal,
    pruned,
)
from hub.service.plans import plan_view
from hub.state.interface import ClusterStore
from hub.tasks import Supervisor, first_line
from hub.workflow.analysis import Analyses
from hub.workflow.deploy import Deployer
from hub.workflow.engine import Engine, Judged, every_app
from hub.workflow.keeper import Keeper
from hub.workflow.signals import Signals
from hub.workflow.verbs import Verbs

log = logging.getLogger(__name__)


def spec_digest(document: Any) -> str:
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class Applications:
    def __init__(
        self,
        store: ClusterStore,
        registry: Registry,
        charts: ChartCache,
        *,
        supervisor: Supervisor,
        settings: Settings = DEFAULTS,
        deployed: Callable[[TargetRecord, float], None] | None = None,
        owns: Callable[[str], bool] = every_app,
    ) -> None:
        """`supervisor` runs the workflow runners, one per application (hub.workflow.engine);
        `deployed` is told how long each target took to become healthy (the hub's metrics);
        `owns` says which applications this hub drives, when several share the store
        (hub.service.replicas): only those are run, placed and healed here."""
        self.apps = store.apps(settings)
        self.registry = registry
        self.charts = charts
        self.settings = settings
        # One signal path from the workflow verbs to every waiter: the engine's and the
        # canaries'.
        signals = Signals()
        self.analyses = Analyses(
            self.apps, registry, signals=signals, application=self._application, settings=settings
        )
        self.deployer = Deployer(
            self.apps,
            registry,
            charts,
            signals=signals,
            analysed=self.analyses.passed,
            apply_once=lambda app, revision: self._application(app, revision).apply_once,
            step_timeout=settings.step_timeout,
            deployed=deployed,
        )
        self.engine = Engine(
            self.apps,
            deploy=self.deployer,
            order=self._order,
            step_settings=self._settings,
            after_success=self._collect_garbage,
            analyse_pause=self._analyse_pause,
            check_metrics=self._check_metrics,
            remove=self._remove,
            supervisor=supervisor,
            signals=signals,
            fanout=settings.fanout,
            step_timeout=settings.step_timeout,
            owns=owns,
        )
        self.verbs = Verbs(self.engine)
        # Placement follows the fleet: told of fleet changes by hub.service.clusters.
        self.enrollment = Enrollment(
            self.apps, registry, charts, self.deployer, supervisor=supervisor, owns=owns
        )
        self.keeper = Keeper(
            self.apps,
            registry,
            self.deployer,
            application=self._application,
            supervisor=supervisor,
            settings=settings,
            owns=owns,
        )
        self._statuses = StatusMemo(self.apps, registry, self.analyses, self.keeper.drift)

    async def stop(self) -> None:
        """Stop every runner and the enrollment, then close what they measured with."""
        await self.engine.stop()
        await self.enrollment.stop()
        await self.analyses.close()

    # metric analysis: the engine's questions, answered by `hub.workflow.analysis`

    async def _analyse_pause(
        self, app: str, revision: int, step: str, paused: list[TargetRecord]
    ) -> Judged | None:
        """The analysis of a canary pause; when it fails on any cluster, every canary of
        the step is rolled back, on every cluster, before the step fails."""
        verdict = await self.analyses.pause(app, revision, step, paused)
        if verdict is None:
            return None
        if verdict.verdict in (Verdict.FAILED, Verdict.ERRORED):
            self.apps.add_event(
                app,
                f"step {step}: rolling back the canary on {len(paused)} cluster(s)",
                revision=revision,
                step=step,
            )
            outcomes = await asyncio.gather(
                *(self.deployer.roll_back(t, verdict.reason) for t in paused),
                return_exceptions=True,
            )
            for target, outcome in zip(paused, outcomes, strict=True):
                if isinstance(outcome, (FlotillaError, ClusterError)):
                    self.apps.fail_target(target, f"rollback failed: {first_line(outcome)}")
                elif isinstance(outcome, BaseException):
                    raise outcome
        return Judged(verdict.verdict, verdict.reason)

    async def _check_metrics(self, app: str, revision: int, step: StepRecord) -> Judged:
        verdict = await self.analyses.check(app, revision, step)
        return Judged(verdict.verdict, verdict.reason)

    # reading revisions back

    def _application(self, app: str, revision: int) -> Application:
        return _parse_stored(json.dumps(self.apps.revision(app, revision).spec))

    def _order(self, app: str, revision: int) -> list[list[str]]:
        return self._application(app, revision).to_placement().workflow.generations()

    def _settings(
        self, app: str, revision: int, step: str
    ) -> tuple[bool, int | None, float | None]:
        workflow = self._application(app, revision).spec.workflow
        for candidate in workflow.steps if workflow else []:
            if candidate.name != step:
                continue
            if isinstance(candidate, SuspendStep):
                return True, None, candidate.properties.seconds
            if isinstance(candidate, DeployStep):
                props = candidate.properties
                parallelism = props.parallelism if "parallelism" in props.model_fields_set else None
                return props.auto, parallelism, None
        return True, None, None

    # plan and up

    async def _plan(
        self, text: str, source: str, base: Path
    ) -> tuple[Application, list[PlannedTarget]]:
        app = load_application(text, source)
        planned = await plan(
            app,
            source,
            self.registry.clusters(),
            self.charts,
            base=base,
            capabilities=self.registry.capabilities,
        )
        return app, planned

    async def plan(self, text: str, source: str, base: Path, explain: str | None) -> PlanView:
        app, planned = await self._plan(text, source, base)
        inventory = self.apps.inventory(app.metadata.name)
        takeovers = await self._takeovers(app, planned, inventory)
        return plan_view(app, planned, explain, pruned(planned, inventory), takeovers)

    async def up(
        self,
        text: str,
        source: str,
        base: Path,
        *,
        allow_prune: bool = False,
        take_ownership: bool = False,
    ) -> dict[str, Any]:
        """`allow_prune`: deploy even if the revision would empty a release on a cluster, or
        delete more than half of its objects (refused otherwise, nothing stored).
        `take_ownership`: deploy even if a first deploy would take fields over from another
        field manager (`hub.service.ownership`; refused otherwise, nothing stored)."""
        app, planned = await self._plan(text, source, base)
        problems = failures(planned)
        if problems:
            raise InvalidInput(f"{source}: nothing was deployed:\n{problems}")
        name = app.metadata.name
        inventory = self.apps.inventory(name)
        refused = prune_refusal(pruned(planned, inventory), inventory)
        if refused and not allow_prune:
            raise InvalidInput(
                f"{source}: nothing was deployed: the new revision would delete most of a "
                f"release (pass --allow-prune if it should):\n{refused}"
            )
        document = app.model_dump(mode="json", by_alias=True, exclude_unset=True)
        digest = spec_digest(document)
        try:
            current = self.apps.app(name)
        except NotFound:
            current = None
        if (
            current is not None
            and self.apps.revision(name, current.revision).digest == digest
            and self._pins(name, current.revision).charts == _pins_of(planned)
        ):
            return {
                "name": name,
                "revision": current.revision,
                "created": False,
                "phase": current.phase,
                "message": f"revision {current.revision} already has this spec; nothing to do",
            }
        if not take_ownership:
            takeovers = await self._takeovers(app, planned, inventory)
            if takeovers:
                lines = "\n".join(t.line for t in takeovers)
                raise InvalidInput(
                    f"{source}: nothing was deployed: objects on the clusters belong to other "
                    f"field managers:\n{lines}"
                )
        return self._create(app, planned, source, base, digest, document, rollback_of=None)

    async def _takeovers(
        self, app: Application, planned: list[PlannedTarget], inventory: Inventory
    ) -> list[Takeover]:
        """What the first deploys of the plan would take over from other field managers."""
        name = app.metadata.name
        revision = self._next_revision(name)
        return await takeovers(name, planned, inventory, self.registry, revision=revision)

    def _next_revision(self, name: str) -> int:
        """The number `up` would give the application's next revision."""
        try:
            return self.apps.app(name).revision + 1
        except NotFound:
            return 1

    async def diff(self, text: str, source: str, base: Path, cluster: str | None) -> DiffView:
        """What `up` of the file would change on each cluster (or on `cluster`)."""
        app, planned = await self._plan(text, source, base)
        name = app.metadata.name
        revision = self._next_revision(name)
        differ = Differ(self.apps.inventory(name), self.registry, cluster=cluster)
        return await differ.of_plan(app, planned, source=source, revision=revision)

    async def drift(self, name: str, revision: int | None, cluster: str | None) -> DiffView:
        """How the clusters drifted from `revision` (the application's current one by
        default): what re-applying its stored targets would change."""
        number = self.apps.app(name).revision if revision is None else revision
        app = self._application(name, number)  # NotFound for a revision never stored
        differ = Differ(self.apps.inventory(name), self.registry, cluster=cluster)
        targets = self.apps.targets(name, number)
        return await differ.of_revision(app, number, targets, self.deployer.render)

    def _pins(self, name: str, revision: int) -> RevisionPins:
        return RevisionPins.of(revision, self.apps.targets(name, revision))

    def _create(
        self,
        app: Application,
        planned: list[PlannedTarget],
        source: str,
        base: Path,
        digest: str,
        document: dict[str, Any],
        rollback_of: int | None,
    ) -> dict[str, Any]:
        name = app.metadata.name
        workflow = app.to_placement().workflow
        kinds = _step_types(app)
        steps = [(s.name, kinds.get(s.name, StepType.DEPLOY)) for s in workflow.steps]
        targets = [target_record(name, 0, p) for p in planned]
        revision = self.apps.create_revision(
            name,
            spec=document,
            digest=digest,
            publish_version=app.publish_version or "",
            source=source,
            base=str(base),
            steps=steps,
            targets=targets,
            rollback_of=rollback_of,
        )
        if rollback_of is not None:
            # A rollback is the way back to a known good state: no approval gate holds it.
            for step_name, kind in steps:
                auto = self._settings(name, revision.number, step_name)[0]
                if kind is StepType.SUSPEND or not auto:
                    self.apps.set_step(name, revision.number, step_name, phase=StepPhase.APPROVED)
        what = f"rollback to revision {rollback_of}" if rollback_of else "new spec"
        self.apps.add_event(
            name, f"revision {revision.number} created ({what})", revision=revision.number
        )
        self.engine.kick(name)
        return {
            "name": name,
            "revision": revision.number,
            "created": True,
            "phase": AppPhase.RUNNING,
            "message": f"revision {revision.number} accepted; the hub is deploying it",
        }

    # workflow verbs

    def resume(self, name: str) -> dict[str, Any]:
        """Confirm the removals the blast-radius guard holds, if it holds any (that alone:
        a second resume is for the workflow); else resume the workflow."""
        if self.enrollment.confirm(name):
            resumed = "confirmed the removal the blast-radius guard held"
        else:
            resumed = self.verbs.resume(name)
            self.enrollment.changed(name)  # what waited while it was suspended
        return {"name": name, "resumed": resumed, "revision": self.apps.app(name).revision}

    def suspend(self, name: str) -> dict[str, Any]:
        self.verbs.suspend(name)
        return {"name": name, "suspended": True}

    def restart(self, name: str) -> dict[str, Any]:
        self.verbs.restart(name)
        return {"name": name, "restarted": True}

    async def rollback(self, name: str, revision: int | None) -> dict[str, Any]:
        record = self.apps.app(name)
        history = self.apps.revisions(name)
        if revision is None:
            good = [
                r for r in history if r.outcome == Outcome.SUCCEEDED and r.number != record.revision
            ]
            if not good:
                raise Conflict(f"application {name!r} has no earlier succeeded revision")
            revision = good[-1].number
        chosen = self.apps.revision(name, revision)
        source = f"revision {revision}"
        app = _parse_stored(json.dumps(chosen.spec))
        base = Path(chosen.base)
        # Revision N's charts as N pinned them, not what their constraints match today.
        pins = self._pins(name, revision)
        clusters = self.registry.clusters()
        planned = await plan(
            app,
            source,
            clusters,
            self.charts,
            base=base,
            pins=pins,
            capabilities=self.registry.capabilities,
        )
        problems = failures(planned)
        if problems:
            raise InvalidInput(f"cannot roll back to revision {revision}:\n{problems}")
        await self.engine.cancel(name)
        return self._create(
            app, planned, source, base, chosen.digest, chosen.spec, rollback_of=revision
        )

    async def delete(self, name: str) -> dict[str, Any]:
        """Mark the application deleted and wait until whoever drives it (this hub, or the
        replica holding its shard) has taken it off every cluster and out of the store
        (hub.workflow.engine); raises ClusterUnavailable when a cluster refused, with the
        records kept for another delete."""
        record = self.apps.app(name)
        if record.phase is not AppPhase.DELETING:
            self.apps.set_app(name, phase=AppPhase.DELETING, message="deleting from every cluster")
            self.apps.add_event(name, "deletion requested", revision=record.revision)
        self.engine.kick(name)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.step_timeout
        while True:
            try:
                record = self.apps.app(name)
            except NotFound:
                return {"deleted": name}
            if record.phase is AppPhase.FAILED:
                raise ClusterUnavailable(
                    f"application {name!r} {record.message}; its records are kept; run "
                    "delete again when the clusters answer"
                )
            if loop.time() >= deadline:
                raise ClusterUnavailable(
                    f"application {name!r} is still being deleted after "
                    f"{self.settings.step_timeout:.0f}s; `flotilla ls` shows when it is gone"
                )
            await self.engine.signals.wait(name, deadline - loop.time())

    async def _remove(self, name: str) -> None:
        """The removal the engine runs for a deleted application (`delete`): every release
        off its cluster, between its delete hooks, then the records. Every cluster is tried;
        one that refuses leaves the application failed, naming the clusters, with what is
        left of its inventory kept."""
        failed = []
        for cluster, component in sorted(self.apps.inventory(name)):
            try:
                await self.deployer.remove(name, cluster, component)
            except FlotillaError as e:
                failed.append(f"{cluster}: {first_line(e)}")
            except ClusterError as e:
                failed.append(f"{cluster}: {e}")
        if failed:
            self.apps.set_app(
                name,
                phase=AppPhase.FAILED,
                message=f"could not be removed from: {'; '.join(failed)}",
            )
            return
        self.apps.delete_app(name)
        log.info("application %s deleted from every cluster", name, extra={"app": name})

    async def _collect_garbage(self, name: str, revision: int) -> None:
        """Delete what the app left on clusters (or components) the revision no longer
        targets, unless the blast-radius guard holds it (hub.service.enrollment)."""
        await self.enrollment.collect_garbage(name, revision)

    # reads

    async def ls(self) -> AppList:
        records = self.apps.apps()
        statuses = await asyncio.gather(*(self.status(r.name) for r in records))
        rows = [
            AppRow(
                name=record.name,
                revision=record.revision,
                publishVersion=status["publishVersion"],
                phase=record.phase,
                health=status["health"],
                message=status["message"],
                updated=timestamp(record.updated_at),
            )
            for record, status in zip(records, statuses, strict=True)
        ]
        return {"applications": rows}

    def history(self, name: str) -> HistoryView:
        self.apps.app(name)
        return {
            "name": name,
            "revisions": [
                {
                    "revision": r.number,
                    "publishVersion": r.publish_version or None,
                    "created": timestamp(r.created_at),
                    "finished": timestamp(r.finished_at),
                    "outcome": r.outcome,
                    "rollbackOf": r.rollback_of,
                    "source": r.source,
                }
                for r in self.apps.revisions(name)
            ],
            "events": [event_view(e) for e in self.apps.events(name)],
        }

    def events(self, app: str | None, *, after: int, limit: int) -> EventList:
        if app is not None:
            self.apps.app(app)  # NotFound for an unknown application
        return {"events": [event_view(e) for e in self.apps.events(app, after=after, limit=limit)]}

    async def status(self, name: str) -> StatusView:
        """From the watch caches when this hub drives the application; otherwise from what
        the hub that drives it stored, which watches no cluster here."""
        return await self._statuses.status(name, owned=self.engine.owns(name))


def event_view(event: EventRecord) -> EventView:
    return {
        "id": event.id,
        "at": timestamp(event.at),
        "app": event.app,
        "revision": event.revision,
        "step": event.step,
        "cluster": event.cluster,
        "component": event.component,
        "message": event.message,
    }


def _step_types(app: Application) -> dict[str, StepType]:
    workflow = app.spec.workflow
    return {s.name: StepType(s.type) for s in workflow.steps} if workflow else {}


@lru_cache(maxsize=256)
def _parse_stored(text: str) -> Application:
    """Stored specs were valid when stored; parsed once per revision, not per step."""
    return Application.model_validate_json(text)


def _pins_of(planned: list[PlannedTarget]) -> dict[ChartRef, ChartPin]:
    """The charts a plan resolved: an unchanged file whose constraint now matches a newer
    chart is a new revision, since a revision deploys only the charts it pinned."""
    return {p.pin.requested: p.pin for p in planned if p.pin is not None}
