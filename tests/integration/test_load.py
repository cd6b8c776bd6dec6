"""Fifty applications of two components each, submitted at once across the three clusters,
while a client reads their status in a loop (issue 17, section 4).

The end state is read from the clusters (each Deployment with its image and its pod
ready), the hub's memory from /proc, and every status call must be answered 200. The API's
p95 under this load is printed and written to `load.json` in the test's directory, never
asserted: timings live in bench/.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
import yaml

from e2e import clusters
from hub.home import Home
from tests.fleet import NAMES, Fleet

pytestmark = [pytest.mark.cluster, pytest.mark.chaos]

APPS = 50
# Each application on one cluster, round robin: 100 Deployments of one pod each, about 33
# per cluster, which two shared cores run beside three API servers.
COMPONENTS = {"web": "1.0.0", "api": "2.0.0"}
# The hub idles near 200 MiB with three clusters joined (bench/: 154 MiB at start, ~3 MiB
# per cluster) and peaked at 191 MiB in this test; 512 MiB is a leak or an unbounded
# queue, not a busy hub.
RSS_BOUND = 512 * 2**20
# A deploy of this size that takes longer is broken, not slow.
DEPLOY_TIMEOUT = 600.0
# How often the hub's RSS is read, and the clusters checked for the end state.
SAMPLE_EVERY = 0.25
CHECK_EVERY = 1.0


def _name(index: int) -> str:
    return f"load-{index:02d}"


def _cluster(index: int) -> str:
    return NAMES[index % len(NAMES)]


def _document(fleet: Fleet, index: int) -> str:
    """Two helm components of the demo chart (two images), on one cluster, one step."""
    app = _name(index)
    components = [
        {
            "name": f"{app}-{role}",
            "type": "helm",
            "properties": {
                "repoType": "helm",
                "url": fleet.repo_url,
                "chart": "canary-demo",
                "version": version,
                "values": {
                    "replicaCount": 1,
                    "fullnameOverride": f"{app}-{role}",
                    "ingress": {"enabled": False},
                },
            },
        }
        for role, version in COMPONENTS.items()
    ]
    topology = {
        "name": "here",
        "type": "topology",
        "properties": {"clusters": [_cluster(index)], "namespace": fleet.namespace},
    }
    document = {
        "apiVersion": "core.oam.dev/v1beta1",
        "kind": "Application",
        "metadata": {"name": app},
        "spec": {
            "components": components,
            "policies": [topology],
            "workflow": {
                "steps": [
                    {"name": "deploy", "type": "deploy", "properties": {"policies": ["here"]}}
                ]
            },
        },
    }
    return yaml.safe_dump(document, sort_keys=False)


def _expected() -> dict[str, dict[str, str]]:
    """Per cluster: each Deployment's name -> its image."""
    wanted: dict[str, dict[str, str]] = {name: {} for name in NAMES}
    for index in range(APPS):
        for role, version in COMPONENTS.items():
            image = f"registry.local/canary-demo:{version}"
            wanted[_cluster(index)][f"{_name(index)}-{role}"] = image
    return wanted


def _missing(fleet: Fleet, wanted: dict[str, dict[str, str]]) -> list[str]:
    """The Deployments not yet as wanted, read from the clusters: absent, another image,
    or their one pod not ready."""
    missing = []
    for cluster, deployments in wanted.items():
        listed = clusters.admin_api(fleet.clusters[cluster]).get(
            f"/apis/apps/v1/namespaces/{fleet.namespace}/deployments"
        )
        live = {d["metadata"]["name"]: d for d in listed["items"]}
        for name, image in deployments.items():
            found = live.get(name)
            if found is None:
                missing.append(f"{cluster}/{name}: absent")
                continue
            actual = found["spec"]["template"]["spec"]["containers"][0]["image"]
            ready = found.get("status", {}).get("readyReplicas")
            if actual != image or ready != 1:
                missing.append(f"{cluster}/{name}: {actual}, {ready} ready")
    return missing


@dataclass
class Observed:
    """What the status client and the memory sampler saw during the run."""

    seconds: list[float] = field(default_factory=list)
    up_seconds: list[float] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    phases: dict[str, str] = field(default_factory=dict)
    peak_rss: int = 0


