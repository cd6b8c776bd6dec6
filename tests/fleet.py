"""A hub with the local clusters joined as dev / prod-eu / prod-us, and application files
written for one test's namespace and chart repository: the setting of every deploy test."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.clusters import ClusterInfo
from e2e.hubproc import HubProcess, Result
from e2e.kubectl import kubectl
from hub.state.shards import SHARDS, assign, shard_of

NAMES = ("dev", "prod-eu", "prod-us")
LABELS = ("env=dev", "env=prod,region=eu", "env=prod,region=us")

# The stores a test of the store's users runs against, as `@STORES` (an indirect
# parametrization of `hub`): SQLite in the hub's home, or the Kubernetes store in a
# namespace of its own on the first local cluster, which is a member cluster too.
STORES = pytest.mark.parametrize("hub", ["sqlite", "kubernetes"], indirect=True)


@dataclass
class Fleet:
    hub: HubProcess
    clusters: dict[str, ClusterInfo]  # by Flotilla name
    namespace: str
    repo_url: str
    workdir: Path

    @classmethod
    def join(
        cls,
        hub: HubProcess,
        infos: list[ClusterInfo],
        namespace: str,
        repo_url: str,
        workdir: Path,
        kubeconfigs: Mapping[str, Path] | None = None,
    ) -> Fleet:
        """`kubeconfigs` joins the clusters it names (by Flotilla name) with other files than
        their admin kubeconfig (through a fault proxy, with a revocable token); tests still
        read every cluster with its admin kubeconfig."""
        for name, labels, info in zip(NAMES, LABELS, infos, strict=False):
            kubeconfig = (kubeconfigs or {}).get(name, info.kubeconfig)
            hub.ok("cluster", "join", str(kubeconfig), "--name", name, "--labels", labels)
        return cls(hub, dict(zip(NAMES, infos, strict=False)), namespace, repo_url, workdir)

    def app(
        self,
        *,
        name: str = "canary-demo",
        chart: str = "canary-demo",
        version: str = "1.0.0",
        values: dict[str, Any] | None = None,
        suspend: bool = False,
        traits: list[dict[str, Any]] | None = None,
        publish: str | None = None,
        prod_eu_replicas: int = 3,
        dev_canary: bool = False,
    ) -> Path:
        """The three-environment application: dev (1 replica), then prod on two clusters
        with prod-eu overridden; optionally a suspend step between them."""
        component = self.component(
            name=name, chart=chart, version=version, values=values, traits=traits
        )
        steps: list[dict[str, Any]] = [
            {
                "name": "deploy-dev",
                "type": "deploy",
                "properties": {"policies": ["dev", "dev-values"]},
            }
        ]
        if suspend:
            steps.append({"name": "approve", "type": "suspend"})
        steps.append(
            {
                "name": "deploy-prod",
                "type": "deploy",
                "properties": {"policies": ["prod", "eu-values"]},
            }
        )
        override: dict[str, Any] = {"name": name, "properties": {"values": {"replicaCount": 1}}}
        if traits and not dev_canary:  # dev rolls straight through; the canary is prod's
            override["traits"] = [{"type": "kruise-rollout", "disable": True}]
        document = {
            "apiVersion": "core.oam.dev/v1beta1",
            "kind": "Application",
            "metadata": {
                "name": name,
                "annotations": {"app.oam.dev/publishVersion": publish} if publish else {},
            },
            "spec": {
                "components": [component],
                "policies": [
                    _topology("dev", {"env": "dev"}, self.namespace),
                    _topology("prod", {"env": "prod"}, self.namespace),
                    {
                        "name": "dev-values",
                        "type": "override",
                        "properties": {"components": [override]},
                    },
                    {
                        "name": "eu-values",
                        "type": "override",
                        "properties": {
                            "clusterLabelSelector": {"region": "eu"},
                            "components": [
                                {
                                    "name": name,
                                    "properties": {"values": {"replicaCount": prod_eu_replicas}},
                                }
                            ],
                        },
                    },
                ],
                "workflow": {"steps": steps},
            },
        }
        path = self.workdir / f"{name}-{time.monotonic_ns()}.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        return path

    def component(
        self,
        *,
        name: str = "canary-demo",
        chart: str = "canary-demo",
        version: str = "1.0.0",
        values: dict[str, Any] | None = None,
        traits: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """A helm component of `chart` from the test's chart repository: what every
        application file of the deploy tests is made of."""
        component: dict[str, Any] = {
            "name": name,
            "type": "helm",
            "properties": {
                "repoType": "helm",
                "url": self.repo_url,
                "chart": chart,
                "version": version,
                "values": values or {},
            },
        }
        if traits:
            component["traits"] = traits
        return component

    def app_on(self, labels: dict[str, str], *, name: str = "canary-demo") -> Path:
        """An application of one component on the clusters `labels` select, in one deploy
        step, with one replica: the smallest placement that names some clusters only."""
        values = {"replicaCount": 1}
        document = {
            "apiVersion": "core.oam.dev/v1beta1",
            "kind": "Application",
            "metadata": {"name": name},
            "spec": {
                "components": [self.component(name=name, values=values)],
                "policies": [_topology("where", labels, self.namespace)],
                "workflow": {
                    "steps": [
                        {"name": "deploy", "type": "deploy", "properties": {"policies": ["where"]}}
                    ]
                },
            },
        }
        path = self.workdir / f"{name}-{time.monotonic_ns()}.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        return path

    def kubectl(self, cluster: str, *args: str) -> Any:
        result = kubectl(
            self.clusters[cluster].kubeconfig, "-n", self.namespace, *args, "-o", "json"
        )
        return json.loads(result.stdout)

    def deployment(self, cluster: str, name: str = "canary-demo") -> dict[str, Any] | None:
        result = kubectl(
            self.clusters[cluster].kubeconfig,
            "-n",
            self.namespace,
            "get",
            "deployment",
            name,
            "-o",
            "json",
            check=False,
        )
        return json.loads(result.stdout) if result.returncode == 0 else None

    def image(self, cluster: str, name: str = "canary-demo") -> str | None:
        deployment = self.deployment(cluster, name)
        if deployment is None:
            return None
        return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])

    def kinds(self, cluster: str) -> set[str]:
        """Kinds of the objects Flotilla put in the test namespace on `cluster`."""
        found = self.kubectl(
            cluster,
            "get",
            "deployments,services,ingresses,configmaps,statefulsets",
            "-l",
            "flotilla.dev/managed-by=flotilla",
        )
        return {item["kind"] for item in found["items"]}

    def pods(
        self, cluster: str, selector: str = "app.kubernetes.io/name=canary-demo"
    ) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.kubectl(cluster, "get", "pods", "-l", selector)["items"]
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]

    def status(self, app: str = "canary-demo") -> dict[str, Any]:
        result: dict[str, Any] = self.hub.ok("status", app, "-o", "json").json()
        return result

    def up(self, path: Path, *extra: str) -> Result:
        return self.hub.cli("up", "-f", str(path), *extra, timeout=600)


def _topology(name: str, labels: dict[str, str], namespace: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": "topology",
        "properties": {"clusterLabelSelector": labels, "namespace": namespace},
    }


def until(condition: Callable[[], bool], timeout: float = 120.0, what: str = "condition") -> None:
    """Poll with a deadline; never a timing assertion, only a bound on waiting."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout:.0f}s"
        time.sleep(0.5)


def listed_clusters(hub: HubProcess) -> dict[str, dict[str, Any]]:
    """Every cluster of `cluster list -o json` on `hub`, by name."""
    clusters = hub.ok("cluster", "list", "-o", "json").json()["clusters"]
    return {c["name"]: c for c in clusters}


def phase(fleet: Fleet, app: str = "canary-demo") -> str:
    return str(fleet.status(app)["phase"])


def owned_by(
    owners: Mapping[tuple[str, ...], str], taken: set[str], prefix: str = "canary-demo"
) -> str:
    """A new application name (`prefix-N`, not in `taken`, which gets it) whose shard each
    set of live replicas gives to the replica named, e.g. {(a, b, c): c, (a, b): a}: c's
    now, a's once c is gone. `assign` is the map the replicas compute, so a test knows
    which replica drives an application before it deploys it, and which one will once a
    replica is gone. With the chart's name as `prefix`, the chart names its objects after
    the application."""
    plans = {live: assign(list(live), SHARDS) for live in owners}
    name = next(
        name
        for name in (f"{prefix}-{n}" for n in itertools.count())
        if name not in taken
        and all(plans[live][shard_of(name)] == owner for live, owner in owners.items())
    )
    taken.add(name)
    return name
