"""`make bench` / `python -m bench`: the measurements of issues 7 and 16, side by side in one run.

1. fan-out: the chart to N = 1, 4, 16, 64 logical clusters, wall time to all applied and
   to all healthy, wall(N)/wall(1);
2. Helm: `helm upgrade --install` per cluster over the same 16, one at a time and
   8 at a time (`xargs -P 8`), against Flotilla's N = 16;
3. canary: resume of a step on 16 clusters, minus the slowest cluster's pod readiness;
4. status: `flotilla status -o json` on 64 clusters of 10 objects: latency, and the
   LIST requests the API servers got meanwhile;
5. the hub's memory, idle with 64 clusters and during the 64-cluster deploy;
6. the command line: `flotilla --help`, `ls`, `status -o json`, `cluster list` and
   `history` on the status application, beside `kubectl get nodes` (bench.cli; alone:
   `--only cli`);
7. members far away: sections 1 and 2 again through a delaying proxy per API server,
   with a ConfigMap-only chart as well, and the requests per target (bench.latency;
   alone: `--only latency`; `--rtt 0` skips it);
8. a thousand clusters: idle cost, reads and a ConfigMap deploy at `--scale` logical
   clusters (bench.scale; alone: `--only scale`; `--scale 0` skips it).

Runs take minutes and load both cores: everything is bounded, and everything started is
stopped at the end (`--keep` leaves the bench's clusters up for the next run).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, fields
from datetime import UTC, datetime
from typing import Any

from bench import cli, duplication, latency, scale, stores
from bench.fleet import POLL, STATE_DIR, BenchError, Fleet, Timing, phases, timed
from bench.helm import HelmRun, helm_loop
from bench.report import Figure, goal, percentile, print_figures, stamp, write
from e2e import clusters
from e2e.binaries import CONTROL_PLANE, ensure_built

SIZES = (1, 4, 16, 64)
# Deploys per fan-out size: single runs vary by a second (the deployer checks health
# once a second), which would make wall(N)/wall(1) a coin toss.
REPEATS = 3
HELM_SIZE = 16
CANARY_SIZE = 16
STATUS_CALLS = 50
# ~10 objects per cluster for status: the chart's 4 and this many ConfigMaps.
STATUS_CONFIG_MAPS = 6
# Let the hub settle (caches listed, first probes done) before reading its idle memory.
SETTLE = 10.0
# Replicas for the canary: step weights 20 and 50 then need 1 and 2 canary pods, so
# step 2 starts a pod of its own on every cluster.
CANARY_REPLICAS = 3
CANARY_STEPS = [{"weight": 20}, {"weight": 50}, {"weight": 100}]
# kruise's default gracePeriodSeconds, waited twice per step (pin, then move traffic).
CANARY_GRACE = 3.0
MIB = 1024 * 1024
# What the CPU floor divides by: every core of this machine.
CORES = os.cpu_count() or 1


async def fan_out(fleet: Fleet, sizes: list[int]) -> tuple[dict[int, Timing], list[Timing]]:
    """Each size deployed REPEATS times, each time as an application of its own; the
    median per size, and every run. The largest size's last application stays (for
    status), every other one is removed."""
    medians, runs = {}, []
    for size in sizes:
        timings = []
        for repeat in range(REPEATS):
            name = f"fan{size}-{repeat}"
            timings.append(await fleet.deploy(name, fleet.application(name, size)))
            if (size, repeat) != (max(sizes), REPEATS - 1):
                await fleet.delete(name)
                fleet.delete_namespaces(name, size)
        medians[size] = Timing(
            *(statistics.median(getattr(t, f.name) for t in timings) for f in fields(Timing))
        )
        runs += timings
        print(
            f"bench: fan-out N={size}: applied {medians[size].applied:.1f}s, "
            f"healthy {medians[size].healthy:.1f}s (median of {REPEATS})",
            flush=True,
        )
    return medians, runs


async def unwatched_cost(fleet: Fleet, size: int, seen: duplication.Counter) -> float:
    """The hub CPU seconds of REPEATS more deploys of `size`, each watched by no status
    read and removed before the next: their median. `seen` counts the deploys' events."""
    used = []
    for repeat in range(REPEATS):
        name = f"fan{size}-unwatched-{repeat}"
        with seen.counting():
            used.append(await fleet.deploy_unwatched(name, fleet.application(name, size)))
        await fleet.delete(name)
        fleet.delete_namespaces(name, size)
        await fleet.until_namespaces_gone()
    median = statistics.median(used)
    print(f"bench: fan-out N={size} unwatched: hub CPU {median:.2f}s (median of {REPEATS})")
    return median


