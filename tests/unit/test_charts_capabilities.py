"""Rendering with a cluster's capabilities: what Helm is handed, what the render cache keys,
Helm's version set of a discovery document, and `kubeVersion` per cluster at plan time.

The render tests go through Helm itself: they fail if an upgrade of helm-python-sdk stops
passing `kube_version` / `api_versions` through (or renames them), which its 0.2.2 Python
API does not expose.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from clusters.discovery import Capabilities, DiscoveryUnsupported, version_set
from hub.charts import ChartCache, ChartRef, LoadedChart
from hub.charts.kubeversion import IncompatibleCluster
from hub.format import load_application
from hub.model.records import ClusterRecord
from hub.service.planner import failures, plan

PROBE = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: probe
data:
  version: {{ .Capabilities.KubeVersion.Version | quote }}
  minor: {{ .Capabilities.KubeVersion.Minor | quote }}
  monitor: {{ .Capabilities.APIVersions.Has "monitoring.coreos.com/v1/ServiceMonitor" | quote }}
  group: {{ .Capabilities.APIVersions.Has "gateway.networking.k8s.io/v1" | quote }}
"""
CAPS = Capabilities.of(
    "v1.31.2-gke.100",
    ["v1", "apps/v1", "monitoring.coreos.com/v1", "monitoring.coreos.com/v1/ServiceMonitor"],
)


def write_chart(root: Path, kube_version: str | None = None) -> Path:
    chart = root / "probe"
    (chart / "templates").mkdir(parents=True)
    meta = {"apiVersion": "v2", "name": "probe", "version": "1.0.0"}
    if kube_version:
        meta["kubeVersion"] = kube_version
    (chart / "Chart.yaml").write_text(yaml.safe_dump(meta))
    (chart / "templates" / "probe.yaml").write_text(PROBE)
    return root


async def load(root: Path, kube_version: str | None = None) -> LoadedChart:
    write_chart(root, kube_version)
    return await ChartCache(root / "cache").fetch(ChartRef("local", str(root), "probe"))


def probe(chart: LoadedChart, capabilities: Capabilities | None) -> dict[str, str]:
    [configmap] = chart.render({}, release_name="rel", namespace="ns", capabilities=capabilities)
    data: dict[str, str] = configmap["data"]
    return data


async def test_helm_renders_with_the_clusters_version_and_api_versions(tmp_path: Path) -> None:
    chart = await load(tmp_path)

    assert probe(chart, CAPS) == {
        "version": "v1.31.2-gke.100",
        "minor": "31",
        "monitor": "true",
        "group": "false",
    }


async def test_without_capabilities_helm_renders_with_its_defaults(tmp_path: Path) -> None:
    chart = await load(tmp_path)

    data = probe(chart, None)

    assert data["version"] != CAPS.kube_version
    assert data["monitor"] == "false"


async def test_the_render_cache_keys_capabilities(tmp_path: Path) -> None:
    chart = await load(tmp_path)
    other = Capabilities.of("v1.34.4", ["v1", "gateway.networking.k8s.io/v1"])

    first, second, again = probe(chart, CAPS), probe(chart, other), probe(chart, CAPS)

    assert (first["version"], second["version"], again["version"]) == (
        "v1.31.2-gke.100",
        "v1.34.4",
        "v1.31.2-gke.100",
    )
    assert second["group"] == "true"


def test_capabilities_digest_ignores_order_and_tells_sets_apart() -> None:
    same = Capabilities.of("v1.34.4", ["b/v1", "a/v1", "a/v1"])
    assert same == Capabilities.of("v1.34.4", ["a/v1", "b/v1"])
    assert same.digest == Capabilities.of("v1.34.4", ["a/v1", "b/v1"]).digest
    assert same.digest != Capabilities.of("v1.34.5", ["a/v1", "b/v1"]).digest
    assert same.digest != Capabilities.of("v1.34.4", ["a/v1"]).digest


