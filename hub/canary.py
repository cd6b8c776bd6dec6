"""The canary of one workload, as kruise-rollout runs it, computed as objects to apply.

kruise-rollout runs canaries from a controller inside the cluster; Flotilla runs them from
the hub, so every move has to be an object the hub can server-side apply (or delete) and a
condition it can wait for. This module computes those objects and nothing else: no I/O, no
asyncio, no Kubernetes client, no clock. The engine persists a `CanaryState`, asks for the
`Phase`s of its stage, runs them in order, and calls `advance`. Every object is a pure
function of the manifests and the state, so running a phase twice (after a crash, on
resume) applies the same objects again and changes nothing.

What kruise-rollout does, and so what happens here, for a Deployment (canary style, with an
extra workload):

- the stable Deployment gets the new spec with `spec.paused: true`: it does not roll, and
  its pods keep running the old template for the whole canary;
- a canary Deployment `<name>-canary` runs the new template with ceil(weight% x replicas)
  pods. Its selector and pods carry `flotilla.dev/canary`, so its selector never takes
  stable pods; the stable Deployment's selector is immutable and does match canary pods,
  but ReplicaSets only adopt pods of their own `pod-template-hash`, so it leaves them be;
- the stable Service's selector is pinned to the stable ReplicaSet's `pod-template-hash`
  (Service selectors cannot say "without label X"), and a canary Service `<svc>-canary`
  selects the canary label: the two Services never share a pod;
- nginx: a canary Ingress `<ingress>-canary` copies the rules that reach the stable
  Service, points them at the canary Service and carries ingress-nginx's `canary`,
  `canary-weight` (and `canary-by-header[-value|-pattern]`, `canary-by-cookie`)
  annotations; Gateway API: the HTTPRoute's rules get weighted backendRefs, and header
  matches become extra rules that send matching requests to the canary Service.

Finalising follows kruise's order on success: restore the stable Service's selector, send
all traffic back to it, remove the canary Service, release the stable Deployment, remove
the canary Deployment. The selector is restored *before* the stable Deployment rolls
because a Service pinned to the old ReplicaSet would lose every endpoint as the rollout
scales that ReplicaSet to zero; unpinned, it selects old, new and canary pods alike, all
of which may serve by then. A rollback first routes all traffic to the (pinned) stable
pods, then re-applies the previous spec unpaused (its template is what the stable pods run,
so none restarts), removes the canary pods, and only then unpins the Service, which would
otherwise select canary pods again.

A StatefulSet has no extra workload: `updateStrategy.rollingUpdate.partition` keeps the
lowest ordinals on the old template and updates the rest. Its traffic is split by pods
only: no canary Service or route is made, a step's weight only sizes the partition, and a
step with header matches is refused (nothing could honour it).
"""

from __future__ import annotations

import copy
import enum
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from hub.errors import FlotillaError
from hub.spec import Canary, CanaryStep, RouteMatch

Manifest = dict[str, Any]
Ref = dict[str, Any]
"""An object's address as `hub.deploy.ref_of` reads it: apiVersion, kind, namespace, name."""
Provider = Literal["nginx", "gateway"]

CANARY_LABEL = "flotilla.dev/canary"
"""On every object a canary adds and on the canary pods, value "true": one label selector
finds all canary machinery, and it keeps canary pods out of the stable selectors."""
CANARY_OF = "flotilla.dev/canary-of"
"""Annotation on every object a canary adds: `<Kind>/<name>` of the stable object it
stands beside (an annotation, because a label value is too short for every name)."""
POD_TEMPLATE_HASH = "pod-template-hash"
CANARY_SUFFIX = "-canary"
# kruise-rollout's default gracePeriodSeconds: time for ingress controllers and gateways to
# load a routing change before the next move relies on it.
DEFAULT_GRACE_SECONDS = 3.0
# Service names are DNS-1035 labels; Deployment and Ingress names may be longer.
SERVICE_NAME_MAX = 63
OBJECT_NAME_MAX = 253
# clusters.apply.FIELD_MANAGER, repeated so that this module imports no client.
FIELD_MANAGER = "flotilla"
WORKLOAD_KINDS = ("Deployment", "StatefulSet")

