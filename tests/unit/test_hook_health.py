"""How a Helm hook object ended, and when a wait for it is over (clusters.health)."""

from __future__ import annotations

from typing import Any

import pytest

from clusters.health import HealthStatus, hook_outcome, hook_settled

FAILED = {
    "type": "Failed",
    "status": "True",
    "reason": "BackoffLimitExceeded",
    "message": "Job has reached the specified backoff limit",
}


def job(*conditions: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "status": {"conditions": list(conditions)}}


def pod(phase: str, exit_code: int = 0) -> dict[str, Any]:
    terminated = {"exitCode": exit_code, "reason": "Error" if exit_code else "Completed"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "spec": {"restartPolicy": "Never"},
        "status": {
            "phase": phase,
            "containerStatuses": [{"name": "migrate", "state": {"terminated": terminated}}],
        },
    }


@pytest.mark.parametrize(
    ("obj", "status", "reason", "over"),
    [
        (job(), HealthStatus.PROGRESSING, "running to completion", False),
        (job({"type": "Complete", "status": "True"}), HealthStatus.HEALTHY, "completed", True),
        (
            job(FAILED),
            HealthStatus.DEGRADED,
            "BackoffLimitExceeded (Job has reached the specified backoff limit)",
            True,
        ),
        (
            job({**FAILED, "type": "FailureTarget"}),
            HealthStatus.DEGRADED,
            "BackoffLimitExceeded (Job has reached the specified backoff limit)",
            True,
        ),
        (pod("Running"), HealthStatus.PROGRESSING, "pod Running", False),
        (pod("Succeeded"), HealthStatus.HEALTHY, "completed", True),
        (pod("Failed", 1), HealthStatus.DEGRADED, "container migrate: Error (exit code 1)", True),
        ({"apiVersion": "v1", "kind": "ConfigMap"}, HealthStatus.HEALTHY, "created", True),
    ],
)
def test_a_hook_is_over_when_it_succeeded_or_failed(
    obj: dict[str, Any], status: HealthStatus, reason: str, over: bool
) -> None:
    outcome = hook_outcome(obj)
    assert (outcome.status, outcome.reason) == (status, reason)
    assert (hook_settled(obj).status is HealthStatus.HEALTHY) is over


def test_a_hook_that_is_gone_has_not_ended() -> None:
    assert hook_outcome(None).status is HealthStatus.MISSING
    assert hook_settled(None).status is HealthStatus.MISSING