def helm_loops(fleet: Fleet) -> dict[str, HelmRun]:
    slots = fleet.slots[:HELM_SIZE]
    workdir = STATE_DIR / "helm"
    loops = {}
    for label, parallel, wait in (
        ("sequential", 1, False),
        ("8-way", 8, False),
        ("sequential --wait", 1, True),
        ("8-way --wait", 8, True),
    ):
        prefix = "helm-" + label.replace(" --", "-").replace("-way", "p")
        loops[label] = helm_loop(
            slots, fleet.repo.url, parallel=parallel, wait=wait, prefix=prefix, workdir=workdir
        )
        print(f"bench: helm {label} x{HELM_SIZE}: {loops[label].seconds:.1f}s", flush=True)
        for slot in slots:
            clusters.delete_namespace(f"{prefix}-s{slot.index}", [slot.info])
    return loops


async def status_at_scale(fleet: Fleet, app: str, size: int) -> dict[str, Any]:
    """Status calls on the fan-out's largest application, grown to ~10 objects a cluster:
    through the API (what the hub answers) and the CLI (plus a Python process start)."""
    text = fleet.application(app, size, config_maps=STATUS_CONFIG_MAPS)
    await fleet.deploy(app, text)
    status = await fleet.status(app)
    objects = sum(
        len(r["objects"]) for s in status["steps"] for c in s["clusters"] for r in c["releases"]
    )
    await fleet.until_namespaces_gone()
    before = fleet.requests()
    api = [await timed(fleet.status(app)) for _ in range(STATUS_CALLS)]
    cli = [_timed_cli(fleet, app) for _ in range(STATUS_CALLS)]
    after = fleet.requests()
    return {
        "clusters": size,
        "objects": objects,
        "api_seconds": api,
        "cli_seconds": cli,
        "requests": {key: after[key] - before[key] for key in sorted(after)},
    }


def _timed_cli(fleet: Fleet, app: str) -> float:
    started = time.perf_counter()
    result = fleet.hub.cli("status", app, "-o", "json")
    elapsed = time.perf_counter() - started
    if result.code != 0:
        raise BenchError(f"flotilla status failed: {result.stderr}")
    return elapsed


async def canary_step(fleet: Fleet) -> dict[str, Any]:
    """Resume a canary paused at step 1 on 16 clusters; seconds until step 2 is ready
    everywhere, and the slowest cluster's own pod readiness. Skipped (with the reason)
    when this hub's `up` of a new chart version does not stop at a canary step."""
    name = "canary"
    values = {"replicaCount": CANARY_REPLICAS}
    traits = [
        {
            "type": "kruise-rollout",
            "properties": {
                "canary": {"steps": CANARY_STEPS, "trafficRoutings": [{"type": "nginx"}]}
            },
        }
    ]

    def text(version: str) -> str:
        return fleet.application(name, CANARY_SIZE, version=version, values=values, traits=traits)

    await fleet.deploy(name, text("1.0.0"))
    await fleet.up(name, text("2.0.0"))
    status = await _until_settled(fleet, name)
    if status["phase"] != "suspended" or "paused" not in phases(status):
        return {"skipped": f"`up` of 2.0.0 ended {status['phase']!r}, not paused at a canary step"}
    before = fleet.requests()
    resumed_at = time.time()
    started = time.monotonic()
    await fleet.api.call("POST", f"/api/v1/apps/{name}/workflow/resume")
    await fleet.until_phase(name, "suspended")
    total = time.monotonic() - started
    after = fleet.requests()
    readiness = [
        _pod_readiness(fleet, slot.index, name, resumed_at) for slot in fleet.slots[:CANARY_SIZE]
    ]
    await fleet.delete(name)
    fleet.delete_namespaces(name, CANARY_SIZE)
    return {
        "seconds": total,
        "slowest_pod_readiness": max(readiness),
        "readiness": readiness,
        "gets": after["GET"] - before["GET"],
    }


async def _until_settled(fleet: Fleet, name: str) -> dict[str, Any]:
    """The status once the revision stops moving: suspended, succeeded or failed."""
    deadline = time.monotonic() + 300
    while True:
        status = await fleet.status(name)
        if status["phase"] != "running" or time.monotonic() > deadline:
            return status
        await asyncio.sleep(0.2)


