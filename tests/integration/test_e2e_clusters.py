"""The local clusters are real Kubernetes: workloads converge on every cluster,
clusters are isolated from each other, RBAC holds, unhealthy pods stay unready,
Jobs finish, both kinds of admin credentials work, and an API server can be
taken away and brought back."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest
from kubernetes_asyncio import config
from kubernetes_asyncio.client import AuthenticationV1Api, CoreV1Api, V1SelfSubjectReview

from e2e import clusters
from e2e.binaries import K8S_VERSION
from e2e.clusters import ADMIN_USER, REPO, ClusterInfo, state_dir
from e2e.gateway import install_gateway_crds
from e2e.kubectl import kubectl

pytestmark = pytest.mark.cluster

T = TypeVar("T")
DEADLINE = 30.0

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "nginx:1.27"}]
"""


def poll(what: str, probe: Callable[[], T | None], timeout: float = DEADLINE) -> T:
    """The first non-None answer of `probe`, or a failure naming `what`."""
    deadline = time.monotonic() + timeout
    while (value := probe()) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(0.2)
    return value


def get(info: ClusterInfo, *args: str) -> Any:
    return json.loads(kubectl(info.kubeconfig, "get", *args, "-o", "json").stdout)


def ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def pods_ready(info: ClusterInfo, namespace: str, count: int) -> bool | None:
    """True once exactly `count` pods exist and all are Ready."""
    pods = get(info, "pods", "-n", namespace)["items"]
    return True if len(pods) == count and all(ready(p) for p in pods) else None


def test_servers_report_the_pinned_release(e2e_clusters: list[ClusterInfo]) -> None:
    for info in e2e_clusters:
        version = json.loads(kubectl(info.kubeconfig, "version", "-o", "json").stdout)
        assert version["serverVersion"]["gitVersion"] == K8S_VERSION


def test_deployment_becomes_ready_everywhere_and_scales(
    e2e_clusters: list[ClusterInfo], namespace: str
) -> None:
    for info in e2e_clusters:
        kubectl(info.kubeconfig, "apply", "-n", namespace, "-f", "-", stdin=DEPLOYMENT)
    for info in e2e_clusters:

        def rolled_out(info: ClusterInfo = info) -> bool | None:
            status = get(info, "deployment", "web", "-n", namespace)["status"]
            return True if status.get("readyReplicas") == 2 else None

        poll(f"{info.name}: 2 ready replicas", rolled_out)

    first, *others = e2e_clusters
    kubectl(first.kubeconfig, "scale", "deployment", "web", "-n", namespace, "--replicas=4")
    poll(f"{first.name}: 4 ready pods", lambda: pods_ready(first, namespace, 4))
    for info in others:
        assert len(get(info, "pods", "-n", namespace)["items"]) == 2

    kubectl(first.kubeconfig, "scale", "deployment", "web", "-n", namespace, "--replicas=1")
    poll(f"{first.name}: 1 pod left", lambda: pods_ready(first, namespace, 1))


def test_objects_and_credentials_stay_in_their_cluster(
    e2e_clusters: list[ClusterInfo], namespace: str
) -> None:
    first, *others = e2e_clusters
    kubectl(first.kubeconfig, "create", "configmap", "only-here", "-n", namespace)
    assert get(first, "configmap", "only-here", "-n", namespace)["metadata"]["name"] == "only-here"
    for info in others:
        missing = kubectl(
            info.kubeconfig, "get", "configmap", "only-here", "-n", namespace, check=False
        )
        assert missing.returncode != 0
        assert "NotFound" in missing.stderr

        # The first cluster's admin token, presented to another cluster (trusting
        # that cluster's CA so that TLS is not what refuses it).
        foreign = kubectl(
            first.token_kubeconfig,
            f"--server={info.server}",
            f"--certificate-authority={state_dir() / info.name / 'pki' / 'ca.crt'}",
            "get",
            "namespaces",
            check=False,
        )
        assert foreign.returncode != 0
        assert "Unauthorized" in foreign.stderr


def test_restricted_user_is_confined_to_its_namespace(
    e2e_clusters: list[ClusterInfo], namespace: str
) -> None:
    for info in e2e_clusters:
        own = info.restricted_namespace
        name = f"cm-{secrets.token_hex(3)}"
        kubectl(info.restricted_kubeconfig, "create", "configmap", name, "-n", own)
        kubectl(info.restricted_kubeconfig, "delete", "configmap", name, "-n", own)

        for args in (
            ("create", "configmap", name, "-n", namespace),
            ("get", "pods", "-n", "default"),
            ("get", "namespaces"),
        ):
            refused = kubectl(info.restricted_kubeconfig, *args, check=False)
            assert refused.returncode != 0, args
            assert "forbidden" in refused.stderr.lower(), args


