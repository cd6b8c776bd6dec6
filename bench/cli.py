"""How fast the command line answers (issue 16, section 1), beside `kubectl get nodes`.

Each command is started as a user starts it: the installed `flotilla` script, a fresh
process, its output read through a pipe. The commands take turns, round after round, so
a machine that slows down meanwhile slows them all alike, and `kubectl get nodes` against
one of the bench's clusters runs in the same rounds as the yardstick.

Alone, `python -m bench --only cli` starts the bench's clusters, joins CLUSTERS logical
clusters, deploys one application to all of them and measures; `make bench` measures on
the status section's application instead.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.fleet import STATE_DIR, BenchError, Fleet
from bench.report import Figure, goal, percentile, print_figures, stamp, write_json
from e2e.binaries import CONTROL_PLANE, ensure_built

CLUSTERS = 64
APP = "cli"
ROUNDS = 30
# Runs not counted: the first start writes the bytecode cache.
WARMUP = 2
SECTION = "6. the command line: wall time of one command, a fresh process each (ms)"


@dataclass(frozen=True)
class Command:
    label: str
    argv: list[str]
    goal_ms: float | None = None


def commands(fleet: Fleet, app: str) -> list[Command]:
    flotilla = str(Path(sys.executable).with_name("flotilla"))
    found = [
        Command("flotilla --help", [flotilla, "--help"], 120),
        Command("flotilla ls", [flotilla, "ls"], 150),
        Command("flotilla status APP -o json", [flotilla, "status", app, "-o", "json"], 150),
        Command("flotilla cluster list", [flotilla, "cluster", "list"]),
        Command("flotilla history APP", [flotilla, "history", app]),
    ]
    kubectl = shutil.which("kubectl")
    if kubectl is not None:
        kubeconfig = str(fleet.infos[0].kubeconfig)
        found.append(
            Command("kubectl get nodes", [kubectl, "--kubeconfig", kubeconfig, "get", "nodes"])
        )
    return found


def environment(fleet: Fleet) -> dict[str, str]:
    """The hub's CLI environment as a user's shell has it. Bytecode is written, to the
    bench's own cache: with PYTHONDONTWRITEBYTECODE (common in developers' and CI's
    environments) every start would compile the hub's modules from source again."""
    dropped = {"NO_COLOR", "COLUMNS", "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX"}
    env = {k: v for k, v in fleet.hub.env.items() if k not in dropped}
    return env | {"PYTHONPYCACHEPREFIX": str(STATE_DIR / "pycache")}


def timings(fleet: Fleet, app: str, rounds: int = ROUNDS) -> dict[str, dict[str, list[float]]]:
    """Each command's runs by label: `wall` and `cpu` (user + system, its processes')
    seconds; WARMUP rounds first, not counted. CPU is what the command itself costs,
    where wall also counts a busy machine's other work."""
    env = environment(fleet)
    measured = commands(fleet, app)
    print(f"bench: {len(measured)} commands, {WARMUP} + {rounds} rounds each", flush=True)
    runs: dict[str, dict[str, list[float]]] = {c.label: {"wall": [], "cpu": []} for c in measured}
    for index in range(WARMUP + rounds):
        for command in measured:
            wall, cpu = _timed(command, env)
            if index >= WARMUP:
                runs[command.label]["wall"].append(wall)
                runs[command.label]["cpu"].append(cpu)
    return runs


def _timed(command: Command, env: dict[str, str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command.argv, env=env, capture_output=True, timeout=60)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise BenchError(f"{command.label} failed ({done.returncode}): {done.stderr.decode()}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return elapsed, cpu


def figures(fleet: Fleet, app: str, runs: dict[str, dict[str, list[float]]]) -> list[Figure]:
    out: list[Figure] = []
    yardstick = runs.get("kubectl get nodes")
    for command in commands(fleet, app):
        wall, cpu = runs[command.label]["wall"], runs[command.label]["cpu"]
        median = statistics.median(wall) * 1000
        notes = [f"cpu {statistics.median(cpu) * 1000:.0f} ms"]
        if yardstick is not None and command.label != "kubectl get nodes":
            notes.append(f"{median / (statistics.median(yardstick['wall']) * 1000):.1f}x kubectl")
        note = "; ".join(notes)
        name = f"{command.label} median"
        if command.goal_ms is None:
            out.append(Figure(SECTION, name, median, "ms", note=note))
        else:
            out.append(goal(SECTION, name, median, "ms", at_most=command.goal_ms, note=note))
        out.append(Figure(SECTION, f"  p95 (of {len(wall)})", percentile(wall, 0.95) * 1000, "ms"))
    return out


async def alone(args: argparse.Namespace) -> None:
    """`python -m bench --only cli`: its own fleet of CLUSTERS, one application on all."""
    ensure_built(CONTROL_PLANE)
    print(f"bench: {args.servers} API servers, {CLUSTERS} logical clusters", flush=True)
    fleet = Fleet.start(args.servers, CLUSTERS)
    try:
        await fleet.join()
        await fleet.deploy(APP, fleet.application(APP, CLUSTERS))
        runs = timings(fleet, APP)
        results = figures(fleet, APP, runs)
    finally:
        fleet.close(keep_clusters=args.keep)
    print_figures(results)
    raw: dict[str, Any] = {"servers": args.servers, "clusters": CLUSTERS, "cli": runs}
    print(f"\nbench: wrote {write_json(f'{stamp()}-cli', results, raw)}")
