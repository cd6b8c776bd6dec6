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
"""

from __future__ import annotations

import argparse
import asyncio
import math
import secrets
import statistics
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, fields
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench.fleet import LABEL, REQUESTS_SAMPLE, Fleet, Timing
from bench.latency import CONFIG_CHART
from bench.report import Figure, print_figures, stamp, write_json
from e2e import clusters
from e2e.binaries import CONTROL_PLANE, ensure_built
from e2e.clusters import ClusterInfo
from e2e.hubproc import kubernetes_store

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
    return out + _write_figures(measured)


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
            args.servers, largest, serve_args=kubernetes_store(management.kubeconfig, namespace)
        )
        await fleet.join()
        stores[KUBERNETES] = await compare(fleet, KUBERNETES, compared)
        writes = await writes_during(fleet, largest)
    finally:
        try:
            if fleet.hub.running:
                fleet.hub.stop()
            clusters.delete_namespace(namespace, [management])
        finally:
            fleet.close(keep_clusters=args.keep)
    measured = {"servers": args.servers, "stores": stores, "writes": writes}
    results = figures(measured)
    print_figures(results)
    path = write_json(f"{stamp()}-stores", results, measured)
    print(f"\nbench: wrote {path} after {time.monotonic() - started:.0f} s")
