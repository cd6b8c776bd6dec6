"""Why pods are not ready, in one line: the first thing an operator asks of a stuck rollout.

A workload's status only counts pods ("1/3 ready"); the reason is on the pods. Of all
the troubles a set of pods shows, the one that says most about what to do is reported:
a container that will not start by waiting (CrashLoopBackOff, ImagePullBackOff ...)
before a pod no node can take, before a container still on its way, before a pod that
merely is not ready yet.

Pure: the caller lists the pods.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from clusters.health import stuck

# How much a trouble says, most first.
_WONT_START, _UNSCHEDULABLE, _STARTING, _NOT_READY = range(4)


def pod_trouble(pods: Iterable[Mapping[str, Any]]) -> str | None:
    """The most telling reason why one of `pods` is not ready; None if none gives one.
    Of equally telling ones, the first (in the order of `pods`) is said."""
    troubles = (trouble for pod in pods for trouble in _troubles(pod))
    found = min(troubles, key=lambda trouble: trouble[0], default=None)
    return found[1] if found else None


def _troubles(pod: Mapping[str, Any]) -> Iterator[tuple[int, str]]:
    """What keeps one pod from being ready, each with how much it says."""
    name = (pod.get("metadata") or {}).get("name", "?")
    status = pod.get("status") or {}
    conditions = status.get("conditions") or ()
    # Init containers too: while one runs, every app container waits "PodInitializing".
    containers = (
        *(status.get("initContainerStatuses") or ()),
        *(status.get("containerStatuses") or ()),
    )
    for container in containers:
        waiting = (container.get("state") or {}).get("waiting")
        if waiting and not container.get("ready"):
            reason = str(waiting.get("reason") or "waiting")
            restarts = container.get("restartCount") or 0
            yield (
                _WONT_START if stuck(reason) else _STARTING,
                f"pod {name}, container {container.get('name')}: {reason} ({restarts} restarts)",
            )
    scheduled = _condition(conditions, "PodScheduled")
    if scheduled.get("status") == "False":
        yield _UNSCHEDULABLE, f"pod {name}: not scheduled{_detail(scheduled)}"
    ready = _condition(conditions, "Ready")
    if ready and ready.get("status") != "True":
        yield _NOT_READY, f"pod {name}: Ready {ready.get('status')}{_detail(ready)}"


def _condition(conditions: Iterable[Mapping[str, Any]], kind: str) -> Mapping[str, Any]:
    return next((c for c in conditions if c.get("type") == kind), {})


def _detail(condition: Mapping[str, Any]) -> str:
    """ ": <message>" (else the reason), on one line; nothing if the condition says neither."""
    text = " ".join(str(condition.get("message") or condition.get("reason") or "").split())
    return f": {text}" if text else ""
