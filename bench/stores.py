"""The store's cost (issue 15 §4): the same deploys on SQLite and on the Kubernetes store,
and what the Kubernetes store asks of its management API server.

SQLite commits in the hub's own process; the Kubernetes store makes every transition a
write to an API server (etcd underneath), so a deploy pays a round trip per state change
and the hub spends CPU on JSON and TLS instead. Both hubs get the same bench clusters
and the same logical clusters, one after the other in one run, and the ratios are taken
between them. The management cluster is the first API server, a member cluster too, in
a fresh namespace per hub. Its writes are read from its own /metrics
(`apiserver_request_total`): every write to the `flotilla.dev` group and to the Secrets
and Leases the store keeps. Its controller manager and node renew Leases of their own
all the time; that background is measured while the SQLite hub runs (which writes none
of them) and subtracted.

    python -m bench --only stores [--servers 4] [--sizes 16 64]

The deploys compared are at the second largest of `--sizes` (16 by default), the writes
are counted during a deploy at the largest (64).

Last, failover: two `flotilla serve` replicas on a store namespace of their own, one
application that waits at a timed suspend step after its deploy. A runner that adopts it
writes the application's phase before anything else (hub.workflow.engine), so the first
object of it the survivor writes is the first thing it does as the new owner. The
replica whose Lease holds the application's shard is SIGKILLed KILLS times; each time the
bench polls the store until the survivor holds that Lease and until it has written one of
the application's objects (their `flotilla.dev/writer` annotation), then starts a new
replica (a new identity: the dead one's Leases still name it) and waits until it has taken
its share of the shards back.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import secrets
import statistics
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from bench.fleet import LABEL, REQUESTS_SAMPLE, STATE_DIR, BenchError, Fleet, Timing
from bench.latency import CONFIG_CHART
from bench.report import Figure, print_figures, stamp, write_json
from e2e import clusters
from e2e.binaries import CONTROL_PLANE, ensure_built
from e2e.clusters import ClusterInfo
from e2e.hubproc import LEASE_SECONDS, RENEW_SECONDS, HubProcess, kubernetes_store
from e2e.kubeapi import KubeAPI
from hub.model.phases import AppPhase
from hub.model.settings import DEFAULTS
from hub.state.kube.backend import path_of
from hub.state.kube.resources import (
    APPLICATION,
    CLUSTER,
    KINDS,
    REPOSITORY,
    app_of,
    application_name,
    status_of,
    writer_of,
)
from hub.state.shards import ROLE, SHARD, SHARD_PREFIX, SHARDS, assign, shard_of

SQLITE, KUBERNETES = "sqlite", "kubernetes"
SECTION = "8. the Kubernetes store beside SQLite (config-demo)"
# Deploys per store: the median of three evens out a slow one on a shared machine.
REPEATS = 3
# The hub probes every 5 s (bench.fleet): two probe rounds show what an idle hub with
# every cluster joined writes, whatever the store records per probe.
IDLE = 10.0
# What the store writes besides its own group: credentials in Secrets, shards in Leases.
STORE_GROUP = "flotilla.dev"
STORE_KINDS = frozenset({("", "secrets"), ("coordination.k8s.io", "leases")})
# The verbs that change state (APPLY is a server-side apply, counted apart from PATCH).
WRITES = frozenset({"POST", "PUT", "PATCH", "APPLY", "DELETE"})
# A DELETE of a whole collection is counted as DELETE at this scope: the namespace
# controller's sweep of every kind in a terminating namespace (the bench's clean-up),
# never the store's, which deletes its objects by name.
SWEEP = "namespace"
# A write refused for a stale resourceVersion: a lost race the store retries.
CONFLICT = "409"
TRANSACTIONS = "flotilla_store_transaction_duration_seconds"
# Failovers measured: the median of five is not moved by one kill that lands badly against
# the renew rounds, and five fit in the figure's two minutes at the test Leases.
KILLS = 5
# How often the store is read while a replica is dead: the resolution of the failover times.
FAILOVER_POLL = 0.05
# Several Lease durations: a takeover or a rebalance that takes longer is broken, not slow.
FAILOVER_TIMEOUT = 60.0
# The suspend step outlasts the bench, so the application waits for as long as it runs.
HOLD = "1h"
# The kinds that belong to an application (the registry's do not).
APP_KINDS = tuple(kind for kind in KINDS if kind not in (CLUSTER, REPOSITORY))
# Where the shards' Leases are kept in the store namespace (hub.state.shards).
LEASES = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"


async def compare(fleet: Fleet, store: str, size: int) -> dict[str, Any]:
    """REPEATS deploys of config-demo to `size` logical clusters, each removed
    afterwards: the median timing, every run, the store transactions the hub timed
    meanwhile and the management cluster's writes of what the store keeps."""
    management = fleet.infos[0]
    transactions, writes = _transactions(fleet), management_writes(management)
    started = time.monotonic()
    runs = []
    for repeat in range(REPEATS):
        name = f"store-{store[:4]}{size}-{repeat}"
        runs.append(await fleet.deploy(name, fleet.application(name, size, chart=CONFIG_CHART)))
        await fleet.delete(name)
        fleet.delete_namespaces(name, size)
    await fleet.until_namespaces_gone()
    median = Timing(
        *(statistics.median(getattr(run, f.name) for run in runs) for f in fields(Timing))
    )
    print(
        f"bench: {store} store N={size}: healthy {median.healthy:.2f}s, "
        f"hub CPU {median.hub_cpu:.2f}s (median of {REPEATS})",
        flush=True,
    )
    return {
        "size": size,
        "timing": asdict(median),
        "runs": [asdict(run) for run in runs],
        "transactions": _minus(_transactions(fleet), transactions),
        "writes": dict(management_writes(management) - writes),
        "seconds": time.monotonic() - started,
    }


