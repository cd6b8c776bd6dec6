"""The canary of one target, driven from the hub: kruise-rollout's behaviour, no controller.

`hub.canary` says which objects each stage applies and deletes (pure); this module runs
those phases against the member cluster and persists the stage after every one, so a hub
killed at any point repeats at most one idempotent phase. Lock-step across the clusters
of an environment comes from the engine: a target returns PAUSED when its canary step is
ready, and the deploy step suspends only once every target has returned.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from clusters.apply import apply, delete, get
from clusters.client import ClusterClient
from clusters.errors import ClusterError
from clusters.resources import ObjectRef, ResourceClient
from hub.canary import (
    CANARY_LABEL,
    CanaryError,
    CanaryPlan,
    CanaryState,
    CanaryStatus,
    Event,
    Phase,
    Stage,
    Wait,
    advance,
    stable_pod_template_hash,
    template_changed,
)
from hub.fleet.objects import labelled, ref_dict, ref_of
from hub.model.phases import TargetPhase
from hub.model.records import RolloutRecord, TargetRecord
from hub.model.timestamps import timestamp
from hub.spec import KruiseRolloutProperties, trait_properties
from hub.state.apps import AppStore

TRAIT = "kruise-rollout"
WORKLOAD_KINDS = ("Deployment", "StatefulSet")
# Readiness is polled: soon at first (on a healthy cluster pods are ready within about a
# second), then once a second, so that a slow rollout costs its API server little.
POLL_FIRST = 0.1
POLL_INTERVAL = 1.0
# While a step waits for a ReplicaSet to settle before it can pin the stable Service.
SETTLE_INTERVAL = 1.0


class CanaryOutcome(enum.Enum):
    NONE = "none"  # not a canary: the caller applies the release as usual
    PAUSED = "paused"  # this target's canary step is ready and waits for resume
    COMPLETED = "completed"  # the canary finished; the caller applies the release as usual


class Rollouts:
    def __init__(self, apps: AppStore, *, step_timeout: float) -> None:
        self.apps = apps
        self.step_timeout = step_timeout

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
        if record is None:
            if props is None or first_deploy:
                return CanaryOutcome.NONE
            workload = await _changed_workload(client, objects, target.namespace)
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
            self.apps.add_event(
                target.app,
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
            if self.apps.app(target.app).suspend:  # `workflow suspend` freezes it here
                return CanaryOutcome.PAUSED
            if state.stage is Stage.PAUSED:
                step = plan.steps[state.step]
                if props.auto or _due(record):
                    state = self._save(record, advance(state, Event.RESUME, len(plan.steps)))
                    continue
                if step.pause_seconds is None:
                    return CanaryOutcome.PAUSED
                # A timed pause; `workflow resume` may cut it short by moving resume_at.
                await asyncio.sleep(
                    min(POLL_INTERVAL, max(0.0, (record.resume_at or 0) - time.time()))
                )
                stored = self.apps.rollout(target.app, target.cluster, target.component)
                record.resume_at = stored.resume_at if stored is not None else record.resume_at
                continue
            stable_hash = await self._stable_hash(client, plan, target.namespace)
            try:
                phases = plan.phases(state, stable_hash=stable_hash)
            except CanaryError:
                if stable_hash is None:  # a rollout still under way: wait for it to settle
                    await asyncio.sleep(SETTLE_INTERVAL)
                    continue
                raise
            self._mark(target, f"canary step {state.step + 1}/{len(plan.steps)}: {state.stage}")
            for phase in phases:
                await self._run_phase(target, client, phase, record)
            state = advance(state, Event.DONE, len(plan.steps))
            if state.stage is Stage.PAUSED:
                pause = plan.steps[state.step].pause_seconds
                record.resume_at = time.time() + pause if pause is not None else None
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
        stale = next(
            (
                t
                for t in self.apps.targets(target.app, record.revision)
                if (t.cluster, t.component) == (target.cluster, target.component)
            ),
            None,
        )
        props = _trait(stale) if stale is not None else None
        if stale is None or props is None:
            self.apps.drop_rollout(target.app, target.cluster, target.component)
            return
        canary_objects = await render(stale)
        plan = CanaryPlan.of(
            canary_objects, record.kind, record.name, props.canary, stale.namespace
        )
        state = CanaryState(Stage.ROLLING_BACK, record.step)
        self._save(record, state)
        self._mark(target, f"rolling back the canary of revision {record.revision}")
        self.apps.add_event(
            target.app, f"{target.cluster}: canary of revision {record.revision} rolls back"
        )
        stable_hash = await self._stable_hash(client, plan, target.namespace)
        for phase in plan.rollback(objects, stable_hash):
            await self._run_phase(target, client, phase, record)
        self.apps.drop_rollout(target.app, target.cluster, target.component)

    def view(self, target: TargetRecord) -> dict[str, Any] | None:
        """The canary of a target as `status` shows it, or None when it has none."""
        record = self.apps.rollout(target.app, target.cluster, target.component)
        props = _trait(target)
        if record is None or props is None or record.revision != target.revision:
            return None
        step = props.canary.steps[record.step]
        return {
            "workload": f"{record.kind}/{record.name}",
            "step": f"{record.step + 1}/{len(props.canary.steps)}",
            "stage": record.stage,
            "weight": 100 if record.stage == Stage.COMPLETED else step.weight,
            "canary": record.detail,
            "resumeAt": timestamp(record.resume_at) if record.stage == Stage.PAUSED else None,
        }

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
        self.apps.add_event(target.app, f"{target.cluster}: {phase.why}")
        if phase.apply:
            await self._apply(target, client, list(phase.apply))
        if phase.delete:
            await delete(client, [ref_of(r) for r in phase.delete], propagation="Foreground")
        if phase.wait is Wait.READY:
            await self._wait_ready(target, client, phase.wait_for, record)
        elif phase.wait is Wait.GONE:
            await self._wait_gone(client, phase.wait_for)
        if phase.grace:
            await asyncio.sleep(phase.grace)

    async def _apply(
        self, target: TargetRecord, client: ClusterClient, objects: list[dict[str, Any]]
    ) -> None:
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

    async def _wait_ready(
        self,
        target: TargetRecord,
        client: ClusterClient,
        refs: Sequence[Mapping[str, Any]],
        record: RolloutRecord,
    ) -> None:
        deadline = time.monotonic() + self.step_timeout
        delays = poll_delays()
        while True:
            statuses = []
            try:
                for ref in refs:
                    live = await get(client, ref_of(ref))
                    statuses.append(CanaryStatus.of(live) if live else None)
            except ClusterError:
                statuses = [None]
            detail = "; ".join(str(s) for s in statuses if s is not None)
            if detail != record.detail:
                record.detail = detail
                self.apps.put_rollout(record)
            if statuses and all(s is not None and s.ready for s in statuses):
                return
            if time.monotonic() > deadline:
                why = await _pod_trouble(client, target.namespace)
                raise CanaryError(
                    f"canary not ready on cluster {target.cluster} after "
                    f"{self.step_timeout:.0f}s: {why or detail}"
                )
            await asyncio.sleep(next(delays))

    async def _wait_gone(self, client: ClusterClient, refs: Sequence[Mapping[str, Any]]) -> None:
        deadline = time.monotonic() + self.step_timeout
        delays = poll_delays()
        while any([await get(client, ref_of(r)) for r in refs]):
            if time.monotonic() > deadline:
                raise CanaryError("canary objects were not deleted in time")
            await asyncio.sleep(next(delays))

    async def _stable_hash(
        self, client: ClusterClient, plan: CanaryPlan, namespace: str
    ) -> str | None:
        if plan.kind != "Deployment":
            return None
        live = await get(client, ObjectRef("apps/v1", "Deployment", namespace, plan.name))
        if live is None:
            return None
        replicasets = await _list(client, "apps/v1", "ReplicaSet", namespace)
        return stable_pod_template_hash(live, replicasets)

    def _save(self, record: RolloutRecord, state: CanaryState) -> CanaryState:
        record.stage, record.step = state.stage, state.step
        self.apps.put_rollout(record)
        return state

    def _mark(self, target: TargetRecord, message: str) -> None:
        target.phase, target.message = TargetPhase.APPLYING, message
        self.apps.put_target(target)


def poll_delays() -> Iterator[float]:
    """Seconds to wait between readiness checks: 0.1, 0.2, 0.4, 0.8, then 1 for good."""
    delay = POLL_FIRST
    while True:
        yield delay
        delay = min(delay * 2, POLL_INTERVAL)


def _trait(target: TargetRecord | None) -> KruiseRolloutProperties | None:
    if target is None:
        return None
    traits = target.spec.get("traits") or {}
    if TRAIT not in traits:
        return None
    return trait_properties(TRAIT, traits[TRAIT])


def _due(record: RolloutRecord) -> bool:
    return record.resume_at is not None and time.time() >= record.resume_at


async def _changed_workload(
    client: ClusterClient, objects: list[dict[str, Any]], namespace: str
) -> tuple[str, str] | None:
    """The first Deployment or StatefulSet whose pod template this revision changes."""
    for obj in objects:
        if obj.get("kind") not in WORKLOAD_KINDS:
            continue
        name = obj["metadata"]["name"]
        ns = obj["metadata"].get("namespace") or namespace
        live = await get(client, ObjectRef(obj["apiVersion"], obj["kind"], ns, name))
        if live is not None and template_changed(live, obj):
            return str(obj["kind"]), str(name)
    return None


async def _list(
    client: ClusterClient, api_version: str, kind: str, namespace: str, selector: str = ""
) -> list[dict[str, Any]]:
    rc = ResourceClient(client)
    resource = await rc.resolve(api_version, kind)
    query = {"labelSelector": selector} if selector else None
    found = await rc.call("GET", resource.path(namespace), what=f"list {kind}", query=query)
    items: list[dict[str, Any]] = found.get("items", [])
    return items


async def _pod_trouble(client: ClusterClient, namespace: str) -> str | None:
    """Why canary pods are not ready, from their conditions: what an operator asks first."""
    try:
        pods = await _list(client, "v1", "Pod", namespace, f"{CANARY_LABEL}=true")
    except ClusterError:
        return None
    for pod in pods:
        status = pod.get("status") or {}
        for container in status.get("containerStatuses") or []:
            waiting = (container.get("state") or {}).get("waiting")
            if not container.get("ready") and waiting:
                return (
                    f"pod {pod['metadata']['name']}: {waiting.get('reason', 'waiting')} "
                    f"(restarts {container.get('restartCount', 0)})"
                )
        ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
        if ready is not None and ready.get("status") != "True":
            name, reason = pod["metadata"]["name"], ready.get("reason", "")
            return f"pod {name}: Ready {ready.get('status')} ({reason})"
    return None
