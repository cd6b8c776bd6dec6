"""The hub keeps the fleet as it applied it (issue 13 §1): `kubectl` changes on one cluster
are named (field, values, manager) and healed within seconds; a deleted Service comes
back; fields of other managers are left alone; an object that something keeps changing
back is reported as contested and no longer fought over; `apply-once` and `--no-heal`
leave drift as it is and show it. Every fact is read from the clusters themselves."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from e2e.kubectl import kubectl
from tests.fleet import Fleet, until

pytestmark = pytest.mark.cluster

IMAGE = "registry.local/canary-demo:1.0.0"
EDITED = "registry.local/canary-demo:9.9.9"
CONTAINER = "spec.template.spec.containers[0].image"


def edit(fleet: Fleet, cluster: str, *args: str) -> None:
    kubectl(fleet.clusters[cluster].kubeconfig, "-n", fleet.namespace, *args)


def events(fleet: Fleet) -> list[str]:
    found = fleet.hub.ok("history", "canary-demo", "-o", "json").json()["events"]
    return [str(e["message"]) for e in found]


def drift_events(fleet: Fleet) -> list[str]:
    return [e for e in events(fleet) if ": drift: " in e]


def drifted_objects(fleet: Fleet, cluster: str) -> dict[str, dict[str, Any]]:
    """The OutOfSync objects of `cluster` in status, by kind."""
    found = {}
    for step in fleet.status()["steps"]:
        for where in step["clusters"]:
            if where["name"] != cluster:
                continue
            for release in where["releases"]:
                for obj in release["objects"]:
                    if obj["sync"] == "OutOfSync":
                        found[obj["kind"]] = obj
    return found


def test_an_edited_image_is_named_and_healed_a_deleted_service_comes_back(fleet: Fleet) -> None:
    assert fleet.up(fleet.app(publish="v1"), "--wait").code == 0
    assert not drifted_objects(fleet, "prod-eu")

    edit(fleet, "prod-eu", "label", "deployment", "canary-demo", "team=payments")
    edit(fleet, "prod-eu", "set", "image", "deployment/canary-demo", f"web={EDITED}")
    until(lambda: fleet.image("prod-eu") == IMAGE, 60, "the edited image healed")
    [event] = drift_events(fleet)
    assert f"prod-eu/canary-demo: drift: Deployment canary-demo {CONTAINER}" in event
    assert repr(EDITED) in event and repr(IMAGE) in event and "by kubectl-set" in event
    deployment = fleet.deployment("prod-eu")
    assert deployment is not None
    # Another manager's label is not drift: the heal took only our fields back.
    assert deployment["metadata"]["labels"]["team"] == "payments"
    assert fleet.image("prod-us") == IMAGE and fleet.image("dev") == IMAGE

    service = fleet.kubectl("dev", "get", "service", "canary-demo")
    edit(fleet, "dev", "delete", "service", "canary-demo", "--wait=false")

    def recreated() -> bool:
        found = kubectl(
            fleet.clusters["dev"].kubeconfig,
            "-n",
            fleet.namespace,
            "get",
            "service",
            "canary-demo",
            "-o",
            "json",
            check=False,
        )
        return found.returncode == 0 and service["metadata"]["uid"] not in found.stdout

    until(recreated, 60, "the deleted Service re-created")
    assert any("Service canary-demo was deleted; healing" in e for e in drift_events(fleet))
    until(lambda: not drifted_objects(fleet, "dev"), 30, "status back in sync")


def test_an_object_changed_back_again_and_again_is_contested_and_left(fleet: Fleet) -> None:
    assert fleet.up(fleet.app(publish="v1"), "--wait").code == 0
    deadline_events = 20
    contested = ""
    for _ in range(deadline_events):
        if fleet.image("prod-us") == IMAGE:
            edit(fleet, "prod-us", "set", "image", "deployment/canary-demo", f"web={EDITED}")
        seen = drifted_objects(fleet, "prod-us").get("Deployment")
        if seen and seen["drift"]["action"].startswith("left as it is: contested"):
            contested = seen["drift"]["action"]
            break
        until(
            lambda: (
                fleet.image("prod-us") == IMAGE
                or "contested" in str(drifted_objects(fleet, "prod-us"))
            ),
            60,
            "a heal or the verdict",
        )
    assert contested == "left as it is: contested by kubectl-set"
    assert fleet.image("prod-us") == EDITED
    assert any("is contested by kubectl-set" in e for e in events(fleet))
    # A new revision starts afresh: the chart's image is applied, and kept again.
    assert fleet.up(fleet.app(publish="v2"), "--wait").code == 0
    assert fleet.image("prod-us") == IMAGE


def test_without_healing_status_names_field_values_and_manager(
    fleet_without_healing: Fleet,
) -> None:
    fleet = fleet_without_healing
    assert fleet.up(fleet.app(publish="v1"), "--wait").code == 0
    edit(fleet, "dev", "set", "image", "deployment/canary-demo", f"web={EDITED}")
    until(lambda: "Deployment" in drifted_objects(fleet, "dev"), 60, "drift shown")
    drift = drifted_objects(fleet, "dev")["Deployment"]["drift"]
    assert drift["gone"] is False
    assert drift["action"] == "left as it is: healing is off (flotilla serve --no-heal)"
    assert drift["fields"] == [
        {"path": CONTAINER, "applied": IMAGE, "live": EDITED, "manager": "kubectl-set"}
    ]
    assert fleet.image("dev") == EDITED
    tree = fleet.hub.ok("status", "canary-demo", "--tree").stdout
    assert "OutOfSync" in tree


def test_apply_once_paths_stay_as_edited_while_the_rest_is_healed(fleet: Fleet) -> None:
    path = fleet.app(publish="v1")
    document = yaml.safe_load(path.read_text())
    document["spec"]["policies"].append(
        {
            "name": "keep-replicas",
            "type": "apply-once",
            "properties": {
                "enable": True,
                "rules": [
                    {
                        "selector": {"resourceTypes": ["Deployment"]},
                        "strategy": {"path": ["spec.replicas"]},
                    }
                ],
            },
        }
    )
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    assert fleet.up(path, "--wait").code == 0

    edit(fleet, "prod-us", "scale", "deployment/canary-demo", "--replicas=2")
    until(lambda: "Deployment" in drifted_objects(fleet, "prod-us"), 60, "drift shown")
    drift = drifted_objects(fleet, "prod-us")["Deployment"]["drift"]
    assert drift["action"] == "left as it is: apply-once"
    assert [f["path"] for f in drift["fields"]] == ["spec.replicas"]

    edit(fleet, "prod-us", "set", "image", "deployment/canary-demo", f"web={EDITED}")
    until(lambda: fleet.image("prod-us") == IMAGE, 60, "the image healed")
    deployment = fleet.deployment("prod-us")
    assert deployment is not None and deployment["spec"]["replicas"] == 2

    # `affect` defaults to `always`: a new revision keeps the live value too.
    document["metadata"]["annotations"]["app.oam.dev/publishVersion"] = "v2"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    assert fleet.up(path, "--wait").code == 0
    deployment = fleet.deployment("prod-us")
    assert deployment is not None and deployment["spec"]["replicas"] == 2
    assert fleet.deployment("prod-eu")["spec"]["replicas"] == 3  # type: ignore[index]
