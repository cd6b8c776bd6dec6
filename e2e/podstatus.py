"""What the simulated kubelet does with a pod, and the status it reports: pure.

The decisions and the status documents live apart from the I/O loop so they can
be tested without a cluster. A status is built to look like what a containerd
node reports (normalised image names, image digests, container IDs, the five
pod conditions), because health rules written against these clusters must hold
on real ones.

Unhealthy on request: a container whose image tag contains `unhealthy`, or every
container of a pod annotated `e2e.flotilla.dev/unhealthy: "true"`, crash-loops
forever instead of becoming ready.

Failing on request: a run-to-completion pod (a Job's, or one whose restartPolicy is
Never or OnFailure, such as a Helm hook Pod) ends Succeeded, unless a container's
image tag contains `fails`: then it ends Failed, exit code 1, as if its retries were
spent, and a Job with `backoffLimit: 0` fails with BackoffLimitExceeded at once.

Misbehaving on request, while healthy (e2e.appmetrics, what the kubelet serves on
/metrics): a tag containing `errors-N` or the annotation
`e2e.flotilla.dev/error-percent: "N"` answers N% of requests with 500; a tag
containing `slow-MS` or the annotation `e2e.flotilla.dev/latency-ms: "MS"` takes
MS milliseconds per request (default 20).
"""

from __future__ import annotations

import datetime
import enum
import hashlib
from collections.abc import Mapping
from typing import Any

UNHEALTHY_ANNOTATION = "e2e.flotilla.dev/unhealthy"
# Their siblings for app metrics, ERROR_PERCENT_ANNOTATION and LATENCY_ANNOTATION, live in
# e2e.appmetrics with the `errors-N` and `slow-MS` tag marks.
UNHEALTHY_MARK = "unhealthy"
FAILS_MARK = "fails"
DEFAULT_SCHEDULER = "default-scheduler"
# Pod addresses come from this range; real CNI plugins hand out 10.244/16 too, and
# Endpoints refuse loopback addresses, so 127.0.0.1 would not do.
POD_NETWORK = (10, 244)

Pod = Mapping[str, Any]


class Action(enum.Enum):
    """The one next step for a pod, as seen from this node."""

    NOTHING = "nothing"
    DELETE = "delete"  # terminating: finish it with grace 0
    BIND = "bind"  # unscheduled and fits this node: act as the scheduler
    UNSCHEDULABLE = "unschedulable"  # unscheduled, does not fit: say why once
    START = "start"  # bound here, not yet running: report it running
    SUPERVISE = "supervise"  # running here and something will still change


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _meta(pod: Pod) -> Mapping[str, Any]:
    return pod.get("metadata") or {}


def _spec(pod: Pod) -> Mapping[str, Any]:
    return pod.get("spec") or {}


def _status(pod: Pod) -> Mapping[str, Any]:
    return pod.get("status") or {}


def image_tag(image: str) -> str:
    """The tag of an image reference ('' when it has none); a registry port is no tag."""
    last = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return last.partition(":")[2]


def normalized_image(image: str) -> str:
    """The fully qualified name containerd reports: docker.io/library/nginx:latest."""
    name = image.split("@", 1)[0]
    first, _, rest = name.partition("/")
    if not rest:
        name = f"docker.io/library/{name}"
    elif "." not in first and ":" not in first and first != "localhost":
        name = f"docker.io/{name}"
    if not image_tag(name) and "@" not in image:
        name += ":latest"
    return name + (f"@{image.split('@', 1)[1]}" if "@" in image else "")


