"""The simulated kubelet's decisions and statuses, without a cluster."""

from __future__ import annotations

from typing import Any

import pytest

from e2e.podstatus import (
    Action,
    crashing_containers,
    decide,
    finished_status,
    fits,
    image_tag,
    normalized_image,
    pod_ip,
    running_status,
)

NODE = "e2e-1-node"
LABELS = {"kubernetes.io/hostname": NODE, "kubernetes.io/os": "linux"}


def pod(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u-1"},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]},
        "status": {"phase": "Pending"},
    }
    for key, value in overrides.items():
        base[key] = {**base.get(key, {}), **value}
    return base


@pytest.mark.parametrize(
    ("image", "tag"),
    [
        ("nginx", ""),
        ("nginx:1.27", "1.27"),
        ("registry.local:5000/app", ""),
        ("registry.local:5000/app:2.0.0-unhealthy", "2.0.0-unhealthy"),
        ("app@sha256:abc", ""),
    ],
)
def test_image_tag_ignores_registry_ports_and_digests(image: str, tag: str) -> None:
    assert image_tag(image) == tag


@pytest.mark.parametrize(
    ("image", "normalized"),
    [
        ("nginx", "docker.io/library/nginx:latest"),
        ("bitnami/redis:7", "docker.io/bitnami/redis:7"),
        ("ghcr.io/org/app:1", "ghcr.io/org/app:1"),
        ("localhost/app", "localhost/app:latest"),
        ("nginx@sha256:abc", "docker.io/library/nginx@sha256:abc"),
    ],
)
def test_images_are_reported_fully_qualified(image: str, normalized: str) -> None:
    assert normalized_image(image) == normalized


@pytest.mark.parametrize(
    ("changes", "action"),
    [
        ({}, Action.BIND),
        ({"spec": {"schedulerName": "other"}}, Action.NOTHING),
        ({"spec": {"nodeSelector": {"disk": "ssd"}}}, Action.UNSCHEDULABLE),
        ({"spec": {"nodeName": NODE}}, Action.START),
        ({"spec": {"nodeName": "elsewhere"}}, Action.NOTHING),
        ({"spec": {"nodeName": NODE}, "status": {"startTime": "t"}}, Action.NOTHING),
        ({"spec": {"nodeName": NODE}, "status": {"phase": "Succeeded"}}, Action.NOTHING),
        ({"metadata": {"deletionTimestamp": "t"}, "spec": {"nodeName": NODE}}, Action.DELETE),
        ({"metadata": {"deletionTimestamp": "t"}}, Action.DELETE),
        (
            {
                "spec": {"nodeName": NODE},
                "metadata": {"annotations": {"e2e.flotilla.dev/unhealthy": "true"}},
                "status": {"startTime": "t"},
            },
            Action.SUPERVISE,
        ),
    ],
)
def test_decide(changes: dict[str, Any], action: Action) -> None:
    assert decide(pod(**changes), NODE, LABELS) is action


def test_an_unschedulable_pod_is_reported_once() -> None:
    marked = pod(
        spec={"nodeSelector": {"disk": "ssd"}},
        status={
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]
        },
    )
    assert decide(marked, NODE, LABELS) is Action.NOTHING


@pytest.mark.parametrize(
    ("term", "fit"),
    [
        ({"matchFields": [{"key": "metadata.name", "operator": "In", "values": [NODE]}]}, True),
        ({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["x"]}]}, False),
        (
            {
                "matchExpressions": [
                    {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}
                ]
            },
            True,
        ),
        ({"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}, False),
        ({"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}, True),
    ],
)
def test_required_node_affinity(term: dict[str, Any], fit: bool) -> None:
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}
        }
    }
    assert fits(pod(spec={"affinity": affinity}), NODE, LABELS) is fit


def test_only_containers_with_an_unhealthy_tag_crash() -> None:
    mixed = pod(
        spec={
            "containers": [
                {"name": "a", "image": "app:1-unhealthy"},
                {"name": "b", "image": "nginx"},
            ]
        }
    )
    assert crashing_containers(mixed) == {"a"}


def test_a_healthy_pod_runs_ready() -> None:
    status = running_status(pod(spec={"nodeName": NODE}), "10.240.0.2")
    assert status["phase"] == "Running"
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "PodReadyToStartContainers": "True",
        "Initialized": "True",
        "Ready": "True",
        "ContainersReady": "True",
        "PodScheduled": "True",
    }
    (container,) = status["containerStatuses"]
    assert container["ready"] is True
    assert container["state"]["running"]["startedAt"]
    assert container["imageID"].startswith("docker.io/library/nginx@sha256:")
    assert status["podIP"].startswith("10.244.")


def test_an_unhealthy_pod_crash_loops_with_a_reason() -> None:
    sick = pod(
        spec={"nodeName": NODE}, metadata={"annotations": {"e2e.flotilla.dev/unhealthy": "true"}}
    )
    status = running_status(sick, "10.240.0.2", restarts=5)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ContainersNotReady")
    (container,) = status["containerStatuses"]
    assert container["restartCount"] == 5
    assert container["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert container["lastState"]["terminated"]["exitCode"] == 1


def test_a_finished_job_pod_succeeds_with_completed_containers() -> None:
    running = pod(spec={"nodeName": NODE})
    running["status"] = running_status(running, "10.240.0.2")
    done = finished_status(running, "10.240.0.2", succeeded=True)
    assert done["phase"] == "Succeeded"
    (container,) = done["containerStatuses"]
    assert container["state"]["terminated"]["reason"] == "Completed"
    ready = next(c for c in done["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "PodCompleted"


def test_pod_addresses_are_stable_and_host_network_uses_the_node() -> None:
    assert pod_ip(pod(), "10.240.0.2") == pod_ip(pod(), "10.240.0.2")
    assert pod_ip(pod(spec={"hostNetwork": True}), "10.240.0.2") == "10.240.0.2"


def test_transition_times_move_only_when_a_condition_changes() -> None:
    old = "2000-01-01T00:00:00Z"
    before = pod(
        spec={"nodeName": NODE},
        status={
            "conditions": [
                {"type": "Initialized", "status": "True", "lastTransitionTime": old},
                {"type": "Ready", "status": "True", "lastTransitionTime": old},
            ]
        },
        metadata={"annotations": {"e2e.flotilla.dev/unhealthy": "true"}},
    )
    times = {
        c["type"]: c["lastTransitionTime"]
        for c in running_status(before, "10.240.0.2")["conditions"]
    }
    assert times["Initialized"] == old
    assert times["Ready"] != old
