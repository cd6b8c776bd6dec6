"""KubeVela's `local` cluster: what no topology places elsewhere goes to the member
registered as `local`, and without one the refusal says how to register it."""

from __future__ import annotations

from typing import Any

import pytest

from hub.format import SpecError, load_application
from placement.errors import PlacementError
from placement.overrides import Override
from placement.targets import AppSpec, ComponentSpec, resolve
from placement.topology import ClusterInfo, Topology
from placement.workflow import Step, Workflow

LOCAL = ClusterInfo("local", {"env": "hub"})
DEV = ClusterInfo("dev", {"env": "dev"})
WEB = ComponentSpec("web", "k8s-objects", {"objects": []})
JOIN = (
    "but no cluster is registered as 'local' (KubeVela's hub cluster): join one under that "
    "name (flotilla cluster join KUBECONFIG --name local)"
)


def spec(policies: dict[str, Topology | Override], steps: list[Step] | None = None) -> AppSpec:
    workflow = Workflow(steps, policies) if steps is not None else Workflow.default(policies)
    return AppSpec("shop", None, (WEB,), policies, workflow)


def problems(app: AppSpec, clusters: list[ClusterInfo]) -> list[tuple[Any, str]]:
    with pytest.raises(PlacementError) as raised:
        resolve(app, clusters)
    return [(p.path, p.message) for p in raised.value.problems]


def test_no_policies_deploy_to_local_in_the_default_namespace() -> None:
    [target] = resolve(spec({}), [DEV, LOCAL])
    assert (target.step, target.topology, target.cluster) == ("deploy", "", "local")
    assert target.namespace == "default"


def test_overrides_without_a_topology_apply_on_local() -> None:
    values = Override.model_validate({"components": [{"properties": {"values": {"a": 1}}}]})
    [target] = resolve(spec({"values": values}), [LOCAL])
    assert (target.cluster, target.values) == ("local", {"a": 1})


def test_a_topology_naming_no_cluster_means_local_in_its_namespace() -> None:
    hub = Topology.model_validate({"namespace": "apps"})
    [target] = resolve(spec({"hub": hub}), [DEV, LOCAL])
    assert (target.step, target.topology, target.cluster, target.namespace) == (
        "deploy-hub",
        "hub",
        "local",
        "apps",
    )


def test_a_topology_may_name_local_with_other_clusters() -> None:
    both = Topology.model_validate({"clusters": ["local", "dev"]})
    assert [t.cluster for t in resolve(spec({"both": both}), [DEV, LOCAL])] == ["local", "dev"]


def test_a_deploy_step_naming_no_topology_deploys_to_local() -> None:
    dev = Topology.model_validate({"clusters": ["dev"]})
    steps = [Step("to-dev", policies=("dev",)), Step("to-hub", policies=())]
    targets = resolve(spec({"dev": dev}, steps), [DEV, LOCAL])
    assert [(t.step, t.cluster) for t in targets] == [("to-dev", "dev"), ("to-hub", "local")]


def test_without_local_each_fallback_is_refused_at_its_field() -> None:
    assert problems(spec({}), [DEV]) == [
        (
            (),
            f"the application has no topology policy, so it deploys to 'local', {JOIN} "
            "or add a topology policy",
        )
    ]
    hub = Topology.model_validate({"namespace": "apps"})
    assert problems(spec({"hub": hub}), [DEV]) == [
        (
            ("policies", "hub", "properties"),
            f"step 'deploy-hub': topology 'hub' names no cluster, so it means 'local', {JOIN} "
            "or name clusters",
        )
    ]
    named = Topology.model_validate({"clusters": ["dev", "local"]})
    assert problems(spec({"named": named}), [DEV]) == [
        (
            ("policies", "named", "properties", "clusters"),
            "step 'deploy-named': topology 'named': 'local' is not a registered cluster "
            "(registered: 'dev'); 'local' is KubeVela's hub cluster: join one under that name "
            "(flotilla cluster join KUBECONFIG --name local)",
        )
    ]
    dev = Topology.model_validate({"clusters": ["dev"]})
    steps = [Step("to-dev", policies=("dev",)), Step("to-hub", policies=())]
    assert problems(spec({"dev": dev}, steps), [DEV]) == [
        (
            ("workflow", "steps", 1, "properties", "policies"),
            f"step 'to-hub' names no topology policy, so it deploys to 'local', {JOIN} "
            "or add a topology policy",
        )
    ]


APP = """\
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: {name: shop}
spec:
  components:
  - name: web
    type: k8s-objects
    properties:
      objects: [{apiVersion: v1, kind: ConfigMap, metadata: {name: web}}]
  policies:
  - name: values
    type: override
    properties: {components: []}
  - name: hub
    type: topology
    properties: {clusters: [dev, local]}
"""


def test_the_file_names_the_field_of_the_topology() -> None:
    app = load_application(APP, "shop.yaml")
    with pytest.raises(PlacementError) as raised:
        resolve(app.to_placement(), [DEV])
    error = SpecError("shop.yaml", [app.located(p) for p in raised.value.problems])
    assert str(error).startswith(
        "shop.yaml: spec.policies[1].properties.clusters: step 'deploy-hub': topology 'hub': "
        "'local' is not a registered cluster"
    )
