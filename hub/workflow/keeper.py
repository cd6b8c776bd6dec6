"""The drift keeper: what the hub applied stays as it applied it, on every cluster.

Nobody has to change a revision for the fleet to drift from it: a `kubectl edit`, a
deleted Service. The hub already holds a watch cache of every cluster (hub.fleet.observer),
and the observer tells the keeper whenever a cache changes, so drift is found within a
watch event of happening, without polling and without an agent in the members.

A look at one object is cheap when nothing happened: the cached object still `covers`
the manifest, or it is the very version last found in sync. Only a suspect is asked of
its cluster: a GET (with the managedFields a cache drops) and a dry-run apply of the
manifest, compared over exactly the fields our manager would own (`clusters.drift`). So
a field that another manager owns (an HPA's `replicas`, a webhook's default) is never
drift, and the drift names who made the change.

A drifted object is re-applied (server-side apply, forced: we take our fields back) and
a deleted one re-created, unless the application's `apply-once` policy leaves it alone,
the hub runs with `--no-heal`, or the application is suspended; it is shown as
`OutOfSync` in status either way, and recorded as one event. Heals of one object back
off, and an object healed `CONTESTED_AFTER` times within `HEAL_WINDOW` is contested:
something keeps changing it back, and fighting it would only make both sides churn, so
the keeper stops and says who. A new revision of the release starts afresh.

Releases in motion are left to the engine: a target being deployed, a canary that has
not completed, an application being deleted. The Deployer's per-release lock keeps a
heal from landing in the middle of a deploy.

Drift state lives in memory: after a restart the caches list again and every object is
looked at anew.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from clusters.apply import apply, dry_run, get
from clusters.drift import FieldDrift, drifted
from clusters.errors import ClusterError
from clusters.fields import covers
from clusters.resources import Backoff, ObjectRef
from hub.errors import FlotillaError
from hub.fleet.objects import REDACTED, SECRET_FIELDS, ref_of
from hub.fleet.registry import Registry
from hub.format import Application
from hub.format.applyonce import WHOLE, ApplyOnce, keep_live
from hub.model.phases import AppPhase, Stage, TargetPhase
from hub.model.records import AppRecord, TargetRecord
from hub.model.settings import DEFAULTS, Settings
from hub.state.interface import AppStore
from hub.tasks import Supervisor, first_line
from hub.workflow.deploy import Deployer, namespace_of
from hub.workflow.engine import every_app

log = logging.getLogger(__name__)

TASK = "keeper"
# A burst of watch events (a rollout's status updates, a chart's objects applied at once)
# is one look rather than one per event.
COALESCE = 0.05
# Heals of one object within this window count toward its being contested.
HEAL_WINDOW = 600.0
CONTESTED_AFTER = 3
# The wait before heal number n (0-based) of one object within the window.
HEAL_BACKOFF = Backoff(first=1.0, factor=4.0, cap=60.0)
# Canary stages after which the release is the engine's no more.
_AT_REST = (Stage.COMPLETED, Stage.ROLLED_BACK)
# Seconds before a look that failed (the cluster did not answer, a heal was refused) is
# tried again.
RETRY = 5.0

ObjectKey = tuple[str, str, str | None, str]  # (API group, kind, namespace, name)
ReleaseKey = tuple[str, str, str]  # (app, cluster, component)


@dataclass
class Drift:
    """One object of a release that differs from what the hub applied, as status shows it."""

    kind: str
    namespace: str | None
    name: str
    fields: list[FieldDrift]
    """The fields that differ (their values redacted for a Secret); empty when `gone`."""
    gone: bool
    action: str
    """What the keeper does about it: `healing`, or why it leaves it as it is."""
    since: float = field(default_factory=time.time)


@dataclass
class _Heals:
    """When one object of one revision of a release was healed, and whether it is contested."""

    at: list[float] = field(default_factory=list)
    contested_by: str | None = None

    def recent(self, now: float) -> int:
        self.at = [t for t in self.at if now - t < HEAL_WINDOW]
        return len(self.at)


class Keeper:
    def __init__(
        self,
        apps: AppStore,
        registry: Registry,
        deployer: Deployer,
        *,
        application: Callable[[str, int], Application],
        supervisor: Supervisor,
        settings: Settings = DEFAULTS,
        owns: Callable[[str], bool] = every_app,
    ) -> None:
        """`application(app, revision)` reads a stored revision's file back, for its
        apply-once policy; `owns` says which applications this hub drives (the engine's):
        it heals only theirs."""
        self._apps = apps
        self._owns = owns
        self._registry = registry
        self._deployer = deployer
        self._application = application
        self._supervisor = supervisor
        self._heal = settings.heal
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._drift: dict[ReleaseKey, dict[ObjectKey, Drift]] = {}
        # Object versions last found in sync (or left as they are), per revision: a look
        # at an unchanged object asks nothing.
        self._settled: dict[tuple[ReleaseKey, ObjectKey], tuple[str, int]] = {}
        self._manifests: dict[tuple[ReleaseKey, int], dict[ObjectKey, dict[str, Any]]] = {}
        self._heals: dict[tuple[ReleaseKey, ObjectKey, int], _Heals] = {}
        # The releases each cluster had at its last look: what to forget is looked for
        # only when they changed.
        self._here: dict[str, set[ReleaseKey]] = {}

    def start(self) -> None:
        """Look at every cluster now, and again whenever its watch cache changes."""
        self._registry.observer.listen(self.look)
        self._supervisor.spawn(TASK, self._run)
        for cluster in self._registry.clusters():
            self.look(cluster.name)

    def look(self, cluster: str) -> None:
        """Have the releases on `cluster` looked at soon (coalesced with other requests)."""
        self._dirty.add(cluster)
        self._wake.set()

    def drift(self, app: str, cluster: str, component: str) -> Mapping[ObjectKey, Drift]:
        """The objects of a release that are out of sync now, by object."""
        return self._drift.get((app, cluster, component), {})

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(COALESCE)
            self._wake.clear()
            dirty, self._dirty = sorted(self._dirty), set()
            # Read once per pass: during a rollout every cluster is dirty in every pass.
            records = [r for r in self._apps.apps() if self._owns(r.name)]
            await asyncio.gather(*(self._keep_cluster(name, records) for name in dirty))

    async def _keep_cluster(self, cluster: str, records: list[AppRecord]) -> None:
        cache = self._registry.observer.cache(cluster)
        if cache is None or not cache.synced:
            return  # a cache that is not connected cannot tell a deleted object from a gap
        here: set[ReleaseKey] = set()
        for record in records:
            inventory = self._apps.inventory(record.name, cluster)
            for (_, component), (revision, entries) in sorted(inventory.items()):
                release = (record.name, cluster, component)
                here.add(release)
                target = self._at_rest(record, cluster, component, revision)
                if target is None:
                    self._drift.pop(release, None)
                    continue
                try:
                    await self._keep_release(record, target, entries)
                except (ClusterError, FlotillaError) as e:
                    log.info(
                        "cannot look at %s/%s of %s: %s",
                        cluster,
                        component,
                        record.name,
                        first_line(e),
                        extra={"app": record.name, "cluster": cluster},
                    )
                    # A look that failed is tried again even if nothing changes meanwhile.
                    asyncio.get_running_loop().call_later(RETRY, self.look, cluster)
        self._forget(cluster, here)

    def _forget(self, cluster: str, here: set[ReleaseKey]) -> None:
        """Drop what was kept of releases no longer on `cluster` (removed, or deleted apps).

        Only when the cluster's releases changed since its last look: the tables hold the
        releases of every cluster, and walking them at every look of every cluster was
        a cost squared in the clusters during a rollout, when each is looked at every pass.
        """
        if self._here.get(cluster) == here:
            return
        self._here[cluster] = here
        for table in (self._drift, self._settled, self._manifests, self._heals):
            keys: list[Any] = list(table)
            for key in keys:
                release = key if isinstance(key[0], str) else key[0]
                if release[1] == cluster and release not in here:
                    del table[key]

    def _at_rest(
        self, record: AppRecord, cluster: str, component: str, revision: int
    ) -> TargetRecord | None:
        """The target of the revision the release runs, if the engine is done with it."""
        if record.phase is AppPhase.DELETING:
            return None
        if self._deployer.lock(record.name, cluster, component).locked():
            return None
        rollout = self._apps.rollout(record.name, cluster, component)
        if rollout is not None and rollout.stage not in _AT_REST:
            return None
        current = self._apps.target(record.name, record.revision, cluster, component)
        if current is not None and current.phase in (
            TargetPhase.APPLYING,
            TargetPhase.WAITING,
            TargetPhase.PAUSED,
        ):
            return None
        applied = (
            current
            if current is not None and current.revision == revision
            else self._apps.target(record.name, revision, cluster, component)
        )
        return applied if applied is not None and applied.phase is TargetPhase.HEALTHY else None

    async def _keep_release(
        self, record: AppRecord, target: TargetRecord, entries: Sequence[Mapping[str, Any]]
    ) -> None:
        release = (target.app, target.cluster, target.component)
        cache = self._registry.observer.cache(target.cluster)
        if cache is None:
            return  # its watch was dropped since this pass began (a shard handed on)
        manifests = await self._manifests_of(target)
        drifts = self._drift.setdefault(release, {})
        for entry in entries:
            ref = ref_of(entry)
            key = object_key(ref.api_version, ref.kind, ref.namespace, ref.name)
            manifest = manifests.get(key)
            if manifest is None or not (cache.watches(ref.api_version, ref.kind)):
                continue
            if not cache.listed(ref.kind):
                continue
            seen = cache.get(ref.kind, ref.namespace, ref.name)
            version = str(((seen or {}).get("metadata") or {}).get("resourceVersion") or "")
            if self._settled.get((release, key)) == (version, target.revision):
                continue
            if seen is not None and covers(seen, manifest):
                self._settle(release, key, version, target.revision, in_sync=True)
                continue
            await self._suspect(record, target, key, manifest, version)
        if not drifts:
            self._drift.pop(release, None)

    async def _suspect(
        self,
        record: AppRecord,
        target: TargetRecord,
        key: ObjectKey,
        manifest: dict[str, Any],
        version: str,
    ) -> None:
        """Ask the cluster whether the object really drifted; show it, and heal it or say
        why not."""
        release = (target.app, target.cluster, target.component)
        client = await self._registry.client(target.cluster)
        live = await get(client, ObjectRef(manifest["apiVersion"], key[1], key[2], key[3]))
        if live is None:
            fields: list[FieldDrift] = []
        else:
            [answer] = await dry_run(client, [manifest], default_namespace=target.namespace)
            want = answer.result
            if want is None:
                return
            fields = drifted(live, want)
            if not fields:
                self._settle(release, key, version, target.revision, in_sync=True)
                return
        once = self._application(target.app, target.revision).apply_once
        kept = once.paths(target.component, key[1], key[3])
        action = self._action(record, target, key, fields, once, gone=live is None)
        self._show(target, key, fields, gone=live is None, action=action)
        if action != "healing":
            self._settle(release, key, version, target.revision, in_sync=False)
            return
        # Fields apply-once leaves alone keep their live values through a heal of the rest.
        await self._heal_object(target, key, keep_live(manifest, live, kept) if kept else manifest)

    def _action(
        self,
        record: AppRecord,
        target: TargetRecord,
        key: ObjectKey,
        fields: list[FieldDrift],
        once: ApplyOnce,
        *,
        gone: bool,
    ) -> str:
        """`healing`, or why the drift is left as it is."""
        _, kind, _, name = key
        paths = once.paths(target.component, kind, name)
        # As KubeVela (since #7051): an object a rule covers is not re-created either.
        if (paths and (gone or WHOLE in paths)) or (
            fields and all(once.leaves_alone(target.component, kind, name, f.path) for f in fields)
        ):
            return "left as it is: apply-once"
        if not self._heal:
            return "left as it is: healing is off (flotilla serve --no-heal)"
        if record.suspend:
            return "left as it is: the application is suspended"
        heals = self._heals.setdefault((_release(target), key, target.revision), _Heals())
        if heals.contested_by is None and heals.recent(time.time()) >= CONTESTED_AFTER:
            heals.contested_by = _manager(fields) or "another manager"
            self._apps.add_target_event(
                target,
                f"{target.cluster}/{target.component}: {kind} {name} is contested by "
                f"{heals.contested_by}: it changed it back {CONTESTED_AFTER} times in "
                f"{HEAL_WINDOW / 60:.0f} minutes; no longer healed until the next revision",
            )
        if heals.contested_by is not None:
            return f"left as it is: contested by {heals.contested_by}"
        return "healing"

    def _show(
        self,
        target: TargetRecord,
        key: ObjectKey,
        fields: list[FieldDrift],
        *,
        gone: bool,
        action: str,
    ) -> None:
        """Status shows the drift; the event log gets one line when it is new or changed."""
        _, kind, namespace, name = key
        shown = [_redacted(kind, f) for f in fields]
        drifts = self._drift.setdefault(_release(target), {})
        before = drifts.get(key)
        now = Drift(kind, namespace, name, shown, gone, action)
        if before is not None and (before.fields, before.gone, before.action) == (
            shown,
            gone,
            action,
        ):
            now.since = before.since
            drifts[key] = now
            return
        drifts[key] = now
        what = "was deleted" if gone else "; ".join(_describe(f) for f in shown)
        self._apps.add_target_event(
            target, f"{target.cluster}/{target.component}: drift: {kind} {name} {what}; {action}"
        )

    async def _heal_object(
        self, target: TargetRecord, key: ObjectKey, manifest: dict[str, Any]
    ) -> None:
        """Re-apply the object, once its backoff allows; meanwhile the look is put off."""
        heals = self._heals[(_release(target), key, target.revision)]
        now = time.time()
        due = (heals.at[-1] + HEAL_BACKOFF.delay(len(heals.at) - 1)) if heals.at else now
        if due > now:
            asyncio.get_running_loop().call_later(due - now, self.look, target.cluster)
            return
        lock = self._deployer.lock(target.app, target.cluster, target.component)
        if lock.locked():
            return  # the engine is at it; its deploy applies the object anyway
        async with lock:
            client = await self._registry.client(target.cluster)
            [applied] = await apply(client, [manifest], default_namespace=target.namespace)
            heals.at.append(time.time())
            revision, entries = self._apps.inventory(target.app).get(
                (target.cluster, target.component), (target.revision, [])
            )
            if revision == target.revision:
                updated = [
                    {**e, "uid": applied.uid}
                    if object_key(e["apiVersion"], e["kind"], e.get("namespace"), e["name"]) == key
                    else e
                    for e in entries
                ]
                if updated != entries:
                    self._apps.set_inventory(
                        target.app, target.cluster, target.component, revision, updated
                    )
        log.info(
            "healed %s %s on %s",
            key[1],
            key[3],
            target.cluster,
            extra={"app": target.app, "cluster": target.cluster},
        )

    def _settle(
        self, release: ReleaseKey, key: ObjectKey, version: str, revision: int, *, in_sync: bool
    ) -> None:
        """Remember the object's version so that it is not asked about again until it
        changes: in sync, or drifted and left as it is."""
        self._settled[(release, key)] = (version, revision)
        if in_sync:
            self._drift.get(release, {}).pop(key, None)

    async def _manifests_of(self, target: TargetRecord) -> dict[ObjectKey, dict[str, Any]]:
        """The target's manifests by object, rendered once per revision."""
        release = _release(target)
        cached = self._manifests.get((release, target.revision))
        if cached is None:
            objects = await self._deployer.render(target)
            cached = {
                object_key(
                    str(o["apiVersion"]),
                    str(o["kind"]),
                    namespace_of(o, target.namespace),
                    str(o["metadata"]["name"]),
                ): o
                for o in objects
            }
            for stale in [k for k in self._manifests if k[0] == release]:
                del self._manifests[stale]
            self._manifests[(release, target.revision)] = cached
        return cached


def _release(target: TargetRecord) -> ReleaseKey:
    return target.app, target.cluster, target.component


def object_key(api_version: str, kind: str, namespace: str | None, name: str) -> ObjectKey:
    """An object by API group, not version: a chart moving a kind to v1 is the same object."""
    return api_version.rpartition("/")[0], kind, namespace, name


def _manager(fields: Sequence[FieldDrift]) -> str | None:
    return next((f.manager for f in fields if f.manager), None)


def _redacted(kind: str, drift: FieldDrift) -> FieldDrift:
    """A Secret's values never leave the hub: that a key changed is all anyone sees."""
    if kind != "Secret" or not drift.path.startswith(SECRET_FIELDS):
        return drift
    hidden = [None if v is None else REDACTED for v in (drift.want, drift.have)]
    return FieldDrift(drift.path, hidden[0], hidden[1], drift.manager)


def _describe(drift: FieldDrift) -> str:
    have = "absent" if drift.have is None else _short(drift.have)
    want = "absent" if drift.want is None else _short(drift.want)
    by = f" by {drift.manager}" if drift.manager else ""
    return f"{drift.path} is {have} (applied {want}), changed{by}"


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