async def writes_during(fleet: Fleet, size: int) -> dict[str, Any]:
    """The management cluster's writes of what the store keeps over IDLE seconds of a hub
    with every cluster joined, then during one config-demo deploy to `size` clusters."""
    management = fleet.infos[0]
    before = management_writes(management)
    idle_started = time.monotonic()
    # A window to measure, not a wait: nothing is asked of the hub meanwhile.
    await asyncio.sleep(IDLE)
    idle_seconds = time.monotonic() - idle_started
    during = management_writes(management)
    name = f"store-writes{size}"
    started = time.monotonic()
    timing = await fleet.deploy(name, fleet.application(name, size, chart=CONFIG_CHART))
    seconds = time.monotonic() - started
    after = management_writes(management)
    await fleet.delete(name)
    fleet.delete_namespaces(name, size)
    print(
        f"bench: {KUBERNETES} store N={size}: healthy {timing.healthy:.2f}s, "
        f"{sum(_stored(after - during).values())} writes to the management cluster",
        flush=True,
    )
    return {
        "size": size,
        "timing": asdict(timing),
        "idle": {"seconds": idle_seconds, "writes": dict(during - before)},
        "deploy": {"seconds": seconds, "writes": dict(after - during)},
    }


@dataclass
class Replicas:
    """The failover's `flotilla serve` replicas on the store `namespace`, by identity, each
    reached as a Fleet of one logical cluster on the bench's API servers and chart
    repository; `management` reads the store as its administrator."""

    fleet: Fleet
    namespace: str
    management: KubeAPI
    live: dict[str, Fleet] = field(default_factory=dict)
    started: int = 0

    def add(self) -> Fleet:
        """Start a replica under an identity none had before."""
        identity = f"bench-replica-{self.started}"
        self.started += 1
        store = kubernetes_store(self.fleet.infos[0].kubeconfig, self.namespace)
        hub = HubProcess(
            STATE_DIR / f"{self.namespace}-{identity}",
            probe_interval=DEFAULTS.probe_interval,
            log_level="info",
            serve_args=(*store, "--replica-id", identity),
        )
        try:
            hub.start()
        except BaseException:
            if hub.running:
                hub.stop()
            raise
        self.live[identity] = Fleet(self.fleet.infos, self.fleet.repo, hub, 1)
        return self.live[identity]

    def stop(self) -> None:
        for replica in self.live.values():
            if replica.hub.running:
                replica.hub.stop()

    def holders(self) -> dict[int, str]:
        """Every shard's Lease holder, as the store has it."""
        path = LEASES.format(namespace=self.namespace)
        leases = self.management.get(f"{path}?labelSelector={ROLE}={SHARD}")
        return {
            int(lease["metadata"]["name"].removeprefix(SHARD_PREFIX)): holder
            for lease in leases["items"]
            if (holder := lease["spec"].get("holderIdentity"))
        }

    def objects(self, app: str) -> dict[tuple[str, str], tuple[str, str | None]]:
        """The store's objects of `app` by kind and name: resourceVersion and writer."""
        found = {}
        for kind in APP_KINDS:
            for obj in self.management.get(path_of(self.namespace, kind.kind))["items"]:
                if app_of(obj | {"kind": kind.kind}) == app:
                    meta = obj["metadata"]
                    found[kind.kind, meta["name"]] = (meta["resourceVersion"], writer_of(obj))
        return found

    def settled(self, app: str) -> bool:
        """Every shard held by the live replica `assign` gives it to, and `app` waiting at
        its suspend step, written last by the holder of its shard: resumed by it."""
        holders = self.holders()
        if holders != assign(list(self.live), SHARDS):
            return False
        obj = self.management.get(path_of(self.namespace, APPLICATION.kind, application_name(app)))
        return (
            status_of(obj).get("phase") == AppPhase.SUSPENDED
            and writer_of(obj) == holders[shard_of(app)]
        )

    async def kill_owner(self, app: str) -> dict[str, Any]:
        """SIGKILL the replica that drives `app`: seconds from the kill until the survivor
        holds the Lease of its shard (`lease`) and until it has written an object of `app`
        (`write`, its kind `wrote`)."""
        shard = shard_of(app)
        owner = self.holders()[shard]
        survivor = next(identity for identity in self.live if identity != owner)
        before = self.objects(app)
        killed = time.monotonic()
        self.live.pop(owner).hub.kill()
        lease: float | None = None
        write: float | None = None
        wrote = ""
        while True:
            if lease is None and self.holders().get(shard) == survivor:
                lease = time.monotonic() - killed
            if write is None:
                written = [
                    key
                    for key, seen in self.objects(app).items()
                    if seen[1] == survivor and seen != before.get(key)
                ]
                if written:
                    write, wrote = time.monotonic() - killed, written[0][0]
            if lease is not None and write is not None:
                return {
                    "owner": owner,
                    "survivor": survivor,
                    "lease": lease,
                    "write": write,
                    "wrote": wrote,
                }
            if time.monotonic() - killed > FAILOVER_TIMEOUT:
                raise BenchError(
                    f"{app}: replica {survivor} {'holds' if lease else 'does not hold'} the "
                    f"Lease of shard {shard} and {'wrote' if write else 'has not written'} "
                    f"of it {FAILOVER_TIMEOUT:g}s after replica {owner} was killed"
                )
            await asyncio.sleep(FAILOVER_POLL)