def _pod_readiness(fleet: Fleet, slot: int, app: str, since: float) -> float:
    """Seconds from creation to Ready of the canary pods created after `since` on one
    logical cluster (the API server's timestamps: whole seconds)."""
    info = fleet.slots[slot].info
    pods = clusters.admin_api(info).get(
        f"/api/v1/namespaces/{fleet.slots[slot].namespace(app)}/pods"
        "?labelSelector=flotilla.dev/canary"
    )["items"]
    spans = []
    for pod in pods:
        created = _epoch(pod["metadata"]["creationTimestamp"])
        ready = [
            c
            for c in pod["status"].get("conditions", [])
            if c["type"] == "Ready" and c["status"] == "True"
        ]
        if created >= math.floor(since) and ready:
            spans.append(_epoch(ready[0]["lastTransitionTime"]) - created)
    return max(spans, default=0.0)


def _epoch(timestamp: str) -> float:
    return datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def figures(
    servers: int,
    timings: dict[int, Timing],
    helm: dict[str, HelmRun],
    unwatched: float,
    duplicated: duplication.Duplication,
    canary: dict[str, Any],
    status: dict[str, Any],
    memory: dict[str, int],
) -> list[Figure]:
    out: list[Figure] = []
    fan = f"1. fan-out deploy (seconds from `up`, median of {REPEATS})"
    base = timings[min(timings)]
    for size, timing in sorted(timings.items()):
        out.append(
            Figure(
                fan,
                f"N={size}: all applied / all healthy",
                timing.applied,
                "s",
                note=f"healthy {timing.healthy:.2f} s; CPU s: hub {timing.hub_cpu:.2f}, "
                f"clusters {timing.clusters_cpu:.1f}; {timing.gets:.0f} GETs",
            )
        )
    largest = max(timings)
    out.append(
        goal(
            fan,
            f"wall({largest})/wall(1), all healthy",
            timings[largest].healthy / base.healthy,
            "x",
            at_most=1.5,
        )
    )
    out.append(
        Figure(
            fan,
            f"wall({largest})/wall(1), all applied",
            timings[largest].applied / base.applied,
            "x",
        )
    )
    versus = f"2. Flotilla vs Helm on {HELM_SIZE} clusters (Helm's time / Flotilla's)"
    ours = timings.get(HELM_SIZE)
    if ours is not None:
        out.append(
            goal(
                versus,
                "8-way `helm --wait` / Flotilla to healthy",
                helm["8-way --wait"].seconds / ours.healthy,
                "x",
                at_least=5,
            )
        )
        out.append(
            Figure(
                versus,
                "sequential `helm --wait` / Flotilla to healthy",
                helm["sequential --wait"].seconds / ours.healthy,
                "x",
            )
        )
        out.append(
            Figure(
                versus,
                "8-way `helm` / Flotilla to applied",
                helm["8-way"].seconds / ours.applied,
                "x",
            )
        )
        out.append(
            Figure(
                versus,
                "sequential `helm` / Flotilla to applied",
                helm["sequential"].seconds / ours.applied,
                "x",
            )
        )
    out += cost(timings, helm, unwatched, duplicated)
    step = f"3. canary step resume on {CANARY_SIZE} clusters"
    if "skipped" in canary:
        out.append(
            Figure(
                step,
                "resume to step 2 ready, minus slowest pod readiness",
                None,
                "s",
                note=f"skipped: {canary['skipped']}",
            )
        )
    else:
        floor = 2 * CANARY_GRACE + canary["slowest_pod_readiness"]
        out.append(Figure(step, "resume to step 2 ready everywhere", canary["seconds"], "s"))
        out.append(
            goal(
                step,
                "  minus its floor (2 grace periods + slowest pod readiness)",
                canary["seconds"] - floor,
                "s",
                at_most=1.0,
                note=f"floor {floor:.0f} s; pod readiness in whole seconds",
            )
        )
        if "gets" in canary:
            out.append(
                goal(
                    step,
                    "GETs of watched kinds during the step",
                    canary["gets"],
                    "",
                    at_most=0,
                    note="the waits read the watch caches",
                )
            )
    at_scale = (
        f"4. status of {status['clusters']} clusters, {status['objects']} objects "
        f"({STATUS_CALLS} calls each way)"
    )
    api, cli = status["api_seconds"], status["cli_seconds"]
    out.append(Figure(at_scale, "API median", statistics.median(api) * 1000, "ms"))
    out.append(goal(at_scale, "API p95", percentile(api, 0.95) * 1000, "ms", at_most=100))
    out.append(
        Figure(
            at_scale,
            "CLI `flotilla status -o json` median",
            statistics.median(cli) * 1000,
            "ms",
            note="includes a Python start",
        )
    )
    out.append(Figure(at_scale, "CLI p95", percentile(cli, 0.95) * 1000, "ms"))
    calls = 2 * STATUS_CALLS
    requests = status["requests"]
    # kube-apiserver lists every Service itself every 3 minutes (its ClusterIP and
    # NodePort repair loops), hub or no hub: those LISTs are not the status path's.
    services = requests.get("LIST/cluster/services", 0)
    lists = requests.get("LIST", 0) - services
    out.append(
        goal(
            at_scale,
            "LIST requests per status call",
            lists / calls,
            "",
            at_most=0,
            note=f"{requests.get('LIST', 0)} LISTs during the calls, "
            f"{services} of them the API servers' own Service repair",
        )
    )
    out.append(
        Figure(
            at_scale,
            "GET requests (watched kinds) per status call",
            requests.get("GET", 0) / calls,
            "",
        )
    )
    rss = f"5. hub memory (RSS), {largest} clusters on {servers} API servers"
    empty = memory["empty"]
    out.append(Figure(rss, "hub started, no cluster joined", empty / MIB, "MiB"))
    for label, key in (
        ("idle, nothing deployed", "idle"),
        (f"peak during the {largest}-cluster deploy", "deploy"),
        ("idle, with the status application deployed", "after"),
    ):
        out.append(
            Figure(
                rss,
                label,
                memory[key] / MIB,
                "MiB",
                note=f"{(memory[key] - empty) / MIB / largest:.2f} MiB per cluster above that",
            )
        )
    return out