def _digest(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()


def image_id(image: str) -> str:
    if "@" in image:
        return normalized_image(image)
    repository = normalized_image(image).rsplit(":", 1)[0]
    return f"{repository}@sha256:{_digest(image)}"


def container_id(pod: Pod, container: str, restarts: int) -> str:
    return "containerd://" + _digest(str(_meta(pod).get("uid")), container, str(restarts))


def pod_ip(pod: Pod, node_ip: str) -> str:
    """A stable address per pod, from its UID; host-network pods share the node's."""
    if _spec(pod).get("hostNetwork"):
        return node_ip
    value = int(_digest(str(_meta(pod).get("uid"))), 16)
    return f"{POD_NETWORK[0]}.{POD_NETWORK[1]}.{value % 256}.{2 + (value >> 8) % 252}"


def crashing_containers(pod: Pod) -> set[str]:
    """Names of the containers that must never become ready."""
    containers = _spec(pod).get("containers") or []
    if (_meta(pod).get("annotations") or {}).get(UNHEALTHY_ANNOTATION) == "true":
        return {c["name"] for c in containers}
    return {c["name"] for c in containers if UNHEALTHY_MARK in image_tag(c.get("image", ""))}


def is_job_pod(pod: Pod) -> bool:
    owners = _meta(pod).get("ownerReferences") or []
    return any(o.get("kind") == "Job" and o.get("controller") for o in owners)


def runs_to_completion(pod: Pod) -> bool:
    """A pod whose containers exit when done: a Job's, or one that is not restarted
    for ever (a Helm hook Pod)."""
    return is_job_pod(pod) or _spec(pod).get("restartPolicy", "Always") != "Always"


def succeeds(pod: Pod) -> bool:
    """How a run-to-completion pod ends: Failed when a container crashes or is asked to
    fail (`fails` in its image tag), else Succeeded."""
    containers = _spec(pod).get("containers") or []
    failing = any(FAILS_MARK in image_tag(c.get("image", "")) for c in containers)
    return not failing and not crashing_containers(pod)


def _restarts(pod: Pod) -> int:
    return max(
        (c.get("restartCount", 0) for c in _status(pod).get("containerStatuses") or []), default=0
    )


def _requirement_holds(requirement: Mapping[str, Any], values: Mapping[str, str]) -> bool:
    key, operator = requirement.get("key", ""), requirement.get("operator", "")
    wanted = requirement.get("values") or []
    present = key in values
    if operator == "In":
        return present and values[key] in wanted
    if operator == "NotIn":
        return not present or values[key] not in wanted
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if operator in ("Gt", "Lt") and present and wanted:
        try:
            actual, bound = int(values[key]), int(wanted[0])
        except ValueError:
            return False
        return actual > bound if operator == "Gt" else actual < bound
    return False


def fits(pod: Pod, node: str, labels: Mapping[str, str]) -> bool:
    """nodeSelector and required node affinity, as the scheduler reads them."""
    spec = _spec(pod)
    selector = spec.get("nodeSelector") or {}
    if any(labels.get(k) != v for k, v in selector.items()):
        return False
    affinity = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    )
    if not affinity:
        return True
    fields = {"metadata.name": node}
    return any(
        all(_requirement_holds(r, labels) for r in term.get("matchExpressions") or [])
        and all(_requirement_holds(r, fields) for r in term.get("matchFields") or [])
        for term in affinity.get("nodeSelectorTerms") or []
    )


def _condition(pod: Pod, kind: str) -> Mapping[str, Any]:
    conditions: list[Mapping[str, Any]] = _status(pod).get("conditions") or []
    return next((c for c in conditions if c.get("type") == kind), {})


def decide(pod: Pod, node: str, labels: Mapping[str, str]) -> Action:
    spec, status = _spec(pod), _status(pod)
    bound_to = spec.get("nodeName")
    if _meta(pod).get("deletionTimestamp"):
        return Action.DELETE if bound_to in (None, "", node) else Action.NOTHING
    if status.get("phase") in ("Succeeded", "Failed"):
        return Action.NOTHING
    if not bound_to:
        if spec.get("schedulerName", DEFAULT_SCHEDULER) != DEFAULT_SCHEDULER:
            return Action.NOTHING
        if fits(pod, node, labels):
            return Action.BIND
        if _condition(pod, "PodScheduled").get("reason") == "Unschedulable":
            return Action.NOTHING
        return Action.UNSCHEDULABLE
    if bound_to != node:
        return Action.NOTHING
    if not status.get("startTime"):
        return Action.START
    if runs_to_completion(pod) or crashing_containers(pod):
        return Action.SUPERVISE
    return Action.NOTHING


def _conditions(
    pod: Pod, at: str, ready: bool, reason: str | None, message: str | None
) -> list[dict[str, Any]]:
    """The five conditions a kubelet reports; a transition time moves only when
    the status does."""
    wanted = [
        ("PodReadyToStartContainers", True, None),
        ("Initialized", True, None),
        ("Ready", ready, reason),
        ("ContainersReady", ready, reason),
        ("PodScheduled", True, None),
    ]
    result = []
    for kind, value, why in wanted:
        text = "True" if value else "False"
        previous = _condition(pod, kind)
        condition: dict[str, Any] = {
            "type": kind,
            "status": text,
            "lastProbeTime": None,
            "lastTransitionTime": previous.get("lastTransitionTime", at)
            if previous.get("status") == text
            else at,
        }
        if why:
            condition["reason"] = why
            if message:
                condition["message"] = message
        result.append(condition)
    return result


def _base(container: Mapping[str, Any]) -> dict[str, Any]:
    image = container.get("image", "")
    return {"name": container["name"], "image": normalized_image(image), "imageID": image_id(image)}


def _running(
    pod: Pod, container: Mapping[str, Any], started_at: str, ready: bool = True
) -> dict[str, Any]:
    return {
        **_base(container),
        "containerID": container_id(pod, container["name"], 0),
        "ready": ready,
        "started": True,
        "restartCount": 0,
        "state": {"running": {"startedAt": started_at}},
        "lastState": {},
    }


