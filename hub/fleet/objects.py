"""Flotilla's marks on the objects it applies, and object references as stored.

The labels go on object metadata only, never into pod templates: a new revision that
changes nothing in a workload must not restart its pods.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from clusters.resources import ObjectRef

APP_LABEL = "app.oam.dev/name"
COMPONENT_LABEL = "app.oam.dev/component"
REVISION_LABEL = "flotilla.dev/revision"
MANAGED_BY = "flotilla.dev/managed-by"
# A Secret's values never leave the hub: wherever it shows a Secret (drift, diff), the
# values of these fields are replaced by REDACTED.
SECRET_FIELDS = ("data", "stringData")
REDACTED = "(redacted)"


def ref_dict(ref: ObjectRef) -> dict[str, Any]:
    return {
        "apiVersion": ref.api_version,
        "kind": ref.kind,
        "namespace": ref.namespace,
        "name": ref.name,
    }


def ref_of(entry: Mapping[str, Any]) -> ObjectRef:
    return ObjectRef(entry["apiVersion"], entry["kind"], entry.get("namespace"), entry["name"])


def labelled(
    objects: Iterable[dict[str, Any]], app: str, component: str, revision: int
) -> list[dict[str, Any]]:
    out = []
    for obj in objects:
        metadata = obj.setdefault("metadata", {})
        labels = metadata.get("labels") or {}
        labels |= {
            APP_LABEL: app,
            COMPONENT_LABEL: component,
            REVISION_LABEL: str(revision),
            MANAGED_BY: "flotilla",
        }
        metadata["labels"] = labels
        out.append(obj)
    return out
