"""The store's contract (hub.state.interface), held against both stores: the SQLite file a
hub keeps by default, and the Kubernetes API that several hubs share (issue 15).

Every behaviour below is written once, through the interface only, and runs against each
store (`[sqlite]`, `[kubernetes]`): what SQLite answers is the reference, so a store that
answers otherwise breaks the engine that was written against it. The Kubernetes half keeps
its state on the local cluster e2e-1, in a namespace of the test's own. The promises only
the Kubernetes store makes (credentials only in Secrets, a lost race retried from fresh
state, the columns kubectl shows) come last.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from e2e import clusters
from e2e.clusters import ClusterInfo
from e2e.kubeapi import KubeAPI
from e2e.kubectl import kubectl
from hub.errors import Conflict, NotFound
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
from hub.model.records import (
    CHECK_GATE,
    ClusterRecord,
    HookRunRecord,
    MeasurementRecord,
    ObservedObject,
    ObservedRecord,
    RepositoryRecord,
    RevisionRecord,
    RolloutRecord,
    TargetRecord,
)
from hub.model.settings import DEFAULTS
from hub.model.targets import TargetSpec
from hub.model.views import DriftView
from hub.state.changes import Change
from hub.state.interface import AppStore, ClusterStore, Hold
from hub.state.store import SqliteStore
from tests.fleet import until
from tests.unit.hubparts import deploy

# The Kubernetes store prunes events and finishes deletes in the background, and a second
# store sees the first's writes through its watch: a bound on waiting for that, never a
# measure of it.
CONVERGE = 30.0
# Approvals raced against a canary's write from a stale read: enough tries that the second
# store's write lands before its watch has brought the approval, a few times over.
RACE_TRIES = 40
RACES_WANTED = 5
# The workflow of most revisions below: its step names sort as they were created, so that
# an order by name and an order of creation agree.
STEPS = [("a-deploy", StepType.DEPLOY), ("b-approve", StepType.SUSPEND)]
# What a fleet's observation may take in the Application object, far under etcd's 1.5 MB
# bound on one object: 64 clusters of 10 objects with long names (about 60 kB).
OBSERVED_MAX = 150_000


@dataclass
class Stores:
    """Where one test's state lives, and every store opened on it; all are closed after
    the test."""

    opener: Callable[[], ClusterStore]
    opened: list[ClusterStore] = field(default_factory=list)

    def open(self) -> ClusterStore:
        store = self.opener()
        self.opened.append(store)
        return store

    def restart(self) -> ClusterStore:
        """What a restarted hub opens: every open store closed, then a new one on the same
        state."""
        self.close()
        return self.open()

    def close(self) -> None:
        while self.opened:
            self.opened.pop().close()


@dataclass
class Management:
    """The Kubernetes store's state: a namespace of its own on the management cluster."""

    info: ClusterInfo
    namespace: str
    stores: Stores


@pytest.fixture
def management(e2e_clusters: list[ClusterInfo]) -> Iterator[Management]:
    """Kubernetes stores on e2e-1, in a fresh namespace (which the store creates, as
    `flotilla serve` does), deleted with everything in it afterwards."""
    # Imported here, not at the top, so that the SQLite half runs while the Kubernetes
    # store is being written; an import that fails fails every Kubernetes test.
    from hub.state.kube import KubeStore

    info = e2e_clusters[0]
    namespace = f"fs-{secrets.token_hex(4)}"
    stores = Stores(lambda: KubeStore(kubeconfig=info.kubeconfig, namespace=namespace))
    try:
        yield Management(info, namespace, stores)
    finally:
        stores.close()
        clusters.delete_namespace(namespace, [info])


@pytest.fixture(params=["sqlite", pytest.param("kubernetes", marks=pytest.mark.cluster)])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    """Each test runs against either store, on state of its own."""
    if request.param == "kubernetes":
        yield request.getfixturevalue("management").stores
        return
    sqlite = Stores(lambda: SqliteStore(tmp_path / "flotilla.db"))
    yield sqlite
    sqlite.close()


@pytest.fixture
def store(stores: Stores) -> ClusterStore:
    return stores.open()


@pytest.fixture
def apps(store: ClusterStore) -> AppStore:
    return store.apps()


# builders


def _cluster(name: str) -> ClusterRecord:
    """A cluster whose credentials are random, so that a test can look for them."""
    return ClusterRecord(
        name=name,
        server=f"https://{name}.example:6443",
        kubeconfig={
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": name, "cluster": {"server": f"https://{name}.example:6443"}}],
            "users": [
                {
                    "name": "admin",
                    "user": {
                        "token": f"token-{secrets.token_hex(8)}",
                        "client-key-data": base64.b64encode(secrets.token_bytes(24)).decode(),
                    },
                }
            ],
            "contexts": [{"name": name, "context": {"cluster": name, "user": "admin"}}],
            "current-context": f"context-{secrets.token_hex(8)}",
        },
        credential="token",
        labels={"env": "dev"},
        prometheus={
            "url": f"http://prometheus.{name}.example:9090",
            "username": "reader",
            "password": f"password-{secrets.token_hex(8)}",
        },
    )


def _credentials(record: ClusterRecord) -> list[str]:
    """What of a cluster's record is secret: its kubeconfig's token and client key, the
    kubeconfig itself (its current context stands for it: nothing else carries it), and
    its Prometheus password."""
    user = record.kubeconfig["users"][0]["user"]
    return [
        user["token"],
        user["client-key-data"],
        record.kubeconfig["current-context"],
        record.prometheus["password"],
    ]


def _repository(name: str) -> RepositoryRecord:
    return RepositoryRecord(
        name=name,
        url=f"https://charts.example/{name}",
        kind="http",
        auth="basic",
        username="ci",
        secret=f"secret-{secrets.token_hex(8)}",
    )


def _target(cluster: str, *, step: str = "a-deploy", component: str = "web") -> TargetRecord:
    """A target of a revision yet to be created (create_revision names its app and number)."""
    return TargetRecord(
        app="",
        revision=0,
        step=step,
        cluster=cluster,
        component=component,
        namespace="ns",
        release=component,
        chart=f"{component}-1.0.0",
        spec=TargetSpec("k8s-objects", objects=({"kind": "ConfigMap", "name": component},)),
        phase=TargetPhase.PENDING,
    )


