"""Taking over what `helm install` and `kubectl apply` put on a cluster (issue 11 §6), and
an API server's refusal in one line (§3).

A real Helm release (helm_python installs it, as `helm install` would) and a ConfigMap
made by client-side `kubectl apply` are on prod-eu before the application's first deploy
there. `plan` and `up` name each object, its fields and their manager; `up` refuses and
stores nothing; `up --take-ownership` makes Flotilla the owner without restarting the pods
of the Helm release, whose template it does not change, and leaves Helm's release record.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

from e2e.kubectl import kubectl
from tests.fleet import Fleet, until

pytestmark = pytest.mark.cluster

CHART = Path(__file__).resolve().parents[2] / "e2e" / "charts" / "canary-demo"
CLUSTER = "prod-eu"
TAKE_OVER = "run up --take-ownership to take them over"


def _application(fleet: Fleet, *, replicas: int, greeting: str) -> Path:
    """canary-demo at `replicas` (the Helm release runs 2), and a ConfigMap `extra` whose
    GREETING the kubectl-applied one has another value of; both on prod-eu only."""
    document: dict[str, Any] = {
        "apiVersion": "core.oam.dev/v1beta1",
        "kind": "Application",
        "metadata": {"name": "canary-demo"},
        "spec": {
            "components": [
                fleet.component(values={"replicaCount": replicas}),
                {
                    "name": "extra",
                    "type": "k8s-objects",
                    "properties": {"objects": [_config_map(greeting)]},
                },
            ],
            "policies": [
                {
                    "name": "eu",
                    "type": "topology",
                    "properties": {"clusters": [CLUSTER], "namespace": fleet.namespace},
                }
            ],
        },
    }
    path = fleet.workdir / f"take-over-{time.monotonic_ns()}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _config_map(greeting: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "extra"},
        "data": {"GREETING": greeting},
    }


def _pod_uids(fleet: Fleet) -> set[str]:
    return {p["metadata"]["uid"] for p in fleet.pods(CLUSTER)}


def _owners(obj: dict[str, Any], field: str) -> set[str]:
    """The managers whose managedFields hold `field` (`f:replicas`) under `f:spec`."""
    return {
        entry["manager"]
        for entry in obj["metadata"]["managedFields"]
        if field in (entry.get("fieldsV1") or {}).get("f:spec", {})
    }


# Helm names its field manager after the program it runs in (Go's os.Args[0]): `helm` for a
# user's `helm install`, `python` for helm_python in this process. So the release is
# installed by helm_python in a Python process called `helm`, which finds its packages by
# PYTHONPATH since a bare argv[0] tells it nothing about the virtualenv.
INSTALL = """
import sys
from helm_python import Config
kubeconfig, namespace, chart = sys.argv[1:]
with Config(kubeconfig_path=kubeconfig, namespace=namespace) as helm:
    helm.install(chart, "canary-demo", {"replicaCount": 2}, namespace=namespace)
"""


def _helm_install(fleet: Fleet) -> None:
    """`helm install canary-demo CHART --set replicaCount=2` into the test's namespace."""
    site = str(Path(helm_python.__file__).parents[1])
    subprocess.run(
        [
            "helm",
            "-c",
            INSTALL,
            str(fleet.clusters[CLUSTER].kubeconfig),
            fleet.namespace,
            str(CHART),
        ],
        executable=sys.executable,
        env={**os.environ, "PYTHONPATH": site},
        check=True,
        timeout=120,
    )


