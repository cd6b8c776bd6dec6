"""The status tree: application -> step -> cluster -> release -> objects, health rolled up.

Built from the store (what the workflow did) and the clusters' watch caches (what the
objects look like now; hub.fleet.observer), so a call asks no API server. Only objects a cache
cannot answer for (not listed yet, or of a kind it does not watch) are read from their
cluster, and never from a cluster the prober marks unreachable: one dead cluster costs
nothing. Its objects show as last seen, or as Unknown if never seen, with when the cluster
last answered. The worst health of the children is the health of the parent.

That is for an application this hub drives. On a hub that shares its store with others
(hub.service.replicas) and does not drive it, no cache of its clusters is kept: its
objects' health and drift come from what the driving hub last observed and stored
(`ObservedRecord`, kept by hub.service.health), so any replica answers at once, and the
same tree, without watching or reading a member cluster. Both feed one tree builder.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple, cast

from clusters.apply import get
from clusters.errors import ClusterError
from clusters.health import Health, HealthStatus, assess, worst
from hub.fleet.keep import is_kept
from hub.fleet.objects import ref_of
from hub.fleet.observer import Sighting
from hub.fleet.registry import Registry
from hub.model.phases import AppPhase, StepPhase, TargetPhase
from hub.model.records import (
    AppRecord,
    ClusterRecord,
    HookRunRecord,
    ObservedObject,
    ObservedRecord,
    Release,
    RolloutRecord,
    StepRecord,
    TargetRecord,
)
from hub.model.timestamps import timestamp
from hub.model.views import (
    ClusterStatusView,
    DriftView,
    FieldDriftView,
    HookRunView,
    MeasurementView,
    ObjectView,
    ReleaseView,
    StatusView,
    StepView,
)
from hub.state.interface import AppStore
from hub.workflow.analysis import Analyses
from hub.workflow.hooks import CRDS
from hub.workflow.keeper import Drift, ObjectKey, object_key
from hub.workflow.rollout import rollout_view

Objects = list[dict[str, Any]]
Inventory = Mapping[Release, tuple[int, Objects]]
DriftOf = Callable[[str, str, str], Mapping[ObjectKey, Drift]]
# The reason of an object the hub that drives its application has not observed (it is not
# in that hub's caches yet, or that hub has not stored a pass since it was applied).
NOT_OBSERVED = "not observed by the hub that drives the application yet"
# The longest value (as JSON) of a drifted field that an observation keeps: a ConfigMap's
# data may be a megabyte, and a few of them would not fit the Application object that the
# Kubernetes store keeps observations in. Longer ones are kept as their size.
STORED_VALUE_MAX = 1024


class Looked(NamedTuple):
    """One object of a release as status shows it: its inventory entry, its health, and
    how it differs from what the hub applied (None: it does not)."""

    ref: dict[str, Any]
    health: Health
    drift: DriftView | None


class _Stored(NamedTuple):
    """What the store keeps of each release beside its target and inventory."""

    rollouts: Mapping[Release, RolloutRecord]
    hook_runs: Mapping[Release, list[HookRunRecord]]


Seen = dict[Release, list[Looked]]
Judged = dict[Release, list[tuple[dict[str, Any], Health]]]
"""Each release's objects (inventory entries) with their health."""


class Placed(NamedTuple):
    """Where an application's objects are: what a memo of its tree or health watches for
    moves (hub.service.memo)."""

    releases: tuple[Release, ...]
    """Every release its targets place, in order."""
    namespaces: Mapping[str, tuple[str, ...]]
    """Each targeted cluster's namespaces that its releases' objects are in, in order
    ("" for cluster-scoped ones)."""


class Tree(NamedTuple):
    """A status tree, with what a memo of it needs to know (hub.service.memo)."""

    view: StatusView
    placed: Placed
    cached: bool
    """Every object's health came from a watch cache or the store: none was read from
    its cluster for this tree."""


