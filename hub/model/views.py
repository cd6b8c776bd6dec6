"""The shapes of the hub's answers, as scripts read them (`-o json`).

These are the API's contract: the README documents them, and tests/unit/test_shapes.py
holds the README, these types and a real answer against one another, so a field cannot
be renamed, dropped or added without all three changing together. TypedDicts rather than
models because the answers are built as plain dicts and serialised as they are.
"""

from __future__ import annotations

from typing import Any, TypedDict


class FieldDriftView(TypedDict):
    path: str
    applied: Any
    """What the hub applied; None: a field it set is absent now."""
    live: Any
    """What the cluster has; None: the field is gone. Secret values are `(redacted)`."""
    manager: str | None
    """The field manager that made the change, from the object's managedFields."""


class DriftView(TypedDict):
    gone: bool
    """The object was deleted."""
    fields: list[FieldDriftView]
    action: str
    """`healing`, or why the hub leaves it as it is (apply-once, healing off, suspended,
    contested by a manager)."""
    since: str | None


class ObjectView(TypedDict):
    kind: str
    namespace: str | None
    name: str
    health: str
    reason: str
    sync: str
    """`Synced`, or `OutOfSync` (with `drift`) when it differs from what the hub applied."""
    drift: DriftView | None
    keep: bool
    """Annotated `helm.sh/resource-policy: keep`: a prune or the release's deletion leaves
    it on the cluster."""


class RolloutView(TypedDict):
    workload: str
    step: str
    """`1/2`: the canary step, counted from 1, of the steps there are."""
    stage: str
    weight: int | None
    canary: str
    resumeAt: str | None


class HookRunView(TypedDict):
    """The last run of one Helm hook of the release, for one hook event."""

    event: str
    """The hook event it ran for: `pre-install`, `post-upgrade`, ..."""
    kind: str
    namespace: str | None
    name: str
    revision: int
    """The revision whose deploy (or rollback, or delete) ran it."""
    phase: str
    """Running, Succeeded or Failed."""
    message: str
    """Why it failed; empty otherwise."""
    started: str | None
    finished: str | None


class CrdView(TypedDict):
    """One object of the chart's `crds/`, created on the release's first deploy if absent."""

    name: str
    phase: str
    """Created (by this release's first deploy), or Existed (left as it was)."""
    message: str
    """That it is left as installed: `crds/` objects are never upgraded or deleted."""
    at: str | None


class ReleaseView(TypedDict):
    component: str
    release: str
    namespace: str
    chart: str
    phase: str
    message: str
    health: str
    reason: str
    rollout: RolloutView | None
    objects: list[ObjectView]
    hooks: list[HookRunView]
    """Not objects of the release: no health of theirs counts toward it."""
    crds: list[CrdView]


class ClusterStatusView(TypedDict):
    name: str
    labels: dict[str, str]
    reachable: bool
    clusterHealth: str
    lastSeen: str | None
    health: str
    reason: str
    releases: list[ReleaseView]


class MeasurementView(TypedDict):
    """The latest measurement of one metric on one cluster, and where its count stands."""

    cluster: str | None
    """None: a `check-metrics` step measured once, at one global endpoint."""
    component: str | None
    """The canary's component; None for a `check-metrics` step."""
    canaryStep: int | None
    """The canary step whose pause is measured, counted from 1; None for `check-metrics`."""
    metric: str
    verdict: str
    value: float | None
    condition: str
    outcome: str
    message: str
    at: str | None
    passes: int
    failures: int
    errors: int
    """Measurement errors in a row, as they count toward the limit."""


class StepView(TypedDict):
    name: str
    type: str
    phase: str
    message: str
    analysis: list[MeasurementView]
    health: str
    reason: str
    clusters: list[ClusterStatusView]


class StatusView(TypedDict):
    name: str
    revision: int
    publishVersion: str | None
    phase: str
    health: str
    reason: str
    message: str
    next: str | None
    steps: list[StepView]


class AppRow(TypedDict):
    name: str
    revision: int
    publishVersion: str | None
    phase: str
    health: str
    message: str
    updated: str | None


class AppList(TypedDict):
    applications: list[AppRow]


class RevisionRow(TypedDict):
    revision: int
    publishVersion: str | None
    created: str | None
    finished: str | None
    outcome: str
    rollbackOf: int | None
    source: str


class EventView(TypedDict):
    """One transition the engine made (`history`, `flotilla events`, the web view)."""

    id: int
    """Increasing: `flotilla events --after ID` goes on from there."""
    at: str | None
    app: str
    revision: int | None
    step: str | None
    cluster: str | None
    component: str | None
    message: str


class EventList(TypedDict):
    events: list[EventView]


class HistoryView(TypedDict):
    name: str
    revisions: list[RevisionRow]
    events: list[EventView]


class UpResult(TypedDict):
    name: str
    revision: int
    created: bool
    phase: str
    message: str


ValueOrigin = TypedDict("ValueOrigin", {"from": str, "value": Any, "deleted": bool})
"""Who set one value: the layer (`policy prod`, `component properties`), and what it set;
`deleted` when its `null` removed the key. Functional form: `from` is a keyword."""


class LayerView(TypedDict):
    layer: str
    value: Any
    deleted: bool