def held(fleet: Fleet, name: str) -> str:
    """config-demo on one cluster, then a suspend step that outlasts the bench."""
    document = yaml.safe_load(fleet.application(name, 1, chart=CONFIG_CHART))
    hold = {"name": "hold", "type": "suspend", "properties": {"duration": HOLD}}
    document["spec"]["workflow"]["steps"].append(hold)
    return yaml.safe_dump(document, sort_keys=False)


async def failover(fleet: Fleet, namespace: str) -> dict[str, Any]:
    """KILLS failovers of one application between two replicas on the store `namespace`
    (deleted afterwards), the killed one replaced before the next."""
    replicas = Replicas(fleet, namespace, clusters.admin_api(fleet.infos[0]))
    name = f"failover-{secrets.token_hex(3)}"
    started = time.monotonic()
    kills: list[dict[str, Any]] = []
    try:
        first = replicas.add()
        replicas.add()
        await first.join()
        await first.up(name, held(first, name))
        await first.until_phase(name, AppPhase.SUSPENDED)
        for n in range(KILLS):
            if kills:
                replicas.add()
            await _until(lambda: replicas.settled(name), f"{name} resumed, shards split")
            kills.append(await replicas.kill_owner(name))
            print(
                f"bench: failover {n + 1}/{KILLS}: Lease {kills[-1]['lease']:.2f}s, first "
                f"write {kills[-1]['write']:.2f}s ({kills[-1]['wrote']})",
                flush=True,
            )
    finally:
        replicas.stop()
        fleet.delete_namespaces(name, 1)
        clusters.delete_namespace(namespace, [fleet.infos[0]])
    return {
        "lease_seconds": LEASE_SECONDS,
        "renew_seconds": RENEW_SECONDS,
        "kills": kills,
        "seconds": time.monotonic() - started,
    }