async def status_tree(
    apps: AppStore,
    registry: Registry,
    analyses: Analyses,
    drift: DriftOf,
    name: str,
    *,
    owned: bool = True,
) -> Tree:
    """`drift(app, cluster, component)`: what the drift keeper found out of sync there.
    `owned`: this hub drives the application (its caches and keeper know its objects);
    otherwise they come from the store's `ObservedRecord`."""
    record = apps.app(name)
    revision = apps.revision(name, record.revision)
    steps = apps.steps(name, record.revision)
    targets = apps.targets(name, record.revision)
    inventory = apps.inventory(name)
    clusters = {c.name: c for c in registry.clusters()}
    cached = True
    if owned:
        found, cached = await _read_objects(registry, clusters, targets, inventory)
        seen = _with_drift(found, drift, name)
    else:
        seen = _as_observed(apps.observed(name), clusters, targets, inventory)
    # Read once for every target, not once per target: a thousand targets were a thousand
    # queries of each.
    stored = _Stored(
        {(r.cluster, r.component): r for r in apps.rollouts(name)}, apps.hook_runs_of(name)
    )
    step_views = [
        _step_view(
            stored,
            record,
            step,
            [t for t in targets if t.step == step.name],
            clusters,
            registry,
            seen,
            analyses.view(name, record.revision, step),
        )
        for step in steps
    ]
    healths = [_health(v) for v in step_views if v["type"] == "deploy"]
    overall = worst(healths)
    # What the blast-radius guard holds (hub.service.enrollment) waits for the operator.
    hold = apps.hold(name)
    held = hold.reason if hold is not None and not hold.confirmed else None
    view: StatusView = {
        "name": name,
        "revision": record.revision,
        "publishVersion": revision.publish_version or None,
        "phase": record.phase,
        "health": overall.status.value,
        "reason": overall.reason,
        "message": held or record.message,
        "next": f"run `flotilla workflow resume {name}`" if held else next_action(record, steps),
        "steps": step_views,
    }
    return Tree(view, placed(targets, inventory), cached)


def placed(targets: Iterable[TargetRecord], inventory: Inventory) -> Placed:
    """Where the objects of the releases `targets` place are, as `inventory` lists them."""
    releases = _releases(targets, inventory)
    namespaces: dict[str, set[str]] = {}
    for (cluster, _), refs in releases.items():
        namespaces.setdefault(cluster, set()).update(ref.get("namespace") or "" for ref in refs)
    return Placed(tuple(releases), {c: tuple(sorted(where)) for c, where in namespaces.items()})


def seen_at(registry: Registry, name: str) -> str | None:
    """When cluster `name` was last heard from, by its prober or its watches (which may
    have heard from a dying cluster after its last probe); None if it is not registered."""
    record = registry.record(name)
    return None if record is None else timestamp(registry.last_seen(record))


def cached_objects(registry: Registry, targets: list[TargetRecord], inventory: Inventory) -> Judged:
    """The objects of the releases an application's current `targets` place (as its
    `inventory` lists them) that the watch caches can tell, with their health: from the
    store and the caches alone, so it asks no cluster and starts no watch. What
    `cached_health` and `observed_record` are made of; a caller that wants both reads it
    once."""
    found: Judged = {}
    for key, refs in _releases(targets, inventory).items():
        healths = _sighted(registry, key, refs)
        found[key] = [(r, h) for r, h in zip(refs, healths, strict=True) if h is not None]
    return found


def cached_health(
    apps: AppStore,
    registry: Registry,
    record: AppRecord,
    targets: list[TargetRecord],
    cached: Judged | None = None,
) -> HealthStatus:
    """The health `status` rolls up for `record` (its current revision's `targets`), from
    the store and the watch caches alone: objects no cache covers (a kind it does not
    watch, a cache not listed yet) are left out instead of read from their cluster, so
    it asks no cluster and starts no watch. For the hub's metrics, on every scrape.
    `cached`: `cached_objects` of the same, when the caller has it already."""
    steps = {s.name: s for s in apps.steps(record.name, record.revision)}
    if cached is None:
        cached = cached_objects(registry, targets, apps.inventory(record.name))
    clusters = {c.name: c for c in registry.clusters()}
    healths = []
    for target in targets:
        objects = [h for _, h in cached.get((target.cluster, target.component), [])]
        health = _target_health(record, steps[target.step], target, objects)
        healths.append(_on_cluster(health, clusters.get(target.cluster)))
    return worst(healths).status


