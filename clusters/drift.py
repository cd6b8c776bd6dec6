"""Drift: which fields we applied to an object no longer have the values we gave them.

Not a comparison of the manifest with the live object: the server defaults, converts and
normalises what we apply, and other managers own fields of the same object (an HPA's
`replicas`, a webhook's defaults, a controller's annotations). Instead the comparison
runs over exactly the fields our manager would own, as server-side apply records them
(`fieldsV1` under `metadata.managedFields`), between two objects the server itself
produced: the live one, and what a dry-run apply of our manifest returns
(`clusters.apply.dry_run`). A field only others set is never drift; a field we set that
someone changed, or removed, is; and `managedFields` say who changed it.

Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from clusters.fields import FIELD_MANAGER, owned_fields


@dataclass(frozen=True)
class FieldDrift:
    """One field of ours whose value on the cluster is not the one we applied."""

    path: str
    """Dotted, list items by index as the live object has them, names that hold dots or
    slashes quoted: `spec.template.spec.containers[0].image`,
    `metadata.labels["app.kubernetes.io/name"]`."""
    want: Any
    """What we applied, as the server stores it; None: we set it, but it is absent."""
    have: Any
    """What the cluster has now; None: the field (or the item) is gone."""
    manager: str | None
    """Who made the change: the field's owner now (the latest, if several). None for a
    removed field: nobody owns what is not there, so managedFields cannot say."""


def drifted(
    live: Mapping[str, Any], want: Mapping[str, Any], manager: str = FIELD_MANAGER
) -> list[FieldDrift]:
    """The fields `manager` sets on `want` (a dry-run apply's answer) whose values `live`
    (the object as a GET returns it, managedFields included) does not have."""
    fields = owned_fields(want, manager)
    if not fields:
        return []
    others = [
        e
        for e in (live.get("metadata") or {}).get("managedFields") or ()
        if e.get("manager") != manager and isinstance(e.get("fieldsV1"), Mapping)
    ]
    return [
        FieldDrift(path, wanted, have, _changed_by(others, chain))
        for chain, path, have, wanted in _differences(fields, live, want, (), ())
    ]


def path_text(parts: Sequence[str | int]) -> str:
    """`spec.template.spec.containers[0].image` from its parts."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif any(c in part for c in './[]"'):
            text += f"[{json.dumps(part)}]"
        else:
            text += f".{part}" if text else part
    return text


# ---------------------------------------------------------------------------- helpers

_Chain = tuple[str, ...]  # fieldsV1 entries from the root: ("f:spec", 'k:{"name":"web"}', ...)


def _differences(
    fields: Mapping[str, Any],
    live: Any,
    want: Any,
    chain: _Chain,
    parts: tuple[str | int, ...],
) -> Iterator[tuple[_Chain, str, Any, Any]]:
    """(fieldsV1 chain, path, live value, wanted value) of every field in `fields` whose
    values differ; a subtree missing from `live` is one difference, not one per leaf."""
    for entry, below in fields.items():
        kind, _, name = entry.partition(":")
        if kind == "f":
            have = live.get(name) if isinstance(live, Mapping) else None
            wanted = want.get(name) if isinstance(want, Mapping) else None
            where: tuple[str | int, ...] = (*parts, name)
        elif kind in ("k", "v"):
            key = json.loads(name)
            match = _item_by_key if kind == "k" else _item_by_value
            at, have = match(live, key)
            at_want, wanted = match(want, key)
            index = at if at is not None else at_want
            where = (*parts, index if index is not None else name)
        else:  # "." (the node itself), "i:" (atomic lists are owned whole)
            continue
        deeper = {k: v for k, v in (below or {}).items() if k != "."}
        if deeper and have is not None and wanted is not None:
            yield from _differences(deeper, have, wanted, (*chain, entry), where)
        elif have != wanted:
            yield (*chain, entry), path_text(where), have, wanted


def _item_by_key(items: Any, key: Mapping[str, Any]) -> tuple[int | None, Any]:
    """The item of an associative list whose fields include `key`, and its index."""
    for index, item in enumerate(items if isinstance(items, list) else ()):
        if isinstance(item, Mapping) and all(item.get(k) == v for k, v in key.items()):
            return index, item
    return None, None


def _item_by_value(items: Any, value: Any) -> tuple[int | None, Any]:
    """The member of a set-like list equal to `value`, and its index."""
    for index, item in enumerate(items if isinstance(items, list) else ()):
        if item == value:
            return index, item
    return None, None


def _changed_by(entries: Sequence[Mapping[str, Any]], chain: _Chain) -> str | None:
    """Who owns the field at `chain` now, the latest if several do (a subresource's
    writer included: `kubectl scale` owns `replicas` through `/scale`)."""
    owners = [e for e in entries if _owns(e["fieldsV1"], chain)]
    latest = max(owners, key=lambda e: str(e.get("time") or ""), default=None)
    return str(latest["manager"]) if latest is not None and latest.get("manager") else None


def _owns(fields: Mapping[str, Any], chain: _Chain) -> bool:
    """Whether a `fieldsV1` set holds the field at `chain`, or an atomic field above it."""
    node: Any = fields
    for entry in chain:
        if not isinstance(node, Mapping) or entry not in node:
            return False
        node = node[entry]
        if not isinstance(node, Mapping) or not (node.keys() - {"."}):
            return True  # a leaf: owned whole, with everything below it
    return True
