"""How healthy one Kubernetes object is, judged from the object alone.

Pure: no I/O, no clock, no client. The status tree, the canary's "ready on every
cluster?" gate and `flotilla status` all ask the same question, so the answer lives in
one place and is tested against realistic objects. Argo CD's health assessment is the
bar: a user who knows Argo should never be surprised by a verdict here. Where we are
stricter (a Deployment is Healthy only when every replica is updated, ready and
available) the rule says so.

Every verdict carries one short line of reason, because "Progressing" alone does not
tell an operator whether to wait or to act.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


class HealthStatus(enum.StrEnum):
    HEALTHY = "Healthy"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    SUSPENDED = "Suspended"
    MISSING = "Missing"
    UNKNOWN = "Unknown"


@dataclass(frozen=True)
class Health:
    status: HealthStatus
    reason: str = ""


# Worst first. Argo CD ranks Unknown above Degraded; we do not, because here Unknown
# mostly means "this cluster could not be asked", and letting it outrank a confirmed
# failure would hide the one thing an operator can act on. Missing outranks Unknown for
# the same reason: it is a fact, not an absence of facts.
SEVERITY: tuple[HealthStatus, ...] = (
    HealthStatus.DEGRADED,
    HealthStatus.MISSING,
    HealthStatus.UNKNOWN,
    HealthStatus.PROGRESSING,
    HealthStatus.SUSPENDED,
    HealthStatus.HEALTHY,
)
_RANK = {status: rank for rank, status in enumerate(SEVERITY)}

MISSING = Health(HealthStatus.MISSING, "not found in the cluster")
_NOTHING_WRONG = Health(HealthStatus.HEALTHY)

# Container waiting reasons that will not resolve by waiting (Argo CD's rule: Err*,
# *Error, *BackOff), plus the one image error that matches none of those patterns.
_STUCK_WAITING_EXACT = frozenset({"InvalidImageName"})


def worst(healths: Iterable[Health]) -> Health:
    """The most severe of `healths`, keeping its reason; Healthy when there are none."""
    return min(healths, key=_rank, default=_NOTHING_WRONG)


def _rank(health: Health) -> int:
    return _RANK[health.status]


def stuck(waiting_reason: str) -> bool:
    """Whether a container waiting for this reason will not get going by waiting longer."""
    return bool(waiting_reason) and (
        waiting_reason.startswith("Err")
        or waiting_reason.endswith(("Error", "BackOff"))
        or waiting_reason in _STUCK_WAITING_EXACT
    )


def assess(obj: Mapping[str, Any] | None) -> Health:
    """The health of one object as the API server returned it (None: it does not exist)."""
    if obj is None:
        return MISSING
    metadata = obj.get("metadata") or {}
    if metadata.get("deletionTimestamp"):
        return _progressing("pending deletion")
    group = str(obj.get("apiVersion", "")).rpartition("/")[0]
    rule = _RULES.get((group, str(obj.get("kind", ""))), _by_conditions)
    try:
        return rule(obj)
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        # A malformed status is the object's problem, not ours: report, don't crash.
        return Health(HealthStatus.UNKNOWN, f"cannot read status ({type(e).__name__}: {e})")


def hook_outcome(obj: Mapping[str, Any] | None) -> Health:
    """How a run-to-completion object that something waits for (a Helm hook) ended:
    Healthy once a Job is Complete or a Pod Succeeded, Degraded once either failed (with
    `Reason (message)`, what an operator needs to look further), Progressing until then.
    Any other kind is done once it exists, as Helm waits for nothing else."""
    if obj is None:
        return MISSING
    kind = obj.get("kind")
    if kind == "Job" and obj.get("apiVersion") == "batch/v1":
        conditions = _status(obj).get("conditions")
        for name in ("Failed", "FailureTarget"):
            if _is_true(failed := _condition(conditions, name)):
                reason, message = failed.get("reason"), failed.get("message")
                if reason and message:
                    return _degraded(_one_line(f"{reason} ({message})"))
                return _degraded(_explain(failed, "job failed"))
        if _is_true(_condition(conditions, "Complete")):
            return _healthy("completed")
        return _progressing("running to completion")
    if kind == "Pod" and obj.get("apiVersion") == "v1":
        phase = _status(obj).get("phase")
        if phase in ("Succeeded", "Failed"):
            return _pod(obj)
        return _progressing(f"pod {phase or 'Pending'}")
    return _healthy("created")


def hook_settled(obj: Mapping[str, Any] | None) -> Health:
    """Healthy once `hook_outcome` knows how the object ended, either way: what a wait
    for a hook waits for, so a failed Job ends the wait at once, not at its timeout."""
    outcome = hook_outcome(obj)
    if outcome.status in (HealthStatus.HEALTHY, HealthStatus.DEGRADED):
        return _healthy(outcome.reason)
    return outcome


# ---------------------------------------------------------------------------- helpers


def _healthy(reason: str = "") -> Health:
    return Health(HealthStatus.HEALTHY, reason)


def _progressing(reason: str) -> Health:
    return Health(HealthStatus.PROGRESSING, reason)


def _degraded(reason: str) -> Health:
    return Health(HealthStatus.DEGRADED, reason)


def _spec(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("spec") or {}


def _status(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("status") or {}


def _int(section: Mapping[str, Any], key: str, default: int = 0) -> int:
    value = section.get(key)
    return default if value is None else int(value)


def _condition(conditions: Sequence[Mapping[str, Any]] | None, kind: str) -> Mapping[str, Any]:
    return next((c for c in conditions or () if c.get("type") == kind), {})


def _is_true(condition: Mapping[str, Any]) -> bool:
    return condition.get("status") == "True"


def _one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _explain(condition: Mapping[str, Any], fallback: str) -> str:
    """A condition's message, else its reason, else `fallback`: whatever says the most."""
    return _one_line(condition.get("message") or condition.get("reason") or fallback)


