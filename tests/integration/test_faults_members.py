"""Members that fail under a running workflow (issue 17, sections 1-3): one that dies
mid-canary (its step waits for it and completes by itself once it answers again), one
that crawls, one whose credentials are revoked.

prod-us is joined through a fault proxy (e2e.faultproxy) or with a revocable token, so
only this test's hub sees the fault: the clusters are shared with every other test.
Every end state is read from the clusters with their admin kubeconfigs, never through
the proxy and never from Flotilla's report.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e import kubeapi, kubeconfigs
from e2e.binaries import kubectl as kubectl_binary
from e2e.chartrepo import ChartRepo
from e2e.clusters import ClusterInfo, admin_api
from e2e.faultproxy import FaultProxy, running_proxy
from e2e.hubproc import HubProcess
from e2e.kubectl import kubectl
from tests.fleet import Fleet, phase, until
from tests.integration.test_canary import (
    PROD,
    _any_canary,
    _assert_v1_everywhere,
    _canary_objects,
    _canary_pods,
    _deploy_v1,
    _trait,
    _uids,
)

pytestmark = [pytest.mark.cluster, pytest.mark.chaos]

VICTIM = "prod-us"  # e2e-3: the third cluster of the fleet
ONE_STEP = _trait(steps=(20,))
# Seconds each chunk is held in each direction while a test wants to act between two
# requests to the victim (its canary half done): long enough to act, short of any timeout.
SLOWED = 0.5
# A member that crawls: each request (and each watch event) pays twice this.
CRAWL = 2.0
# The crawling hub's step timeout: the fast members are healthy well within it, the slow
# one is not.
CRAWL_STEP_TIMEOUT = 12.0
# A hub's API answers at once whatever its members do; a client waits this long at most.
ANSWER_TIMEOUT = 2.0
# The lag probe's bound while a member crawls: a stall, not a timing of work.
LAG_BOUND = 1.0


def _port(info: ClusterInfo) -> int:
    return int(info.server.rsplit(":", 1)[1])


@pytest.fixture
def proxy(e2e_clusters: list[ClusterInfo]) -> Iterator[FaultProxy]:
    """A fault proxy in front of the victim's API server, for this test only."""
    with running_proxy(_port(e2e_clusters[2])) as proxy:
        yield proxy


def _proxied_fleet(
    hub: HubProcess,
    e2e_clusters: list[ClusterInfo],
    namespace: str,
    chart_repo: ChartRepo,
    tmp_path: Path,
    proxy: FaultProxy,
) -> Fleet:
    proxied = kubeconfigs.derive(
        e2e_clusters[2].kubeconfig, tmp_path / "proxied.kubeconfig", server=proxy.url
    )
    return Fleet.join(
        hub, e2e_clusters, namespace, chart_repo.url, tmp_path, kubeconfigs={VICTIM: proxied}
    )


@pytest.fixture
def proxied(
    hub: HubProcess,
    e2e_clusters: list[ClusterInfo],
    namespace: str,
    chart_repo: ChartRepo,
    tmp_path: Path,
    proxy: FaultProxy,
) -> Fleet:
    """The usual fleet, with prod-us joined through `proxy`."""
    return _proxied_fleet(hub, e2e_clusters, namespace, chart_repo, tmp_path, proxy)


def _release(fleet: Fleet, cluster: str, step: str = "deploy-prod") -> dict[str, Any]:
    """The cluster's release in a step, as `status` shows it."""
    steps = next(s for s in fleet.status()["steps"] if s["name"] == step)
    found = next(c for c in steps["clusters"] if c["name"] == cluster)
    release: dict[str, Any] = found["releases"][0]
    return release


def _health(fleet: Fleet, cluster: str) -> str:
    listing = fleet.hub.ok("cluster", "list", "-o", "json").json()["clusters"]
    return str(next(c["health"] for c in listing if c["name"] == cluster))


def _waiting_for_victim(fleet: Fleet) -> None:
    """Wait until status says the hub waits for the victim to answer again: the workflow
    still runs, goes no further, and names the victim, and it alone."""
    seen: list[dict[str, Any]] = []

    def waiting() -> bool:
        # One read per look: each retry's attempt shows its own message while it lasts.
        seen.append(_release(fleet, VICTIM))
        return "unreachable" in seen[-1]["message"]

    until(waiting, what="the hub waiting for prod-us", timeout=120)
    release = seen[-1]
    assert release["message"].startswith(
        f"cluster {VICTIM} unreachable: waiting for it to answer again"
    ), release
    assert release["phase"] != "failed", release
    assert phase(fleet) == "running"
    assert "unreachable" not in _release(fleet, "prod-eu")["message"]


