"""Running a release's Helm hooks on one cluster, with Helm's semantics, and its `crds/`.

Helm runs the hooks of one event one at a time, in order (`hub.charts.hooks`): delete a
namesake first when the hook's policy is `before-hook-creation`, create it, wait until a
Job completes or a Pod succeeds (anything else is done once created), and stop at the
first that fails. Once every hook of the event succeeded, those with `hook-succeeded` go;
a failed one goes if it says `hook-failed`. This module does exactly that, waiting on the
cluster's watch cache like every other wait of a deploy (`hub.workflow.waiting`).

Every run is written to the store before the hook is created and again when it ended, so
`status` shows the last run of each hook, and a hub killed after a hook succeeded does
not run it again for the same revision of the target: the engine deploys a target again
on resume, and a migration Job must not run twice for one upgrade.

Hook objects are never in the release's inventory: nothing prunes them, the drift keeper
never sees them, and they do not count toward the release's health.

The chart's `crds/` objects are created here too, on a target's first deploy only and
only where absent; as Helm does, they are never upgraded or deleted afterwards.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from typing import Any

from clusters.apply import AppliedRef, apply, delete, get
from clusters.client import ClusterClient
from clusters.errors import ClusterError
from clusters.health import Health, HealthStatus, hook_outcome, hook_settled
from clusters.resources import ObjectRef
from hub.charts.hooks import DeletePolicy, Hook, HookEvent
from hub.errors import FlotillaError
from hub.fleet.objects import labelled
from hub.model.phases import HookPhase
from hub.model.records import HookRunRecord, TargetRecord
from hub.state.interface import AppStore
from hub.tasks import first_line
from hub.workflow.waiting import Waits

# The event under which a release's `crds/` objects are recorded with its hook runs.
CRDS = "crds"
# What status says of them, with the CRDs it lists.
CRDS_LEFT = "left as installed: crds/ objects are never upgraded or deleted"


class HookFailed(FlotillaError):
    """A hook failed or timed out: its target fails with this one line."""


class Hooks:
    """Runs the hooks of one target's event, and installs its `crds/`, recording both."""

    def __init__(self, apps: AppStore, waits: Waits) -> None:
        self.apps = apps
        self.waits = waits

    async def run(
        self,
        target: TargetRecord,
        event: HookEvent,
        hooks: Sequence[Hook],
        client: ClusterClient,
        *,
        shown: bool = True,
    ) -> None:
        """Run `hooks` (of `event`, in Helm's order) for `target`; HookFailed at the first
        that fails, after the deletions its policies ask for. Hooks this revision of the
        target already ran successfully for `event` are not run again. `shown`: the
        target's message says which hook it waits for (not for a removal, whose target is
        the record of a revision the cluster runs: history, not a deploy in progress)."""
        if not hooks:
            return
        done = {
            (r.kind, r.name)
            for r in self.apps.hook_runs(target.app, target.cluster, target.component)
            if r.revision == target.revision and r.event == event and r.phase is HookPhase.SUCCEEDED
        }
        succeeded: list[Hook] = []
        for hook in hooks:
            if (hook.kind, hook.name) not in done:
                failure = await self._run_one(target, event, hook, client, shown)
                if failure is not None:
                    if hook.deletes(DeletePolicy.HOOK_FAILED):
                        await self._delete(target, [hook], client)
                    await self._delete(target, _deleted(succeeded), client)
                    raise HookFailed(failure)
            succeeded.append(hook)
        await self._delete(target, _deleted(succeeded[::-1]), client)

    async def install_crds(
        self, target: TargetRecord, crds: Sequence[Mapping[str, Any]], client: ClusterClient
    ) -> None:
        """Create each of the chart's `crds/` objects that the cluster does not have yet,
        before anything else of a first deploy (hooks and templates may use them); one
        that exists is left exactly as it is, whoever installed it."""
        if not crds:
            return
        created = []
        for crd in crds:
            ref = ObjectRef.of(crd)
            found = await get(client, ref)
            if found is None:
                await apply(client, [crd], default_namespace=target.namespace)
                created.append(ref.name)
            self._record(
                target,
                CRDS,
                ref.kind,
                "",
                ref.name,
                HookPhase.EXISTED if found is not None else HookPhase.CREATED,
                CRDS_LEFT,
                finished=True,
            )
        names = ", ".join(created) or "none (all existed)"
        self.apps.add_target_event(
            target,
            f"{target.cluster}/{target.component}: crds/ created {names}; {CRDS_LEFT}",
        )

    async def _run_one(
        self,
        target: TargetRecord,
        event: HookEvent,
        hook: Hook,
        client: ClusterClient,
        shown: bool,
    ) -> str | None:
        """Create one hook and wait until it ended; None when it succeeded, else the line
        its target fails with."""
        manifest = labelled(
            [copy.deepcopy(dict(hook.manifest))], target.app, target.component, target.revision
        )[0]
        namespace = (manifest.get("metadata") or {}).get("namespace") or target.namespace
        what = f"{event} hook {hook.kind} {namespace}/{hook.name}"
        if hook.deletes(DeletePolicy.BEFORE_HOOK_CREATION):
            await self._delete(target, [hook], client)
        run = self._record(target, event, hook.kind, namespace, hook.name, HookPhase.RUNNING)
        if shown:
            target.message = f"running {what}"
            self.apps.put_target(target)
        try:
            (applied,) = await apply(client, [manifest], default_namespace=target.namespace)
        except ClusterError as e:
            return self._finish(target, run, what, f"could not be created: {first_line(e)}")
        run.namespace = applied.namespace or ""
        outcome = await self._outcome(target, applied, client)
        if outcome.status is HealthStatus.HEALTHY:
            self._finish(target, run, what, None)
            return None
        return self._finish(target, run, what, outcome.reason)

    async def _outcome(
        self, target: TargetRecord, applied: AppliedRef, client: ClusterClient
    ) -> Health:
        """How the hook ended (`clusters.health.hook_outcome`), or why it is taken to have
        failed: not ended within the step timeout."""
        last: list[Mapping[str, Any] | None] = [None]

        def settled(obj: Mapping[str, Any] | None) -> Health:
            last[0] = obj
            return hook_settled(obj)

        verdict = await self.waits.healthy(target.cluster, client, [applied], judge=settled)
        if verdict.status is not HealthStatus.HEALTHY:
            return Health(
                HealthStatus.DEGRADED,
                f"timed out after {self.waits.timeout:.0f}s: {verdict.reason}",
            )
        return hook_outcome(last[0])

    def _finish(
        self, target: TargetRecord, run: HookRunRecord, what: str, failure: str | None
    ) -> str | None:
        """Record how a run ended, say so as the target's event; the failure's line."""
        run.phase = HookPhase.SUCCEEDED if failure is None else HookPhase.FAILED
        run.message = failure or ""
        run.finished_at = time.time()
        self.apps.put_hook_run(run)
        line = f"{what} failed: {failure}" if failure is not None else f"{what} succeeded"
        self.apps.add_target_event(target, f"{target.cluster}/{target.component}: {line}")
        return None if failure is None else line

    def _record(
        self,
        target: TargetRecord,
        event: str,
        kind: str,
        namespace: str,
        name: str,
        phase: HookPhase,
        message: str = "",
        *,
        finished: bool = False,
    ) -> HookRunRecord:
        now = time.time()
        run = HookRunRecord(
            app=target.app,
            cluster=target.cluster,
            component=target.component,
            revision=target.revision,
            event=event,
            kind=kind,
            namespace=namespace,
            name=name,
            phase=phase,
            message=message,
            started_at=now,
            finished_at=now if finished else None,
        )
        self.apps.put_hook_run(run)
        return run

    async def _delete(
        self, target: TargetRecord, hooks: Sequence[Hook], client: ClusterClient
    ) -> None:
        """Delete the objects of `hooks` and wait until they are gone: a hook created
        again while its namesake terminates would be refused, or be the old one."""
        if not hooks:
            return
        refs = [
            ObjectRef(
                str(h.manifest["apiVersion"]),
                h.kind,
                (h.manifest.get("metadata") or {}).get("namespace") or target.namespace,
                h.name,
            )
            for h in hooks
        ]
        deleted = await delete(client, refs, propagation="Foreground")
        if deleted and not await self.waits.gone(target.cluster, client, deleted):
            names = ", ".join(f"{r.kind} {r.namespace}/{r.name}" for r in deleted)
            raise HookFailed(
                f"hook object(s) {names} on cluster {target.cluster} were not deleted "
                f"within {self.waits.timeout:.0f}s"
            )


def _deleted(hooks: Sequence[Hook]) -> list[Hook]:
    """The hooks whose objects go once their event succeeded."""
    return [h for h in hooks if h.deletes(DeletePolicy.HOOK_SUCCEEDED)]
