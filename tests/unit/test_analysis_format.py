"""Metric analysis in the Application file: a canary's `analysis`, KubeVela's `check-metrics`
step, their conditions and query placeholders, and every refusal with its path."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml

from hub.format import (
    CanaryAnalysis,
    CheckMetricsStep,
    Condition,
    DeployStep,
    MissingPlaceholder,
    SpecError,
    cluster_values,
    deploy_step_before,
    expand,
    json_schema,
    load_application,
    per_cluster,
    placeholders,
    trait_properties,
)
from placement.targets import resolve
from placement.topology import ClusterInfo
from tests.unit.documents import edited

EXAMPLE = """\
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: web
spec:
  components:
    - name: web
      type: helm
      properties:
        url: http://127.0.0.1:8879/
        chart: web
        version: "1.0.0"
      traits:
        - type: kruise-rollout
          properties:
            canary:
              steps:
                - weight: 20
                  pause: {duration: 2m}
                - weight: 60
              trafficRoutings:
                - type: nginx
              analysis:
                interval: 15s
                successCount: 4
                failureLimit: 1
                metrics:
                  - name: error-rate
                    query: >-
                      sum(rate(http_requests_total{namespace="${namespace}",
                      pod=~"${canary.workload}-.*", code=~"5.."}[1m]))
                      / sum(rate(http_requests_total{namespace="${namespace}",
                      pod=~"${canary.workload}-.*"}[1m]))
                    condition: "<0.05"
                  - name: latency
                    query: >-
                      histogram_quantile(0.99, sum by (le) (rate(
                      request_seconds_bucket{cluster="${cluster.name}"}[5m])))
                    condition: ">0 & <0.5"
                    metricEndpoint: https://thanos.example:9090
  policies:
    - name: dev
      type: topology
      properties:
        clusterLabelSelector: {env: dev}
    - name: prod
      type: topology
      properties:
        clusterLabelSelector: {env: prod}
  workflow:
    steps:
      - name: deploy-dev
        type: deploy
        properties: {policies: [dev]}
      - name: dev-healthy
        type: check-metrics
        properties:
          query: sum(up{job="web", region="${cluster.labels.region}"})
          condition: ">=1"
          duration: 1m
      - name: fleet-slo
        type: check-metrics
        properties:
          query: sum(rate(slo_errors_total{app="${app}"}[5m]))
          metricEndpoint: https://thanos.example:9090
          condition: "==0"
          failDuration: 30s
          interval: 5s
      - name: deploy-prod
        type: deploy
        properties: {policies: [prod]}
