"""The way people deploy one chart to many clusters today: a loop of
`helm upgrade --install --kube-context ...`, one cluster after another or several at
once with `xargs -P`. Same chart, version and values as Flotilla gets, same logical
clusters and one namespace per cluster, with the `helm` built from its Go module.
"""

from __future__ import annotations

import resource
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.fleet import CHART, VALUES, BenchError, Slot, clusters_cpu
from e2e.binaries import binary

# `--wait` gives up after this: far beyond what the chart needs on a healthy cluster.
WAIT_TIMEOUT = "5m"


@dataclass(frozen=True)
class HelmRun:
    """One loop: its wall seconds, and the CPU seconds it cost in all: the helm
    processes' own, and the clusters' (API servers, controllers, simulated nodes)
    meanwhile."""

    seconds: float
    cpu: float


def helm_loop(
    slots: Sequence[Slot],
    repo_url: str,
    *,
    parallel: int,
    wait: bool,
    prefix: str,
    workdir: Path,
    chart: str = CHART,
    values: dict[str, Any] | None = None,
) -> HelmRun:
    """`xargs -P parallel` running one `helm upgrade --install` per slot, into namespace
    `<prefix>-s<slot>`; with `wait`, each waits for its release to be ready."""
    workdir.mkdir(parents=True, exist_ok=True)
    values_file = workdir / f"{chart}-values.yaml"
    values_file.write_text(yaml.safe_dump(VALUES if values is None else values))
    lines = "".join(
        f"--kubeconfig {s.info.kubeconfig} --kube-context {s.info.context} "
        f"--namespace {prefix}-s{s.index}\n"
        for s in slots
    )
    command = [
        "xargs",
        "-P",
        str(parallel),
        "-L",
        "1",
        str(binary("helm")),
        "upgrade",
        "--install",
        chart,
        chart,
        "--repo",
        repo_url,
        "--version",
        "1.0.0",
        "--values",
        str(values_file),
        "--create-namespace",
        *(["--wait", "--timeout", WAIT_TIMEOUT] if wait else []),
    ]
    # Helm's caches and settings of its own: a user's ~/.config/helm changes nothing here.
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(workdir),
        **{
            f"HELM_{kind}_HOME": str(workdir / kind.lower()) for kind in ("CACHE", "CONFIG", "DATA")
        },
    }
    theirs, children = clusters_cpu(), _children_cpu()
    started = time.monotonic()
    result = subprocess.run(command, input=lines, env=env, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        raise BenchError(f"helm loop ({prefix}) failed: {result.stderr[-2000:]}")
    return HelmRun(elapsed, _children_cpu() - children + clusters_cpu() - theirs)


def _children_cpu() -> float:
    """CPU seconds of this process's waited-for children (xargs and every helm it ran)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