_NGINX = "nginx.ingress.kubernetes.io/"
# kruise's nginx convention: a header match named so is a cookie match.
_COOKIE_MATCH = "canary-by-cookie"
# What a Gateway API rule without matches matches.
_EVERYTHING = {"path": {"type": "PathPrefix", "value": "/"}}


class CanaryError(FlotillaError):
    """The canary cannot be planned: the trait does not fit the release, or the stable
    workload is in no state to start one from."""


# --- the state machine ------------------------------------------------------------------------


class Stage(enum.StrEnum):
    """Where one workload's canary is; persisted by the engine with the step index.

    Per step: UPGRADING (hold the stable workload, run the canary pods, wait until ready),
    TRAFFIC_ROUTING (send the step's traffic to them), PAUSED (until resumed). After the
    last step: FINALISING, then COMPLETED. ROLLING_BACK can interrupt any of them.
    """

    UPGRADING = "upgrading"
    TRAFFIC_ROUTING = "traffic-routing"
    PAUSED = "paused"
    FINALISING = "finalising"
    COMPLETED = "completed"
    ROLLING_BACK = "rolling-back"
    ROLLED_BACK = "rolled-back"


class Event(enum.StrEnum):
    DONE = "done"
    """Every phase of the stage ran and every wait held."""
    RESUME = "resume"
    """`workflow resume`, or the paused step's duration passed."""
    ROLLBACK = "rollback"


@dataclass(frozen=True)
class CanaryState:
    stage: Stage = Stage.UPGRADING
    step: int = 0
    """Index into the trait's `canary.steps`."""


def advance(state: CanaryState, event: Event, step_count: int) -> CanaryState:
    """The state after `event`. A resume that comes before the pause is a no-op, as in
    kruise: it does not skip the wait for the canary pods."""
    stage = state.stage
    if event is Event.ROLLBACK:
        if stage in (Stage.COMPLETED, Stage.ROLLED_BACK):
            raise CanaryError(f"the canary is {stage}: there is nothing to roll back")
        return CanaryState(Stage.ROLLING_BACK, state.step)
    if event is Event.RESUME:
        if stage is not Stage.PAUSED:
            return state
        if state.step + 1 < step_count:
            return CanaryState(Stage.UPGRADING, state.step + 1)
        return CanaryState(Stage.FINALISING, state.step)
    following = {
        Stage.UPGRADING: Stage.TRAFFIC_ROUTING,
        Stage.TRAFFIC_ROUTING: Stage.PAUSED,
        Stage.FINALISING: Stage.COMPLETED,
        Stage.ROLLING_BACK: Stage.ROLLED_BACK,
    }
    if stage not in following:
        raise ValueError(f"a canary that is {stage} has no work to finish")
    return CanaryState(following[stage], state.step)


# --- phases -------------------------------------------------------------------------------------


class Wait(enum.StrEnum):
    """What a phase waits for once its objects are applied and deleted."""

    NOTHING = "nothing"
    READY = "ready"
    """`CanaryStatus.of(live).ready` for every object in `wait_for`."""
    GONE = "gone"
    """Every object in `wait_for` no longer exists. Delete with Foreground propagation, so
    a Deployment is gone only once its pods are."""


@dataclass(frozen=True)
class Phase:
    """One move: apply these, delete those, wait, then let proxies catch up for `grace`
    seconds. The phases of a stage run in order; each may be repeated safely."""

    why: str
    """One line for the event log."""
    apply: tuple[Manifest, ...] = ()
    delete: tuple[Ref, ...] = ()
    wait: Wait = Wait.NOTHING
    wait_for: tuple[Ref, ...] = ()
    grace: float = 0.0


# --- objects ------------------------------------------------------------------------------------


def canary_name(name: str, limit: int = OBJECT_NAME_MAX) -> str:
    """`<name>-canary`; a name too long for `limit` is cut and keeps a digest of the whole,
    so two long names that share a prefix still get different canaries."""
    wanted = name + CANARY_SUFFIX
    if len(wanted) <= limit:
        return wanted
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    keep = limit - len(CANARY_SUFFIX) - len(digest) - 1
    return f"{name[:keep].rstrip('-.')}-{digest}{CANARY_SUFFIX}"


