"""The Kubernetes store's objects, as pure data: their kinds and CRDs, their names, the
codecs between records and objects, and the rules by which a reader sees them.

Kubernetes names are immutable and at most a DNS-1123 subdomain, so every object keeps
its key in its spec and is found by a name computed from that key; where the key is not
a valid name, a readable prefix and a short sha256 of the key make one. Credentials live
in Secrets and are never part of a custom resource built here.

Nothing here does I/O: the store (`hub.state.kube.backend`) sends what this builds.
"""

from __future__ import annotations

import base64
import enum
import functools
import hashlib
import re
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any, TypeVar

import orjson

from hub.model.phases import Outcome
from hub.model.records import (
    AppRecord,
    ClusterRecord,
    EventRecord,
    HookRunRecord,
    MeasurementRecord,
    RepositoryRecord,
    RevisionRecord,
    RolloutRecord,
    StepRecord,
    TargetRecord,
)
from hub.model.targets import TargetSpec

GROUP = "flotilla.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
MANAGED_BY = "app.kubernetes.io/managed-by"
# Which hub wrote an object last: its watch then tells its own writes (already in the
# mirror) from other replicas' (which their owner must act on).
WRITER = f"{GROUP}/writer"
MANAGER = "flotilla"
MANAGED_SELECTOR = f"{MANAGED_BY}={MANAGER}"
CLUSTER_UID_LABEL = f"{GROUP}/cluster-uid"
# A DNS-1123 subdomain's bound, and the share of it a readable prefix may take before the
# hash: long enough to recognise the application and component in `kubectl get`.
NAME_MAX = 253
PREFIX_MAX = 48
# Hex digits of sha256 that tell names with one prefix apart: 48 bits, no collision among
# the millions of objects one store could ever hold.
HASH_CHARS = 12
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
_NOT_NAME = re.compile(r"[^a-z0-9-]+")

Object = dict[str, Any]
R = TypeVar("R")


@dataclass(frozen=True)
class Kind:
    """One custom resource kind of the store, and the columns `kubectl get` shows of it."""

    kind: str
    plural: str
    columns: tuple[tuple[str, str], ...] = ()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


CLUSTER = Kind(
    "Cluster",
    "clusters",
    (("Server", ".spec.server"), ("Health", ".status.health"), ("Version", ".status.version")),
)
REPOSITORY = Kind(
    "Repository",
    "repositories",
    (("URL", ".spec.url"), ("Kind", ".spec.kind"), ("Auth", ".spec.auth")),
)
APPLICATION = Kind(
    "Application",
    "applications",
    (
        ("Revision", ".spec.revision"),
        ("Phase", ".status.phase"),
        ("Health", ".status.health"),
        ("Message", ".status.message"),
    ),
)
REVISION = Kind(
    "Revision",
    "revisions",
    (("App", ".spec.app"), ("Number", ".spec.number"), ("Outcome", ".status.outcome")),
)
TARGET = Kind(
    "Target",
    "targets",
    (
        ("App", ".spec.app"),
        ("Revision", ".spec.revision"),
        ("Cluster", ".spec.cluster"),
        ("Component", ".spec.component"),
        ("Phase", ".spec.phase"),
    ),
)
RELEASE = Kind(
    "Release",
    "releases",
    (("App", ".spec.app"), ("Cluster", ".spec.cluster"), ("Component", ".spec.component")),
)
ANALYSIS = Kind(
    "Analysis",
    "analyses",
    (("App", ".spec.app"), ("Revision", ".spec.revision"), ("Step", ".spec.step")),
)
EVENT = Kind("Event", "events", (("App", ".spec.app"), ("Message", ".spec.message")))
KINDS = (CLUSTER, REPOSITORY, APPLICATION, REVISION, TARGET, RELEASE, ANALYSIS, EVENT)
SECRET = "Secret"
INTEGER_COLUMNS = frozenset({".spec.revision", ".spec.number"})


# ------------------------------------------------------------------ manifests


def crd(kind: Kind) -> Object:
    """One kind's CRD: namespaced, no status subresource (one write carries spec and status
    together), spec and status kept as written."""
    loose = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    columns = [
        {"name": name, "type": "integer" if path in INTEGER_COLUMNS else "string", "jsonPath": path}
        for name, path in kind.columns
    ]
    columns.append({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"})
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": kind.crd_name, "labels": {MANAGED_BY: MANAGER}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind.kind,
                "plural": kind.plural,
                "singular": kind.kind.lower(),
                "listKind": f"{kind.kind}List",
                "categories": [MANAGER],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {"spec": loose, "status": loose},
                        }
                    },
                    "additionalPrinterColumns": columns,
                }
            ],
        },
    }


