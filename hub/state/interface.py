"""What the hub asks of its store, whichever holds the state: one SQLite file (the default,
`hub.state.store`) or a Kubernetes API (`hub.state.kube`, etcd underneath).

Both keep the same promise: every state transition the engine makes is kept whole or not
at all, before the engine acts on a cluster and again after the cluster confirms, so that
a hub killed at any moment starts again from the store alone. Reads are answered from
memory or a local file; they are cheap enough to make on every watch event.

The calls are synchronous on purpose: SQLite answers in well under a millisecond, and the
Kubernetes store answers reads from its watch-fed mirror and waits only for its writes.
Nothing here talks to a member cluster or knows the format of an Application.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Protocol

from hub.errors import FlotillaError
from hub.model.phases import AppPhase, Outcome, StepPhase, StepType, TargetPhase
from hub.model.records import (
    AppRecord,
    ClusterRecord,
    EventRecord,
    HookRunRecord,
    MeasurementRecord,
    ObservedRecord,
    Release,
    RepositoryRecord,
    RevisionRecord,
    RolloutRecord,
    StepRecord,
    TargetRecord,
)
from hub.model.settings import DEFAULTS, Settings
from hub.state.changes import Changes


class StoreUnavailable(FlotillaError):
    """The store could not be reached to keep a change (the management cluster's API
    server is down or refuses us): nothing of the change was kept. 503, since it is the
    hub's condition and not the request's, and it passes."""

    http_status = HTTPStatus.SERVICE_UNAVAILABLE


@dataclass
class Holding:
    """What one application has on one cluster: the components whose objects the
    inventory lists there (and how many objects), and whether its current revision
    targets the cluster."""

    app: str
    components: list[str] = field(default_factory=list)
    objects: int = 0
    targeted: bool = False


@dataclass(frozen=True)
class Hold:
    """Removals the blast-radius guard holds until `workflow resume` confirms them: which
    (cluster, component) releases of the application, at which revision, and why."""

    app: str
    revision: int
    removals: frozenset[tuple[str, str]]
    reason: str
    confirmed: bool = False
    created_at: float = 0.0


class AppStore(Protocol):
    """Applications, revisions and workflow state. Every write that changes what `status`
    shows of an application is published on `changes`, as is every event."""

    changes: Changes

    def writes(self) -> int | None:
        """A count that moves with every write `status` shows (whatever `changes` would
        say, `set_observed`, and what a cluster's rename or removal does to the rows naming
        it; not `set_health`, whose health status does not show), so that a
        reader can tell that nothing moved since it last looked without reading the rows
        again (hub.service.memo). None: this store cannot promise that, as when others
        write the same store and their writes reach this hub's reads before its `changes`."""
        ...

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
        """A new revision becomes the one the workflow drives, atomically: the application,
        the revision, its pending steps and targets, and the superseding of a running
        predecessor. A hold of the old placement's removals goes with it."""
        ...

    def apps(self) -> list[AppRecord]: ...

    def app(self, name: str) -> AppRecord:
        """NotFound when no application is called so."""
        ...

    def set_app(self, name: str, *, phase: AppPhase, message: str = "") -> None:
        """Set the application's phase and message, unless its phase does not yield to
        `phase` (`AppPhase.yields_to`: a deleting one stays deleting until it fails)."""
        ...

    def set_suspend(self, name: str, suspend: bool) -> None: ...

    def set_health(self, name: str, health: str) -> None:
        """Keep the health the hub rolled up for the application (`AppRecord.health`);
        nothing when it is kept already or the application is gone. Never published on
        `changes`: it is derived from what is published, and a publish would wake its
        writer (hub.service.health) again."""
        ...

    def set_observed(self, name: str, record: ObservedRecord) -> None:
        """Keep what the hub that drives the application last saw of its objects, over
        what was kept before (the caller compares: `ObservedRecord` equality ignores
        when it was taken); nothing when the application is gone. A new revision keeps
        it, as it keeps the health, until the driving hub's next pass. Never published on
        `changes`, as `set_health`; other hubs sharing the store see it all the same
        (that is what it is for: `status` on a hub that does not drive the application)."""
        ...

    def observed(self, name: str) -> ObservedRecord | None:
        """What `set_observed` kept of the application; None: nothing yet, or no such
        application."""
        ...

    def delete_app(self, name: str) -> None:
        """Forget the application and everything stored of it."""
        ...

    def revisions(self, app: str) -> list[RevisionRecord]:
        """Oldest first."""
        ...

    def revision(self, app: str, number: int) -> RevisionRecord:
        """NotFound when the application has no such revision."""
        ...

    def finish_revision(self, app: str, number: int, outcome: Outcome) -> None: ...

    def steps(self, app: str, revision: int) -> list[StepRecord]:
        """In the order the revision was created with."""
        ...

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
        """A step's first RUNNING sets its start, which later writes keep; a finished
        phase sets its end."""
        ...

    def put_target(self, target: TargetRecord) -> None:
        """Write the target over the one of the same key (app, revision, step, cluster,
        component); sets its `updated_at`."""
        ...

    def add_targets(self, app: str, revision: int, targets: list[TargetRecord]) -> None:
        """Add targets to an existing revision, all or none: clusters that came to match
        its placement (enrollment), without a new revision."""
        ...

    def drop_target(self, target: TargetRecord) -> None:
        """Forget a target of a revision and the canary of its release: its cluster no
        longer matches the placement. Its objects are the inventory's, removed apart."""
        ...

    def hold(self, app: str) -> Hold | None: ...

    def put_hold(self, hold: Hold) -> None:
        """Hold these removals (unconfirmed), replacing what was held before."""
        ...

    def confirm_hold(self, app: str) -> None: ...

    def drop_hold(self, app: str) -> None: ...

    def targets(self, app: str, revision: int) -> list[TargetRecord]:
        """Ordered by step, cluster, component."""
        ...

    def target(self, app: str, revision: int, cluster: str, component: str) -> TargetRecord | None:
        """The target of one component on one cluster in a revision (its first step's),
        None if the revision does not place it there. Asked on every change a watch sees,
        so it must not decode the revision's other targets."""
        ...

    def inventory(
        self, app: str, cluster: str | None = None
    ) -> dict[tuple[str, str], tuple[int, list[dict[str, Any]]]]:
        """(cluster, component) -> (revision, object references) of what is applied; only
        `cluster`'s when given."""
        ...

    def set_inventory(
        self, app: str, cluster: str, component: str, revision: int, objects: list[dict[str, Any]]
    ) -> None: ...

    def drop_inventory(self, app: str, cluster: str, component: str) -> None: ...

    def rollout(self, app: str, cluster: str, component: str) -> RolloutRecord | None: ...

    def rollouts(self, app: str) -> list[RolloutRecord]: ...

    def put_rollout(self, rollout: RolloutRecord) -> None:
        """Write where a canary stands. Its `resume_step` is left as stored: `resume` writes
        it (`approve_pause`) while the canary runs on a record read before, and must not be
        overwritten by it. A canary of another revision starts with none."""
        ...

    def approve_pause(self, app: str, cluster: str, component: str, step: int | None) -> None:
        """Approve the canary's pause at `step` before it is reached (None: forget it)."""
        ...

    def drop_rollout(self, app: str, cluster: str, component: str) -> None: ...

    def put_hook_run(self, run: HookRunRecord) -> None:
        """Write the last run of a hook object for its event, over the run before it (the
        key: app, cluster, component, event, kind, namespace, name)."""
        ...

    def hook_runs(self, app: str, cluster: str, component: str) -> list[HookRunRecord]:
        """The last run of every hook (and `crds/` object) of a release, in the order
        they started."""
        ...

    def hook_runs_of(self, app: str) -> dict[Release, list[HookRunRecord]]:
        """`hook_runs` of every release of `app` that has any, in one read: `status`
        shows them for every target at once."""
        ...

    def holdings(self, cluster: str) -> list[Holding]:
        """Every application that holds something on `cluster`, by name: objects in its
        inventory there, a canary there, or a target there in its current revision."""
        ...

    def add_measurement(self, m: MeasurementRecord) -> None: ...

    def measurements(
        self, app: str, revision: int, step: str | None = None, gate: int | None = None
    ) -> list[MeasurementRecord]:
        """Measurements of a revision (of one step, of one of its gates), oldest first."""
        ...

    def drop_measurements(self, app: str, revision: int, step: str) -> None:
        """Forget a step's measurements: a `restart` measures its retry afresh."""
        ...

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
        """Record a transition, and publish it. Event ids grow with every event, so that
        a reader can ask for what came after the last one it saw; events beyond the
        settings' count per application and age go."""
        ...

    def events(
        self, app: str | None = None, *, after: int = 0, limit: int = 50
    ) -> list[EventRecord]:
        """The newest `limit` events after id `after` (of one application, or all),
        oldest first."""
        ...

    # What follows is written once for every store, over the calls above: a store
    # subclasses this Protocol to inherit it.

    def fail_target(self, target: TargetRecord, message: str) -> None:
        """The target failed with `message`: stored, and said as the target's event."""
        target.phase, target.message = TargetPhase.FAILED, message
        self.put_target(target)
        self.add_target_event(target, f"{target.cluster}/{target.component}: {message}")

    def add_target_event(self, target: TargetRecord, message: str) -> EventRecord:
        """An event about one target: its revision, step, cluster and component."""
        return self.add_event(
            target.app,
            message,
            revision=target.revision,
            step=target.step,
            cluster=target.cluster,
            component=target.component,
        )