def _revision(
    apps: AppStore, app: str, targets: list[TargetRecord], *, rollback_of: int | None = None
) -> RevisionRecord:
    return apps.create_revision(
        app,
        spec={"metadata": {"name": app}, "spec": {"components": []}},
        digest=f"sha256:{secrets.token_hex(4)}",
        publish_version="v1",
        source="test",
        base="/work",
        steps=STEPS,
        targets=targets,
        rollback_of=rollback_of,
    )


def _rollout(app: str, cluster: str, revision: int, *, step: int = 0) -> RolloutRecord:
    return RolloutRecord(
        app=app,
        cluster=cluster,
        component="web",
        revision=revision,
        kind="Deployment",
        name="web",
        stage=Stage.PAUSED,
        step=step,
    )


def _hook_run(name: str, event: str, at: float, *, cluster: str = "a") -> HookRunRecord:
    return HookRunRecord(
        app="shop",
        cluster=cluster,
        component="web",
        revision=1,
        event=event,
        kind="Job",
        namespace="ns",
        name=name,
        phase=HookPhase.SUCCEEDED,
        started_at=at,
    )


def _measurement(step: str, gate: int, at: float, revision: int = 1) -> MeasurementRecord:
    return MeasurementRecord(
        app="shop",
        revision=revision,
        step=step,
        gate=gate,
        cluster="a",
        component="web",
        metric="success-rate",
        at=at,
        value=0.99,
        outcome=Measured.PASS,
    )


def _on(apps: AppStore, app: str, cluster: str) -> int:
    """`app` on `cluster` with all a release can have there: targeted by its current
    revision, objects in its inventory, a canary and a hook run. Returns the revision."""
    revision = deploy(apps, app, cluster)
    apps.put_rollout(_rollout(app, cluster, revision))
    apps.put_hook_run(replace(_hook_run("migrate", "pre-upgrade", 1.0, cluster=cluster), app=app))
    return revision


def _release_of(apps: AppStore, app: str, cluster: str) -> dict[str, Any]:
    """What the store tells of `app`'s release `web` on `cluster` (its first revision's
    targets), and who holds the cluster."""
    return {
        "targets": [t.cluster for t in apps.targets(app, 1) if t.cluster == cluster],
        "inventory": sorted(apps.inventory(app, cluster)),
        "rollout": apps.rollout(app, cluster, "web") is not None,
        "hook_runs": [r.name for r in apps.hook_runs(app, cluster, "web")],
        "holdings": [h.app for h in apps.holdings(cluster)],
    }


NOTHING = {"targets": [], "inventory": [], "rollout": False, "hook_runs": [], "holdings": []}
"""`_release_of` a cluster where the application has nothing."""


def _held(cluster: str, app: str = "shop") -> dict[str, Any]:
    """`_release_of` a release that `_on` made on `cluster`, `app` holding the cluster alone."""
    return {
        "targets": [cluster],
        "inventory": [(cluster, "web")],
        "rollout": True,
        "hook_runs": ["migrate"],
        "holdings": [app],
    }


# clusters


def test_clusters_are_listed_by_name_and_read_back_whole(store: ClusterStore) -> None:
    records = {name: _cluster(name) for name in ("prod", "dev", "stage")}
    for record in records.values():
        store.add_cluster(record)
    assert [c.name for c in store.clusters()] == ["dev", "prod", "stage"]
    assert store.cluster("prod") == records["prod"]
    with pytest.raises(Conflict, match="'dev' is already registered"):
        store.add_cluster(_cluster("dev"))
    assert store.cluster("dev") == records["dev"]
    with pytest.raises(NotFound, match="cluster 'nope' is not registered"):
        store.cluster("nope")


def test_labels_and_prometheus_are_set_on_a_registered_cluster(store: ClusterStore) -> None:
    store.add_cluster(_cluster("dev"))
    store.set_labels("dev", {"env": "prod", "region": "eu"})
    prometheus = {"url": "http://other:9090", "token": f"token-{secrets.token_hex(4)}"}
    store.set_prometheus("dev", prometheus)
    record = store.cluster("dev")
    assert (record.labels, record.prometheus) == ({"env": "prod", "region": "eu"}, prometheus)
    store.set_prometheus("dev", {})
    assert store.cluster("dev").prometheus == {}
    with pytest.raises(NotFound, match="'nope'"):
        store.set_labels("nope", {})
    with pytest.raises(NotFound, match="'nope'"):
        store.set_prometheus("nope", {})


def test_a_probe_moves_last_seen_only_when_the_cluster_answered(store: ClusterStore) -> None:
    store.add_cluster(_cluster("dev"))
    store.record_probe("dev", health="Healthy", reason="", version="v1.31.0", seen=True)
    answered = store.cluster("dev")
    assert (answered.health, answered.version) == ("Healthy", "v1.31.0")
    assert answered.last_seen is not None
    store.record_probe("dev", health="Unreachable", reason="refused", version=None, seen=False)
    record = store.cluster("dev")
    assert (record.health, record.reason, record.version, record.last_seen) == (
        "Unreachable",
        "refused",
        "v1.31.0",
        answered.last_seen,
    )


def test_a_rename_takes_every_record_of_the_cluster_along(
    store: ClusterStore, apps: AppStore
) -> None:
    store.add_cluster(_cluster("a"))
    _on(apps, "shop", "a")
    uid = store.cluster("a").uid
    store.rename_cluster("a", "b")
    assert store.cluster("b").uid == uid
    assert [c.name for c in store.clusters()] == ["b"]
    assert _release_of(apps, "shop", "b") == _held("b")
    assert _release_of(apps, "shop", "a") == NOTHING
    with pytest.raises(NotFound, match="cluster 'a' is not registered"):
        store.cluster("a")
    with pytest.raises(NotFound, match="cluster 'nope' is not registered"):
        store.rename_cluster("nope", "c")