def namespace_manifest(namespace: str) -> Object:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": namespace, "labels": {MANAGED_BY: MANAGER}},
    }


def manifests(namespace: str) -> list[Object]:
    """What the store needs in its management cluster: its namespace and every CRD."""
    return [namespace_manifest(namespace), *(crd(kind) for kind in KINDS)]


# ------------------------------------------------------------------ names


def valid_name(name: str) -> bool:
    return len(name) <= NAME_MAX and _SUBDOMAIN.fullmatch(name) is not None


def hashed_name(prefix: str, key: Iterable[object]) -> str:
    """A readable prefix and the sha256 of the whole key: unique whatever the key holds."""
    digest = hashlib.sha256(orjson.dumps(list(key))).hexdigest()[:HASH_CHARS]
    readable = _NOT_NAME.sub("-", prefix.lower())[:PREFIX_MAX].strip("-")
    return f"{readable}-{digest}" if readable else f"x-{digest}"


def natural_name(kind: str, name: str) -> str:
    """The object of a named record: the name itself when Kubernetes takes it."""
    return name if valid_name(name) else hashed_name(name, (kind, name))


def cluster_name(name: str) -> str:
    return natural_name(CLUSTER.kind, name)


def repository_name(name: str) -> str:
    return natural_name(REPOSITORY.kind, name)


def application_name(app: str) -> str:
    return natural_name(APPLICATION.kind, app)


def revision_name(app: str, number: int) -> str:
    natural = f"{app}-{number}"  # the number ends it, so no two keys share a name
    return natural if valid_name(natural) else hashed_name(natural, (REVISION.kind, app, number))


@dataclass(frozen=True)
class ClusterRef:
    """How a child object names its cluster: by uid when it was registered at the write
    (a rename moves nothing), by name when it was not (uid "")."""

    uid: str
    name: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.uid, "") if self.uid else ("", self.name)


def target_name(app: str, revision: int, step: str, ref: ClusterRef, component: str) -> str:
    return hashed_name(
        f"{app}-{revision}-{component}", (TARGET.kind, app, revision, step, *ref.key, component)
    )


def release_name(app: str, ref: ClusterRef, component: str) -> str:
    return hashed_name(f"{app}-{component}", (RELEASE.kind, app, *ref.key, component))


def analysis_name(app: str, revision: int, step: str) -> str:
    return hashed_name(f"{app}-{revision}-{step}", (ANALYSIS.kind, app, revision, step))


def cluster_secret_name(uid: str) -> str:
    """Keyed by uid, so that a rename does not move the credentials."""
    return f"flotilla-cluster-{uid}"


def repository_secret_name(name: str) -> str:
    return f"flotilla-repository-{repository_name(name)}"


# ------------------------------------------------------------------ objects


def new_object(kind: str, name: str, namespace: str, spec: Object, **extra: Any) -> Object:
    """A custom resource of the store, labelled as ours (the mirror watches only those)."""
    labels = {MANAGED_BY: MANAGER, **extra.pop("labels", {})}
    obj: Object = {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": spec,
    }
    obj.update(extra)
    return obj


def secret(name: str, namespace: str, data: Mapping[str, str]) -> Object:
    return {
        "apiVersion": "v1",
        "kind": SECRET,
        "type": "Opaque",
        "metadata": {"name": name, "namespace": namespace, "labels": {MANAGED_BY: MANAGER}},
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()},
    }


def secret_data(obj: Mapping[str, Any] | None) -> dict[str, str]:
    if obj is None:
        return {}
    return {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}


def resource_version(obj: Mapping[str, Any]) -> int:
    """etcd revisions: integers that grow with every write."""
    return int((obj.get("metadata") or {}).get("resourceVersion") or 0)


def spec_of(obj: Mapping[str, Any] | None) -> Object:
    """The spec of an object, {} of none (absent objects read as empty)."""
    spec: Object = (obj or {}).get("spec") or {}
    return spec


def status_of(obj: Mapping[str, Any] | None) -> Object:
    status: Object = (obj or {}).get("status") or {}
    return status


# ------------------------------------------------------------------ record codecs


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


@functools.cache
def _enums(cls: type) -> dict[str, type[enum.Enum]]:
    hints = typing.get_type_hints(cls)
    return {n: t for n, t in hints.items() if isinstance(t, type) and issubclass(t, enum.Enum)}