def observed_record(drift: DriftOf, record: AppRecord, cached: Judged) -> ObservedRecord:
    """What `status` shows of the objects of `record`'s releases, from what the watch
    caches tell of them (`cached_objects`) and the drift keeper: for the store, where a
    hub that does not drive the application reads it. Objects no cache covers are left
    out (shown `NOT_OBSERVED` there)."""
    seen = _with_drift(cached, drift, record.name)
    return ObservedRecord(
        {key: tuple(_observed(looked) for looked in objects) for key, objects in seen.items()}
    )


def _releases(targets: Iterable[TargetRecord], inventory: Inventory) -> dict[Release, Objects]:
    """Each release the targets place, in order and each once (a release may be a target
    of several steps), with the objects its inventory lists."""
    keys = sorted({(t.cluster, t.component) for t in targets})
    return {key: inventory.get(key, (0, []))[1] for key in keys}


def _sighted(registry: Registry, key: Release, refs: Objects) -> list[Health | None]:
    """The health of each of `refs` as the cache of their cluster tells it; None for what
    it cannot tell."""
    sightings = registry.observer.sightings(key[0], refs)
    return [_judged(seen) if seen is not None else None for seen in sightings]


def _with_drift(found: Judged, drift: DriftOf, app: str) -> Seen:
    """`found` with what the drift keeper says of each object."""
    seen: Seen = {}
    for key, pairs in found.items():
        drifts = drift(app, *key)
        seen[key] = [Looked(ref, health, _drift_of(drifts, ref)) for ref, health in pairs]
    return seen


def _drift_of(drifts: Mapping[ObjectKey, Drift], ref: Mapping[str, Any]) -> DriftView | None:
    found = drifts.get(_ref_key(ref))
    return None if found is None else _drift_view(found)


def _observed(looked: Looked) -> ObservedObject:
    ref = looked.ref
    return ObservedObject(
        ref["apiVersion"],
        ref["kind"],
        ref.get("namespace"),
        ref["name"],
        looked.health.status.value,
        looked.health.reason,
        _storable(looked.drift),
    )


def _storable(drift: DriftView | None) -> DriftView | None:
    """`drift` with every value longer than `STORED_VALUE_MAX` replaced by its size."""
    if drift is None:
        return None
    fields: list[FieldDriftView] = [
        {
            "path": f["path"],
            "applied": _bounded(f["applied"]),
            "live": _bounded(f["live"]),
            "manager": f["manager"],
        }
        for f in drift["fields"]
    ]
    return {**drift, "fields": fields}


def _bounded(value: Any) -> Any:
    size = len(json.dumps(value))
    return value if size <= STORED_VALUE_MAX else f"({size} bytes, too long to keep in the store)"


def _as_observed(
    observed: ObservedRecord | None,
    clusters: Mapping[str, ClusterRecord],
    targets: list[TargetRecord],
    inventory: Inventory,
) -> Seen:
    """Each release's objects as the hub that drives the application stored them; those
    it did not store are Unknown, `NOT_OBSERVED`."""
    releases = observed.releases if observed is not None else {}
    seen: Seen = {}
    for key, refs in _releases(targets, inventory).items():
        if key[0] not in clusters:
            seen[key] = _unregistered(refs)
            continue
        stored = {_key_of(o): o for o in releases.get(key, ())}
        seen[key] = [_stored(ref, stored.get(_ref_key(ref))) for ref in refs]
    return seen


def _stored(ref: dict[str, Any], found: ObservedObject | None) -> Looked:
    if found is None:
        return Looked(ref, Health(HealthStatus.UNKNOWN, NOT_OBSERVED), None)
    return Looked(ref, Health(HealthStatus(found.health), found.reason), found.drift)


def _ref_key(ref: Mapping[str, Any]) -> ObjectKey:
    return object_key(ref["apiVersion"], ref["kind"], ref.get("namespace"), ref["name"])


