"""The workflow as a graph: which steps wait for which, and what may run at once.

Steps are nodes; an edge `a -> b` means `b` waits for `a`. In `StepByStep` mode (KubeVela's
default) every step also waits for the one listed before it; in `DAG` mode only `dependsOn`
orders steps. `topological_generations` of the graph are the waves the engine may run
concurrently. Everything a step refers to (steps it depends on, policies it deploys) must
exist, and the graph must be acyclic; each problem is reported with the names involved,
because "invalid workflow" helps nobody.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import networkx as nx

from placement.errors import PlacementError, Problem
from placement.overrides import Override
from placement.topology import Topology

Mode = Literal["StepByStep", "DAG"]
Policy = Topology | Override


@dataclass(frozen=True)
class Step:
    name: str
    depends_on: tuple[str, ...] = ()
    policies: tuple[str, ...] | None = None
    """A deploy step's policies, in the order they apply; `None` for a step deploying nothing."""


class Workflow:
    """A checked workflow. Problem paths are relative to the Application's `spec`."""

    def __init__(
        self,
        steps: Sequence[Step],
        policies: Mapping[str, Policy],
        mode: Mode = "StepByStep",
        *,
        generated: bool = False,
    ) -> None:
        """`generated`: KubeVela's default workflow (`default`), not written in the file."""
        self.steps = tuple(steps)
        self.mode = mode
        self.generated = generated
        self.graph = nx.DiGraph()
        self.graph.add_nodes_from(step.name for step in self.steps)
        duplicates = list(self._check_names())
        problems = [*duplicates, *self._check_policies(policies), *self._add_edges()]
        if not duplicates:  # with two steps of one name, any cycle found would be spurious
            problems += self._check_acyclic()
        if problems:
            raise PlacementError(problems)

    @classmethod
    def default(cls, policies: Mapping[str, Policy]) -> Workflow:
        """What KubeVela runs when an Application has no workflow: one step per topology,
        `deploy-<topology>`, applying every override policy and then that topology. With no
        topology, one step `deploy` with the overrides, which deploys to the `local`
        cluster (KubeVela's own name for that step when it has overrides to apply)."""
        overrides = tuple(name for name, policy in policies.items() if isinstance(policy, Override))
        topologies = [name for name, policy in policies.items() if isinstance(policy, Topology)]
        steps = [Step(f"deploy-{name}", policies=(*overrides, name)) for name in topologies]
        return cls(steps or [Step("deploy", policies=overrides)], policies, generated=True)

    def generations(self) -> list[list[str]]:
        """Waves of steps: each may run once every earlier wave has finished."""
        return [self._in_order(wave) for wave in nx.topological_generations(self.graph)]

    def ready(self, finished: Collection[str]) -> list[str]:
        """Steps not finished whose every dependency is, in the order they are listed."""
        return [
            step.name
            for step in self.steps
            if step.name not in finished
            and all(dependency in finished for dependency in self.graph.predecessors(step.name))
        ]

    def _in_order(self, names: Collection[str]) -> list[str]:
        return [step.name for step in self.steps if step.name in names]

    def _at(self, index: int, *path: str | int) -> tuple[str | int, ...]:
        return ("workflow", "steps", index, *path)

    def _check_names(self) -> Iterator[Problem]:
        seen: set[str] = set()
        for index, step in enumerate(self.steps):
            if step.name in seen:
                yield Problem(f"step name {step.name!r} is used twice", self._at(index, "name"))
            seen.add(step.name)

    def _check_policies(self, policies: Mapping[str, Policy]) -> Iterator[Problem]:
        for index, step in enumerate(self.steps):
            if step.policies is None:
                continue
            where = self._at(index, "properties", "policies")
            for position, name in enumerate(step.policies):
                if name not in policies:
                    known = ", ".join(policies) or "none"
                    yield Problem(
                        f"step {step.name!r} names policy {name!r}, which does not exist "
                        f"(policies: {known})",
                        (*where, position),
                    )
                elif name in step.policies[:position]:
                    yield Problem(
                        f"step {step.name!r} names policy {name!r} twice", (*where, position)
                    )

    def _add_edges(self) -> list[Problem]:
        problems = []
        for index, step in enumerate(self.steps):
            if self.mode == "StepByStep" and index > 0:
                self.graph.add_edge(self.steps[index - 1].name, step.name, implicit=True)
            for position, dependency in enumerate(step.depends_on):
                if dependency in self.graph:
                    self.graph.add_edge(dependency, step.name, implicit=False)
                else:
                    problems.append(
                        Problem(
                            f"step {step.name!r} depends on {dependency!r}, which is not a step",
                            self._at(index, "dependsOn", position),
                        )
                    )
        return problems

    def _check_acyclic(self) -> list[Problem]:
        try:
            cycle = nx.find_cycle(self.graph)
        except nx.NetworkXNoCycle:
            return []
        names = " -> ".join([cycle[0][0], *(v for _, v in cycle)])
        message = f"workflow has a cycle: {names} (each step waits for the one before it)"
        if any(self.graph.edges[u, v]["implicit"] for u, v in cycle):
            message += "; in StepByStep mode every step also waits for the previous one"
        return [Problem(message, ("workflow", "steps"))]