def _generation_lag(obj: Mapping[str, Any], *, unset_is_lag: bool = False) -> Health | None:
    """Progressing while the controller has not yet seen the latest spec."""
    generation = _int(obj.get("metadata") or {}, "generation")
    observed = _int(_status(obj), "observedGeneration")
    if observed < generation or (unset_is_lag and observed == 0):
        return _progressing(f"waiting for the controller to observe generation {generation}")
    return None


# ---------------------------------------------------------------------------- workloads


def _deployment(obj: Mapping[str, Any]) -> Health:
    """Argo CD's rule (kubectl rollout status), made strict: Healthy needs every replica
    updated, ready and available, so a canary gate never passes on a half-ready fleet."""
    spec, status = _spec(obj), _status(obj)
    if spec.get("paused"):
        return Health(HealthStatus.SUSPENDED, "rollout paused")
    if lag := _generation_lag(obj):
        return lag
    progress = _condition(status.get("conditions"), "Progressing")
    if progress.get("reason") == "ProgressDeadlineExceeded":
        return _degraded(_explain(progress, "progress deadline exceeded"))
    want = _int(spec, "replicas", 1)
    updated = _int(status, "updatedReplicas")
    total = _int(status, "replicas")
    if updated != want:
        return _progressing(f"{updated}/{want} replicas updated")
    if total > updated:
        return _progressing(f"{total - updated} old replicas pending termination")
    for field in ("readyReplicas", "availableReplicas"):
        if (count := _int(status, field)) != want:
            return _progressing(f"{count}/{want} replicas {field.removesuffix('Replicas')}")
    return _healthy(f"{want}/{want} replicas available")


def _statefulset(obj: Mapping[str, Any]) -> Health:
    """Partition-aware: with a partition only `replicas - partition` pods are meant to
    move, so that many updated pods is a finished (partial) rollout, as in Argo CD."""
    spec, status = _spec(obj), _status(obj)
    if lag := _generation_lag(obj, unset_is_lag=True):
        return lag
    want = _int(spec, "replicas", 1)
    ready = _int(status, "readyReplicas")
    if ready < want:
        return _progressing(f"{ready}/{want} replicas ready")
    if "availableReplicas" in status and (available := _int(status, "availableReplicas")) < want:
        return _progressing(f"{available}/{want} replicas available")
    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type") == "OnDelete":
        return _healthy(f"{ready} replicas ready (OnDelete updates)")
    partition = _int(strategy.get("rollingUpdate") or {}, "partition")
    updated = _int(status, "updatedReplicas")
    if partition > 0:
        target = max(want - partition, 0)
        if updated < target:
            return _progressing(f"{updated}/{target} replicas updated (partition {partition})")
        return _healthy(f"partitioned rollout complete: {updated} replicas updated")
    revision = status.get("updateRevision")
    if updated < want or revision != status.get("currentRevision"):
        return _progressing(f"{updated}/{want} replicas at revision {revision}")
    return _healthy(f"{want}/{want} replicas ready at revision {revision}")


def _daemonset(obj: Mapping[str, Any]) -> Health:
    spec, status = _spec(obj), _status(obj)
    if lag := _generation_lag(obj):
        return lag
    desired = _int(status, "desiredNumberScheduled")
    if (spec.get("updateStrategy") or {}).get("type") == "OnDelete":
        return _healthy(f"{_int(status, 'numberAvailable')}/{desired} pods available (OnDelete)")
    updated = _int(status, "updatedNumberScheduled")
    if updated < desired:
        return _progressing(f"{updated}/{desired} pods updated")
    available = _int(status, "numberAvailable")
    if available < desired:
        return _progressing(f"{available}/{desired} pods available")
    return _healthy(f"{desired}/{desired} pods available")


