"""Members far away (issue 16 §3): the fan-out and Helm's loops again, every member
cluster `--rtt` seconds (default 50 ms) from the hub and from Helm.

Local API servers answer in under a millisecond, which flatters one-at-a-time tools and
hides what concurrency buys. Here a delaying TCP proxy (e2e.faultproxy) stands in front
of each API server and holds every chunk half the round trip in each direction, so every
request, TLS handshake and watch event pays it, as it would to a cluster in another
region. Two charts: `config-demo` (ConfigMaps only) measures the fan-out where the
clusters' own CPU is not the bound; `canary-demo` (pods, waited for) is what Helm's
`--wait` loops are measured against. Requests per target are the hub's own count of what
it sent to the members during a deploy (`flotilla_cluster_requests_total`), divided by
the deploy's targets.

    python -m bench --only latency [--rtt 0.05] [--sizes 1 4 16 64]
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import asdict, fields
from typing import Any

from bench.fleet import STATE_DIR, Fleet, Timing, by_verb
from bench.helm import helm_loop
from bench.report import Figure, goal, print_figures, stamp, write_json
from e2e import clusters
from e2e.binaries import CONTROL_PLANE, ensure_built

# A real member in another region is 20-200 ms away; the issue measures at 50.
RTT = 0.050
CONFIG_CHART = "config-demo"
# Deploys per size: the median of three evens out a slow one on a shared machine.
REPEATS = 3
HELM_SIZE = 16


async def measure(fleet: Fleet, sizes: list[int]) -> dict[str, Any]:
    """The config-demo fan-out at every size, canary-demo at HELM_SIZE, and Helm's loops
    over the same HELM_SIZE slots; raw figures for `figures`."""
    config = {size: await _median(fleet, CONFIG_CHART, size) for size in sizes}
    compared = min(HELM_SIZE, len(fleet.slots))
    demo = await _median(fleet, "canary-demo", compared)
    helm: dict[str, float] = {}
    for label, parallel in (("sequential --wait", 1), ("8-way --wait", 8)):
        prefix = "far-helm-" + ("seq" if parallel == 1 else "8p")
        helm[label] = helm_loop(
            fleet.slots[:compared],
            fleet.repo.url,
            parallel=parallel,
            wait=True,
            prefix=prefix,
            workdir=STATE_DIR / "helm",
        ).seconds
        print(f"bench: far helm {label} x{compared}: {helm[label]:.1f}s", flush=True)
        for slot in fleet.slots[:compared]:
            clusters.delete_namespace(f"{prefix}-s{slot.index}", [slot.info])
    return {"config": config, "demo": demo, "helm": helm}


async def _median(fleet: Fleet, chart: str, size: int) -> dict[str, Any]:
    """REPEATS deploys of `chart` to `size` slots, each removed afterwards: the median
    timing, and the requests per target of the median run."""
    runs = []
    for repeat in range(REPEATS):
        name = f"far-{chart[:6]}{size}-{repeat}"
        before = fleet.hub_requests()
        timing = await fleet.deploy(name, fleet.application(name, size, chart=chart, values={}))
        after = fleet.hub_requests()
        asked = {verb: after[verb] - before[verb] for verb in after}
        runs.append((timing, asked))
        await fleet.delete(name)
        fleet.delete_namespaces(name, size)
    await fleet.until_namespaces_gone()
    runs.sort(key=lambda run: run[0].healthy)
    timing, asked = runs[len(runs) // 2]
    print(
        f"bench: far {chart} N={size}: healthy {timing.healthy:.2f}s, "
        f"{asked.get('all', 0) / size:.1f} requests per target",
        flush=True,
    )
    median = Timing(
        *(statistics.median(getattr(run[0], f.name) for run in runs) for f in fields(Timing))
    )
    return {"timing": asdict(median), "requests": asked, "size": size}


def figures(rtt: float, far: dict[str, Any]) -> list[Figure]:
    section = f"7. members {rtt * 1000:.0f} ms away (a delaying proxy per API server)"
    out: list[Figure] = []
    config = far["config"]
    for size, run in sorted(config.items()):
        timing = run["timing"]
        out.append(
            Figure(
                section,
                f"{CONFIG_CHART} N={size}: all healthy",
                timing["healthy"],
                "s",
                note=f"applied {timing['applied']:.2f} s; hub CPU {timing['hub_cpu']:.2f} s; "
                f"{run['requests'].get('all', 0) / size:.1f} requests per target",
            )
        )
    low, high = min(config), max(config)
    out.append(
        goal(
            section,
            f"{CONFIG_CHART}: wall({high})/wall({low}), all healthy",
            config[high]["timing"]["healthy"] / config[low]["timing"]["healthy"],
            "x",
            at_most=1.5,
        )
    )
    demo, compared = far["demo"]["timing"], far["demo"]["size"]
    out.append(Figure(section, f"canary-demo N={compared}: all healthy", demo["healthy"], "s"))
    for label, seconds in far["helm"].items():
        ratio = seconds / demo["healthy"]
        name = f"`helm {label}` / Flotilla over {compared}"
        if label.startswith("8-way"):
            out.append(goal(section, name, ratio, "x", at_least=10, note=f"helm {seconds:.1f} s"))
        else:
            out.append(Figure(section, name, ratio, "x", note=f"helm {seconds:.1f} s"))
    largest = config[high]
    for chart, run in ((CONFIG_CHART, largest), ("canary-demo", far["demo"])):
        size, asked = run["size"], run["requests"]
        out.append(
            Figure(
                section,
                f"hub's requests per target ({chart}, N={size})",
                asked.get("all", 0) / size,
                "",
                note=by_verb(asked, size),
            )
        )
    return out


async def alone(args: argparse.Namespace) -> None:
    """`--only latency`: this section on a fleet of its own."""
    ensure_built((*CONTROL_PLANE, "helm"))
    fleet = Fleet.start(args.servers, max(args.sizes), rtt=args.rtt)
    try:
        await fleet.join()
        far = await measure(fleet, sorted(set(args.sizes)))
    finally:
        fleet.close(keep_clusters=args.keep)
    results = figures(args.rtt, far)
    print_figures(results)
    path = write_json(f"{stamp()}-latency", results, {"rtt": args.rtt, "far": far})
    print(f"\nbench: wrote {path}")


def curve(far: dict[str, Any]) -> dict[int, float]:
    """The config-demo fan-out's seconds to all healthy by size, for the chart."""
    return {size: run["timing"]["healthy"] for size, run in far["config"].items()}
