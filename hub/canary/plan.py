"""The plan of one workload's canary: checked once against the release, then the phases
of every stage.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hub.canary.objects import (
    DEFAULT_GRACE_SECONDS,
    POD_TEMPLATE_HASH,
    SERVICE_NAME_MAX,
    WORKLOAD_KINDS,
    Manifest,
    Provider,
    Ref,
    canary_deployment,
    canary_ingress,
    canary_name,
    canary_replicas,
    canary_service,
    find_object,
    in_namespace,
    object_name,
    object_ref,
    partitioned_statefulset,
    pinned_service,
    reaches,
    stable_deployment,
    weighted_route,
)
from hub.canary.state import CanaryError, CanaryState, Phase, Wait
from hub.format import Canary, CanaryStep
from hub.model.phases import Stage

# --- the plan of one workload's canary ----------------------------------------------------------


@dataclass(frozen=True)
class Traffic:
    """Where a Deployment's canary traffic is split: the stable Service, and the Ingress
    (nginx) or HTTPRoute (gateway) in front of it."""

    provider: Provider
    service: Manifest
    route: Manifest
    grace: float = DEFAULT_GRACE_SECONDS

    @property
    def service_name(self) -> str:
        return str(self.service["metadata"]["name"])

    def split(self, step: CanaryStep) -> Manifest:
        """The object that sends the step's share to the canary Service."""
        build = canary_ingress if self.provider == "nginx" else weighted_route
        return build(self.route, self.service_name, step.weight, step.matches)

    def to_stable(self, route: Manifest) -> Phase:
        """All traffic to the stable Service: no canary Ingress, or `route` as rendered."""
        why = f"send all traffic to Service {self.service_name}"
        if self.provider == "nginx":
            canary = object_ref(route) | {"name": canary_name(route["metadata"]["name"])}
            return Phase(why, delete=(canary,), grace=self.grace)
        return Phase(why, apply=(route,), grace=self.grace)

    def canary_service_ref(self) -> Ref:
        return object_ref(self.service) | {"name": canary_name(self.service_name, SERVICE_NAME_MAX)}


