"""Drift over our own field set: recorded from a real API server (a Deployment applied as
`flotilla`, then `kubectl set image`, `kubectl scale`, a JSON patch removing `env`, and
`kubectl label`), and the dry-run apply of the original manifest."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from clusters.drift import FieldDrift, drifted, path_text

HERE = Path(__file__).parent / "drift"


def recorded(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((HERE / name).read_text())
    return data


def test_each_changed_field_of_ours_is_named_with_its_values_and_who_changed_it() -> None:
    found = drifted(recorded("live-edited.json"), recorded("dry-run.json"))
    assert found == [
        FieldDrift("spec.replicas", 2, 5, "kubectl"),  # through /scale
        FieldDrift(
            "spec.template.spec.containers[0].env", [{"name": "A", "value": "1"}], None, None
        ),
        FieldDrift("spec.template.spec.containers[0].image", "nginx:1", "nginx:2", "kubectl-set"),
    ]


def test_a_label_someone_else_added_is_not_drift() -> None:
    live = recorded("live-edited.json")
    assert live["metadata"]["labels"]["team"] == "x"
    assert all("labels" not in d.path for d in drifted(live, recorded("dry-run.json")))


def test_the_dry_run_against_itself_has_no_drift() -> None:
    want = recorded("dry-run.json")
    assert drifted(copy.deepcopy(want), want) == []


def test_a_default_the_server_added_and_a_field_only_live_has_are_not_drift() -> None:
    want = recorded("dry-run.json")
    live = copy.deepcopy(want)
    live["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"] = "/elsewhere"
    live["metadata"].setdefault("annotations", {})["deployment.kubernetes.io/revision"] = "7"
    assert drifted(live, want) == []


def test_a_container_gone_is_one_difference_not_one_per_field() -> None:
    want = recorded("dry-run.json")
    live = copy.deepcopy(want)
    live["spec"]["template"]["spec"]["containers"] = [
        {**live["spec"]["template"]["spec"]["containers"][0], "name": "other"}
    ]
    [found] = drifted(live, want)
    assert found.path.startswith("spec.template.spec.containers[")
    assert found.have is None and found.want["name"] == "web"


def test_list_items_are_matched_by_key_not_position() -> None:
    want = recorded("dry-run.json")
    live = copy.deepcopy(want)
    containers = live["spec"]["template"]["spec"]["containers"]
    containers.insert(0, {"name": "sidecar", "image": "envoy"})
    found = drifted(live, want)
    assert found == []


def test_no_field_set_of_ours_means_nothing_to_compare() -> None:
    want = recorded("dry-run.json")
    want["metadata"]["managedFields"] = []
    assert drifted(recorded("live-edited.json"), want) == []


@pytest.mark.parametrize(
    ("parts", "text"),
    [
        (("spec", "replicas"), "spec.replicas"),
        (("spec", "containers", 0, "image"), "spec.containers[0].image"),
        (
            ("metadata", "labels", "app.kubernetes.io/name"),
            'metadata.labels["app.kubernetes.io/name"]',
        ),
    ],
)
def test_paths_read_as_kubevela_writes_them(parts: tuple[str | int, ...], text: str) -> None:
    assert path_text(parts) == text