def test_a_rename_to_a_taken_name_changes_nothing(store: ClusterStore, apps: AppStore) -> None:
    for name in ("a", "b"):
        store.add_cluster(_cluster(name))
    _on(apps, "shop", "a")
    before = store.clusters()
    with pytest.raises(Conflict, match="'b' is already registered; pick another name"):
        store.rename_cluster("a", "b")
    assert store.clusters() == before
    assert _release_of(apps, "shop", "a") == _held("a")
    assert _release_of(apps, "shop", "b") == NOTHING


def test_a_deleted_cluster_leaves_nothing_to_its_namesake(
    store: ClusterStore, apps: AppStore
) -> None:
    for name in ("a", "b"):
        store.add_cluster(_cluster(name))
    _on(apps, "shop", "a")
    _on(apps, "blog", "b")
    store.delete_cluster("a")
    assert [c.name for c in store.clusters()] == ["b"]
    assert _release_of(apps, "shop", "a") == NOTHING
    store.add_cluster(_cluster("a"))  # joined later under the old name: it inherits nothing
    assert _release_of(apps, "shop", "a") == NOTHING
    assert _release_of(apps, "blog", "b") == _held("b", "blog")
    with pytest.raises(NotFound, match="cluster 'nope' is not registered"):
        store.delete_cluster("nope")


# chart repositories


def test_repositories_keep_their_secret(store: ClusterStore) -> None:
    records = [_repository(name) for name in ("zeta", "acme")]
    for record in records:
        store.add_repository(record)
    assert store.repositories() == sorted(records, key=lambda r: r.name)
    with pytest.raises(Conflict, match="'acme' is already registered"):
        store.add_repository(_repository("acme"))
    store.delete_repository("zeta")
    assert store.repositories() == [records[1]]
    assert store.repositories()[0].secret == records[1].secret
    with pytest.raises(NotFound, match="repository 'zeta' is not registered"):
        store.delete_repository("zeta")


# applications and revisions


def test_a_new_revision_is_driven_and_supersedes_a_running_one(apps: AppStore) -> None:
    first = _revision(apps, "shop", [_target("a")])
    assert (first.app, first.number, first.outcome, first.finished_at) == (
        "shop",
        1,
        Outcome.RUNNING,
        None,
    )
    apps.set_app("shop", phase=AppPhase.FAILED, message="boom")
    apps.set_suspend("shop", True)
    second = _revision(apps, "shop", [_target("a")], rollback_of=1)
    app = apps.app("shop")
    assert (app.revision, app.phase, app.message, app.suspend) == (2, AppPhase.RUNNING, "", False)
    assert (second.number, second.rollback_of, second.outcome) == (2, 1, Outcome.RUNNING)
    superseded = apps.revision("shop", 1)
    assert superseded.outcome is Outcome.SUPERSEDED and superseded.finished_at is not None
    apps.finish_revision("shop", 2, Outcome.SUCCEEDED)
    third = _revision(apps, "shop", [_target("a")])
    assert [(r.number, r.outcome) for r in apps.revisions("shop")] == [
        (1, Outcome.SUPERSEDED),
        (2, Outcome.SUCCEEDED),  # finished before: no longer running, so not superseded
        (3, Outcome.RUNNING),
    ]
    assert apps.revision("shop", 3) == third
    assert (third.spec, third.publish_version, third.source, third.base) == (
        {"metadata": {"name": "shop"}, "spec": {"components": []}},
        "v1",
        "test",
        "/work",
    )
    with pytest.raises(NotFound, match="'shop' has no revision 4"):
        apps.revision("shop", 4)
    with pytest.raises(NotFound, match="application 'nope' not found"):
        apps.app("nope")


def test_a_revision_finishes_with_its_outcome(apps: AppStore) -> None:
    _revision(apps, "shop", [_target("a")])
    apps.finish_revision("shop", 1, Outcome.FAILED)
    revision = apps.revision("shop", 1)
    assert revision.outcome is Outcome.FAILED and revision.finished_at is not None


def test_the_phase_and_suspension_of_an_application_are_kept(apps: AppStore) -> None:
    _revision(apps, "shop", [_target("a")])
    _revision(apps, "blog", [_target("a")])
    created = apps.app("shop")
    apps.set_app("shop", phase=AppPhase.SUSPENDED, message="waiting for approval")
    apps.set_suspend("shop", True)
    app = apps.app("shop")
    assert (app.phase, app.message, app.suspend) == (
        AppPhase.SUSPENDED,
        "waiting for approval",
        True,
    )
    assert app.updated_at >= created.updated_at and app.created_at == created.created_at
    apps.set_suspend("shop", False)
    assert not apps.app("shop").suspend
    assert [a.name for a in apps.apps()] == ["blog", "shop"]
    assert apps.app("blog").phase is AppPhase.RUNNING


def test_steps_keep_their_order_start_and_end(apps: AppStore) -> None:
    steps = [
        ("zeta", StepType.DEPLOY),
        ("alpha", StepType.SUSPEND),
        ("mid", StepType.CHECK_METRICS),
    ]
    apps.create_revision(
        "shop",
        spec={},
        digest="d",
        publish_version="",
        source="test",
        base=".",
        steps=steps,
        targets=[],
    )
    found = apps.steps("shop", 1)
    assert [(s.name, s.type, s.phase) for s in found] == [
        (name, kind, StepPhase.PENDING) for name, kind in steps
    ]
    assert all(s.started_at is None and s.finished_at is None for s in found)

    def zeta() -> tuple[StepPhase, str, float | None, float | None, float | None]:
        [step] = [s for s in apps.steps("shop", 1) if s.name == "zeta"]
        return step.phase, step.message, step.resume_at, step.started_at, step.finished_at

    apps.set_step("shop", 1, "zeta", phase=StepPhase.RUNNING)
    started = zeta()[3]
    assert started is not None
    apps.set_step("shop", 1, "zeta", phase=StepPhase.PAUSED, message="canary", resume_at=5.0)
    apps.set_step("shop", 1, "zeta", phase=StepPhase.RUNNING)
    assert zeta() == (StepPhase.RUNNING, "", None, started, None)
    apps.set_step("shop", 1, "zeta", phase=StepPhase.FAILED, message="timed out")
    phase, message, _, start, finished = zeta()
    assert (phase, message, start) == (StepPhase.FAILED, "timed out", started)
    assert finished is not None and finished >= started
    apps.set_step("shop", 1, "zeta", phase=StepPhase.RUNNING)  # `workflow restart`
    assert zeta() == (StepPhase.RUNNING, "", None, started, None)
    assert [s.phase for s in apps.steps("shop", 1)][1:] == [StepPhase.PENDING] * 2


