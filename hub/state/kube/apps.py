"""Applications, revisions, steps, targets, releases, analyses and events as custom
resources: the Kubernetes store's `AppStore`.

SQLite makes each transition in one transaction; here each is one guarded write of one
object, or a few writes ordered so that ONE object is the commit point and whatever was
written before it stays invisible until then:

- a revision: its Targets, then the Revision (listing them), then the Application;
- targets added to a revision: the Targets, then the Revision that lists them;
- an application deleted: the Application first; its other objects go in the background.

Child objects name their cluster by uid, so a rename moves nothing; a reader reports the
uid's current name, and a child whose uid no cluster has any more is invisible (a detach
left it; it is deleted in the background).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from clusters.health import HealthStatus
from hub.errors import NotFound
from hub.model.phases import AppPhase, Outcome, StepPhase, StepType
from hub.model.records import (
    AppRecord,
    EventRecord,
    HookRunRecord,
    MeasurementRecord,
    ObservedRecord,
    Release,
    RevisionRecord,
    RolloutRecord,
    StepRecord,
    TargetRecord,
)
from hub.model.settings import DEFAULTS, Settings
from hub.state.changes import Change, Changes
from hub.state.interface import AppStore, Hold, Holding, StoreUnavailable
from hub.state.kube.backend import ATTEMPTS, Backend
from hub.state.kube.mirror import Mirror
from hub.state.kube.resources import (
    ANALYSIS,
    APPLICATION,
    CLUSTER,
    CLUSTER_UID_LABEL,
    EVENT,
    RELEASE,
    REVISION,
    TARGET,
    ClusterRef,
    Object,
    analysis_name,
    app_record,
    application_name,
    cluster_name,
    current_clusters,
    encode,
    event_prefix,
    event_record,
    hook_run_key,
    hook_run_record,
    measurement_record,
    new_object,
    newest_events,
    release_name,
    reported,
    reported_cluster,
    revision_name,
    revision_record,
    rollout_record,
    spec_of,
    status_of,
    step_record,
    target_name,
    target_record,
    target_spec,
    visible_revision,
)

# Targets of one revision written at once: a 64-cluster revision in a few round trips,
# without a burst the management cluster's fairness queues would throttle.
TARGET_WRITES = 16
# Events added between two prunings of every application's events by age (as SQLite).
PRUNE_EVERY = 50

Mutation = Callable[[Object | None], Object | None]


class _Restart(Exception):
    """Another revision was committed while this one was being written: start over."""


def cluster_names(m: Mirror) -> dict[str, str]:
    """uid -> the name the cluster has now."""
    current, _ = current_clusters(m.objects(CLUSTER.kind))
    return {uid: str(spec_of(obj)["name"]) for uid, obj in current.items()}


def refs(m: Mirror, cluster: str) -> list[ClusterRef]:
    """How children may name `cluster`: by its uid when it is registered, and by name (what
    was written for it before it was)."""
    obj = m.get(CLUSTER.kind, cluster_name(cluster))
    uid = str(spec_of(obj).get("uid", "")) if obj is not None else ""
    by_name = ClusterRef("", cluster)
    return [ClusterRef(uid, cluster), by_name] if uid else [by_name]


async def drop_children(backend: Backend, uid: str) -> None:
    """What a detached cluster left (invisible since the detach): deleted."""
    m = backend.view
    await backend.delete_all(
        [o for kind in (TARGET, RELEASE) for o in m.objects(kind.kind) if _of_uid(o, uid)]
    )
    for obj in m.objects(ANALYSIS.kind):
        if any(entry.get("clusterUid") == uid for entry in spec_of(obj).get("measurements", ())):

            def without(current: Object | None) -> Object | None:
                if current is not None:
                    entries = spec_of(current).get("measurements") or []
                    current["spec"]["measurements"] = [
                        e for e in entries if e.get("clusterUid") != uid
                    ]
                return current

            await backend.update(ANALYSIS.kind, obj["metadata"]["name"], without)


def _of_uid(obj: Object, uid: str) -> bool:
    return spec_of(obj).get("clusterUid") == uid


class KubeAppStore(AppStore):
    """Applications and workflow state in the management cluster, beside the registry."""

    def __init__(self, backend: Backend, settings: Settings = DEFAULTS) -> None:
        self._b = backend
        self.changes = Changes()
        self._keep_events = settings.events_per_app
        self._event_age = settings.events_max_age
        self._events_added = 0
        self._pruning: set[str] = set()

    def writes(self) -> None:
        """None: other hubs write the same objects, and the mirror shows their writes
        before this hub hears of them on `changes`."""
        return None

    # ------------------------------------------------------------------ applications

    def create_revision(
        self,
        app: str,
        *,
        spec: dict[str, Any],
        digest: str,
        publish_version: str,
        source: str,
        base: str,
        steps: list[tuple[str, StepType]],
        targets: list[TargetRecord],
        rollback_of: int | None = None,
    ) -> RevisionRecord:
        """The Targets, then the Revision listing them, then the Application (the commit
        point); a Running predecessor is marked Superseded afterwards, in the background
        (readers already report it so)."""
        fields = {
            "publishVersion": publish_version,
            "digest": digest,
            "spec": spec,
            "source": source,
            "base": base,
            "rollbackOf": rollback_of,
            "steps": [_new_step(name, kind) for name, kind in steps],
        }

        async def work() -> int:
            for _ in range(ATTEMPTS):
                try:
                    return await self._create_revision(app, fields, targets)
                except _Restart:
                    continue
            raise StoreUnavailable(
                f"the hub's store: application {app!r} kept getting new revisions under this "
                f"one ({ATTEMPTS} attempts); nothing of this change was kept"
            )

        number = self._b.write(work)
        self._changed(app)
        return self.revision(app, number)

    async def _create_revision(
        self, app: str, fields: dict[str, Any], targets: list[TargetRecord]
    ) -> int:
        m, now = self._b.view, time.time()
        seen = m.get(APPLICATION.kind, application_name(app))
        number = int(spec_of(seen).get("revision", 0)) + 1 if seen else 1
        incarnation = str(spec_of(seen)["incarnation"]) if seen else uuid.uuid4().hex
        leftover = m.get(REVISION.kind, revision_name(app, number))
        names = await self._write_targets(m, app, number, targets)
        revision = new_object(
            REVISION.kind,
            revision_name(app, number),
            m.namespace,
            {
                "app": app,
                "number": number,
                "incarnation": incarnation,
                "createdAt": now,
                **fields,
                "targets": names,
            },
            status={"outcome": Outcome.RUNNING, "finishedAt": None},
        )
        await self._b.update(REVISION.kind, revision["metadata"]["name"], lambda _: revision)

        def commit(current: Object | None) -> Object:
            committed = int(spec_of(current).get("revision", 0)) if current else 0
            if committed != number - 1 or (current is None) != (seen is None):
                raise _Restart(app)
            obj = current or new_object(
                APPLICATION.kind,
                application_name(app),
                m.namespace,
                {"name": app, "incarnation": incarnation, "createdAt": now},
            )
            obj["spec"].update(revision=number, template=fields["spec"], suspend=False, hold=None)
            # The health rolled up for the revision before, and what was observed of its
            # objects, stay until the hub's next pass (as SQLite keeps its columns); a new
            # application's health is Unknown, and nothing of it observed, until then.
            before = status_of(obj)
            obj["status"] = {
                "phase": AppPhase.RUNNING,
                "message": "",
                "updatedAt": now,
                "health": before.get("health", HealthStatus.UNKNOWN),
            }
            if "observed" in before:
                obj["status"]["observed"] = before["observed"]
            return obj

        await self._b.update(APPLICATION.kind, application_name(app), commit)
        if leftover is not None:
            stale = set(spec_of(leftover).get("targets") or ()) - set(names)
            self._b.spawn(
                self._b.delete_all([o for n in stale if (o := m.get(TARGET.kind, n))]),
                f"drop the leftover targets of {app} revision {number}",
            )
        self._b.spawn(self._supersede(app, number, incarnation), f"supersede {app} < {number}")
        return number

    async def _supersede(self, app: str, number: int, incarnation: str) -> None:
        for obj in self._b.view.objects(REVISION.kind):
            spec = spec_of(obj)
            running = status_of(obj).get("outcome") == Outcome.RUNNING
            ours = spec.get("app") == app and spec.get("incarnation") == incarnation
            if ours and running and int(spec.get("number", 0)) < number:
                await self._b.update(
                    REVISION.kind,
                    obj["metadata"]["name"],
                    _finished(Outcome.SUPERSEDED, only_running=True),
                )

    async def _write_targets(
        self, m: Mirror, app: str, number: int, targets: Iterable[TargetRecord]
    ) -> list[str]:
        """Write targets (bounded, at once); their object names, in order."""
        slots = asyncio.Semaphore(TARGET_WRITES)
        now = time.time()

        async def one(target: TargetRecord) -> str:
            target.app, target.revision, target.updated_at = app, number, now
            obj = self._target_object(m, target)
            async with slots:
                await self._b.update(TARGET.kind, obj["metadata"]["name"], lambda _: obj)
            return str(obj["metadata"]["name"])

        return list(await asyncio.gather(*(one(t) for t in targets)))

    def _target_object(self, m: Mirror, target: TargetRecord) -> Object:
        ref = self._write_ref(m, target.cluster, TARGET.kind, lambda r: _target_key(target, r))
        labels = {CLUSTER_UID_LABEL: ref.uid} if ref.uid else {}
        return new_object(
            TARGET.kind,
            _target_key(target, ref),
            m.namespace,
            target_spec(target, ref),
            labels=labels,
        )

    def _write_ref(
        self, m: Mirror, cluster: str, kind: str, name: Callable[[ClusterRef], str]
    ) -> ClusterRef:
        """The ref a write uses: the one an object already exists under, else the first."""
        candidates = refs(m, cluster)
        return next((r for r in candidates if m.get(kind, name(r)) is not None), candidates[0])

    def apps(self) -> list[AppRecord]:
        found = self._b.read(lambda m: [app_record(o) for o in m.objects(APPLICATION.kind)])
        return sorted(found, key=lambda a: a.name)

    def app(self, name: str) -> AppRecord:
        obj = self._b.read(lambda m: m.get(APPLICATION.kind, application_name(name)))
        if obj is None:
            raise NotFound(f"application {name!r} not found")
        return app_record(obj)

    def set_app(self, name: str, *, phase: AppPhase, message: str = "") -> None:
        def change(obj: Object) -> None:
            if AppPhase(obj["status"]["phase"]).yields_to(phase):
                obj["status"].update(phase=phase, message=message, updatedAt=time.time())

        self._update_app(name, change)

    def set_suspend(self, name: str, suspend: bool) -> None:
        self._update_app(name, lambda obj: obj["spec"].update(suspend=suspend))

    def set_health(self, name: str, health: str) -> None:
        """One guarded write of the Application's status, only when the mirror shows
        another health (a lost race compares again, from fresh state)."""
        seen = self._b.read(lambda m: m.get(APPLICATION.kind, application_name(name)))
        if seen is None or status_of(seen).get("health") == health:
            return

        def mutate(obj: Object | None) -> Object | None:
            if obj is not None:
                obj.setdefault("status", {})["health"] = health
            return obj

        self._b.write(lambda: self._b.update(APPLICATION.kind, application_name(name), mutate))

    def set_observed(self, name: str, record: ObservedRecord) -> None:
        """One guarded write of the Application's status (its `observed`)."""
        observed = record.to_json()

        def mutate(obj: Object | None) -> Object | None:
            if obj is not None:
                obj.setdefault("status", {})["observed"] = observed
            return obj

        self._b.write(lambda: self._b.update(APPLICATION.kind, application_name(name), mutate))

    def observed(self, name: str) -> ObservedRecord | None:
        obj = self._b.read(lambda m: m.get(APPLICATION.kind, application_name(name)))
        observed = status_of(obj).get("observed")
        return ObservedRecord.from_json(observed) if observed is not None else None

    def delete_app(self, name: str) -> None:
        """The Application first (the commit point: nothing of an application without one
        is visible), then everything else of it in the background."""

        async def work() -> None:
            obj = self._b.view.get(APPLICATION.kind, application_name(name))
            if obj is None:
                return
            await self._b.delete(APPLICATION.kind, obj["metadata"]["name"])
            self._b.spawn(self._drop_app(name, str(spec_of(obj)["incarnation"])), f"forget {name}")

        self._b.write(work)
        self._changed(name)

    async def _drop_app(self, app: str, incarnation: str) -> None:
        m = self._b.view
        doomed = [
            obj
            for kind in (REVISION, RELEASE, ANALYSIS, EVENT)
            for obj in m.objects(kind.kind)
            if spec_of(obj).get("app") == app
            and spec_of(obj).get("incarnation") in (incarnation, "")
        ]
        listed = {n for o in doomed if o["kind"] == REVISION.kind for n in spec_of(o)["targets"]}
        doomed += [o for n in listed if (o := m.get(TARGET.kind, n)) is not None]
        await self._b.delete_all(doomed)

    def _update_app(self, name: str, change: Callable[[Object], None]) -> None:
        """A change of an existing Application; none: nothing (as an UPDATE of no row)."""

        def mutate(obj: Object | None) -> Object | None:
            if obj is not None:
                change(obj)
            return obj

        self._b.write(lambda: self._b.update(APPLICATION.kind, application_name(name), mutate))
        self._changed(name)

    # ------------------------------------------------------------------ revisions, steps

    def revisions(self, app: str) -> list[RevisionRecord]:
        def look(m: Mirror) -> list[RevisionRecord]:
            owner = m.get(APPLICATION.kind, application_name(app))
            found = {
                int(spec_of(o)["number"]): o
                for o in m.objects(REVISION.kind)
                if spec_of(o).get("app") == app and visible_revision(o, owner)
            }
            current = int(spec_of(owner).get("revision", 0))
            return [
                revision_record(o, *reported(o, current, found.get(n + 1)))
                for n, o in sorted(found.items())
            ]

        return self._b.read(look)

    def revision(self, app: str, number: int) -> RevisionRecord:
        def look(m: Mirror) -> RevisionRecord | None:
            owner = m.get(APPLICATION.kind, application_name(app))
            obj = m.get(REVISION.kind, revision_name(app, number))
            if obj is None or not visible_revision(obj, owner):
                return None
            successor = m.get(REVISION.kind, revision_name(app, number + 1))
            if not visible_revision(successor, owner):
                successor = None
            return revision_record(obj, *reported(obj, int(spec_of(owner)["revision"]), successor))

        found = self._b.read(look)
        if found is None:
            raise NotFound(f"application {app!r} has no revision {number}")
        return found

    def finish_revision(self, app: str, number: int, outcome: Outcome) -> None:
        self._update_revision(app, number, _finished(outcome))

    def steps(self, app: str, revision: int) -> list[StepRecord]:
        def look(m: Mirror) -> list[StepRecord]:
            obj = self._visible_revision(m, app, revision)
            steps = spec_of(obj).get("steps") or [] if obj is not None else []
            return [step_record(app, revision, s) for s in steps]

        return self._b.read(look)

    def set_step(
        self,
        app: str,
        revision: int,
        name: str,
        *,
        phase: StepPhase,
        message: str = "",
        resume_at: float | None = None,
    ) -> None:
        now = time.time()

        def mutate(obj: Object | None) -> Object | None:
            for step in spec_of(obj).get("steps") or [] if obj is not None else []:
                if step["name"] == name:
                    step.update(phase=phase, message=message, resumeAt=resume_at)
                    if step.get("startedAt") is None and phase is StepPhase.RUNNING:
                        step["startedAt"] = now
                    step["finishedAt"] = now if phase.finished else None
            return obj

        self._update_revision(app, revision, mutate)

    def _update_revision(self, app: str, number: int, mutate: Mutation) -> None:
        def existing(obj: Object | None) -> Object | None:
            return mutate(obj) if obj is not None else None

        self._b.write(lambda: self._b.update(REVISION.kind, revision_name(app, number), existing))
        self._changed(app)

    def _visible_revision(self, m: Mirror, app: str, number: int) -> Object | None:
        obj = m.get(REVISION.kind, revision_name(app, number))
        owner = m.get(APPLICATION.kind, application_name(app))
        return obj if visible_revision(obj, owner) else None

    # ------------------------------------------------------------------ targets

    def put_target(self, target: TargetRecord) -> None:
        """The Target, then (for a key the revision did not have) the Revision's list."""
        target.updated_at = time.time()

        async def work() -> None:
            m = self._b.view
            obj = self._target_object(m, target)
            await self._b.update(TARGET.kind, obj["metadata"]["name"], lambda _: obj)
            await self._list_targets(target.app, target.revision, [obj["metadata"]["name"]])

        self._b.write(work)
        self._changed(target.app)

    def add_targets(self, app: str, revision: int, targets: list[TargetRecord]) -> None:
        """All or none: the Targets are invisible until the one write of the Revision that
        lists them."""

        async def work() -> None:
            names = await self._write_targets(self._b.view, app, revision, targets)
            await self._list_targets(app, revision, names)

        self._b.write(work)
        self._changed(app)

    async def _list_targets(self, app: str, revision: int, names: list[str]) -> None:
        def mutate(obj: Object | None) -> Object | None:
            if obj is not None:
                listed = obj["spec"].setdefault("targets", [])
                listed.extend(n for n in dict.fromkeys(names) if n not in listed)
            return obj

        m = self._b.view
        obj = m.get(REVISION.kind, revision_name(app, revision))
        if obj is not None and set(names) <= set(spec_of(obj).get("targets") or ()):
            return
        await self._b.update(REVISION.kind, revision_name(app, revision), mutate)

    def drop_target(self, target: TargetRecord) -> None:
        """The Target first, then the canary of its release."""

        async def work() -> None:
            m = self._b.view
            for ref in refs(m, target.cluster):
                await self._b.delete(TARGET.kind, _target_key(target, ref))
            await self._update_release(target.app, target.cluster, target.component, _no_rollout)

        self._b.write(work)
        self._changed(target.app)

    def targets(self, app: str, revision: int) -> list[TargetRecord]:
        def look(m: Mirror) -> list[TargetRecord]:
            obj = self._visible_revision(m, app, revision)
            if obj is None:
                return []
            names = cluster_names(m)
            found = []
            for name in dict.fromkeys(spec_of(obj).get("targets") or ()):
                child = m.get(TARGET.kind, name)
                cluster = reported_cluster(spec_of(child), names) if child else None
                if child is not None and cluster is not None:
                    found.append(target_record(child, cluster))
            return sorted(found, key=lambda t: (t.step, t.cluster, t.component))

        return self._b.read(look)

    def target(self, app: str, revision: int, cluster: str, component: str) -> TargetRecord | None:
        """The first step's (by name, as SQLite orders them), found by the names its key
        makes, without decoding the revision's other targets."""

        def look(m: Mirror) -> TargetRecord | None:
            obj = self._visible_revision(m, app, revision)
            if obj is None:
                return None
            listed = set(spec_of(obj).get("targets") or ())
            steps = sorted(s["name"] for s in spec_of(obj).get("steps") or ())
            for step in steps:
                for ref in refs(m, cluster):
                    name = target_name(app, revision, step, ref, component)
                    if name in listed and (child := m.get(TARGET.kind, name)) is not None:
                        return target_record(child, cluster)
            # A target of a step the revision does not list (written apart): look further.
            matches = [
                child
                for name in listed
                if (child := m.get(TARGET.kind, name)) is not None
                and spec_of(child).get("component") == component
                and reported_cluster(spec_of(child), cluster_names(m)) == cluster
            ]
            first = min(matches, key=lambda c: str(spec_of(c)["step"]), default=None)
            return target_record(first, cluster) if first is not None else None

        return self._b.read(look)

    # ------------------------------------------------------------------ holds

    def hold(self, app: str) -> Hold | None:
        obj = self._b.read(lambda m: m.get(APPLICATION.kind, application_name(app)))
        data = spec_of(obj).get("hold") if obj is not None else None
        if not data:
            return None
        return Hold(
            app=app,
            revision=data["revision"],
            removals=frozenset((c, k) for c, k in data["removals"]),
            reason=data["reason"],
            confirmed=bool(data["confirmed"]),
            created_at=data["createdAt"],
        )

    def put_hold(self, hold: Hold) -> None:
        data = {
            "revision": hold.revision,
            "removals": sorted(hold.removals),
            "reason": hold.reason,
            "confirmed": hold.confirmed,
            "createdAt": time.time(),
        }
        self._update_app(hold.app, lambda obj: obj["spec"].update(hold=data))

    def confirm_hold(self, app: str) -> None:
        def confirm(obj: Object) -> None:
            if obj["spec"].get("hold"):
                obj["spec"]["hold"]["confirmed"] = True

        self._update_app(app, confirm)

    def drop_hold(self, app: str) -> None:
        self._update_app(app, lambda obj: obj["spec"].update(hold=None))

    # ------------------------------------------------------------------ releases

    def _release(self, m: Mirror, app: str, cluster: str, component: str) -> Object | None:
        """The visible Release of (app, cluster, component), if any."""
        owner = m.get(APPLICATION.kind, application_name(app))
        if owner is None:
            return None
        for ref in refs(m, cluster):
            obj = m.get(RELEASE.kind, release_name(app, ref, component))
            if obj is not None and _same_app(obj, owner):
                return obj
        return None

    def _releases(self, m: Mirror, app: str) -> list[tuple[str, Object]]:
        """(current cluster name, Release) of every visible release of `app`."""
        owner = m.get(APPLICATION.kind, application_name(app))
        if owner is None:
            return []
        names = cluster_names(m)
        found = []
        for obj in m.objects(RELEASE.kind):
            spec = spec_of(obj)
            if spec.get("app") == app and _same_app(obj, owner):
                cluster = reported_cluster(spec, names)
                if cluster is not None:
                    found.append((cluster, obj))
        return found

    async def _update_release(
        self, app: str, cluster: str, component: str, change: Callable[[Object], None]
    ) -> None:
        """A change of one release, created when absent; deleted when left empty. A release
        of an application deleted and created again since starts afresh."""
        m = self._b.view
        owner = m.get(APPLICATION.kind, application_name(app))
        incarnation = str(spec_of(owner).get("incarnation", "")) if owner else ""

        def name_of(ref: ClusterRef) -> str:
            return release_name(app, ref, component)

        ref = self._write_ref(m, cluster, RELEASE.kind, name_of)

        def mutate(obj: Object | None) -> Object | None:
            if obj is None or spec_of(obj).get("incarnation") != incarnation:
                labels = {CLUSTER_UID_LABEL: ref.uid} if ref.uid else {}
                fresh = new_object(RELEASE.kind, name_of(ref), m.namespace, {}, labels=labels)
                fresh["spec"] = {
                    "app": app,
                    "cluster": cluster,
                    "clusterUid": ref.uid,
                    "component": component,
                    "incarnation": incarnation,
                    "inventory": None,
                    "rollout": None,
                    "hookRuns": [],
                }
                if obj is not None:
                    fresh["metadata"] = obj["metadata"]
                obj = fresh
            change(obj)
            spec = obj["spec"]
            empty = not (spec["inventory"] or spec["rollout"] or spec["hookRuns"])
            return None if empty else obj

        await self._b.update(RELEASE.kind, name_of(ref), mutate)

    def _write_release(
        self, app: str, cluster: str, component: str, change: Callable[[Object], None]
    ) -> None:
        self._b.write(lambda: self._update_release(app, cluster, component, change))
        self._changed(app)

    def inventory(
        self, app: str, cluster: str | None = None
    ) -> dict[tuple[str, str], tuple[int, list[dict[str, Any]]]]:
        def look(m: Mirror) -> dict[tuple[str, str], tuple[int, list[dict[str, Any]]]]:
            found = {}
            for name, obj in self._releases(m, app):
                held = spec_of(obj).get("inventory")
                if held and (cluster is None or name == cluster):
                    found[name, spec_of(obj)["component"]] = (
                        int(held["revision"]),
                        list(held["objects"]),
                    )
            return found

        return self._b.read(look)

    def set_inventory(
        self, app: str, cluster: str, component: str, revision: int, objects: list[dict[str, Any]]
    ) -> None:
        held = {"revision": revision, "objects": objects}
        self._write_release(app, cluster, component, lambda o: o["spec"].update(inventory=held))

    def drop_inventory(self, app: str, cluster: str, component: str) -> None:
        self._write_release(app, cluster, component, lambda o: o["spec"].update(inventory=None))

    def rollout(self, app: str, cluster: str, component: str) -> RolloutRecord | None:
        def look(m: Mirror) -> RolloutRecord | None:
            obj = self._release(m, app, cluster, component)
            data = spec_of(obj).get("rollout") if obj is not None else None
            return rollout_record(app, cluster, component, data) if data else None

        return self._b.read(look)

    def rollouts(self, app: str) -> list[RolloutRecord]:
        def look(m: Mirror) -> list[RolloutRecord]:
            return [
                rollout_record(app, cluster, spec_of(o)["component"], spec_of(o)["rollout"])
                for cluster, o in self._releases(m, app)
                if spec_of(o).get("rollout")
            ]

        return self._b.read(look)

    def put_rollout(self, rollout: RolloutRecord) -> None:
        """`resume_step` is kept as stored for the same revision, none for another: the
        mutation sees the release as it is now, so a resume written meanwhile survives."""
        data = encode(rollout, skip=("app", "cluster", "component", "resume_step"))

        def change(obj: Object) -> None:
            old = obj["spec"].get("rollout") or {}
            same = old.get("revision") == rollout.revision
            obj["spec"]["rollout"] = {**data, "resumeStep": old.get("resumeStep") if same else None}

        self._write_release(rollout.app, rollout.cluster, rollout.component, change)

    def approve_pause(self, app: str, cluster: str, component: str, step: int | None) -> None:
        def change(obj: Object) -> None:
            if obj["spec"].get("rollout"):
                obj["spec"]["rollout"]["resumeStep"] = step

        self._write_release(app, cluster, component, change)

    def drop_rollout(self, app: str, cluster: str, component: str) -> None:
        self._write_release(app, cluster, component, _no_rollout)

    def put_hook_run(self, run: HookRunRecord) -> None:
        """Over the run of the same key, which goes to the end (as SQLite's REPLACE)."""
        data = encode(run, skip=("app", "cluster", "component"))

        def change(obj: Object) -> None:
            runs = [r for r in obj["spec"]["hookRuns"] if hook_run_key(r) != hook_run_key(data)]
            obj["spec"]["hookRuns"] = [*runs, data]

        self._write_release(run.app, run.cluster, run.component, change)

    def hook_runs(self, app: str, cluster: str, component: str) -> list[HookRunRecord]:
        def look(m: Mirror) -> list[HookRunRecord]:
            obj = self._release(m, app, cluster, component)
            runs = spec_of(obj).get("hookRuns") or [] if obj is not None else []
            found = [hook_run_record(app, cluster, component, r) for r in runs]
            return sorted(found, key=lambda r: r.started_at)

        return self._b.read(look)

    def hook_runs_of(self, app: str) -> dict[Release, list[HookRunRecord]]:
        def look(m: Mirror) -> dict[Release, list[HookRunRecord]]:
            found: dict[Release, list[HookRunRecord]] = {}
            for cluster, obj in self._releases(m, app):
                component = spec_of(obj)["component"]
                runs = [
                    hook_run_record(app, cluster, component, r)
                    for r in spec_of(obj).get("hookRuns") or []
                ]
                if runs:
                    found[cluster, component] = sorted(runs, key=lambda r: r.started_at)
            return found

        return self._b.read(look)

    def holdings(self, cluster: str) -> list[Holding]:
        def look(m: Mirror) -> list[Holding]:
            wanted = {r.key for r in refs(m, cluster)}
            found: dict[str, Holding] = {}
            apps = {spec_of(o)["name"]: o for o in m.objects(APPLICATION.kind)}
            releases = [
                o
                for o in m.objects(RELEASE.kind)
                if _ref_key(spec_of(o)) in wanted
                and (owner := apps.get(spec_of(o).get("app"))) is not None
                and _same_app(o, owner)
            ]
            for obj in sorted(releases, key=lambda o: str(spec_of(o)["component"])):
                spec = spec_of(obj)
                holding = found.setdefault(spec["app"], Holding(spec["app"]))
                if spec.get("inventory"):
                    holding.components.append(spec["component"])
                    holding.objects += len(spec["inventory"]["objects"])
            for app, owner in apps.items():
                revision = m.get(REVISION.kind, revision_name(app, spec_of(owner)["revision"]))
                if not visible_revision(revision, owner):
                    continue
                for name in spec_of(revision).get("targets") or ():
                    child = m.get(TARGET.kind, name)
                    if child is not None and _ref_key(spec_of(child)) in wanted:
                        found.setdefault(app, Holding(app)).targeted = True
                        break
            return [found[app] for app in sorted(found)]

        return self._b.read(look)

    # ------------------------------------------------------------------ measurements

    def add_measurement(self, m: MeasurementRecord) -> None:
        async def work() -> None:
            mirror = self._b.view
            ref = refs(mirror, m.cluster)[0]
            entry = encode(m, skip=("app", "revision", "step"))
            entry.update(clusterUid=ref.uid, order=time.time_ns())
            owner = mirror.get(APPLICATION.kind, application_name(m.app))
            incarnation = spec_of(owner).get("incarnation", "") if owner else ""
            name = analysis_name(m.app, m.revision, m.step)

            def mutate(obj: Object | None) -> Object:
                if obj is None or spec_of(obj).get("incarnation") != incarnation:
                    spec: Object = {
                        "app": m.app,
                        "revision": m.revision,
                        "step": m.step,
                        "incarnation": incarnation,
                        "measurements": [],
                    }
                    fresh = new_object(ANALYSIS.kind, name, mirror.namespace, spec)
                    if obj is not None:
                        fresh["metadata"] = obj["metadata"]
                    obj = fresh
                obj["spec"]["measurements"].append(entry)
                return obj

            await self._b.update(ANALYSIS.kind, name, mutate)

        self._b.write(work)
        self._changed(m.app)

    def measurements(
        self, app: str, revision: int, step: str | None = None, gate: int | None = None
    ) -> list[MeasurementRecord]:
        def look(m: Mirror) -> list[MeasurementRecord]:
            owner = m.get(APPLICATION.kind, application_name(app))
            if owner is None:
                return []
            if step is not None:
                one = m.get(ANALYSIS.kind, analysis_name(app, revision, step))
                analyses = [one] if one is not None else []
            else:
                analyses = [
                    o
                    for o in m.objects(ANALYSIS.kind)
                    if spec_of(o).get("app") == app and spec_of(o).get("revision") == revision
                ]
            names = cluster_names(m)
            found = []
            for obj in analyses:
                if not _same_app(obj, owner):
                    continue
                for entry in spec_of(obj)["measurements"]:
                    cluster = reported_cluster(entry, names)
                    if cluster is not None and (gate is None or entry["gate"] == gate):
                        found.append((entry["order"], measurement_record(obj, entry, cluster)))
            return [record for _, record in sorted(found, key=lambda f: f[0])]

        return self._b.read(look)

    def drop_measurements(self, app: str, revision: int, step: str) -> None:
        name = analysis_name(app, revision, step)
        self._b.write(lambda: self._b.update(ANALYSIS.kind, name, lambda _: None))
        self._changed(app)

    # ------------------------------------------------------------------ events

    def add_event(
        self,
        app: str,
        message: str,
        *,
        revision: int | None = None,
        step: str | None = None,
        cluster: str | None = None,
        component: str | None = None,
    ) -> EventRecord:
        """One Event object; its id is the resourceVersion it was created at (etcd
        revisions grow). What goes beyond the bounds is hidden at once and deleted in the
        background, never in the way of this write."""
        at = time.time()
        self._events_added += 1
        by_age = self._events_added % PRUNE_EVERY == 0

        async def work() -> Object:
            m = self._b.view
            owner = m.get(APPLICATION.kind, application_name(app))
            spec = {
                "app": app,
                "at": at,
                "message": message,
                "revision": revision,
                "step": step,
                "cluster": cluster,
                "component": component,
                "incarnation": spec_of(owner).get("incarnation", "") if owner else "",
            }
            obj = new_object(EVENT.kind, "", m.namespace, spec)
            obj["metadata"] = {**obj["metadata"], "generateName": event_prefix(app)}
            del obj["metadata"]["name"]
            created = await self._b.create(obj)
            if app not in self._pruning or by_age:
                self._pruning.add(app)
                self._b.spawn(self._prune(app, by_age), f"prune the events of {app}")
            return created

        event = event_record(self._b.write(work))
        self.changes.publish(Change(app, event))
        return event

    def _visible_events(self, m: Mirror, app: str | None) -> list[Object]:
        incarnations: dict[str, str | None] = {}

        def visible(obj: Object) -> bool:
            spec = spec_of(obj)
            owner_name = str(spec.get("app"))
            if owner_name not in incarnations:
                owner = m.get(APPLICATION.kind, application_name(owner_name))
                incarnations[owner_name] = spec_of(owner).get("incarnation") if owner else None
            return spec.get("incarnation") in ("", incarnations[owner_name])

        events = [
            o
            for o in m.objects(EVENT.kind)
            if (app is None or spec_of(o).get("app") == app) and visible(o)
        ]
        return newest_events(events, self._keep_events, time.time() - self._event_age)

    async def _prune(self, app: str, by_age: bool) -> None:
        self._pruning.discard(app)
        m = self._b.view
        kept = {o["metadata"]["name"] for o in self._visible_events(m, None if by_age else app)}
        doomed = [
            o
            for o in m.objects(EVENT.kind)
            if (by_age or spec_of(o).get("app") == app) and o["metadata"]["name"] not in kept
        ]
        await self._b.delete_all(doomed)

    def events(
        self, app: str | None = None, *, after: int = 0, limit: int = 50
    ) -> list[EventRecord]:
        def look(m: Mirror) -> list[EventRecord]:
            found = [e for o in self._visible_events(m, app) if (e := event_record(o)).id > after]
            return found[-limit:] if limit > 0 else []

        return self._b.read(look)

    def _changed(self, app: str) -> None:
        self.changes.publish(Change(app))


def _new_step(name: str, kind: StepType) -> Object:
    return {
        "name": name,
        "type": kind,
        "phase": StepPhase.PENDING,
        "message": "",
        "resumeAt": None,
        "startedAt": None,
        "finishedAt": None,
    }


def _finished(outcome: Outcome, *, only_running: bool = False) -> Mutation:
    def mutate(obj: Object | None) -> Object | None:
        if obj is not None and (not only_running or obj["status"]["outcome"] == Outcome.RUNNING):
            obj["status"] = {"outcome": outcome, "finishedAt": time.time()}
        return obj

    return mutate


def _no_rollout(obj: Object) -> None:
    obj["spec"]["rollout"] = None


def _target_key(target: TargetRecord, ref: ClusterRef) -> str:
    return target_name(target.app, target.revision, target.step, ref, target.component)


def _ref_key(spec: Object) -> tuple[str, str]:
    return ClusterRef(str(spec.get("clusterUid") or ""), str(spec.get("cluster", ""))).key


def _same_app(obj: Object, owner: Object) -> bool:
    """A child of this application, not of one deleted before it under the same name."""
    return bool(spec_of(obj).get("incarnation") == spec_of(owner).get("incarnation"))
