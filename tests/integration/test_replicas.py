"""Several hubs on one Kubernetes store (issue 15 §3): real `flotilla serve` replicas share a
store namespace on e2e-1, the management cluster, which is a member cluster as well.

Each test starts three replicas and joins the fleet through the first. Applications are
named by their shard: `assign` gives every shard's owner among the live replicas, the same
map the replicas compute, so a test knows which replica drives an application before it
deploys it, and which one will once a replica is gone. The last replica reaches the store
through a fault proxy, so a test can cut it off without stopping an API server that other
tests are using.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import secrets
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from clusters.health import HealthStatus
from e2e import clusters
from e2e.chartrepo import ChartRepo
from e2e.clusters import ClusterInfo
from e2e.faultproxy import FaultProxy, running_proxy
from e2e.hubproc import HubProcess, kubernetes_store
from e2e.kubeapi import KubeAPI
from e2e.kubeconfigs import derive
from hub.state.kube.resources import EVENT, GROUP, VERSION
from hub.state.shards import ROLE, SHARD, SHARD_PREFIX, SHARDS, assign, shard_of
from tests.fleet import NAMES, Fleet, listed_clusters, owned_by, until

pytestmark = pytest.mark.cluster

IDS = ("replica-0", "replica-1", "replica-2")
EVERYONE = (0, 1, 2)
CUT = 2  # the replica behind the fault proxy
VICTIM = 2  # the replica the failover test kills (whose survivors are 0 and 1)
PROD = ("prod-eu", "prod-us")
CANARY = "flotilla.dev/canary=true"
INSTANCE = "app.kubernetes.io/instance={app}"
HASH = re.compile(r"(?<=pod-template-hash )\w+")
# One pod of every workload everywhere, canaries included (20% of one rounds up to one):
# six applications on three clusters stay light on a machine other tests share.
SMALL: dict[str, Any] = {"values": {"replicaCount": 1}, "prod_eu_replicas": 1}
CANARY_TRAIT = [
    {
        "type": "kruise-rollout",
        "properties": {
            "canary": {"steps": [{"weight": 20}], "trafficRoutings": [{"type": "nginx"}]}
        },
    }
]
# A killed replica's Leases are free LEASE_SECONDS (6) after its last renewal, and the heir
# takes them in its next round (RENEW_SECONDS, 1): ten seconds on an idle machine. The bound
# is generous because two CPUs run three clusters, three hubs and other tests at once.
TAKEOVER = 60.0
# Replicas starting or rejoining race for shards, then hand the surplus over: a few rounds.
SETTLE = 60.0
# Six applications deployed at once, each on three clusters, pods made by the simulated kubelet.
DEPLOY = 300.0


@dataclass
class Ring:
    """The replicas of one test on the store namespace `store`, and the fleet they drive."""

    hubs: list[HubProcess]
    fleet: Fleet  # joined through replica 0
    store: str
    management: KubeAPI
    proxy: FaultProxy  # between replica CUT and the store

    def via(self, replica: int) -> Fleet:
        """The fleet as seen through `replica`: its CLI talks to that hub only."""
        return dataclasses.replace(self.fleet, hub=self.hubs[replica])

    def holders(self) -> dict[int, str]:
        """Every shard's Lease holder, as the store has it."""
        path = f"/apis/coordination.k8s.io/v1/namespaces/{self.store}/leases"
        leases = self.management.get(f"{path}?labelSelector={ROLE}={SHARD}")
        return {
            int(lease["metadata"]["name"].removeprefix(SHARD_PREFIX)): holder
            for lease in leases["items"]
            if (holder := lease["spec"].get("holderIdentity"))
        }

    def settled(self, *live: int) -> bool:
        """Every shard held by the replica `assign` gives it to among `live`."""
        return self.holders() == assign([IDS[i] for i in live], SHARDS)

    def events(self, app: str, revision: int) -> Counter[str]:
        """How often each message was recorded for `app`'s `revision`, with the application's
        name and pod template hashes written as APP and HASH, so that two applications'
        runs compare."""
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{self.store}/{EVENT.plural}"
        return Counter(
            HASH.sub("HASH", spec["message"].replace(app, "APP"))
            for item in self.management.get(path)["items"]
            if (spec := item["spec"])["app"] == app and spec["revision"] == revision
        )