def test_deleting_an_application_leaves_nothing_of_it(store: ClusterStore, apps: AppStore) -> None:
    store.add_cluster(_cluster("a"))
    revision = _on(apps, "shop", "a")
    _on(apps, "blog", "a")
    apps.add_measurement(_measurement("deploy", 0, 1.0))
    apps.put_hold(
        Hold(app="shop", revision=revision, removals=frozenset({("a", "web")}), reason="r")
    )
    apps.add_event("shop", "deployed", revision=revision)
    apps.add_event("blog", "deployed")
    apps.delete_app("shop")
    assert [a.name for a in apps.apps()] == ["blog"]
    with pytest.raises(NotFound):
        apps.app("shop")
    assert apps.revisions("shop") == [] and apps.targets("shop", revision) == []
    assert apps.measurements("shop", revision) == [] and apps.hold("shop") is None
    assert _release_of(apps, "shop", "a") == {**NOTHING, "holdings": ["blog"]}
    assert [(e.app, e.message) for e in apps.events()] == [("blog", "deployed")]
    assert _release_of(apps, "blog", "a") == _held("a", "blog")
    again = _revision(apps, "shop", [_target("b")])  # a new application of the old name
    assert again.number == 1 and [r.number for r in apps.revisions("shop")] == [1]
    assert [t.cluster for t in apps.targets("shop", 1)] == ["b"]
    assert apps.inventory("shop") == {} and apps.rollouts("shop") == []


# targets


def test_targets_are_ordered_and_replaced_by_their_key(apps: AppStore) -> None:
    keys = [("b-approve", "a", "web"), ("a-deploy", "b", "web"), ("a-deploy", "a", "web")]
    keys.append(("a-deploy", "a", "api"))
    _revision(apps, "shop", [_target(c, step=s, component=k) for s, c, k in keys])
    found = apps.targets("shop", 1)
    assert [(t.step, t.cluster, t.component) for t in found] == sorted(keys)
    assert {(t.app, t.revision) for t in found} == {("shop", 1)}
    changed = replace(found[1], phase=TargetPhase.HEALTHY, message="ready", updated_at=0.0)
    apps.put_target(changed)
    stored = apps.target("shop", 1, "a", "web")
    assert stored is not None and (stored.phase, stored.message) == (TargetPhase.HEALTHY, "ready")
    assert stored.updated_at > 0.0 and stored.spec == found[1].spec
    assert len(apps.targets("shop", 1)) == len(keys)
    assert stored.step == "a-deploy"  # the first step's, though `b-approve` targets it too
    assert apps.target("shop", 1, "c", "web") is None and apps.target("shop", 2, "a", "web") is None


def test_targets_are_added_to_a_revision_and_dropped_with_their_canary(apps: AppStore) -> None:
    _revision(apps, "shop", [_target("a")])
    _revision(apps, "shop", [_target("a")])
    apps.add_targets("shop", 2, [_target("b"), _target("c")])
    assert [(t.cluster, t.revision) for t in apps.targets("shop", 2)] == [
        ("a", 2),
        ("b", 2),
        ("c", 2),
    ]
    assert [t.cluster for t in apps.targets("shop", 1)] == ["a"]
    for cluster in ("b", "c"):
        apps.put_rollout(_rollout("shop", cluster, 2))
    [dropped] = [t for t in apps.targets("shop", 2) if t.cluster == "b"]
    apps.drop_target(dropped)
    assert [t.cluster for t in apps.targets("shop", 2)] == ["a", "c"]
    assert apps.rollout("shop", "b", "web") is None
    assert apps.rollout("shop", "c", "web") is not None


def test_a_failed_target_is_kept_and_said(apps: AppStore) -> None:
    _revision(apps, "shop", [_target("a")])
    [target] = apps.targets("shop", 1)
    apps.fail_target(target, "image pull failed")
    stored = apps.target("shop", 1, "a", "web")
    assert stored is not None and (stored.phase, stored.message) == (
        TargetPhase.FAILED,
        "image pull failed",
    )
    [event] = apps.events("shop")
    assert (event.message, event.revision, event.step, event.cluster, event.component) == (
        "a/web: image pull failed",
        1,
        "a-deploy",
        "a",
        "web",
    )


# inventory, canaries, hook runs, holds