class ClusterStore(Protocol):
    """The registry's clusters and the chart repositories' credentials; and the maker of
    the application store over the same state."""

    def apps(self, settings: Settings = DEFAULTS) -> AppStore:
        """The application store over this store's state (one per hub)."""
        ...

    def close(self) -> None: ...

    def add_cluster(self, record: ClusterRecord) -> None:
        """Conflict when a cluster of that name is registered."""
        ...

    def clusters(self) -> list[ClusterRecord]:
        """By name."""
        ...

    def cluster(self, name: str) -> ClusterRecord:
        """NotFound when no cluster is called so."""
        ...

    def set_labels(self, name: str, labels: dict[str, str]) -> None: ...

    def set_prometheus(self, name: str, prometheus: dict[str, str]) -> None:
        """The cluster's own Prometheus (URL and credentials); `{}`: none."""
        ...

    def rename_cluster(self, old: str, new: str) -> None:
        """Rename a cluster with every record that names it, at once: a reader sees the
        targets, inventory and canaries under the old name or the new one, never split
        between them. NotFound for `old`, Conflict when `new` is taken."""
        ...

    def delete_cluster(self, name: str) -> None:
        """Forget a cluster and every record naming it (targets, inventory, canaries), so
        that a cluster joined later under the same name inherits nothing. Whether the
        cluster may go is the caller's decision (`AppStore.holdings`)."""
        ...

    def record_probe(
        self, name: str, *, health: str, reason: str, version: str | None, seen: bool
    ) -> None:
        """Keep the prober's verdict; last_seen moves only when the cluster answered (a
        store whose writes cost a round trip keeps it to within half a minute). A verdict
        the store cannot keep now is dropped: the next probe makes it again."""
        ...

    def add_repository(self, record: RepositoryRecord) -> None:
        """Conflict when a repository of that name is registered."""
        ...

    def repositories(self) -> list[RepositoryRecord]:
        """By name."""
        ...

    def delete_repository(self, name: str) -> None:
        """NotFound when no repository is called so."""
        ...
