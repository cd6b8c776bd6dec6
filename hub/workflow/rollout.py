"""The canary of one target, driven from the hub: kruise-rollout's behaviour, no controller.

`hub.canary` says which objects each stage applies and deletes (pure); this module runs
those phases against the member cluster and persists how far it got after every phase
(`phases_done`, then the stage), so a hub killed at any point repeats at most the one
idempotent phase it was in. Lock-step across the clusters
of an environment comes from the engine: a target returns PAUSED when its canary step is
ready, and the deploy step suspends only once every target has returned.

A timed pause (`pause.duration`) waits here instead, on the engine's `Signals` with the
time left as its timeout: `resume` (which approves the pause in the store) and `suspend`
wake it at once, and it reads the store again. Nothing polls the store on a timer.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from clusters.apply import AppliedRef, apply, delete
from clusters.client import ClusterClient
from clusters.health import Health, HealthStatus
from hub.canary import (
    CanaryError,
    CanaryPlan,
    CanaryState,
    Event,
    Phase,
    Stage,
    Wait,
    advance,
)
from hub.fleet.objects import labelled, ref_dict, ref_of
from hub.format import ROLLOUT_TRAIT, KruiseRolloutProperties, trait_properties
from hub.model.phases import TargetPhase
from hub.model.records import RolloutRecord, TargetRecord
from hub.model.timestamps import timestamp
from hub.model.views import RolloutView
from hub.state.interface import AppStore
from hub.workflow.reads import (
    applied_versions,
    canary_pod_trouble,
    canary_ready,
    changed_workload,
    stable_template_hash,
)
from hub.workflow.signals import Signals
from hub.workflow.waiting import Waits

# While a step waits for a ReplicaSet to settle before it can pin the stable Service.
SETTLE_INTERVAL = 1.0


class CanaryOutcome(enum.Enum):
    NONE = "none"  # not a canary: the caller applies the release as usual
    PAUSED = "paused"  # this target's canary step is ready and waits for resume
    COMPLETED = "completed"  # the canary finished; the caller applies the release as usual


class Rollouts:
    def __init__(
        self,
        apps: AppStore,
        *,
        step_timeout: float,
        waits: Waits,
        signals: Signals,
        analysed: Callable[[TargetRecord, int], bool],
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`signals` wake a timed pause when an operator acts; `analysed(target, step)`
        says whether the metric analysis of canary step `step` has passed on every cluster
        of the target's workflow step (true when there is none); `clock` gives the epoch
        seconds stored as its `resume_at` (the wall clock, so that the deadline survives a
        hub restart); tests give a virtual one."""
        self.apps = apps
        self.analysed = analysed
        self.step_timeout = step_timeout
        self.waits = waits
        self.signals = signals
        self.clock = clock

    async def run(
        self,
        target: TargetRecord,
        objects: list[dict[str, Any]],
        client: ClusterClient,
        *,
        resumed: bool,
        first_deploy: bool,
    ) -> CanaryOutcome:
        """Start or continue this revision's canary on the target, as far as it goes."""
        props = _trait(target)
        record = self.apps.rollout(target.app, target.cluster, target.component)
        if record is not None and record.revision != target.revision:
            record = None  # a stale canary was backed out by `abort_stale`
        if record is not None and record.stage is Stage.ROLLED_BACK:
            # Analysis rolled this canary back and the workflow is retried: start afresh.
            self.apps.drop_rollout(target.app, target.cluster, target.component)
            record = None
        if record is None:
            if props is None or first_deploy:
                return CanaryOutcome.NONE
            workload = await changed_workload(client, objects, target.namespace)
            if workload is None:
                return CanaryOutcome.NONE
            record = RolloutRecord(
                app=target.app,
                cluster=target.cluster,
                component=target.component,
                revision=target.revision,
                kind=workload[0],
                name=workload[1],
                stage=Stage.UPGRADING,
                step=0,
            )
            self.apps.put_rollout(record)
            self.apps.add_target_event(
                target,
                f"{target.cluster}: canary of {record.kind} {record.name} starts",
            )
        assert props is not None
        plan = CanaryPlan.of(objects, record.kind, record.name, props.canary, target.namespace)
        others = [o for o in objects if not plan.manages(o)]
        await self._apply(target, client, others)
        state = CanaryState(Stage(record.stage), record.step)
        if resumed and state.stage is Stage.PAUSED:  # the resume is for this pause only
            state = self._save(record, advance(state, Event.RESUME, len(plan.steps)))
        while True:
            if state.stage is Stage.COMPLETED:  # kept, so that status can say so
                return CanaryOutcome.COMPLETED
            app = self.apps.app(target.app)
            if app.suspend or app.revision != target.revision:
                # `workflow suspend` freezes it here; a newer revision takes over from here.
                return CanaryOutcome.PAUSED
            if state.stage is Stage.PAUSED:
                if not self.analysed(target, state.step):
                    # The engine measures every cluster of the step together, then runs
                    # this again: the pause's time or approval counts after that.
                    return CanaryOutcome.PAUSED
                timed = plan.steps[state.step].pause_seconds is not None
                if props.auto or self._due(record) or (timed and self._approved(record)):
                    state = self._save(record, advance(state, Event.RESUME, len(plan.steps)))
                    continue
                if not timed:
                    # The engine resumes every cluster of the step together, approved or not.
                    return CanaryOutcome.PAUSED
                # Until the pause is due or an operator acts; then read the store again.
                await self.signals.wait(target.app, (record.resume_at or 0) - self.clock())
                continue
            stable_hash = await self._stable_hash(client, plan, target.namespace, record)
            try:
                phases = plan.phases(state, stable_hash=stable_hash)
            except CanaryError:
                if stable_hash is None:  # a rollout still under way: wait for it to settle
                    await asyncio.sleep(SETTLE_INTERVAL)
                    continue
                raise
            self._mark(target, f"canary step {state.step + 1}/{len(plan.steps)}: {state.stage}")
            for index, phase in enumerate(phases):
                if index < record.phases_done:
                    continue  # done before this runner started: never twice
                await self._run_phase(target, client, phase, record)
                record.phases_done = index + 1
                self.apps.put_rollout(record)
            state = advance(state, Event.DONE, len(plan.steps))
            if state.stage is Stage.PAUSED:
                pause = plan.steps[state.step].pause_seconds
                record.resume_at = self.clock() + pause if pause is not None else None
            self._save(record, state)

    async def abort_stale(
        self,
        target: TargetRecord,
        objects: list[dict[str, Any]],
        client: ClusterClient,
        render: Any,
    ) -> None:
        """A canary of another revision is still in flight here: back it out first, the
        way kruise rolls back: traffic to stable, previous spec re-applied, canary gone."""
        record = self.apps.rollout(target.app, target.cluster, target.component)
        if record is None or record.revision == target.revision:
            return
        if record.stage in (Stage.COMPLETED, Stage.ROLLED_BACK):
            self.apps.drop_rollout(target.app, target.cluster, target.component)
            return
        stale = self.apps.target(target.app, record.revision, target.cluster, target.component)
        props = _trait(stale) if stale is not None else None
        if stale is None or props is None:
            self.apps.drop_rollout(target.app, target.cluster, target.component)
            return
        canary_objects = await render(stale)
        plan = CanaryPlan.of(
            canary_objects, record.kind, record.name, props.canary, stale.namespace
        )
        self._mark(target, f"rolling back the canary of revision {record.revision}")
        self.apps.add_target_event(
            target, f"{target.cluster}: canary of revision {record.revision} rolls back"
        )
        await self._back_out(target, client, plan, record, objects)
        self.apps.drop_rollout(target.app, target.cluster, target.component)

    async def roll_back(
        self,
        target: TargetRecord,
        objects: list[dict[str, Any]],
        previous: list[dict[str, Any]],
        client: ClusterClient,
    ) -> None:
        """Back out this revision's canary on the target (rendered as `objects`) to the
        release it ran before (`previous`): kept as rolled back, so that status says so."""
        record = self.apps.rollout(target.app, target.cluster, target.component)
        props = _trait(target)
        if record is None or props is None or record.revision != target.revision:
            return
        if record.stage is Stage.ROLLED_BACK:
            return
        plan = CanaryPlan.of(objects, record.kind, record.name, props.canary, target.namespace)
        self._mark(target, "rolling back the canary")
        self.apps.add_target_event(target, f"{target.cluster}: canary rolls back")
        await self._back_out(target, client, plan, record, previous)
        self._save(record, CanaryState(Stage.ROLLED_BACK, record.step))

    async def _back_out(
        self,
        target: TargetRecord,
        client: ClusterClient,
        plan: CanaryPlan,
        record: RolloutRecord,
        previous: list[dict[str, Any]],
    ) -> None:
        """The way kruise rolls back: traffic to stable, the previous spec re-applied,
        the canary gone, with the stable pods untouched."""
        self._save(record, CanaryState(Stage.ROLLING_BACK, record.step))
        stable_hash = await self._stable_hash(client, plan, target.namespace, record)
        for phase in plan.rollback(previous, stable_hash):
            await self._run_phase(target, client, phase, record)

    def describe(self, target: TargetRecord) -> str:
        """`paused at step 1/2 (20%)`: where the target's canary waits."""
        record = self.apps.rollout(target.app, target.cluster, target.component)
        props = _trait(target)
        if record is None or props is None:
            return ""
        step = props.canary.steps[record.step]
        share = f"{step.weight}%" if step.weight is not None else "header matches"
        where = f"step {record.step + 1}/{len(props.canary.steps)} ({share})"
        if record.stage != Stage.PAUSED:
            return f"suspended by the operator at {where}, {record.stage}"
        return f"paused at {where}"

    # phases

    async def _run_phase(
        self, target: TargetRecord, client: ClusterClient, phase: Phase, record: RolloutRecord
    ) -> None:
        self.apps.add_target_event(target, f"{target.cluster}: {phase.why}")
        applied = await self._apply(target, client, list(phase.apply)) if phase.apply else []
        deleted = []
        if phase.delete:
            refs = [ref_of(r) for r in phase.delete]
            deleted = await delete(client, refs, propagation="Foreground")
        if phase.wait is Wait.READY:
            await self._wait_ready(target, client, phase.wait_for, record, applied)
        elif phase.wait is Wait.GONE:
            await self._wait_gone(target, client, phase.wait_for, deleted)
        if phase.grace:
            await asyncio.sleep(phase.grace)

    async def _apply(
        self, target: TargetRecord, client: ClusterClient, objects: list[dict[str, Any]]
    ) -> list[AppliedRef]:
        """Apply, and remember everything applied so that `delete APP` finds canary objects."""
        objects = labelled(objects, target.app, target.component, target.revision)
        applied = await apply(client, objects, default_namespace=target.namespace)
        previous = self.apps.inventory(target.app).get((target.cluster, target.component), (0, []))
        known = {(e["kind"], e.get("namespace"), e["name"]) for e in previous[1]}
        added = [
            {**ref_dict(r), "uid": r.uid}
            for r in applied
            if (r.kind, r.namespace, r.name) not in known
        ]
        if added:
            self.apps.set_inventory(
                target.app,
                target.cluster,
                target.component,
                previous[0] or target.revision,
                previous[1] + added,
            )
        return applied

    async def _wait_ready(
        self,
        target: TargetRecord,
        client: ClusterClient,
        refs: Sequence[Mapping[str, Any]],
        record: RolloutRecord,
        applied: Sequence[AppliedRef],
    ) -> None:
        """Until the workloads `refs` name run their new pods, as the watch cache sees
        them at (at least) the generation this phase applied."""
        waited = await applied_versions(client, refs, applied)

        def report(verdict: Health) -> None:
            if verdict.reason != record.detail:
                record.detail = verdict.reason
                self.apps.put_rollout(record)

        verdict = await self.waits.healthy(
            target.cluster, client, waited, judge=canary_ready, on_change=report
        )
        if verdict.status is not HealthStatus.HEALTHY:
            why = await canary_pod_trouble(client, target.namespace)
            raise CanaryError(
                f"canary not ready on cluster {target.cluster} after "
                f"{self.step_timeout:.0f}s: {why or verdict.reason}"
            )

    async def _wait_gone(
        self,
        target: TargetRecord,
        client: ClusterClient,
        refs: Sequence[Mapping[str, Any]],
        deleted: Sequence[AppliedRef],
    ) -> None:
        """Until the objects this phase deleted (those uids: a namesake created since is
        another object) are gone; Foreground deletion makes that include their pods."""
        wanted = {(r["kind"], r.get("namespace"), r["name"]) for r in refs}
        waited = [r for r in deleted if (r.kind, r.namespace, r.name) in wanted]
        if waited and not await self.waits.gone(target.cluster, client, waited):
            raise CanaryError(
                f"canary objects on cluster {target.cluster} were not deleted within "
                f"{self.step_timeout:.0f}s"
            )

    async def _stable_hash(
        self, client: ClusterClient, plan: CanaryPlan, namespace: str, record: RolloutRecord
    ) -> str | None:
        """The stable pods' pod-template hash: read from the cluster once per canary, then
        kept with the rollout, since stable pods never change while it runs."""
        if record.stable_hash is None:
            record.stable_hash = await self._read_stable_hash(client, plan, namespace)
        return record.stable_hash

    async def _read_stable_hash(
        self, client: ClusterClient, plan: CanaryPlan, namespace: str
    ) -> str | None:
        """The one read of the cluster a phase plan needs (the seam tests script)."""
        return await stable_template_hash(client, plan, namespace)

    def _due(self, record: RolloutRecord) -> bool:
        return record.resume_at is not None and self.clock() >= record.resume_at

    def _approved(self, record: RolloutRecord) -> bool:
        """Whether a `resume` approved this pause, read from the store: it may have come
        while this canary ran on the record it read before."""
        stored = self.apps.rollout(record.app, record.cluster, record.component)
        return stored is not None and stored.resume_step == record.step

    def _save(self, record: RolloutRecord, state: CanaryState) -> CanaryState:
        if (record.stage, record.step) != (state.stage, state.step):
            record.phases_done = 0  # a new stage: none of its phases done yet
        record.stage, record.step = state.stage, state.step
        self.apps.put_rollout(record)
        return state

    def _mark(self, target: TargetRecord, message: str) -> None:
        target.phase, target.message = TargetPhase.APPLYING, message
        self.apps.put_target(target)


