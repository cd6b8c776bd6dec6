"""The pure half of the Kubernetes store (hub.state.kube.resources): every record survives
its object, every key makes a valid and distinct name, credentials stay out of custom
resources, and the reader's rules (cluster uids, leftovers, superseded revisions)."""

from __future__ import annotations

import json

import pytest

from hub.model.phases import HookPhase, Measured, Outcome, Stage, TargetPhase
from hub.model.records import (
    ClusterRecord,
    EventRecord,
    HookRunRecord,
    MeasurementRecord,
    RepositoryRecord,
    RolloutRecord,
    TargetRecord,
)
from hub.model.targets import ChartSpec, TargetSpec
from hub.state.kube import resources as r

NS = "flotilla-system"
AWKWARD = ["Shop", "shop_web", "a" * 300, "-x-", "ä", "", "a.b", "UPPER.case"]


def _cluster() -> ClusterRecord:
    return ClusterRecord(
        name="prod-eu",
        server="https://10.0.0.1:6443",
        kubeconfig={"users": [{"name": "u", "user": {"token": "s3cret-token"}}]},
        credential="token",
        labels={"env": "prod"},
        version="v1.34.4",
        health="Healthy",
        reason="ok",
        warnings=["slow"],
        last_seen=12.5,
        joined_at=3.25,
        prometheus={"url": "https://prom", "password": "pr0m-pass"},
    )


def test_a_cluster_round_trips_with_its_credentials_only_in_its_secret() -> None:
    record = _cluster()
    obj, held = r.cluster_object(record, NS), r.cluster_secret(record, NS)
    assert "s3cret" not in json.dumps(obj) and "pr0m" not in json.dumps(obj)
    assert held["metadata"]["name"] == f"flotilla-cluster-{record.uid}"
    assert obj["metadata"]["labels"][r.MANAGED_BY] == r.MANAGER
    assert r.cluster_record(obj, r.secret_data(held)) == record


def test_a_repository_round_trips_with_its_secret_apart() -> None:
    record = RepositoryRecord("charts", "https://charts.example", "http", "basic", "me", "pw!")
    obj = r.repository_object(record, NS)
    assert "pw!" not in json.dumps(obj)
    held = r.secret(r.repository_secret_name("charts"), NS, {"secret": record.secret})
    assert r.repository_record(obj, r.secret_data(held)) == record


def test_a_target_round_trips_every_field() -> None:
    chart = ChartSpec("oci", "oci://r/c", "web", "1.2.3", "^1", "sha256:x", True, ())
    target = TargetRecord(
        app="shop",
        revision=3,
        step="deploy",
        cluster="prod-eu",
        component="web",
        namespace="shop",
        release="web",
        chart="web",
        spec=TargetSpec("helm", chart=chart, values={"a": 1}, traits={"scaler": {"n": 2}}),
        phase=TargetPhase.WAITING,
        message="waiting",
        updated_at=9.5,
    )
    ref = r.ClusterRef("uid-1", "prod-eu")
    obj = r.new_object(r.TARGET.kind, "t", NS, r.target_spec(target, ref))
    assert r.spec_of(obj)["clusterUid"] == "uid-1"
    assert r.target_record(obj, "prod-eu") == target


@pytest.mark.parametrize(
    "record",
    [
        RolloutRecord("a", "c", "web", 2, "Deployment", "web", Stage.PAUSED, 1, 5.0, "d", 1, "h"),
        HookRunRecord(
            "a", "c", "web", 2, "pre-upgrade", "Job", "", "m", HookPhase.FAILED, "x", 1.0, 2.0
        ),
    ],
)
def test_release_parts_round_trip(record: RolloutRecord | HookRunRecord) -> None:
    data = r.encode(record, skip=("app", "cluster", "component"))
    decode = r.rollout_record if isinstance(record, RolloutRecord) else r.hook_run_record
    assert decode("a", "c", "web", json.loads(json.dumps(data))) == record


def test_a_measurement_and_an_event_round_trip() -> None:
    m = MeasurementRecord(
        "a", 2, "canary", 1, "c", "web", "errors", 7.0, None, Measured.ERROR, "no"
    )
    analysis = r.new_object(r.ANALYSIS.kind, "x", NS, {"app": "a", "revision": 2, "step": "canary"})
    entry = r.encode(m, skip=("app", "revision", "step"))
    assert r.measurement_record(analysis, entry, "c") == m
    event = r.new_object(r.EVENT.kind, "e", NS, r.encode(EventRecord(0, "a", 1.5, "hi", 2)))
    event["metadata"]["resourceVersion"] = "4711"
    assert r.event_record(event) == EventRecord(4711, "a", 1.5, "hi", 2)