def _crash_looping(
    pod: Pod, container: Mapping[str, Any], restarts: int, at: str
) -> dict[str, Any]:
    name = container["name"]
    pod_name = _meta(pod).get("name")
    return {
        **_base(container),
        "containerID": container_id(pod, name, restarts),
        "ready": False,
        "started": False,
        "restartCount": restarts,
        "state": {
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off 10s restarting failed container={name} pod={pod_name}",
            }
        },
        "lastState": {
            "terminated": {
                "exitCode": 1,
                "reason": "Error",
                "startedAt": at,
                "finishedAt": at,
                "containerID": container_id(pod, name, restarts),
            }
        },
    }


def _terminated(
    pod: Pod, container: Mapping[str, Any], started_at: str, at: str, code: int
) -> dict[str, Any]:
    cid = container_id(pod, container["name"], 0)
    return {
        **_base(container),
        "containerID": cid,
        "ready": False,
        "started": False,
        "restartCount": 0,
        "state": {
            "terminated": {
                "exitCode": code,
                "reason": "Completed" if code == 0 else "Error",
                "startedAt": started_at,
                "finishedAt": at,
                "containerID": cid,
            }
        },
        "lastState": {},
    }


def _init_statuses(pod: Pod, started_at: str) -> list[dict[str, Any]]:
    """Init containers ran to completion; sidecars (restartPolicy Always) keep running."""
    statuses = []
    for container in _spec(pod).get("initContainers") or []:
        if container.get("restartPolicy") == "Always":
            statuses.append(_running(pod, container, started_at))
        else:
            statuses.append(_terminated(pod, container, started_at, started_at, 0))
    return statuses


def _addresses(pod: Pod, node_ip: str) -> dict[str, Any]:
    ip = pod_ip(pod, node_ip)
    return {"hostIP": node_ip, "hostIPs": [{"ip": node_ip}], "podIP": ip, "podIPs": [{"ip": ip}]}


def running_status(pod: Pod, node_ip: str, restarts: int | None = None) -> dict[str, Any]:
    """Phase Running: healthy containers ready, crashing ones in CrashLoopBackOff
    with `restarts` restarts (by default one more than the pod reports), or, in
    a pod that never restarts, running unready until the pod fails."""
    at = now()
    started_at = _status(pod).get("startTime") or at
    crashing = crashing_containers(pod)
    count = _restarts(pod) + 1 if restarts is None else restarts
    statuses = []
    for container in _spec(pod).get("containers") or []:
        if container["name"] not in crashing:
            statuses.append(_running(pod, container, started_at))
        elif restarts_containers(pod):
            statuses.append(_crash_looping(pod, container, count, at))
        else:
            statuses.append(_running(pod, container, started_at, ready=False))
    reason = message = None
    if crashing:
        reason = "ContainersNotReady"
        message = f"containers with unready status: [{' '.join(sorted(crashing))}]"
    return {
        "phase": "Running",
        "conditions": _conditions(pod, at, not crashing, reason, message),
        **_addresses(pod, node_ip),
        "startTime": started_at,
        "initContainerStatuses": _init_statuses(pod, started_at),
        "containerStatuses": statuses,
    }


def finished_status(pod: Pod, node_ip: str, succeeded: bool) -> dict[str, Any]:
    """A pod whose containers all exited: Succeeded, or Failed with exit code 1."""
    at = now()
    started_at = _status(pod).get("startTime") or at
    code = 0 if succeeded else 1
    return {
        "phase": "Succeeded" if succeeded else "Failed",
        "conditions": _conditions(
            pod, at, False, "PodCompleted" if succeeded else "PodFailed", None
        ),
        **_addresses(pod, node_ip),
        "startTime": started_at,
        "initContainerStatuses": _init_statuses(pod, started_at),
        "containerStatuses": [
            _terminated(pod, c, started_at, at, code) for c in _spec(pod).get("containers") or []
        ],
    }


def unschedulable_status(pod: Pod) -> dict[str, Any]:
    return {
        "phase": "Pending",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "lastProbeTime": None,
                "lastTransitionTime": now(),
                "reason": "Unschedulable",
                "message": "0/1 nodes are available: 1 node(s) didn't match Pod's node "
                "affinity/selector. preemption: 0/1 nodes are available: 1 Preemption is "
                "not helpful for scheduling.",
            }
        ],
    }


def restarts_containers(pod: Pod) -> bool:
    """Whether a container that exits is started again (restartPolicy is not Never)."""
    return bool(_spec(pod).get("restartPolicy", "Always") != "Never")