@pytest.fixture
def ring(
    e2e_clusters: list[ClusterInfo], namespace: str, chart_repo: ChartRepo, tmp_path: Path
) -> Iterator[Ring]:
    """Three replicas on a fresh store namespace, every shard where `assign` puts it, the
    clusters joined through replica 0 and known to every replica; the namespace is
    deleted afterwards."""
    management = e2e_clusters[0]
    store = f"fs-{secrets.token_hex(4)}"
    with running_proxy(int(management.server.rpartition(":")[2])) as proxy:
        through = derive(management.kubeconfig, tmp_path / "store-proxied.yaml", server=proxy.url)
        hubs = [
            HubProcess(
                tmp_path / f"home-{i}",
                serve_args=(
                    *kubernetes_store(through if i == CUT else management.kubeconfig, store),
                    "--replica-id",
                    IDS[i],
                ),
            )
            for i in EVERYONE
        ]
        try:
            for hub in hubs:
                hub.start()
            fleet = Fleet.join(hubs[0], e2e_clusters, namespace, chart_repo.url, tmp_path)
            ring = Ring(hubs, fleet, store, clusters.admin_api(management), proxy)
            for hub in hubs[1:]:
                until(functools.partial(_knows_the_fleet, hub), SETTLE, "clusters everywhere")
            until(lambda: ring.settled(*EVERYONE), SETTLE, "32 shards split among three")
            yield ring
        finally:
            proxy.revive()  # a replica cut off by a failed test still releases its Leases
            for hub in hubs:
                if hub.running:
                    hub.stop()
            clusters.delete_namespace(store, [management])


def _knows_the_fleet(hub: HubProcess) -> bool:
    """Whether the clusters joined through replica 0 reached this replica's registry."""
    return set(listed_clusters(hub)) == set(NAMES)


def _named(owners: Mapping[tuple[int, ...], int], taken: set[str]) -> str:
    """`owned_by` with the replicas by their index."""
    return owned_by(
        {tuple(IDS[i] for i in live): IDS[owner] for live, owner in owners.items()}, taken
    )


def _up(fleet: Fleet, app: str, *extra: str, **spec: Any) -> None:
    result = fleet.up(fleet.app(name=app, **SMALL | spec), *extra)
    assert result.code == 0, result.stderr


def _listed(fleet: Fleet) -> dict[str, dict[str, Any]]:
    """Every application's row of `flotilla ls`, by name."""
    rows = fleet.hub.ok("ls", "-o", "json").json()["applications"]
    return {row["name"]: row for row in rows}


def _all_in(fleet: Fleet, apps: list[str], phase: str, revision: int = 1) -> bool:
    """Every one of `apps` at `revision`, in `phase`."""
    rows = _listed(fleet)
    return all((rows.get(app) or {}).get("revision") == revision for app in apps) and all(
        rows[app]["phase"] == phase for app in apps
    )


def _uids(fleet: Fleet, app: str) -> dict[str, set[str]]:
    """The UIDs of `app`'s stable pods, by cluster."""
    selector = f"{INSTANCE.format(app=app)},!flotilla.dev/canary"
    return {c: {p["metadata"]["uid"] for p in fleet.pods(c, selector)} for c in NAMES}


def _canary_objects(fleet: Fleet, app: str, cluster: str) -> list[str]:
    selector = f"{CANARY},{INSTANCE.format(app=app)}"
    found = fleet.kubectl(cluster, "get", "deployments,services,ingresses", "-l", selector)
    return [f"{o['kind']}/{o['metadata']['name']}" for o in found["items"]]


def _canary_gone(fleet: Fleet, app: str) -> bool:
    return not any(_canary_objects(fleet, app, cluster) for cluster in PROD)