def _key_of(found: ObservedObject) -> ObjectKey:
    return object_key(found.api_version, found.kind, found.namespace, found.name)


def _unregistered(refs: Objects) -> list[Looked]:
    return [Looked(r, Health(HealthStatus.UNKNOWN, "cluster not registered"), None) for r in refs]


def next_action(record: AppRecord, steps: list[StepRecord]) -> str | None:
    """What the operator must do now, as a command they can paste."""
    if record.phase == AppPhase.SUSPENDED:
        return f"run `flotilla workflow resume {record.name}`"
    if record.phase == AppPhase.FAILED:
        return (
            f"fix the cause, then `flotilla workflow restart {record.name}`; "
            f"or `flotilla workflow rollback {record.name}`"
        )
    return None


async def _read_objects(
    registry: Registry,
    clusters: Mapping[str, ClusterRecord],
    targets: list[TargetRecord],
    inventory: Inventory,
) -> tuple[Judged, bool]:
    """Each release's objects with their health: from the watch caches, and what they
    cannot tell read from the clusters concurrently; and whether every one came from a
    cache. Only those reads become tasks: with every object cached, a call creates none
    and never yields to the loop."""
    found: dict[Release, list[tuple[dict[str, Any], Health | None]]] = {}
    for key, refs in _releases(targets, inventory).items():
        if key[0] not in clusters:
            found[key] = [(looked.ref, looked.health) for looked in _unregistered(refs)]
            continue
        registry.observer.watch(key[0])
        found[key] = list(zip(refs, _sighted(registry, key, refs), strict=True))
    unseen = {k: refs for k, pairs in found.items() if (refs := [r for r, h in pairs if h is None])}
    if not unseen:  # every object cached: nothing to read or to fill in
        return cast(Judged, found), True
    reads = await asyncio.gather(
        *(_read_live(registry, clusters[key[0]], refs) for key, refs in unseen.items())
    )
    live = {key: iter(healths) for key, healths in zip(unseen, reads, strict=True)}
    return {
        key: [(r, h if h is not None else next(live[key])) for r, h in pairs]
        for key, pairs in found.items()
    }, False


async def _read_live(registry: Registry, cluster: ClusterRecord, refs: Objects) -> list[Health]:
    """The health of `refs` as their cluster says now (GETs), bounded per cluster by the
    status read timeout: a slow cluster must not make `status` slow for everyone."""
    if cluster.health == "Unreachable":
        return [Health(HealthStatus.UNKNOWN, "cluster unreachable")] * len(refs)
    try:
        client = await registry.client(cluster.name)
        async with asyncio.timeout(registry.settings.status_read_timeout):
            objects = await asyncio.gather(*(get(client, ref_of(r)) for r in refs))
    except (TimeoutError, ClusterError) as e:
        reason = "no answer in time" if isinstance(e, TimeoutError) else str(e)
        return [Health(HealthStatus.UNKNOWN, reason)] * len(refs)
    return [assess(o) for o in objects]


def _judged(seen: Sighting) -> Health:
    """The health of what a cache saw; when its watch is down, say how old that is."""
    health = seen.health
    if seen.fresh:
        return health
    note = f"as last seen {timestamp(seen.seen) or 'never'}"
    return Health(health.status, f"{note}: {health.reason}" if health.reason else note)


def _step_view(
    stored: _Stored,
    record: AppRecord,
    step: StepRecord,
    targets: list[TargetRecord],
    clusters: Mapping[str, ClusterRecord],
    registry: Registry,
    seen: Seen,
    analysis: list[MeasurementView],
) -> StepView:
    by_cluster: dict[str, list[TargetRecord]] = {}
    for target in targets:
        by_cluster.setdefault(target.cluster, []).append(target)
    cluster_views: list[ClusterStatusView] = []
    for name, cluster_targets in sorted(by_cluster.items()):
        cluster = clusters.get(name)
        releases = [
            _release_view(
                stored,
                record,
                step,
                t,
                seen.get((t.cluster, t.component), []),
            )
            for t in cluster_targets
        ]
        health = _on_cluster(worst(_health(r) for r in releases), cluster)
        cluster_views.append(
            {
                "name": name,
                "labels": cluster.labels if cluster else {},
                "reachable": cluster is not None and cluster.health != "Unreachable",
                "clusterHealth": cluster.health if cluster else "NotRegistered",
                "lastSeen": seen_at(registry, name),
                "health": health.status.value,
                "reason": health.reason,
                "releases": releases,
            }
        )
    health = worst(_health(c) for c in cluster_views)
    return {
        "name": step.name,
        "type": step.type,
        "phase": step.phase,
        "message": step.message,
        "analysis": analysis,
        "health": health.status.value,
        "reason": health.reason,
        "clusters": cluster_views,
    }