"""
BASE: dict[str, Any] = yaml.safe_load(EXAMPLE)
TRAIT = "spec.components[0].traits[0].properties"
ANALYSIS = f"{TRAIT}.canary.analysis"


def test_a_canary_with_analysis_and_check_metrics_steps_load() -> None:
    app = load_application(EXAMPLE, "web.yaml")
    analysis = app.spec.components[0].traits[0].properties.canary.analysis
    assert isinstance(analysis, CanaryAnalysis)
    assert (analysis.interval, analysis.success_count, analysis.failure_limit) == ("15s", 4, 1)
    assert analysis.consecutive_error_limit == 4
    error_rate, latency = analysis.metrics
    assert error_rate.condition == Condition.parse("<0.05")
    assert str(latency.condition) == ">0 & <0.5"
    assert analysis.endpoint_of(error_rate) is None
    assert analysis.endpoint_of(latency) == "https://thanos.example:9090"
    assert placeholders(error_rate.query) == {"namespace", "canary.workload"}

    assert app.spec.workflow is not None
    _, healthy, slo, _ = app.spec.workflow.steps
    assert isinstance(healthy, CheckMetricsStep) and isinstance(slo, CheckMetricsStep)
    assert healthy.properties.model_dump(exclude={"query"}) == {
        "metricEndpoint": None,
        "condition": ">=1",
        "duration": "1m",
        "failDuration": "2m",
        "interval": "10s",
    }
    assert healthy.properties.measures_each_cluster
    assert not slo.properties.measures_each_cluster
    assert app.check_metrics_step("fleet-slo") is slo
    assert app.deploy_step_before("dev-healthy") == "deploy-dev"
    with pytest.raises(KeyError):
        app.check_metrics_step("deploy-dev")


def test_defaults_of_an_analysis() -> None:
    analysis = CanaryAnalysis.model_validate(
        {"metrics": [{"name": "m", "query": "up", "condition": ">=1"}]}
    )
    assert (
        analysis.interval,
        analysis.success_count,
        analysis.failure_limit,
        analysis.consecutive_error_limit,
        analysis.metric_endpoint,
    ) == ("30s", 3, 0, 4, None)


def test_analysis_survives_placement_and_overrides() -> None:
    """Placement hands traits over as plain data: conditions go as text and come back."""
    doc = copy.deepcopy(BASE)
    doc["spec"]["policies"].append(
        {
            "name": "stricter-in-prod",
            "type": "override",
            "properties": {
                "clusterLabelSelector": {"env": "prod"},
                "components": [
                    {
                        "name": "web",
                        "traits": [
                            {
                                "type": "kruise-rollout",
                                "properties": {"canary": {"analysis": {"failureLimit": 0}}},
                            }
                        ],
                    }
                ],
            },
        }
    )
    doc["spec"]["workflow"]["steps"][-1]["properties"]["policies"] = ["stricter-in-prod", "prod"]
    app = load_application(yaml.safe_dump(doc), "web.yaml")
    clusters = [ClusterInfo("dev-1", {"env": "dev"}), ClusterInfo("prod-1", {"env": "prod"})]
    targets = {t.cluster: t for t in resolve(app.to_placement(), clusters, {"web": {}})}
    dev, prod = (
        trait_properties("kruise-rollout", targets[c].traits["kruise-rollout"]).canary.analysis
        for c in ("dev-1", "prod-1")
    )
    assert dev is not None and prod is not None
    assert (dev.failure_limit, prod.failure_limit) == (1, 0)
    assert prod.metrics[1].condition.holds(0.2)
    assert app.model_validate(app.model_dump(exclude_unset=True)) == app


@pytest.mark.parametrize(
    ("text", "holds", "breaks"),
    [
        (">=0.95", [0.95, 1.0], [0.9499]),
        ("<0.05", [0.0, -1.0], [0.05, 0.5]),
        ("==1", [1.0], [0.0, 1.0001]),
        ("!=0", [1.0, -0.1], [0.0]),
        ("> 0.5 & < 2", [0.51, 1.99], [0.5, 2.0]),
        (">=-1e3&<=.5", [-1000.0, 0.5], [-1001.0, 0.51]),
        ("<=+2.", [2.0], [2.1]),
    ],
)
def test_conditions_read_as_kubevela_and_cue_do(
    text: str, holds: list[float], breaks: list[float]
) -> None:
    condition = Condition.parse(text)
    assert str(condition) == text
    assert all(condition.holds(v) for v in holds)
    assert not any(condition.holds(v) for v in breaks)


RULE = (
    "(one of >=, <=, >, <, ==, != and a number, such as >=0.95; join several with &, such as "
    ">0.5 & <2)"
)


@pytest.mark.parametrize(
    ("text", "wrong"),
    [
        ("=>0.9", "'=>0.9' is not a comparison"),
        ("0.95", "'0.95' is not a comparison"),
        (">= x", "'>= x' is not a comparison"),
        (">0.5 and <2", "'>0.5 and <2' is not a comparison"),
        (">0.5 && <2", "a comparison is missing around &"),
        (">0.5 &", "a comparison is missing around &"),
        ("", "it is empty"),
    ],
)
def test_a_condition_that_is_none_is_refused_saying_why(text: str, wrong: str) -> None:
    with pytest.raises(ValueError) as raised:
        Condition.parse(text)
    assert str(raised.value) == f"{text!r} is not a condition: {wrong} {RULE}"


def test_placeholders_and_their_expansion() -> None:
    query = 'up{cluster="${cluster.name}", region="${cluster.labels.region}", app="${app}"}'
    assert placeholders(query) == {"cluster.name", "cluster.labels.region", "app"}
    assert per_cluster(query)
    assert not per_cluster('up{app="${app}", pod=~"${canary.workload}-.*"}')
    values = cluster_values("prod-eu", {"region": "eu"}) | {"app": "web"}
    assert values == {"cluster.name": "prod-eu", "cluster.labels.region": "eu", "app": "web"}
    assert expand(query, values) == 'up{cluster="prod-eu", region="eu", app="web"}'
    assert expand("up", {}) == "up"


def test_expanding_names_the_placeholder_without_a_value() -> None:
    query = 'up{region="${cluster.labels.region}", app="${app}"}'
    with pytest.raises(MissingPlaceholder) as raised:
        expand(query, cluster_values("prod-us", {}) | {"app": "web"})
    assert raised.value.placeholder == "cluster.labels.region"
    assert (
        str(raised.value)
        == "no value for ${cluster.labels.region}: the cluster has no label 'region'"
    )
    with pytest.raises(MissingPlaceholder, match=r"^no value for \$\{app\}$"):
        expand(query, {"cluster.labels.region": "us"})


def at(path: str, value: Any) -> dict[str, Any]:
    """BASE with `value` at a dotted `path` (list indexes as numbers); `...` deletes."""
    return edited(BASE, path, value)


def steps(*written: dict[str, Any], mode: str = "StepByStep") -> dict[str, Any]:
    return at("spec.workflow", {"steps": list(written), "mode": {"steps": mode}})


def check(name: str = "check", **properties: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": "check-metrics",
        "properties": {"query": "sum(up)", "condition": ">=1", **properties},
    }


def deploy(name: str) -> dict[str, Any]:
    return {"name": name, "type": "deploy", "properties": {"policies": ["dev"]}}


METRIC = "spec.components.0.traits.0.properties.canary.analysis.metrics.0"
KNOWN_IN_A_CANARY = (
    "${cluster.name}, ${cluster.labels.<key>}, ${app}, ${namespace}, ${component}, "
    "${workload}, ${canary.workload}, ${stable.hash}"
)
NO_CLUSTERS = "but follows no deploy step, so it has no clusters to measure"
NO_ENDPOINT = "asks each cluster's Prometheus (it has no metricEndpoint)"

REFUSALS: list[tuple[str, dict[str, Any], str]] = [
    (
        "condition",
        at(f"{METRIC}.condition", "=>0.95"),
        f"{ANALYSIS}.metrics[0].condition: '=>0.95' is not a condition: '=>0.95' is not a "
        f"comparison {RULE}",
    ),
    (
        "condition as a number",
        at(f"{METRIC}.condition", 1),
        f"{ANALYSIS}.metrics[0].condition: expected a condition in quotes, such as '>=0.95'",
    ),
    (
        "unknown placeholder",
        at(f"{METRIC}.query", 'up{pod="${pod}"}'),
        f"{ANALYSIS}.metrics[0].query: unknown placeholder ${{pod}}; known: {KNOWN_IN_A_CANARY}",
    ),
    (
        "unknown placeholders",
        at(f"{METRIC}.query", "${b} / ${a}"),
        f"{ANALYSIS}.metrics[0].query: unknown placeholders ${{a}}, ${{b}}; known: "
        f"{KNOWN_IN_A_CANARY}",
    ),
    (
        "label key",
        at(f"{METRIC}.query", 'up{r="${cluster.labels.-x}"}'),
        f"{ANALYSIS}.metrics[0].query: placeholder ${{cluster.labels.-x}}: label key '-x': the "
        "name must be at most 63 characters: letters, digits, '-', '_' or '.', starting and "
        "ending with a letter or digit",
    ),
    (
        "unclosed placeholder",
        at(f"{METRIC}.query", 'up{cluster="${cluster.name"}'),
        f"{ANALYSIS}.metrics[0].query: placeholder ${{cluster.name is not closed with }}",
    ),
    ("empty query", at(f"{METRIC}.query", ""), f"{ANALYSIS}.metrics[0].query: must not be empty"),
    (
        "endpoint",
        at(f"{METRIC}.metricEndpoint", "prometheus:9090"),
        f"{ANALYSIS}.metrics[0].metricEndpoint: expected an http:// or https:// URL of "
        "Prometheus, such as http://prom:9090",
    ),
    (
        "metric twice",
        at(f"{METRIC}.name", "latency"),
        f"{ANALYSIS}: metrics[1].name 'latency' is already used by metrics[0]",
    ),
    (
        "metric name",
        at(f"{METRIC}.name", "error rate"),
        f"{ANALYSIS}.metrics[0].name: 'error rate' is not a valid name (letters, digits, '-', "
        "'_' and '.', starting and ending with a letter or digit, at most 63 characters)",
    ),
    (
        "no metrics",
        at(f"{METRIC[: -len('.metrics.0')]}.metrics", []),
        f"{ANALYSIS}.metrics: must not be empty",
    ),
    (
        "interval",
        at(f"{METRIC[: -len('.metrics.0')]}.interval", "0s"),
        f"{ANALYSIS}.interval: must be more than 0",
    ),
    (
        "success count",
        at(f"{METRIC[: -len('.metrics.0')]}.successCount", 0),
        f"{ANALYSIS}.successCount: must be at least 1",
    ),
    (
        "failure limit as text",
        at(f"{METRIC[: -len('.metrics.0')]}.failureLimit", "1"),
        f"{ANALYSIS}.failureLimit: expected an integer",
    ),
    (
        "argo spelling",
        at(f"{METRIC[: -len('.metrics.0')]}.count", 3),
        f"{ANALYSIS}.count: field not supported (supported: consecutiveErrorLimit, "
        "failureLimit, interval, metricEndpoint, metrics, successCount)",
    ),
    (
        "step without properties",
        steps(deploy("d"), {"name": "check", "type": "check-metrics"}),
        "spec.workflow.steps[1].properties: required",
    ),
    (
        "step without condition",
        steps(deploy("d"), {**check(), "properties": {"query": "up"}}),
        "spec.workflow.steps[1].properties.condition: required",
    ),
    (
        "step field",
        steps(deploy("d"), check(stepID="x")),
        "spec.workflow.steps[1].properties.stepID: field not supported (supported: condition, "
        "duration, failDuration, interval, metricEndpoint, query)",
    ),
    (
        "step duration",
        steps(deploy("d"), check(duration="5 minutes")),
        "spec.workflow.steps[1].properties.duration: expected a duration such as 30s, 5m or "
        "1h30m, or a number of seconds",
    ),
    (
        "step interval",
        steps(deploy("d"), check(interval=0)),
        "spec.workflow.steps[1].properties.interval: must be more than 0",
    ),
    (
        "canary placeholder in a step",
        steps(deploy("d"), check(query='up{pod=~"${canary.workload}-.*"}')),
        "spec.workflow.steps[1].properties.query: unknown placeholder ${canary.workload} (only "
        "a canary's analysis has it); known: ${cluster.name}, ${cluster.labels.<key>}, ${app}",
    ),
    (
        "no deploy step before",
        steps(check(), deploy("d")),
        f"spec.workflow.steps[0]: step 'check' {NO_ENDPOINT} {NO_CLUSTERS}: put it after a "
        "deploy step",
    ),
    (
        "per-cluster query before any deploy step",
        steps(
            check(query='up{c="${cluster.name}"}', metricEndpoint="http://thanos:9090"),
            deploy("d"),
        ),
        "spec.workflow.steps[0]: step 'check' queries each cluster (its query uses "
        f"${{cluster...}}) {NO_CLUSTERS}: put it after a deploy step",
    ),
    (
        "no deploy step in dependsOn",
        steps(deploy("d"), check(), mode="DAG"),
        f"spec.workflow.steps[1]: step 'check' {NO_ENDPOINT} {NO_CLUSTERS}: name a deploy step "
        "in its dependsOn",
    ),
    (
        "several deploy steps in dependsOn",
        steps(deploy("a"), deploy("b"), {**check(), "dependsOn": ["a", "b"]}, mode="DAG"),
        f"spec.workflow.steps[2].dependsOn: step 'check' {NO_ENDPOINT} but depends on several "
        "deploy steps (a, b); it measures the clusters of one: depend on one, with a "
        "check-metrics step for each",
    ),
]


@pytest.mark.parametrize(
    ("document", "expected"),
    [(d, e) for _, d, e in REFUSALS],
    ids=[name for name, _, _ in REFUSALS],
)
def test_refusals_name_the_path(document: dict[str, Any], expected: str) -> None:
    with pytest.raises(SpecError) as raised:
        load_application(yaml.safe_dump(document), "web.yaml")
    assert str(raised.value).splitlines() == [f"web.yaml: {expected}"]


def test_a_check_with_its_own_endpoint_and_a_fleet_wide_query_needs_no_deploy_step() -> None:
    document = steps(check(metricEndpoint="https://thanos:9090"), deploy("d"), mode="DAG")
    app = load_application(yaml.safe_dump(document), "web.yaml")
    assert app.deploy_step_before("check") is None


def test_the_deploy_step_a_check_follows() -> None:
    written = [
        deploy("deploy-dev"),
        {"name": "approve", "type": "suspend"},
        check("dev-ok"),
        deploy("deploy-prod"),
        {**check("prod-ok"), "dependsOn": ["approve", "deploy-prod"]},
    ]
    app = load_application(yaml.safe_dump(steps(*written)), "web.yaml")
    assert app.spec.workflow is not None
    listed = app.spec.workflow.steps
    assert isinstance(listed[0], DeployStep)
    assert [deploy_step_before(listed, "StepByStep", n) for n in ("dev-ok", "prod-ok")] == [
        "deploy-dev",
        "deploy-prod",
    ]
    # DAG: only dependsOn orders steps, so only a deploy step named there counts.
    assert [deploy_step_before(listed, "DAG", n) for n in ("dev-ok", "prod-ok")] == [
        None,
        "deploy-prod",
    ]


def test_the_schema_describes_analysis_for_editors() -> None:
    defs = json_schema()["$defs"]
    json.dumps(defs)
    step_types = [
        defs[ref["$ref"].rsplit("/", 1)[1]]["properties"]["type"]["const"]
        for ref in defs["WorkflowSpec"]["properties"]["steps"]["items"]["oneOf"]
    ]
    assert step_types == ["deploy", "suspend", "check-metrics"]
    assert "analysis" in defs["Canary"]["properties"]
    assert "aborts the canary" in defs["Canary"]["properties"]["analysis"]["description"]
    analysis = defs["CanaryAnalysis"]["properties"]
    assert set(analysis) == {
        "metrics",
        "interval",
        "successCount",
        "failureLimit",
        "consecutiveErrorLimit",
        "metricEndpoint",
    }
    assert all(field["description"] for field in analysis.values())
    assert (analysis["successCount"]["default"], analysis["interval"]["default"]) == (3, "30s")
    condition = defs["MetricCheck"]["properties"]["condition"]
    assert condition["type"] == "string"
    assert "'<0.05'" in condition["description"]
    step = defs["CheckMetricsProperties"]
    assert step["required"] == ["query", "condition"]
    assert {k: v.get("default") for k, v in step["properties"].items()} == {
        "query": None,
        "metricEndpoint": None,
        "condition": None,
        "duration": "5m",
        "failDuration": "2m",
        "interval": "10s",
    }
    assert step["properties"]["metricEndpoint"]["anyOf"][0]["pattern"] == "^https?://"