def _no_canary_anywhere(fleet: Fleet) -> None:
    """No canary object is left on any cluster, and the hub logged no traceback on the way."""
    until(lambda: not _any_canary(fleet), what="canary objects gone")
    assert _canary_objects(fleet, "dev") == []
    assert "Traceback" not in fleet.hub.log()


def _traffic_released(fleet: Fleet, cluster: str) -> bool:
    """Finalising has begun: its first phase unpins the stable Service (the canary pinned
    it to the stable pods); the stable Deployment's release and rollout are still ahead."""
    selector = fleet.kubectl(cluster, "get", "service", "canary-demo")["spec"]["selector"]
    return "pod-template-hash" not in selector


def _upgrade_and_kill_the_victim(fleet: Fleet, proxy: FaultProxy) -> dict[str, set[str]]:
    """v1 everywhere, then v2 with prod-us slowed so that it dies once its canary has begun;
    the stable pod UIDs of v1, by cluster."""
    uids = _deploy_v1(fleet, traits=ONE_STEP)
    proxy.delay = SLOWED
    accepted = fleet.up(fleet.app(version="2.0.0", traits=ONE_STEP))
    assert accepted.code == 0, accepted.stderr
    until(lambda: bool(_canary_objects(fleet, VICTIM)), what="the canary begun on prod-us")
    proxy.die()
    proxy.delay = 0.0
    return uids


def test_member_dies_mid_canary_step_and_during_finalising(
    proxied: Fleet, proxy: FaultProxy
) -> None:
    fleet = proxied
    uids = _upgrade_and_kill_the_victim(fleet, proxy)

    _waiting_for_victim(fleet)
    until(lambda: _health(fleet, VICTIM) == "Unreachable", what="prod-us unreachable")
    # prod-eu keeps its paused canary, and the environment goes no further than that.
    assert _release(fleet, "prod-eu")["phase"] == "paused"
    assert len(_canary_pods(fleet, "prod-eu")) == 1
    assert fleet.deployment("prod-eu")["spec"]["paused"] is True  # type: ignore[index]
    assert fleet.image("dev") == "registry.local/canary-demo:2.0.0"
    for cluster in PROD:
        assert _uids(fleet, cluster) == uids[cluster], "a stable pod was restarted"

    assert phase(fleet) == "running"  # still waiting, and never advanced past prod-us

    proxy.revive()  # no operator: the hub's retry finds it back
    until(lambda: phase(fleet) == "suspended", what="paused at step 1 everywhere", timeout=120)
    for cluster in PROD:
        assert len(_canary_pods(fleet, cluster)) == 1, cluster
        assert _uids(fleet, cluster) == uids[cluster]
        assert not _traffic_released(fleet, cluster)

    proxy.delay = SLOWED
    fleet.hub.ok("workflow", "resume", "canary-demo")
    until(lambda: _traffic_released(fleet, VICTIM), what="finalising on prod-us")
    proxy.die()
    proxy.delay = 0.0
    assert _canary_objects(fleet, VICTIM), "prod-us finished before it could die"
    _waiting_for_victim(fleet)
    until(lambda: fleet.image("prod-eu") == "registry.local/canary-demo:2.0.0", what="prod-eu")

    proxy.revive()
    until(lambda: phase(fleet) == "succeeded", what="the canary finished", timeout=120)
    _no_canary_anywhere(fleet)
    for cluster, replicas in PROD.items():
        deployment = fleet.deployment(cluster)
        assert deployment is not None and not deployment["spec"].get("paused")
        assert deployment["status"].get("readyReplicas") == replicas
        assert fleet.image(cluster) == "registry.local/canary-demo:2.0.0"