def encode(record: Any, *, skip: Iterable[str] = ()) -> Object:
    """A record's fields under their camelCase names (enums are str: JSON as they are)."""
    left_out = set(skip)
    return {
        camel(f.name): getattr(record, f.name) for f in fields(record) if f.name not in left_out
    }


def decode(cls: type[R], data: Mapping[str, Any], **given: Any) -> R:
    """The record of `cls` from `encode`'s fields; `given` overrides or supplies fields."""
    enums = _enums(cls)  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name in given:
            values[f.name] = given[f.name]
        elif (key := camel(f.name)) in data:
            value = data[key]
            values[f.name] = enums[f.name](value) if f.name in enums else value
    return cls(**values)


def cluster_object(
    record: ClusterRecord, namespace: str, *, renamed_from: str = "", renames: int = 0
) -> Object:
    """The Cluster without its credentials (kubeconfig, credential, prometheus: its Secret)."""
    spec = {
        "name": record.name,
        "uid": record.uid,
        "server": record.server,
        "labels": dict(record.labels),
        "joinedAt": record.joined_at,
        "renamedFrom": renamed_from,
        "renames": renames,
    }
    status = {
        "version": record.version,
        "health": record.health,
        "reason": record.reason,
        "warnings": list(record.warnings),
        "lastSeen": record.last_seen,
    }
    return new_object(CLUSTER.kind, cluster_name(record.name), namespace, spec, status=status)


def cluster_secret(record: ClusterRecord, namespace: str) -> Object:
    data = {
        "kubeconfig": orjson.dumps(record.kubeconfig).decode(),
        "credential": record.credential,
        "prometheus": orjson.dumps(record.prometheus).decode(),
    }
    return secret(cluster_secret_name(record.uid), namespace, data)


def cluster_record(obj: Mapping[str, Any], credentials: Mapping[str, str]) -> ClusterRecord:
    spec, status = spec_of(obj), status_of(obj)
    return ClusterRecord(
        name=spec["name"],
        uid=spec["uid"],
        server=spec["server"],
        kubeconfig=orjson.loads(credentials.get("kubeconfig") or "{}"),
        credential=credentials.get("credential", ""),
        labels=dict(spec.get("labels") or {}),
        version=status.get("version") or "",
        health=status.get("health") or "Unknown",
        reason=status.get("reason") or "",
        warnings=list(status.get("warnings") or []),
        last_seen=status.get("lastSeen"),
        joined_at=spec["joinedAt"],
        prometheus=orjson.loads(credentials.get("prometheus") or "{}"),
    )


def repository_object(record: RepositoryRecord, namespace: str) -> Object:
    spec = encode(record, skip=("secret",))
    return new_object(REPOSITORY.kind, repository_name(record.name), namespace, spec)


def repository_record(obj: Mapping[str, Any], credentials: Mapping[str, str]) -> RepositoryRecord:
    return decode(RepositoryRecord, spec_of(obj), secret=credentials.get("secret", ""))


def app_record(obj: Mapping[str, Any]) -> AppRecord:
    spec, status = spec_of(obj), status_of(obj)
    return decode(AppRecord, {**spec, **status})


def revision_record(
    obj: Mapping[str, Any], outcome: Outcome, finished_at: float | None
) -> RevisionRecord:
    """The revision as a reader reports it: `outcome` and `finished_at` by `reported`."""
    return decode(RevisionRecord, spec_of(obj), outcome=outcome, finished_at=finished_at)


def step_record(app: str, revision: int, data: Mapping[str, Any]) -> StepRecord:
    return decode(StepRecord, data, app=app, revision=revision)


def target_spec(target: TargetRecord, ref: ClusterRef) -> Object:
    spec = encode(target)
    spec["spec"] = target.spec.to_json()
    spec["clusterUid"] = ref.uid
    return spec


def target_record(obj: Mapping[str, Any], cluster: str) -> TargetRecord:
    data = spec_of(obj)
    return decode(TargetRecord, data, cluster=cluster, spec=TargetSpec.from_json(data["spec"]))


def rollout_record(
    app: str, cluster: str, component: str, data: Mapping[str, Any]
) -> RolloutRecord:
    return decode(RolloutRecord, data, app=app, cluster=cluster, component=component)


def hook_run_record(
    app: str, cluster: str, component: str, data: Mapping[str, Any]
) -> HookRunRecord:
    return decode(HookRunRecord, data, app=app, cluster=cluster, component=component)


def hook_run_key(data: Mapping[str, Any]) -> tuple[str, ...]:
    """A hook run's key within its release (the release is the rest of it)."""
    return tuple(str(data.get(k)) for k in ("event", "kind", "namespace", "name"))


