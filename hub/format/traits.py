"""The `kruise-rollout` trait, in the KubeVela trait's field names and in kruise's own."""

from __future__ import annotations

from itertools import pairwise
from typing import Annotated, Literal, Self

from pydantic import (
    Discriminator,
    Field,
    Tag,
    model_validator,
)
from pydantic_core import PydanticCustomError

from hub.format.analysis import CanaryAnalysis, Described
from hub.format.types import Duration, NonEmpty, Replicas, Weight, duration_seconds, type_of
from placement.strict import StrictModel

# --- the kruise-rollout trait -------------------------------------------------------------------

ROLLOUT_TRAIT = "kruise-rollout"
"""The trait's type, as targets' specs key it."""


class HeaderMatch(StrictModel):
    name: NonEmpty
    value: str
    type: Literal["Exact", "RegularExpression"] = "Exact"


class RouteMatch(StrictModel):
    headers: list[HeaderMatch] = Field(min_length=1)


class Pause(StrictModel):
    duration: Duration | None = None
    """Absent: wait for `flotilla workflow resume`."""


class CanaryStep(StrictModel):
    weight: Weight | None = None
    """Percent of traffic to the canary."""
    replicas: Replicas | None = None
    """Canary pods: a number or a percentage of the workload's replicas (default: weight%)."""
    pause: Pause | None = None
    """kruise's form."""
    duration: Duration | None = None
    """The KubeVela trait's form of `pause.duration`."""
    matches: list[RouteMatch] = Field(default_factory=list)

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.weight is None and self.replicas is None:
            raise PydanticCustomError("canary_step", "set weight, replicas or both")
        if self.duration is not None and self.pause is not None and self.pause.duration is not None:
            raise PydanticCustomError(
                "canary_step", "duration and pause.duration say the same thing: set one"
            )
        return self

    @property
    def pause_seconds(self) -> float | None:
        """How long to hold this step before the next; `None`: until a human resumes."""
        duration = self.duration if self.pause is None else self.pause.duration
        return None if duration is None else duration_seconds(duration)


class IngressRef(StrictModel):
    name: NonEmpty | None = None
    class_type: Literal["nginx"] = "nginx"


class GatewayRef(StrictModel):
    http_route_name: NonEmpty


class TrafficRouting(StrictModel):
    """Where canary traffic is split: an nginx Ingress or a Gateway API HTTPRoute.

    Written as kruise does (`ingress: {name}`, `gateway: {httpRouteName}`), as the KubeVela
    trait does (`type: ingress|gateway`, `ingressName`, `gatewayHTTPRouteName`), or shortly
    as `type: nginx|gateway`. Names default to the workload's.
    """

    type: Literal["nginx", "ingress", "gateway"] | None = None
    service: NonEmpty | None = None
    grace_period_seconds: int | None = Field(default=None, ge=0)
    ingress: IngressRef | None = None
    gateway: GatewayRef | None = None
    ingress_name: NonEmpty | None = None
    gateway_http_route_name: NonEmpty | None = Field(default=None, alias="gatewayHTTPRouteName")

    @model_validator(mode="after")
    def _one_provider(self) -> Self:
        nginx = self.ingress is not None or self.ingress_name is not None
        gateway = self.gateway is not None or self.gateway_http_route_name is not None
        if (
            (nginx and gateway)
            or (self.type == "gateway" and nginx)
            or (self.type in ("nginx", "ingress") and gateway)
        ):
            raise PydanticCustomError(
                "traffic_routing",
                "mixes an nginx Ingress and a Gateway API route: use one per trafficRoutings entry",
            )
        if self.ingress is not None and self.ingress_name is not None:
            raise PydanticCustomError(
                "traffic_routing", "set ingress.name or ingressName, not both"
            )
        if self.gateway is not None and self.gateway_http_route_name is not None:
            raise PydanticCustomError(
                "traffic_routing",
                "set gateway.httpRouteName or gatewayHTTPRouteName, not both",
            )
        return self

    @property
    def provider(self) -> Literal["nginx", "gateway"]:
        gateway = self.gateway is not None or self.gateway_http_route_name is not None
        return "gateway" if self.type == "gateway" or gateway else "nginx"

    @property
    def route_name(self) -> str | None:
        """The Ingress or HTTPRoute to split; `None`: the one named like the workload."""
        if self.gateway is not None:
            return self.gateway.http_route_name
        if self.ingress is not None and self.ingress.name is not None:
            return self.ingress.name
        return self.gateway_http_route_name or self.ingress_name


class Canary(Described):
    steps: list[CanaryStep] = Field(min_length=1)
    traffic_routings: list[TrafficRouting] = Field(default_factory=list)
    analysis: CanaryAnalysis | None = None
    """Prometheus metrics that must hold on every cluster before each step's pause passes;
    a broken one, or too many measurement errors, aborts the canary (our extension)."""

    @model_validator(mode="after")
    def _growing(self) -> Self:
        weights = [(i, s.weight) for i, s in enumerate(self.steps) if s.weight is not None]
        for (before, low), (after, high) in pairwise(weights):
            if high < low:
                raise PydanticCustomError(
                    "canary",
                    "steps[{after}].weight {high} is below steps[{before}].weight {low}: "
                    "a canary only grows",
                    {"after": after, "high": high, "before": before, "low": low},
                )
        return self


class WorkloadRef(StrictModel):
    api_version: Literal["apps/v1"] = "apps/v1"
    kind: Literal["Deployment", "StatefulSet"]


class KruiseRolloutProperties(StrictModel):
    canary: Canary
    auto: bool = False
    """KubeVela: run every step without pausing."""
    release_mode: Literal["canary"] = "canary"
    workload_type: WorkloadRef | None = None
    """Which workloads to roll out; absent: every Deployment and StatefulSet in the release."""


class KruiseRolloutTrait(StrictModel):
    type: Literal["kruise-rollout"]
    properties: KruiseRolloutProperties


Trait = Annotated[Annotated[KruiseRolloutTrait, Tag("kruise-rollout")], Discriminator(type_of)]