def cost(
    timings: dict[int, Timing],
    helm: dict[str, HelmRun],
    unwatched: float,
    duplicated: duplication.Duplication,
) -> list[Figure]:
    """What a delivered release costs: the hub's CPU (`unwatched`: of a deploy of the
    largest size that no status read watched; `duplicated`: the part of it the bench's
    sharing of API servers adds), all CPU (hub and clusters) beside Helm's (its
    processes and the clusters during its loop), and the wall time against the machine's
    floor (all CPU used over the cores there are)."""
    section = "2b. CPU per delivered release"
    out: list[Figure] = []
    largest = max(timings)
    top = timings[largest]
    out.append(
        goal(
            section,
            f"hub CPU per release, N={largest}",
            unwatched / largest * 1000,
            "ms",
            at_most=10,
            note=f"median of {REPEATS}; each one's end awaited on the event stream, no status"
            " read meanwhile",
        )
    )
    per_release = unwatched / largest
    out.append(
        Figure(
            section,
            "  of which the bench's shared API servers' duplicate watching",
            duplicated.per_release * 1000,
            "ms",
            note=f"{duplicated.events_per_release:.1f} events per release, read by "
            f"{duplicated.caches_per_server - 1} other caches of its server at "
            f"{duplicated.cpu_per_event * 1e6:.0f} us each ({duplicated.event_bytes} B events)",
        )
    )
    out.append(
        Figure(
            section,
            "  less that: a fleet of separate clusters",
            (per_release - duplicated.per_release) * 1000,
            "ms",
            note="what the goal means for users; the goal is judged on the figure as measured",
        )
    )
    out.append(
        Figure(
            section,
            f"  with a status read every {POLL} s",
            top.hub_cpu / largest * 1000,
            "ms",
            note="as `up --wait` watches it, twice as often",
        )
    )
    floor = (top.hub_cpu + top.clusters_cpu) / CORES
    out.append(
        goal(
            section,
            f"wall / CPU floor, N={largest} to healthy",
            top.healthy / floor,
            "x",
            at_most=1.1,
            note=f"floor {floor:.1f} s = {top.hub_cpu + top.clusters_cpu:.1f} CPU s / {CORES}",
        )
    )
    ours = timings.get(HELM_SIZE)
    if ours is None or "8-way --wait" not in helm:
        return out
    flotilla = (ours.hub_cpu + ours.clusters_cpu) / HELM_SIZE
    theirs = helm["8-way --wait"].cpu / HELM_SIZE
    out.append(
        Figure(section, f"Flotilla total CPU per release, N={HELM_SIZE}", flotilla * 1000, "ms")
    )
    out.append(
        Figure(
            section,
            f"8-way `helm --wait` total CPU per release, N={HELM_SIZE}",
            theirs * 1000,
            "ms",
        )
    )
    out.append(goal(section, "Flotilla's total / Helm's", flotilla / theirs, "x", at_most=0.5))
    return out


