"""One target's deploy: render, run its hooks, apply, prune, wait until healthy.

The inventory is written before anything changes on the cluster (as the union of what
was there and what is coming) and again after (exactly what is there now), so a hub
killed between the two knows of every object it may have created and the next run
prunes correctly. Objects carry labels naming the application, component and revision;
the labels go on object metadata only, never into pod templates, so a new revision that
changes nothing in a workload does not restart its pods.

A chart's Helm hooks run around the release (`hub.workflow.hooks`): `pre-<operation>`
before anything of the release changes, `post-<operation>` once it is healthy. The
operation of a target is an install on its first deploy (no inventory for the cluster and
component; its `crds/` are created then, before anything else), a rollback for a revision
`workflow rollback` made, an upgrade otherwise, and a delete in `remove`. Only the
release's objects are returned by `render`: the drift keeper and `diff` never see hooks.

Every action on a cluster (a deploy, a rollback, a removal) holds the cluster's watch cache
while it runs (`Observer.using`): its waits and hooks read the cache, and a replica that
watches only its shards' clusters may not have one yet, nor drop it meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from clusters.apply import AppliedRef, apply, delete, get, stale
from clusters.client import ClusterClient
from clusters.health import Health, HealthStatus
from clusters.resources import ObjectRef
from hub.charts import ChartCache
from hub.charts.hooks import Classified, HookEvent, Operation, classify
from hub.errors import FlotillaError
from hub.fleet.keep import KEEP, deletable, flagged, is_kept, kept, kept_message
from hub.fleet.objects import labelled, ref_dict, ref_of
from hub.fleet.registry import Registry
from hub.format.applyonce import ApplyOnce, keep_live
from hub.model.phases import TargetPhase
from hub.model.records import TargetRecord
from hub.model.settings import DEFAULTS
from hub.state.interface import AppStore
from hub.tasks import first_line
from hub.workflow.hooks import Hooks
from hub.workflow.rollout import CanaryOutcome, Rollouts
from hub.workflow.signals import Signals
from hub.workflow.waiting import Waits


class TargetFailed(FlotillaError):
    """The target could not be deployed, or did not become healthy in time."""


class Deployer:
    def __init__(
        self,
        apps: AppStore,
        registry: Registry,
        charts: ChartCache,
        *,
        signals: Signals,
        analysed: Callable[[TargetRecord, int], bool],
        apply_once: Callable[[str, int], ApplyOnce] = lambda app, revision: ApplyOnce(),
        step_timeout: float = DEFAULTS.step_timeout,
        deployed: Callable[[TargetRecord, float], None] | None = None,
    ) -> None:
        """`analysed`: whether the metric analysis of a canary step passed (`Rollouts`);
        `deployed` is told the seconds from applying to healthy of each target (metrics);
        `apply_once(app, revision)` is the revision's apply-once policy."""
        self._apply_once = apply_once
        self.apps = apps
        self._deployed = deployed
        self.registry = registry
        self.charts = charts
        self.step_timeout = step_timeout
        self.waits = Waits(registry.observer.cache, timeout=step_timeout)
        self.rollouts = Rollouts(
            apps, step_timeout=step_timeout, waits=self.waits, signals=signals, analysed=analysed
        )
        self.hooks = Hooks(apps, self.waits)
        self._locks: dict[tuple[str, str, str], asyncio.Lock] = {}

    def lock(self, app: str, cluster: str, component: str) -> asyncio.Lock:
        """Held by whatever changes a release on a cluster (a deploy, a rollback, a removal,
        a heal), so that the drift keeper's re-apply of the revision a cluster runs never
        lands in the middle of the engine's deploy of the next one."""
        return self._locks.setdefault((app, cluster, component), asyncio.Lock())

    @contextlib.asynccontextmanager
    async def _acting(self, app: str, cluster: str, component: str) -> AsyncIterator[None]:
        """The release's lock, and the cluster's watch cache kept for as long."""
        with self.registry.observer.using(cluster):
            async with self.lock(app, cluster, component):
                yield

    async def render(self, target: TargetRecord) -> list[dict[str, Any]]:
        """The release's manifests of a target, labelled, from the very chart its revision
        pinned: no hooks, no `crds/`."""
        return (await self._rendered(target))[0].release

    async def _rendered(
        self, target: TargetRecord, *, checked: bool = True
    ) -> tuple[Classified, list[dict[str, Any]]]:
        """A target's render split into release objects (labelled) and hooks, and the
        chart's `crds/` objects; k8s-objects have neither hooks nor `crds/`. `checked`:
        refuse a cluster outside the chart's `kubeVersion` (not for what is already there)."""
        spec = target.spec
        if spec.type == "k8s-objects":
            split, crds = Classified([dict(o) for o in spec.objects], []), []
        else:
            chart = await self.charts.fetch_stored(spec, revision=target.revision)
            # The cluster's own capabilities, as `helm upgrade` renders against it live.
            capabilities = await self.registry.capabilities(target.cluster)
            if checked:
                chart.check_cluster(capabilities, target.cluster)
            split = classify(
                await chart.render_async(
                    dict(spec.values),
                    release_name=target.release,
                    namespace=target.namespace,
                    revision=target.revision,
                    capabilities=capabilities,
                )
            )
            crds = chart.crds
        release = labelled(split.release, target.app, target.component, target.revision)
        return Classified(release, split.hooks), crds

    def _operation(self, target: TargetRecord, first: bool) -> Operation:
        """What this deploy does to the release on the target's cluster. A deploy that
        resumes after its apply finds its own inventory: the hooks it already ran for this
        revision say whether it began as an install."""
        if first:
            return Operation.INSTALL
        if self.apps.revision(target.app, target.revision).rollback_of is not None:
            return Operation.ROLLBACK
        installing = {HookEvent.PRE_INSTALL, HookEvent.POST_INSTALL}
        ran = self.apps.hook_runs(target.app, target.cluster, target.component)
        if any(r.revision == target.revision and r.event in installing for r in ran):
            return Operation.INSTALL
        return Operation.UPGRADE

    async def __call__(self, target: TargetRecord, *, resumed: bool = False) -> bool:
        """Deploy one target; False when its canary step is ready and waits for resume."""
        async with self._acting(target.app, target.cluster, target.component):
            return await self._deploy(target, resumed)

    async def _deploy(self, target: TargetRecord, resumed: bool) -> bool:
        started = time.monotonic()
        self._mark(target, TargetPhase.APPLYING)
        client = await self.registry.client(target.cluster)
        split, crds = await self._rendered(target)
        objects = await self._keeping_live(target, split.release, client)
        await self.rollouts.abort_stale(target, objects, client, self.render)
        first = (target.cluster, target.component) not in self.apps.inventory(target.app)
        operation = self._operation(target, first)
        if first:
            await self.hooks.install_crds(target, crds, client)
        # Before the canary's first step too: a migration runs once, before any pod changes.
        await self.hooks.run(target, operation.before, split.hooks_for(operation.before), client)
        outcome = await self.rollouts.run(
            target, objects, client, resumed=resumed, first_deploy=first
        )
        if outcome is CanaryOutcome.PAUSED:
            self._mark(target, TargetPhase.PAUSED, self.rollouts.describe(target))
            return False
        try:
            # A member that crawls answers each request within the client's timeout, and a
            # release is many requests: without this bound its target would apply for ever.
            async with asyncio.timeout(self.step_timeout):
                refs = await self.apply(
                    target.app,
                    target.cluster,
                    target.component,
                    target.revision,
                    target.namespace,
                    objects,
                    client,
                )
        except TimeoutError:
            raise self._timed_out(target, f"applying {len(objects)} object(s)") from None
        self._mark(target, TargetPhase.WAITING, "waiting for the objects to become healthy")
        await self.wait_healthy(client, refs, target)
        await self.hooks.run(target, operation.after, split.hooks_for(operation.after), client)
        self._mark(target, TargetPhase.HEALTHY)
        if self._deployed is not None:
            self._deployed(target, time.monotonic() - started)
        self.apps.add_target_event(
            target, f"{target.cluster}/{target.component}: applied, {len(refs)} object(s) healthy"
        )
        return True

    async def _keeping_live(
        self, target: TargetRecord, objects: list[dict[str, Any]], client: ClusterClient
    ) -> list[dict[str, Any]]:
        """The objects with the live values of the fields an apply-once policy keeps through
        a new revision (its `onUpdate` paths); only those objects are read."""
        once = self._apply_once(target.app, target.revision)

        async def kept(obj: dict[str, Any]) -> dict[str, Any]:
            ref = ObjectRef.of(obj)
            paths = once.on_update(target.component, ref.kind, ref.name)
            if not paths:
                return obj
            where = ObjectRef(
                ref.api_version, ref.kind, namespace_of(obj, target.namespace), ref.name
            )
            return keep_live(obj, await get(client, where), paths)

        return list(await asyncio.gather(*(kept(obj) for obj in objects)))

    async def apply(
        self,
        app: str,
        cluster: str,
        component: str,
        revision: int,
        namespace: str,
        objects: list[dict[str, Any]],
        client: ClusterClient,
    ) -> list[AppliedRef]:
        """Apply, then prune what the previous inventory had and these objects do not, but
        for what a `helm.sh/resource-policy: keep` leaves on the cluster (`_kept`)."""
        previous = self.apps.inventory(app).get((cluster, component), (0, []))[1]
        coming = [
            flagged({**ref_dict(ObjectRef.of(o)), "namespace": namespace_of(o, namespace)}, o)
            for o in objects
        ]
        self.apps.set_inventory(app, cluster, component, revision, previous + coming)
        applied = await apply(client, objects, default_namespace=namespace)
        unkept = stale(applied, [ref_of(e) for e in coming if is_kept(e)])
        current = [
            {**ref_dict(r), "uid": r.uid, **({} if r in unkept else {KEEP: True})} for r in applied
        ]
        gone = stale([ref_of(e) for e in deletable(previous)], applied)
        if gone:
            await delete(client, gone)
        self._kept(app, cluster, component, revision, stale(kept(previous), applied))
        self.apps.set_inventory(app, cluster, component, revision, current)
        return applied

    async def wait_healthy(
        self, client: ClusterClient, refs: list[AppliedRef], target: TargetRecord
    ) -> None:
        """Until every applied object is healthy, on the cluster's watch cache; the
        target's message follows what it waits for, so `status` can say."""

        def report(verdict: Health) -> None:
            if verdict.status is not HealthStatus.HEALTHY and target.message != verdict.reason:
                self._mark(target, TargetPhase.WAITING, verdict.reason)

        verdict = await self.waits.healthy(target.cluster, client, refs, on_change=report)
        if verdict.status is not HealthStatus.HEALTHY:
            raise self._timed_out(
                target, f"waiting for the objects to be healthy: {verdict.reason}"
            )

    def _timed_out(self, target: TargetRecord, doing: str) -> TargetFailed:
        """The one line of a target that ran out of its step timeout: what and where."""
        return TargetFailed(
            f"timed out after {self.step_timeout:.0f}s on cluster {target.cluster} {doing}"
        )

    async def roll_back(self, target: TargetRecord, why: str) -> None:
        """The metric analysis failed: back out the target's canary as kruise does (traffic
        to stable, stable pods untouched, canary gone), then re-apply the release the
        cluster ran before, so that nothing of the failed revision stays there. The target
        fails with `why`."""
        async with self._acting(target.app, target.cluster, target.component):
            await self._roll_back(target, why)

    async def _roll_back(self, target: TargetRecord, why: str) -> None:
        previous = self._previous(target)
        client = await self.registry.client(target.cluster)
        earlier, _ = await self._rendered(previous)
        # The hooks of the release rolled back to, recorded as this target's runs.
        rollback = Operation.ROLLBACK
        await self.hooks.run(target, rollback.before, earlier.hooks_for(rollback.before), client)
        await self.rollouts.roll_back(target, await self.render(target), earlier.release, client)
        await self.apply(
            target.app,
            target.cluster,
            target.component,
            previous.revision,
            previous.namespace,
            earlier.release,
            client,
        )
        await self.hooks.run(target, rollback.after, earlier.hooks_for(rollback.after), client)
        self._mark(target, TargetPhase.FAILED, f"rolled back: {why}")

    def _previous(self, target: TargetRecord) -> TargetRecord:
        """The target of the revision the cluster ran before this one: the inventory keeps
        its number while a canary runs."""
        revision = self.apps.inventory(target.app).get((target.cluster, target.component))
        found = self.apps.target(
            target.app, revision[0] if revision else 0, target.cluster, target.component
        )
        if found is None or found.revision == target.revision:
            raise TargetFailed(
                f"{target.cluster}/{target.component}: no earlier revision to roll back to"
            )
        return found

    async def remove(self, app: str, cluster: str, component: str) -> None:
        """Delete everything the inventory says the app has on `cluster` for `component`,
        between the `pre-delete` and `post-delete` hooks of the revision it runs there."""
        async with self._acting(app, cluster, component):
            revision, entries = self.apps.inventory(app).get((cluster, component), (0, []))
            client = await self.registry.client(cluster)
            # The target of the revision the cluster runs: whose delete hooks run.
            running = self.apps.target(app, revision, cluster, component)
            split = await self._delete_hooks(running) if running else Classified([], [])
            before, after = Operation.DELETE.before, Operation.DELETE.after
            if running is not None:
                await self.hooks.run(running, before, split.hooks_for(before), client, shown=False)
            await delete(client, [ref_of(e) for e in deletable(entries)])
            self._kept(app, cluster, component, revision, kept(entries))
            if running is not None:
                await self.hooks.run(running, after, split.hooks_for(after), client, shown=False)
            self.apps.drop_inventory(app, cluster, component)

    async def _delete_hooks(self, target: TargetRecord) -> Classified:
        """The render whose delete hooks a removal runs: the revision the cluster runs. A
        chart that no longer renders for it (its cached archive lost, a repository gone)
        must not keep the release on the cluster: the removal goes on without hooks, and
        an event says so."""
        try:
            return (await self._rendered(target, checked=False))[0]
        except FlotillaError as e:
            self.apps.add_target_event(
                target,
                f"{target.cluster}/{target.component}: delete hooks not run, the chart does "
                f"not render: {first_line(e)}",
            )
            return Classified([], [])

    def _kept(
        self, app: str, cluster: str, component: str, revision: int, refs: list[ObjectRef]
    ) -> None:
        """Say of each object that a prune or a deletion left on the cluster by its
        resource policy: it is no longer the release's, and nobody will delete it."""
        for ref in refs:
            self.apps.add_event(
                app, kept_message(ref), revision=revision, cluster=cluster, component=component
            )

    def _mark(self, target: TargetRecord, phase: TargetPhase, message: str = "") -> None:
        target.phase, target.message = phase, message
        self.apps.put_target(target)


def namespace_of(obj: Mapping[str, Any], default: str) -> str | None:
    """The namespace an object lands in; None for cluster-scoped kinds we know of."""
    if obj.get("kind") in _CLUSTER_SCOPED:
        return None
    return (obj.get("metadata") or {}).get("namespace") or default


_CLUSTER_SCOPED = frozenset(
    {
        "Namespace",
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "PersistentVolume",
        "StorageClass",
        "PriorityClass",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
        "APIService",
        "GatewayClass",
    }
)
