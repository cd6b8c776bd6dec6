"""What a canary reads from its cluster, beyond the watch cache: the live workload whose
template a revision changes, the stable ReplicaSet's hash, and, when a step fails, why
its pods are not ready. Each is one read at a moment a phase needs it, never a poll.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from clusters.apply import AppliedRef, get
from clusters.client import ClusterClient
from clusters.errors import ClusterError
from clusters.health import Health, HealthStatus
from clusters.pods import pod_trouble
from clusters.resources import ObjectRef, ResourceClient
from hub.canary import (
    CANARY_LABEL,
    WORKLOAD_KINDS,
    CanaryPlan,
    CanaryStatus,
    stable_pod_template_hash,
    template_changed,
)
from hub.fleet.objects import ref_of


async def changed_workload(
    client: ClusterClient, objects: list[dict[str, Any]], namespace: str
) -> tuple[str, str] | None:
    """The first Deployment or StatefulSet whose pod template this revision changes."""
    for obj in objects:
        if obj.get("kind") not in WORKLOAD_KINDS:
            continue
        name = obj["metadata"]["name"]
        ns = obj["metadata"].get("namespace") or namespace
        live = await get(client, ObjectRef(obj["apiVersion"], obj["kind"], ns, name))
        if live is not None and template_changed(live, obj):
            return str(obj["kind"]), str(name)
    return None


async def _list(
    client: ClusterClient, api_version: str, kind: str, namespace: str, selector: str = ""
) -> list[dict[str, Any]]:
    rc = ResourceClient(client)
    resource = await rc.resolve(api_version, kind)
    query = {"labelSelector": selector} if selector else None
    found = await rc.call("GET", resource.path(namespace), what=f"list {kind}", query=query)
    items: list[dict[str, Any]] = found.get("items", [])
    return items


async def canary_pod_trouble(client: ClusterClient, namespace: str) -> str | None:
    """Why canary pods are not ready: what an operator asks first (one LIST, on failure)."""
    try:
        return pod_trouble(await _list(client, "v1", "Pod", namespace, f"{CANARY_LABEL}=true"))
    except ClusterError:
        return None


def canary_ready(live: Mapping[str, Any] | None) -> Health:
    """A canary wait's verdict on one workload: Healthy once its new pods all run."""
    if live is None:
        return Health(HealthStatus.MISSING, "not found")
    status = CanaryStatus.of(live)
    return Health(HealthStatus.HEALTHY if status.ready else HealthStatus.PROGRESSING, str(status))


async def stable_template_hash(
    client: ClusterClient, plan: CanaryPlan, namespace: str
) -> str | None:
    """The pod-template hash of the stable pods: what the stable Service is pinned to."""
    if plan.kind != "Deployment":
        return None
    live = await get(client, ObjectRef("apps/v1", "Deployment", namespace, plan.name))
    if live is None:
        return None
    replicasets = await _list(client, "apps/v1", "ReplicaSet", namespace)
    return stable_pod_template_hash(live, replicasets)


async def applied_versions(
    client: ClusterClient, refs: Sequence[Mapping[str, Any]], applied: Sequence[AppliedRef]
) -> list[AppliedRef]:
    """The applied version of each of `refs`: from this phase's apply, or (for an
    object applied earlier) as the cluster has it now, read once."""
    by_name = {(r.kind, r.namespace, r.name): r for r in applied}
    found = []
    for ref in refs:
        known = by_name.get((ref["kind"], ref.get("namespace"), ref["name"]))
        if known is None:
            address = ref_of(ref)
            live = await get(client, address)
            known = AppliedRef.of(live) if live else AppliedRef(**asdict(address), uid="")
        found.append(known)
    return found