def test_inventory_is_set_replaced_dropped_and_read_per_cluster(apps: AppStore) -> None:
    _revision(apps, "shop", [_target("a"), _target("b")])
    _revision(apps, "blog", [_target("a")])
    old = [{"apiVersion": "v1", "kind": "ConfigMap", "namespace": "ns", "name": "old"}]
    new = [{"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "ns", "name": "web"}]
    apps.set_inventory("shop", "a", "web", 1, old)
    apps.set_inventory("shop", "b", "web", 1, old)
    apps.set_inventory("blog", "a", "web", 1, old)
    apps.set_inventory("shop", "a", "web", 2, new)
    assert apps.inventory("shop") == {("a", "web"): (2, new), ("b", "web"): (1, old)}
    assert apps.inventory("shop", "a") == {("a", "web"): (2, new)}
    apps.drop_inventory("shop", "a", "web")
    assert apps.inventory("shop") == {("b", "web"): (1, old)}
    assert apps.inventory("shop", "a") == {}
    assert apps.inventory("blog") == {("a", "web"): (1, old)}


def test_an_approval_survives_the_canary_of_its_revision_only(apps: AppStore) -> None:
    _revision(apps, "shop", [_target("a"), _target("b")])
    apps.put_rollout(_rollout("shop", "a", 1))
    read_before = apps.rollout("shop", "a", "web")
    assert read_before is not None and read_before.resume_step is None
    apps.approve_pause("shop", "a", "web", 2)
    apps.put_rollout(replace(read_before, step=1, stage=Stage.UPGRADING, detail="1/2 ready"))
    kept = apps.rollout("shop", "a", "web")
    assert kept == replace(
        read_before, step=1, stage=Stage.UPGRADING, detail="1/2 ready", resume_step=2
    )
    apps.put_rollout(_rollout("shop", "a", 2))
    assert apps.rollout("shop", "a", "web") == _rollout("shop", "a", 2)
    apps.approve_pause("shop", "a", "web", 1)
    apps.approve_pause("shop", "a", "web", None)
    assert apps.rollout("shop", "a", "web") == _rollout("shop", "a", 2)
    apps.put_rollout(_rollout("shop", "b", 1))
    assert sorted(r.cluster for r in apps.rollouts("shop")) == ["a", "b"]
    apps.drop_rollout("shop", "a", "web")
    assert apps.rollout("shop", "a", "web") is None
    assert [r.cluster for r in apps.rollouts("shop")] == ["b"]


def test_a_hook_run_replaces_the_last_run_of_its_hook_and_event(apps: AppStore) -> None:
    _revision(apps, "shop", [_target("a")])
    apps.put_hook_run(replace(_hook_run("migrate", "pre-upgrade", 10.0), phase=HookPhase.RUNNING))
    apps.put_hook_run(_hook_run("seed", "pre-upgrade", 5.0))
    apps.put_hook_run(_hook_run("migrate", "pre-install", 1.0))
    apps.put_hook_run(
        replace(_hook_run("migrate", "pre-upgrade", 20.0), phase=HookPhase.FAILED, revision=2)
    )
    runs = [(r.name, r.event, r.phase, r.revision) for r in apps.hook_runs("shop", "a", "web")]
    assert runs == [
        ("migrate", "pre-install", HookPhase.SUCCEEDED, 1),
        ("seed", "pre-upgrade", HookPhase.SUCCEEDED, 1),
        ("migrate", "pre-upgrade", HookPhase.FAILED, 2),
    ]
    assert apps.hook_runs("shop", "b", "web") == []


def test_the_hook_runs_of_an_application_are_each_releases_runs_at_once(apps: AppStore) -> None:
    _revision(apps, "shop", [_target("a"), _target("b"), _target("c")])
    _revision(apps, "blog", [_target("a")])
    apps.put_hook_run(_hook_run("seed", "pre-upgrade", 5.0))
    apps.put_hook_run(_hook_run("migrate", "pre-install", 1.0))
    apps.put_hook_run(_hook_run("migrate", "pre-install", 2.0, cluster="b"))
    apps.put_hook_run(replace(_hook_run("other", "pre-install", 1.0), app="blog"))
    found = apps.hook_runs_of("shop")
    assert set(found) == {("a", "web"), ("b", "web")}
    for (cluster, component), runs in found.items():
        assert runs == apps.hook_runs("shop", cluster, component)
    assert [r.name for r in found["a", "web"]] == ["migrate", "seed"]
    assert apps.hook_runs_of("blog") == {("a", "web"): apps.hook_runs("blog", "a", "web")}


def test_a_hold_is_confirmed_dropped_and_cleared_by_a_new_revision(apps: AppStore) -> None:
    _revision(apps, "shop", [_target("a")])
    removals = frozenset({("b", "web"), ("c", "api")})
    apps.put_hold(Hold(app="shop", revision=1, removals=removals, reason="3 of 4 clusters"))
    held = apps.hold("shop")
    assert held is not None
    assert (held.revision, held.removals, held.reason, held.confirmed) == (
        1,
        removals,
        "3 of 4 clusters",
        False,
    )
    apps.confirm_hold("shop")
    assert apps.hold("shop") == replace(held, confirmed=True)
    apps.drop_hold("shop")
    assert apps.hold("shop") is None
    apps.put_hold(Hold(app="shop", revision=1, removals=removals, reason="again"))
    _revision(apps, "shop", [_target("a")])
    assert apps.hold("shop") is None


def test_holdings_name_what_applications_have_on_a_cluster(apps: AppStore) -> None:
    deploy(apps, "shop", "a")
    deploy(apps, "blog", "b", objects=())  # targeted, nothing applied yet
    deploy(apps, "old", "a")
    deploy(apps, "old", "b", objects=())  # revision 2 moved it to b; its objects on a stay
    deploy(apps, "canary", "b", objects=())
    apps.put_rollout(_rollout("canary", "c", 1))  # a canary left where it is not targeted
    holdings = {h.app: h for h in apps.holdings("a")}
    assert sorted(holdings) == ["old", "shop"]
    assert (holdings["shop"].components, holdings["shop"].objects) == (["web"], 2)
    assert holdings["shop"].targeted and not holdings["old"].targeted
    assert [(h.app, h.components, h.objects, h.targeted) for h in apps.holdings("b")] == [
        ("blog", [], 0, True),
        ("canary", [], 0, True),
        ("old", [], 0, True),
    ]
    assert [(h.app, h.targeted) for h in apps.holdings("c")] == [("canary", False)]
    assert apps.holdings("d") == []


# measurements and events


def test_measurements_are_read_by_step_and_gate_oldest_first(apps: AppStore) -> None:
    for _ in range(2):
        _revision(apps, "shop", [_target("a")])
    taken = [
        _measurement("a-deploy", 0, 1.0),
        _measurement("check", CHECK_GATE, 2.0),
        _measurement("a-deploy", 1, 3.0),
        _measurement("a-deploy", 0, 4.0),
    ]
    for m in taken:
        apps.add_measurement(m)
    apps.add_measurement(_measurement("a-deploy", 0, 5.0, revision=2))
    assert apps.measurements("shop", 1) == taken
    assert apps.measurements("shop", 1, "a-deploy") == [taken[0], taken[2], taken[3]]
    assert apps.measurements("shop", 1, "a-deploy", 0) == [taken[0], taken[3]]
    assert apps.measurements("shop", 1, "check", CHECK_GATE) == [taken[1]]
    apps.drop_measurements("shop", 1, "a-deploy")
    assert apps.measurements("shop", 1) == [taken[1]]
    assert len(apps.measurements("shop", 2)) == 1


def test_events_grow_and_are_paged_newest_last(apps: AppStore) -> None:
    _revision(apps, "shop", [_target("a")])
    _revision(apps, "blog", [_target("a")])
    added = [
        apps.add_event("shop", "one", revision=1, step="a-deploy", cluster="a", component="web"),
        apps.add_event("blog", "two"),
        apps.add_event("shop", "three", revision=1),
        apps.add_event("shop", "four"),
    ]
    [target] = apps.targets("shop", 1)
    added.append(apps.add_target_event(target, "five"))
    ids = [e.id for e in added]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert apps.events() == added
    assert apps.events(limit=2) == added[-2:]
    assert apps.events(after=ids[1]) == added[2:]
    assert apps.events(after=ids[0], limit=2) == added[-2:]
    assert apps.events(after=ids[-1]) == []
    shop = [e for e in added if e.app == "shop"]
    assert apps.events("shop") == shop
    assert apps.events("shop", after=ids[0], limit=1) == shop[-1:]
    assert (added[-1].revision, added[-1].step, added[-1].cluster, added[-1].component) == (
        1,
        "a-deploy",
        "a",
        "web",
    )


def test_events_beyond_the_count_per_application_go(store: ClusterStore) -> None:
    apps = store.apps(replace(DEFAULTS, events_per_app=3))
    for app in ("shop", "blog"):
        _revision(apps, app, [_target("a")])
    shop = [apps.add_event("shop", f"event {n}") for n in range(7)]
    blog = [apps.add_event("blog", f"event {n}") for n in range(2)]
    until(lambda: apps.events("shop") == shop[-3:], CONVERGE, "shop's oldest events pruned")
    assert apps.events("blog") == blog
    assert apps.events() == [*shop[-3:], *blog]


def test_every_write_is_published(apps: AppStore) -> None:
    subscription = apps.changes.subscribe()
    revision = _revision(apps, "shop", [_target("a")]).number
    assert any(c.app == "shop" for c in subscription.drain()), "create_revision"
    event = apps.add_event("shop", "said")
    assert Change("shop", event) in subscription.drain(), "add_event"
    [target] = apps.targets("shop", revision)
    hold = Hold(app="shop", revision=revision, removals=frozenset({("b", "web")}), reason="r")
    writes: list[tuple[str, Callable[[], object]]] = [
        ("set_app", lambda: apps.set_app("shop", phase=AppPhase.SUSPENDED)),
        ("set_suspend", lambda: apps.set_suspend("shop", True)),
        ("set_step", lambda: apps.set_step("shop", revision, "a-deploy", phase=StepPhase.RUNNING)),
        ("put_target", lambda: apps.put_target(replace(target, phase=TargetPhase.APPLYING))),
        ("add_targets", lambda: apps.add_targets("shop", revision, [_target("b")])),
        ("drop_target", lambda: apps.drop_target(replace(target, cluster="b"))),
        ("put_hold", lambda: apps.put_hold(hold)),
        ("confirm_hold", lambda: apps.confirm_hold("shop")),
        ("drop_hold", lambda: apps.drop_hold("shop")),
        ("set_inventory", lambda: apps.set_inventory("shop", "a", "web", revision, [])),
        ("drop_inventory", lambda: apps.drop_inventory("shop", "a", "web")),
        ("put_rollout", lambda: apps.put_rollout(_rollout("shop", "a", revision))),
        ("approve_pause", lambda: apps.approve_pause("shop", "a", "web", 1)),
        ("drop_rollout", lambda: apps.drop_rollout("shop", "a", "web")),
        ("put_hook_run", lambda: apps.put_hook_run(_hook_run("migrate", "pre-install", 1.0))),
        ("add_measurement", lambda: apps.add_measurement(_measurement("a-deploy", 0, 1.0))),
        ("drop_measurements", lambda: apps.drop_measurements("shop", revision, "a-deploy")),
        ("fail_target", lambda: apps.fail_target(target, "refused")),
        ("finish_revision", lambda: apps.finish_revision("shop", revision, Outcome.FAILED)),
        ("delete_app", lambda: apps.delete_app("shop")),
    ]
    counted = apps.writes()
    for name, write in writes:
        write()
        assert any(c.app == "shop" for c in subscription.drain()), name
        counted = _moved(apps, counted, name)
    subscription.close()


def test_the_count_of_writes_moves_with_the_unpublished_ones_too(
    store: ClusterStore, apps: AppStore
) -> None:
    """`writes`: what a status tree is kept by (hub.service.memo) moves with the observation
    (shown by a replica that does not drive the application), not published, and with what
    a cluster's rename or removal does to the rows naming it; a store that cannot count
    them says None, always."""
    for name in ("a", "b"):
        store.add_cluster(_cluster(name))
    _on(apps, "shop", "a")
    counted = apps.writes()
    writes: list[tuple[str, Callable[[], object]]] = [
        ("set_observed", lambda: apps.set_observed("shop", ObservedRecord({}))),
        ("rename_cluster", lambda: store.rename_cluster("a", "c")),
        ("delete_cluster", lambda: store.delete_cluster("c")),
    ]
    for name, write in writes:
        write()
        counted = _moved(apps, counted, name)


def _moved(apps: AppStore, before: int | None, write: str) -> int | None:
    """`apps.writes()` now, which must have moved since `before` unless it is never kept."""
    now = apps.writes()
    if before is None or now is None:
        assert before is now is None, f"{write}: writes became {now}, after {before}"
    else:
        assert now > before, f"{write}: writes did not move"
    return now


# a restart


def test_a_restarted_store_reads_back_everything(stores: Stores, store: ClusterStore) -> None:
    for name in ("a", "b"):
        store.add_cluster(_cluster(name))
    store.record_probe("a", health="Healthy", reason="", version="v1.31.0", seen=True)
    store.add_repository(_repository("acme"))
    apps = store.apps()
    _on(apps, "shop", "a")
    revision = _revision(apps, "shop", [_target("a"), _target("b", step="b-approve")]).number
    apps.set_step("shop", revision, "a-deploy", phase=StepPhase.PAUSED, resume_at=9.0)
    apps.set_app("shop", phase=AppPhase.SUSPENDED, message="waiting")
    apps.put_rollout(_rollout("shop", "b", revision, step=1))
    apps.approve_pause("shop", "b", "web", 2)
    apps.set_inventory("shop", "b", "web", revision, [{"kind": "ConfigMap", "name": "b"}])
    apps.add_measurement(_measurement("a-deploy", 0, 1.0, revision=revision))
    apps.put_hold(
        Hold(app="shop", revision=revision, removals=frozenset({("a", "web")}), reason="r")
    )
    apps.add_event("shop", "paused", revision=revision, step="a-deploy")
    _on(apps, "blog", "b")
    before = _everything(store, apps)
    after = stores.restart()
    assert _everything(after, after.apps()) == before


def _everything(store: ClusterStore, apps: AppStore) -> dict[str, Any]:
    """All that a store tells of its state, for comparing one store with another."""
    found: dict[str, Any] = {
        "clusters": store.clusters(),
        "repositories": store.repositories(),
        "apps": apps.apps(),
        "events": apps.events(limit=1000),
    }
    for cluster in store.clusters():
        found[f"holdings {cluster.name}"] = apps.holdings(cluster.name)
    for app in apps.apps():
        found[f"{app.name} revisions"] = apps.revisions(app.name)
        found[f"{app.name} inventory"] = apps.inventory(app.name)
        found[f"{app.name} rollouts"] = sorted(
            apps.rollouts(app.name), key=lambda r: (r.cluster, r.component)
        )
        found[f"{app.name} hold"] = apps.hold(app.name)
        for revision in apps.revisions(app.name):
            key = f"{app.name} {revision.number}"
            found[f"{key} steps"] = apps.steps(app.name, revision.number)
            found[f"{key} targets"] = apps.targets(app.name, revision.number)
            found[f"{key} measurements"] = apps.measurements(app.name, revision.number)
        for cluster in store.clusters():
            found[f"{app.name} {cluster.name} hooks"] = apps.hook_runs(
                app.name, cluster.name, "web"
            )
    return found


# the Kubernetes store's own promises


@pytest.mark.cluster
def test_credentials_are_kept_in_secrets_never_in_custom_resources(
    management: Management,
) -> None:
    store = management.stores.open()
    records = [_cluster("a"), _cluster("b")]
    for record in records:
        store.add_cluster(record)
    store.rename_cluster("b", "c")
    repository = _repository("acme")
    store.add_repository(repository)
    _on(store.apps(), "shop", "a")
    hidden = [*(s for record in records for s in _credentials(record)), repository.secret]

    api = clusters.admin_api(management.info)
    custom = _custom_resources(api, management.namespace)
    assert {"Cluster", "Repository", "Application"} <= {o["kind"] for o in custom}
    text = json.dumps(custom)
    assert [s for s in hidden if s in text] == []
    kept = api.get(f"/api/v1/namespaces/{management.namespace}/secrets")["items"]
    plain = " ".join(
        base64.b64decode(value).decode(errors="replace")
        for secret in kept
        for value in (secret.get("data") or {}).values()
    )
    assert [s for s in hidden if s not in plain] == []


def _custom_resources(api: KubeAPI, namespace: str) -> list[dict[str, Any]]:
    """Every flotilla.dev object in `namespace`, of every kind and version the API server
    serves, as it serves them."""
    found = []
    for version in api.get("/apis/flotilla.dev")["versions"]:
        group_version = version["groupVersion"]
        for resource in api.get(f"/apis/{group_version}")["resources"]:
            if "/" in resource["name"] or not resource["namespaced"]:
                continue
            path = f"/apis/{group_version}/namespaces/{namespace}/{resource['name']}"
            found.extend(api.get(path)["items"])
    return found


@pytest.mark.cluster
def test_a_write_that_lost_a_race_is_retried_from_fresh_state(management: Management) -> None:
    """One hub approves a canary's pause while another writes the canary's next step from
    a record it read before the approval: both are kept, whichever write came second."""
    approving, running = (management.stores.open().apps() for _ in range(2))
    revision = _revision(approving, "shop", [_target("a")]).number
    approving.put_rollout(_rollout("shop", "a", revision))
    until(lambda: running.rollout("shop", "a", "web") is not None, CONVERGE, "the canary seen")
    races = 0
    for step in range(1, RACE_TRIES + 1):
        read_before = running.rollout("shop", "a", "web")
        assert read_before is not None
        approving.approve_pause("shop", "a", "web", step)
        seen = running.rollout("shop", "a", "web")
        races += seen is not None and seen.resume_step != step  # its watch is behind
        running.put_rollout(replace(read_before, step=step, stage=Stage.UPGRADING))
        written = running.rollout("shop", "a", "web")
        assert written is not None and (written.step, written.resume_step) == (step, step)
        if races >= RACES_WANTED:
            break
    assert races, "every write came after its store had seen the approval: no race was run"

    def settled() -> bool:
        found = approving.rollout("shop", "a", "web")
        return found is not None and (found.step, found.resume_step) == (step, step)

    until(settled, CONVERGE, "the approving store seeing both writes")


@pytest.mark.cluster
def test_kubectl_shows_applications_with_their_revision_and_phase(
    management: Management,
) -> None:
    apps = management.stores.open().apps()
    for _ in range(2):
        _revision(apps, "shop", [_target("a")])
    apps.set_app("shop", phase=AppPhase.SUSPENDED)
    _revision(apps, "blog", [_target("a")])
    shown = kubectl(
        management.info.kubeconfig, "get", "applications.flotilla.dev", "-n", management.namespace
    ).stdout
    rows = _table(shown)
    assert [(r["NAME"], r["REVISION"], r["PHASE"]) for r in rows] == [
        ("blog", "1", "running"),
        ("shop", "2", "suspended"),
    ]


def _table(shown: str) -> list[dict[str, str]]:
    """kubectl's table as rows by column: each column's cells start where its header does
    (a cell may be empty, or hold spaces)."""
    header, *lines = shown.splitlines()
    columns = list(re.finditer(r"\S+", header))
    ends = [column.start() for column in columns[1:]] + [None]
    return [
        {c.group(): line[c.start() : end].strip() for c, end in zip(columns, ends, strict=True)}
        for line in lines
    ]


# the health the hub rolls up (hub.service.health), for readers of the store alone


def test_health_is_kept_unpublished_and_outlives_a_new_revision(
    stores: Stores, store: ClusterStore
) -> None:
    apps = store.apps()
    _revision(apps, "shop", [_target("a")])
    assert apps.app("shop").health == "Unknown"
    subscription = apps.changes.subscribe()
    apps.set_health("shop", "Degraded")
    apps.set_health("shop", "Degraded")  # kept already: nothing to write
    apps.set_health("blog", "Healthy")  # no such application: nothing
    assert apps.app("shop").health == "Degraded"
    assert [a.name for a in apps.apps()] == ["shop"]
    assert subscription.drain() == [], "derived from what is published: never published"
    subscription.close()
    apps.set_app("shop", phase=AppPhase.SUSPENDED)
    _revision(apps, "shop", [_target("a")])  # until the hub's next pass rolls it up again
    assert apps.app("shop").health == "Degraded"
    assert stores.restart().apps().app("shop").health == "Degraded"


@pytest.mark.cluster
def test_kubectl_shows_applications_with_their_health(management: Management) -> None:
    apps = management.stores.open().apps()
    _revision(apps, "shop", [_target("a")])
    _revision(apps, "blog", [_target("a")])
    apps.set_health("shop", "Healthy")
    shown = kubectl(
        management.info.kubeconfig, "get", "applications.flotilla.dev", "-n", management.namespace
    ).stdout
    rows = _table(shown)
    assert list(rows[0]) == ["NAME", "REVISION", "PHASE", "HEALTH", "MESSAGE", "AGE"]
    assert [(r["NAME"], r["PHASE"], r["HEALTH"]) for r in rows] == [
        ("blog", "running", "Unknown"),
        ("shop", "running", "Healthy"),
    ]


# what the hub driving an application observed of its objects (hub.service.health), for
# the hubs that share the store without driving it


def _observation(clusters: int, objects: int) -> ObservedRecord:
    """`objects` objects of release `checkout` on each of `clusters` clusters, with names
    as long as charts make them; one object per cluster waits on its rollout, and the
    first has drifted."""
    kinds = ("Deployment", "Service", "ConfigMap", "Secret", "ServiceAccount", "Ingress")
    releases: dict[tuple[str, str], tuple[ObservedObject, ...]] = {}
    for c in range(clusters):
        found = [
            ObservedObject(
                "apps/v1" if kind == "Deployment" else "v1",
                kind,
                "checkout-production",
                f"checkout-service-{kind.lower()}-{o}",
                "Progressing" if o == 0 else "Healthy",
                "Waiting for rollout to finish: 2 of 3 updated replicas are available" * (o == 0),
            )
            for o, kind in enumerate(kinds[o % len(kinds)] for o in range(objects))
        ]
        releases[f"prod-eu-west-{c:02d}", "checkout"] = tuple(found)
    first, *rest = releases["prod-eu-west-00", "checkout"]
    drift: DriftView = {
        "gone": False,
        "fields": [{"path": "spec.replicas", "applied": 3, "live": 5, "manager": "kubectl"}],
        "action": "healing",
        "since": "2025-01-01T00:00:00Z",
    }
    releases["prod-eu-west-00", "checkout"] = (replace(first, drift=drift), *rest)
    return ObservedRecord(releases)


def test_an_observation_is_kept_unpublished_and_outlives_a_new_revision(
    stores: Stores, store: ClusterStore
) -> None:
    apps = store.apps()
    _revision(apps, "shop", [_target("a")])
    assert apps.observed("shop") is None, "nothing observed yet"
    subscription = apps.changes.subscribe()
    observed = _observation(2, 3)
    apps.set_observed("shop", observed)
    apps.set_observed("blog", observed)  # no such application: nothing
    assert apps.observed("shop") == observed
    assert apps.observed("shop") == replace(observed, at=observed.at + 1), "`at` is no part of it"
    assert [a.name for a in apps.apps()] == ["shop"]
    assert subscription.drain() == [], "derived from what is published: never published"
    subscription.close()
    changed = _observation(2, 2)
    apps.set_observed("shop", changed)
    found = apps.observed("shop")
    assert found == changed != observed and found is not None and found.at == changed.at
    _revision(apps, "shop", [_target("a")])  # until the driving hub's next pass
    assert apps.observed("shop") == changed
    assert stores.restart().apps().observed("shop") == changed


def test_an_observation_of_64_clusters_fits_in_one_object(store: ClusterStore) -> None:
    apps = store.apps()
    _revision(apps, "shop", [_target("a")])
    observed = _observation(64, 10)
    assert len(json.dumps(observed.to_json(), separators=(",", ":"))) < OBSERVED_MAX
    apps.set_observed("shop", observed)
    assert apps.observed("shop") == observed


@pytest.mark.cluster
def test_another_hub_sees_an_observation_through_its_watch(management: Management) -> None:
    """A write of the Application's `status.observed` alone reaches the mirror of every
    other store on the namespace: how a replica that does not drive it answers status."""
    driving, elsewhere = (management.stores.open().apps() for _ in range(2))
    _revision(driving, "shop", [_target("a")])
    until(lambda: [a.name for a in elsewhere.apps()] == ["shop"], CONVERGE, "the application")
    observed = _observation(3, 2)
    driving.set_observed("shop", observed)
    until(lambda: elsewhere.observed("shop") == observed, CONVERGE, "the observation seen")
