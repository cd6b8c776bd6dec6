"""Metric analysis that decides for the whole fleet, against a real Prometheus scraping the
simulated pods (an image tag `errors-N` answers N% of requests with 500).

The canary's environment is dev and prod-eu, and prod-us comes after it: a bad canary on
one of the two is rolled back on both, and prod-us is never touched.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.prometheus import Prometheus
from tests.fleet import Fleet, phase, until
from tests.shapes import assert_shape

pytestmark = pytest.mark.cluster

CANARY_ENV = ("dev", "prod-eu")
LATER = "prod-us"
STABLE = "app.kubernetes.io/name=canary-demo,!flotilla.dev/canary"
CANARY = "flotilla.dev/canary=true"
# The canary pods' share of 500s over the last 10 s, on the cluster measured.
ERROR_RATE = (
    'sum(rate(http_requests_total{cluster="${cluster.name}",namespace="${namespace}",'
    'canary="true",code="500"}[10s])) / sum(rate(http_requests_total{cluster="${cluster.name}",'
    'namespace="${namespace}",canary="true"}[10s]))'
)


def _analysis(prometheus: Prometheus, **limits: Any) -> dict[str, Any]:
    return {
        "interval": "2s",
        "successCount": 2,
        "failureLimit": 0,
        "consecutiveErrorLimit": 10,  # a new canary's first seconds have no rate yet
        "metricEndpoint": prometheus.url,
        "metrics": [{"name": "error-rate", "query": ERROR_RATE, "condition": "<0.1"}],
    } | limits


def _application(
    fleet: Fleet,
    *,
    version: str,
    analysis: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
    check: dict[str, Any] | None = None,
    pause: dict[str, Any] | None = None,
) -> Path:
    """canary-demo on dev + prod-eu (a canary there), then on prod-us; `tags`: the image tag
    per cluster, `check`: a check-metrics step's properties after the first environment."""
    canary: dict[str, Any] = {
        "steps": [{"weight": 50, "pause": pause if pause is not None else {"duration": 0}}],
        "trafficRoutings": [{"type": "nginx"}],
    }
    if analysis is not None:
        canary["analysis"] = analysis
    overrides = [
        {
            "name": f"tag-{cluster}",
            "type": "override",
            "properties": {
                "clusters": [cluster],
                "components": [
                    {"name": "canary-demo", "properties": {"values": {"image": {"tag": tag}}}}
                ],
            },
        }
        for cluster, tag in (tags or {}).items()
    ]
    steps: list[dict[str, Any]] = [
        {
            "name": "deploy-first",
            "type": "deploy",
            "properties": {"policies": ["first", *(o["name"] for o in overrides)]},
        }
    ]
    if check is not None:
        steps.append({"name": "check-errors", "type": "check-metrics", "properties": check})
    steps.append(
        {
            "name": "deploy-later",
            "type": "deploy",
            "properties": {"policies": ["later", *(o["name"] for o in overrides)]},
        }
    )
    topology = [
        {
            "name": name,
            "type": "topology",
            "properties": {"clusters": list(clusters), "namespace": fleet.namespace},
        }
        for name, clusters in (("first", CANARY_ENV), ("later", (LATER,)))
    ]
    document = {
        "apiVersion": "core.oam.dev/v1beta1",
        "kind": "Application",
        "metadata": {"name": "canary-demo"},
        "spec": {
            "components": [
                fleet.component(
                    version=version,
                    values={"replicaCount": 2},
                    traits=[{"type": "kruise-rollout", "properties": {"canary": canary}}],
                )
            ],
            "policies": topology + overrides,
            "workflow": {"steps": steps},
        },
    }
    path = fleet.workdir / f"analysis-{time.monotonic_ns()}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _stable_uids(fleet: Fleet) -> dict[str, set[str]]:
    return {c: {p["metadata"]["uid"] for p in fleet.pods(c, STABLE)} for c in fleet.clusters}


def _canary_objects(fleet: Fleet, cluster: str) -> list[str]:
    found = fleet.kubectl(cluster, "get", "deployments,services,ingresses", "-l", CANARY)
    return [f"{o['kind']}/{o['metadata']['name']}" for o in found["items"]]


def _until_no_canary(fleet: Fleet, cluster: str) -> None:
    until(lambda: not _canary_objects(fleet, cluster), 60, f"no canary on {cluster}")


def _analysis_of(fleet: Fleet, step: str = "deploy-first") -> list[dict[str, Any]]:
    status = fleet.status()
    found: list[dict[str, Any]] = next(s for s in status["steps"] if s["name"] == step)["analysis"]
    return found


def _deploy_v1(fleet: Fleet, **app: Any) -> dict[str, set[str]]:
    result = fleet.up(_application(fleet, version="1.0.0", **app), "--wait")
    assert result.code == 0, result.stderr
    return _stable_uids(fleet)


