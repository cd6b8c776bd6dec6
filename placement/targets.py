"""From an application and the registered clusters to targets: who gets what.

A target is one component released into one cluster by one deploy step, with the values it
gets there and where each value came from. For every deploy step, its topology policies pick
(cluster, namespace) placements; the override policies the step lists, in that order and
limited to those whose cluster filter matches, patch each component; the result is merged
over the chart's defaults and `${cluster...}` placeholders are filled in.

The same release (cluster, namespace, release name) reached twice, by two steps or two
components, is refused: two masters for one release would take turns overwriting it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from placement.errors import PathPart, PlacementError, Problem
from placement.names import validate_dns_label, validate_release_name
from placement.overrides import Override
from placement.topology import (
    LOCAL_CLUSTER,
    ClusterInfo,
    Topology,
    check_registered,
    local_cluster,
)
from placement.values import Layer, Merged, Provenance, merge_layers, substitute_cluster
from placement.workflow import Step, Workflow

DEFAULT_NAMESPACE = "default"
CHART_DEFAULTS = "chart defaults"


@dataclass(frozen=True)
class ComponentSpec:
    """A component as placement sees it. `properties` use the file's names: `values`, and
    for helm components `releaseName` and `targetNamespace` decide where the release goes."""

    name: str
    type: str
    properties: Mapping[str, Any]
    traits: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class AppSpec:
    """An application as placement sees it; `workflow` was checked against `policies`."""

    name: str
    namespace: str | None
    components: tuple[ComponentSpec, ...]
    policies: Mapping[str, Topology | Override]
    workflow: Workflow


@dataclass(frozen=True)
class Target:
    step: str
    topology: str
    """The topology policy that placed this cluster (the first, if several did); empty
    for KubeVela's `local` cluster, where a step naming no topology deploys."""
    cluster: str
    namespace: str
    component: str
    component_type: str
    release_name: str
    properties: Mapping[str, Any]
    """The component's properties after overrides and placeholders, chart defaults included."""
    traits: Mapping[str, Mapping[str, Any]]
    provenance: Provenance
    """Paths of `properties` (`values.image.tag`) and of `traits` (`traits.kruise-rollout...`)."""

    @property
    def values(self) -> Mapping[str, Any]:
        """The Helm values to render with."""
        values: Mapping[str, Any] = self.properties.get("values") or {}
        return values

    @property
    def release(self) -> tuple[str, str, str]:
        return (self.cluster, self.namespace, self.release_name)


def resolve(
    app: AppSpec,
    clusters: Sequence[ClusterInfo],
    chart_defaults: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Target]:
    """Every target of every deploy step, in workflow order, then placement, then component.

    `chart_defaults` maps a component name to its chart's `values.yaml`. A component missing
    from it keeps `null`s in its values so that Helm still deletes those chart defaults.
    Raises `PlacementError` with every problem found.
    """
    registered = {cluster.name: cluster for cluster in clusters}
    if len(registered) < len(clusters):
        raise PlacementError("two registered clusters have the same name")
    problems: list[Problem] = []
    targets: list[Target] = []
    for step in app.workflow.steps:
        if step.policies is None:
            continue
        try:
            targets += _StepResolver(app, step, registered, chart_defaults or {}).targets()
        except PlacementError as e:
            problems += e.problems
    problems += _conflicts(targets)
    if problems:
        raise PlacementError(problems)
    return targets


