"""Health rules against objects shaped like what API servers really return."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from clusters.health import SEVERITY, Health, HealthStatus, assess, worst

H = HealthStatus


def deployment(
    *,
    replicas: int | None = 3,
    generation: int = 2,
    observed: int = 2,
    updated: int = 3,
    ready: int = 3,
    available: int = 3,
    total: int | None = None,
    paused: bool = False,
    progressing_reason: str = "NewReplicaSetAvailable",
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}},
        "strategy": {"type": "RollingUpdate"},
    }
    if replicas is not None:
        spec["replicas"] = replicas
    if paused:
        spec["paused"] = True
    status: dict[str, Any] = {
        "observedGeneration": observed,
        "replicas": updated if total is None else total,
        "conditions": [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
            {
                "type": "Progressing",
                "status": "False" if progressing_reason == "ProgressDeadlineExceeded" else "True",
                "reason": progressing_reason,
                "message": 'ReplicaSet "web-7d4b9c" has timed out progressing.'
                if progressing_reason == "ProgressDeadlineExceeded"
                else 'ReplicaSet "web-7d4b9c" has successfully progressed.',
            },
        ],
    }
    # The API server omits zero counts, and so do we, to catch `status.get` defaults.
    for key, value in (
        ("updatedReplicas", updated),
        ("readyReplicas", ready),
        ("availableReplicas", available),
    ):
        if value:
            status[key] = value
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "generation": generation},
        "spec": spec,
        "status": status,
    }


def statefulset(
    *,
    replicas: int = 3,
    ready: int = 3,
    updated: int = 3,
    partition: int | None = 0,
    strategy: str = "RollingUpdate",
    current: str = "db-5c6f",
    update: str = "db-5c6f",
    generation: int = 4,
    observed: int = 4,
) -> dict[str, Any]:
    update_strategy: dict[str, Any] = {"type": strategy}
    if strategy == "RollingUpdate" and partition is not None:
        update_strategy["rollingUpdate"] = {"partition": partition}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "shop", "generation": generation},
        "spec": {"replicas": replicas, "serviceName": "db", "updateStrategy": update_strategy},
        "status": {
            "observedGeneration": observed,
            "replicas": replicas,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "currentReplicas": replicas - updated if current != update else replicas,
            "updatedReplicas": updated,
            "currentRevision": current,
            "updateRevision": update,
        },
    }


def daemonset(
    *, desired: int = 4, updated: int = 4, available: int = 4, strategy: str = "RollingUpdate"
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "kube-system", "generation": 1},
        "spec": {"updateStrategy": {"type": strategy}},
        "status": {
            "observedGeneration": 1,
            "desiredNumberScheduled": desired,
            "currentNumberScheduled": desired,
            "updatedNumberScheduled": updated,
            "numberAvailable": available,
            "numberReady": available,
        },
    }


def replicaset(*, replicas: int = 2, available: int = 2, failure: bool = False) -> dict[str, Any]:
    status: dict[str, Any] = {
        "observedGeneration": 1,
        "replicas": replicas,
        "availableReplicas": available,
    }
    if failure:
        status["conditions"] = [
            {
                "type": "ReplicaFailure",
                "status": "True",
                "reason": "FailedCreate",
                "message": 'pods "web-abc" is forbidden: exceeded quota: compute',
            }
        ]
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "web-7d4b9c", "namespace": "shop", "generation": 1},
        "spec": {"replicas": replicas},
        "status": status,
    }


def pod(
    phase: str,
    *,
    ready: bool = True,
    restart_policy: str = "Always",
    waiting: str | None = None,
    restarts: int = 0,
    last_terminated: dict[str, Any] | None = None,
    terminated: dict[str, Any] | None = None,
    conditions: list[dict[str, Any]] | None = None,
    message: str | None = None,
) -> dict[str, Any]:
    state: dict[str, Any] = {"running": {"startedAt": "2026-01-01T00:00:00Z"}}
    if waiting:
        state = {"waiting": {"reason": waiting, "message": "back-off 5m0s restarting"}}
    if terminated:
        state = {"terminated": terminated}
    container: dict[str, Any] = {
        "name": "app",
        "image": "nginx:1.27",
        "ready": ready,
        "restartCount": restarts,
        "state": state,
        "lastState": {"terminated": last_terminated} if last_terminated else {},
    }
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": conditions
        if conditions is not None
        else [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Ready", "status": "True" if ready else "False"},
        ],
        "containerStatuses": [container],
    }
    if message:
        status["message"] = message
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-7d4b9c-x2x", "namespace": "shop"},
        "spec": {"restartPolicy": restart_policy, "containers": [{"name": "app"}]},
        "status": status,
    }


def job(
    *,
    conditions: list[dict[str, Any]] | None = None,
    active: int = 0,
    succeeded: int = 0,
    suspend: bool = False,
) -> dict[str, Any]:
    status: dict[str, Any] = {"conditions": conditions or []}
    if active:
        status["active"] = active
    if succeeded:
        status["succeeded"] = succeeded
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "migrate", "namespace": "shop", "generation": 1},
        "spec": {"completions": 1, "backoffLimit": 6, "suspend": suspend},
        "status": status,
    }


def service(kind: str = "ClusterIP", ingress: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"type": kind, "ports": [{"port": 80}], "selector": {"app": "web"}},
        "status": {"loadBalancer": {"ingress": ingress} if ingress else {}},
    }


def ingress(addresses: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "web", "namespace": "shop", "generation": 1},
        "spec": {"rules": [{"host": "shop.example.com"}]},
        "status": {"loadBalancer": {"ingress": addresses} if addresses else {}},
    }


def route(parents: list[dict[str, Any]] | None, generation: int = 3) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "web", "namespace": "shop", "generation": generation},
        "spec": {"parentRefs": [{"name": "public"}]},
    }
    if parents is not None:
        obj["status"] = {"parents": parents}
    return obj


def parent(*conditions: tuple[str, str, str], observed: int = 3) -> dict[str, Any]:
    return {
        "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public"},
        "controllerName": "example.com/gateway-controller",
        "conditions": [
            {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": f"{kind} {reason}",
                "observedGeneration": observed,
            }
            for kind, status, reason in conditions
        ],
    }


def pvc(phase: str | None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": "shop"},
        "spec": {"accessModes": ["ReadWriteOnce"]},
        "status": {"phase": phase} if phase else {},
    }


def custom(
    conditions: list[dict[str, Any]] | None, *, generation: int = 2, observed: int | None = None
) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if conditions is not None:
        status["conditions"] = conditions
    if observed is not None:
        status["observedGeneration"] = observed
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": "shop-tls", "namespace": "shop", "generation": generation},
        "spec": {"secretName": "shop-tls"},
        "status": status,
    }


def plain(api_version: str, kind: str) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}, "data": {}}


def deleting(obj: dict[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return obj


CRASH = {"exitCode": 1, "reason": "Error", "finishedAt": "2026-01-01T00:00:00Z"}

CASES: list[tuple[str, dict[str, Any] | None, HealthStatus, str]] = [
    # Deployment
    ("deploy/healthy", deployment(), H.HEALTHY, "3/3 replicas available"),
    ("deploy/default-replicas", deployment(replicas=None, updated=1, ready=1, available=1),
     H.HEALTHY, "1/1"),
    ("deploy/scaled-to-zero", deployment(replicas=0, updated=0, ready=0, available=0),
     H.HEALTHY, "0/0"),
    ("deploy/new-generation", deployment(generation=3, observed=2), H.PROGRESSING,
     "observe generation 3"),
    ("deploy/rolling", deployment(replicas=5, updated=3, ready=5, available=5, total=7),
     H.PROGRESSING, "3/5 replicas updated"),
    ("deploy/old-terminating", deployment(total=4), H.PROGRESSING,
     "1 old replicas pending termination"),
    ("deploy/not-ready", deployment(ready=2, available=2), H.PROGRESSING, "2/3 replicas ready"),
    ("deploy/not-available", deployment(available=1), H.PROGRESSING, "1/3 replicas available"),
    ("deploy/just-created", {**deployment(), "status": {}}, H.PROGRESSING, "generation 2"),
    ("deploy/deadline", deployment(updated=1, progressing_reason="ProgressDeadlineExceeded"),
     H.DEGRADED, "timed out progressing"),
    ("deploy/paused", deployment(paused=True, updated=0), H.SUSPENDED, "paused"),
    ("deploy/deleting", deleting(deployment()), H.PROGRESSING, "pending deletion"),
    # StatefulSet
    ("sts/healthy", statefulset(), H.HEALTHY, "3/3 replicas ready at revision db-5c6f"),
    ("sts/not-observed", statefulset(observed=0, generation=1), H.PROGRESSING, "generation 1"),
    ("sts/not-ready", statefulset(ready=1), H.PROGRESSING, "1/3 replicas ready"),
    ("sts/rolling", statefulset(updated=1, update="db-6a7b"), H.PROGRESSING,
     "1/3 replicas at revision db-6a7b"),
    ("sts/partition-holding", statefulset(partition=3, updated=0, update="db-6a7b"),
     H.HEALTHY, "partitioned rollout complete"),
    ("sts/partition-moving", statefulset(partition=1, updated=1, update="db-6a7b"),
     H.PROGRESSING, "1/2 replicas updated (partition 1)"),
    ("sts/partition-done", statefulset(partition=1, updated=2, update="db-6a7b"),
     H.HEALTHY, "2 replicas updated"),
    ("sts/on-delete", statefulset(strategy="OnDelete", updated=0, update="db-6a7b"),
     H.HEALTHY, "OnDelete"),
    # DaemonSet
    ("ds/healthy", daemonset(), H.HEALTHY, "4/4 pods available"),
    ("ds/rolling", daemonset(updated=2), H.PROGRESSING, "2/4 pods updated"),
    ("ds/unavailable", daemonset(available=3), H.PROGRESSING, "3/4 pods available"),
    ("ds/on-delete", daemonset(strategy="OnDelete", updated=1), H.HEALTHY, "OnDelete"),
    # ReplicaSet
    ("rs/healthy", replicaset(), H.HEALTHY, "2/2"),
    ("rs/scaling", replicaset(available=1), H.PROGRESSING, "1/2 replicas available"),
    ("rs/quota", replicaset(available=0, failure=True), H.DEGRADED, "exceeded quota"),
    # Pod
    ("pod/ready", pod("Running"), H.HEALTHY, "running and ready"),
    ("pod/starting", pod("Running", ready=False), H.PROGRESSING, "not ready"),
    ("pod/crashloop", pod("Running", ready=False, waiting="CrashLoopBackOff", restarts=7,
                          last_terminated=CRASH), H.DEGRADED,
     "container app: CrashLoopBackOff (7 restarts)"),
    ("pod/image-pull", pod("Pending", ready=False, waiting="ImagePullBackOff"), H.DEGRADED,
     "ImagePullBackOff"),
    ("pod/bad-image-name", pod("Pending", ready=False, waiting="InvalidImageName"), H.DEGRADED,
     "InvalidImageName"),
    ("pod/config-error", pod("Pending", ready=False, waiting="CreateContainerConfigError"),
     H.DEGRADED, "CreateContainerConfigError"),
    ("pod/creating", pod("Pending", ready=False, waiting="ContainerCreating"), H.PROGRESSING,
     "pending"),
    ("pod/unschedulable", pod("Pending", ready=False, conditions=[
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": "0/3 nodes are available: 3 Insufficient cpu."}]),
     H.PROGRESSING, "Insufficient cpu"),
    ("pod/restarted-not-ready", pod("Running", ready=False, restarts=2, last_terminated=CRASH),
     H.DEGRADED, "2 restarts"),
    ("pod/job-running", pod("Running", restart_policy="Never"), H.PROGRESSING, "completion"),
    ("pod/job-backoff", pod("Running", restart_policy="OnFailure", waiting="CrashLoopBackOff"),
     H.PROGRESSING, "completion"),
    ("pod/job-succeeded", pod("Succeeded", ready=False, restart_policy="Never",
                              terminated={"exitCode": 0, "reason": "Completed"}),
     H.HEALTHY, "completed"),
    ("pod/job-failed", pod("Failed", ready=False, restart_policy="Never",
                           terminated={"exitCode": 2, "reason": "Error"}),
     H.DEGRADED, "container app: Error (exit code 2)"),
    ("pod/evicted", pod("Failed", ready=False, message="The node was low on resource: memory."),
     H.DEGRADED, "low on resource"),
    ("pod/oom", pod("Failed", ready=False, restart_policy="Never",
                    terminated={"exitCode": 137, "reason": "OOMKilled"}), H.DEGRADED, "OOMKilled"),
    ("pod/unknown-phase", pod("Unknown", ready=False), H.UNKNOWN, "phase Unknown"),
    # Job
    ("job/complete", job(succeeded=1, conditions=[
        {"type": "SuccessCriteriaMet", "status": "True"},
        {"type": "Complete", "status": "True"}]), H.HEALTHY, "completed"),
    ("job/running", job(active=1), H.PROGRESSING, "1 active, 0/1 succeeded"),
    ("job/failed", job(conditions=[
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
         "message": "Job has reached the specified backoff limit"}]),
     H.DEGRADED, "backoff limit"),
    ("job/failing", job(conditions=[
        {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded"}]),
     H.DEGRADED, "BackoffLimitExceeded"),
    ("job/suspended", job(suspend=True, conditions=[
        {"type": "Suspended", "status": "True", "reason": "JobSuspended"}]),
     H.SUSPENDED, "suspended"),
    ("job/resumed", job(active=1, conditions=[
        {"type": "Suspended", "status": "False", "reason": "JobResumed"}]),
     H.PROGRESSING, "1 active"),
    # Service, Ingress
    ("svc/cluster-ip", service(), H.HEALTHY, ""),
    ("svc/lb-pending", service("LoadBalancer"), H.PROGRESSING, "load balancer address"),
    ("svc/lb-ready", service("LoadBalancer", [{"ip": "203.0.113.7"}]), H.HEALTHY,
     "203.0.113.7"),
    ("ing/no-address", ingress(), H.HEALTHY, ""),
    ("ing/address", ingress([{"hostname": "lb.example.com"}]), H.HEALTHY, "lb.example.com"),
    # HTTPRoute
    ("route/no-controller", route(None), H.HEALTHY, ""),
    ("route/accepted", route([parent(("Accepted", "True", "Accepted"),
                                     ("ResolvedRefs", "True", "ResolvedRefs"))]),
     H.HEALTHY, ""),
    ("route/not-accepted", route([parent(("Accepted", "False", "NotAllowedByListeners"))]),
     H.DEGRADED, "Accepted False on gateway public"),
    ("route/bad-backend", route([parent(("Accepted", "True", "Accepted"),
                                        ("ResolvedRefs", "False", "BackendNotFound"))]),
     H.DEGRADED, "BackendNotFound"),
    ("route/pending", route([parent(("Accepted", "False", "Pending"))]), H.PROGRESSING,
     "pending on gateway public"),
    ("route/stale", route([parent(("Accepted", "True", "Accepted"), observed=2)]),
     H.PROGRESSING, "waiting for gateway public"),
    # PVC
    ("pvc/bound", pvc("Bound"), H.HEALTHY, "bound"),
    ("pvc/pending", pvc("Pending"), H.PROGRESSING, "waiting for a volume"),
    ("pvc/lost", pvc("Lost"), H.DEGRADED, "lost"),
    ("pvc/no-status", pvc(None), H.UNKNOWN, "phase None"),
    # CRD
    ("crd/established", {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "status": {"conditions": [{"type": "NamesAccepted", "status": "True"},
                                  {"type": "Established", "status": "True"}]}},
     H.HEALTHY, "established"),
    ("crd/name-clash", {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "status": {"conditions": [{"type": "NamesAccepted", "status": "False",
                                   "reason": "MultipleNamesConflict",
                                   "message": "\"widget\" is already in use"}]}},
     H.DEGRADED, "already in use"),
    # Anything with conditions
    ("cr/ready", custom([{"type": "Ready", "status": "True",
                          "message": "Certificate is up to date"}]), H.HEALTHY, "up to date"),
    ("cr/not-ready", custom([{"type": "Ready", "status": "False", "reason": "Failed",
                             "message": "issuer not found"}]), H.DEGRADED, "issuer not found"),
    ("cr/unknown", custom([{"type": "Ready", "status": "Unknown", "reason": "Issuing"}]),
     H.PROGRESSING, "Issuing"),
    ("cr/stale-status", custom([{"type": "Ready", "status": "False"}], observed=1),
     H.PROGRESSING, "generation 2"),
    ("cr/stale-condition", custom([{"type": "Ready", "status": "True", "observedGeneration": 1}]),
     H.PROGRESSING, "not yet reported for generation 2"),
    ("cr/available-false", custom([{"type": "Available", "status": "False",
                                   "reason": "MinimumReplicasUnavailable"}]),
     H.DEGRADED, "MinimumReplicasUnavailable"),
    ("cr/stalled", custom([{"type": "Ready", "status": "True"},
                           {"type": "Stalled", "status": "True", "message": "quota exceeded"}]),
     H.DEGRADED, "quota exceeded"),
    ("cr/reconciling", custom([{"type": "Ready", "status": "False"},
                               {"type": "Reconciling", "status": "True", "reason": "Progressing"}]),
     H.PROGRESSING, "Progressing"),
    ("cr/other-conditions", custom([{"type": "Synced", "status": "False"}]), H.HEALTHY, ""),
    ("cr/no-status", custom(None), H.HEALTHY, ""),
    # Plain objects
    ("configmap", plain("v1", "ConfigMap"), H.HEALTHY, ""),
    ("secret", plain("v1", "Secret"), H.HEALTHY, ""),
    ("serviceaccount", plain("v1", "ServiceAccount"), H.HEALTHY, ""),
    ("namespace", {**plain("v1", "Namespace"), "status": {"phase": "Active"}}, H.HEALTHY, ""),
    ("role", plain("rbac.authorization.k8s.io/v1", "Role"), H.HEALTHY, ""),
    # Absent and malformed
    ("missing", None, H.MISSING, "not found"),
    ("malformed", {**deployment(), "status": {"observedGeneration": "soon"}}, H.UNKNOWN,
     "cannot read status"),
]  # fmt: skip


@pytest.mark.parametrize(("obj", "status", "reason"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_assess(obj: dict[str, Any] | None, status: HealthStatus, reason: str) -> None:
    health = assess(obj)
    assert health.status is status, health
    assert reason in health.reason
    assert "\n" not in health.reason


def test_assess_does_not_modify_the_object() -> None:
    obj = deployment(ready=1)
    before = copy.deepcopy(obj)
    assess(obj)
    assert obj == before


def test_reasons_are_one_bounded_line() -> None:
    cr = custom([{"type": "Ready", "status": "False", "message": "line one\nline two " * 100}])
    reason = assess(cr).reason
    assert "\n" not in reason
    assert len(reason) <= 200


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([], H.HEALTHY),
        ([H.HEALTHY, H.SUSPENDED], H.SUSPENDED),
        ([H.SUSPENDED, H.PROGRESSING, H.HEALTHY], H.PROGRESSING),
        ([H.PROGRESSING, H.UNKNOWN], H.UNKNOWN),
        ([H.UNKNOWN, H.MISSING, H.PROGRESSING], H.MISSING),
        ([H.MISSING, H.DEGRADED, H.UNKNOWN], H.DEGRADED),
    ],
)
def test_worst(statuses: list[HealthStatus], expected: HealthStatus) -> None:
    assert worst(Health(s, s.value.lower()) for s in statuses).status is expected


def test_worst_keeps_the_reason_of_the_first_worst_child() -> None:
    children = [
        Health(H.PROGRESSING, "1/3 ready"),
        Health(H.DEGRADED, "CrashLoopBackOff"),
        Health(H.DEGRADED, "quota"),
    ]
    assert worst(children) == Health(H.DEGRADED, "CrashLoopBackOff")


def test_severity_names_every_status_once() -> None:
    assert sorted(SEVERITY) == sorted(HealthStatus)
