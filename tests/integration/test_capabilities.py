"""Each cluster renders with its own capabilities, as `helm upgrade` renders live: its
server version in `.Capabilities.KubeVersion`, what it serves in `.APIVersions`, and the
chart's `kubeVersion` checked against it.

The three local clusters run one kube-apiserver build, so they differ here only in what
they serve: each test installs CRDs of a group of its own (the clusters are shared by the
whole suite, and a Gateway API or Prometheus Operator CRD is installed by other tests or
not at all) on one cluster only, after the hub joined it, and deletes them at the end.
Versions that differ per cluster are held by tests/unit/test_charts_capabilities.py.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from clusters.client import ClusterClient
from clusters.discovery import AGGREGATED, DOCUMENTS, FULL_EVERY, discover
from e2e.chartrepo import CHARTS_DIR
from e2e.clusters import ClusterInfo
from e2e.kubectl import kubectl
from tests.fleet import Fleet, until
from tests.manifests import crd

pytestmark = pytest.mark.cluster

CHART = "capabilities-demo"
# A refresh of discovery comes every minute (hub.fleet.registry.DISCOVERY_INTERVAL); this
# bounds the wait for it with room for a loaded machine.
REFRESH_BOUND = 180.0


@pytest.fixture
def groups(fleet: Fleet) -> Iterator[dict[str, str]]:
    """Two API groups of this test's own, `route` and `monitor`, served nowhere yet; their
    CRDs (installed by `_serve`) are deleted from every cluster at the end."""
    names = {
        "route": f"route.{fleet.namespace}.flotilla.test",
        "monitor": f"monitor.{fleet.namespace}.flotilla.test",
    }
    yield names
    for info in fleet.clusters.values():
        for group, kind in ((names["route"], "HTTPRoute"), (names["monitor"], "ServiceMonitor")):
            kubectl(
                info.kubeconfig,
                "delete",
                "crd",
                f"{kind.lower()}s.{group}",
                "--ignore-not-found",
                "--wait=false",
            )


def _serve(fleet: Fleet, cluster: str, group: str, kind: str) -> None:
    kubeconfig = fleet.clusters[cluster].kubeconfig
    kubectl(kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump(crd(group, kind)))
    name = f"crd/{kind.lower()}s.{group}"
    kubectl(kubeconfig, "wait", "--for=condition=Established", "--timeout=60s", name)


def _values(groups: dict[str, str]) -> dict[str, Any]:
    return {
        "route": {"apiVersion": f"{groups['route']}/v1"},
        "monitor": {"apiVersion": f"{groups['monitor']}/v1"},
    }


def _planned_kinds(fleet: Fleet, path: Path) -> dict[str, set[str]]:
    view = fleet.hub.ok("plan", "-f", str(path), "-o", "json").json()
    return {
        target["cluster"]: {name.split()[0] for name in target["objects"]}
        for step in view["steps"]
        for target in step["targets"]
    }


def _get(fleet: Fleet, cluster: str, resource: str) -> list[dict[str, Any]]:
    found = fleet.kubectl(cluster, "get", resource, "-l", "flotilla.dev/managed-by=flotilla")
    items: list[dict[str, Any]] = found["items"]
    return items


def _server_version(fleet: Fleet, cluster: str) -> str:
    result = kubectl(fleet.clusters[cluster].kubeconfig, "version", "-o", "json")
    return str(yaml.safe_load(result.stdout)["serverVersion"]["gitVersion"])


async def test_kube_apiserver_answers_an_unchanged_discovery_with_304s(
    e2e_clusters: list[ClusterInfo],
) -> None:
    """What makes the prober's refresh cheap, on the real API server: both aggregated
    documents carry an ETag and are not sent again while it holds. Another test may add a
    CRD in between (the clusters are shared), so a few tries are allowed."""
    info = e2e_clusters[0]
    client = await ClusterClient.connect(yaml.safe_load(info.kubeconfig.read_text()))
    try:
        first = await discover(client)
        assert set(first.etags) == set(DOCUMENTS)
        assert first.capabilities.kube_version.startswith("v1.34.")
        assert {"v1", "v1/Pod", "apps/v1", "apps/v1/Deployment", "apps/v1/Scale"} <= set(
            first.capabilities.api_versions
        )
        for _ in range(5):
            answers = [
                await client.get_unless_match(path, accept=AGGREGATED, etag=first.etags[path])
                for path in DOCUMENTS
            ]
            if all(document is None for _, document in answers):
                break
            first = await discover(client)
        assert [document for _, document in answers] == [None, None]
        assert (await discover(client, first)).capabilities == first.capabilities
    finally:
        await client.close()


async def test_a_refresh_asks_the_version_and_the_core_group_only_now_and_then(
    e2e_clusters: list[ClusterInfo],
) -> None:
    """Between two full discoveries a refresh asks `/apis` alone (one request), keeping the
    server version and the core group; every FULL_EVERY refreshes, or whenever `/apis`
    changed (another test may add a CRD meanwhile), it asks all three again."""
    client = await ClusterClient.connect(yaml.safe_load(e2e_clusters[1].kubeconfig.read_text()))
    try:
        found = await discover(client)
        full = 0
        for _ in range(FULL_EVERY + 1):
            before = client.stats.requests.get("GET", 0)
            refreshed = await discover(client, found)
            asked = client.stats.requests.get("GET", 0) - before
            if refreshed.partial == 0:
                full += 1
                assert asked == 3
            else:
                assert (asked, refreshed.partial) == (1, found.partial + 1)
                assert refreshed.capabilities == found.capabilities
            assert refreshed.partial < FULL_EVERY
            found = refreshed
        # One every FULL_EVERY, and one or two more if another test's CRD came and went.
        assert 1 <= full <= 3
        assert found.capabilities.kube_version.startswith("v1.34.")
    finally:
        await client.close()


def test_each_cluster_renders_what_it_serves(fleet: Fleet, groups: dict[str, str]) -> None:
    members = fleet.hub.ok("cluster", "list", "-o", "json").json()["clusters"]
    # Only a count: other tests add and remove CRDs on these clusters meanwhile.
    counts = {m["name"]: m["apiVersions"] for m in members}
    assert all(isinstance(n, int) and n > 50 for n in counts.values()), counts
    path = fleet.app(name=CHART, chart=CHART, values=_values(groups))
    assert _planned_kinds(fleet, path) == {c: {"ConfigMap"} for c in fleet.clusters}

    # Served after the join: seen once the prober's refresh has discovered them.
    _serve(fleet, "dev", groups["monitor"], "ServiceMonitor")
    _serve(fleet, "prod-eu", groups["route"], "HTTPRoute")
    expected = {
        "dev": {"ConfigMap", "ServiceMonitor"},
        "prod-eu": {"ConfigMap", "HTTPRoute"},
        "prod-us": {"ConfigMap"},
    }
    until(
        lambda: _planned_kinds(fleet, path) == expected,
        timeout=REFRESH_BOUND,
        what="the new CRDs in the plan",
    )

    deployed = fleet.up(path, "--wait")
    assert deployed.code == 0, deployed.stderr

    status = fleet.status(CHART)
    applied = {
        cluster["name"]: {o["kind"] for r in cluster["releases"] for o in r["objects"]}
        for step in status["steps"]
        for cluster in step["clusters"]
    }
    assert applied == expected
    for cluster, resource in (
        ("dev", f"servicemonitors.{groups['monitor']}"),
        ("prod-eu", f"httproutes.{groups['route']}"),
    ):
        assert [o["metadata"]["name"] for o in _get(fleet, cluster, resource)] == [CHART]
    for cluster, kinds in expected.items():
        [configmap] = _get(fleet, cluster, "configmaps")
        data = configmap["data"]
        assert data["kubeVersion"] == _server_version(fleet, cluster)
        assert data["kubeVersion"].startswith("v1.34.")
        assert data["kubeMinor"] == "34"
        assert (data["monitor"], data["route"]) == (
            str("ServiceMonitor" in kinds).lower(),
            str("HTTPRoute" in kinds).lower(),
        )
    fleet.hub.ok("delete", CHART, "--yes", timeout=300)


def _local_copy(fleet: Fleet, kube_version: str) -> Path:
    """The chart in a directory of the test's own, with another `kubeVersion`."""
    charts = fleet.workdir / "charts"
    shutil.copytree(CHARTS_DIR / CHART, charts / CHART)
    meta = yaml.safe_load((charts / CHART / "Chart.yaml").read_text())
    (charts / CHART / "Chart.yaml").write_text(yaml.safe_dump(meta | {"kubeVersion": kube_version}))
    return charts