async def _until(condition: Callable[[], bool], what: str) -> None:
    """Poll `condition` until it holds: what the bench measures next starts from there."""
    deadline = time.monotonic() + FAILOVER_TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise BenchError(f"not within {FAILOVER_TIMEOUT:g}s: {what}")
        await asyncio.sleep(FAILOVER_POLL)


def management_writes(info: ClusterInfo) -> Counter[str]:
    """Writes the API server of `info` has answered so far to what the store keeps, by
    resource (`<plural>.flotilla.dev`, `secrets`, `leases`), and the conflicts among
    them (`conflicts`): every client's, the control plane's own Lease renewals too."""
    counts: Counter[str] = Counter()
    for line in str(clusters.admin_api(info).get("/metrics")).splitlines():
        match = REQUESTS_SAMPLE.match(line)
        if match is None:
            continue
        labels = dict(LABEL.findall(match["labels"]))
        group, resource = labels.get("group", ""), labels.get("resource", "")
        verb = labels.get("verb")
        if verb not in WRITES or (verb == "DELETE" and labels.get("scope") == SWEEP):
            continue
        if group == STORE_GROUP:
            kind = f"{resource}.{group}"
        elif (group, resource) in STORE_KINDS:
            kind = resource
        else:
            continue
        value = int(float(match["value"]))
        counts[kind] += value
        if labels.get("code") == CONFLICT:
            counts["conflicts"] += value
    return counts


def _stored(writes: Mapping[str, int]) -> dict[str, int]:
    """The writes by resource, without the conflicts (counted among them already)."""
    return {kind: count for kind, count in writes.items() if kind != "conflicts"}


def _transactions(fleet: Fleet) -> dict[str, Any]:
    """The hub's store transaction histogram as it stands: `buckets` (cumulative counts
    by upper bound, `le` as exposed), `count` and `sum` (seconds)."""
    text = fleet.hub_metrics()
    found: dict[str, Any] = {"buckets": {}, "count": 0.0, "sum": 0.0}
    for family in text_string_to_metric_families(text):
        if family.name == TRANSACTIONS:
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    found["buckets"][sample.labels["le"]] = sample.value
                else:
                    found[sample.name.rpartition("_")[2]] = sample.value
    return found