def _assert_paused(fleet: Fleet, app: str, stable: dict[str, set[str]]) -> None:
    """Paused at step 1 as test_canary's run is: one ready canary pod and 20% of the
    traffic on each prod cluster, the stable pods those of v1."""
    status = fleet.status(app)
    assert "paused at step 1/1" in status["message"], status["message"]
    for cluster in PROD:
        canaries = fleet.pods(cluster, f"{CANARY},{INSTANCE.format(app=app)}")
        assert [p["spec"]["containers"][0]["image"] for p in canaries] == [
            "registry.local/canary-demo:2.0.0"
        ], cluster
        ingress = fleet.kubectl(cluster, "get", "ingress", f"{app}-canary")
        assert (
            ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"] == "20"
        )
        assert (fleet.deployment(cluster, app) or {})["spec"]["paused"] is True
        assert _uids(fleet, app)[cluster] == stable[cluster], f"a stable pod restarted on {cluster}"


def _assert_finished(fleet: Fleet, app: str) -> None:
    """Ended as test_canary's canary does: no canary machinery, the stable workload on
    2.0.0, released and ready."""
    for cluster in PROD:
        assert _canary_objects(fleet, app, cluster) == [], cluster
        deployment = fleet.deployment(cluster, app)
        assert deployment is not None and not deployment["spec"].get("paused"), cluster
        assert deployment["status"].get("readyReplicas") == 1, cluster
        assert fleet.image(cluster, app) == "registry.local/canary-demo:2.0.0", cluster
        selector = fleet.kubectl(cluster, "get", "service", app)["spec"]["selector"]
        assert "pod-template-hash" not in selector, cluster


def test_a_canary_whose_replica_is_killed_mid_step_ends_as_an_uninterrupted_one(
    ring: Ring,
) -> None:
    """Replica VICTIM drives `killed`'s canary and is SIGKILLed in the middle of its step;
    replica 0 runs the same canary of `steady`, untouched, for comparison."""
    taken: set[str] = set()
    killed = _named({EVERYONE: VICTIM}, taken)
    steady = _named({EVERYONE: 0, (0, 1): 0}, taken)
    others = [_named({EVERYONE: owner}, taken) for owner in (VICTIM, 1, 1, 0)]
    apps = [killed, steady, *others]
    for i, app in enumerate(apps):  # sent to every replica, whoever drives the application
        _up(ring.via(i % 3), app, traits=CANARY_TRAIT if app in (killed, steady) else None)
    until(lambda: _all_in(ring.fleet, apps, "succeeded"), DEPLOY, "six applications on v1")
    stable = {app: _uids(ring.fleet, app) for app in apps}

    for app in (killed, steady):
        _up(ring.via(1), app, version="2.0.0", traits=CANARY_TRAIT)
    until(lambda: not _canary_gone(ring.fleet, killed), DEPLOY, "the canary under way")
    ring.hubs[VICTIM].kill()

    survivors = {IDS[0], IDS[1]}
    until(
        lambda: ring.holders().get(shard_of(killed)) in survivors,
        TAKEOVER,
        f"a surviving replica holding {killed}'s shard",
    )
    heir = IDS.index(ring.holders()[shard_of(killed)])
    bystander = ring.via(1 - heir)  # a survivor that does not drive `killed`
    until(
        lambda: _all_in(bystander, [killed, steady], "suspended", revision=2),
        DEPLOY,
        "both canaries paused",
    )
    for app in (killed, steady):
        _assert_paused(bystander, app, stable[app])

    bystander.hub.ok("workflow", "resume", killed)
    ring.via(heir).hub.ok("workflow", "resume", steady)
    until(
        lambda: _all_in(bystander, [killed, steady], "succeeded", revision=2),
        DEPLOY,
        "both canaries finished",
    )

    for app in (killed, steady):
        until(functools.partial(_canary_gone, ring.fleet, app), DEPLOY, f"{app}'s canary gone")
        _assert_finished(ring.fleet, app)
    rows = _listed(bystander)
    assert {app: (rows[app]["phase"], rows[app]["health"]) for app in apps} == dict.fromkeys(
        apps, ("succeeded", HealthStatus.HEALTHY)
    )
    for app in others:  # taken over or not, nothing of theirs was deployed again
        assert _uids(ring.fleet, app) == stable[app], app
    interrupted, uninterrupted = ring.events(killed, 2), ring.events(steady, 2)
    repeated = interrupted - uninterrupted
    assert not uninterrupted - interrupted, f"transitions never made: {uninterrupted - interrupted}"
    # The phase in flight when its replica died runs again (an idempotent apply, and its
    # wait); none that had finished may run again.
    again = Counter(message.partition(":")[0] for message in repeated.elements())
    assert all(n == 1 for n in again.values()), f"finished phases ran again: {dict(repeated)}"


