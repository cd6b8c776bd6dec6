"""`flotilla plan` against registered clusters and real chart servers: per-cluster values
with provenance, the objects Helm renders, OCI charts, and refusals that name the field."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from e2e.chartrepo import CHARTS_DIR, OciRegistry
from tests.fleet import Fleet
from tests.shapes import assert_shape

pytestmark = pytest.mark.cluster


def _targets(view: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(s["name"], t["cluster"]): t for s in view["steps"] for t in s["targets"]}


def origin(layer: str, value: object) -> dict[str, object]:
    return {"from": layer, "value": value, "deleted": False}


def test_plan_shows_values_provenance_and_objects(fleet: Fleet) -> None:
    path = fleet.app(version="2.0.0", values={"image": {"tag": "${cluster.name}-build"}})
    view = fleet.hub.ok("plan", "-f", str(path), "-o", "json", "--explain", "replicaCount").json()
    targets = _targets(view)
    assert set(targets) == {
        ("deploy-dev", "dev"),
        ("deploy-prod", "prod-eu"),
        ("deploy-prod", "prod-us"),
    }
    dev, eu, us = (targets[k] for k in sorted(targets))
    assert_shape(view, "plan")
    # `values` is the document Helm receives; provenance is keyed by JSON Pointer.
    assert (dev["values"]["replicaCount"], us["values"]["replicaCount"]) == (1, 5)
    assert dev["provenance"]["/replicaCount"] == origin("policy dev-values", 1)
    assert eu["provenance"]["/replicaCount"] == origin("policy eu-values", 3)
    assert "/replicaCount" not in us["provenance"]  # the chart's default
    assert us["values"]["image"]["tag"] == "prod-us-build"
    assert us["provenance"]["/image/tag"] == origin("component canary-demo", "prod-us-build")
    assert eu["explain"]["/replicaCount"]["layers"] == [
        {"layer": "chart defaults", "value": 5, "deleted": False},
        {"layer": "policy eu-values", "value": 3, "deleted": False},
    ]
    assert eu["explain"]["/replicaCount"]["winner"] == "policy eu-values"
    assert dev["explain"] is not None and us["explain"] is not None
    assert all(t["chart"] == "canary-demo 2.0.0" and t["error"] is None for t in targets.values())
    assert f"Deployment {fleet.namespace}/canary-demo" in eu["objects"]
    assert f"Ingress {fleet.namespace}/canary-demo" in eu["objects"]

    table = fleet.hub.ok("plan", "-f", str(path)).stdout
    assert "policy eu-values" in table and "prod-us-build" in table
    assert fleet.hub.ok("ls", "-o", "json").json()["applications"] == []  # nothing deployed


def test_plan_from_an_oci_registry(fleet: Fleet, oci_registry: OciRegistry) -> None:
    document = yaml.safe_load(fleet.app().read_text())
    properties = document["spec"]["components"][0]["properties"]
    properties |= {"repoType": "oci", "url": oci_registry.url, "version": "2.0.0"}
    path = fleet.workdir / "oci.yaml"
    path.write_text(yaml.safe_dump(document))
    view = fleet.hub.ok("plan", "-f", str(path), "-o", "yaml").yaml()
    assert {t["chart"] for t in _targets(view).values()} == {"canary-demo 2.0.0"}


def test_one_bad_target_is_reported_and_the_others_still_plan(fleet: Fleet) -> None:
    path = fleet.app(prod_eu_replicas=-1)  # the chart's schema wants replicaCount >= 0
    result = fleet.hub.cli("plan", "-f", str(path), "-o", "json")
    assert result.code == 2
    targets = _targets(result.json())
    assert "replicaCount" in targets[("deploy-prod", "prod-eu")]["error"]
    assert targets[("deploy-prod", "prod-us")]["error"] is None
    assert targets[("deploy-prod", "prod-us")]["objects"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["spec"].pop("policies") and d["spec"].pop("workflow"), "topology policy"),
        (
            lambda d: d["spec"]["policies"][0]["properties"].update(
                clusterLabelSelector={"env": "qa"}
            ),
            "no registered cluster matches env=qa",
        ),
        (
            lambda d: d["spec"]["policies"][0]["properties"].update(clusters=["nowhere"]),
            "nowhere",
        ),
        (
            lambda d: (
                d["spec"]["workflow"]["steps"][0].update(dependsOn=["deploy-prod"])
                or d["spec"]["workflow"].update(mode={"steps": "DAG"})
                or d["spec"]["workflow"]["steps"][1].update(dependsOn=["deploy-dev"])
            ),
            "cycle",
        ),
        (
            lambda d: d["spec"]["policies"][1]["properties"].update(
                clusterLabelSelector="env=prod"
            ),
            "spec.policies[1].properties.clusterLabelSelector",
        ),
        (lambda d: d["spec"]["components"][0]["properties"].update(version="9.9.9"), "9.9.9"),
    ],
)
def test_refusals_name_what_is_wrong(fleet: Fleet, edit: Any, message: str) -> None:
    document = yaml.safe_load(fleet.app().read_text())
    edit(document)
    path = fleet.workdir / "bad.yaml"
    path.write_text(yaml.safe_dump(document))
    result = fleet.hub.cli("plan", "-f", str(path))
    assert result.code != 0
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_local_chart_directory_is_relative_to_the_file(fleet: Fleet) -> None:
    document = yaml.safe_load(fleet.app().read_text())
    properties = document["spec"]["components"][0]["properties"]
    properties.update(repoType="local", url="charts")
    properties.pop("version")
    (fleet.workdir / "charts").symlink_to(CHARTS_DIR)
    path = fleet.workdir / "local.yaml"
    path.write_text(yaml.safe_dump(document))
    view = fleet.hub.ok("plan", "-f", str(path), "-o", "json").json()
    targets = _targets(view).values()
    assert all(t["error"] is None and t["chart"].startswith("canary-demo ") for t in targets)