async def run(args: argparse.Namespace) -> None:
    sizes = sorted(set(args.sizes))
    largest = max(sizes)
    ensure_built((*CONTROL_PLANE, "helm"))
    print(f"bench: {args.servers} API servers, {largest} logical clusters", flush=True)
    fleet = Fleet.start(args.servers, largest)
    far_away: dict[str, Any] | None = None
    thousand: dict[str, Any] | None = None
    try:
        memory = {"empty": fleet.rss()}
        await fleet.join()
        await asyncio.sleep(SETTLE)
        memory["idle"] = fleet.rss()
        timings, runs = await fan_out(fleet, sizes)
        memory["deploy"] = timings[largest].peak_rss
        async with duplication.counter(fleet) as seen:
            # The fleet has `largest` slots: each unwatched deploy is to all of them.
            unwatched = await unwatched_cost(fleet, largest, seen)
            duplicated = await duplication.measure(fleet, seen, REPEATS)
        helm = helm_loops(fleet) if largest >= HELM_SIZE else {}
        kept = f"fan{largest}-{REPEATS - 1}"
        status = await status_at_scale(fleet, kept, largest)
        cli_runs = cli.timings(fleet, kept)
        await asyncio.sleep(SETTLE)
        memory["after"] = fleet.rss()
        canary = (
            await canary_step(fleet) if largest >= CANARY_SIZE else {"skipped": "too few clusters"}
        )
        fleet.close(keep_clusters=True)
        if args.rtt:
            # The same API servers, a fresh hub that reaches them through the proxies.
            fleet = Fleet.start(args.servers, largest, rtt=args.rtt)
            await fleet.join()
            far_away = await latency.measure(fleet, sizes)
        if args.scale:
            fleet.close(keep_clusters=True)
            fleet = Fleet.start(args.servers, args.scale)
            # The status application's objects (some 640, its pods running) are still on
            # the API servers, where each of a thousand caches would list them and count
            # them as what an idle cluster costs (0.5 MiB of 1.17 per cluster). Not removed
            # earlier: removed just before the far-away section, they made its 64-cluster
            # deploy take 4.2 s in a full run, against 2.0 s alone.
            fleet.delete_namespaces(kept, largest)
            await fleet.until_namespaces_gone()
            thousand = await scale.measure(fleet)
    finally:
        fleet.close(keep_clusters=args.keep)
    results = figures(args.servers, timings, helm, unwatched, duplicated, canary, status, memory)
    results += cli.figures(fleet, kept, cli_runs)
    if far_away is not None:
        results += latency.figures(args.rtt, far_away)
    if thousand is not None:
        results += scale.figures(thousand)
    print_figures(results)
    raw = {
        "servers": args.servers,
        "clusters": largest,
        "timings": {n: asdict(t) for n, t in timings.items()},
        "unwatched_hub_cpu": unwatched,
        "duplication": asdict(duplicated) | {"per_release": duplicated.per_release},
        "runs": [asdict(t) for t in runs],
        "helm": {label: asdict(loop) for label, loop in helm.items()},
        "canary": canary,
        "status": status,
        "memory": memory,
        "cli": cli_runs,
        "rtt": args.rtt,
        "far": far_away,
        "scale": thousand,
    }
    curve = {n: (t.applied, t.healthy) for n, t in timings.items()}
    far_curve = None if far_away is None else (args.rtt, latency.curve(far_away))
    seconds = {label: loop.seconds for label, loop in helm.items()}
    json_path, png_path = write(stamp(), results, raw, curve, seconds, far_curve)
    print(f"\nbench: wrote {json_path} and {png_path}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=4, help="real API servers to start")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="fan-out sizes")
    parser.add_argument("--keep", action="store_true", help="leave the bench's clusters running")
    parser.add_argument(
        "--rtt",
        type=float,
        default=latency.RTT,
        help="round trip (seconds) of the far-away members' section; 0 skips it (bench.latency)",
    )
    parser.add_argument(
        "--scale",
        type=int,
        default=scale.SCALE,
        help="logical clusters of the thousand-clusters section; 0 skips it (bench.scale)",
    )
    parser.add_argument(
        "--only",
        choices=["cli", "latency", "scale", "stores"],
        help="one section alone, on a fleet of its own "
        "(bench.cli, bench.latency, bench.scale, bench.stores)",
    )
    args = parser.parse_args(argv)
    alone = {
        "cli": cli.alone,
        "latency": latency.alone,
        "scale": scale.alone,
        "stores": stores.alone,
    }
    try:
        asyncio.run(alone[args.only](args) if args.only else run(args))
    except BenchError as e:
        sys.exit(f"bench: {e}")
    except subprocess.CalledProcessError as e:
        sys.exit(f"bench: {e}")