def _release_view(
    stored: _Stored,
    record: AppRecord,
    step: StepRecord,
    target: TargetRecord,
    objects: list[Looked],
) -> ReleaseView:
    object_views: list[ObjectView] = [
        {
            "kind": o.ref["kind"],
            "namespace": o.ref.get("namespace"),
            "name": o.ref["name"],
            "health": o.health.status.value,
            "reason": o.health.reason,
            "sync": "Synced" if o.drift is None else "OutOfSync",
            "drift": o.drift,
            "keep": is_kept(o.ref),
        }
        for o in objects
    ]
    health = _target_health(record, step, target, (o.health for o in objects))
    key = (target.cluster, target.component)
    runs = stored.hook_runs.get(key, [])
    return {
        "component": target.component,
        "release": target.release,
        "namespace": target.namespace,
        "chart": target.chart,
        "phase": target.phase,
        "message": target.message,
        "health": health.status.value,
        "reason": health.reason,
        "rollout": rollout_view(target, stored.rollouts.get(key)),
        "objects": object_views,
        "hooks": [_hook_view(r) for r in runs if r.event != CRDS],
        "crds": [
            {"name": r.name, "phase": r.phase, "message": r.message, "at": timestamp(r.started_at)}
            for r in runs
            if r.event == CRDS
        ],
    }


def _hook_view(run: HookRunRecord) -> HookRunView:
    return {
        "event": run.event,
        "kind": run.kind,
        "namespace": run.namespace or None,
        "name": run.name,
        "revision": run.revision,
        "phase": run.phase,
        "message": run.message,
        "started": timestamp(run.started_at),
        "finished": timestamp(run.finished_at),
    }


def _drift_view(drift: Drift) -> DriftView:
    return {
        "gone": drift.gone,
        "fields": [
            {"path": f.path, "applied": f.want, "live": f.have, "manager": f.manager}
            for f in drift.fields
        ],
        "action": drift.action,
        "since": timestamp(drift.since),
    }


def _target_health(
    record: AppRecord, step: StepRecord, target: TargetRecord, objects: Iterable[Health]
) -> Health:
    """A release's health: what its phase says until it is applied, then its objects'."""
    if target.phase == TargetPhase.FAILED:
        return Health(HealthStatus.DEGRADED, target.message)
    if target.phase == TargetPhase.PAUSED:
        return Health(HealthStatus.SUSPENDED, f"canary {target.message}")
    if target.phase == TargetPhase.PENDING:
        waiting = record.phase == AppPhase.SUSPENDED or step.phase in (
            StepPhase.SUSPENDED,
            StepPhase.APPROVED,
        )
        status = HealthStatus.SUSPENDED if waiting else HealthStatus.PROGRESSING
        return Health(status, "not deployed yet")
    health = worst(objects)
    if target.phase != TargetPhase.HEALTHY and health.status is HealthStatus.HEALTHY:
        return Health(HealthStatus.PROGRESSING, target.message or target.phase)
    return health


def _on_cluster(health: Health, cluster: ClusterRecord | None) -> Health:
    """A cluster the prober does not find Healthy leaves its releases Unknown at best."""
    if cluster is not None and cluster.health != "Healthy":
        return worst([health, Health(HealthStatus.UNKNOWN, f"cluster {cluster.health}")])
    return health


def _health(view: Mapping[str, Any]) -> Health:
    return Health(HealthStatus(view["health"]), view.get("reason") or "")