def _minus(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """What a histogram of `_transactions` gained between two reads."""
    buckets = {le: n - before["buckets"].get(le, 0.0) for le, n in after["buckets"].items()}
    return {
        "buckets": buckets,
        "count": after["count"] - before["count"],
        "sum": after["sum"] - before["sum"],
    }


def median_seconds(buckets: Mapping[str, float]) -> float | None:
    """The median of cumulative `buckets` (by `le`), interpolated within its bucket as
    Prometheus' histogram_quantile does; None when they hold nothing."""
    ordered = sorted((float(le), count) for le, count in buckets.items())
    if not ordered or ordered[-1][1] == 0:
        return None
    rank = ordered[-1][1] / 2
    lower, below = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def figures(measured: dict[str, Any]) -> list[Figure]:
    stores = measured["stores"]
    size = stores[SQLITE]["size"]
    sqlite, kube = stores[SQLITE]["timing"], stores[KUBERNETES]["timing"]
    out: list[Figure] = []
    for store, timing in ((SQLITE, sqlite), (KUBERNETES, kube)):
        out.append(
            Figure(
                SECTION,
                f"{store} N={size}: all healthy (median of {REPEATS})",
                timing["healthy"],
                "s",
                note=f"applied {timing['applied']:.2f} s",
            )
        )
    out.append(
        Figure(
            SECTION,
            f"  {KUBERNETES}/{SQLITE}: all healthy",
            kube["healthy"] / sqlite["healthy"],
            "x",
        )
    )
    for store, timing in ((SQLITE, sqlite), (KUBERNETES, kube)):
        out.append(
            Figure(
                SECTION,
                f"{store} N={size}: hub CPU per deploy (median of {REPEATS})",
                timing["hub_cpu"],
                "s",
                note=f"{timing['hub_cpu'] / size * 1000:.1f} ms per target",
            )
        )
    out.append(
        Figure(
            SECTION, f"  {KUBERNETES}/{SQLITE}: hub CPU", kube["hub_cpu"] / sqlite["hub_cpu"], "x"
        )
    )
    for store in (SQLITE, KUBERNETES):
        timed = stores[store]["transactions"]
        median = median_seconds(timed["buckets"])
        out.append(
            Figure(
                SECTION,
                f"{store}: store transaction median, N={size} deploys",
                None if median is None else median * 1000,
                "ms",
                note=f"mean {timed['sum'] / timed['count'] * 1000:.2f} ms of {timed['count']:.0f}"
                if timed["count"]
                else "not timed by this store",
            )
        )
    return out + _write_figures(measured) + _failover_figures(measured["failover"])


def _write_figures(measured: dict[str, Any]) -> list[Figure]:
    """Writes to the management API server, the control plane's own subtracted at the
    rate the SQLite phase saw."""
    background = measured["stores"][SQLITE]
    rate = {kind: count / background["seconds"] for kind, count in background["writes"].items()}
    writes = measured["writes"]
    size = writes["size"]

    def net(window: dict[str, Any]) -> dict[str, float]:
        return {
            kind: max(count - rate.get(kind, 0.0) * window["seconds"], 0.0)
            for kind, count in _stored(window["writes"]).items()
        }

    idle, deploy = net(writes["idle"]), net(writes["deploy"])
    seconds = writes["deploy"]["seconds"]
    total = sum(deploy.values())
    by_kind = ", ".join(
        f"{kind} {count / seconds:.1f}/s" for kind, count in sorted(deploy.items()) if count
    )
    own = sum(count for kind, count in rate.items() if kind != "conflicts")
    return [
        Figure(
            SECTION,
            f"{KUBERNETES} N={size}: all healthy",
            writes["timing"]["healthy"],
            "s",
            note=f"hub CPU {writes['timing']['hub_cpu']:.2f} s",
        ),
        Figure(
            SECTION,
            f"writes/s to the management API server, N={size}",
            total / seconds,
            "/s",
            note=f"{by_kind or 'none'}; control plane's own {own:.1f}/s subtracted",
        ),
        Figure(
            SECTION,
            f"  writes per target, N={size}",
            total / size,
            "",
            note=f"{writes['deploy']['writes'].get('conflicts', 0)} conflicts (409) among them",
        ),
        Figure(
            SECTION,
            f"  writes/s of the idle hub, {size} clusters joined",
            sum(idle.values()) / writes["idle"]["seconds"],
            "/s",
            note=f"over {writes['idle']['seconds']:.0f} s before the deploy",
        ),
    ]


def _failover_figures(failover: dict[str, Any]) -> list[Figure]:
    """The failover medians, and the defaults' on paper. The survivor takes a shard once it
    has seen its Lease unchanged for the lease duration (hub.state.shards), counted from
    the round that first saw the dead owner's last renewal, and only in a round of its own:
    what the take costs past the lease duration is where the kill fell between renewals
    and where the survivor's rounds fell, both in renew periods, so it scales with them.
    The new owner's resumption after the Lease does not."""
    kills = failover["kills"]
    lease_seconds, renew_seconds = failover["lease_seconds"], failover["renew_seconds"]
    leases, writes = [k["lease"] for k in kills], [k["write"] for k in kills]
    lease, write = statistics.median(leases), statistics.median(writes)
    resumed = statistics.median(k["write"] - k["lease"] for k in kills)
    longer, slower = DEFAULTS.lease_seconds, DEFAULTS.renew_seconds
    past = (lease - lease_seconds) * slower / renew_seconds
    on_paper = longer + past + resumed
    return [
        Figure(
            SECTION,
            f"failover: kill -> Lease taken over (median of {len(kills)})",
            lease,
            "s",
            note=f"--lease-seconds {lease_seconds:g} --renew-seconds {renew_seconds:g}; "
            f"{min(leases):.2f}-{max(leases):.2f} s",
        ),
        Figure(
            SECTION,
            f"failover: kill -> new owner writes (median of {len(kills)})",
            write,
            "s",
            note=f"{resumed:.2f} s after its Lease; first written: "
            f"{', '.join(sorted({k['wrote'] for k in kills}))}",
        ),
        Figure(
            SECTION,
            f"  on paper, --lease-seconds {longer:g} --renew-seconds {slower:g}",
            on_paper,
            "s",
            note=f"+{on_paper - write:.1f} s on the measured: a Lease of {longer:g} s, "
            f"{past:.2f} s past it ({lease - lease_seconds:.2f} s x {slower / renew_seconds:g}); "
            f"at most about {longer + 2 * slower:g} s to the Lease (lease + 2 renew periods)",
        ),
    ]


async def alone(args: argparse.Namespace) -> None:
    """`--only stores`: a hub on each store in turn, on one fleet of the bench's own."""
    ensure_built(CONTROL_PLANE)
    sizes = sorted(set(args.sizes))
    largest = sizes[-1]
    compared = sizes[-2] if len(sizes) > 1 else largest
    print(f"bench: {args.servers} API servers, {largest} logical clusters", flush=True)
    started = time.monotonic()
    fleet = Fleet.start(args.servers, largest)
    management = fleet.infos[0]
    namespace = f"bench-store-{secrets.token_hex(4)}"
    stores: dict[str, Any] = {}
    try:
        await fleet.join()
        stores[SQLITE] = await compare(fleet, SQLITE, compared)
        # The same API servers, a fresh hub on the Kubernetes store.
        fleet.close(keep_clusters=True)
        fleet = Fleet.start(
            args.servers,
            largest,
            serve_args=kubernetes_store(management.kubeconfig, namespace, short_leases=False),
        )
        await fleet.join()
        stores[KUBERNETES] = await compare(fleet, KUBERNETES, compared)
        writes = await writes_during(fleet, largest)
        # Its probes of every cluster would load the machine the failover is timed on.
        fleet.hub.stop()
        failed_over = await failover(fleet, f"bench-failover-{secrets.token_hex(4)}")
    finally:
        try:
            if fleet.hub.running:
                fleet.hub.stop()
            clusters.delete_namespace(namespace, [management])
        finally:
            fleet.close(keep_clusters=args.keep)
    measured = {
        "servers": args.servers,
        "stores": stores,
        "writes": writes,
        "failover": failed_over,
    }
    results = figures(measured)
    print_figures(results)
    path = write_json(f"{stamp()}-stores", results, measured)
    print(f"\nbench: wrote {path} after {time.monotonic() - started:.0f} s")