@dataclass(frozen=True)
class CanaryPlan:
    """Everything the canary of one workload needs from the new revision, checked once
    before anything is applied, and the phases of each stage."""

    workload: Manifest
    steps: tuple[CanaryStep, ...]
    traffic: Traffic | None = None
    """None: traffic follows pods (no trafficRoutings, or a StatefulSet)."""

    @classmethod
    def of(
        cls,
        manifests: Iterable[Mapping[str, Any]],
        kind: str,
        name: str,
        canary: Canary,
        namespace: str,
    ) -> CanaryPlan:
        """The plan for workload `kind`/`name` of a release rendered into `namespace`;
        every way the trait does not fit the release is reported at once."""
        objects = [in_namespace(o, namespace) for o in manifests]
        workload = find_object(objects, kind, name)
        if kind not in WORKLOAD_KINDS or workload is None:
            raise CanaryError(f"{kind} {name}: no such Deployment or StatefulSet in the release")
        problems = []
        if len(canary.traffic_routings) > 1:
            problems.append("canary.trafficRoutings: one entry per workload is supported")
        traffic, provider = None, None
        if canary.traffic_routings and kind == "Deployment":
            routing = canary.traffic_routings[0]
            provider = routing.provider
            service_name = routing.service or name
            route_kind = "Ingress" if routing.provider == "nginx" else "HTTPRoute"
            service = find_object(objects, "Service", service_name)
            route = find_object(objects, route_kind, routing.route_name or name)
            problems += _routing_problems(service, route, service_name, route_kind)
            if service is not None and route is not None:
                grace = routing.grace_period_seconds
                traffic = Traffic(
                    routing.provider,
                    service,
                    route,
                    DEFAULT_GRACE_SECONDS if grace is None else float(grace),
                )
        problems += _step_problems(canary.steps, provider)
        if problems:
            raise CanaryError("\n".join(f"{kind} {name}: {problem}" for problem in problems))
        return cls(workload, tuple(canary.steps), traffic)

    @property
    def kind(self) -> str:
        return str(self.workload["kind"])

    @property
    def name(self) -> str:
        return str(self.workload["metadata"]["name"])

    @property
    def total(self) -> int:
        """Pods of the workload: the new manifest's replicas (Kubernetes' default 1)."""
        return int(self.workload["spec"].get("replicas", 1))

    def manages(self, obj: Mapping[str, Any]) -> bool:
        """Whether `obj` of the release is the plan's to apply while the canary runs: a
        plain apply of the workload, the pinned Service or the split HTTPRoute undoes it."""
        own = [self.workload]
        if self.traffic is not None:
            own.append(self.traffic.service)
            if self.traffic.provider == "gateway":
                own.append(self.traffic.route)
        return any(o["kind"] == obj.get("kind") and object_name(o) == object_name(obj) for o in own)

    def phases(
        self,
        state: CanaryState,
        *,
        stable_hash: str | None = None,
        previous: Sequence[Mapping[str, Any]] = (),
    ) -> list[Phase]:
        """The phases of `state`'s stage. `stable_hash`: `stable_pod_template_hash` of the
        live stable Deployment; `previous`: the previous revision's manifests (rollback)."""
        match state.stage:
            case Stage.UPGRADING:
                return self.upgrade(state.step, stable_hash)
            case Stage.TRAFFIC_ROUTING:
                return self.route_traffic(state.step)
            case Stage.FINALISING:
                return self.finalise()
            case Stage.ROLLING_BACK:
                return self.rollback(previous, stable_hash)
            case _:
                return []

    def upgrade(self, index: int, stable_hash: str | None) -> list[Phase]:
        """Hold the stable workload on its pods and run the step's canary pods; a step that
        splits traffic first pins the stable Service, one that does not first undoes the
        previous step's split."""
        count = canary_replicas(self.steps[index], self.total)
        if self.kind == "StatefulSet":
            sts = partitioned_statefulset(self.workload, self.total - count)
            why = f"update {count} of {self.total} pods of StatefulSet {self.name}"
            return [Phase(why, apply=(sts,), wait=Wait.READY, wait_for=(object_ref(sts),))]
        held = stable_deployment(self.workload, paused=True)
        canary = canary_deployment(self.workload, count)
        run = f"run {count} canary pods of Deployment {self.name}"
        hold = f"hold Deployment {self.name} on its current pods"
        traffic = self._traffic(index)
        if traffic is None:
            return [
                Phase(hold, apply=(held,)),
                *self._release_traffic(),
                Phase(run, apply=(canary,), wait=Wait.READY, wait_for=(object_ref(canary),)),
            ]
        if stable_hash is None:
            raise CanaryError(
                f"Deployment {self.name}: its pods are not all of one ReplicaSet yet "
                "(a rollout is under way); the canary starts once it has finished"
            )
        pin = f"pin Service {traffic.service_name} to them ({POD_TEMPLATE_HASH} {stable_hash})"
        return [
            Phase(
                f"{hold} and {pin}",
                apply=(held, pinned_service(traffic.service, stable_hash)),
                grace=traffic.grace,
            ),
            Phase(
                run,
                apply=(canary, canary_service(traffic.service)),
                wait=Wait.READY,
                wait_for=(object_ref(canary),),
            ),
        ]

    def route_traffic(self, index: int) -> list[Phase]:
        """Send the step's weight (and header matches) to the canary Service. Nothing for
        a step without either, or without trafficRoutings: traffic then follows pods."""
        traffic = self._traffic(index)
        if traffic is None:
            return []
        step = self.steps[index]
        share = "header-matched requests" if step.weight is None else f"{step.weight}% of requests"
        canary = traffic.canary_service_ref()["name"]
        return [
            Phase(
                f"send {share} to Service {canary}",
                apply=(traffic.split(step),),
                grace=traffic.grace,
            )
        ]

    def finalise(self) -> list[Phase]:
        """Traffic back to the stable Service (unpinned first), then release the stable
        workload and, once it is ready, remove the canary Deployment."""
        if self.kind == "StatefulSet":
            sts = partitioned_statefulset(self.workload, 0)
            why = f"update every pod of StatefulSet {self.name}"
            return [Phase(why, apply=(sts,), wait=Wait.READY, wait_for=(object_ref(sts),))]
        released = stable_deployment(self.workload, paused=False)
        canary = self._canary_deployment_ref()
        return [
            *self._release_traffic(),
            Phase(
                f"release Deployment {self.name}: it rolls to the new version",
                apply=(released,),
                wait=Wait.READY,
                wait_for=(object_ref(released),),
            ),
            Phase(f"remove canary Deployment {canary['name']}", delete=(canary,)),
        ]

    def rollback(
        self, previous: Sequence[Mapping[str, Any]], stable_hash: str | None
    ) -> list[Phase]:
        """Traffic to the stable pods only, the previous spec re-applied unpaused, the canary
        pods gone, and only then the stable Service unpinned.

        With `stable_hash` the stable Service is pinned first, which matters when a step
        without weight had let canary pods into it; without, canary pods may serve until
        they are gone. Once finalising has released the stable Deployment, this is an
        ordinary rolling update back.
        """
        old = [in_namespace(o, self._namespace) for o in previous]
        workload = find_object(old, self.kind, self.name)
        if workload is None:
            raise CanaryError(
                f"{self.kind} {self.name}: not in the previous revision, nothing to roll back to"
            )
        if self.kind == "StatefulSet":
            sts = partitioned_statefulset(workload, 0)
            why = f"roll StatefulSet {self.name} back to the previous revision"
            return [Phase(why, apply=(sts,), wait=Wait.READY, wait_for=(object_ref(sts),))]
        restored = stable_deployment(workload, paused=False)
        canary = self._canary_deployment_ref()
        workload_phases = [
            Phase(
                f"re-apply the previous Deployment {self.name}",
                apply=(restored,),
                wait=Wait.READY,
                wait_for=(object_ref(restored),),
            ),
            Phase(
                f"remove canary Deployment {canary['name']} and its pods",
                delete=(canary,),
                wait=Wait.GONE,
                wait_for=(canary,),
            ),
        ]
        traffic = self.traffic
        if traffic is None:
            return workload_phases
        service = find_object(old, "Service", traffic.service_name) or traffic.service
        route = (
            find_object(old, traffic.route["kind"], traffic.route["metadata"]["name"])
            or traffic.route
        )
        pin = []
        if stable_hash is not None:
            pin = [
                Phase(
                    f"pin Service {traffic.service_name} to the stable pods",
                    apply=(pinned_service(service, stable_hash),),
                    grace=traffic.grace,
                )
            ]
        return [
            *pin,
            traffic.to_stable(route),
            *workload_phases,
            Phase(
                f"unpin Service {traffic.service_name} and remove its canary Service",
                apply=(service,),
                delete=(traffic.canary_service_ref(),),
            ),
        ]

    @property
    def _namespace(self) -> str:
        return str(self.workload["metadata"]["namespace"])

    def _traffic(self, index: int) -> Traffic | None:
        """The traffic split of a step, or None when its traffic follows pods (a step
        with neither weight nor matches, as in kruise, or no trafficRoutings)."""
        step = self.steps[index]
        if step.weight is None and not step.matches:
            return None
        return self.traffic

    def _release_traffic(self) -> list[Phase]:
        """kruise's traffic finalising: unpin the stable Service (it then selects canary
        pods too), send everything to it, remove the canary Service."""
        traffic = self.traffic
        if traffic is None:
            return []
        canary = traffic.canary_service_ref()
        return [
            Phase(
                f"unpin Service {traffic.service_name}: it selects every pod of "
                f"Deployment {self.name} again",
                apply=(traffic.service,),
                grace=traffic.grace,
            ),
            traffic.to_stable(traffic.route),
            Phase(f"remove canary Service {canary['name']}", delete=(canary,)),
        ]

    def _canary_deployment_ref(self) -> Ref:
        return object_ref(self.workload) | {"name": canary_name(self.name)}