def test_rollback_asked_while_a_member_is_dead_completes_once_it_returns(
    proxied: Fleet, proxy: FaultProxy
) -> None:
    fleet = proxied
    uids = _upgrade_and_kill_the_victim(fleet, proxy)
    _waiting_for_victim(fleet)
    upgrade = fleet.status()["revision"]

    # The waiting runner is cancelled; the rollback's own waits for prod-us in turn.
    fleet.hub.ok("workflow", "rollback", "canary-demo")
    until(lambda: fleet.status()["revision"] > upgrade, what="the rollback's revision")
    until(lambda: _canary_objects(fleet, "prod-eu") == [], what="prod-eu rolled back")
    _waiting_for_victim(fleet)
    # Where the member lives, the rollback is done: stable pods untouched, canary gone.
    until(lambda: fleet.image("prod-eu") == "registry.local/canary-demo:1.0.0", what="prod-eu")
    assert _uids(fleet, "prod-eu") == uids["prod-eu"]
    assert fleet.image("dev") == "registry.local/canary-demo:1.0.0"

    proxy.revive()
    until(lambda: phase(fleet) == "succeeded", what="the rollback finished", timeout=120)
    _assert_v1_everywhere(fleet, uids)
    _no_canary_anywhere(fleet)


def test_member_dies_during_a_rollback(proxied: Fleet, proxy: FaultProxy) -> None:
    fleet = proxied
    uids = _deploy_v1(fleet, traits=ONE_STEP)
    upgraded = fleet.up(fleet.app(version="2.0.0", traits=ONE_STEP), "--wait")
    assert upgraded.code == 0, upgraded.stderr
    assert phase(fleet) == "suspended"

    proxy.delay = SLOWED
    fleet.hub.ok("workflow", "rollback", "canary-demo")
    until(lambda: not _canary_objects(fleet, "prod-eu"), what="prod-eu rolled back")
    assert _canary_objects(fleet, VICTIM), "prod-us finished before it could die"
    proxy.die()
    proxy.delay = 0.0
    _waiting_for_victim(fleet)
    assert _uids(fleet, "prod-eu") == uids["prod-eu"]

    proxy.revive()
    until(lambda: phase(fleet) == "succeeded", what="the rollback finished", timeout=120)
    _assert_v1_everywhere(fleet, uids)
    _no_canary_anywhere(fleet)


def _get(hub: HubProcess, path: str) -> Any:
    """One API call with a client that gives up after ANSWER_TIMEOUT seconds."""
    url = json.loads((hub.home / "hub.json").read_text())["url"]
    token = (hub.home / "token").read_text().strip()
    request = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=ANSWER_TIMEOUT) as response:
        if response.headers.get_content_type() == "application/json":
            return json.load(response)
        return response.read().decode()


def _loop_lag(hub: HubProcess) -> float:
    """The worst lateness of the hub's event loop so far, from its /metrics."""
    for line in _get(hub, "/metrics").splitlines():
        if line.startswith("flotilla_event_loop_lag_max_seconds "):
            return float(line.split()[1])
    raise AssertionError("no flotilla_event_loop_lag_max_seconds in /metrics")


def test_a_crawling_member_times_out_alone(
    e2e_clusters: list[ClusterInfo],
    namespace: str,
    chart_repo: ChartRepo,
    tmp_path: Path,
    proxy: FaultProxy,
) -> None:
    hub = HubProcess(tmp_path / "home", serve_args=("--step-timeout", str(CRAWL_STEP_TIMEOUT)))
    hub.start()
    try:
        fleet = _proxied_fleet(hub, e2e_clusters, namespace, chart_repo, tmp_path, proxy)
        proxy.delay = CRAWL
        accepted = fleet.up(fleet.app())
        assert accepted.code == 0, accepted.stderr

        def answers() -> bool:
            """status and cluster list answer at once, each time asked; the fast members'
            targets are done while the slow one's still runs."""
            status = _get(hub, "/api/v1/apps/canary-demo")
            _get(hub, "/api/v1/clusters")
            prod = next((s for s in status["steps"] if s["name"] == "deploy-prod"), None)
            if prod is None:
                return False
            phases = {c["name"]: c["releases"][0]["phase"] for c in prod["clusters"]}
            return phases.get("prod-eu") == "healthy"

        until(answers, what="prod-eu deployed", timeout=120)
        assert _release(fleet, VICTIM)["phase"] in ("applying", "waiting")
        for cluster, replicas in (("dev", 1), ("prod-eu", 3)):
            deployment = fleet.deployment(cluster)
            assert deployment is not None and deployment["status"].get("readyReplicas") == replicas

        until(lambda: _get(hub, "/api/v1/apps/canary-demo")["phase"] == "failed", timeout=120)
        message = _release(fleet, VICTIM)["message"]
        assert "timed out" in message and VICTIM in message, message
        assert f"failed on {VICTIM}/canary-demo" in fleet.status()["message"]
        assert 0 < _loop_lag(hub) < LAG_BOUND  # the probe ran, and the loop never stalled
        assert "Traceback" not in hub.log()
        assert _release(fleet, "dev", "deploy-dev")["phase"] == "healthy"
        assert _release(fleet, "prod-eu")["phase"] == "healthy"
    finally:
        hub.stop()


