"""The harness' Prometheus measures what the simulated pods were asked to do: the error ratio of
an `errors-30` image on the cluster it runs on, none for a plain image, the pods' labels; it
keeps its data across a pause, during which queries fail; and basic auth keeps strangers out."""

from __future__ import annotations

import base64
import math
import time
import urllib.error
import urllib.request

import pytest

from e2e.clusters import ClusterInfo
from e2e.kubectl import kubectl
from e2e.prometheus import Prometheus, start_prometheus
from tests.fleet import NAMES, until

pytestmark = pytest.mark.cluster

# Pod start, a few 1 s scrapes and a filled 10 s window take seconds; this only bounds a hang.
DEADLINE = 60.0

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app.kubernetes.io/name: web}}}}
  template:
    metadata: {{labels: {{app.kubernetes.io/name: web}}}}
    spec:
      containers: [{{name: web, image: "{image}"}}]
"""


def value(server: Prometheus, promql: str) -> float | None:
    """The one number `promql` evaluates to, or None while there is none (no series yet, or
    0/0 before a window holds two scrapes)."""
    result = server.query(promql)
    if not result:
        return None
    [sample] = result
    number = float(sample["value"][1])
    return None if math.isnan(number) else number


def error_ratio(cluster: str, namespace: str) -> str:
    where = f'cluster="{cluster}",namespace="{namespace}"'
    return (
        f'sum(rate(http_requests_total{{{where},code="500"}}[10s]))'
        f" / sum(rate(http_requests_total{{{where}}}[10s]))"
    )


def deploy(info: ClusterInfo, namespace: str, image: str, replicas: int = 1) -> None:
    manifest = DEPLOYMENT.format(image=image, replicas=replicas)
    kubectl(info.kubeconfig, "apply", "-n", namespace, "-f", "-", stdin=manifest)


def test_the_error_ratio_is_what_the_image_asks_for_on_its_cluster_only(
    prometheus: Prometheus, e2e_clusters: list[ClusterInfo], namespace: str
) -> None:
    failing, healthy = e2e_clusters[0], e2e_clusters[1]
    deploy(failing, namespace, "ghcr.io/x/app:2.0.0-errors-30", replicas=2)
    deploy(healthy, namespace, "ghcr.io/x/app:2.0.0")
    failing_name, healthy_name = NAMES[0], NAMES[1]  # as the fixture labels them

    ratio = error_ratio(failing_name, namespace)
    seen: list[float | None] = []

    def near_thirty_percent() -> bool:
        seen.append(value(prometheus, ratio))
        return seen[-1] is not None and abs(seen[-1] - 0.30) < 0.05

    until(near_thirty_percent, DEADLINE, f"{ratio} near 0.30 (last {seen[-1:]})")

    plain: list[float | None] = [None]

    def measured() -> bool:
        plain[0] = value(prometheus, error_ratio(healthy_name, namespace))
        return plain[0] is not None

    until(measured, DEADLINE, f"an error ratio for {healthy_name}")
    assert plain[0] == 0.0

    series = prometheus.query(
        f'http_requests_total{{cluster="{failing_name}",namespace="{namespace}",code="200"}}',
    )
    assert len(series) == 2
    for metric in (s["metric"] for s in series):
        assert metric["app"] == "web"
        assert metric["canary"] == "false"
        assert metric["pod"].startswith(f"web-{metric['pod_template_hash']}-")
        assert metric["job"] == "apps"


def test_queries_fail_while_paused_and_the_data_is_back_after(prometheus: Prometheus) -> None:
    before = time.time()
    targets = {s["metric"]["cluster"] for s in prometheus.query('up{job="apps"}', at=before)}
    assert targets == set(prometheus.targets)
    prometheus.pause()
    try:
        stopped = time.time()
        with pytest.raises(urllib.error.URLError):
            prometheus.query("up")
    finally:
        prometheus.resume()
    assert {s["metric"]["cluster"] for s in prometheus.query("up", at=before)} == targets
    # resume() waited for a scrape of every target: samples from after the pause, too.
    fresh = prometheus.query(f'timestamp(up{{job="apps"}}) > {stopped}')
    assert {s["metric"]["cluster"] for s in fresh} == targets


def test_basic_auth_lets_in_only_its_user() -> None:
    with start_prometheus({}, basic_auth=("flotilla", "s3cret")) as guarded:
        assert guarded.query("vector(1)")[0]["value"][1] == "1"
        wrong = base64.b64encode(b"flotilla:guess").decode()
        for headers in ({}, {"Authorization": f"Basic {wrong}"}):
            request = urllib.request.Request(f"{guarded.url}/api/v1/query?query=1", headers=headers)
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=5)
            refused.value.close()
            assert refused.value.code == 401