def _step_problems(steps: Sequence[CanaryStep], provider: Provider | None) -> list[str]:
    """Header matches that nothing could honour: without a traffic provider, or more than
    ingress-nginx's canary annotations can say."""
    problems = []
    for index, step in enumerate(steps):
        where = f"canary.steps[{index}].matches"
        if not step.matches:
            continue
        if provider is None:
            problems.append(
                f"{where}: header matches need trafficRoutings and a Deployment "
                "(a StatefulSet canary splits traffic by pods only)"
            )
        elif provider == "nginx" and (len(step.matches) > 1 or len(step.matches[0].headers) > 1):
            problems.append(
                f"{where}: ingress-nginx routes a canary by one header (or cookie); "
                "give one match with one header, or use a Gateway API route"
            )
    return problems


def _routing_problems(
    service: Manifest | None, route: Manifest | None, service_name: str, route_kind: str
) -> list[str]:
    problems = []
    if service is None:
        problems.append(f"trafficRoutings: Service {service_name} is not in the release")
    elif not service["spec"].get("selector"):
        problems.append(
            f"trafficRoutings: Service {service_name} has no selector, so it cannot be "
            "pinned to the stable pods"
        )
    if route is None:
        problems.append(
            f"trafficRoutings: no {route_kind} of that name in the release "
            "(it defaults to the workload's name)"
        )
    elif not _route_reaches(route, service_name):
        problems.append(
            f"trafficRoutings: {route_kind} {route['metadata']['name']} sends nothing to "
            f"Service {service_name}"
        )
    return problems


def _route_reaches(route: Mapping[str, Any], service: str) -> bool:
    rules = route["spec"].get("rules") or []
    if route["kind"] == "Ingress":
        return any(
            path.get("backend", {}).get("service", {}).get("name") == service
            for rule in rules
            for path in (rule.get("http") or {}).get("paths", [])
        )
    return any(reaches(ref, service) for rule in rules for ref in rule.get("backendRefs") or [])
