"""Policies (`topology`, `override`) and workflow steps (`deploy`, `suspend`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    Discriminator,
    Field,
    Tag,
)

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


Policy = Annotated[
    Annotated[TopologyPolicy, Tag("topology")] | Annotated[OverridePolicy, Tag("override")],
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


WorkflowStep = Annotated[
    Annotated[DeployStep, Tag("deploy")] | Annotated[SuspendStep, Tag("suspend")],
    Discriminator(type_of),
]


class WorkflowMode(StrictModel):
    steps: Literal["StepByStep", "DAG"] = "StepByStep"


class WorkflowSpec(StrictModel):
    steps: list[WorkflowStep] = Field(min_length=1)
    mode: WorkflowMode = Field(default_factory=WorkflowMode)