def test_a_revoked_token_fails_its_target_alone_and_is_never_logged(
    hub: HubProcess,
    e2e_clusters: list[ClusterInfo],
    namespace: str,
    chart_repo: ChartRepo,
    tmp_path: Path,
) -> None:
    api = admin_api(e2e_clusters[2])
    token = kubeapi.service_account_token(api, namespace, "deployer")
    revocable = kubeconfigs.derive(
        e2e_clusters[2].kubeconfig, tmp_path / "token.kubeconfig", user={"token": token}
    )
    fleet = Fleet.join(
        hub, e2e_clusters, namespace, chart_repo.url, tmp_path, kubeconfigs={VICTIM: revocable}
    )
    waiting = fleet.up(fleet.app(suspend=True), "--wait")
    assert waiting.code == 0, waiting.stderr
    assert phase(fleet) == "suspended"

    kubeapi.revoke_token(api, namespace, "deployer", token)
    resumed = fleet.hub.cli("workflow", "resume", "canary-demo", "--wait", timeout=300)
    assert resumed.code == 1, resumed.stdout + resumed.stderr
    status = fleet.status()
    assert status["phase"] == "failed"
    assert f"failed on {VICTIM}/canary-demo" in status["message"]
    refused = _release(fleet, VICTIM)
    assert refused["phase"] == "failed"
    assert "credentials rejected (401 Unauthorized)" in refused["message"]
    lines = [line for line in fleet.hub.log().splitlines() if "401 Unauthorized" in line]
    assert any(f"target {VICTIM}/canary-demo failed" in line for line in lines), lines
    printed = [line for line in resumed.stdout.splitlines() if "401 Unauthorized" in line]
    assert printed and all(VICTIM in line for line in printed), resumed.stdout
    assert _release(fleet, "prod-eu")["phase"] == "healthy"
    # The prober asks a cluster whose watches keep answering every minute (WATCH_QUIET).
    until(lambda: _health(fleet, VICTIM) == "Unauthorized", what="prod-us refused", timeout=150)
    # From the clusters themselves: prod-eu deployed, prod-us never got the workload.
    eu = fleet.deployment("prod-eu")
    assert eu is not None and eu["status"].get("readyReplicas") == 3
    assert fleet.deployment(VICTIM) is None
    assert token not in fleet.hub.everything_printed()
    assert "Traceback" not in fleet.hub.log()


def test_the_fault_proxy_cuts_and_refuses_while_dead(
    e2e_clusters: list[ClusterInfo], proxy: FaultProxy, tmp_path: Path
) -> None:
    """The harness itself: through the proxy as to the API server; dead, an open watch is
    cut and a new connection refused; back, as before. The real server was never touched."""
    through = kubeconfigs.derive(
        e2e_clusters[2].kubeconfig, tmp_path / "proxied.kubeconfig", server=proxy.url
    )
    assert kubectl(through, "get", "--raw", "/readyz").stdout == "ok"
    with subprocess.Popen(
        [str(kubectl_binary()), f"--kubeconfig={through}", "get", "namespaces", "--watch"],
        stdout=subprocess.PIPE,
        text=True,
    ) as watch:
        assert watch.stdout is not None
        assert watch.stdout.readline().startswith("NAME")  # the watch is open
        proxy.die()
        watch.wait(timeout=30)  # cut, not left hanging
    refused = kubectl(through, "get", "--raw", "/readyz", check=False)
    assert refused.returncode != 0 and "refused" in refused.stderr
    assert kubectl(e2e_clusters[2].kubeconfig, "get", "--raw", "/readyz").stdout == "ok"
    proxy.revive()
    assert kubectl(through, "get", "--raw", "/readyz").stdout == "ok"
