"""The hub's metrics: what a scrape says of a store and fleet in a known state, that its
labels stay bounded and free of secrets, the counts each cluster client keeps, and where
`/metrics` is served with and without the token. Scraped by Prometheus from a real hub:
tests/integration/test_hub_metrics.py."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from clusters.client import NO_ANSWER, WATCH, ClusterClient
from clusters.errors import NotFound, Unreachable
from clusters.health import HealthStatus
from hub.api import create_app, create_metrics_app
from hub.model.phases import AppPhase, Stage, StepType, TargetPhase
from hub.model.records import ClusterRecord, RolloutRecord, TargetRecord
from hub.model.targets import ChartSpec, TargetSpec
from hub.redaction import Scrubber
from hub.service.applications import Applications
from hub.service.metrics import HubMetrics
from hub.state.store import SqliteStore
from hub.tasks import Supervisor
from hub.workflow.engine import RUNNER
from tests.unit.fakeapi import CONFIG_MAPS, FakeApi, address, config_map, kubeconfig, started
from tests.unit.hubparts import applications_of, deploy, observing, store_on, until

TOKEN = "test-token"
DEAD = "http://127.0.0.1:1"
"""Where no API server answers: connections are refused at once."""
OBJECTS = ("x", "y", "z")
"""Every object name the applications below have: none may become a label value."""
ALLOWED_LABELS = {"cluster", "application", "component", "phase", "health", "verb", "code"}
ALLOWED_LABELS |= {"kind", "le"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(metrics: HubMetrics) -> Samples:
    """Every sample of a scrape, by name and labels, parsed as Prometheus would."""
    text = metrics.exposition().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def by(samples: Samples, name: str, label: str, **where: str) -> dict[str, float]:
    """The samples of `name` that have `where` among their labels, by their `label`."""
    return {
        dict(labels)[label]: v
        for (named, labels), v in samples.items()
        if named == name and frozenset(where.items()) <= labels
    }


@dataclass
class Hub:
    store: SqliteStore
    applications: Applications
    supervisor: Supervisor
    metrics: HubMetrics


@asynccontextmanager
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    """Cluster `edge` (a scripted API server holding ConfigMaps x and y), found Healthy,
    and `spare`, where nothing answers, found Unreachable; and applications:

    - `shop` succeeded on edge, objects x and y (both there);
    - `gone` succeeded on edge, object z (not there any more);
    - `blog` failed on spare;
    - `web` paused at step 1 (20%) of its canary on edge."""
    fake = FakeApi(lists=[[config_map("x", "1"), config_map("y", "1")]])
    supervisor = Supervisor(first_restart=0.01)
    async with started(fake) as server:
        store = store_on(tmp_path / "db", address(server), "edge")
        store.add_cluster(
            ClusterRecord(name="spare", server=DEAD, kubeconfig=kubeconfig(DEAD), credential="t")
        )
        store.record_probe("edge", health="Healthy", reason="", version=None, seen=True)
        store.record_probe(
            "spare", health="Unreachable", reason="refused", version=None, seen=False
        )
        async with observing(store, tmp_path, supervisor, kinds=CONFIG_MAPS) as registry:
            applications = applications_of(registry, tmp_path)
            apps = applications.apps
            for app, objects, cluster, phase in (
                ("shop", ("x", "y"), "edge", AppPhase.SUCCEEDED),
                ("gone", ("z",), "edge", AppPhase.SUCCEEDED),
                ("blog", (), "spare", AppPhase.FAILED),
            ):
                healthy = phase is AppPhase.SUCCEEDED
                deploy(
                    apps,
                    app,
                    cluster,
                    objects=objects,
                    phase=TargetPhase.HEALTHY if healthy else TargetPhase.FAILED,
                )
                apps.set_app(app, phase=phase)
            canary(applications)
            metrics = HubMetrics()
            metrics.read(applications)
            assert await until(lambda: registry.watch_health("edge").state == "synced")
            yield Hub(store, applications, supervisor, metrics)


def canary(applications: Applications) -> None:
    """Application `web`: one target on edge whose canary is paused at step 1 of 2."""
    trait = {
        "canary": {
            "steps": [{"weight": 20}, {"weight": 50}],
            "trafficRoutings": [{"type": "nginx"}],
        }
    }
    target = TargetRecord(
        app="web",
        revision=0,
        step="deploy",
        cluster="edge",
        component="web",
        namespace="ns",
        release="web-release",
        chart="web-1.0.0",
        spec=TargetSpec(
            "helm",
            chart=ChartSpec("local", "/charts", "web", "1.0.0"),
            traits={"kruise-rollout": trait},
        ),
        phase=TargetPhase.PAUSED,
    )
    apps = applications.apps
    revision = apps.create_revision(
        "web",
        spec={},
        digest="d",
        publish_version="",
        source="test",
        base=".",
        steps=[("deploy", StepType.DEPLOY)],
        targets=[target],
    )
    apps.set_app("web", phase=AppPhase.SUSPENDED)
    apps.put_rollout(
        RolloutRecord(
            app="web",
            cluster="edge",
            component="web",
            revision=revision.number,
            kind="Deployment",
            name="web-release",
            stage=Stage.PAUSED,
            step=0,
        )
    )


async def test_clusters_say_up_watched_and_what_their_clients_sent(tmp_path: Path) -> None:
    async with hub(tmp_path) as h:
        await h.applications.registry.probe_one("spare")  # refused; how long it took shows
        samples = scrape(h.metrics)
        assert value(samples, "flotilla_cluster_up", cluster="edge") == 1
        assert value(samples, "flotilla_cluster_up", cluster="spare") == 0
        assert value(samples, "flotilla_cluster_watch_connected", cluster="edge") == 1
        assert value(samples, "flotilla_cluster_watch_connected", cluster="spare") == 0
        age = value(samples, "flotilla_cluster_watch_age_seconds", cluster="edge")
        assert age is not None and 0 <= age < 60
        assert value(samples, "flotilla_cluster_watch_age_seconds", cluster="spare") is None
        probed = value(samples, "flotilla_cluster_probe_duration_seconds", cluster="spare")
        assert probed is not None and probed >= 0
        assert value(samples, "flotilla_cluster_probe_duration_seconds", cluster="edge") is None
        # edge: its cache's discovery and list (GET), and its watch
        assert (
            value(samples, "flotilla_cluster_requests_total", cluster="edge", verb="GET") or 0
        ) >= 2
        assert value(samples, "flotilla_cluster_requests_total", cluster="edge", verb=WATCH) == 1
        refused = value(
            samples,
            "flotilla_cluster_request_errors_total",
            cluster="spare",
            verb="GET",
            code=NO_ANSWER,
        )
        assert refused is not None and refused >= 1
        for cluster in ("edge", "spare"):
            assert value(samples, "flotilla_cluster_requests_in_flight", cluster=cluster) == 0


async def test_applications_say_phase_health_revision_and_canary(tmp_path: Path) -> None:
    async with hub(tmp_path) as h:
        samples = scrape(h.metrics)
        expected = {
            "shop": ("succeeded", "Healthy"),
            "gone": ("succeeded", "Missing"),  # its watch cache has no z
            "blog": ("failed", "Degraded"),
            "web": ("suspended", "Suspended"),
        }
        for app, (phase, health) in expected.items():
            phases = by(samples, "flotilla_application_phase", "phase", application=app)
            assert phases == {p.value: float(p.value == phase) for p in AppPhase}
            healths = by(samples, "flotilla_application_health", "health", application=app)
            assert healths == {h.value: float(h.value == health) for h in HealthStatus}, app
            assert value(samples, "flotilla_application_revision", application=app) == 1
        where = {"application": "web", "cluster": "edge", "component": "web"}
        assert value(samples, "flotilla_canary_step", **where) == 1
        assert value(samples, "flotilla_canary_weight_percent", **where) == 20
        assert [k for k in samples if k[0] == "flotilla_canary_step"] == [
            ("flotilla_canary_step", frozenset(where.items()))
        ]


async def test_health_is_what_status_rolls_up_when_the_caches_hold_every_object(
    tmp_path: Path,
) -> None:
    async with hub(tmp_path) as h:
        samples = scrape(h.metrics)
        apps = h.applications
        for app in ("shop", "gone", "blog", "web"):
            status = await apps.status(app)
            healths = by(samples, "flotilla_application_health", "health", application=app)
            assert healths[status["health"]] == 1, app


async def test_engine_counts_runners_and_restarts_by_kind(tmp_path: Path) -> None:
    async with hub(tmp_path) as h:
        deaths: list[int] = []

        async def forever() -> None:
            await asyncio.Event().wait()

        async def dies_once() -> None:
            if not deaths:
                deaths.append(1)
                raise RuntimeError("a bug")
            await forever()

        h.supervisor.spawn(RUNNER + "shop", dies_once)
        h.supervisor.spawn(RUNNER + "blog", forever)
        state = h.supervisor.state(RUNNER + "shop")
        assert await until(lambda: state is not None and state.restarts == 1 and state.running)
        samples = scrape(h.metrics)
        assert value(samples, "flotilla_workflow_runners") == 2
        restarts = by(samples, "flotilla_supervisor_restarts_total", "kind")
        assert restarts == {"probe": 0, "observe": 0, "workflow": 1}
        await h.supervisor.cancel(RUNNER + "shop")  # its state goes; the count stays
        assert value(scrape(h.metrics), "flotilla_workflow_runners") == 1
        assert value(scrape(h.metrics), "flotilla_supervisor_restarts_total", kind="workflow") == 1


async def test_labels_are_bounded_and_carry_no_object_name_url_or_secret(tmp_path: Path) -> None:
    async with hub(tmp_path) as h:
        h.metrics.deployed(h.applications.apps.targets("shop", 1)[0], 2.5)
        text = h.metrics.exposition().decode()
        hub_samples = [k for k in scrape(h.metrics) if k[0].startswith("flotilla_")]
        names = {name for labels in hub_samples for name, _ in labels[1]}
        assert names <= ALLOWED_LABELS
        values = {v for labels in hub_samples for _, v in labels[1]}
        assert not values & {*OBJECTS, "ns", "web-release", "Deployment"}
        assert not [v for v in values if "/" in v or ":" in v]
        assert "not-a-secret" not in text and DEAD not in text and "127.0.0.1" not in text
        for family in ("process_resident_memory_bytes", "python_info", "python_gc_objects"):
            assert family in text


async def test_deploys_and_transactions_are_measured_as_they_happen(tmp_path: Path) -> None:
    metrics = HubMetrics()
    store = SqliteStore(tmp_path / "db", timed=metrics.transaction)
    try:
        migrations = value(scrape(metrics), "flotilla_store_transaction_duration_seconds_count")
        assert migrations is not None and migrations >= 1
        store.add_cluster(ClusterRecord(name="a", server=DEAD, kubeconfig={}, credential="t"))
        count = value(scrape(metrics), "flotilla_store_transaction_duration_seconds_count")
        assert count == migrations + 1
    finally:
        store.close()
    target = TargetRecord(
        app="shop",
        revision=1,
        step="deploy",
        cluster="edge",
        component="web",
        namespace="ns",
        release="web",
        chart="web-1.0.0",
        spec=TargetSpec("k8s-objects"),
        phase=TargetPhase.HEALTHY,
    )
    metrics.deployed(target, 3.0)
    metrics.deployed(target, 42.0)
    samples = scrape(metrics)
    where = {"application": "shop"}
    assert value(samples, "flotilla_target_deploy_duration_seconds_count", **where) == 2
    assert value(samples, "flotilla_target_deploy_duration_seconds_sum", **where) == 45
    assert value(samples, "flotilla_target_deploy_duration_seconds_bucket", le="5.0", **where) == 1


def test_hubs_in_one_process_keep_their_own_series() -> None:
    first, second = HubMetrics(), HubMetrics()
    first.transaction(0.001)
    assert value(scrape(first), "flotilla_store_transaction_duration_seconds_count") == 1
    assert value(scrape(second), "flotilla_store_transaction_duration_seconds_count") == 0


async def test_garbage_collections_are_timed_by_generation_while_the_task_runs() -> None:
    metrics = HubMetrics()
    task = asyncio.create_task(metrics.gc.run())
    await asyncio.sleep(0)  # the task installs its callback
    gc.collect(2)
    samples = scrape(metrics)
    timed = value(samples, "flotilla_gc_pause_seconds_count", generation="2") or 0
    assert timed >= 1
    assert (value(samples, "flotilla_gc_pause_seconds_sum", generation="2") or 0) > 0
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gc.collect(2)  # no longer timed: the callback went with the task
    assert value(scrape(metrics), "flotilla_gc_pause_seconds_count", generation="2") == timed


@asynccontextmanager
async def slow_server(release: asyncio.Event) -> AsyncIterator[str]:
    """An API server whose /slow answers once `release` is set, and has no /missing."""

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/slow", slow)
    server = TestServer(app)
    await server.start_server()
    try:
        yield address(server)
    finally:
        release.set()
        await server.close()


async def test_a_client_counts_requests_in_flight_and_errors_by_verb_and_code() -> None:
    release = asyncio.Event()
    async with slow_server(release) as server:
        client = await ClusterClient.connect(kubeconfig(server))
        try:
            call = asyncio.create_task(client.request("GET", "/slow"))
            assert await until(lambda: client.stats.in_flight == 1)
            release.set()
            await call
            with pytest.raises(NotFound):
                await client.request("DELETE", "/missing")
            assert client.stats.in_flight == 0
            assert client.stats.requests == {"GET": 1, "DELETE": 1}
            assert client.stats.errors == {("DELETE", "404"): 1}
        finally:
            await client.close()
    refused = await ClusterClient.connect(kubeconfig(DEAD))
    try:
        with pytest.raises(Unreachable):
            await refused.request("PATCH", "/api/v1/namespaces/x")
        assert refused.stats.errors == {("PATCH", NO_ANSWER): 1}
        assert refused.stats.in_flight == 0
    finally:
        await refused.close()


async def test_metrics_need_the_token_on_the_api_and_stand_alone_without(tmp_path: Path) -> None:
    async with hub(tmp_path) as h:
        registry = h.applications.registry
        api = create_app(registry, h.applications, Scrubber(), TOKEN, h.metrics)
        async with TestClient(TestServer(api)) as client:
            assert (await client.get("/metrics")).status == 401
            wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
            assert wrong.status == 401
            given = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
            assert given.status == 200 and given.content_type == "text/plain"
            assert "flotilla_cluster_up" in await given.text()
        async with TestClient(TestServer(create_metrics_app(h.metrics, Scrubber()))) as client:
            alone = await client.get("/metrics")
            assert alone.status == 200 and "flotilla_application_phase" in await alone.text()
            for path in ("/api/v1/apps", "/api/v1/clusters", "/"):
                assert (await client.get(path)).status == 404
                assert (
                    await client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
                ).status == 404


@dataclass
class HeldShards:
    """A replica's shards as the metrics read them (hub.state.shards.Shards)."""

    held: frozenset[int] = frozenset()
    partitioned: bool = False

    def owned(self) -> frozenset[int]:
        return self.held


async def test_a_replica_says_the_shards_it_holds_and_when_its_store_is_cut_off(
    tmp_path: Path,
) -> None:
    async with hub(tmp_path) as h:
        alone = scrape(h.metrics)
        assert value(alone, "flotilla_replica_shards") is None, "a hub alone holds no shards"
        assert value(alone, "flotilla_replica_partitioned") is None
        shards = HeldShards(frozenset({0, 7, 31}))
        metrics = HubMetrics()
        metrics.read(h.applications, shards)
        samples = scrape(metrics)
        assert value(samples, "flotilla_replica_shards") == 3
        assert value(samples, "flotilla_replica_partitioned") == 0
        assert value(samples, "flotilla_cluster_up", cluster="edge") == 1, "and the rest"
        shards.held, shards.partitioned = frozenset({7}), True  # its Leases run out
        samples = scrape(metrics)
        assert value(samples, "flotilla_replica_shards") == 1
        assert value(samples, "flotilla_replica_partitioned") == 1
