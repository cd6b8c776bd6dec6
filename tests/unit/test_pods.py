"""Why pods are not ready, from pods shaped like what the kubelet reports."""

from __future__ import annotations

from typing import Any

import pytest

from clusters.pods import pod_trouble

Pod = dict[str, Any]


def container(
    name: str = "web", *, ready: bool = False, waiting: str | None = None, restarts: int = 0
) -> dict[str, Any]:
    state: dict[str, Any] = (
        {"waiting": {"reason": waiting, "message": "back-off 5m0s restarting failed container"}}
        if waiting
        else {"running": {"startedAt": "2026-01-01T00:00:00Z"}}
    )
    return {"name": name, "ready": ready, "restartCount": restarts, "state": state}


def pod(
    name: str = "web-7d4b9c-x2x4z",
    *,
    containers: list[dict[str, Any]] | None = None,
    init: list[dict[str, Any]] | None = None,
    ready: str | None = "False",
    scheduled: str = "True",
) -> Pod:
    conditions: list[dict[str, Any]] = [{"type": "PodScheduled", "status": scheduled}]
    if scheduled == "False":
        conditions[0] |= {
            "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient cpu.\n",
        }
    if ready is not None:
        conditions.append(
            {
                "type": "Ready",
                "status": ready,
                "reason": "ContainersNotReady",
                "message": "containers with unready status: [web]",
            }
        )
    status: dict[str, Any] = {"phase": "Running", "conditions": conditions}
    if containers is not None:
        status["containerStatuses"] = containers
    if init is not None:
        status["initContainerStatuses"] = init
    return {"metadata": {"name": name, "namespace": "shop"}, "status": status}


HEALTHY = pod(containers=[container(ready=True)], ready="True")


@pytest.mark.parametrize(
    ("pods", "trouble"),
    [
        pytest.param([], None, id="no pods"),
        pytest.param([HEALTHY], None, id="all ready"),
        pytest.param(
            [pod(containers=[container(waiting="CrashLoopBackOff", restarts=4)])],
            "pod web-7d4b9c-x2x4z, container web: CrashLoopBackOff (4 restarts)",
            id="a crash loop",
        ),
        pytest.param(
            [pod(containers=[container()])],
            "pod web-7d4b9c-x2x4z: Ready False: containers with unready status: [web]",
            id="running, readiness probe failing",
        ),
        pytest.param(
            [pod(containers=[container(ready=True)], ready="Unknown")],
            "pod web-7d4b9c-x2x4z: Ready Unknown: containers with unready status: [web]",
            id="node lost",
        ),
        pytest.param(
            [pod(ready=None, scheduled="False")],
            "pod web-7d4b9c-x2x4z: not scheduled: 0/3 nodes are available: 3 Insufficient cpu.",
            id="no node fits",
        ),
        pytest.param(
            [
                pod(
                    init=[container("migrate", waiting="CrashLoopBackOff", restarts=2)],
                    containers=[container(waiting="PodInitializing")],
                )
            ],
            "pod web-7d4b9c-x2x4z, container migrate: CrashLoopBackOff (2 restarts)",
            id="an init container, not the app container waiting for it",
        ),
        pytest.param(
            [
                pod("web-1", containers=[container(waiting="ContainerCreating")]),
                pod("web-2", ready=None, scheduled="False"),
                pod("web-3", containers=[container(waiting="ImagePullBackOff")]),
            ],
            "pod web-3, container web: ImagePullBackOff (0 restarts)",
            id="what will not start by waiting, before what may",
        ),
        pytest.param(
            [
                pod("web-1", containers=[container()]),
                pod("web-2", containers=[container(waiting="ContainerCreating")]),
            ],
            "pod web-2, container web: ContainerCreating (0 restarts)",
            id="a container on its way, before a pod merely not ready",
        ),
        pytest.param(
            [
                pod("web-1", containers=[container()]),
                pod("web-2", containers=[container()]),
            ],
            "pod web-1: Ready False: containers with unready status: [web]",
            id="of equals, the first",
        ),
        pytest.param(
            [{"metadata": {"name": "bare"}}, {"metadata": {"name": "odd"}, "status": None}],
            None,
            id="pods without status say nothing",
        ),
    ],
)
def test_pod_trouble(pods: list[Pod], trouble: str | None) -> None:
    assert pod_trouble(pods) == trouble


def test_a_condition_without_reason_or_message() -> None:
    bare = pod(ready=None)
    bare["status"]["conditions"].append({"type": "Ready", "status": "False"})
    assert pod_trouble([bare]) == "pod web-7d4b9c-x2x4z: Ready False"