class _StepResolver:
    def __init__(
        self,
        app: AppSpec,
        step: Step,
        registered: Mapping[str, ClusterInfo],
        chart_defaults: Mapping[str, Mapping[str, Any]],
    ) -> None:
        self.app = app
        self.step = step
        self.registered = registered
        self.chart_defaults = chart_defaults
        chosen = [(name, app.policies[name]) for name in step.policies or ()]
        self.topologies = [(n, p) for n, p in chosen if isinstance(p, Topology)]
        self.overrides = [(n, p) for n, p in chosen if isinstance(p, Override)]

    def targets(self) -> list[Target]:
        problems: list[Problem] = []
        placements: dict[tuple[str, str | None], str] = {}
        for name, policy in self.topologies:
            try:
                for cluster in policy.select(name, self.registered):
                    placements.setdefault((cluster.name, policy.namespace), name)
            except PlacementError as e:
                problems += self._in_step(e.problems)
        if not self.topologies:
            try:
                placements[self._local().name, None] = ""
            except PlacementError as e:
                problems += e.problems
        for name, override in self.overrides:
            at = ("policies", name, "properties", "clusters")
            try:
                check_registered(f"override {name!r}", override.clusters or (), self.registered, at)
            except PlacementError as e:
                problems += self._in_step(e.problems)
        targets: list[Target] = []
        for (cluster_name, namespace), topology in placements.items():
            cluster = self.registered[cluster_name]
            overrides = [(n, o) for n, o in self.overrides if o.applies_to(cluster)]
            for component in self.app.components:
                if not all(override.deploys(component.name) for _, override in overrides):
                    continue
                try:
                    targets.append(self._target(topology, cluster, namespace, component, overrides))
                except PlacementError as e:
                    where = f"cluster {cluster.name!r}, component {component.name!r}"
                    problems += self._in_step(e.problems, where)
        if problems:
            raise PlacementError(problems)
        return targets

    def _target(
        self,
        topology: str,
        cluster: ClusterInfo,
        namespace: str | None,
        component: ComponentSpec,
        overrides: list[tuple[str, Override]],
    ) -> Target:
        layers = [Layer(f"component {component.name}", component.properties)]
        trait_layers = [Layer(f"component {component.name}", component.traits)]
        defaults = self.chart_defaults.get(component.name)
        if defaults is not None:
            layers.insert(0, Layer(CHART_DEFAULTS, {"values": defaults}))
        for name, override in overrides:
            for patch in override.components:
                if not patch.matches(component.name, component.type):
                    continue
                if patch.properties is not None:
                    layers.append(Layer(f"policy {name}", patch.properties))
                if patch.traits:
                    patches = {trait.type: trait.layer() for trait in patch.traits}
                    trait_layers.append(Layer(f"policy {name}", patches))
        merged = merge_layers(layers, keep_nulls=defaults is None)
        traits = merge_layers(trait_layers, prefix=("traits",))
        properties = _substitute(merged, cluster)
        for name_field, check in (
            ("targetNamespace", validate_dns_label),
            ("releaseName", validate_release_name),
        ):
            if properties.get(name_field) is not None:  # placeholders are filled in only now
                try:
                    check(str(properties[name_field]))
                except PlacementError as e:
                    raise PlacementError(f"{name_field}: {e.problems[0].message}") from None
        return Target(
            step=self.step.name,
            topology=topology,
            cluster=cluster.name,
            namespace=namespace
            or properties.get("targetNamespace")
            or self.app.namespace
            or DEFAULT_NAMESPACE,
            component=component.name,
            component_type=component.type,
            release_name=properties.get("releaseName") or component.name,
            properties=properties,
            traits=traits.values,
            provenance=merged.provenance | traits.provenance,
        )

    def _local(self) -> ClusterInfo:
        """Where a step naming no topology deploys: KubeVela's `local` cluster. A refusal
        points at the step's policies or, for the workflow KubeVela makes up when a file
        has none, at the file's policies (if it has any)."""
        step, workflow = self.step, self.app.workflow
        if workflow.generated:
            why = "the application has no topology policy"
            at: tuple[PathPart, ...] = ("policies",) if self.app.policies else ()
        else:
            why = f"step {step.name!r} names no topology policy"
            at = ("workflow", "steps", workflow.steps.index(step), "properties", "policies")
        why += f", so it deploys to {LOCAL_CLUSTER!r}"
        return local_cluster(why, self.registered, at, "or add a topology policy")

    def _in_step(self, problems: Iterable[Problem], where: str = "") -> list[Problem]:
        context = f"step {self.step.name!r}" + (f", {where}" if where else "")
        return [Problem(f"{context}: {problem.message}", problem.path) for problem in problems]


def _substitute(merged: Merged, cluster: ClusterInfo) -> dict[str, Any]:
    """Fill in placeholders; a problem names the layer that wrote the placeholder."""
    try:
        properties: dict[str, Any] = substitute_cluster(merged.values, cluster)
    except PlacementError as e:
        history = merged.provenance.history
        problems = []
        for problem in e.problems:
            path = tuple(map(str, problem.path))
            # a placeholder inside a list is written by whoever set the whole list
            leaf = next((path[:n] for n in range(len(path), 0, -1) if path[:n] in history), None)
            source = f" (set by {history[leaf][-1].layer})" if leaf else ""
            problems.append(Problem(problem.message + source))
        raise PlacementError(problems) from e
    return properties


def _conflicts(targets: list[Target]) -> Iterator[Problem]:
    first: dict[tuple[str, str, str], Target] = {}
    for target in targets:
        earlier = first.setdefault(target.release, target)
        if earlier is not target:
            cluster, namespace, release = target.release
            yield Problem(
                f"release {release!r} in cluster {cluster!r}, namespace {namespace!r} is deployed "
                f"twice: by step {earlier.step!r} (component {earlier.component!r}) and by step "
                f"{target.step!r} (component {target.component!r})"
            )