def canary_replicas(step: CanaryStep, total: int) -> int:
    """Canary pods for a step: its `replicas` (a number or "N%") or else its weight as a
    percentage, rounded up as kruise does, and never more than the workload has."""
    wanted = step.replicas if step.replicas is not None else f"{step.weight}%"
    if isinstance(wanted, int):
        return min(wanted, total)
    return min(-(-int(wanted.rstrip("%")) * total // 100), total)


def stable_deployment(new: Mapping[str, Any], *, paused: bool) -> Manifest:
    """The stable Deployment with the new spec; paused, it keeps its pods as they are."""
    out = copy.deepcopy(dict(new))
    out["spec"]["paused"] = paused
    return out


def partitioned_statefulset(new: Mapping[str, Any], partition: int) -> Manifest:
    """The StatefulSet with the new spec; pods with an ordinal below `partition` keep the
    old template. A partition only works with the RollingUpdate strategy."""
    out = copy.deepcopy(dict(new))
    strategy = out["spec"].setdefault("updateStrategy", {})
    strategy["type"] = "RollingUpdate"
    strategy.setdefault("rollingUpdate", {})["partition"] = partition
    return out


def canary_deployment(new: Mapping[str, Any], replicas: int) -> Manifest:
    """`<name>-canary`: the new spec with `replicas` pods, its selector and pods marked."""
    metadata = new["metadata"]
    spec = copy.deepcopy(new["spec"])
    spec.pop("paused", None)
    spec["replicas"] = replicas
    selector = spec.setdefault("selector", {})
    selector["matchLabels"] = {**selector.get("matchLabels", {}), CANARY_LABEL: "true"}
    template = spec["template"].setdefault("metadata", {})
    template["labels"] = {**template.get("labels", {}), CANARY_LABEL: "true"}
    return {
        "apiVersion": new["apiVersion"],
        "kind": new["kind"],
        "metadata": _derived_metadata(metadata, canary_name(metadata["name"]), new["kind"]),
        "spec": spec,
    }


def pinned_service(service: Mapping[str, Any], stable_hash: str) -> Manifest:
    """The stable Service, selecting only pods of the stable ReplicaSet."""
    out = copy.deepcopy(dict(service))
    out["spec"]["selector"] = {**out["spec"]["selector"], POD_TEMPLATE_HASH: stable_hash}
    return out


def canary_service(service: Mapping[str, Any]) -> Manifest:
    """`<svc>-canary`: the stable Service's ports, selecting the canary pods.

    Always ClusterIP, unlike kruise's copy: it only has to be a backend for the Ingress or
    route, and a copy of a LoadBalancer or NodePort Service would claim a load balancer
    or node ports for nothing.
    """
    spec = service["spec"]
    canary_spec: dict[str, Any] = {
        "type": "ClusterIP",
        "selector": {**_chart_selector(spec), CANARY_LABEL: "true"},
        "ports": [
            {k: v for k, v in port.items() if k != "nodePort"} for port in spec.get("ports", [])
        ],
    }
    for key in ("sessionAffinity", "sessionAffinityConfig", "publishNotReadyAddresses"):
        if key in spec:
            canary_spec[key] = copy.deepcopy(spec[key])
    metadata = service["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _derived_metadata(
            metadata, canary_name(metadata["name"], SERVICE_NAME_MAX), "Service"
        ),
        "spec": canary_spec,
    }


def canary_ingress(
    ingress: Mapping[str, Any],
    service: str,
    weight: int | None,
    matches: Sequence[RouteMatch] = (),
) -> Manifest:
    """`<ingress>-canary`: the paths of `ingress` that reach Service `service`, sent to its
    canary Service, with ingress-nginx's canary annotations.

    Like kruise, it keeps the stable Ingress's other annotations (rewrites, timeouts apply
    to canary requests too), class and TLS; rules that do not reach `service` are left
    out. ingress-nginx gives a header or cookie match precedence over the weight, so a
    step with both sends matching requests and weight% of the rest to the canary.
    """
    canary = canary_name(service, SERVICE_NAME_MAX)
    rules = []
    for rule in ingress["spec"].get("rules", []):
        paths = [
            _with_backend(path, canary)
            for path in (rule.get("http") or {}).get("paths", [])
            if path.get("backend", {}).get("service", {}).get("name") == service
        ]
        if paths:
            rules.append({**copy.deepcopy(rule), "http": {"paths": paths}})
    spec: dict[str, Any] = {"rules": rules}
    for key in ("ingressClassName", "tls"):
        if key in ingress["spec"]:
            spec[key] = copy.deepcopy(ingress["spec"][key])
    metadata = ingress["metadata"]
    out = _derived_metadata(metadata, canary_name(metadata["name"]), "Ingress")
    kept = {
        k: v
        for k, v in (metadata.get("annotations") or {}).items()
        if not k.startswith(_NGINX + "canary")
    }
    out["annotations"] = {**kept, **out["annotations"], **_nginx_annotations(weight, matches)}
    return {"apiVersion": ingress["apiVersion"], "kind": "Ingress", "metadata": out, "spec": spec}


def weighted_route(
    route: Mapping[str, Any],
    service: str,
    weight: int | None,
    matches: Sequence[RouteMatch] = (),
) -> Manifest:
    """The HTTPRoute with canary traffic: every rule that reaches Service `service` sends
    weight% to its canary Service; each header match adds a rule, after the others, that
    sends matching requests (on the same paths) to the canary only.

    kruise's gateway provider drops the weight when a step also has matches; here both
    apply, as they do on nginx, so that a step means the same on either provider. Gateway
    API ranks a rule with more header matches above an otherwise equal one, so the extra
    rules win for the requests they match.
    """
    canary = canary_name(service, SERVICE_NAME_MAX)
    out = copy.deepcopy(dict(route))
    rules, extra = [], []
    for rule in out["spec"].get("rules", []):
        refs = rule.get("backendRefs") or []
        stable = next((ref for ref in refs if _reaches(ref, service)), None)
        if stable is not None and weight is not None:
            rule["backendRefs"] = [
                split for ref in refs for split in _split(ref, service, canary, weight)
            ]
        if stable is not None and matches:
            extra.append(
                {
                    **copy.deepcopy(rule),
                    "matches": [
                        {**base, "headers": [*base.get("headers", []), *_headers(match)]}
                        for base in rule.get("matches") or [_EVERYTHING]
                        for match in matches
                    ],
                    "backendRefs": [
                        {**{k: v for k, v in stable.items() if k != "weight"}, "name": canary}
                    ],
                }
            )
        rules.append(rule)
    out["spec"]["rules"] = rules + extra
    return out


def stable_pod_template_hash(
    deployment: Mapping[str, Any], replicasets: Iterable[Mapping[str, Any]]
) -> str | None:
    """The `pod-template-hash` of the one ReplicaSet of `deployment` that has pods.

    None while more than one has (a rollout is under way: no single hash names the stable
    pods, so the canary has to wait) or none has.
    """
    uid = deployment["metadata"].get("uid")
    active = [
        rs
        for rs in replicasets
        if any(
            ref.get("uid") == uid and ref.get("controller")
            for ref in rs["metadata"].get("ownerReferences", [])
        )
        and ((rs.get("spec") or {}).get("replicas") or (rs.get("status") or {}).get("replicas"))
    ]
    if len(active) != 1:
        return None
    label: str | None = active[0]["metadata"].get("labels", {}).get(POD_TEMPLATE_HASH)
    return label


# --- does the pod template change? --------------------------------------------------------------


def template_changed(
    live: Mapping[str, Any] | None, new: Mapping[str, Any], *, manager: str = FIELD_MANAGER
) -> bool:
    """Whether applying `new` changes the pod template of the `live` workload, i.e. whether
    its pods would be replaced and a canary is due. False when there is no live workload
    (a first deploy is a plain apply) and for kinds other than Deployment and StatefulSet.

    Two checks, because the API server adds defaults to what we applied and keeps fields
    that others own: every field `new` sets must have that value live (extra live fields,
    such as defaults or `pod-template-hash`, do not count; resource quantities compare by
    value, so "0.5" equals "500m"; false, 0 and empty values equal absent ones, as
    `omitempty` drops them), and every field our field manager applied before
    (`metadata.managedFields`) must still be in `new`, because server-side apply removes
    the ones that are not. List items are matched by their merge keys (containers and env
    by name, ports by number and protocol, ...), so a reordering alone is no change.
    """
    if live is None or new.get("kind") not in WORKLOAD_KINDS:
        return False
    before = (live.get("spec") or {}).get("template") or {}
    after = (new.get("spec") or {}).get("template") or {}
    if not _covers(before, after):
        return True
    owned = _owned_template(live, manager)
    return owned is not None and _drops(owned, after)


# Merge keys of the pod template's associative lists (Kubernetes' `patchMergeKey`s).
_LIST_KEYS = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "ports": ("containerPort", "protocol"),
    "imagePullSecrets": ("name",),
    "hostAliases": ("ip",),
    "resourceClaims": ("name",),
    "schedulingGates": ("name",),
    "topologySpreadConstraints": ("topologyKey", "whenUnsatisfiable"),
}
# Key fields the API server defaults when a manifest leaves them out.
_KEY_DEFAULTS = {"protocol": "TCP"}
# Maps whose values, and fields which, are resource quantities.
_QUANTITY_MAPS = frozenset({"limits", "requests", "overhead"})
_QUANTITY_FIELDS = frozenset({"sizeLimit", "divisor"})
_QUANTITY = re.compile(
    r"([+-]?(?:\d+\.?\d*|\.\d+))(?:[eE]([+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E))?"
)
_SUFFIX = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    **{
        suffix: Decimal(1024) ** (i + 1)
        for i, suffix in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))
    },
}