def test_unhealthy_pods_never_become_ready_and_keep_restarting(
    e2e_clusters: list[ClusterInfo], namespace: str
) -> None:
    info = e2e_clusters[0]
    manifest = """
apiVersion: v1
kind: Pod
metadata: {name: by-tag}
spec:
  containers: [{name: app, image: "registry.local:5000/app:2.0.0-unhealthy"}]
---
apiVersion: v1
kind: Pod
metadata:
  name: by-annotation
  annotations: {e2e.flotilla.dev/unhealthy: "true"}
spec:
  containers: [{name: app, image: "nginx:1.27"}]
"""
    kubectl(info.kubeconfig, "apply", "-n", namespace, "-f", "-", stdin=manifest)
    seen: list[dict[str, Any]] = []

    def restarted_twice() -> bool | None:
        pods = get(info, "pods", "-n", namespace)["items"]
        seen.extend(pods)
        restarts = [
            max((c["restartCount"] for c in p["status"].get("containerStatuses") or []), default=0)
            for p in pods
        ]
        return True if len(pods) == 2 and min(restarts) >= 2 else None

    poll("both pods restarted twice", restarted_twice)
    assert not any(ready(p) for p in seen)
    for pod in seen:
        for status in pod["status"].get("containerStatuses") or []:
            assert status["ready"] is False
            assert status["state"]["waiting"]["reason"] == "CrashLoopBackOff"


def test_job_pods_run_to_completion(e2e_clusters: list[ClusterInfo], namespace: str) -> None:
    info = e2e_clusters[0]
    kubectl(info.kubeconfig, "create", "job", "once", "-n", namespace, "--image=busybox:1.36")

    def complete() -> bool | None:
        conditions = get(info, "job", "once", "-n", namespace)["status"].get("conditions") or []
        done = any(c["type"] == "Complete" and c["status"] == "True" for c in conditions)
        return True if done else None

    poll("job complete", complete)
    (pod,) = get(info, "pods", "-n", namespace, "-l", "job-name=once")["items"]
    assert pod["status"]["phase"] == "Succeeded"


async def test_client_certificate_and_token_kubeconfigs_both_work(
    e2e_clusters: list[ClusterInfo],
) -> None:
    for info in e2e_clusters:
        for path, user in (
            (info.kubeconfig, ADMIN_USER),
            (info.token_kubeconfig, f"{ADMIN_USER}-token"),
        ):
            async with await config.new_client_from_config(config_file=str(path)) as api:
                review = await AuthenticationV1Api(api).create_self_subject_review(
                    V1SelfSubjectReview()
                )
                assert review.status.user_info.username == user
                assert "system:masters" in review.status.user_info.groups
                nodes = await CoreV1Api(api).list_node()
                assert [n.metadata.name for n in nodes.items] == [f"{info.name}-node"]


def test_an_api_server_can_leave_and_come_back(
    e2e_clusters: list[ClusterInfo], namespace: str
) -> None:
    *others, target = e2e_clusters
    clusters.stop_apiserver(target.name)
    try:
        gone = kubectl(target.kubeconfig, "get", "namespaces", check=False)
        assert gone.returncode != 0
        assert "refused" in gone.stderr
        for info in others:
            kubectl(info.kubeconfig, "get", "namespaces")
    finally:
        back = clusters.start_apiserver(target.name)
    assert back.server == target.server

    kubectl(target.kubeconfig, "apply", "-n", namespace, "-f", "-", stdin=DEPLOYMENT)
    poll(f"{target.name}: deployment ready after restart", lambda: pods_ready(target, namespace, 2))


def test_gateway_api_crds_serve_httproutes(e2e_clusters: list[ClusterInfo], namespace: str) -> None:
    info = e2e_clusters[0]
    install_gateway_crds(info.kubeconfig)
    route = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web}
spec:
  rules:
  - backendRefs:
    - {name: web, port: 80, weight: 90}
    - {name: web-canary, port: 80, weight: 10}
"""
    kubectl(info.kubeconfig, "apply", "-n", namespace, "-f", "-", stdin=route)
    rules = get(info, "httproute", "web", "-n", namespace)["spec"]["rules"]
    assert [b["weight"] for b in rules[0]["backendRefs"]] == [90, 10]


def test_up_reuses_what_runs_and_down_leaves_no_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "state"
    monkeypatch.setenv("FLOTILLA_E2E_DIR", str(root))
    cli = [sys.executable, "-m", "e2e.clusters"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *args], capture_output=True, text=True, check=True, cwd=REPO)

    try:
        started = run("up", "--count", "1")
        assert started.stdout.splitlines() == [str(root / "e2e-1" / "admin.kubeconfig")]
        pids = {s.pid for s in clusters.status() if s.pid}
        assert len(pids) == 4  # etcd, API server, controller manager, kubelet

        (again,) = clusters.up(1)
        assert {s.pid for s in clusters.status() if s.pid} == pids
        shown = run("status")
        for secret in (again.admin_token, again.restricted_token):
            assert secret not in started.stdout + started.stderr + shown.stdout + shown.stderr
    finally:
        run("down")

    def lingers(process: psutil.Process) -> bool:
        """Still running (a zombie has finished) and one of the harness's."""
        try:
            mine = process.pid in pids or any(str(root) in arg for arg in process.cmdline())
            return mine and process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    assert [p for p in psutil.process_iter() if lingers(p)] == []
    assert clusters.status() == []