def _replicaset(obj: Mapping[str, Any]) -> Health:
    status = _status(obj)
    if lag := _generation_lag(obj):
        return lag
    failure = _condition(status.get("conditions"), "ReplicaFailure")
    if _is_true(failure):
        return _degraded(_explain(failure, "replica failure"))
    want = _int(_spec(obj), "replicas", 1)
    available = _int(status, "availableReplicas")
    if available < want:
        return _progressing(f"{available}/{want} replicas available")
    return _healthy(f"{want}/{want} replicas available")


def _job(obj: Mapping[str, Any]) -> Health:
    spec, status = _spec(obj), _status(obj)
    conditions = status.get("conditions")
    # FailureTarget is set before Failed while pods are still being terminated.
    for kind in ("Failed", "FailureTarget"):
        if _is_true(failed := _condition(conditions, kind)):
            return _degraded(_explain(failed, "job failed"))
    if _is_true(done := _condition(conditions, "Complete")):
        return _healthy(_explain(done, "completed"))
    if spec.get("suspend"):
        return Health(HealthStatus.SUSPENDED, "job suspended")
    completions = _int(spec, "completions", 1)
    return _progressing(
        f"{_int(status, 'active')} active, {_int(status, 'succeeded')}/{completions} succeeded"
    )


# ---------------------------------------------------------------------------- pods


def _stuck_container(pod_status: Mapping[str, Any]) -> str | None:
    """The first container waiting for a reason that waiting will not fix."""
    statuses = [
        *(pod_status.get("initContainerStatuses") or ()),
        *(pod_status.get("containerStatuses") or ()),
    ]
    for container in statuses:
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason = str(waiting.get("reason") or "")
        if stuck(reason):
            restarts = _int(container, "restartCount")
            return f"container {container.get('name')}: {reason} ({restarts} restarts)"
    return None


def _pod(obj: Mapping[str, Any]) -> Health:
    """Argo CD's rule. Only pods that restart forever are judged by their waiting
    containers: a Job's pod in back-off may still succeed on its next attempt."""
    status = _status(obj)
    restart_policy = _spec(obj).get("restartPolicy", "Always")
    if restart_policy == "Always" and (stuck := _stuck_container(status)):
        return _degraded(stuck)
    phase = status.get("phase")
    conditions = status.get("conditions")
    if phase == "Pending":
        scheduled = _condition(conditions, "PodScheduled")
        if scheduled.get("status") == "False":
            return _progressing(_explain(scheduled, "not scheduled"))
        return _progressing(_one_line(status.get("message") or "pending"))
    if phase == "Succeeded":
        return _healthy("completed")
    if phase == "Failed":
        return _degraded(_one_line(status.get("message") or _termination(status) or "failed"))
    if phase == "Running":
        if restart_policy != "Always":
            return _progressing("running to completion")
        if _is_true(_condition(conditions, "Ready")):
            return _healthy("running and ready")
        for container in status.get("containerStatuses") or ():
            last = (container.get("lastState") or {}).get("terminated")
            if last:
                restarts = _int(container, "restartCount")
                return _degraded(
                    f"container {container.get('name')} not ready: last exit "
                    f"{last.get('reason') or last.get('exitCode')} ({restarts} restarts)"
                )
        return _progressing("running, not ready")
    return Health(HealthStatus.UNKNOWN, _one_line(status.get("message") or f"phase {phase}"))


def _termination(pod_status: Mapping[str, Any]) -> str | None:
    statuses = [
        *(pod_status.get("initContainerStatuses") or ()),
        *(pod_status.get("containerStatuses") or ()),
    ]
    for container in statuses:
        ended = (container.get("state") or {}).get("terminated") or {}
        if ended.get("message"):
            return str(ended["message"])
        if ended.get("reason") == "OOMKilled" or _int(ended, "exitCode"):
            return (
                f"container {container.get('name')}: "
                f"{ended.get('reason') or 'exit'} (exit code {_int(ended, 'exitCode')})"
            )
    return None


# ---------------------------------------------------------------------------- networking


def _addresses(obj: Mapping[str, Any]) -> list[str]:
    ingress = (_status(obj).get("loadBalancer") or {}).get("ingress") or ()
    return [str(i.get("ip") or i.get("hostname")) for i in ingress]


def _service(obj: Mapping[str, Any]) -> Health:
    if _spec(obj).get("type") != "LoadBalancer":
        return _healthy()
    if addresses := _addresses(obj):
        return _healthy(f"load balancer {', '.join(addresses)}")
    return _progressing("waiting for a load balancer address")