def _covers(live: Any, new: Any, key: str = "", parent: str = "") -> bool:
    """Whether `live` has every value `new` sets (see `template_changed`)."""
    if isinstance(new, Mapping):
        if live is not None and not isinstance(live, Mapping):
            return False
        return all(_covers((live or {}).get(k), v, k, key) for k, v in new.items())
    if isinstance(new, list):
        if live is not None and not isinstance(live, list):
            return False
        items = live or []
        if key in _LIST_KEYS:
            return all(_covers(_keyed(items, _key_of(item, key)), item, "", key) for item in new)
        return len(items) == len(new) and all(map(_covers, items, new))
    if new is None:
        return True
    if live is None:
        return not new
    if parent in _QUANTITY_MAPS or key in _QUANTITY_FIELDS:
        return _quantity(live) == _quantity(new)
    return bool(live == new)


def _key_of(item: Mapping[str, Any], list_name: str) -> dict[str, Any]:
    return {f: item.get(f, _KEY_DEFAULTS.get(f)) for f in _LIST_KEYS[list_name]}


def _keyed(items: Sequence[Any], key: Mapping[str, Any]) -> Any:
    """The item of an associative list with merge key `key` (defaulted key fields match)."""
    for item in items:
        if isinstance(item, Mapping) and all(
            item.get(field, _KEY_DEFAULTS.get(field)) == value for field, value in key.items()
        ):
            return item
    return None