def test_up_takes_over_a_helm_release_and_a_kubectl_object_only_when_asked(fleet: Fleet) -> None:
    _helm_install(fleet)
    kubectl(
        fleet.clusters[CLUSTER].kubeconfig,
        "-n",
        fleet.namespace,
        "apply",
        "-f",
        "-",
        stdin=json.dumps(_config_map("hello from kubectl")),
    )
    until(lambda: len(_ready(fleet)) == 2, what="the Helm release's 2 pods ready")
    helm_pods = _pod_uids(fleet)
    path = _application(fleet, replicas=3, greeting="hello from flotilla")
    ns = fleet.namespace
    lines = [
        f"{CLUSTER}: Deployment {ns}/canary-demo: spec.replicas owned by helm; {TAKE_OVER}",
        f"{CLUSTER}: ConfigMap {ns}/extra: data.GREETING owned by kubectl-client-side-apply; "
        f"{TAKE_OVER}",
    ]

    plan = fleet.hub.ok("plan", "-f", str(path), "-o", "json").json()
    [step] = plan["steps"]
    taken = {t["component"]: t["takeOver"] for t in step["targets"]}
    assert taken == {
        "canary-demo": [f"Deployment {ns}/canary-demo: spec.replicas owned by helm"],
        "extra": [f"ConfigMap {ns}/extra: data.GREETING owned by kubectl-client-side-apply"],
    }
    printed = fleet.hub.ok("plan", "-f", str(path)).stdout
    assert all(line in printed for line in lines), printed

    refused = fleet.up(path)
    assert refused.code == 2, refused.stderr
    assert refused.stderr.strip().splitlines()[1:] == lines
    assert "Traceback" not in refused.stderr
    assert fleet.hub.ok("ls", "-o", "json").json()["applications"] == []  # nothing stored

    taken_over = fleet.up(path, "--take-ownership", "--wait")
    assert taken_over.code == 0, taken_over.stderr
    deployment = fleet.deployment(CLUSTER)
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 3
    managed = fleet.kubectl(CLUSTER, "get", "deployment", "canary-demo", "--show-managed-fields")
    assert _owners(managed, "f:replicas") == {"flotilla"}
    until(lambda: len(_ready(fleet)) == 3, what="3 pods ready")
    assert helm_pods <= _pod_uids(fleet), "a pod of the Helm release was restarted"
    extra = fleet.kubectl(CLUSTER, "get", "configmap", "extra")
    assert extra["data"]["GREETING"] == "hello from flotilla"
    # Helm's release record is left where it was, for the user to remove.
    secrets = fleet.kubectl(CLUSTER, "get", "secrets", "-l", "owner=helm,name=canary-demo")
    assert [s["metadata"]["name"] for s in secrets["items"]] == [
        "sh.helm.release.v1.canary-demo.v1"
    ]

    # Once Flotilla owns the release, its later revisions are no first deploy.
    again = fleet.up(_application(fleet, replicas=2, greeting="hello again"), "--wait")
    assert again.code == 0, again.stderr


def _ready(fleet: Fleet) -> list[dict[str, Any]]:
    return [
        p
        for p in fleet.pods(CLUSTER)
        if any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in p.get("status", {}).get("conditions") or []
        )
    ]


def test_a_refusal_by_the_api_server_is_one_line(fleet: Fleet) -> None:
    """A Job's template is immutable: changing it is refused with the field and the
    reason, never the template the Status message embeds; the hub's log has it all."""
    job: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "migrate"},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "migrate", "image": "registry.local/migrate:1"}],
                }
            }
        },
    }
    path = _application(fleet, replicas=1, greeting="hi")
    document = yaml.safe_load(path.read_text())
    document["spec"]["components"] = [
        {"name": "migrate", "type": "k8s-objects", "properties": {"objects": [job]}}
    ]
    path.write_text(yaml.safe_dump(document))
    assert fleet.up(path, "--wait").code == 0
    job["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.local/migrate:2"
    path.write_text(yaml.safe_dump(document))
    failed = fleet.up(path, "--wait")
    assert failed.code == 1
    status = fleet.status()
    line = f"Job {fleet.namespace}/migrate: spec.template: field is immutable"
    messages = json.dumps(status)
    assert line in messages, messages
    assert "Invalid value" not in messages and "registry.local/migrate:2" not in messages
    assert "Invalid value" in fleet.hub.log()  # the whole Status message, in the debug log
