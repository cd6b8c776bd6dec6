"""The workflow graph: order, concurrency, and every reference checked by name."""

from __future__ import annotations

import pytest

from placement.errors import PlacementError, Problem
from placement.overrides import Override
from placement.topology import Topology
from placement.workflow import Mode, Step, Workflow

POLICIES: dict[str, Topology | Override] = {
    "dev": Topology(clusters=["dev-1"]),
    "prod": Topology.model_validate({"clusterLabelSelector": {"env": "prod"}}),
    "dev-values": Override(),
    "prod-values": Override(),
}


def deploy(name: str, *policies: str, depends_on: tuple[str, ...] = ()) -> Step:
    return Step(name, depends_on, policies)


def problems(*steps: Step, mode: Mode = "StepByStep") -> list[Problem]:
    with pytest.raises(PlacementError) as raised:
        Workflow(steps, POLICIES, mode)
    return list(raised.value.problems)


def test_step_by_step_runs_one_step_at_a_time() -> None:
    workflow = Workflow(
        [deploy("deploy-dev", "dev"), Step("approve"), deploy("deploy-prod", "prod")], POLICIES
    )
    assert workflow.generations() == [["deploy-dev"], ["approve"], ["deploy-prod"]]
    assert workflow.ready(set()) == ["deploy-dev"]
    assert workflow.ready({"deploy-dev"}) == ["approve"]
    assert workflow.ready({"deploy-dev", "approve", "deploy-prod"}) == []


def test_dag_runs_independent_steps_together() -> None:
    workflow = Workflow(
        [
            deploy("deploy-dev", "dev"),
            Step("approve", depends_on=("deploy-dev",)),
            deploy("deploy-prod", "prod", depends_on=("approve",)),
            deploy("deploy-dev-again", "dev", "dev-values"),
            Step("notify", depends_on=("deploy-prod", "deploy-dev-again")),
        ],
        POLICIES,
        "DAG",
    )
    assert workflow.generations() == [
        ["deploy-dev", "deploy-dev-again"],
        ["approve"],
        ["deploy-prod"],
        ["notify"],
    ]
    assert workflow.ready({"deploy-dev"}) == ["approve", "deploy-dev-again"]
    assert workflow.ready({"deploy-dev", "approve", "deploy-prod"}) == ["deploy-dev-again"]


def test_dag_cycle_is_named() -> None:
    assert problems(
        Step("a", depends_on=("c",)),
        Step("b", depends_on=("a",)),
        Step("c", depends_on=("b",)),
        mode="DAG",
    ) == [
        Problem(
            "workflow has a cycle: a -> b -> c -> a (each step waits for the one before it)",
            ("workflow", "steps"),
        )
    ]


def test_a_step_depending_on_itself_is_a_cycle() -> None:
    [problem] = problems(Step("a", depends_on=("a",)), mode="DAG")
    assert problem.message.startswith("workflow has a cycle: a -> a ")


def test_step_by_step_cycle_explains_the_implicit_order() -> None:
    [problem] = problems(Step("a", depends_on=("b",)), Step("b"))
    assert problem.message == (
        "workflow has a cycle: a -> b -> a (each step waits for the one before it); "
        "in StepByStep mode every step also waits for the previous one"
    )


def test_unknown_dependency_is_named_with_its_path() -> None:
    assert problems(Step("a"), Step("b", depends_on=("a", "approve"))) == [
        Problem(
            "step 'b' depends on 'approve', which is not a step",
            ("workflow", "steps", 1, "dependsOn", 1),
        )
    ]


def test_duplicate_step_names() -> None:
    assert problems(Step("a"), Step("a")) == [
        Problem("step name 'a' is used twice", ("workflow", "steps", 1, "name"))
    ]


def test_policies_of_a_deploy_step_are_checked() -> None:
    assert problems(
        deploy("deploy-prod", "prod", "prod-eu", "prod"),
        deploy("values-only", "prod-values"),
        deploy("nothing"),
    ) == [
        Problem(
            "step 'deploy-prod' names policy 'prod-eu', which does not exist "
            "(policies: dev, prod, dev-values, prod-values)",
            ("workflow", "steps", 0, "properties", "policies", 1),
        ),
        Problem(
            "step 'deploy-prod' names policy 'prod' twice",
            ("workflow", "steps", 0, "properties", "policies", 2),
        ),
    ]


def test_default_workflow_is_kubevelas_one_step_per_topology() -> None:
    workflow = Workflow.default(POLICIES)
    assert workflow.steps == (
        Step("deploy-dev", policies=("dev-values", "prod-values", "dev")),
        Step("deploy-prod", policies=("dev-values", "prod-values", "prod")),
    )
    assert workflow.generations() == [["deploy-dev"], ["deploy-prod"]]


def test_default_workflow_without_a_topology_is_one_step_to_local() -> None:
    """KubeVela's `deploy` step: the overrides, and (placement decides) the local cluster."""
    workflow = Workflow.default({"values": Override()})
    assert workflow.steps == (Step("deploy", policies=("values",)),)
    assert workflow.generated