def test_a_replica_cut_off_from_the_store_stops_and_rejoins_as_a_non_owner(ring: Ring) -> None:
    """Replica CUT loses the store for longer than its Leases last, while the member clusters
    stay within its reach: it must stop before the others take over, and must not act on
    what it knew before the cut once it is back."""
    app = _named({EVERYONE: CUT}, set())
    _up(ring.via(0), app, "--wait")
    stranded = {s for s, holder in ring.holders().items() if holder == IDS[CUT]}
    cut = ring.hubs[CUT]

    ring.proxy.die()

    until(
        lambda: f"replica {IDS[CUT]} cannot reach the store" in cut.log(),
        TAKEOVER,
        "the cut replica saying so",
    )
    until(lambda: ring.settled(0, 1), TAKEOVER, "its shards held by the other two")
    fenced = rf"shard (\d+) released by replica {IDS[CUT]}: not renewed"
    stopped = set(map(int, re.findall(fenced, cut.log())))
    assert stopped >= stranded, f"still acting on shards {sorted(stranded - stopped)}"
    _up(ring.via(1), app, "--wait", version="2.0.0")  # driven by replica 0 or 1 meanwhile
    assert all(ring.fleet.image(c, app) == "registry.local/canary-demo:2.0.0" for c in NAMES)

    ring.proxy.revive()

    until(
        lambda: f"replica {IDS[CUT]} reaches the store again" in cut.log(),
        SETTLE,
        "the cut replica back",
    )
    until(lambda: ring.settled(*EVERYONE), SETTLE, "its share held by it again")
    rejoined = cut.log().partition(f"replica {IDS[CUT]} reaches the store again")[2]
    retaken = set(map(int, re.findall(rf"shard (\d+) acquired by replica {IDS[CUT]}", rejoined)))
    held = {s for s, holder in ring.holders().items() if holder == IDS[CUT]}
    assert held and retaken >= held, "a shard held again without being taken again"
    # Replica CUT drives it again: a change of its ConfigMap only, so that its Deployment
    # keeps the template of 2.0.0 and rolls out no third time, unless something rolled it
    # back meanwhile.
    greeting = {"GREETING": f"hello after the partition of {IDS[CUT]}"}
    _up(ring.via(0), app, "--wait", version="2.0.0", values={"replicaCount": 1, "config": greeting})
    # Nobody touched the clusters: a drift healed is a replica acting on a stale store.
    drifts = [m for r in (1, 2, 3) for m in ring.events(app, r) if ": drift: " in m]
    assert drifts == [], f"{len(drifts)} drifts healed, the first: {drifts[:1]}"
    for cluster in NAMES:
        assert ring.fleet.kubectl(cluster, "get", "configmap", app)["data"] == greeting, cluster
        deployment = ring.fleet.deployment(cluster, app) or {}
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":2.0.0")
        rollouts = deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
        assert rollouts == "2", f"{app} on {cluster} was rolled out {rollouts} times, not 2"


