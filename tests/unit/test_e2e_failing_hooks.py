"""The simulated kubelet's run-to-completion pods: a hook that fails on request."""

from __future__ import annotations

from typing import Any

import pytest

from e2e.podstatus import Action, decide, runs_to_completion, succeeds

NODE = "e2e-1-node"
JOB_OWNER: list[dict[str, Any]] = [{"kind": "Job", "name": "j", "controller": True}]


def started(
    image: str, restart_policy: str | None = None, owners: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {"nodeName": NODE, "containers": [{"name": "c", "image": image}]}
    if restart_policy is not None:
        spec["restartPolicy"] = restart_policy
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "ownerReferences": owners},
        "spec": spec,
        "status": {"phase": "Running", "startTime": "2026-01-01T00:00:00Z"},
    }


@pytest.mark.parametrize(
    ("pod", "completes"),
    [
        (started("app:1", owners=JOB_OWNER), True),  # a Job's pod
        (started("app:1", "Never"), True),  # a Helm hook Pod
        (started("app:1", "OnFailure"), True),
        (started("app:1", "Always"), False),  # a Deployment's pod serves for ever
        (started("app:1"), False),
    ],
)
def test_which_pods_run_to_completion(pod: dict[str, Any], completes: bool) -> None:
    assert runs_to_completion(pod) is completes
    assert (decide(pod, NODE, {}) is Action.SUPERVISE) is completes


@pytest.mark.parametrize(
    ("image", "ends_well"),
    [
        ("registry.local/migrate:1.0.0", True),
        ("registry.local/migrate:1.0.0-fails", False),
        ("registry.local/migrate:fails", False),
        ("registry.local/fails/migrate:1.0.0", True),  # only the tag asks
        ("registry.local/migrate:1.0.0-unhealthy", False),  # a crashing container fails too
    ],
)
def test_a_fails_tag_ends_a_run_to_completion_pod_failed(image: str, ends_well: bool) -> None:
    assert succeeds(started(image, "Never")) is ends_well
