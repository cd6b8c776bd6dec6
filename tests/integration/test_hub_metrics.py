"""The hub's metrics as a real Prometheus scrapes them from `serve --metrics-listen`, on a
fleet of the three local clusters and after a real deploy; and `/metrics` on the API,
which wants the token like every route. The collector's output in detail, from known
state: tests/unit/test_metrics.py."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.hubproc import HubProcess
from e2e.prometheus import Prometheus, start_prometheus
from e2e.servers import LOCALHOST, free_port
from tests.fleet import Fleet, until

pytestmark = pytest.mark.cluster

JOB = "flotilla"
APP = "canary-demo"


@pytest.fixture
def metrics_port() -> int:
    return free_port()


@pytest.fixture
def hub(tmp_path: Path, metrics_port: int) -> Iterator[HubProcess]:
    """The fleet's hub (this overrides conftest's), also serving `/metrics` alone, without
    the token, on a port of its own."""
    process = HubProcess(
        tmp_path / "home", serve_args=("--metrics-listen", f"{LOCALHOST}:{metrics_port}")
    )
    process.start()
    yield process
    if process.running:
        process.stop()


def get(url: str, token: str | None = None) -> tuple[int, str]:
    """Status and body of a GET, with the bearer token if given."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


def holds(prometheus: Prometheus, promql: str, series: int = 1) -> bool:
    """Whether `promql` has `series` series now, as Prometheus last scraped the hub."""
    return len(prometheus.query(promql)) == series


def test_prometheus_scrapes_the_hubs_clusters_applications_and_process(
    fleet: Fleet, metrics_port: int
) -> None:
    alone = f"http://{LOCALHOST}:{metrics_port}"
    home = fleet.hub.home
    api, token = json.loads((home / "hub.json").read_text())["url"], (home / "token").read_text()
    token = token.strip()

    assert get(f"{api}/metrics")[0] == 401
    status, body = get(f"{api}/metrics", token)
    assert status == 200 and 'flotilla_cluster_up{cluster="dev"}' in body
    status, body = get(f"{alone}/metrics")
    assert status == 200 and "process_resident_memory_bytes" in body
    for path in ("/api/v1/apps", "/api/v1/clusters", "/"):
        assert get(f"{alone}{path}", token)[0] == 404
    secrets = [token, *(info.server for info in fleet.clusters.values())]
    secrets += [info.admin_token for info in fleet.clusters.values()]
    assert not [s for s in secrets if s in body]

    with start_prometheus({}, jobs={JOB: f"{alone}/metrics"}) as prometheus:
        assert holds(prometheus, f'up{{job="{JOB}"}} == 1')
        assert holds(prometheus, f'process_resident_memory_bytes{{job="{JOB}"}} > 0')
        until(
            lambda: holds(prometheus, "flotilla_cluster_up == 1", series=3),
            what="every cluster up",
        )
        until(
            lambda: holds(prometheus, "flotilla_cluster_watch_connected == 1", series=3),
            what="every cluster's watch connected",
        )
        assert holds(prometheus, 'flotilla_cluster_probe_duration_seconds{cluster="dev"} >= 0')
        assert holds(prometheus, 'flotilla_cluster_watch_age_seconds{cluster="dev"} < 120')

        assert fleet.up(fleet.app(), "--wait").code == 0
        where = f'application="{APP}"'
        until(
            lambda: holds(
                prometheus, f'flotilla_application_phase{{{where}, phase="succeeded"}} == 1'
            ),
            what="the application succeeded, in Prometheus",
        )
        assert holds(prometheus, f'flotilla_application_health{{{where}, health="Healthy"}} == 1')
        assert holds(prometheus, f"flotilla_application_revision{{{where}}} == 1")
        deployed = f"flotilla_target_deploy_duration_seconds_count{{{where}}}"
        assert holds(prometheus, f"{deployed} == 3")  # dev, prod-eu, prod-us
        assert holds(prometheus, 'flotilla_cluster_requests_total{cluster="dev", verb="PATCH"} > 0')
        assert holds(prometheus, "flotilla_store_transaction_duration_seconds_count > 0")
        until(
            lambda: holds(prometheus, "flotilla_workflow_runners == 0"),
            what="the runner ended, its application needing no more driving",
        )
        assert holds(prometheus, 'flotilla_supervisor_restarts_total{kind="probe"} == 0')