class ValueExplanation(TypedDict):
    layers: list[LayerView]
    """Every layer that touched the value, oldest first."""
    winner: str | None
    """The layer whose setting stands; null when the last one deleted the key."""


TAKE_OVER = "run up --take-ownership to take them over"
"""What a line naming a `takeOver` entry tells the user to do (the CLI and `up` say it)."""


class PlanTargetView(TypedDict):
    cluster: str
    namespace: str
    component: str
    release: str
    chart: str
    values: dict[str, Any]
    """The exact values document Helm receives for this target."""
    provenance: dict[str, ValueOrigin]
    """By JSON Pointer into `values`: what set or deleted it, chart defaults left out."""
    explain: dict[str, ValueExplanation] | None
    objects: list[str]
    prune: list[str]
    """What applying the plan deletes: objects of the release on the cluster that the new
    render no longer holds."""
    takeOver: list[str]
    """A first deploy's objects whose fields another field manager owns, which only
    `up --take-ownership` takes over: `Deployment demo/web: spec.replicas owned by helm`."""
    dependencies: list[str]
    """The dependencies fetched into the chart's `charts/` (declared in Chart.yaml, not
    packaged), as the revision pins them: `canary-demo 1.0.0 sha256:...`."""
    usesLookup: list[str]
    """The chart's templates that call `lookup`, which finds nothing when Flotilla renders
    (`templates/secret.yaml`, `charts/db/templates/secret.yaml`)."""
    warnings: list[str]
    """What will not deploy as rendered here: each field two renders disagree on."""
    error: str | None


class PlanStepView(TypedDict):
    name: str
    targets: list[PlanTargetView]


class PlanView(TypedDict):
    application: str
    publishVersion: str | None
    steps: list[PlanStepView]


class DiffObjectView(TypedDict):
    kind: str
    namespace: str | None
    name: str
    action: str
    """created, changed, pruned, unchanged, or apply-once (an existing object the
    application's apply-once policy leaves alone)."""
    diff: str
    """A unified diff, live object -> after `up`; empty when nothing would change. Secret
    values are redacted: a changed key shows as changed, never its value."""


class DiffReleaseView(TypedDict):
    component: str
    release: str
    namespace: str
    objects: list[DiffObjectView]


class DiffClusterView(TypedDict):
    name: str
    error: str | None
    """Why the cluster could not be diffed (unreachable, refused); its releases are then
    empty."""
    releases: list[DiffReleaseView]


class DiffView(TypedDict):
    application: str
    revision: int | None
    """The stored revision diffed (`--revision`); null for a file."""
    changes: int
    """Objects `up` would create, change or prune, on every cluster diffed."""
    clusters: list[DiffClusterView]


class WatchView(TypedDict):
    state: str
    """synced, starting, listing, reconnecting, restarting or not watched."""
    error: str | None
    restarts: int
    lastError: str | None
    lastErrorAt: str | None


class MemberView(TypedDict):
    """A registered member cluster: never its credentials."""

    name: str
    uid: str
    labels: dict[str, str]
    server: str
    version: str
    apiVersions: int | None
    """How many entries the cluster's version set has (`group/version` and
    `group/version/Kind`, as Helm's `.Capabilities.APIVersions`); None until discovered."""
    health: str
    reason: str
    lastSeen: str | None
    joinedAt: str | None
    credential: str
    prometheus: str | None
    """The URL of the cluster's own Prometheus, when one is registered; never its
    credentials."""
    warnings: list[str]
    watch: WatchView


class MemberDetail(MemberView):
    kubeconfig: dict[str, Any]
    """The kubeconfig with every credential redacted (`cluster show`)."""


class ProberView(TypedDict):
    running: bool
    restarts: int
    lastError: str | None
    lastErrorAt: str | None


class MemberList(TypedDict):
    clusters: list[MemberView]
    prober: ProberView


class RepositoryView(TypedDict):
    """A chart repository registered with credentials: never the password or token."""

    name: str
    url: str
    kind: str
    """`http` (a Helm repository's index.yaml) or `oci` (a registry)."""
    username: str | None
    auth: str
    """`basic` (username and password) or `token` (a bearer token)."""
    added: str | None


class RepositoryList(TypedDict):
    repositories: list[RepositoryView]


SHAPES: dict[str, type[Any]] = {
    "status": StatusView,
    "step": StepView,
    "measurement": MeasurementView,
    "cluster": ClusterStatusView,
    "release": ReleaseView,
    "rollout": RolloutView,
    "hookRun": HookRunView,
    "crd": CrdView,
    "object": ObjectView,
    "drift": DriftView,
    "fieldDrift": FieldDriftView,
    "ls": AppList,
    "application": AppRow,
    "history": HistoryView,
    "revision": RevisionRow,
    "event": EventView,
    "events": EventList,
    "plan": PlanView,
    "planStep": PlanStepView,
    "planTarget": PlanTargetView,
    "origin": ValueOrigin,
    "explanation": ValueExplanation,
    "layer": LayerView,
    "diff": DiffView,
    "diffCluster": DiffClusterView,
    "diffRelease": DiffReleaseView,
    "diffObject": DiffObjectView,
    "clusters": MemberList,
    "member": MemberView,
    "watch": WatchView,
    "prober": ProberView,
    "repositories": RepositoryList,
    "repository": RepositoryView,
}
"""Every documented shape by the name the README's shape blocks give it."""