def test_kube_version_outside_the_range_fails_only_its_targets(
    fleet: Fleet, groups: dict[str, str]
) -> None:
    good = fleet.app(name="fits", chart=CHART, values=_values(groups))
    assert fleet.up(good, "--wait").code == 0
    charts = _local_copy(fleet, ">=1.99.0-0")
    path = fleet.app(name="too-new", chart=CHART)
    document = yaml.safe_load(path.read_text())
    component = document["spec"]["components"][0]
    component["properties"] |= {"repoType": "local", "url": str(charts)}
    path.write_text(yaml.safe_dump(document))
    version = _server_version(fleet, "dev")

    planned = fleet.hub.cli("plan", "-f", str(path), "-o", "json")
    assert planned.code == 2, planned.stderr
    errors = {t["cluster"]: t["error"] for s in planned.json()["steps"] for t in s["targets"]}
    assert errors == {
        cluster: f"chart {CHART} 1.0.0 requires Kubernetes >=1.99.0-0; cluster {cluster} "
        f"runs {_server_version(fleet, cluster)}"
        for cluster in fleet.clusters
    }

    failed = fleet.up(path, "--wait")
    assert failed.code != 0
    status = fleet.status("too-new")
    assert status["phase"] == "failed"
    [dev] = [c for s in status["steps"] for c in s["clusters"] if c["name"] == "dev"]
    [release] = dev["releases"]
    assert release["message"] == (
        f"chart {CHART} 1.0.0 requires Kubernetes >=1.99.0-0; cluster dev runs {version}"
    )
    names = {c["metadata"]["name"] for c in _get(fleet, "dev", "configmaps")}
    assert names == {"fits-capabilities"}  # nothing of the refused release was applied
    # The application that fits is untouched, and the hub goes on answering.
    assert fleet.status("fits")["health"] == "Healthy"
    assert fleet.hub.ok("cluster", "list", "-o", "json").json()["clusters"]
    fleet.hub.ok("delete", "too-new", "--yes", timeout=300)
    fleet.hub.ok("delete", "fits", "--yes", timeout=300)