async def test_kube_version_outside_the_range_names_chart_cluster_and_version(
    tmp_path: Path,
) -> None:
    chart = await load(tmp_path, ">=1.99.0-0")

    with pytest.raises(IncompatibleCluster) as refused:
        chart.check_cluster(Capabilities.of("v1.34.4", []), "prod-eu")
    chart.check_cluster(Capabilities.of("v1.99.1", []), "future")

    assert str(refused.value) == (
        "chart probe 1.0.0 requires Kubernetes >=1.99.0-0; cluster prod-eu runs v1.34.4"
    )


# Helm's version set of an aggregated discovery document

DOCUMENT: dict[str, Any] = {
    "kind": "APIGroupDiscoveryList",
    "apiVersion": "apidiscovery.k8s.io/v2",
    "items": [
        {
            "metadata": {"name": "apps"},
            "versions": [
                {
                    "version": "v1",
                    "resources": [
                        {
                            "resource": "deployments",
                            "responseKind": {"group": "", "version": "", "kind": "Deployment"},
                            "subresources": [
                                {
                                    "subresource": "scale",
                                    "responseKind": {
                                        "group": "autoscaling",
                                        "version": "v1",
                                        "kind": "Scale",
                                    },
                                },
                                {"subresource": "status", "responseKind": None},
                            ],
                        },
                        {"resource": "nokind"},
                    ],
                }
            ],
        },
        {
            "metadata": {"name": "metrics.example.com"},
            "versions": [
                {"version": "v1", "freshness": "Stale", "resources": []},
                {"version": "v1beta1", "resources": []},
            ],
        },
        {
            "metadata": {"name": ""},
            "versions": [
                {
                    "version": "v1",
                    "resources": [{"resource": "pods", "responseKind": {"kind": "Pod"}}],
                }
            ],
        },
    ],
}


def test_version_set_is_helms_group_versions_and_kinds() -> None:
    assert version_set(DOCUMENT) == {
        "apps/v1",
        "apps/v1/Deployment",
        "apps/v1/Scale",  # a subresource's kind, under its parent's group/version
        "metrics.example.com/v1beta1",  # a stale version is left out, as client-go does
        "v1",
        "v1/Pod",
    }


def test_a_legacy_discovery_answer_is_refused_by_name() -> None:
    with pytest.raises(DiscoveryUnsupported, match="not an APIGroupDiscoveryList"):
        version_set({"kind": "APIGroupList", "groups": []})


# kubeVersion per cluster, at plan time: only the cluster outside the range is refused

APP = """
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: {name: probe}
spec:
  components:
    - name: probe
      type: helm
      properties: {repoType: local, url: ./charts, chart: probe}
  policies:
    - name: everywhere
      type: topology
      properties: {clusters: [old, new]}
"""


async def test_plan_refuses_only_the_cluster_outside_kube_version(tmp_path: Path) -> None:
    write_chart(tmp_path / "charts", ">=1.30.0-0")
    clusters = [ClusterRecord(name, "https://127.0.0.1:1", {}, "token") for name in ("old", "new")]
    versions = {"old": "v1.29.9-eks.3", "new": "v1.31.2-gke.100"}

    async def capabilities(name: str) -> Capabilities:
        return Capabilities.of(versions[name], ["v1"])

    app = load_application(APP, "app.yaml")
    planned = await plan(
        app,
        "app.yaml",
        clusters,
        ChartCache(tmp_path / "cache"),
        base=tmp_path,
        capabilities=capabilities,
    )

    by_cluster = {p.target.cluster: p for p in planned}
    assert by_cluster["old"].refused == (
        "chart probe 1.0.0 requires Kubernetes >=1.30.0-0; cluster old runs v1.29.9-eks.3"
    )
    assert by_cluster["old"].objects == []
    assert by_cluster["new"].refused is None
    assert [o["data"]["version"] for o in by_cluster["new"].objects] == ["v1.31.2-gke.100"]
    assert failures(planned) is None  # a refusal refuses no `up`: the target fails alone