def measurement_record(
    obj: Mapping[str, Any], data: Mapping[str, Any], cluster: str
) -> MeasurementRecord:
    spec = spec_of(obj)
    return decode(
        MeasurementRecord,
        data,
        app=spec["app"],
        revision=spec["revision"],
        step=spec["step"],
        cluster=cluster,
    )


def event_record(obj: Mapping[str, Any]) -> EventRecord:
    return decode(EventRecord, spec_of(obj), id=resource_version(obj))


# ------------------------------------------------------------------ reader rules


def current_clusters(
    objects: Iterable[Mapping[str, Any]],
) -> tuple[dict[str, Object], list[Object]]:
    """Per uid, the Cluster object that holds the cluster now, and the leftovers a rename
    did not get to delete. A rename creates the new object (with `renamedFrom` and one more
    `renames`: the commit point) before it deletes the old, so the most renamed wins."""
    current: dict[str, Object] = {}
    leftovers: list[Object] = []
    for obj in objects:
        uid = spec_of(obj).get("uid", "")
        held = current.get(uid)
        if held is None:
            current[uid] = dict(obj)
            continue
        newer = _renames(obj) > _renames(held)
        leftovers.append(held if newer else dict(obj))
        if newer:
            current[uid] = dict(obj)
    return current, leftovers


def _renames(obj: Mapping[str, Any]) -> int:
    return int(spec_of(obj).get("renames") or 0)


def reported_cluster(spec: Mapping[str, Any], names: Mapping[str, str]) -> str | None:
    """The name a reader reports for a child's cluster: the current name of its uid; its
    stored name when it was written for an unregistered cluster; None (invisible) when its
    uid is no cluster's any more (what a detach left, deleted in the background)."""
    uid = str(spec.get("clusterUid") or "")
    if not uid:
        return str(spec.get("cluster", ""))
    return names.get(uid)


def reported(
    revision: Mapping[str, Any], current: int, successor: Mapping[str, Any] | None
) -> tuple[Outcome, float | None]:
    """A revision's outcome and end as a reader sees them: a Running revision that is not
    the application's current one was superseded when its successor was created (the mark
    written after the commit may not have landed)."""
    spec, status = spec_of(revision), status_of(revision)
    outcome = Outcome(status.get("outcome", Outcome.RUNNING))
    finished = status.get("finishedAt")
    if outcome is Outcome.RUNNING and spec.get("number", 0) < current:
        return Outcome.SUPERSEDED, spec_of(successor).get("createdAt") if successor else finished
    return outcome, finished


def visible_revision(revision: Mapping[str, Any] | None, app: Mapping[str, Any] | None) -> bool:
    """Revisions above the application's, or of an application deleted and created again,
    are what an attempt left before its commit: never shown."""
    if revision is None or app is None:
        return False
    spec, owner = spec_of(revision), spec_of(app)
    return bool(
        spec.get("incarnation") == owner.get("incarnation")
        and spec.get("number", 0) <= owner.get("revision", 0)
    )


def newest_events(events: Iterable[Object], keep: int, oldest: float) -> list[Object]:
    """Events a reader sees: per application the newest `keep`, none older than `oldest`
    (the background pruning deletes the rest, later)."""
    kept: list[Object] = []
    by_app: dict[str, list[Object]] = {}
    for obj in events:
        if (spec_of(obj).get("at") or 0) >= oldest:
            by_app.setdefault(str(spec_of(obj).get("app")), []).append(obj)
    for found in by_app.values():
        found.sort(key=resource_version)
        kept.extend(found[-keep:] if keep > 0 else [])
    kept.sort(key=resource_version)
    return kept


def event_prefix(app: str) -> str:
    """The `generateName` of an application's events: the server appends a suffix."""
    readable = _NOT_NAME.sub("-", app.lower())[:PREFIX_MAX].strip("-")
    return f"{readable or 'event'}-"


def writer_of(obj: Mapping[str, Any]) -> str | None:
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(WRITER)


def signed(obj: Object, writer: str) -> Object:
    """`obj` marked as written by `writer` (in place; returned for convenience)."""
    obj.setdefault("metadata", {}).setdefault("annotations", {})[WRITER] = writer
    return obj


def app_of(obj: Mapping[str, Any]) -> str | None:
    """The application an object of the store is about; None for the registry's."""
    spec = spec_of(obj)
    if obj.get("kind") == APPLICATION.kind:
        return str(spec.get("name") or "") or None
    app = spec.get("app")
    return str(app) if app else None