def _ingress(obj: Mapping[str, Any]) -> Health:
    """Healthy once it exists. Argo CD waits for a load-balancer address, but many
    controllers (and every cluster without one) never publish it, which would leave
    a working Ingress Progressing forever."""
    addresses = _addresses(obj)
    return _healthy(f"address {', '.join(addresses)}" if addresses else "")


def _route(obj: Mapping[str, Any]) -> Health:
    """Gateway API routes: every parent Gateway must accept the route and resolve its
    backends, for the current generation. No parents reported means no controller is
    reconciling routes here; like an Ingress without address, that is Healthy."""
    generation = _int(obj.get("metadata") or {}, "generation")
    waiting: Health | None = None
    for parent in _status(obj).get("parents") or ():
        gateway = (parent.get("parentRef") or {}).get("name", "?")
        for kind in ("Accepted", "ResolvedRefs"):
            condition = _condition(parent.get("conditions"), kind)
            if not condition:
                continue
            if _stale(condition, generation):
                waiting = waiting or _progressing(f"waiting for gateway {gateway} to observe it")
            elif condition.get("status") == "False":
                if condition.get("reason") == "Pending":
                    waiting = waiting or _progressing(f"pending on gateway {gateway}")
                else:
                    return _degraded(
                        f"{kind} False on gateway {gateway}: {_explain(condition, '')}"
                    )
            elif condition.get("status") == "Unknown":
                waiting = waiting or _progressing(f"{kind} unknown on gateway {gateway}")
    return waiting or _healthy()


def _pvc(obj: Mapping[str, Any]) -> Health:
    phase = _status(obj).get("phase")
    if phase == "Bound":
        return _healthy("bound")
    if phase == "Pending":
        return _progressing("waiting for a volume")
    if phase == "Lost":
        return _degraded("bound volume lost")
    return Health(HealthStatus.UNKNOWN, f"phase {phase}")


def _crd(obj: Mapping[str, Any]) -> Health:
    conditions = _status(obj).get("conditions")
    names = _condition(conditions, "NamesAccepted")
    if names.get("status") == "False":
        return _degraded(_explain(names, "names not accepted"))
    if _is_true(_condition(conditions, "Established")):
        return _healthy("established")
    return _progressing("waiting to be established")


# ---------------------------------------------------------------------------- the rest


def _by_conditions(obj: Mapping[str, Any]) -> Health:
    """Anything else: kstatus conventions (Stalled, Reconciling, observedGeneration),
    then Ready or Available. Objects with no conditions at all (ConfigMap, Secret,
    ServiceAccount, Namespace, RBAC ...) are Healthy once they exist."""
    status = _status(obj)
    conditions = status.get("conditions")
    if not conditions:
        return _healthy()
    if _is_true(stalled := _condition(conditions, "Stalled")):
        return _degraded(_explain(stalled, "stalled"))
    generation = _int(obj.get("metadata") or {}, "generation")
    if _stale(status, generation):
        return _progressing(f"waiting for the controller to observe generation {generation}")
    if _is_true(reconciling := _condition(conditions, "Reconciling")):
        return _progressing(_explain(reconciling, "reconciling"))
    for kind in ("Ready", "Available"):
        condition = _condition(conditions, kind)
        if not condition:
            continue
        if _stale(condition, generation):
            return _progressing(f"{kind} not yet reported for generation {generation}")
        if _is_true(condition):
            return _healthy(_one_line(condition.get("message") or kind.lower()))
        if condition.get("status") == "False":
            return _degraded(_explain(condition, f"{kind} is False"))
        return _progressing(_explain(condition, f"{kind} is {condition.get('status')}"))
    return _healthy()


def _stale(section: Mapping[str, Any], generation: int) -> bool:
    """Whether a status (or condition) says it describes an older spec. Many custom
    controllers never set observedGeneration; its absence proves nothing."""
    return "observedGeneration" in section and _int(section, "observedGeneration") < generation


_Rule = Callable[[Mapping[str, Any]], Health]

# Keyed by (API group, kind): the version does not change what health means.
_RULES: dict[tuple[str, str], _Rule] = {
    ("apps", "Deployment"): _deployment,
    ("apps", "StatefulSet"): _statefulset,
    ("apps", "DaemonSet"): _daemonset,
    ("apps", "ReplicaSet"): _replicaset,
    ("batch", "Job"): _job,
    ("", "Pod"): _pod,
    ("", "Service"): _service,
    ("", "PersistentVolumeClaim"): _pvc,
    ("networking.k8s.io", "Ingress"): _ingress,
    ("gateway.networking.k8s.io", "HTTPRoute"): _route,
    ("gateway.networking.k8s.io", "GRPCRoute"): _route,
    ("apiextensions.k8s.io", "CustomResourceDefinition"): _crd,
}
