"""The hub's metrics, in Prometheus' text format, from one `CollectorRegistry` per hub.

Most series are read on each scrape from what the hub keeps anyway (`StateCollector`):
the clusters' health from the registry's records, their watches from the observer, the
requests each cluster's client counted, applications and canaries from the store, and,
on a hub that is one of several replicas of a Kubernetes store, the shards it holds now
(`ReplicaCollector`). A scrape asks no member cluster, starts nothing and writes
nothing. Only what cannot be read afterwards is recorded as it happens: the latency of
each store transaction, the time each target took to become healthy, how late the
event loop wakes (`LoopLag`) and how long each garbage collection held it (`GcPauses`).

Each hub has its own registry rather than prometheus_client's global one, and no metric
lives at module level, so that hubs built in one process (tests) never share a series.
Labels name clusters, applications and their components, never objects or releases, and
no URL or credential: the series are bounded by what is registered and deployed.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Iterable, Iterator
from typing import Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from clusters.health import HealthStatus
from hub.fleet.observer import NOT_WATCHED, TASK_PREFIX
from hub.fleet.registry import PROBE_TASK
from hub.model.phases import AppPhase
from hub.model.records import TargetRecord
from hub.service.applications import Applications
from hub.service.status import cached_health
from hub.tasks import kind
from hub.workflow.engine import RUNNER
from hub.workflow.rollout import traffic

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Transactions are well under a millisecond (hub.state.store); the upper buckets are there
# to show when they are not.
TRANSACTION_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0)
# From an apply that is healthy at once to a rollout waiting out a long step timeout. By
# application only: by cluster too, 10 applications on 64 clusters made 7,700 series, and
# formatting them held the hub's loop for 114 ms on every scrape.
DEPLOY_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0)
# The supervisor's kinds of task, counted from zero so that a rate() has a start.
TASK_KINDS = (kind(PROBE_TASK), kind(TASK_PREFIX), kind(RUNNER))
# The observer's state of a watch cache whose every kind is listed and every watch connected.
SYNCED = "synced"
CLUSTER = ("cluster",)
# How often the lag probe sleeps and looks how late it woke: often enough to see a stall
# of a tenth of a second, cheap enough (ten wake-ups a second) to run for weeks.
LAG_INTERVAL = 0.1
# The supervised task of the lag probe.
LAG_TASK = "loop-lag"
# A young generation's collection takes microseconds; a full one over a heap of a few
# GB, most of a second.
GC_BUCKETS = (0.0001, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# The supervised task that times the collections (`GcPauses`).
GC_TASK = "gc-pauses"


class LoopLag:
    """How late the hub's event loop wakes a task that sleeps LAG_INTERVAL seconds.

    Every request, watch and runner of the hub shares one loop, so whatever blocks it (a
    synchronous call, a long burst of CPU) delays all of them; this sees such a stall
    whatever caused it, which a timing of any one request cannot."""

    def __init__(self) -> None:
        self.last = 0.0
        self.worst = 0.0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(LAG_INTERVAL)
            self.last = max(loop.time() - before - LAG_INTERVAL, 0.0)
            self.worst = max(self.worst, self.last)


class GcPauses:
    """How long each of the interpreter's garbage collections held the process, by
    generation. A full (generation 2) collection walks every container the hub holds, the
    watch caches' objects among them, and stops the event loop meanwhile: with a big heap
    it is what an API call that is slow now and then waited for.

    `gc.callbacks` is the process's, so the callback is there only while `run` runs: hubs
    built one after another in one process (tests) do not pile theirs up."""

    def __init__(self, histogram: Histogram) -> None:
        self._histogram = histogram
        self._started = 0.0

    def _observe(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self._histogram.labels(str(info["generation"])).observe(
                time.perf_counter() - self._started
            )

    async def run(self) -> None:
        gc.callbacks.append(self._observe)
        try:
            await asyncio.Event().wait()
        finally:
            gc.callbacks.remove(self._observe)


class HubMetrics:
    """One hub's metrics: the process' own (memory, CPU, GC), what is recorded as it
    happens, and, once `read` is given the applications, the hub's state on each scrape."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self._transactions = Histogram(
            "flotilla_store_transaction_duration_seconds",
            "Seconds each committed store transaction held the store.",
            buckets=TRANSACTION_BUCKETS,
            registry=self.registry,
        )
        self._deploys = Histogram(
            "flotilla_target_deploy_duration_seconds",
            "Seconds from a target's apply until its objects were healthy (a canary's: from "
            "its last resume).",
            ["application"],
            buckets=DEPLOY_BUCKETS,
            registry=self.registry,
        )
        self.lag = LoopLag()
        self.gc = GcPauses(
            Histogram(
                "flotilla_gc_pause_seconds",
                "Seconds each garbage collection of the hub's interpreter held it, by "
                "generation (2: a full one).",
                ["generation"],
                buckets=GC_BUCKETS,
                registry=self.registry,
            )
        )
        Gauge(
            "flotilla_event_loop_lag_seconds",
            f"Seconds the event loop woke late from the lag probe's last {LAG_INTERVAL} s sleep.",
            registry=self.registry,
        ).set_function(lambda: self.lag.last)
        Gauge(
            "flotilla_event_loop_lag_max_seconds",
            "The worst lateness of the event loop since the hub started, in seconds.",
            registry=self.registry,
        ).set_function(lambda: self.lag.worst)

    def transaction(self, seconds: float) -> None:
        self._transactions.observe(seconds)

    def deployed(self, target: TargetRecord, seconds: float) -> None:
        self._deploys.labels(target.app).observe(seconds)

    def read(self, applications: Applications, shards: HeldShards | None = None) -> None:
        """From now on each scrape also reads the state of these applications' hub, and
        the `shards` this replica holds (None: it is alone on its store, and has none)."""
        self.registry.register(StateCollector(applications))
        if shards is not None:
            self.registry.register(ReplicaCollector(shards))

    def exposition(self) -> bytes:
        """Every series now, in the text format (CONTENT_TYPE)."""
        return generate_latest(self.registry)