def test_scaling_in_to_one_replica_leaves_every_application_driven(ring: Ring) -> None:
    """Two replicas stopped the clean way hand their shards back: the last drives all."""
    taken: set[str] = set()
    apps = [_named({EVERYONE: owner}, taken) for owner in EVERYONE]
    for owner, app in enumerate(apps):
        _up(ring.via(owner), app)
    until(lambda: _all_in(ring.fleet, apps, "succeeded"), DEPLOY, "three applications on v1")

    assert [ring.hubs[i].stop() for i in (1, 2)] == [0, 0]

    until(lambda: ring.settled(0), SETTLE, "every shard held by the last replica")
    for app in apps:
        _up(ring.fleet, app, version="2.0.0")
    until(
        lambda: _all_in(ring.fleet, apps, "succeeded", revision=2),
        DEPLOY,
        "three applications on v2",
    )
    for app in apps:
        assert {ring.fleet.image(c, app) for c in NAMES} == {"registry.local/canary-demo:2.0.0"}


def _gone(fleet: Fleet, app: str) -> bool:
    return app not in _listed(fleet)


def _no_deployment(fleet: Fleet, cluster: str, app: str) -> bool:
    return fleet.deployment(cluster, app) is None


def _watches(fleet: Fleet) -> dict[str, str]:
    """The state of each cluster's watch cache on the fleet's replica, by cluster."""
    return {name: c["watch"]["state"] for name, c in listed_clusters(fleet.hub).items()}


def _watching(fleet: Fleet, state: str) -> bool:
    """Every cluster's watch cache on the fleet's replica in `state`."""
    return set(_watches(fleet).values()) == {state}


def _objects(status: Mapping[str, Any]) -> dict[tuple[str, str, str, str], tuple[str, str]]:
    """Each object of a status tree, by (cluster, component, kind, name): its health and
    sync, the part of the tree that comes from the watch caches."""
    return {
        (cluster["name"], release["component"], obj["kind"], obj["name"]): (
            obj["health"],
            obj["sync"],
        )
        for step in status["steps"]
        for cluster in step["clusters"]
        for release in cluster["releases"]
        for obj in release["objects"]
    }


def _sees_as_owner(fleet: Fleet, owner: Fleet, app: str) -> bool:
    """The replica's status of `app` shows each object as the owner's does, healthy."""
    seen, truth = fleet.status(app), owner.status(app)
    return (
        seen["health"] == truth["health"] == HealthStatus.HEALTHY.value
        and _objects(seen) == _objects(truth) != {}
    )


def test_only_the_owner_watches_and_deletes_and_every_replica_sees_its_status(
    ring: Ring,
) -> None:
    """Replica 0 drives the application: it alone watches the clusters the application is
    on, replicas 1 and 2 answer its status from what replica 0 recorded in the store,
    without a watch of their own, and a delete sent to replica 2 is carried out by
    replica 0, which then watches nothing again."""
    app = _named({EVERYONE: 0}, set())
    for replica in EVERYONE:
        until(functools.partial(_watching, ring.via(replica), "not watched"), SETTLE, "no watch")
    _up(ring.via(1), app, "--wait")

    owner = ring.via(0)
    until(functools.partial(_watching, owner, "synced"), SETTLE, "the owner's watches")
    for replica in (1, 2):
        until(
            functools.partial(_sees_as_owner, ring.via(replica), owner, app),
            SETTLE,
            f"replica {replica} shows the owner's status",
        )
        assert _watching(ring.via(replica), "not watched"), _watches(ring.via(replica))

    ring.via(2).hub.ok("delete", app, "--yes")

    for replica in EVERYONE:
        until(functools.partial(_gone, ring.via(replica), app), SETTLE, "gone everywhere")
    for cluster in NAMES:
        until(
            functools.partial(_no_deployment, ring.fleet, cluster, app),
            SETTLE,
            f"its Deployment gone from {cluster}",
        )
    removed = f"application {app} deleted from every cluster"
    assert removed in ring.hubs[0].log()
    assert all(removed not in ring.hubs[i].log() for i in (1, 2))
    until(functools.partial(_watching, owner, "not watched"), SETTLE, "the owner's watches dropped")
