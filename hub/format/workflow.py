"""Policies (`topology`, `override`, `apply-once`) and workflow steps (`deploy`, `suspend`,
`check-metrics`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import (
    Discriminator,
    Field,
    Tag,
)

from hub.format.analysis import CheckMetricsProperties, Described
from hub.format.applyonce import ApplyOnceProperties
from hub.format.types import Duration, Name, duration_seconds, type_of
from placement.overrides import Override
from placement.strict import StrictModel
from placement.topology import Topology

# KubeVela's default for how many clusters one deploy step works on at once.
DEFAULT_PARALLELISM = 5


# --- policies and workflow -----------------------------------------------------------------------


class TopologyPolicy(StrictModel):
    name: Name
    type: Literal["topology"]
    properties: Topology


class OverridePolicy(StrictModel):
    name: Name
    type: Literal["override"]
    properties: Override


class ApplyOncePolicy(StrictModel):
    """Holds for the whole application: deploy steps do not name it."""

    name: Name
    type: Literal["apply-once"]
    properties: ApplyOnceProperties = Field(default_factory=ApplyOnceProperties)


Policy = Annotated[
    Annotated[TopologyPolicy, Tag("topology")]
    | Annotated[OverridePolicy, Tag("override")]
    | Annotated[ApplyOncePolicy, Tag("apply-once")],
    Discriminator(type_of),
]


class DeployProperties(StrictModel):
    policies: list[str] = Field(default_factory=list)
    parallelism: int = Field(default=DEFAULT_PARALLELISM, ge=1)
    """How many clusters of this step are worked on at once."""
    auto: bool = True
    """`false`: wait for `flotilla workflow resume` before deploying."""


class SuspendProperties(StrictModel):
    duration: Duration | None = None
    """Resume by itself after this long; absent: wait for `flotilla workflow resume`."""
    message: str | None = None

    @property
    def seconds(self) -> float | None:
        return None if self.duration is None else duration_seconds(self.duration)


class DeployStep(StrictModel):
    name: Name
    type: Literal["deploy"]
    properties: DeployProperties = Field(default_factory=DeployProperties)
    depends_on: list[str] = Field(default_factory=list)


class SuspendStep(StrictModel):
    name: Name
    type: Literal["suspend"]
    properties: SuspendProperties = Field(default_factory=SuspendProperties)
    depends_on: list[str] = Field(default_factory=list)


class CheckMetricsStep(Described):
    """Waits until a Prometheus query has met its condition for `duration`, or fails the
    workflow once it has broken it for `failDuration`: KubeVela's `check-metrics`."""

    name: Name
    type: Literal["check-metrics"]
    properties: CheckMetricsProperties
    depends_on: list[str] = Field(default_factory=list)


WorkflowStep = Annotated[
    Annotated[DeployStep, Tag("deploy")]
    | Annotated[SuspendStep, Tag("suspend")]
    | Annotated[CheckMetricsStep, Tag("check-metrics")],
    Discriminator(type_of),
]

Mode = Literal["StepByStep", "DAG"]


class WorkflowMode(StrictModel):
    steps: Mode = "StepByStep"


def deploy_steps_before(steps: Sequence[WorkflowStep], mode: Mode, name: str) -> list[str]:
    """The deploy steps step `name` directly follows: in StepByStep mode the nearest one
    listed before it, in DAG mode those among its `dependsOn`."""
    index = [step.name for step in steps].index(name)
    if mode == "StepByStep":
        before = (s.name for s in reversed(steps[:index]) if isinstance(s, DeployStep))
        return [nearest] if (nearest := next(before, None)) else []
    deploys = {s.name for s in steps if isinstance(s, DeployStep)}
    return [dependency for dependency in steps[index].depends_on if dependency in deploys]


def deploy_step_before(steps: Sequence[WorkflowStep], mode: Mode, name: str) -> str | None:
    """The deploy step whose clusters a check-metrics step `name` measures; `None` if it
    follows none. (A step following several is refused when the file is read.)"""
    return next(iter(deploy_steps_before(steps, mode, name)), None)


class WorkflowSpec(StrictModel):
    steps: list[WorkflowStep] = Field(min_length=1)
    mode: WorkflowMode = Field(default_factory=WorkflowMode)
