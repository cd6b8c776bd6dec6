"""The objects a canary adds or changes beside a workload, as pure functions of the manifests.

Every object is deterministic, so applying it twice (after a crash, on resume) changes
nothing.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from clusters.fields import FIELD_MANAGER, POD_TEMPLATE, changes
from hub.format import CanaryStep, RouteMatch
from hub.model.settings import DEFAULTS

Manifest = dict[str, Any]
Ref = dict[str, Any]
"""An object's address (`hub.fleet.objects.ref_of` reads it): apiVersion, kind, namespace, name."""
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
# load a routing change before the next move relies on it. A trait's own value wins.
DEFAULT_GRACE_SECONDS = DEFAULTS.canary_grace_seconds
# Service names are DNS-1035 labels; Deployment and Ingress names may be longer.
SERVICE_NAME_MAX = 63
OBJECT_NAME_MAX = 253
# The kinds a canary can roll out: the workloads whose pod template it holds back.
WORKLOAD_KINDS = ("Deployment", "StatefulSet")

_NGINX = "nginx.ingress.kubernetes.io/"
# kruise's nginx convention: a header match named so is a cookie match.
_COOKIE_MATCH = "canary-by-cookie"
# What a Gateway API rule without matches matches.
_EVERYTHING = {"path": {"type": "PathPrefix", "value": "/"}}


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
        stable = next((ref for ref in refs if reaches(ref, service)), None)
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


def reaches(ref: Mapping[str, Any], service: str) -> bool:
    """Whether an HTTPRoute backendRef is Service `service` (kind and group default so)."""
    return (
        ref.get("name") == service
        and ref.get("kind", "Service") == "Service"
        and ref.get("group", "") == ""
    )


def _split(ref: Mapping[str, Any], service: str, canary: str, weight: int) -> list[dict[str, Any]]:
    """A backendRef, and for the stable Service its canary twin, weighted out of 100."""
    if not reaches(ref, service):
        return [copy.deepcopy(dict(ref))]
    return copy.deepcopy(
        [{**ref, "weight": 100 - weight}, {**ref, "name": canary, "weight": weight}]
    )


def _headers(match: RouteMatch) -> list[dict[str, str]]:
    return [{"type": h.type, "name": h.name, "value": h.value} for h in match.headers]


def find_object(objects: Iterable[Manifest], kind: str, name: str) -> Manifest | None:
    return next(
        (o for o in objects if o.get("kind") == kind and o["metadata"].get("name") == name), None
    )


def in_namespace(obj: Mapping[str, Any], namespace: str) -> Manifest:
    """A copy of `obj` with its namespace set, so that every object and reference made from
    it names its namespace (Flotilla's canary kinds are all namespaced)."""
    out = copy.deepcopy(dict(obj))
    out["metadata"].setdefault("namespace", namespace)
    return out


def object_ref(obj: Mapping[str, Any]) -> Ref:
    metadata = obj["metadata"]
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "namespace": metadata.get("namespace"),
        "name": metadata["name"],
    }


def object_name(obj: Mapping[str, Any]) -> str | None:
    name = (obj.get("metadata") or {}).get("name")
    return None if name is None else str(name)


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
    return changes(live, new, at=POD_TEMPLATE, manager=manager)