def _quantity(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    match = _QUANTITY.fullmatch(str(value))
    if match is None:
        return None
    number, exponent, suffix = match.groups()
    scale = Decimal(10) ** int(exponent) if exponent else _SUFFIX.get(suffix, Decimal(1))
    return Decimal(number) * scale


def _owned_template(live: Mapping[str, Any], manager: str) -> Mapping[str, Any] | None:
    """The pod-template fields `manager` last applied, from `metadata.managedFields`."""
    for entry in live.get("metadata", {}).get("managedFields") or []:
        if entry.get("manager") == manager and entry.get("operation") == "Apply":
            template = entry.get("fieldsV1", {}).get("f:spec", {}).get("f:template")
            return template if isinstance(template, Mapping) else None
    return None


def _drops(owned: Mapping[str, Any], new: Any) -> bool:
    """Whether `new` lacks a field of `owned`, a managedFields `fieldsV1` set: `f:<field>`,
    `k:<merge key as JSON>` for an item of an associative list, `v:<value>` for a set."""
    for entry, below in owned.items():
        kind, _, name = entry.partition(":")
        if kind == "f":
            child = new.get(name) if isinstance(new, Mapping) else None
        elif kind == "k":
            child = _keyed(new, json.loads(name)) if isinstance(new, list) else None
        elif kind == "v":
            value = json.loads(name)
            child = value if isinstance(new, list) and value in new else None
        else:  # "." is the node itself; "i:" items belong to atomic lists, owned whole.
            continue
        if child is None or (below and _drops(below, child)):
            return True
    return False


# --- readiness ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CanaryStatus:
    """How far the new pods of a workload have come, from its live status.

    Works for a canary Deployment, for the stable Deployment once released, and for a
    StatefulSet whose partition leaves `replicas - partition` pods to update. Pods count
    when *available* (ready for `minReadySeconds`), which is what users set to slow a
    canary down.
    """

    desired: int
    """Pods that must run the new template."""
    updated: int
    """Pods that do."""
    available: int
    """Available pods, of either template."""
    replicas: int
    """Pods the workload should have."""
    existing: int
    """Pods it has: a Deployment that still has pods of an older template has more."""
    current: bool
    """The controller has seen the latest spec (`observedGeneration`)."""

    @classmethod
    def of(cls, live: Mapping[str, Any]) -> CanaryStatus:
        spec, status = live.get("spec") or {}, live.get("status") or {}
        replicas = int(spec.get("replicas", 1))
        desired = replicas
        if live.get("kind") == "StatefulSet":
            rolling = (spec.get("updateStrategy") or {}).get("rollingUpdate") or {}
            desired = max(replicas - int(rolling.get("partition", 0)), 0)
        generation = int(live.get("metadata", {}).get("generation", 0))
        return cls(
            desired=desired,
            updated=int(status.get("updatedReplicas", 0)),
            available=int(status.get("availableReplicas", 0)),
            replicas=replicas,
            existing=int(status.get("replicas", 0)),
            current=int(status.get("observedGeneration", 0)) >= generation,
        )

    @property
    def ready(self) -> bool:
        """The step may go on: every new pod runs, and every pod is available."""
        return (
            self.current
            and self.updated >= self.desired
            and self.available >= self.replicas
            and self.existing <= self.replicas
        )

    def __str__(self) -> str:
        text = f"{min(self.updated, self.desired)}/{self.desired} new pods, "
        text += f"{self.available}/{self.replicas} available"
        return text if self.current else text + ", the latest spec not yet observed"


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
            canary = _ref(route) | {"name": canary_name(route["metadata"]["name"])}
            return Phase(why, delete=(canary,), grace=self.grace)
        return Phase(why, apply=(route,), grace=self.grace)

    def canary_service_ref(self) -> Ref:
        return _ref(self.service) | {"name": canary_name(self.service_name, SERVICE_NAME_MAX)}


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
        objects = [_in_namespace(o, namespace) for o in manifests]
        workload = _find(objects, kind, name)
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
            service = _find(objects, "Service", service_name)
            route = _find(objects, route_kind, routing.route_name or name)
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
        return any(o["kind"] == obj.get("kind") and _name(o) == _name(obj) for o in own)

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
            return [Phase(why, apply=(sts,), wait=Wait.READY, wait_for=(_ref(sts),))]
        held = stable_deployment(self.workload, paused=True)
        canary = canary_deployment(self.workload, count)
        run = f"run {count} canary pods of Deployment {self.name}"
        hold = f"hold Deployment {self.name} on its current pods"
        traffic = self._traffic(index)
        if traffic is None:
            return [
                Phase(hold, apply=(held,)),
                *self._release_traffic(),
                Phase(run, apply=(canary,), wait=Wait.READY, wait_for=(_ref(canary),)),
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
                wait_for=(_ref(canary),),
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
            return [Phase(why, apply=(sts,), wait=Wait.READY, wait_for=(_ref(sts),))]
        released = stable_deployment(self.workload, paused=False)
        canary = self._canary_deployment_ref()
        return [
            *self._release_traffic(),
            Phase(
                f"release Deployment {self.name}: it rolls to the new version",
                apply=(released,),
                wait=Wait.READY,
                wait_for=(_ref(released),),
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
        old = [_in_namespace(o, self._namespace) for o in previous]
        workload = _find(old, self.kind, self.name)
        if workload is None:
            raise CanaryError(
                f"{self.kind} {self.name}: not in the previous revision, nothing to roll back to"
            )
        if self.kind == "StatefulSet":
            sts = partitioned_statefulset(workload, 0)
            why = f"roll StatefulSet {self.name} back to the previous revision"
            return [Phase(why, apply=(sts,), wait=Wait.READY, wait_for=(_ref(sts),))]
        restored = stable_deployment(workload, paused=False)
        canary = self._canary_deployment_ref()
        workload_phases = [
            Phase(
                f"re-apply the previous Deployment {self.name}",
                apply=(restored,),
                wait=Wait.READY,
                wait_for=(_ref(restored),),
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
        service = _find(old, "Service", traffic.service_name) or traffic.service
        route = (
            _find(old, traffic.route["kind"], traffic.route["metadata"]["name"]) or traffic.route
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
        return _ref(self.workload) | {"name": canary_name(self.name)}


# --- helpers --------------------------------------------------------------------------------------


def _derived_metadata(stable: Mapping[str, Any], name: str, kind: str) -> dict[str, Any]:
    """Metadata of an object a canary adds beside `stable`: its labels (application,
    component, revision) plus the canary label, and which object it stands beside."""
    metadata: dict[str, Any] = {
        "name": name,
        "labels": {**(stable.get("labels") or {}), CANARY_LABEL: "true"},
        "annotations": {CANARY_OF: f"{kind}/{stable['name']}"},
    }
    if "namespace" in stable:
        metadata["namespace"] = stable["namespace"]
    return metadata


def _chart_selector(service_spec: Mapping[str, Any]) -> dict[str, str]:
    return {k: v for k, v in service_spec["selector"].items() if k != POD_TEMPLATE_HASH}


def _with_backend(path: Mapping[str, Any], service: str) -> dict[str, Any]:
    out = copy.deepcopy(dict(path))
    out["backend"]["service"]["name"] = service
    return out


def _nginx_annotations(weight: int | None, matches: Sequence[RouteMatch]) -> dict[str, str]:
    """ingress-nginx's canary annotations, as kruise's nginx script writes them."""
    out = {_NGINX + "canary": "true"}
    if weight is not None:
        out |= {_NGINX + "canary-weight": str(weight), _NGINX + "canary-weight-total": "100"}
    for match in matches:
        header = match.headers[0]
        if header.name == _COOKIE_MATCH:
            out[_NGINX + "canary-by-cookie"] = header.value
            continue
        out[_NGINX + "canary-by-header"] = header.name
        exact = header.type == "Exact"
        out[_NGINX + ("canary-by-header-value" if exact else "canary-by-header-pattern")] = (
            header.value
        )
    return out


def _reaches(ref: Mapping[str, Any], service: str) -> bool:
    """Whether an HTTPRoute backendRef is Service `service` (kind and group default so)."""
    return (
        ref.get("name") == service
        and ref.get("kind", "Service") == "Service"
        and ref.get("group", "") == ""
    )


def _split(ref: Mapping[str, Any], service: str, canary: str, weight: int) -> list[dict[str, Any]]:
    """A backendRef, and for the stable Service its canary twin, weighted out of 100."""
    if not _reaches(ref, service):
        return [copy.deepcopy(dict(ref))]
    return copy.deepcopy(
        [{**ref, "weight": 100 - weight}, {**ref, "name": canary, "weight": weight}]
    )


def _headers(match: RouteMatch) -> list[dict[str, str]]:
    return [{"type": h.type, "name": h.name, "value": h.value} for h in match.headers]


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
    return any(_reaches(ref, service) for rule in rules for ref in rule.get("backendRefs") or [])


def _find(objects: Iterable[Manifest], kind: str, name: str) -> Manifest | None:
    return next(
        (o for o in objects if o.get("kind") == kind and o["metadata"].get("name") == name), None
    )


def _in_namespace(obj: Mapping[str, Any], namespace: str) -> Manifest:
    """A copy of `obj` with its namespace set, so that every object and reference made from
    it names its namespace (Flotilla's canary kinds are all namespaced)."""
    out = copy.deepcopy(dict(obj))
    out["metadata"].setdefault("namespace", namespace)
    return out


def _ref(obj: Mapping[str, Any]) -> Ref:
    metadata = obj["metadata"]
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "namespace": metadata.get("namespace"),
        "name": metadata["name"],
    }


def _name(obj: Mapping[str, Any]) -> str | None:
    name = (obj.get("metadata") or {}).get("name")
    return None if name is None else str(name)
