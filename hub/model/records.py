"""What the hub stores, as typed records: clusters, applications, revisions, steps,
targets, canaries, chart repositories' credentials. Plain data, shared by the store, the
engine and the views.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from hub.model.phases import (
    AppPhase,
    HookPhase,
    Measured,
    Outcome,
    Stage,
    StepPhase,
    StepType,
    TargetPhase,
)
from hub.model.targets import TargetSpec
from hub.model.views import DriftView


@dataclass
class ClusterRecord:
    """A registered member cluster. `kubeconfig` is secret: never serialise it as is."""

    name: str
    server: str
    kubeconfig: dict[str, Any]
    credential: str
    labels: dict[str, str] = field(default_factory=dict)
    version: str = ""
    health: str = "Unknown"
    reason: str = ""
    warnings: list[str] = field(default_factory=list)
    last_seen: float | None = None
    joined_at: float = field(default_factory=time.time)
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    """Who the cluster is, whatever it is called: random at join, never changed by a rename."""
    prometheus: dict[str, str] = field(default_factory=dict)
    """The cluster's own Prometheus: `url`, and `token` or `username` and `password`; as
    secret as the kubeconfig. Empty: none registered."""


@dataclass
class AppRecord:
    name: str
    revision: int
    phase: AppPhase
    message: str
    suspend: bool
    created_at: float
    updated_at: float
    health: str = "Unknown"
    """What the hub last rolled up from its watch caches (hub.service.health), kept for
    readers of the store alone (`kubectl get applications.flotilla.dev`): derived, never
    a reason to act."""


@dataclass(frozen=True)
class ObservedObject:
    """One object of a release as the hub that drives its application shows it in
    `status`: its health and, when it differs from what the hub applied, its drift
    (`sync` is `OutOfSync` exactly when `drift` is given)."""

    api_version: str
    kind: str
    namespace: str | None
    """None for a cluster-scoped object."""
    name: str
    health: str
    reason: str = ""
    drift: DriftView | None = None

    def to_json(self) -> list[Any]:
        """An array, not an object: a record holds hundreds of these, and field names
        would double its size (`ObservedRecord`)."""
        plain = [
            self.api_version,
            self.kind,
            self.namespace or "",
            self.name,
            self.health,
            self.reason,
        ]
        return [*plain, self.drift] if self.drift is not None else plain

    @classmethod
    def from_json(cls, data: list[Any]) -> ObservedObject:
        api_version, kind, namespace, name, health, reason, *drift = data
        return cls(api_version, kind, namespace or None, name, health, reason, *drift)


Release = tuple[str, str]
"""(cluster, component): one release of an application."""


@dataclass(frozen=True)
class ObservedRecord:
    """What the hub that drives an application last saw of its objects, per release, from
    its watch caches: kept in the store so that a replica that does not drive it (and
    keeps no watch cache of its clusters) shows the same status (hub.service.health).

    Compact on purpose, since the Kubernetes store keeps it in the Application object,
    under etcd's 1.5 MB bound: objects are arrays (`ObservedObject.to_json`); 64 clusters
    of 10 objects each take about 60 kB. `at` is when it was taken, and is no part of
    equality: an observation that did not change is not written again."""

    releases: dict[Release, tuple[ObservedObject, ...]] = field(default_factory=dict)
    at: float = field(default_factory=time.time, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "releases": [
                [cluster, component, [o.to_json() for o in objects]]
                for (cluster, component), objects in sorted(self.releases.items())
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ObservedRecord:
        releases = {
            (cluster, component): tuple(ObservedObject.from_json(o) for o in objects)
            for cluster, component, objects in data["releases"]
        }
        return cls(releases, at=data["at"])


@dataclass
class RevisionRecord:
    app: str
    number: int
    publish_version: str
    digest: str
    spec: dict[str, Any]
    source: str
    base: str  # the folder of the file, for charts in a relative local directory
    rollback_of: int | None
    outcome: Outcome
    created_at: float
    finished_at: float | None


@dataclass
class StepRecord:
    app: str
    revision: int
    name: str
    type: StepType
    phase: StepPhase
    message: str
    resume_at: float | None
    started_at: float | None
    finished_at: float | None


@dataclass
class TargetRecord:
    app: str
    revision: int
    step: str
    cluster: str
    component: str
    namespace: str
    release: str
    chart: str
    spec: TargetSpec
    phase: TargetPhase
    message: str = ""
    updated_at: float = field(default_factory=time.time)


@dataclass
class RolloutRecord:
    """The canary of one workload of one target: which revision, where it stands."""

    app: str
    cluster: str
    component: str
    revision: int
    kind: str
    name: str
    stage: Stage
    step: int
    resume_at: float | None = None
    detail: str = ""  # canary readiness, for status
    resume_step: int | None = None
    """The step whose pause a `resume` approved before the canary got there (the engine's
    docstring); written only by `AppStore.approve_pause`, never by `put_rollout`."""
    stable_hash: str | None = None
    """The stable pods' pod-template hash, read once: stable pods never change during a
    canary, so no later phase asks the cluster again."""
    phases_done: int = 0
    """Phases of the current stage already done (hub.canary's phases, in order): a runner
    that starts again mid-stage goes on from the next one."""


# The gate of a `check-metrics` workflow step; a canary's gates are its step indexes.
CHECK_GATE = -1


@dataclass(frozen=True)
class MeasurementRecord:
    """One measurement of one metric on one cluster, taken during the pause of canary step
    `gate` (or for a `check-metrics` step, gate `CHECK_GATE`) of workflow step `step`.

    Stored as it is taken, so that a hub killed mid-analysis resumes counting where it
    was instead of starting the step's analysis over."""

    app: str
    revision: int
    step: str
    gate: int
    cluster: str
    component: str
    """The canary's component; "" for a `check-metrics` step."""
    metric: str
    at: float
    value: float | None
    outcome: Measured
    message: str = ""


@dataclass(frozen=True)
class EventRecord:
    """One transition the engine made, with where it happened as far as it is known."""

    id: int
    app: str
    at: float
    message: str
    revision: int | None = None
    step: str | None = None
    cluster: str | None = None
    component: str | None = None


@dataclass
class HookRunRecord:
    """The last run of one Helm hook object of a target for one hook event (`pre-upgrade`):
    which revision ran it, how it went. `crds/` objects are kept here too, under the event
    `crds`, since they too live outside the release's inventory."""

    app: str
    cluster: str
    component: str
    revision: int
    event: str
    kind: str
    namespace: str
    """"" for a cluster-scoped object."""
    name: str
    phase: HookPhase
    message: str = ""
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None


RepositoryKind = Literal["http", "oci"]
RepositoryAuth = Literal["basic", "token"]


@dataclass(frozen=True)
class RepositoryRecord:
    """A chart repository (`http`) or OCI registry (`oci`) registered with credentials
    (`flotilla repo add`). `secret` is the password or bearer token, as secret as a
    kubeconfig: it is never serialised as is, and its repr leaves it out."""

    name: str
    url: str
    kind: RepositoryKind
    auth: RepositoryAuth
    username: str
    secret: str = field(repr=False)
    created_at: float = field(default_factory=time.time)

    def covers(self, url: str) -> bool:
        """Whether a chart at `url` is this repository's: the same scheme and host, and a
        path at or under its own, segment by segment (`/charts` covers `/charts/team`, not
        `/charts-old`). Credentials go to what the repository covers and nowhere else."""
        if not same_origin(url, self.url):
            return False
        mine, theirs = urlsplit(self.url.rstrip("/")).path, urlsplit(url.rstrip("/")).path
        return theirs == mine or theirs.startswith(mine + "/")


def same_origin(url: str, base: str) -> bool:
    """Whether `url` is on `base`'s scheme, host and port: where its credentials may go."""
    mine, theirs = urlsplit(base), urlsplit(url)
    return (mine.scheme.lower(), mine.netloc.lower()) == (
        theirs.scheme.lower(),
        theirs.netloc.lower(),
    )


def covering(records: Iterable[RepositoryRecord], url: str) -> RepositoryRecord | None:
    """The registered repository whose credentials a chart at `url` is fetched with: the one
    that covers it most closely (the longest URL), as Helm picks a repository by its URL."""
    found = [record for record in records if record.covers(url)]
    return max(found, key=lambda record: len(record.url.rstrip("/")), default=None)
