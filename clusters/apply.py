"""Put objects on one cluster with server-side apply, and take them off again.

One field manager (`flotilla`) owns every field we set, so a re-apply of the same
manifests is a no-op on the server (no new resourceVersion, no rollout) and a field
someone else owns is taken over only because we say `force`. The result of an apply is
an inventory (`AppliedRef`s): the hub stores it, and the next revision deletes what it
no longer contains. Nothing here deletes on its own; deletes are explicit.

Order matters only between phases (`apply_order`): namespaces and CRDs first, what
workloads mount or run as next, then Services, workloads, and the routes that send
traffic last. Objects of one phase are applied concurrently, phases in sequence;
deletes walk the phases backwards.

This module never decides *what* to apply; it gets plain manifests.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any, TypeVar

from clusters.client import APPLY_PATCH
from clusters.errors import (
    ApiError,
    Cause,
    ClusterError,
    Conflict,
    Forbidden,
    NotFound,
    refusal,
    reworded,
)
from clusters.fields import FIELD_MANAGER as FIELD_MANAGER
from clusters.resources import Connection, ObjectRef, ResourceClient

logger = logging.getLogger(__name__)

# Kinds by phase. A kind not listed (custom resources, webhooks, APIServices) goes last,
# as Helm does: its CRD is in phase 0, and a webhook registered before its backend
# runs would reject everything applied after it.
_PHASES: tuple[frozenset[str], ...] = (
    frozenset({"Namespace", "CustomResourceDefinition"}),
    frozenset(
        {
            "ServiceAccount",
            "Role",
            "ClusterRole",
            "RoleBinding",
            "ClusterRoleBinding",
            "ConfigMap",
            "Secret",
            "PersistentVolume",
            "PersistentVolumeClaim",
            "StorageClass",
            "ResourceQuota",
            "LimitRange",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "PriorityClass",
        }
    ),
    frozenset({"Service"}),
    frozenset(
        {
            "Deployment",
            "StatefulSet",
            "DaemonSet",
            "ReplicaSet",
            "Pod",
            "Job",
            "CronJob",
            "HorizontalPodAutoscaler",
        }
    ),
    frozenset({"IngressClass", "Ingress", "Gateway", "HTTPRoute", "GRPCRoute"}),
)
_PHASE_OF_KIND = {kind: number for number, kinds in enumerate(_PHASES) for kind in kinds}
_LAST_PHASE = len(_PHASES)

# How long a freshly applied CRD may take until the API server serves its kind. Usually
# well under a second; a loaded server can take several.
CRD_SERVED_TIMEOUT = 60.0
_CRD_POLL_INTERVAL = 0.25

T = TypeVar("T")
R = TypeVar("R", bound=ObjectRef)


@dataclass(frozen=True)
class AppliedRef(ObjectRef):
    """One entry of the inventory: what was applied, the uid it got, and which version
    of the object the apply returned.

    The version lets a waiter tell the applied object from an older copy of it, such as
    a watch cache still holding the pre-apply object (see `clusters.freshness`).
    `generation` is None for kinds without one (ConfigMap, Secret ...); an empty
    `resource_version` means the apply's answer is not known, only the uid.
    """

    uid: str
    generation: int | None = None
    resource_version: str = ""

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> AppliedRef:
        """The inventory entry for an object as the API server returned it."""
        ref = ObjectRef.of(obj)
        metadata = obj["metadata"]
        generation = metadata.get("generation")
        return cls(
            ref.api_version,
            ref.kind,
            ref.namespace,
            ref.name,
            uid=metadata["uid"],
            generation=None if generation is None else int(generation),
            resource_version=str(metadata.get("resourceVersion") or ""),
        )


def phase(kind: str) -> int:
    """The apply phase of a kind: the one place that decides ordering."""
    return _PHASE_OF_KIND.get(kind, _LAST_PHASE)


def apply_order(objects: Iterable[T], kind: Callable[[T], str] | None = None) -> list[T]:
    """`objects` in the order to apply them: by phase, stable within a phase.

    `kind` reads an item's kind; by default items are manifests (`item["kind"]`).
    """
    kind_of = kind or _manifest_kind
    return sorted(objects, key=lambda item: phase(kind_of(item)))


def delete_order(refs: Iterable[R]) -> list[R]:
    """`refs` in the order to delete them: exactly the reverse of applying them."""
    return apply_order(refs, lambda ref: ref.kind)[::-1]


def stale(previous: Iterable[R], current: Iterable[ObjectRef]) -> list[R]:
    """What a new revision prunes: entries of the previous inventory it no longer holds.

    Objects are matched by API group, kind, namespace and name. Not by apiVersion: a
    chart that moves a kind from v1beta1 to v1 still means the same object. Not by uid:
    an object someone re-created is still the one the release declares.
    """
    kept = {_identity(ref) for ref in current}
    return [ref for ref in previous if _identity(ref) not in kept]


@dataclass(frozen=True)
class DryRun:
    """What a server-side apply would make of one object, as the API server answers a dry run.

    `result` is None when the server cannot say: the object's namespace does not exist yet,
    or its kind is defined by a CustomResourceDefinition of the same apply. A dry run
    creates neither, so the apply would create the object.
    """

    ref: ObjectRef
    result: dict[str, Any] | None


@dataclass(frozen=True)
class Owned:
    """An object whose fields other field managers own with other values than an apply
    sets: what only a forced apply takes over. Fields by manager, each cut to its first two
    parts (`spec.template`): the leaves of a pod template would fill a screen."""

    ref: ObjectRef
    fields: Mapping[str, tuple[str, ...]]

    @classmethod
    def of(cls, ref: ObjectRef, causes: Iterable[Cause]) -> Owned:
        fields: dict[str, dict[str, None]] = {}
        for cause in causes:
            if cause.manager is not None:
                fields.setdefault(cause.manager, {})[_field_head(cause.path)] = None
        return cls(ref, {manager: tuple(paths) for manager, paths in fields.items()})

    def __str__(self) -> str:
        """`Deployment demo/web: spec.replicas, spec.template owned by helm`"""
        owners = (f"{', '.join(paths)} owned by {who}" for who, paths in self.fields.items())
        return f"{self.ref}: {'; '.join(owners)}"


async def apply(
    connection: Connection,
    objects: Sequence[Mapping[str, Any]],
    *,
    default_namespace: str,
    field_manager: str = FIELD_MANAGER,
    force: bool = True,
) -> list[AppliedRef]:
    """Server-side apply `objects`, phase by phase; the inventory, in the input order.

    Namespaced objects without a namespace get `default_namespace`. Namespaces that the
    objects need but do not declare are created (by an apply of a bare Namespace) and
    left out of the inventory: a prune must never delete a namespace the user did not
    ask for, with everything else that lives in it.
    """
    answers, _ = await _apply(connection, objects, default_namespace, field_manager, force)
    return [AppliedRef.of(answers[index]) for index in range(len(objects))]


async def dry_run(
    connection: Connection,
    objects: Sequence[Mapping[str, Any]],
    *,
    default_namespace: str,
    field_manager: str = FIELD_MANAGER,
    force: bool = True,
) -> list[DryRun]:
    """What `apply` with the same arguments would make of each object, changing nothing
    (`dryRun=All`); in the input order. Not even a namespace is created."""
    answers, refs = await _apply(
        connection, objects, default_namespace, field_manager, force, dry_run=True
    )
    return [DryRun(refs[index], answers.get(index)) for index in range(len(objects))]


async def owned_elsewhere(
    connection: Connection,
    objects: Sequence[Mapping[str, Any]],
    *,
    default_namespace: str,
    field_manager: str = FIELD_MANAGER,
) -> list[Owned]:
    """The objects an apply without `force` would conflict on, in the input order: fields
    another manager owns with another value (a 409's causes name them). Changes nothing
    (`dryRun=All`). Fields another manager set to the same value are no conflict: the apply
    shares them."""
    conflicts: dict[int, tuple[Cause, ...]] = {}
    _, refs = await _apply(
        connection,
        objects,
        default_namespace,
        field_manager,
        False,
        dry_run=True,
        conflicts=conflicts,
    )
    return [Owned.of(refs[index], conflicts[index]) for index in sorted(conflicts)]


async def _apply(
    connection: Connection,
    objects: Sequence[Mapping[str, Any]],
    default_namespace: str,
    field_manager: str,
    force: bool,
    *,
    dry_run: bool = False,
    conflicts: dict[int, tuple[Cause, ...]] | None = None,
) -> tuple[dict[int, dict[str, Any]], dict[int, ObjectRef]]:
    """The server's answer for each object by input index, and where each one goes.

    A dry run leaves out of the answers what the server cannot answer for (`DryRun`).
    With `conflicts`, an object's field manager conflicts are put there by its index
    instead of failing the call.
    """
    for index, obj in enumerate(objects):
        _check_manifest(index, obj)
    rc = ResourceClient(connection)
    # Every kind the cluster should already serve is resolved before anything is
    # written, so a typo in a kind fails the whole apply instead of its last phase.
    new_kinds = {_defined_kind(o) for o in objects if o["kind"] == "CustomResourceDefinition"}
    placed = {
        index: await _placed(rc, obj, default_namespace)
        for index, obj in enumerate(objects)
        if (_group(obj), obj["kind"]) not in new_kinds
    }
    declared = {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"}
    present: dict[str, bool] = {}  # namespace -> whether objects can be applied in it
    answers: dict[int, dict[str, Any]] = {}
    refs = {index: ObjectRef.of(body) for index, (body, _) in placed.items()}
    query: dict[str, str | int | bool] = {"fieldManager": field_manager, "force": force}
    if dry_run:
        query["dryRun"] = "All"

    async def apply_one(index: int, body: dict[str, Any], path: str) -> None:
        ref = ObjectRef.of(body)

        async def send() -> dict[str, Any]:
            answer: dict[str, Any] = await rc.call(
                "PATCH",
                path,
                what=f"{'dry-run ' if dry_run else ''}apply {ref}",
                query=query,
                body=body,
                content_type=APPLY_PATCH,
            )
            return answer

        try:
            try:
                answers[index] = await send()
            except NotFound:
                namespace = body["metadata"].get("namespace")
                if dry_run or namespace not in rc.ensured_namespaces - declared:
                    raise
                # Someone deleted the namespace since an earlier apply made sure of it.
                rc.ensured_namespaces.discard(namespace)
                await _ensure_namespace(rc, namespace, field_manager)
                answers[index] = await send()
        except ApiError as e:
            if conflicts is not None and isinstance(e, Conflict) and e.causes:
                conflicts[index] = e.causes
                return
            if not e.causes:
                raise
            # The message embeds the rejected values (a whole pod template): the log's.
            logger.debug("%s", e)
            raise reworded(e, refusal(str(ref), e.causes)) from e
        if body["kind"] == "CustomResourceDefinition" and not dry_run:
            await _until_served(rc, body)

    def kind_of(item: tuple[int, Mapping[str, Any]]) -> str:
        return str(item[1]["kind"])

    for group in _phases(apply_order(enumerate(objects), kind_of), kind_of):
        batch = []
        for index, obj in group:
            if index not in placed:
                placed[index] = await _served(rc, obj, default_namespace, dry_run=dry_run)
                refs[index] = ObjectRef.of(placed[index][0])
            batch.append((index, *placed[index]))
        wanted = {
            ns
            for _, body, _ in batch
            if (ns := body["metadata"].get("namespace")) and ns not in present
        }
        if dry_run:
            for ns in sorted(wanted):
                present[ns] = await _namespace_exists(rc, ns)
        else:
            unsure = wanted - declared - rc.ensured_namespaces
            await _all(_ensure_namespace(rc, ns, field_manager) for ns in sorted(unsure))
            present |= dict.fromkeys(wanted, True)
        await _all(
            apply_one(index, body, path)
            for index, body, path in batch
            if path and present.get(body["metadata"].get("namespace") or "", True)
        )
    return answers, refs


async def delete(
    connection: Connection, refs: Iterable[ObjectRef], *, propagation: str = "Background"
) -> list[AppliedRef]:
    """Delete `refs`, phases in reverse; an object already gone counts as deleted.

    So does an object whose kind the cluster no longer serves: its CRD is gone, and
    with it every object of the kind. Returns the objects the server took to delete,
    with their uids: what a caller waits for to be gone (`clusters.waiting.wait_gone`),
    since an object of the same name created afterwards is another object.
    """
    rc = ResourceClient(connection)
    options = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
    deleted: list[AppliedRef] = []

    async def delete_one(ref: ObjectRef) -> None:
        try:
            path = await _path(rc, ref, f"delete {ref}")
            result = await rc.call("DELETE", path, what=f"delete {ref}", body=options)
        except NotFound:
            logger.debug("delete %s: already gone", ref)
            return
        # The deleted object as it was, or (for some kinds) a Status naming its uid.
        uid = (result.get("details") or {}).get("uid") if result.get("kind") == "Status" else None
        uid = uid or (result.get("metadata") or {}).get("uid")
        if uid:
            deleted.append(AppliedRef(ref.api_version, ref.kind, ref.namespace, ref.name, uid=uid))

    for group in _phases(delete_order(refs), lambda ref: ref.kind):
        await _all(delete_one(ref) for ref in group)
    return deleted


async def get(connection: Connection, ref: ObjectRef) -> dict[str, Any] | None:
    """The object as the cluster has it now, or None if it (or its kind) does not exist."""
    rc = ResourceClient(connection)
    try:
        path = await _path(rc, ref, f"get {ref}")
        result: dict[str, Any] = await rc.call("GET", path, what=f"get {ref}")
    except NotFound:
        return None
    return result


# ---------------------------------------------------------------------------- helpers


def _manifest_kind(obj: Any) -> str:
    return str(obj["kind"])


def _phases(items: Iterable[T], kind: Callable[[T], str]) -> list[list[T]]:
    """Consecutive runs of one phase, from items already in apply (or delete) order."""
    return [list(run) for _, run in groupby(items, key=lambda item: phase(kind(item)))]


def _check_manifest(index: int, obj: Mapping[str, Any]) -> None:
    """Fail before the first request: half a release applied is worse than none."""
    metadata = obj.get("metadata")
    if not (obj.get("apiVersion") and obj.get("kind")):
        raise ValueError(f"object #{index}: apiVersion and kind are required")
    if not isinstance(metadata, Mapping) or not metadata.get("name"):
        raise ValueError(
            f"object #{index} ({obj['kind']}): metadata.name is required for server-side apply"
        )


async def _path(rc: ResourceClient, ref: ObjectRef, what: str) -> str:
    try:
        return await rc.path(ref)
    except ClusterError as e:
        raise reworded(e, f"{what}: {e}") from e


async def _placed(
    rc: ResourceClient, obj: Mapping[str, Any], default_namespace: str
) -> tuple[dict[str, Any], str]:
    """A copy of `obj` with its namespace settled, and its REST path.

    The namespace is defaulted for namespaced kinds and dropped for cluster-scoped ones:
    charts often template it onto ClusterRoles, and the API server rejects an apply
    whose body and URL disagree.
    """
    ref = ObjectRef.of(obj)
    try:
        resource = await rc.resolve(ref.api_version, ref.kind)
    except ClusterError as e:
        raise reworded(e, f"apply {ref}: {e}") from e
    metadata = dict(obj["metadata"])
    if resource.namespaced:
        metadata["namespace"] = metadata.get("namespace") or default_namespace
    else:
        metadata.pop("namespace", None)
    return {**obj, "metadata": metadata}, resource.path(metadata.get("namespace"), ref.name)


async def _served(
    rc: ResourceClient, obj: Mapping[str, Any], default_namespace: str, *, dry_run: bool
) -> tuple[dict[str, Any], str]:
    """`_placed` for an object whose kind a CRD of the same apply defines. After a dry
    run that CRD is still not served: the object, its namespace as written or the
    default, and no path (nothing to ask the server)."""
    try:
        return await _placed(rc, obj, default_namespace)
    except NotFound:
        if not dry_run:
            raise
    metadata = {**obj["metadata"]}
    metadata["namespace"] = metadata.get("namespace") or default_namespace
    return {**obj, "metadata": metadata}, ""


async def _namespace_exists(rc: ResourceClient, name: str) -> bool:
    """Whether objects can be dry-run in the namespace: a dry run of an object in a
    namespace that does not exist is refused. Credentials that may not read Namespaces
    are taken to mean it exists (see `_ensure_namespace`); the dry run itself will say."""
    try:
        await rc.call("GET", f"/api/v1/namespaces/{name}", what=f"get namespace {name}")
    except NotFound:
        return False
    except Forbidden:
        logger.debug("namespace %s: may not read it; assuming it exists", name)
    return True


def _field_head(path: str) -> str:
    """The first two parts of a field path: `spec.template` of
    `spec.template.spec.containers[name="web"].image`, `spec.ports` of `spec.ports[port=80]`."""
    parts, depth, start = [], 0, 0
    for index, char in enumerate(path + "."):
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        elif char == "." and depth == 0:
            parts.append(path[start:index].partition("[")[0])
            start = index + 1
    return ".".join(parts[:2])


def _group(obj: Mapping[str, Any]) -> str:
    return str(obj["apiVersion"]).rpartition("/")[0]


def _identity(ref: ObjectRef) -> tuple[str, str, str | None, str]:
    return ref.api_version.rpartition("/")[0], ref.kind, ref.namespace, ref.name


def _defined_kind(crd: Mapping[str, Any]) -> tuple[str, str]:
    """The (group, kind) a CustomResourceDefinition manifest introduces."""
    spec = crd.get("spec") or {}
    return str(spec.get("group", "")), str((spec.get("names") or {}).get("kind", ""))


async def _ensure_namespace(rc: ResourceClient, name: str, field_manager: str) -> None:
    """Create the namespace if it is missing, by applying a bare Namespace.

    Credentials scoped to one namespace may not touch Namespace objects at all; that
    namespace exists (an admin made it), so a refusal here is no failure. If it did not
    exist, applying the first object in it says so, naming that object.
    """
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    try:
        await rc.call(
            "PATCH",
            f"/api/v1/namespaces/{name}",
            what=f"create namespace {name}",
            query={"fieldManager": field_manager, "force": True},
            body=body,
            content_type=APPLY_PATCH,
        )
    except Forbidden:
        logger.debug("namespace %s: not ours to create; assuming it exists", name)
    rc.ensured_namespaces.add(name)


async def _until_served(rc: ResourceClient, crd: Mapping[str, Any]) -> None:
    """Wait until the API server serves a CRD's kind, so that its custom resources,
    applied in a later phase of this same call, can be resolved."""
    spec = crd.get("spec") or {}
    kind = (spec.get("names") or {}).get("kind")
    served = [v["name"] for v in spec.get("versions") or () if v.get("served", True)]
    if not kind or not served:
        return
    api_version = f"{spec['group']}/{served[0]}"
    deadline = asyncio.get_running_loop().time() + CRD_SERVED_TIMEOUT
    while True:
        try:
            await rc.resolve(api_version, kind)
            return
        except NotFound as e:
            if asyncio.get_running_loop().time() >= deadline:
                raise reworded(
                    e,
                    f"apply CustomResourceDefinition {crd['metadata']['name']}: "
                    f"{kind} ({api_version}) not served after {CRD_SERVED_TIMEOUT:.0f}s",
                ) from e
        await asyncio.sleep(_CRD_POLL_INTERVAL)


async def _all(calls: Iterable[Awaitable[None]]) -> None:
    """Run `calls` concurrently and let every one finish; then raise the first failure.

    Letting the others finish (rather than cancelling them) leaves the cluster in a
    state we know: each object of the phase was either applied or reported.
    """
    results = await asyncio.gather(*calls, return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    for extra in failures[1:]:
        logger.warning("also failed: %s", extra)
    if failures:
        raise failures[0]
