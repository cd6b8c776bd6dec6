"""Servers for integration tests, real ones on 127.0.0.1 started once per session (chart
servers, Prometheus), and the hub and fleet each test gets of its own."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e import clusters
from e2e.chartrepo import ChartRepo, OciRegistry, start_chart_repo, start_oci_registry
from e2e.clusters import ClusterInfo
from e2e.hubproc import HubProcess, kubernetes_store
from e2e.prometheus import Prometheus, start_prometheus
from hub.charts import ChartCache
from tests.fleet import NAMES, Fleet


@pytest.fixture(scope="session")
def chart_repo() -> Iterator[ChartRepo]:
    """A Helm HTTP repository serving every e2e chart at 1.0.0 and 2.0.0."""
    with start_chart_repo() as repo:
        yield repo


@pytest.fixture(scope="session")
def oci_registry() -> Iterator[OciRegistry]:
    """A distribution registry holding every e2e chart at 1.0.0 and 2.0.0 under `.url`."""
    with start_oci_registry() as registry:
        yield registry


@pytest.fixture(scope="session")
def prometheus(e2e_clusters: list[ClusterInfo]) -> Iterator[Prometheus]:
    """A Prometheus scraping every cluster's app metrics each second, its series labelled
    `cluster` with the name the fleet fixture joins the cluster under (dev, prod-eu,
    prod-us), so that a query's `${cluster.name}` finds them, as with one global
    Prometheus whose clusters are labelled as the hub names them."""
    targets = {name: info.metrics_url for name, info in zip(NAMES, e2e_clusters, strict=False)}
    with start_prometheus(targets) as server:
        yield server


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on: connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that takes connections (the kernel's backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


@pytest.fixture
def chart_cache(tmp_path: Path) -> ChartCache:
    """A chart cache of its own per test, so no test sees another's downloads."""
    return ChartCache(tmp_path / "charts", timeout=5.0)


@pytest.fixture
def hub(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HubProcess]:
    """A hub of the test's own (fresh FLOTILLA_HOME, and a fresh store namespace when its
    store is `kubernetes`), stopped after the test."""
    store = getattr(request, "param", "sqlite")
    if store == "sqlite":
        process = HubProcess(tmp_path / "home")
    else:
        management = request.getfixturevalue("e2e_clusters")[0]
        store_namespace = f"fs-{secrets.token_hex(4)}"
        process = HubProcess(
            tmp_path / "home", serve_args=kubernetes_store(management.kubeconfig, store_namespace)
        )
        request.addfinalizer(lambda: clusters.delete_namespace(store_namespace, [management]))
    process.start()
    yield process
    if process.running:
        process.stop()


@pytest.fixture
def fleet(
    hub: HubProcess,
    e2e_clusters: list[ClusterInfo],
    namespace: str,
    chart_repo: ChartRepo,
    tmp_path: Path,
) -> Fleet:
    """A hub with the clusters joined as dev / prod-eu / prod-us, deploying into `namespace`."""
    return Fleet.join(hub, e2e_clusters, namespace, chart_repo.url, tmp_path)


@pytest.fixture
def fleet_without_healing(
    tmp_path: Path, e2e_clusters: list[ClusterInfo], namespace: str, chart_repo: ChartRepo
) -> Iterator[Fleet]:
    """The fleet, its hub told not to heal drift (`serve --no-heal`): drift stays for status
    and `diff` to show."""
    hub = HubProcess(tmp_path / "home", serve_args=("--no-heal",))
    hub.start()
    try:
        yield Fleet.join(hub, e2e_clusters, namespace, chart_repo.url, tmp_path)
    finally:
        hub.stop()


@pytest.fixture
def private_chart_repo() -> Iterator[ChartRepo]:
    """A Helm HTTP repository of the test's own, serving every e2e chart behind basic auth
    with a random user and password (`.basic`); `.require` changes who it lets in."""
    with start_chart_repo() as repo:
        repo.require(basic=(f"ci-{secrets.token_hex(3)}", secrets.token_urlsafe(18)))
        yield repo


@pytest.fixture
def private_oci_registry() -> Iterator[OciRegistry]:
    """A distribution registry of the test's own with htpasswd auth on, holding every e2e
    chart; `.users` is who gets in (one user, a random password), `.set_users` changes it."""
    user = f"ci-{secrets.token_hex(3)}"
    with start_oci_registry(users={user: secrets.token_urlsafe(18)}) as registry:
        yield registry