@pytest.mark.parametrize("key", AWKWARD)
def test_names_are_valid_for_awkward_keys(key: str) -> None:
    ref = r.ClusterRef("", key)
    for name in (
        r.cluster_name(key),
        r.application_name(key),
        r.revision_name(key, 12),
        r.target_name(key, 1, key, ref, key),
        r.release_name(key, ref, key),
        r.analysis_name(key, 1, key),
        r.repository_secret_name(key),
    ):
        assert r.valid_name(name), name
    assert r.event_prefix(key)[:-1] == "" or r.valid_name(r.event_prefix(key) + "abcde")


def test_natural_names_are_kept_and_composite_keys_never_collide() -> None:
    assert r.cluster_name("prod-eu") == "prod-eu"
    assert r.revision_name("shop", 3) == "shop-3"
    by_uid, by_name = r.ClusterRef("u", "c"), r.ClusterRef("", "c")
    names = {
        r.target_name("a-1", 2, "s", by_uid, "c"),
        r.target_name("a", 12, "s", by_uid, "c"),
        r.target_name("a", 1, "2-s", by_uid, "c"),
        r.target_name("a-1", 2, "s", by_name, "c"),
    }
    assert len(names) == 4
    assert r.release_name("a", by_uid, "web") == r.release_name("a", r.ClusterRef("u", "x"), "web")


def test_crds_are_namespaced_without_status_and_show_columns() -> None:
    ns, *crds = r.manifests("flotilla-x")
    assert ns["kind"] == "Namespace" and ns["metadata"]["name"] == "flotilla-x"
    assert {c["spec"]["names"]["kind"] for c in crds} == {k.kind for k in r.KINDS}
    app = next(c for c in crds if c["spec"]["names"]["kind"] == "Application")
    version = app["spec"]["versions"][0]
    assert app["spec"]["scope"] == "Namespaced" and "subresources" not in version
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Revision",
        "Phase",
        "Health",
        "Message",
        "Age",
    ]


def _cluster_obj(name: str, uid: str, renames: int = 0) -> r.Object:
    return r.new_object(r.CLUSTER.kind, name, NS, {"name": name, "uid": uid, "renames": renames})


def test_a_rename_half_done_shows_the_new_name_and_leaves_the_old_to_delete() -> None:
    old, new, other = _cluster_obj("a", "u1"), _cluster_obj("b", "u1", 1), _cluster_obj("c", "u2")
    for order in ([old, new, other], [new, old, other]):
        current, leftovers = r.current_clusters(order)
        assert {u: r.spec_of(o)["name"] for u, o in current.items()} == {"u1": "b", "u2": "c"}
        assert [r.spec_of(o)["name"] for o in leftovers] == ["a"]


def test_children_report_the_current_name_of_their_cluster_uid() -> None:
    names = {"u1": "renamed"}
    assert r.reported_cluster({"clusterUid": "u1", "cluster": "old"}, names) == "renamed"
    assert r.reported_cluster({"clusterUid": "", "cluster": "unregistered"}, names) == (
        "unregistered"
    )
    assert r.reported_cluster({"clusterUid": "gone", "cluster": "x"}, names) is None


def _revision(number: int, outcome: Outcome = Outcome.RUNNING, incarnation: str = "i") -> r.Object:
    spec = {"app": "a", "number": number, "incarnation": incarnation, "createdAt": float(number)}
    return r.new_object(r.REVISION.kind, f"a-{number}", NS, spec, status={"outcome": outcome})


def test_a_running_revision_behind_the_current_one_reads_as_superseded() -> None:
    assert r.reported(_revision(1), 2, _revision(2)) == (Outcome.SUPERSEDED, 2.0)
    assert r.reported(_revision(2), 2, None) == (Outcome.RUNNING, None)
    assert r.reported(_revision(1, Outcome.FAILED), 2, _revision(2))[0] is Outcome.FAILED


def test_leftovers_of_an_uncommitted_or_deleted_application_are_invisible() -> None:
    app = r.new_object(r.APPLICATION.kind, "a", NS, {"incarnation": "i", "revision": 2})
    assert r.visible_revision(_revision(2), app)
    assert not r.visible_revision(_revision(3), app)  # written before a commit that failed
    assert not r.visible_revision(_revision(1, incarnation="old"), app)
    assert not r.visible_revision(_revision(1), None)


def test_readers_see_the_newest_events_per_application_within_their_age() -> None:
    def event(app: str, version: int, at: float) -> r.Object:
        obj = r.new_object(r.EVENT.kind, f"e{version}", NS, {"app": app, "at": at})
        obj["metadata"]["resourceVersion"] = str(version)
        return obj

    events = [event("a", 1, 10), event("b", 2, 10), event("a", 3, 10), event("a", 4, 1)]
    kept = r.newest_events(events, keep=1, oldest=5)
    assert [r.resource_version(o) for o in kept] == [2, 3]
