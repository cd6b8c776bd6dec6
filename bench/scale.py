"""A thousand clusters (issue 16 §4): what the hub costs, idle and deploying, at `--scale`.

`--scale` logical clusters (1,000 by default) are joined onto the bench's API servers,
as every section does, and then:
- idle: the hub's RSS (and per cluster), its CPU over IDLE seconds as a share of one
  core, and the requests per second it sends the API servers meanwhile (its own count,
  `flotilla_cluster_requests_total`: probes, and the watches' reconnects if any);
- reads: `cluster list` and, once the deploy is done, `status` of the application on
  every cluster, through the API, CALLS calls each (p50 and p95);
- the deploy: the ConfigMap chart to every cluster at once, wall time to all healthy, hub
  CPU and peak RSS (the bound on memory is that peak, given per target).

Idle CPU and requests are measured after SETTLE, once every cluster's cache has listed
and its first probes are done, so that the join's own work is not counted.

    python -m bench --only scale [--scale 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from bench.fleet import Fleet, by_verb, timed
from bench.latency import CONFIG_CHART
from bench.report import Figure, goal, percentile, print_figures, stamp, write_json
from e2e.binaries import CONTROL_PLANE, ensure_built

SCALE = 1000
SECTION = "8. a thousand clusters"
# Seconds the idle hub is watched for its CPU and its requests.
IDLE = 60.0
# Seconds after the joins before the idle measurement: caches list, first probes answer.
SETTLE = 30.0
# Reads of each kind timed through the API.
CALLS = 30
MIB = 1024 * 1024
APP = "scale"


async def measure(fleet: Fleet) -> dict[str, Any]:
    """Join every slot of `fleet`, then the idle, read and deploy figures; raw numbers."""
    size = len(fleet.slots)
    empty = fleet.rss()
    started = time.monotonic()
    await fleet.join()
    joined = time.monotonic() - started
    print(f"bench: joined {size} clusters in {joined:.0f}s", flush=True)
    await asyncio.sleep(SETTLE)
    idle_rss = fleet.rss()
    cpu, requests = fleet.cpu(), fleet.hub_requests()
    await asyncio.sleep(IDLE)
    idle_cpu = fleet.cpu() - cpu
    after = fleet.hub_requests()
    asked = {verb: (after[verb] - requests[verb]) / IDLE for verb in after}
    listing = [await timed(fleet.api.call("GET", "/api/v1/clusters")) for _ in range(CALLS)]
    print(f"bench: idle {idle_cpu / IDLE:.1%} of a core; deploying to {size}", flush=True)
    timing = await fleet.deploy(APP, fleet.application(APP, size, chart=CONFIG_CHART, values={}))
    collections = fleet.full_collections()
    status = [await timed(fleet.status(APP)) for _ in range(CALLS)]
    after_status = fleet.full_collections()
    return {
        "clusters": size,
        "join_seconds": joined,
        "rss": {"empty": empty, "idle": idle_rss, "deploy_peak": timing.peak_rss},
        "idle_cpu_seconds": idle_cpu,
        "idle_seconds": IDLE,
        "idle_requests_per_second": asked,
        "cluster_list_seconds": listing,
        "status_seconds": status,
        "status_full_collections": [b - a for a, b in zip(collections, after_status, strict=True)],
        "deploy": {"healthy": timing.healthy, "hub_cpu": timing.hub_cpu},
    }


def figures(measured: dict[str, Any]) -> list[Figure]:
    size, rss = measured["clusters"], measured["rss"]
    per_cluster = (rss["idle"] - rss["empty"]) / size / MIB
    share = measured["idle_cpu_seconds"] / measured["idle_seconds"] * 100
    asked = measured["idle_requests_per_second"]
    deploy = measured["deploy"]
    peak = rss["deploy_peak"]
    out = [
        Figure(SECTION, f"hub RSS idle, {size} clusters", rss["idle"] / MIB, "MiB"),
        Figure(SECTION, "  per idle cluster", per_cluster, "MiB", note="RSS idle minus empty"),
        goal(
            SECTION,
            f"idle hub CPU over {measured['idle_seconds']:.0f} s",
            share,
            "% of a core",
            at_most=5,
        ),
        Figure(
            SECTION,
            "hub's requests to the API servers, idle",
            asked.get("all", 0.0),
            "/s",
            note=by_verb(asked),
        ),
    ]
    for label, seconds in (
        ("cluster list", measured["cluster_list_seconds"]),
        (f"status of an application on {size}", measured["status_seconds"]),
    ):
        p95 = percentile(seconds, 0.95) * 1000
        median = statistics.median(seconds) * 1000
        out.append(
            goal(
                SECTION,
                f"{label} p95, API",
                p95,
                "ms",
                at_most=100,
                note=f"median {median:.0f} ms of {len(seconds)}",
            )
        )
    count, held = measured["status_full_collections"]
    out += [
        Figure(
            SECTION,
            "  full garbage collections during those calls",
            count,
            "",
            note=f"{held * 1000:.0f} ms in all, of {sum(measured['status_seconds']) * 1000:.0f} ms"
            " of calls",
        ),
        Figure(
            SECTION,
            f"{CONFIG_CHART} to {size}: all healthy",
            deploy["healthy"],
            "s",
            note=f"joins took {measured['join_seconds']:.0f} s",
        ),
        Figure(SECTION, "  hub CPU per target", deploy["hub_cpu"] / size * 1000, "ms"),
        Figure(
            SECTION,
            "  peak hub RSS during the deploy",
            peak / MIB,
            "MiB",
            note=f"the bound: {(peak - rss['idle']) / size / 1024:.0f} KiB per target above idle",
        ),
    ]
    return out


async def alone(args: argparse.Namespace) -> None:
    """`--only scale`: this section on a fleet of its own."""
    ensure_built(CONTROL_PLANE)
    fleet = Fleet.start(args.servers, args.scale)
    try:
        measured = await measure(fleet)
    finally:
        fleet.close(keep_clusters=args.keep)
    results = figures(measured)
    print_figures(results)
    print(f"\nbench: wrote {write_json(f'{stamp()}-scale', results, measured)}")