class StateCollector(Collector):
    """The hub's state as series, read when scraped: nothing to keep current meanwhile."""

    def __init__(self, applications: Applications) -> None:
        self._applications = applications

    def collect(self) -> Iterable[Metric]:
        yield from self._clusters()
        yield from self._apps()
        yield from self._engine()

    def _clusters(self) -> Iterator[Metric]:
        registry = self._applications.registry
        up = _gauge(
            "cluster_up", "1 when the cluster's last probe found it Healthy, else 0.", CLUSTER
        )
        probe = _gauge("cluster_probe_duration_seconds", "Seconds the last probe took.", CLUSTER)
        connected = _gauge(
            "cluster_watch_connected",
            "1 when the watch cache has listed every kind and every watch is connected; "
            "absent for a cluster this hub does not watch (a replica watches only the "
            "clusters its shards deploy to).",
            CLUSTER,
        )
        age = _gauge(
            "cluster_watch_age_seconds",
            "Seconds since the watch cache last heard from the cluster (an event, a "
            "bookmark about once a minute, a list).",
            CLUSTER,
        )
        in_flight = _gauge(
            "cluster_requests_in_flight", "Requests to the cluster under way.", CLUSTER
        )
        requests = CounterMetricFamily(
            "flotilla_cluster_requests",
            "Requests sent to the cluster, by verb (HTTP method; WATCH for a watch).",
            labels=["cluster", "verb"],
        )
        errors = CounterMetricFamily(
            "flotilla_cluster_request_errors",
            "Requests that failed, by verb and code (the HTTP status; none: no answer).",
            labels=["cluster", "verb", "code"],
        )
        stats = registry.request_stats()
        now = time.time()
        for record in registry.clusters():
            name = record.name
            up.add_metric([name], record.health == "Healthy")
            if (took := registry.probe_seconds(name)) is not None:
                probe.add_metric([name], took)
            # Left out rather than 0 when not watched: nothing is wrong, and 0 would alert.
            if (watch := registry.watch_health(name).state) != NOT_WATCHED:
                connected.add_metric([name], watch == SYNCED)
            if (seen := registry.observer.last_seen(name)) is not None:
                age.add_metric([name], max(now - seen, 0.0))
            sent = stats.get(name)
            in_flight.add_metric([name], sent.in_flight if sent else 0)
            for verb, count in sorted(sent.requests.items() if sent else ()):
                requests.add_metric([name, verb], count)
            for (verb, code), count in sorted(sent.errors.items() if sent else ()):
                errors.add_metric([name, verb, code], count)
        yield from (up, probe, connected, age, in_flight, requests, errors)

    def _apps(self) -> Iterator[Metric]:
        apps, registry = self._applications.apps, self._applications.registry
        labels = ["application"]
        phase = _gauge(
            "application_phase",
            "1 for the application's phase, 0 for the others.",
            [*labels, "phase"],
        )
        health = _gauge(
            "application_health",
            "1 for the application's health as the watch caches of the hub that drives it show "
            "it, 0 for the others.",
            [*labels, "health"],
        )
        revision = _gauge("application_revision", "The application's current revision.", labels)
        where = [*labels, "cluster", "component"]
        step = _gauge("canary_step", "The step (from 1) a canary of the revision is at.", where)
        weight = _gauge(
            "canary_weight_percent",
            "The share of traffic a canary of the revision has (absent for header matches).",
            where,
        )
        for record in apps.apps():
            name = record.name
            targets = apps.targets(name, record.revision)
            # An application another hub drives: its clusters are watched there, not
            # here, and that hub keeps the health it rolls up in the store.
            rolled_up = (
                cached_health(apps, registry, record, targets).value
                if self._applications.engine.owns(name)
                else record.health
            )
            for each in AppPhase:
                phase.add_metric([name, each.value], record.phase is each)
            for status in HealthStatus:
                health.add_metric([name, status.value], rolled_up == status.value)
            revision.add_metric([name], record.revision)
            by_place = {(t.cluster, t.component): t for t in targets}
            for canary in apps.rollouts(name):
                target = by_place.get((canary.cluster, canary.component))
                if target is None or canary.revision != record.revision:
                    continue  # a canary of an earlier revision, finished or backed out
                place = [name, canary.cluster, canary.component]
                step.add_metric(place, canary.step + 1)
                if (share := traffic(canary, target)) is not None:
                    weight.add_metric(place, share)
        yield from (phase, health, revision, step, weight)

    def _engine(self) -> Iterator[Metric]:
        supervisor = self._applications.registry.supervisor
        running = sum(state.running for state in supervisor.states(RUNNER))
        yield GaugeMetricFamily(
            "flotilla_workflow_runners",
            "Workflow runners running now: one per application the engine drives.",
            value=running,
        )
        restarts = CounterMetricFamily(
            "flotilla_supervisor_restarts",
            "Restarts of supervised tasks that died, by kind (probe, observe, workflow).",
            labels=["kind"],
        )
        for each, count in sorted(({k: 0 for k in TASK_KINDS} | supervisor.restarts).items()):
            restarts.add_metric([each], count)
        yield restarts


class HeldShards(Protocol):
    """What the metrics read of a replica's shards (hub.state.shards.Shards): no I/O."""

    @property
    def partitioned(self) -> bool: ...

    def owned(self) -> frozenset[int]: ...


class ReplicaCollector(Collector):
    """This replica's share of the work, read when scraped: how many shards it drives now,
    and whether its store stopped answering it (its shards then stop as their Leases run
    out, and the count falls to 0 with them)."""

    def __init__(self, shards: HeldShards) -> None:
        self._shards = shards

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "flotilla_replica_shards",
            "Shards this replica holds now: it drives their applications and no other does.",
            value=len(self._shards.owned()),
        )
        yield GaugeMetricFamily(
            "flotilla_replica_partitioned",
            "1 while the store does not answer this replica's Lease rounds, else 0.",
            value=int(self._shards.partitioned),
        )


def _gauge(name: str, documentation: str, labels: Iterable[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"flotilla_{name}", documentation, labels=list(labels))