def _p95_ms(seconds: list[float]) -> float:
    return round(statistics.quantiles(seconds, n=100, method="inclusive")[94] * 1000, 1)


def _rss(pid: int) -> int:
    """The process's resident memory in bytes, from /proc (VmRSS is in kB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


async def _sample_rss(pid: int, seen: Observed) -> None:
    while True:
        seen.peak_rss = max(seen.peak_rss, _rss(pid))
        await asyncio.sleep(SAMPLE_EVERY)


async def _read_status(
    session: aiohttp.ClientSession, accepted: list[str], first: asyncio.Event, seen: Observed
) -> None:
    """One client, one status call after the other, over the applications accepted so far;
    a call that fails in any way is counted as refused."""
    await first.wait()
    turn = 0
    while True:
        app = accepted[turn % len(accepted)]
        turn += 1
        started = time.monotonic()
        try:
            async with session.get(f"/api/v1/apps/{app}") as response:
                body = await response.read()
        except aiohttp.ClientError as e:
            seen.refused.append(f"{app}: {e!r}")
            continue
        finally:
            seen.seconds.append(time.monotonic() - started)
        if response.status != 200:
            seen.refused.append(f"{app}: {response.status} {body[:200]!r}")
        else:
            seen.phases[app] = json.loads(body)["phase"]


async def _up(
    session: aiohttp.ClientSession,
    app: str,
    text: str,
    accepted: list[str],
    first: asyncio.Event,
    seen: Observed,
) -> str | None:
    """POST the file as `flotilla up` does; None when accepted, else why not."""
    started = time.monotonic()
    async with session.post("/api/v1/apps", json={"text": text, "source": app}) as response:
        body = await response.text()
    seen.up_seconds.append(time.monotonic() - started)
    if response.status != 201:
        return f"{app}: {response.status} {body[:200]}"
    accepted.append(app)
    first.set()
    return None


async def test_fifty_applications_at_once_all_converge(fleet: Fleet, tmp_path: Path) -> None:
    url, token = Home(fleet.hub.home).locate()
    headers = {"Authorization": f"Bearer {token}"}
    pid = int(json.loads(fleet.hub.home.joinpath("hub.json").read_text())["pid"])
    wanted = _expected()
    seen, accepted, first = Observed(), list[str](), asyncio.Event()
    async with aiohttp.ClientSession(base_url=url, headers=headers) as session:
        background = [
            asyncio.create_task(_sample_rss(pid, seen)),
            asyncio.create_task(_read_status(session, accepted, first, seen)),
        ]
        try:
            ups = (
                _up(session, _name(i), _document(fleet, i), accepted, first, seen)
                for i in range(APPS)
            )
            refusals = await asyncio.gather(*ups)
            assert [r for r in refusals if r] == [], "an up was refused"
            deadline = time.monotonic() + DEPLOY_TIMEOUT
            while missing := await asyncio.to_thread(_missing, fleet, wanted):
                assert time.monotonic() < deadline, (
                    f"{len(missing)} Deployments not as wanted after {DEPLOY_TIMEOUT:.0f}s: "
                    f"{missing[:5]}"
                )
                await asyncio.sleep(CHECK_EVERY)
            # The clusters are done; the status client sees every revision finish too.
            while any(seen.phases.get(_name(i)) != "succeeded" for i in range(APPS)):
                assert time.monotonic() < deadline, f"phases: {seen.phases}"
                await asyncio.sleep(CHECK_EVERY)
            for task in background:  # neither died meanwhile: its error would be lost
                assert not task.done(), task.exception()
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)

    figures = {
        "status_calls": len(seen.seconds),
        "status_p95_ms": _p95_ms(seen.seconds),
        "status_max_ms": round(max(seen.seconds) * 1000, 1),
        "up_p95_ms": _p95_ms(seen.up_seconds),
        "peak_rss_mib": round(seen.peak_rss / 2**20, 1),
    }
    (tmp_path / "load.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\nload: {json.dumps(figures)}")
    assert seen.refused == [], f"{len(seen.refused)} status calls refused: {seen.refused[:5]}"
    assert seen.peak_rss <= RSS_BOUND, (
        f"hub RSS peaked at {seen.peak_rss / 2**20:.0f} MiB, over {RSS_BOUND / 2**20:.0f} MiB"
    )
    assert "Traceback" not in fleet.hub.log()
