"""The Application document, and its hand-over to placement as plain data."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
)

from hub.format.applyonce import ApplyOnce
from hub.format.components import Component
from hub.format.workflow import (
    ApplyOncePolicy,
    CheckMetricsStep,
    DeployStep,
    Policy,
    WorkflowSpec,
    deploy_step_before,
)
from placement.errors import Problem
from placement.names import (
    DnsLabel,
)
from placement.selectors import LabelKey, LabelValue
from placement.strict import StrictModel
from placement.targets import AppSpec, ComponentSpec
from placement.workflow import Step, Workflow

API_VERSION = "core.oam.dev/v1beta1"
PUBLISH_VERSION = "app.oam.dev/publishVersion"
"""The annotation naming a revision; a new value publishes a new revision."""


# --- the application -----------------------------------------------------------------------------


class Metadata(StrictModel):
    name: DnsLabel
    namespace: DnsLabel | None = None
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict)
    annotations: dict[LabelKey, str] = Field(default_factory=dict)


class ApplicationSpec(StrictModel):
    components: list[Component] = Field(min_length=1)
    policies: list[Policy] = Field(default_factory=list)
    workflow: WorkflowSpec | None = None
    """Absent: KubeVela's default, one deploy step per topology policy."""


class Application(StrictModel):
    api_version: Literal["core.oam.dev/v1beta1"]
    kind: Literal["Application"]
    metadata: Metadata
    spec: ApplicationSpec

    @property
    def publish_version(self) -> str | None:
        return self.metadata.annotations.get(PUBLISH_VERSION)

    @property
    def apply_once(self) -> ApplyOnce:
        """What the application's apply-once policies leave alone; disabled and empty when
        it has none."""
        return ApplyOnce.merged(
            (p.properties for p in self.spec.policies if isinstance(p, ApplyOncePolicy)),
            {c.name: c.type for c in self.spec.components},
        )

    def check_metrics_step(self, name: str) -> CheckMetricsStep:
        """The `check-metrics` step called `name`; `KeyError` if there is none."""
        steps = self.spec.workflow.steps if self.spec.workflow else []
        for step in steps:
            if step.name == name and isinstance(step, CheckMetricsStep):
                return step
        raise KeyError(name)

    def deploy_step_before(self, name: str) -> str | None:
        """The deploy step whose clusters step `name` measures (`workflow.deploy_step_before`);
        `None` if it follows none, or the application has no workflow of its own."""
        workflow = self.spec.workflow
        return (
            None
            if workflow is None
            else deploy_step_before(workflow.steps, workflow.mode.steps, name)
        )

    def located(self, problem: Problem) -> Problem:
        """A placement problem with its path in the file: relative to `spec`, a policy
        named (`("policies", name, ...)`, as placement knows policies) turned into its index."""
        path = problem.path
        if not path:
            return problem
        if path[0] == "policies" and len(path) > 1 and isinstance(path[1], str):
            names = [p.name for p in self.spec.policies]
            path = ("policies", names.index(path[1]), *path[2:])
        return Problem(problem.message, ("spec", *path))

    def to_placement(self) -> AppSpec:
        """The application as placement's plain data. Raises `PlacementError` (paths relative
        to `spec`) if the workflow does not fit the policies; `load_application` checked that.
        Apply-once policies are not placement's: they are left out, and a deploy step naming
        one was refused when the file was read."""
        applied_once = {p.name for p in self.spec.policies if isinstance(p, ApplyOncePolicy)}
        policies = {
            p.name: p.properties for p in self.spec.policies if not isinstance(p, ApplyOncePolicy)
        }
        workflow = self.spec.workflow
        if workflow is None:
            checked = Workflow.default(policies)
        else:
            steps = [
                Step(
                    step.name,
                    tuple(step.depends_on),
                    tuple(n for n in step.properties.policies if n not in applied_once)
                    if isinstance(step, DeployStep)
                    else None,
                )
                for step in workflow.steps
            ]
            checked = Workflow(steps, policies, workflow.mode.steps)
        components = tuple(
            ComponentSpec(
                c.name,
                c.type,
                c.properties.model_dump(exclude_unset=True),
                {t.type: t.properties.model_dump(exclude_unset=True) for t in c.traits},
            )
            for c in self.spec.components
        )
        return AppSpec(self.metadata.name, self.metadata.namespace, components, policies, checked)
