"""Helm's resource policy: objects annotated `helm.sh/resource-policy: keep` outlive their
release.

Charts put it on what must never go with an upgrade or an uninstall (a PersistentVolumeClaim
holding data, a Secret a database was initialised with). Helm reads it from the release's
manifest: a later revision that no longer renders the object, and the release's deletion,
leave the object on the cluster and forget it. The deploy records the policy on the object's
inventory entry when it applies it, so a prune or a deletion (even of a revision whose chart
can no longer be fetched) knows without asking the cluster.

Pure: reads annotations and inventory entries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from clusters.resources import ObjectRef
from hub.fleet.objects import ref_of

RESOURCE_POLICY = "helm.sh/resource-policy"
KEEP = "keep"
"""The inventory entry's flag, and the annotation's value (Helm trims it and ignores case)."""


def keeps(obj: Mapping[str, Any]) -> bool:
    """Whether a rendered object asks to be left on the cluster by prune and delete."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(RESOURCE_POLICY, "")).strip().lower() == KEEP


def flagged(entry: dict[str, Any], obj: Mapping[str, Any]) -> dict[str, Any]:
    """The inventory entry of `obj`, flagged when the object is to be kept."""
    return {**entry, KEEP: True} if keeps(obj) else entry


def is_kept(entry: Mapping[str, Any]) -> bool:
    return bool(entry.get(KEEP))


def deletable(entries: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The inventory entries a prune or a deletion may delete."""
    return [e for e in entries if not is_kept(e)]


def kept(entries: Iterable[Mapping[str, Any]]) -> list[ObjectRef]:
    """The objects of inventory entries that a prune or a deletion leaves alone."""
    return [ref_of(e) for e in entries if is_kept(e)]


def kept_message(ref: ObjectRef) -> str:
    """The event of an object left on the cluster: `kept Secret demo/x: ...`."""
    where = f"{ref.namespace}/{ref.name}" if ref.namespace else ref.name
    return f"kept {ref.kind} {where}: {RESOURCE_POLICY} {KEEP}"