def test_a_good_canary_passes_its_analysis_and_finishes_alone_across_a_hub_kill(
    fleet: Fleet, prometheus: Prometheus
) -> None:
    analysis = _analysis(prometheus, successCount=5)
    _deploy_v1(fleet, analysis=analysis)
    fleet.up(_application(fleet, version="2.0.0", analysis=analysis))

    def passing_on_both() -> bool:
        measured = _analysis_of(fleet)
        return {m["cluster"] for m in measured if m["passes"] >= 1} == set(CANARY_ENV)

    until(passing_on_both, 180, "the analysis passing on both clusters")
    before = {m["cluster"]: m["passes"] for m in _analysis_of(fleet)}
    fleet.hub.kill()  # SIGKILL mid-analysis
    fleet.hub.start()
    after = {m["cluster"]: m["passes"] for m in _analysis_of(fleet)}
    assert all(after[c] >= before[c] for c in CANARY_ENV), (before, after)
    until(lambda: phase(fleet) in ("succeeded", "failed"), 300, "the workflow ends")
    status = fleet.status()
    assert status["phase"] == "succeeded", status["message"]
    assert_shape(status, "status")
    measured = _analysis_of(fleet)
    assert {m["cluster"] for m in measured} == set(CANARY_ENV)
    for m in measured:
        assert (m["metric"], m["verdict"], m["condition"]) == ("error-rate", "passed", "<0.1")
        assert m["passes"] == 5  # counted on from the store, not started over
        assert m["value"] is not None and m["value"] < 0.1
    for cluster in fleet.clusters:
        assert fleet.image(cluster) == "registry.local/canary-demo:2.0.0"
        assert _canary_objects(fleet, cluster) == []
    assert "Traceback" not in fleet.hub.log()


def test_a_canary_failing_on_one_cluster_is_rolled_back_on_every_cluster(
    fleet: Fleet, prometheus: Prometheus
) -> None:
    bad = {"prod-eu": "2.0.0-errors-30"}
    uids = _deploy_v1(fleet)
    later = fleet.deployment(LATER)
    assert later is not None
    result = fleet.up(
        _application(fleet, version="2.0.0", analysis=_analysis(prometheus), tags=bad), "--wait"
    )
    assert result.code == 1, result.stdout
    status = fleet.status()
    assert status["phase"] == "failed"
    assert "prod-eu" in status["message"] and "error-rate" in status["message"]
    assert "broke <0.1" in status["message"], status["message"]
    step = next(s for s in status["steps"] if s["name"] == "deploy-first")
    failing = next(m for m in step["analysis"] if m["cluster"] == "prod-eu")
    assert (failing["verdict"], failing["outcome"]) == ("failed", "fail")
    assert failing["value"] == pytest.approx(0.3, abs=0.08)
    for cluster in CANARY_ENV:
        _until_no_canary(fleet, cluster)
        assert fleet.image(cluster) == "registry.local/canary-demo:1.0.0"
        assert _stable_uids(fleet)[cluster] == uids[cluster], "a stable pod was restarted"
        deployment = fleet.deployment(cluster)
        assert deployment is not None and not deployment["spec"].get("paused")
        selector = fleet.kubectl(cluster, "get", "service", "canary-demo")["spec"]["selector"]
        assert "pod-template-hash" not in selector
    now = fleet.deployment(LATER)
    assert now is not None
    assert now["metadata"]["generation"] == later["metadata"]["generation"]
    assert fleet.image(LATER) == "registry.local/canary-demo:1.0.0"
    assert _stable_uids(fleet)[LATER] == uids[LATER]
    events = fleet.hub.ok("history", "canary-demo", "-o", "json").json()["events"]
    assert any("analysis failed" in e["message"] and "prod-eu" in e["message"] for e in events)


def test_prometheus_stopped_mid_analysis_aborts_after_its_errors_in_a_row(
    fleet: Fleet, prometheus: Prometheus
) -> None:
    analysis = _analysis(prometheus, successCount=1000, consecutiveErrorLimit=2, interval="1s")
    _deploy_v1(fleet)
    fleet.up(_application(fleet, version="2.0.0", analysis=analysis))
    until(lambda: len(_analysis_of(fleet)) == 2, 180, "measurements on both clusters")
    prometheus.pause()
    try:
        until(lambda: phase(fleet) == "failed", 120, "the analysis errs out")
    finally:
        prometheus.resume()
    status = fleet.status()
    assert "measurement errors in a row" in status["message"], status["message"]
    assert "unreachable" in status["message"]
    for cluster in CANARY_ENV:
        _until_no_canary(fleet, cluster)
        assert fleet.image(cluster) == "registry.local/canary-demo:1.0.0"


def test_a_check_metrics_step_fails_on_the_cluster_that_breaks_its_condition(
    fleet: Fleet, prometheus: Prometheus
) -> None:
    check = {
        "query": ERROR_RATE.replace(',canary="true"', "").replace("${namespace}", fleet.namespace),
        "condition": "<0.1",
        "duration": "4s",
        "failDuration": "4s",
        "interval": "1s",
    }
    path = _application(fleet, version="1.0.0", tags={"prod-eu": "1.0.0-errors-30"}, check=check)
    refused = fleet.up(path)  # no metricEndpoint, and no cluster has a Prometheus yet
    assert refused.code == 2
    assert "check-metrics step check-errors names no metricEndpoint" in refused.stderr
    assert "flotilla cluster prometheus dev URL" in refused.stderr
    assert "Traceback" not in refused.stderr
    for cluster in CANARY_ENV:  # the clusters' own Prometheus
        fleet.hub.ok("cluster", "prometheus", cluster, prometheus.url)
    result = fleet.up(path, "--wait")
    assert result.code == 1
    status = fleet.status()
    assert status["phase"] == "failed"
    step = next(s for s in status["steps"] if s["name"] == "check-errors")
    assert step["phase"] == "failed"
    assert "prod-eu" in step["message"] and "broke <0.1" in step["message"], step["message"]
    verdicts = {m["cluster"]: m["verdict"] for m in step["analysis"]}
    assert verdicts["prod-eu"] == "failed"
    assert verdicts["dev"] in ("passed", "running")
    later = next(s for s in status["steps"] if s["name"] == "deploy-later")
    assert later["phase"] == "pending"
    assert fleet.deployment(LATER) is None