def traffic(record: RolloutRecord, target: TargetRecord) -> int | None:
    """The share of traffic (percent) that canary `record` of `target` has now; None for a
    step that matches headers instead, or a target without the trait."""
    props = _trait(target)
    return None if props is None else _weight(record.stage, props.canary.steps[record.step].weight)


def _weight(stage: Stage, weight: int | None) -> int | None:
    """The canary's share of traffic: all of it once completed, none once rolled back."""
    if stage is Stage.COMPLETED:
        return 100
    return 0 if stage is Stage.ROLLED_BACK else weight


def rollout_view(target: TargetRecord, record: RolloutRecord | None) -> RolloutView | None:
    """The canary of a target as `status` shows it (`record`: the store's rollout of its
    release, read by the caller with those of every other release at once), or None when
    it has none."""
    if record is None or record.revision != target.revision:
        return None
    props = _trait(target)
    if props is None:
        return None
    step = props.canary.steps[record.step]
    return {
        "workload": f"{record.kind}/{record.name}",
        "step": f"{record.step + 1}/{len(props.canary.steps)}",
        "stage": record.stage,
        "weight": _weight(record.stage, step.weight),
        "canary": record.detail,
        "resumeAt": timestamp(record.resume_at) if record.stage == Stage.PAUSED else None,
    }


def _trait(target: TargetRecord | None) -> KruiseRolloutProperties | None:
    if target is None:
        return None
    props = target.spec.trait(ROLLOUT_TRAIT)
    return None if props is None else trait_properties(ROLLOUT_TRAIT, props)
