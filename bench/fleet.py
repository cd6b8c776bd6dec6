"""The benchmark's fleet: local API servers of its own, many logical member clusters on
each, a chart repository and a hub; everything started here is stopped by `close`.

A 2-core machine cannot run 64 API servers, so each real API server stands behind
several logical clusters: its kubeconfig joined under different names (`bench-<slot>`,
labels `slot=<slot>` and `bench=yes`). Every application the benchmark writes gives each
logical cluster a topology policy of its own whose namespace is `<app>-s<slot>`, so no
two logical clusters deploy into the same namespace. The clusters live in their own
state directory (`.e2e-bench/`), never in the `.e2e/` that tests share.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import json
import os
import re
import time
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import yaml
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from e2e import clusters, kubeconfigs
from e2e.chartrepo import ChartRepo, start_chart_repo
from e2e.clusters import ClusterInfo
from e2e.faultproxy import FaultProxy
from e2e.hubproc import HubProcess
from hub.cli.client import HubClient
from hub.home import Home
from hub.model.phases import Outcome

REPO = Path(__file__).resolve().parents[1]
STATE_DIR = REPO / ".e2e-bench"
CHART = "canary-demo"
# One pod per release: 64 releases must run beside their API servers on two cores.
VALUES: dict[str, Any] = {"replicaCount": 1}
# Seconds between status reads while a deploy runs: the resolution of the deploy times.
POLL = 0.2
# A deploy of the benchmark's size that takes longer is broken, not slow.
DEPLOY_TIMEOUT = 600.0
# Joins in flight: each one probes its cluster (a handful of requests).
JOINS_AT_ONCE = 8
# Target phases after the apply: waiting for health, done, or held by a canary step.
APPLIED = frozenset({"waiting", "healthy", "paused"})
# The resources the hub's watch caches cover (hub.fleet.observer): LISTs or GETs of these
# during status calls would be the hub asking the clusters.
WATCHED_RESOURCES = frozenset(
    {
        "deployments",
        "statefulsets",
        "daemonsets",
        "services",
        "ingresses",
        "configmaps",
        "jobs",
        "persistentvolumeclaims",
        "httproutes",
    }
)
REQUESTS_SAMPLE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
LABEL = re.compile(r'(\w+)="([^"]*)"')


class BenchError(Exception):
    """A step of the benchmark could not be carried out (not a slow figure)."""


@dataclass(frozen=True)
class Slot:
    """One logical member cluster and the real cluster behind it."""

    index: int
    info: ClusterInfo

    @property
    def name(self) -> str:
        return f"bench-{self.index}"

    def namespace(self, app: str) -> str:
        return f"{app}-s{self.index}"


@dataclass(frozen=True)
class Timing:
    """One deploy: seconds from `up` to every target applied and to all healthy, the
    CPU seconds the hub and the clusters (etcd, API servers, controller managers,
    simulated nodes) used meanwhile, the GETs of watched kinds the API servers answered
    (the deployer's health checks), the hub's largest resident memory, and the part of
    `hub_cpu` that went to answering the bench's own status reads (summed over each
    read; they come every POLL, as a watching user's would, and deliver nothing)."""

    applied: float
    healthy: float
    hub_cpu: float
    clusters_cpu: float
    gets: int
    peak_rss: int


class Fleet:
    def __init__(
        self,
        infos: list[ClusterInfo],
        repo: ChartRepo,
        hub: HubProcess,
        size: int,
        proxies: Sequence[FaultProxy] = (),
    ):
        """`infos` are the real API servers (the bench reads their metrics directly);
        with `proxies` (one per server, in order) every slot reaches its server, and
        the hub and Helm reach every slot, through its proxy."""
        self.infos = infos
        self.repo = repo
        self.hub = hub
        self.proxies = list(proxies)
        reached = (
            [_through(info, p) for info, p in zip(infos, proxies, strict=True)]
            if proxies
            else infos
        )
        self.slots = [Slot(i, reached[i % len(reached)]) for i in range(size)]
        self.url, self._token = Home(hub.home).locate()
        self.api = HubClient(self.url, self._token)
        self.pid = int(json.loads((hub.home / "hub.json").read_text())["pid"])

    @classmethod
    def start(
        cls, servers: int, size: int, *, rtt: float = 0.0, serve_args: tuple[str, ...] = ()
    ) -> Fleet:
        """Bring up `servers` API servers (or reuse the bench's running ones), a chart
        repository and a fresh hub (`flotilla serve` with `serve_args` besides the
        bench's own); nothing joined yet. With `rtt` (seconds), the members are that far
        away: a delaying proxy (e2e.faultproxy) in front of each API server holds every
        chunk rtt/2 each way, so every request, TLS handshake and watch event pays the
        round trip."""
        os.environ["FLOTILLA_E2E_DIR"] = str(STATE_DIR)
        infos = clusters.up(servers)
        proxies = [FaultProxy(int(info.server.rpartition(":")[2])) for info in infos] if rtt else []
        for proxy in proxies:
            proxy.delay = rtt / 2
            proxy.start()
        repo = start_chart_repo()
        home = STATE_DIR / f"hub-{time.strftime('%Y%m%d-%H%M%S')}{'-far' if rtt else ''}"
        # The production defaults: a probe every 5 s, and no debug log in the hot path.
        hub = HubProcess(home, probe_interval=5.0, log_level="info", serve_args=serve_args)
        try:
            hub.start()
        except BaseException:
            repo.stop()
            for proxy in proxies:
                proxy.stop()
            raise
        return cls(infos, repo, hub, size, proxies)

    def close(self, *, keep_clusters: bool) -> None:
        if self.hub.running:
            self.hub.stop()
        self.repo.stop()
        for proxy in self.proxies:
            proxy.stop()
        if not keep_clusters:
            if clusters.state_dir() != STATE_DIR.resolve():
                raise BenchError(f"refusing to stop clusters of {clusters.state_dir()}")
            clusters.down()

    async def join(self) -> None:
        bound = asyncio.Semaphore(JOINS_AT_ONCE)

        async def join_one(slot: Slot) -> None:
            body = {
                "kubeconfig": yaml.safe_load(slot.info.kubeconfig.read_text()),
                "source": str(slot.info.kubeconfig),
                "name": slot.name,
                "labels": {"slot": str(slot.index), "bench": "yes"},
            }
            async with bound:
                await self.api.call("POST", "/api/v1/clusters", body)

        await asyncio.gather(*(join_one(s) for s in self.slots))

    def application(
        self,
        name: str,
        size: int,
        *,
        chart: str = CHART,
        version: str = "1.0.0",
        values: dict[str, Any] | None = None,
        traits: list[dict[str, Any]] | None = None,
        config_maps: int = 0,
    ) -> str:
        """`chart` on the first `size` logical clusters, each in its own namespace, all
        in one deploy step that works on every cluster at once; `config_maps` adds a
        component of that many ConfigMaps (objects without pods, for status)."""
        slots = self.slots[:size]
        component: dict[str, Any] = {
            "name": chart,
            "type": "helm",
            "properties": {
                "repoType": "helm",
                "url": self.repo.url,
                "chart": chart,
                "version": version,
                "values": VALUES if values is None else values,
            },
        }
        if traits:
            component["traits"] = traits
        components = [component]
        if config_maps:
            objects = [
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": f"settings-{i}"},
                    "data": {"index": str(i)},
                }
                for i in range(config_maps)
            ]
            components.append(
                {"name": "settings", "type": "k8s-objects", "properties": {"objects": objects}}
            )
        policies = [
            {
                "name": f"slot-{s.index}",
                "type": "topology",
                "properties": {"clusters": [s.name], "namespace": s.namespace(name)},
            }
            for s in slots
        ]
        step = {
            "name": "deploy",
            "type": "deploy",
            "properties": {"policies": [p["name"] for p in policies], "parallelism": size},
        }
        document = {
            "apiVersion": "core.oam.dev/v1beta1",
            "kind": "Application",
            "metadata": {"name": name},
            "spec": {
                "components": components,
                "policies": policies,
                "workflow": {"steps": [step]},
            },
        }
        return yaml.safe_dump(document, sort_keys=False)

    async def up(self, name: str, text: str) -> float:
        """`flotilla up` through the API (the CLI's own call): when it was accepted."""
        started = time.monotonic()
        await self.api.call("POST", "/api/v1/apps", {"text": text, "source": f"bench {name}"})
        return started

    async def status(self, name: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self.api.call("GET", f"/api/v1/apps/{name}")
        return answer

    async def deploy(self, name: str, text: str) -> Timing:
        """Up, then read status until the revision succeeded."""
        cpu, their_cpu, gets = self.cpu(), clusters_cpu(), self.requests()["GET"]
        started = await self.up(name, text)
        applied, peak = None, self.rss()
        while True:
            status = await self.status(name)
            elapsed = time.monotonic() - started
            peak = max(peak, self.rss())
            if applied is None and all(p in APPLIED for p in phases(status)):
                applied = elapsed
            if status["phase"] == "succeeded":
                used, theirs = self.cpu() - cpu, clusters_cpu() - their_cpu
                asked = self.requests()["GET"] - gets
                return Timing(applied or elapsed, elapsed, used, theirs, asked, peak)
            if status["phase"] == "failed" or elapsed > DEPLOY_TIMEOUT:
                raise BenchError(f"{name}: {status['phase']} after {elapsed:.0f}s: {status}")
            await asyncio.sleep(POLL)

    async def deploy_unwatched(self, name: str, text: str) -> float:
        """Up, then wait for the revision's end on the hub's event stream, reading no
        status meanwhile: the hub CPU seconds of the deploy alone. `deploy`'s include
        answering its status reads, which at N = 64 and a read every POLL were a third of
        them, and which cannot be told apart: the hub does everything on one loop, so the
        CPU spent around a read is also the deploy's."""
        cpu = self.cpu()
        answer = await self.api.call("POST", "/api/v1/apps", {"text": text, "source": "bench"})
        succeeded = f"revision {answer['revision']} {Outcome.SUCCEEDED}"
        ends = {f"revision {answer['revision']} {o}" for o in Outcome if o != Outcome.RUNNING}
        path = f"/api/v1/events/stream?app={name}"

        def until_ended() -> str:
            for event in self.api.lines(path):
                if event.get("message") in ends:
                    return str(event["message"])
            raise BenchError(f"{name}: the hub ended its event stream")

        async with asyncio.timeout(DEPLOY_TIMEOUT):
            message = await asyncio.to_thread(until_ended)
        if message != succeeded:
            raise BenchError(f"{name}: {message}")
        return self.cpu() - cpu

    async def until_phase(self, name: str, wanted: str) -> dict[str, Any]:
        """Read status until the application's phase is `wanted`; its status then."""
        deadline = time.monotonic() + DEPLOY_TIMEOUT
        while True:
            status = await self.status(name)
            if status["phase"] == wanted:
                return status
            if status["phase"] == "failed" or time.monotonic() > deadline:
                raise BenchError(f"{name}: {status['phase']}, not {wanted}: {status['message']}")
            await asyncio.sleep(POLL)

    async def delete(self, name: str) -> None:
        await self.api.call("DELETE", f"/api/v1/apps/{name}")

    def delete_namespaces(self, app: str, size: int) -> None:
        """Drop what a run left behind (its pods keep the simulated kubelets busy)."""
        for slot in self.slots[:size]:
            clusters.delete_namespace(slot.namespace(app), [slot.info])

    async def until_namespaces_gone(self) -> None:
        """Wait until no namespace is being deleted: the namespace controller LISTs every
        kind in a terminating namespace, which must not count as the hub's requests."""
        deadline = time.monotonic() + DEPLOY_TIMEOUT
        while any(_terminating(info) for info in self.infos):
            if time.monotonic() > deadline:
                raise BenchError("namespaces still terminating after the deploy timeout")
            await asyncio.sleep(1.0)

    def hub_requests(self) -> Counter[str]:
        """Requests the hub has sent to member clusters so far, by verb (WATCH for a
        stream) and in `all`: its own count (`flotilla_cluster_requests_total` on its
        /metrics), without the API servers' other clients (controllers, the nodes)."""
        return _hub_requests_of(self.hub_metrics())

    def full_collections(self) -> tuple[int, float]:
        """The hub's full (generation 2) garbage collections so far, and the seconds they
        held it (`flotilla_gc_pause_seconds`)."""
        count, seconds = 0, 0.0
        for sample in _samples(self.hub_metrics(), "flotilla_gc_pause_seconds"):
            if sample.labels.get("generation") == "2":
                if sample.name.endswith("_count"):
                    count = int(sample.value)
                elif sample.name.endswith("_sum"):
                    seconds = sample.value
        return count, seconds

    def hub_metrics(self) -> str:
        """The hub's /metrics as it stands (Prometheus' text format)."""
        request = urllib.request.Request(
            f"{self.url}/metrics", headers={"Authorization": f"Bearer {self._token}"}
        )
        with urllib.request.urlopen(request, timeout=DEPLOY_TIMEOUT) as answer:
            return str(answer.read().decode())

    def cpu(self) -> float:
        """CPU seconds the hub has used so far."""
        times = psutil.Process(self.pid).cpu_times()
        return float(times.user + times.system)

    def rss(self) -> int:
        """The hub's resident memory, bytes."""
        return int(psutil.Process(self.pid).memory_info().rss)

    def requests(self) -> Counter[str]:
        """Requests for the watched resources every API server has answered, by verb, by
        `verb/scope` (the hub's caches LIST cluster-wide; its GETs are per object) and by
        `verb/scope/resource`."""
        counts: Counter[str] = Counter()
        for info in self.infos:
            metrics = clusters.admin_api(info).get("/metrics")
            for line in str(metrics).splitlines():
                match = REQUESTS_SAMPLE.match(line)
                if match is None:
                    continue
                labels = dict(LABEL.findall(match["labels"]))
                if labels.get("resource") in WATCHED_RESOURCES:
                    value = int(float(match["value"]))
                    counts[labels.get("verb", "")] += value
                    counts[f"{labels.get('verb')}/{labels.get('scope')}"] += value
                    counts[f"{labels.get('verb')}/{labels.get('scope')}/{labels['resource']}"] += (
                        value
                    )
        return counts


async def timed(call: Awaitable[Any]) -> float:
    """Seconds until `call` (a request to the hub, say) is answered and its answer read,
    with the bench's own garbage collector held off meanwhile: reading the status of an
    application on a thousand clusters (a megabyte of JSON, some 100,000 objects) set off
    a collection of the bench's whole heap about every ninth call, 30 to 50 ms of the
    bench's own that showed as the tail of the hub's answers. The answers hold no cycles,
    so they are freed as they go without it."""
    gc.disable()
    try:
        started = time.perf_counter()
        await call
        return time.perf_counter() - started
    finally:
        gc.enable()


def by_verb(asked: Mapping[str, float], per: float = 1.0) -> str:
    """The hub's requests (`Fleet.hub_requests`, or a rate of them) by verb, the most
    asked first, each divided by `per` (the targets of a deploy, say)."""
    verbs = sorted((v for v in asked if v != "all" and asked[v]), key=asked.__getitem__)
    return ", ".join(f"{verb} {asked[verb] / per:.1f}" for verb in reversed(verbs))


def _hub_requests_of(text: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for sample in _samples(text, "flotilla_cluster_requests"):
        if sample.name.endswith("_total"):
            counts[sample.labels["verb"]] += int(sample.value)
            counts["all"] += int(sample.value)
    return counts


def _samples(text: str, family: str) -> Iterator[Sample]:
    """The samples of one metric family of a /metrics text."""
    for found in text_string_to_metric_families(text):
        if found.name == family:
            yield from found.samples


def _through(info: ClusterInfo, proxy: FaultProxy) -> ClusterInfo:
    """`info` as reached through `proxy`: its admin kubeconfig pointed at the proxy."""
    path = STATE_DIR / f"far-{info.name}.kubeconfig"
    far = kubeconfigs.derive(info.kubeconfig, path, server=proxy.url)
    return dataclasses.replace(info, server=proxy.url, kubeconfig=far)


def clusters_cpu() -> float:
    """CPU seconds the bench's cluster processes have used so far."""
    total = 0.0
    for process in clusters.status():
        if process.pid is not None:
            with contextlib.suppress(psutil.Error):
                times = psutil.Process(process.pid).cpu_times()
                total += times.user + times.system
    return total


def _terminating(info: ClusterInfo) -> bool:
    listed = clusters.admin_api(info).get("/api/v1/namespaces")
    return any(ns.get("status", {}).get("phase") == "Terminating" for ns in listed["items"])


def phases(status: dict[str, Any]) -> list[str]:
    """The phase of every target of the current revision."""
    return [
        release["phase"]
        for step in status["steps"]
        for cluster in step["clusters"]
        for release in cluster["releases"]
    ]
